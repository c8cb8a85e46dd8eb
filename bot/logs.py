"""Log set-up: loguru (Pipecat's logger) with the call_id of the call a line belongs to."""

from __future__ import annotations

import sys

from loguru import logger

TEXT_FORMAT = (
    "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "<cyan>{extra[call_id]}</cyan> {name}: <level>{message}</level>"
)


def configure_logging(level: str = "INFO") -> None:
    """One stderr sink; lines outside a call carry call_id '-'."""
    logger.remove()
    logger.configure(extra={"call_id": "-"})
    logger.add(sys.stderr, level=level, format=TEXT_FORMAT, backtrace=False, diagnose=False)
