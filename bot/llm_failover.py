"""LLM failover within the caller's turn.

Pipecat's `LLMSwitcher` with its failover strategy moves to another LLM once the active one can
no longer work at all, and the turn that failed is lost: the caller hears nothing. A rate limit
(429), an overloaded or broken server (5xx), a refused connection or a model that never starts
talking are not that kind of failure, yet the caller is waiting now.

`TurnFailoverLLMSwitcher` keeps the turn's context frame and, when the active LLM fails before
its first token (an error, or no token within `first_token_timeout_secs`), replays that turn on
the next LLM of the pipeline's `fallback` list. Downstream sees one response: a late or failed
attempt's output is held back by a filter behind each LLM, and a replacement's start frame is
dropped. A failed LLM is skipped for `cooldown_secs` before it is tried first again. When every
LLM has failed the bot says a short apology instead of going silent.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    FunctionCallInProgressFrame,
    FunctionCallsStartedFrame,
    InterruptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    LLMThoughtEndFrame,
    LLMThoughtStartFrame,
    LLMThoughtTextFrame,
    ManuallySwitchServiceFrame,
    TTSSpeakFrame,
)
from pipecat.pipeline.llm_switcher import LLMSwitcher
from pipecat.pipeline.service_switcher import ServiceSwitcher, ServiceSwitcherStrategyManual
from pipecat.processors.filters.function_filter import FunctionFilter
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.llm_service import LLMService

from bot.call_events import CallEvents

APOLOGY = "Sorry, I'm having trouble answering right now. Please try again in a moment."

# What an LLM says in answer to a turn: only the active LLM's copies may leave the switcher.
_RESPONSE_FRAMES = (
    LLMFullResponseStartFrame,
    LLMFullResponseEndFrame,
    LLMTextFrame,
    LLMThoughtStartFrame,
    LLMThoughtTextFrame,
    LLMThoughtEndFrame,
    FunctionCallsStartedFrame,
    FunctionCallInProgressFrame,
)


def failure_reason(error: BaseException | None) -> str:
    """The status class of an LLM failure: 429, 4xx, 5xx, timeout, connection or error."""
    if error is None:
        return "error"
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        if status == 429:
            return "429"
        return "5xx" if status >= 500 else "4xx"
    name = type(error).__name__.lower()
    if "timeout" in name or isinstance(error, TimeoutError):
        return "timeout"
    if "connection" in name or "protocol" in name or isinstance(error, ConnectionError | OSError):
        return "connection"
    return "error"


@dataclass
class _Turn:
    context_frame: LLMContextFrame
    service_index: int
    started: bool = False  # a response start frame went downstream
    text_seen: bool = False
    tried: set[int] = field(default_factory=set)


class TurnFailoverLLMSwitcher(LLMSwitcher):
    """An `LLMSwitcher` that answers the same turn with the next LLM when one fails."""

    def __init__(
        self,
        llms: list[LLMService],
        *,
        first_token_timeout_secs: float | None = 3.0,
        cooldown_secs: float = 30.0,
        apology: str = APOLOGY,
        providers: list[str] | None = None,
        events: CallEvents | None = None,
    ):
        super().__init__(llms, ServiceSwitcherStrategyManual)
        self._llms = llms
        # The pipeline file's provider of each LLM: bounded metric labels, unlike service names.
        self.providers = providers or [llm.name for llm in llms]
        self._events = events
        self._first_token_timeout = first_token_timeout_secs
        self._cooldown = cooldown_secs
        self._apology = apology
        self._failed_at: dict[int, float] = {}
        self._turn: _Turn | None = None
        self._timer: asyncio.Task[None] | None = None
        # Every interruption sent to stop a stalled LLM: dropped when it comes back out, and
        # not the caller's barge-in, so the turn's observer (the latency breakdown) ignores it.
        self.private_interruptions: set[int] = set()

    @staticmethod
    def _make_pipeline_definitions(services: list[FrameProcessor], strategy: Any) -> list[Any]:
        """Each branch as Pipecat builds it, plus a filter that holds back the response frames
        of an LLM that is no longer the active one (a failed or abandoned attempt)."""
        branches = []
        for service in services:
            branch = ServiceSwitcher._make_pipeline_definition(service, strategy)

            async def from_active(frame: Frame, service: FrameProcessor = service) -> bool:
                return service is strategy.active_service or not isinstance(frame, _RESPONSE_FRAMES)

            output_filter = FunctionFilter(
                filter=from_active,
                direction=FrameDirection.DOWNSTREAM,
                filter_system_frames=True,
                enable_direct_mode=True,
            )
            branches.append([*branch[:2], output_filter, *branch[2:]])
        return branches

    @property
    def active_index(self) -> int:
        return self._llms.index(self.strategy.active_service)  # type: ignore[arg-type]

    # -- frames entering the switcher --------------------------------------------------------

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, LLMContextFrame) and direction == FrameDirection.DOWNSTREAM:
            await self._start_turn(frame)
            return
        if isinstance(frame, InterruptionFrame) and direction == FrameDirection.DOWNSTREAM:
            self._end_turn()
        await super().process_frame(frame, direction)

    async def _start_turn(self, frame: LLMContextFrame) -> None:
        self._end_turn()
        index = self._preferred_index()
        if index != self.active_index:
            await self._switch_to(index)
        self._turn = _Turn(context_frame=frame, service_index=index, tried={index})
        self._arm_timer()
        await super().process_frame(frame, FrameDirection.DOWNSTREAM)

    def _usable(self, index: int) -> bool:
        return self._llms[index].is_usable

    def _preferred_index(self) -> int:
        """The first usable LLM that has not failed recently (else the one that failed longest
        ago)."""
        now = time.monotonic()
        candidates = [i for i in range(len(self._llms)) if self._usable(i)] or [self.active_index]
        for index in candidates:
            failed = self._failed_at.get(index)
            if failed is None or now - failed >= self._cooldown:
                return index
        return min(candidates, key=lambda i: self._failed_at.get(i, 0.0))

    async def _switch_to(self, index: int) -> None:
        await super().process_frame(
            ManuallySwitchServiceFrame(service=self._llms[index]), FrameDirection.DOWNSTREAM
        )

    # -- frames leaving the switcher ---------------------------------------------------------

    async def push_frame(self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM):
        if isinstance(frame, InterruptionFrame) and frame.id in self.private_interruptions:
            return  # ours, sent to stop a stalled LLM
        turn = self._turn
        if turn is not None and direction == FrameDirection.DOWNSTREAM:
            if isinstance(frame, LLMFullResponseStartFrame):
                if turn.started:
                    return  # a replacement's start: downstream already has one for this turn
                turn.started = True
            elif isinstance(frame, LLMTextFrame):
                turn.text_seen = True
                self._cancel_timer()
            elif isinstance(frame, LLMFullResponseEndFrame):
                self._end_turn()
        if (
            isinstance(frame, ErrorFrame)
            and direction == FrameDirection.UPSTREAM
            and not frame.fatal
            and turn is not None
            and not turn.text_seen
            and frame.processor is self._llms[turn.service_index]
        ):
            await self._fail_over(failure_reason(frame.exception), frame)
            return
        await super().push_frame(frame, direction)

    # -- failover ----------------------------------------------------------------------------

    async def _fail_over(self, reason: str, error: ErrorFrame | None) -> None:
        turn = self._turn
        if turn is None:
            return
        self._cancel_timer()
        failed = turn.service_index
        failed_name = self._llms[failed].name
        self._failed_at[failed] = time.monotonic()
        if self._events is not None:
            self._events.llm_failed(self.providers[failed], reason)
        remaining = [i for i in range(len(self._llms)) if i not in turn.tried and self._usable(i)]
        if not remaining:
            logger.error(f"every LLM failed this turn (last: {failed_name}, {reason})")
            if error is not None:
                await super().push_frame(error, FrameDirection.UPSTREAM)
            if not turn.started:
                # Keep the turn's shape (start, speech, end) for the TTS and the aggregator.
                turn.started = True
                await super().push_frame(LLMFullResponseStartFrame())
            await super().push_frame(TTSSpeakFrame(self._apology))
            if error is None:  # a stalled LLM will never send its end frame: send one
                self._turn = None
                await super().push_frame(LLMFullResponseEndFrame())
            return
        nxt = remaining[0]
        logger.warning(
            f"LLM {failed_name} failed before its first token ({reason}); "
            f"answering this turn with {self._llms[nxt].name}"
        )
        if self._events is not None:
            self._events.llm_failed_over(self.providers[failed], self.providers[nxt], reason)
        turn.service_index = nxt
        turn.tried.add(nxt)
        await self._switch_to(nxt)
        self._arm_timer()
        await super().process_frame(turn.context_frame, FrameDirection.DOWNSTREAM)

    def _arm_timer(self) -> None:
        self._cancel_timer()
        if self._first_token_timeout is None or self._turn is None:
            return
        self._timer = asyncio.create_task(self._first_token_deadline(self._turn))

    async def _first_token_deadline(self, turn: _Turn) -> None:
        await asyncio.sleep(self._first_token_timeout or 0)
        if self._turn is not turn or turn.text_seen:
            return
        self._timer = None
        stalled = self._llms[turn.service_index]
        await self._fail_over("timeout", None)
        # Stop the stalled request so that LLM is free for later turns. Its output, if any,
        # is held back by its branch filter; the interruption it passes on is ours to drop.
        interruption = InterruptionFrame()
        self.private_interruptions.add(interruption.id)
        await stalled.queue_frame(interruption)

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    def _end_turn(self) -> None:
        self._cancel_timer()
        self._turn = None

    async def cleanup(self) -> None:
        self._end_turn()
        await super().cleanup()
