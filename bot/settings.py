"""Server settings, read once from the environment. Secrets stay here and are never logged."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PIPELINE = "pipelines/local.yaml"
DEFAULT_DAILY_API_URL = "https://api.daily.co/v1"
DEFAULT_DAILY_ROOM_EXPIRY_SECS = 1200
DEFAULT_DAILY_API_TIMEOUT_SECS = 10.0
DEFAULT_DRAIN_SECS = 10.0
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
    daily_api_key: str | None = field(default=None, repr=False)
    daily_api_url: str = DEFAULT_DAILY_API_URL
    daily_room_expiry_secs: int = DEFAULT_DAILY_ROOM_EXPIRY_SECS
    daily_api_timeout_secs: float = DEFAULT_DAILY_API_TIMEOUT_SECS
    # SIGTERM/SIGINT: how long calls in flight may go on before the server ends them.
    drain_secs: float = DEFAULT_DRAIN_SECS

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
        )

    @property
    def daily_enabled(self) -> bool:
        return self.daily_api_key is not None

    @property
    def twilio_signatures_required(self) -> bool:
        return self.twilio_auth_token is not None


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
