"""Time-limited TURN credentials, coturn's TURN REST API scheme (`use-auth-secret`).

The TURN server and this server share a secret. A credential is minted without asking the TURN
server anything: username = "<unix expiry>:<user id>", password = base64(HMAC-SHA1(secret,
username)). coturn (`--use-auth-secret --static-auth-secret=...`) recomputes the password and
refuses the username once its expiry has passed.

`credentials(config, user)` gives what a browser's `RTCPeerConnection({iceServers: [...]})`
takes; `ice_servers(config, user)` gives the same as aiortc `RTCIceServer` objects (Pipecat's
`IceServer` is that class) for the bot's own peer connections.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiortc import RTCIceServer

MIN_SECRET_CHARS = 16
DEFAULT_TTL_SECS = 3600
MIN_TTL_SECS = 60

_TURN_URL = re.compile(
    r"(?P<scheme>turns?):(?P<host>[^?:/@\[\]]+)(?::(?P<port>[0-9]{1,5}))?"
    r"(?:\?transport=(?P<transport>[a-z]+))?"
)
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_USER = re.compile(r"[A-Za-z0-9._@+=-]{1,128}")


class TurnConfigError(ValueError):
    """A TURN setting that cannot work; the message never contains the secret."""


def check_turn_url(url: str) -> str:
    """`turn:` or `turns:`, a host name or IPv4 address, an optional port and an optional
    `?transport=udp|tcp` (RFC 7065). Returns the URL; raises TurnConfigError saying what is
    wrong."""
    if url.startswith(("turn://", "turns://")):
        raise TurnConfigError(
            f"{url!r}: TURN URLs have no '//' (RFC 7065), e.g. turn:turn.example.com:3478"
        )
    match = _TURN_URL.fullmatch(url)
    if match is None:
        if not url.startswith(("turn:", "turns:")):
            raise TurnConfigError(f"{url!r}: the scheme must be turn: or turns:")
        if "[" in url:
            raise TurnConfigError(
                f"{url!r}: IPv6 literals are not supported (aiortc cannot parse them); "
                "use a host name"
            )
        raise TurnConfigError(
            f"{url!r} is not turn[s]:HOST[:PORT][?transport=udp|tcp], "
            "e.g. turn:turn.example.com:3478?transport=udp"
        )
    host, port, transport = match["host"], match["port"], match["transport"]
    if not all(_HOST_LABEL.fullmatch(label) for label in host.rstrip(".").split(".")):
        raise TurnConfigError(f"{url!r}: {host!r} is not a valid host name or IPv4 address")
    if port is not None and not 1 <= int(port) <= 65535:
        raise TurnConfigError(f"{url!r}: port {port} is outside 1-65535")
    if transport is not None and transport not in ("udp", "tcp"):
        raise TurnConfigError(f"{url!r}: transport must be udp or tcp, got {transport!r}")
    if match["scheme"] == "turns" and transport == "udp":
        raise TurnConfigError(f"{url!r}: turns: runs over TLS, so its transport is tcp")
    return url


@dataclass(frozen=True)
class TurnConfig:
    """The TURN servers (one deployment, several URLs: UDP, TCP, TLS) and their shared secret."""

    urls: tuple[str, ...]
    secret: str = field(repr=False)
    ttl_secs: int = DEFAULT_TTL_SECS

    def __post_init__(self) -> None:
        if isinstance(self.urls, str) or not self.urls:
            raise TurnConfigError("at least one TURN URL is needed (a tuple of URLs)")
        for url in self.urls:
            check_turn_url(url)
        if len(self.secret) < MIN_SECRET_CHARS:
            raise TurnConfigError(
                f"the TURN secret must be at least {MIN_SECRET_CHARS} characters "
                f"(got {len(self.secret)})"
            )
        if isinstance(self.ttl_secs, bool) or not isinstance(self.ttl_secs, int):
            raise TurnConfigError(
                f"the credential lifetime must be whole seconds, got {self.ttl_secs!r}"
            )
        if self.ttl_secs < MIN_TTL_SECS:
            raise TurnConfigError(
                f"the credential lifetime must be at least {MIN_TTL_SECS} s, got {self.ttl_secs}"
            )


def turn_username(expiry: int, user: str) -> str:
    if not _USER.fullmatch(user):
        raise ValueError(
            f"TURN user id {user!r} must be 1-128 characters of letters, digits and ._@+=- "
            "(no ':', which separates the expiry)"
        )
    return f"{expiry}:{user}"


def turn_password(secret: str, username: str) -> str:
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def credentials(config: TurnConfig, user: str, now: float | None = None) -> dict[str, Any]:
    """One RTCIceServer dict valid until now + ttl: `{"urls", "username", "credential"}`."""
    expiry = int(time.time() if now is None else now) + config.ttl_secs
    username = turn_username(expiry, user)
    return {
        "urls": list(config.urls),
        "username": username,
        "credential": turn_password(config.secret, username),
    }


def ice_servers(config: TurnConfig, user: str, now: float | None = None) -> list[RTCIceServer]:
    """The same credentials as aiortc `RTCIceServer`s (= Pipecat's `IceServer`), for
    `SmallWebRTCConnection(ice_servers=...)` or an aiortc `RTCConfiguration`. aiortc uses the
    first TURN URL it supports (turn: over udp/tcp, turns: over tcp)."""
    from aiortc import RTCIceServer

    return [RTCIceServer(**credentials(config, user, now))]


def client_ice_servers(config: TurnConfig | None, who: str) -> list[dict[str, Any]]:
    """What a WebRTC client is handed: TURN credentials for `who` (any string: it is hashed into
    a TURN user name, so it never shows in coturn's logs), or nothing without TURN."""
    if config is None:
        return []
    user = "web-" + hashlib.sha256(who.encode("utf-8")).hexdigest()[:16]
    return [credentials(config, user)]
