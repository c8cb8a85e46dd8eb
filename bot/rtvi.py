"""What an RTVI client is told when something in the call fails.

Pipecat's RTVIProcessor forwards each ErrorFrame's text to the client as it is: a provider's
error can name internal hosts and endpoints, quote a request, or carry a stack of exception
text, and the server's log has it already. The client needs to know which part of the bot
failed, what kind of failure it was and whether the call goes on, in words an app can show.
"""

from __future__ import annotations

from collections.abc import Mapping

import pipecat.processors.frameworks.rtvi.models as RTVI
from pipecat.frames.frames import ErrorFrame
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.processors.frameworks.rtvi import RTVIProcessor
from pipecat.utils.errors import ErrorCategory

_WHAT_HAPPENED = {
    ErrorCategory.AUTHENTICATION: "refused the server's credentials",
    ErrorCategory.AUTHORIZATION: "refused the server's credentials",
    ErrorCategory.RATE_LIMIT: "is rate limiting the server",
    ErrorCategory.QUOTA: "is out of quota",
    ErrorCategory.CONNECTIVITY: "could not be reached",
    ErrorCategory.INVALID_REQUEST: "rejected a request",
}


def client_error_text(frame: ErrorFrame, stages: Mapping[FrameProcessor, str]) -> str:
    """`The language model could not be reached`: the failing stage and the kind of failure."""
    stage = stages.get(frame.processor) if frame.processor is not None else None
    what = _WHAT_HAPPENED.get(frame.category or ErrorCategory.UNKNOWN, "failed")
    return f"The {stage} {what}" if stage else "The bot had an internal error"


class ClientSafeRTVIProcessor(RTVIProcessor):
    """Pipecat's RTVIProcessor whose `error` messages name the stage, not the provider's text.

    `stages`: the call's processors by the name a caller would use ("speech-to-text",
    "language model", "text-to-speech")."""

    def __init__(self, stages: Mapping[FrameProcessor, str]):
        super().__init__()
        self._stages = dict(stages)

    async def send_error(self, error: str) -> None:
        """A message meant for the client (Pipecat's own: its RTVI message was invalid)."""
        await self._send_client_error(error, fatal=False)

    async def _send_error_frame(self, frame: ErrorFrame) -> None:
        """An ErrorFrame from the pipeline: told by stage and kind, not by its text."""
        await self._send_client_error(client_error_text(frame, self._stages), fatal=frame.fatal)

    async def _send_client_error(self, text: str, *, fatal: bool) -> None:
        await self.push_transport_message(RTVI.Error(data=RTVI.ErrorData(error=text, fatal=fatal)))
