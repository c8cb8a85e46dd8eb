"""Log set-up: loguru (Pipecat's logger) with the call_id of the call a line belongs to."""

from __future__ import annotations

import sys

from loguru import logger

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
        name.startswith(module) and marker in message
        for module, marker in _CONVERSATION_TEXT_LINES
    )


def configure_logging(level: str = "INFO") -> None:
    """One stderr sink; lines outside a call carry call_id '-'."""
    logger.remove()
    logger.configure(extra={"call_id": "-"})
    logger.add(
        sys.stderr,
        level=level,
        format=TEXT_FORMAT,
        filter=keeps_personal_data_out,
        backtrace=False,
        diagnose=False,
    )
