"""One HTTP client per LLM endpoint and event loop, shared by every call of the process.

Each call used to build its own SDK client, so each call's first turn paid for a new connection
(a TLS handshake to the provider: tens of milliseconds, more across an ocean), and the SDKs'
default pools drop a connection after 5 s idle, so most later turns paid again. The clients
here keep their connections for `KEEPALIVE_SECS` and are shared by all calls on the loop (the
services never close them). A client is bound to the loop it was made on, so the cache is per
loop (tests run several loops in one process).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from pipecat.utils.http import connection_limits

KEEPALIVE_SECS = 120.0

T = TypeVar("T")
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, Any]] = (
    weakref.WeakKeyDictionary()
)


def shared_client(key: Hashable, make: Callable[[], T]) -> T:
    """The client for `key` on the running loop, made by `make()` the first time."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return make()  # no loop (a build check): nothing to share
    per_loop = _clients.setdefault(loop, {})
    if key not in per_loop:
        per_loop[key] = make()
    return per_loop[key]


def pool_limits() -> Any:
    return connection_limits(
        max_connections=1000, max_keepalive_connections=100, keepalive_expiry=KEEPALIVE_SECS
    )
