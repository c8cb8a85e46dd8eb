"""Who may call over WebRTC: API keys, short-lived session tokens, and loopback in development.

With `VOICEBOT_API_KEYS` set, `/api/offer` (POST and PATCH) needs `Authorization: Bearer` with
one of those keys (server to server) or a session token minted by `POST /api/session` (which
itself needs an API key). Without keys the server is in local-development mode: only loopback
clients may call, like the Twilio routes without TWILIO_AUTH_TOKEN.

A session token is `v1.<expiry>.<nonce>.<signature>`: the signature is base64url HMAC-SHA256 of
`v1.<expiry>.<nonce>` under `VOICEBOT_SESSION_SECRET`. It may start calls until `<expiry>`;
a call it started goes on after that, and the token keeps its say over that call (trickle ICE,
renegotiation) because each peer connection belongs to the principal that opened it. Tokens
and keys are never logged nor echoed back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from fastapi import HTTPException, Request
from loguru import logger

from bot.settings import ServerSettings
from transports.twilio import is_loopback

TOKEN_VERSION = "v1"
MAX_CREDENTIAL_CHARS = 512
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_EXPIRY = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 bytes, base64url without padding
_BEARER = {"WWW-Authenticate": "Bearer"}

LOOPBACK = "loopback"


def _now() -> float:
    return time.time()  # one seam for the tests' clock


@dataclass(frozen=True)
class Principal:
    """Who made a request: owns the peer connections it opens."""

    id: str  # a token's nonce, "key:<index>" for an API key, or "loopback" (development)
    kind: str  # "token", "key" or "loopback"
    expired: bool = False  # a token past its expiry: may not start a call

    def require_fresh(self) -> None:
        """Starting a call needs a token that has not expired."""
        if self.expired:
            logger.info("refused a new WebRTC call: session token expired")
            raise HTTPException(401, "session token expired", headers=_BEARER)


class TokenError(Exception):
    """A session token that is malformed or not signed with our secret."""


class SessionTokens:
    def __init__(self, secret: str, ttl_secs: int):
        self._key = secret.encode("utf-8")
        self.ttl_secs = ttl_secs

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def mint(self) -> tuple[str, int]:
        expires_at = int(_now()) + self.ttl_secs
        payload = f"{TOKEN_VERSION}.{expires_at}.{secrets.token_urlsafe(18)}"
        return f"{payload}.{self._sign(payload)}", expires_at

    def verify(self, token: str) -> tuple[str, int]:
        """The token's nonce and expiry; TokenError when malformed or badly signed."""
        parts = token.split(".")
        if (
            len(parts) != 4
            or parts[0] != TOKEN_VERSION
            or not _EXPIRY.fullmatch(parts[1])
            or not _NONCE.fullmatch(parts[2])
            or not _SIGNATURE.fullmatch(parts[3])
        ):
            raise TokenError("malformed session token")
        expected = self._sign(".".join(parts[:3]))
        if not hmac.compare_digest(expected.encode("ascii"), parts[3].encode("ascii")):
            raise TokenError("invalid session token signature")
        return parts[2], int(parts[1])


def bearer(request: Request) -> str | None:
    """The credential of `Authorization: Bearer <credential>`, None when absent."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, credential = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credential.strip() or None


class WebRTCAuth:
    """Decides who may use `/api/offer` and mints session tokens for `/api/session`."""

    def __init__(self, settings: ServerSettings):
        self._keys = tuple(key.encode("utf-8") for key in settings.api_keys)
        secret = settings.session_secret
        self._tokens = SessionTokens(secret, settings.session_ttl_secs) if secret else None

    @property
    def keys_required(self) -> bool:
        return bool(self._keys)

    def announce(self) -> None:
        if not self.keys_required:
            logger.warning(
                "VOICEBOT_API_KEYS is not set: WebRTC calls (/api/offer) serve loopback clients "
                "only (local development)"
            )
            return
        tokens = (
            f"session tokens valid {self._tokens.ttl_secs} s to start a call"
            if self._tokens
            else "no session tokens (VOICEBOT_SESSION_SECRET is not set)"
        )
        logger.info(f"WebRTC calls need an API key ({len(self._keys)} configured) or {tokens}")

    def _key_index(self, credential: str) -> int | None:
        given = credential.encode("utf-8")
        found = None
        for index, key in enumerate(self._keys):  # every key compared: no early exit
            if hmac.compare_digest(given, key):
                found = index
        return found

    async def caller(self, request: Request) -> Principal:
        """FastAPI dependency for `/api/offer`: the principal, or 401/403."""
        path = f"{request.method} {request.url.path}"
        if not self.keys_required:
            client = request.client.host if request.client else None
            if not is_loopback(client):
                logger.warning(f"refused {path} from {client}: no VOICEBOT_API_KEYS set")
                raise HTTPException(
                    403, "WebRTC calls serve loopback clients only without VOICEBOT_API_KEYS"
                )
            return Principal(LOOPBACK, "loopback")
        credential = bearer(request)
        if credential is None:
            logger.info(f"refused {path}: no Authorization: Bearer credential")
            raise HTTPException(401, "missing Authorization: Bearer credential", headers=_BEARER)
        if len(credential) > MAX_CREDENTIAL_CHARS:
            raise self._refuse(path, "malformed session token")
        index = self._key_index(credential)
        if index is not None:
            return Principal(f"key:{index}", "key")
        if self._tokens is None or not credential.startswith(TOKEN_VERSION + "."):
            raise self._refuse(path, "invalid credential")
        try:
            nonce, expires_at = self._tokens.verify(credential)
        except TokenError as exc:
            raise self._refuse(path, str(exc)) from None
        return Principal(nonce, "token", expired=expires_at <= _now())

    @staticmethod
    def _refuse(path: str, detail: str) -> HTTPException:
        logger.info(f"refused {path}: {detail}")
        return HTTPException(401, detail, headers=_BEARER)

    def mint(self, request: Request) -> dict[str, str | int]:
        """`POST /api/session`: a session token for a holder of an API key."""
        if not self.keys_required:
            raise HTTPException(
                503, "session tokens are off: set VOICEBOT_API_KEYS and VOICEBOT_SESSION_SECRET"
            )
        credential = bearer(request)
        if credential is None:
            logger.info("refused POST /api/session: no Authorization: Bearer API key")
            raise HTTPException(401, "missing Authorization: Bearer API key", headers=_BEARER)
        index = self._key_index(credential)
        if index is None:
            logger.warning("refused POST /api/session: not an API key")
            raise HTTPException(403, "invalid API key")
        if self._tokens is None:
            raise HTTPException(503, "session tokens are off: set VOICEBOT_SESSION_SECRET")
        token, expires_at = self._tokens.mint()
        logger.info(f"session token minted for key:{index}, expires at {expires_at}")
        return {"token": token, "expires_at": expires_at}
