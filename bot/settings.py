"""Server settings, read once from the environment. Secrets stay here and are never logged."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.limits import RateLimit, parse_rate_limit
from bot.turn import DEFAULT_TTL_SECS, TurnConfig, TurnConfigError, check_turn_url

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PIPELINE = "pipelines/local.yaml"
DEFAULT_DAILY_API_URL = "https://api.daily.co/v1"
DEFAULT_DAILY_ROOM_EXPIRY_SECS = 1200
DEFAULT_DAILY_API_TIMEOUT_SECS = 10.0
DEFAULT_DRAIN_SECS = 10.0
DEFAULT_WEBRTC_CONNECT_TIMEOUT_SECS = 20.0
# Limits (bot/limits.py, README "Limits"). 15 calls: the measured limit per core (BENCHMARKS.md).
DEFAULT_MAX_CALLS = 15
DEFAULT_RETRY_AFTER_SECS = 5
DEFAULT_RATE_LIMIT = "30/minute"
DEFAULT_WS_MAX_BYTES = 65536  # Twilio's media messages are a few hundred bytes
DEFAULT_MAX_BODY_BYTES = 131072  # a 64 KiB SDP offer in JSON fits
MAX_BUSY_MESSAGE_CHARS = 500
DEFAULT_SESSION_TTL_SECS = 300
MIN_API_KEY_CHARS = 16
MIN_SESSION_SECRET_CHARS = 32
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """The environment describes a server that cannot run safely."""


def resolve_pipeline_path(path: str | os.PathLike[str]) -> Path:
    """A pipeline path as given, else relative to the project folder (for installed runs)."""
    candidate = Path(path)
    if candidate.is_file() or candidate.is_absolute():
        return candidate
    bundled = REPO_ROOT / candidate
    return bundled if bundled.is_file() else candidate


@dataclass(frozen=True)
class ServerSettings:
    pipeline_path: Path
    public_url: str | None
    twilio_auth_token: str | None = field(repr=False)
    twilio_account_sid: str | None
    twilio_api_base_url: str | None
    log_level: str
    log_format: str = "text"
    observability: bool = True
    trace_file: str | None = None
    # Twilio's webhook shared key (HMAC-SHA256 signing, X-Twilio-Webhooks-Signature-Settings).
    twilio_webhook_shared_key: str | None = field(default=None, repr=False)
    daily_api_key: str | None = field(default=None, repr=False)
    daily_api_url: str = DEFAULT_DAILY_API_URL
    daily_room_expiry_secs: int = DEFAULT_DAILY_ROOM_EXPIRY_SECS
    daily_api_timeout_secs: float = DEFAULT_DAILY_API_TIMEOUT_SECS
    # SIGTERM/SIGINT: how long calls in flight may go on before the server ends them.
    drain_secs: float = DEFAULT_DRAIN_SECS
    # A WebRTC offer whose peer has not connected by then is ended (it holds a call's place).
    webrtc_connect_timeout_secs: float = DEFAULT_WEBRTC_CONNECT_TIMEOUT_SECS
    # TURN relay for the WebRTC peer connections (bot/turn.py); its repr hides the secret.
    turn: TurnConfig | None = None
    # Who may call over WebRTC (bot/webrtc_auth.py) and which other origins may ask (CORS).
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    session_secret: str | None = field(default=None, repr=False)
    session_ttl_secs: int = DEFAULT_SESSION_TTL_SECS
    cors_origins: tuple[str, ...] = ()
    # Limits (bot/limits.py): calls per process, call starts per client address, sizes.
    max_calls: int = DEFAULT_MAX_CALLS
    busy_message: str | None = None
    retry_after_secs: int = DEFAULT_RETRY_AFTER_SECS
    rate_limit: RateLimit | None = field(
        default_factory=lambda: parse_rate_limit(DEFAULT_RATE_LIMIT)
    )
    ws_max_bytes: int = DEFAULT_WS_MAX_BYTES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServerSettings:
        env = os.environ if environ is None else environ
        public_url = (env.get("VOICEBOT_PUBLIC_URL") or "").strip().rstrip("/") or None
        if public_url:
            parts = urlsplit(public_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise SettingsError(
                    f"VOICEBOT_PUBLIC_URL must be an http(s) URL like https://bot.example.com, "
                    f"got {public_url!r}"
                )
        token = env.get("TWILIO_AUTH_TOKEN") or None
        if token and not public_url:
            raise SettingsError(
                "TWILIO_AUTH_TOKEN is set but VOICEBOT_PUBLIC_URL is not: Twilio signs the public "
                "URL it calls, so the server needs it to check X-Twilio-Signature"
            )
        _check_otlp_protocol(env)
        return cls(
            pipeline_path=resolve_pipeline_path(env.get("VOICEBOT_PIPELINE", DEFAULT_PIPELINE)),
            public_url=public_url,
            twilio_auth_token=token,
            twilio_account_sid=env.get("TWILIO_ACCOUNT_SID") or None,
            twilio_api_base_url=(env.get("VOICEBOT_TWILIO_API_URL") or "").rstrip("/") or None,
            twilio_webhook_shared_key=(env.get("TWILIO_WEBHOOK_SHARED_KEY") or "").strip() or None,
            log_level=_log_level(env.get("VOICEBOT_LOG_LEVEL") or "INFO"),
            log_format=_one_of(
                "VOICEBOT_LOG_FORMAT", env.get("VOICEBOT_LOG_FORMAT") or "text", LOG_FORMATS
            ),
            observability=_one_of(
                "VOICEBOT_OBSERVABILITY", env.get("VOICEBOT_OBSERVABILITY") or "on", ("on", "off")
            )
            == "on",
            trace_file=env.get("VOICEBOT_TRACE_FILE") or None,
            daily_api_key=(env.get("DAILY_API_KEY") or "").strip() or None,
            daily_api_url=_http_url(
                "DAILY_API_URL", env.get("DAILY_API_URL") or DEFAULT_DAILY_API_URL
            ),
            daily_room_expiry_secs=int(
                _positive("DAILY_ROOM_EXPIRY_SECS", env, DEFAULT_DAILY_ROOM_EXPIRY_SECS)
            ),
            daily_api_timeout_secs=_positive(
                "DAILY_API_TIMEOUT_SECS", env, DEFAULT_DAILY_API_TIMEOUT_SECS
            ),
            drain_secs=_positive("VOICEBOT_DRAIN_SECONDS", env, DEFAULT_DRAIN_SECS),
            webrtc_connect_timeout_secs=_positive(
                "VOICEBOT_WEBRTC_CONNECT_TIMEOUT_SECONDS", env, DEFAULT_WEBRTC_CONNECT_TIMEOUT_SECS
            ),
            turn=_turn(env),
            **_webrtc_access(env),
            **_limits(env),
        )

    @property
    def daily_enabled(self) -> bool:
        return self.daily_api_key is not None

    @property
    def twilio_signatures_required(self) -> bool:
        return self.twilio_auth_token is not None


def _webrtc_access(env: Mapping[str, str]) -> dict[str, Any]:
    """VOICEBOT_API_KEYS, VOICEBOT_SESSION_SECRET, VOICEBOT_SESSION_TTL_SECONDS and
    VOICEBOT_CORS_ORIGINS; messages never quote a key or the secret."""
    keys = tuple(key.strip() for key in (env.get("VOICEBOT_API_KEYS") or "").split(","))
    keys = tuple(key for key in keys if key)
    for number, key in enumerate(keys, 1):
        if len(key) < MIN_API_KEY_CHARS:
            raise SettingsError(
                f"VOICEBOT_API_KEYS: key #{number} has {len(key)} characters; each key needs at "
                f"least {MIN_API_KEY_CHARS}"
            )
        if not key.isascii() or not key.isprintable() or " " in key:
            raise SettingsError(
                f"VOICEBOT_API_KEYS: key #{number} must be printable ASCII without spaces"
            )
    secret = (env.get("VOICEBOT_SESSION_SECRET") or "").strip() or None
    if secret is not None:
        if len(secret) < MIN_SESSION_SECRET_CHARS:
            raise SettingsError(
                f"VOICEBOT_SESSION_SECRET has {len(secret)} characters; it needs at least "
                f"{MIN_SESSION_SECRET_CHARS} (e.g. `openssl rand -hex 32`)"
            )
        if not keys:
            raise SettingsError(
                "VOICEBOT_SESSION_SECRET is set but VOICEBOT_API_KEYS is not: session tokens are "
                "minted with an API key, so set both (or neither, for local development)"
            )
    ttl_raw = (env.get("VOICEBOT_SESSION_TTL_SECONDS") or "").strip()
    ttl = DEFAULT_SESSION_TTL_SECS
    if ttl_raw:
        if not ttl_raw.isdigit() or int(ttl_raw) < 1:
            raise SettingsError(
                f"VOICEBOT_SESSION_TTL_SECONDS must be a whole number of seconds >= 1, "
                f"got {ttl_raw!r}"
            )
        ttl = int(ttl_raw)
    return {
        "api_keys": keys,
        "session_secret": secret,
        "session_ttl_secs": ttl,
        "cors_origins": _cors_origins(env.get("VOICEBOT_CORS_ORIGINS") or ""),
    }


def _cors_origins(raw: str) -> tuple[str, ...]:
    origins: list[str] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        if "*" in item:
            raise SettingsError(
                "VOICEBOT_CORS_ORIGINS must list explicit origins like https://app.example.com; "
                f"{item!r} is refused (a wildcard would let any web site call the bot)"
            )
        parts = urlsplit(item.rstrip("/"))
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path
            or parts.query
            or parts.fragment
            or "@" in parts.netloc
        ):
            raise SettingsError(
                "VOICEBOT_CORS_ORIGINS entries must be origins, scheme://host[:port] with no "
                f"path, like https://app.example.com; got {item!r}"
            )
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise SettingsError(f"VOICEBOT_CORS_ORIGINS: bad port in {item!r}") from None
        origin = f"{parts.scheme}://{parts.netloc.lower()}"
        if origin not in origins:
            origins.append(origin)
    return tuple(origins)


def _turn(env: Mapping[str, str]) -> TurnConfig | None:
    """VOICEBOT_TURN_URLS, VOICEBOT_TURN_SECRET, VOICEBOT_TURN_TTL_SECONDS; messages never quote
    the secret."""
    urls = tuple(u.strip() for u in (env.get("VOICEBOT_TURN_URLS") or "").split(",") if u.strip())
    secret = (env.get("VOICEBOT_TURN_SECRET") or "").strip()
    if not urls:
        if secret:
            raise SettingsError(
                "VOICEBOT_TURN_SECRET is set but VOICEBOT_TURN_URLS is not: list the TURN "
                "server's URLs, e.g. turn:turn.example.com:3478?transport=udp"
            )
        return None
    for url in urls:
        try:
            check_turn_url(url)
        except TurnConfigError as exc:
            raise SettingsError(f"VOICEBOT_TURN_URLS: {exc}") from None
    if not secret:
        raise SettingsError(
            "VOICEBOT_TURN_URLS is set but VOICEBOT_TURN_SECRET is not: the TURN server's "
            "static-auth-secret (coturn use-auth-secret) is needed to mint credentials"
        )
    raw_ttl = (env.get("VOICEBOT_TURN_TTL_SECONDS") or "").strip() or str(DEFAULT_TTL_SECS)
    try:
        ttl = int(raw_ttl)
    except ValueError:
        raise SettingsError(
            f"VOICEBOT_TURN_TTL_SECONDS must be a whole number of seconds, got {raw_ttl!r}"
        ) from None
    try:
        return TurnConfig(urls=urls, secret=secret, ttl_secs=ttl)
    except TurnConfigError as exc:
        name = "VOICEBOT_TURN_SECRET" if "secret" in str(exc) else "VOICEBOT_TURN_TTL_SECONDS"
        raise SettingsError(f"{name}: {exc}") from None


def _limits(env: Mapping[str, str]) -> dict[str, Any]:
    """VOICEBOT_MAX_CALLS, VOICEBOT_BUSY_MESSAGE, VOICEBOT_RETRY_AFTER_SECONDS,
    VOICEBOT_RATE_LIMIT, VOICEBOT_WS_MAX_BYTES and VOICEBOT_MAX_BODY_BYTES."""
    raw_rate = (env.get("VOICEBOT_RATE_LIMIT") or "").strip() or DEFAULT_RATE_LIMIT
    try:
        rate_limit = parse_rate_limit(raw_rate)
    except ValueError as exc:
        raise SettingsError(f"VOICEBOT_RATE_LIMIT: {exc}") from None
    busy = " ".join((env.get("VOICEBOT_BUSY_MESSAGE") or "").split()) or None
    if busy is not None and len(busy) > MAX_BUSY_MESSAGE_CHARS:
        raise SettingsError(
            f"VOICEBOT_BUSY_MESSAGE has {len(busy)} characters; at most "
            f"{MAX_BUSY_MESSAGE_CHARS} (it is read to callers the server cannot take)"
        )
    return {
        "max_calls": _whole("VOICEBOT_MAX_CALLS", env, DEFAULT_MAX_CALLS, 1, "calls"),
        "busy_message": busy,
        "retry_after_secs": _whole(
            "VOICEBOT_RETRY_AFTER_SECONDS", env, DEFAULT_RETRY_AFTER_SECS, 1, "seconds"
        ),
        "rate_limit": rate_limit,
        "ws_max_bytes": _whole("VOICEBOT_WS_MAX_BYTES", env, DEFAULT_WS_MAX_BYTES, 4096, "bytes"),
        "max_body_bytes": _whole(
            "VOICEBOT_MAX_BODY_BYTES", env, DEFAULT_MAX_BODY_BYTES, 4096, "bytes"
        ),
    }


def _whole(name: str, env: Mapping[str, str], default: int, minimum: int, unit: str) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise SettingsError(f"{name} must be a whole number of {unit} >= {minimum}, got {raw!r}")
    return value


def _check_otlp_protocol(env: Mapping[str, str]) -> None:
    traces = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
    protocol = (traces or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "").strip()
    if protocol and protocol != "http/protobuf":
        raise SettingsError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: traces are exported "
            "over OTLP/HTTP (http/protobuf, the collector's port 4318)"
        )


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in LOG_LEVELS:
        allowed = ", ".join(LOG_LEVELS)
        raise SettingsError(f"VOICEBOT_LOG_LEVEL must be one of {allowed}, got {raw!r}")
    return level


def _one_of(name: str, raw: str, allowed: tuple[str, ...]) -> str:
    value = raw.strip().lower()
    if value not in allowed:
        raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return value


def _http_url(name: str, value: str) -> str:
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"{name} must be an http(s) URL, got {url!r}")
    return url


def _positive(name: str, env: Mapping[str, str], default: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value):
        raise SettingsError(f"{name} must be a finite number of seconds, got {raw!r}")
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    return value
