"""The calls this process is running: started as tasks, counted, ended at shutdown.

One call's failure is contained in its own task: it is logged and counted, and no other call
or the server sees it.
"""

from __future__ import annotations

import asyncio
import time

from loguru import logger
from prometheus_client import Counter, Gauge, Histogram

from bot.pipeline import CallSession

ACTIVE_CALLS = Gauge("voicebot_active_calls", "Calls in progress", ["transport"])
CALLS_STARTED = Counter("voicebot_calls_started_total", "Calls started", ["transport"])
CALLS_ENDED = Counter("voicebot_calls_ended_total", "Calls ended", ["transport", "outcome"])
CALL_DURATION = Histogram(
    "voicebot_call_duration_seconds",
    "Call duration",
    ["transport"],
    buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 3600),
)


class CallRegistry:
    """Active calls by call_id."""

    def __init__(self) -> None:
        self._sessions: dict[str, CallSession] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, call_id: str) -> CallSession | None:
        return self._sessions.get(call_id)

    def start(self, session: CallSession) -> asyncio.Task[None]:
        """Run a call in the background; return its task."""
        task = asyncio.create_task(self.run(session), name=f"call:{session.call.call_id}")
        self._background.add(task)  # the loop keeps only a weak reference to tasks
        task.add_done_callback(self._background.discard)
        return task

    async def run(self, session: CallSession) -> None:
        """Run a call in the current task until it ends, whatever happens inside it."""
        call = session.call
        self._sessions[call.call_id] = session
        current = asyncio.current_task()
        if current is not None:
            self._tasks[call.call_id] = current
        ACTIVE_CALLS.labels(call.transport).inc()
        CALLS_STARTED.labels(call.transport).inc()
        started = time.monotonic()
        outcome = "completed"
        with logger.contextualize(call_id=call.call_id):
            logger.info(f"call started ({call.transport})")
            try:
                await session.run()
            except asyncio.CancelledError:
                outcome = "cancelled"
                raise
            except Exception as exc:
                outcome = "error"
                logger.exception(f"call failed: {type(exc).__name__}")
            finally:
                duration = time.monotonic() - started
                ACTIVE_CALLS.labels(call.transport).dec()
                CALLS_ENDED.labels(call.transport, outcome).inc()
                CALL_DURATION.labels(call.transport).observe(duration)
                self._sessions.pop(call.call_id, None)
                self._tasks.pop(call.call_id, None)
                logger.info(f"call ended ({outcome}) after {duration:.1f}s")

    async def end_all(self, grace_secs: float) -> None:
        """Ask every call to end politely, then cancel what is left after `grace_secs`."""
        for session in list(self._sessions.values()):
            await session.end()
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_secs)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
