"""Keep the LLM's context small: only the most recent messages go to the model.

A voice call needs the last few exchanges, not the whole history: a short context answers
sooner and costs less. `ContextWindow` sits before the LLM and trims the shared context in place
to at most `max_messages`, cutting at a user message so the model never sees a reply without the
question it answered. The system prompt is not a context message (it travels in the LLM's
settings), so it is always kept.
"""

from __future__ import annotations

from typing import Any

from pipecat.frames.frames import Frame, LLMContextFrame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


def _role(message: Any) -> str | None:
    if isinstance(message, dict):
        return message.get("role")
    return getattr(message, "role", None)


def trim_context(context: LLMContext, max_messages: int) -> int:
    """Drop the oldest messages beyond `max_messages`; returns how many were dropped."""
    messages = context.get_messages()
    if len(messages) <= max_messages:
        return 0
    cut = len(messages) - max_messages
    while cut < len(messages) - 1 and _role(messages[cut]) != "user":
        cut += 1
    context.set_messages(messages[cut:])
    return cut


class ContextWindow(FrameProcessor):
    """Trims each turn's context to the most recent `max_messages` before the LLM sees it."""

    def __init__(self, max_messages: int):
        super().__init__(name="ContextWindow")
        self._max_messages = max_messages

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            trim_context(frame.context, self._max_messages)
        await self.push_frame(frame, direction)
