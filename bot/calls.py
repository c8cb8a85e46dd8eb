"""The calls this process is running: started as tasks, counted, ended at shutdown.

One call's failure is contained in its own task: it is logged and counted, and no other call
or the server sees it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from loguru import logger

from bot.metrics import ACTIVE_CALLS, CALL_DURATION, CALLS_ENDED, CALLS_STARTED
from bot.pipeline import CallSession


class _SetUp:
    """One call admitted and being set up: it counts against VOICEBOT_MAX_CALLS (`occupied`)
    from its admission until it is registered as running, or its set-up ends without a call."""

    def __init__(self, registry: CallRegistry):
        self._registry = registry
        self.handed_over = False  # a task took the set-up over: it releases it
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._registry._setting_up -= 1


# The set-up the current request (or the call task it started) is doing, if any.
_SET_UP: ContextVar[_SetUp | None] = ContextVar("call_set_up", default=None)


class CallRegistry:
    """Active calls by call_id."""

    def __init__(self) -> None:
        self._sessions: dict[str, CallSession] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()  # set while no call is running
        self._idle.set()
        self._setting_up = 0

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def occupied(self) -> int:
        """Calls running plus calls admitted and still being set up (`reserve`): what
        VOICEBOT_MAX_CALLS bounds."""
        return len(self._sessions) + self._setting_up

    @contextmanager
    def reserve(self) -> Iterator[None]:
        """Hold a place for the call this block sets up (a Twilio stream before its `start`,
        a WebRTC offer, a Daily room): counted in `occupied` until the call runs, or the block
        ends without one. A call task started inside the block (`start`, `hand_over`) takes the
        place over until it runs or ends."""
        set_up = _SetUp(self)
        self._setting_up += 1
        token = _SET_UP.set(set_up)
        try:
            yield
        finally:
            _SET_UP.reset(token)
            if not set_up.handed_over:
                set_up.release()

    def hand_over(self, task: asyncio.Task[None]) -> None:
        """`task`, created inside `reserve()`, will run the call: the place is held until the
        task registers the call (`run`) or ends."""
        set_up = _SET_UP.get()
        if set_up is not None and not set_up.released:
            set_up.handed_over = True
            task.add_done_callback(lambda _: set_up.release())

    def get(self, call_id: str) -> CallSession | None:
        return self._sessions.get(call_id)

    def start(self, session: CallSession) -> asyncio.Task[None]:
        """Run a call in the background; return its task."""
        task = asyncio.create_task(self.run(session), name=f"call:{session.call.call_id}")
        self.hand_over(task)
        self._background.add(task)  # the loop keeps only a weak reference to tasks
        task.add_done_callback(self._background.discard)
        return task

    async def run(self, session: CallSession) -> None:
        """Run a call in the current task until it ends, whatever happens inside it."""
        call = session.call
        self._sessions[call.call_id] = session
        set_up = _SET_UP.get()
        if set_up is not None:
            set_up.release()  # counted as a running call from now on
        self._idle.clear()
        current = asyncio.current_task()
        if current is not None:
            self._tasks[call.call_id] = current
        labels = (call.transport, call.pipeline)
        ACTIVE_CALLS.labels(*labels).inc()
        CALLS_STARTED.labels(*labels).inc()
        started, started_wall = time.monotonic(), time.time()
        outcome: str | None = None
        with logger.contextualize(call_id=call.call_id):
            logger.info(f"call started ({call.transport}, pipeline {call.pipeline})")
            try:
                await session.run()
            except asyncio.CancelledError:
                outcome = "cancelled"
                raise
            except Exception as exc:
                outcome = "error"
                logger.exception(f"call failed: {type(exc).__name__}")
            finally:
                outcome = outcome or session.end_reason
                duration = time.monotonic() - started
                ACTIVE_CALLS.labels(*labels).dec()
                CALLS_ENDED.labels(*labels, outcome).inc()
                CALL_DURATION.labels(*labels).observe(duration)
                self._sessions.pop(call.call_id, None)
                self._tasks.pop(call.call_id, None)
                if not self._sessions:
                    self._idle.set()
                logger.info(f"call ended ({outcome}) after {duration:.1f}s")
                session.write_summary(
                    outcome=outcome, duration_secs=duration, started_at=started_wall
                )

    async def wait_idle(self, max_secs: float, interrupt: asyncio.Event | None = None) -> bool:
        """Wait until no call is left, at most `max_secs` seconds or until `interrupt` is set;
        True when no call is left."""
        waiters = [asyncio.create_task(self._idle.wait())]
        if interrupt is not None:
            waiters.append(asyncio.create_task(interrupt.wait()))
        try:
            await asyncio.wait(waiters, timeout=max_secs, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return not self._sessions

    async def end_all(self, grace_secs: float) -> None:
        """Ask every call to end politely, then cancel what is left after `grace_secs`."""
        for session in list(self._sessions.values()):
            await session.end(reason="shutdown")
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_secs)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
