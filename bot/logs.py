"""Log set-up: loguru (Pipecat's logger) with the call_id of the call a line belongs to."""

from __future__ import annotations

import sys

from loguru import logger

TEXT_FORMAT = (
    "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "<cyan>{extra[call_id]}</cyan> {name}: <level>{message}</level>"
)


# Log lines in which a library writes what the caller said, before redaction. They never reach
# a sink, whatever the level.
_RAW_TRANSCRIPT_LINES = (
    ("pipecat.services.whisper", "Transcription:"),
)


def keeps_personal_data_out(record: dict) -> bool:  # type: ignore[type-arg]
    """loguru filter: False for records that would carry a raw transcript."""
    name = record["name"] or ""
    message = record["message"]
    if record["level"].name == "TRACE" and name.startswith("pipecat."):
        return False
    return not any(
        name.startswith(module) and message.startswith(prefix)
        for module, prefix in _RAW_TRANSCRIPT_LINES
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
