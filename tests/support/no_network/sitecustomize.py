"""Loaded by a server under test (PYTHONPATH): refuses every non-loopback connection.

Each refused attempt is appended to $NO_NETWORK_LOG, so a test can assert that nothing tried
to reach the internet (a model download, a telemetry ping, a suffix-list fetch).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import traceback

_LOG = os.environ.get("NO_NETWORK_LOG", "")


def _record(what: str) -> None:
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as out:
            stack = "".join(traceback.format_stack(limit=8)[:-2])
            out.write(f"BLOCKED {what}\n{stack}\n")


def _is_local(host: object) -> bool:
    if host in ("localhost", "", None):
        return True
    try:
        address = ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _check(address: object, what: str) -> None:
    if isinstance(address, tuple) and address and not _is_local(address[0]):
        _record(f"{what} {address!r}")
        raise OSError(101, f"network blocked by test: {address!r}")


_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_sendto = socket.socket.sendto
_getaddrinfo = socket.getaddrinfo


def connect(self: socket.socket, address: object) -> None:
    _check(address, "connect")
    return _connect(self, address)


def connect_ex(self: socket.socket, address: object) -> int:
    _check(address, "connect_ex")
    return _connect_ex(self, address)


def sendto(self: socket.socket, data: bytes, *args: object) -> int:
    _check(args[-1] if args else None, "sendto")
    return _sendto(self, data, *args)  # type: ignore[arg-type]


def getaddrinfo(host: object, *args: object, **kwargs: object) -> list:  # type: ignore[type-arg]
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and not _is_local(name):
        _record(f"getaddrinfo {host!r}")
        raise socket.gaierror(socket.EAI_NONAME, f"name resolution blocked by test: {host!r}")
    return _getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]


socket.socket.connect = connect  # type: ignore[method-assign]
socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
socket.socket.sendto = sendto  # type: ignore[method-assign,assignment]
socket.getaddrinfo = getaddrinfo
if _LOG:
    with open(_LOG, "a", encoding="utf-8") as out:
        out.write(f"ARMED pid={os.getpid()}\n")
