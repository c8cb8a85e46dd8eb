"""Log set-up: loguru (Pipecat's logger) with the call_id of the call a line belongs to.

Two formats, chosen by `VOICEBOT_LOG_FORMAT`:
- `text` (default, development): coloured lines on stderr;
- `json` (production): one JSON object a line on stdout, with `call_id` on every line.

Lines from the standard `logging` module (uvicorn, aiortc, httpx, ...) are routed through
loguru, so they share the format, the call_id and the personal-data filter.

Secrets: every value of an environment variable named like a credential (`*_KEY`, `*_KEYS`,
`*_TOKEN`, `*_SECRET`, `*_PASSWORD`) is replaced by `[secret]` in every line, whatever wrote it
(an SDK's debug line with a request's headers, an error that quotes a URL with a key in it).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from loguru import logger

from bot.settings import LOG_FORMATS

NO_CALL = "-"

TEXT_FORMAT = (
    "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "<cyan>{extra[call_id]}</cyan> {name}: <level>{message}</level>"
)


# Log lines in which a library writes conversation text: what the caller said (before
# redaction) or what the bot is about to say. They never reach a sink, whatever the level.
_CONVERSATION_TEXT_LINES = (
    ("pipecat.services.whisper", "Transcription:"),
    ("pipecat.services", "Generating TTS ["),
    ("pipecat.services", "TTS request:"),
)


def keeps_personal_data_out(record: dict) -> bool:  # type: ignore[type-arg]
    """loguru filter: False for records that would carry conversation text."""
    name = record["name"] or ""
    message = record["message"]
    if record["level"].name == "TRACE" and name.startswith("pipecat."):
        return False
    return not any(
        name.startswith(module) and marker in message for module, marker in _CONVERSATION_TEXT_LINES
    )


SECRET = "[secret]"
_CREDENTIAL_NAME = re.compile(r"(_KEY|_KEYS|_TOKEN|_SECRET|_PASSWORD)$")
_MIN_SECRET_LEN = 8  # shorter values would scrub ordinary words


def secret_values(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The values of the environment's credential variables (a comma list counts each item)."""
    env = os.environ if environ is None else environ
    found: set[str] = set()
    for name, value in env.items():
        if _CREDENTIAL_NAME.search(name.upper()):
            for item in (value, *value.split(",")):
                item = item.strip()
                if len(item) >= _MIN_SECRET_LEN:
                    found.add(item)
    return tuple(sorted(found, key=len, reverse=True))  # longest first: no partial leftovers


# The values no line may carry, set by configure_logging (read by the filter and json_line).
_secrets: tuple[str, ...] = ()


def _without_secrets(text: str) -> str:
    for value in _secrets:
        if value in text:
            text = text.replace(value, SECRET)
    return text


def filter_line(record: dict) -> bool:  # type: ignore[type-arg]
    """The sink's loguru filter: no conversation text, and no secret in the message."""
    if not keeps_personal_data_out(record):
        return False
    record["message"] = _without_secrets(record["message"])
    return True


def json_line(record: Any) -> str:
    """One loguru record as one line of JSON (the `json` format)."""
    extra = record["extra"]
    line: dict[str, Any] = {
        "ts": record["time"].isoformat(timespec="milliseconds"),
        "level": record["level"].name,
        "call_id": extra.get("call_id", NO_CALL),
        "logger": record["name"],
        "message": record["message"],
    }
    for key, value in extra.items():
        if key != "call_id":
            line[key] = value  # json.dumps below writes what is not JSON as its str()
    exception = record["exception"]
    if exception is not None and exception.type is not None:
        line["exception"] = _without_secrets(f"{exception.type.__name__}: {exception.value}")
    return json.dumps(line, ensure_ascii=False, default=str)


def _json_sink(message: Any) -> None:
    sys.stdout.write(json_line(message.record) + "\n")
    sys.stdout.flush()


class _ToLoguru(logging.Handler):
    """Sends standard-library log records to loguru, keeping their logger name and level."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.patch(lambda r: r.update(name=record.name)).opt(exception=record.exc_info).log(
            level, record.getMessage()
        )


def route_stdlib_logging(level: str) -> None:
    """Route the `logging` module's records (uvicorn, aiortc, ...) through loguru."""
    number = logger.level(level).no  # loguru's levels share the stdlib's numbers
    logging.basicConfig(handlers=[_ToLoguru()], level=number, force=True)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        stdlib = logging.getLogger(name)
        stdlib.handlers = []
        stdlib.propagate = True
    # One line per HTTP request (health checks, scrapes) or per ICE candidate pair is noise;
    # warnings and errors still come through.
    for name in ("uvicorn.access", "aioice", "aiortc"):
        logging.getLogger(name).setLevel(max(logging.WARNING, number))
    # The WebSocket handshakes' headers (provider keys among them) at DEBUG: never wanted.
    logging.getLogger("websockets").setLevel(max(logging.INFO, number))


def configure_logging(
    level: str = "INFO", log_format: str = "text", secrets: Iterable[str] | None = None
) -> None:
    """One sink; lines outside a call carry call_id '-'. `secrets`: the values no line may
    carry (default: the environment's credentials, `secret_values()`)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    global _secrets
    _secrets = secret_values() if secrets is None else tuple(secrets)
    logger.remove()
    logger.configure(extra={"call_id": NO_CALL})
    common: dict[str, Any] = {
        "level": level,
        "filter": filter_line,
        "backtrace": False,
        "diagnose": False,
    }
    if log_format == "json":
        logger.add(_json_sink, format="{message}", **common)
    else:
        logger.add(sys.stderr, format=TEXT_FORMAT, **common)
    route_stdlib_logging(level)
