"""The server's state for its lifetime: settings, the pipeline, shared models, live calls."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import os
import signal
import socket
import time
from types import FrameType

import uvicorn
from loguru import logger

from bot import observability
from bot.calls import CallRegistry
from bot.config import LoadedPipeline, load_pipeline, require_env
from bot.pipeline import preload
from bot.settings import ServerSettings

# After the drain's deadline (or a second signal) the calls left are ended politely (goodbye,
# then hang-up); what is still running this much later is cancelled.
DRAIN_GRACE_SECS = 5.0
# Once the drain is over, how long uvicorn waits for connections to close before it cancels.
CONNECTIONS_GRACE_SECS = 3.0


def freeze_startup_heap() -> int:
    """Move everything loaded at start-up (models, the redaction engine, SDKs: ~330,000 objects
    on the cloud pipeline) out of the garbage collector's reach. A full collection over them
    takes ~200 ms on the event loop, heard as a gap in every call's audio; after the freeze it
    scans only what calls allocate (BENCHMARKS.md, "Capacity")."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class Runtime:
    """Loads the pipeline at start-up, reports readiness, and ends calls at shutdown."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.loaded: LoadedPipeline = load_pipeline(settings.pipeline_path)
        require_env(self.loaded)
        self.calls = CallRegistry()
        self.ready = False
        self.draining = False
        self.load_error: str | None = None
        self._preload_task: asyncio.Task[None] | None = None
        self._drain_task: asyncio.Future[None] | None = None
        self._hurry = asyncio.Event()

    def announce(self) -> None:
        name = self.loaded.config.name
        logger.info(f"pipeline {name!r} from {self.loaded.path}")
        if self.settings.twilio_signatures_required:
            logger.info("Twilio routes require a valid X-Twilio-Signature")
        else:
            logger.warning(
                "TWILIO_AUTH_TOKEN is not set: Twilio routes serve loopback clients only "
                "(local development)"
            )

    async def start(self) -> None:
        """Load models in a worker thread; the server answers /healthz meanwhile."""
        self.announce()
        observability.set_enabled(self.settings.observability)
        if not self.settings.observability:
            logger.warning("VOICEBOT_OBSERVABILITY=off: no turn metrics, traces or call summaries")
        else:
            self._start_tracing()
        self._preload_task = asyncio.create_task(self._preload())

    def _start_tracing(self) -> None:
        from bot import tracing

        file_exporter = (
            tracing.JsonLinesSpanExporter(self.settings.trace_file)
            if self.settings.trace_file
            else None
        )
        if tracing.otlp_configured(os.environ):
            tracing.setup_tracing(tracing.otlp_exporter(), batch=True)
            logger.info("traces (scrubbed of conversation text) go over OTLP/HTTP")
            if file_exporter is not None:
                tracing.add_exporter(file_exporter)
        elif file_exporter is not None:
            tracing.setup_tracing(file_exporter)
        if file_exporter is not None:
            logger.info("traces (scrubbed of conversation text) go to VOICEBOT_TRACE_FILE")

    async def _preload(self) -> None:
        started = time.perf_counter()
        try:
            await asyncio.to_thread(preload, self.loaded)
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            logger.error(f"model loading failed, the server will not take calls: {self.load_error}")
            return
        frozen = freeze_startup_heap()
        self.ready = True
        logger.info(
            f"ready: models loaded in {time.perf_counter() - started:.1f}s "
            f"({frozen} start-up objects left out of garbage collection)"
        )

    async def wait_ready(self) -> None:
        if self._preload_task is not None:
            await self._preload_task

    @property
    def accepting_calls(self) -> bool:
        return self.ready and not self.draining

    async def drain(self, deadline_secs: float | None = None, *, cause: str = "shutdown") -> None:
        """Stop taking calls at once; let the calls in flight go on until they end or for
        `deadline_secs` (default VOICEBOT_DRAIN_SECONDS), whichever comes first; then end the
        rest politely (goodbye, hang-up) and cancel what is left DRAIN_GRACE_SECS later.

        Idempotent: a second call waits for the drain already under way."""
        if self._drain_task is None:
            secs = self.settings.drain_secs if deadline_secs is None else deadline_secs
            self.draining = True  # /readyz, the webhook and new streams see it from now on
            self._drain_task = asyncio.ensure_future(self._drain(secs, cause))
        await asyncio.shield(self._drain_task)

    def hurry(self) -> None:
        """End the calls now (a second signal): the drain skips the rest of its deadline."""
        self._hurry.set()

    async def _drain(self, deadline_secs: float, cause: str) -> None:
        started = time.monotonic()
        in_flight = len(self.calls)
        logger.info(
            f"{cause}: draining, no new calls; {in_flight} call(s) in flight may go on for up to "
            f"{deadline_secs:g}s"
        )
        ended_by_server = 0
        if not await self.calls.wait_idle(deadline_secs, self._hurry):
            ended_by_server = len(self.calls)
            why = "second signal" if self._hurry.is_set() else "drain deadline reached"
            logger.warning(f"{why}: ending {ended_by_server} call(s) politely")
            await self.calls.end_all(DRAIN_GRACE_SECS)
        logger.info(
            f"drained in {time.monotonic() - started:.1f}s: {in_flight} call(s) were in flight, "
            f"{ended_by_server} ended by the server"
        )

    async def stop(self) -> None:
        """Lifespan shutdown: drain (already done when a signal started it), then clean up."""
        await self.drain()
        if self._preload_task is not None and not self._preload_task.done():
            self._preload_task.cancel()
        from bot.tracing import shutdown_tracing

        shutdown_tracing()


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with SIGTERM and SIGINT draining the calls first.

    uvicorn on its own, at the first signal, closes the listening socket and fails every open
    WebSocket with 1012 (`Server.shutdown` → each protocol's `shutdown()`), and only then runs
    the lifespan shutdown: a phone call would be cut mid-sentence. Here the first signal starts
    `Runtime.drain` while uvicorn keeps serving (probes answer 503 "draining", new calls are
    refused, calls in flight go on); `should_exit` is set once the drain is over, and uvicorn's
    own shutdown then closes what is left. A second signal ends the calls at once (politely);
    a third is uvicorn's force quit. The process exits 0 after a drain.
    """

    def __init__(self, config: uvicorn.Config, runtime: Runtime):
        super().__init__(config)
        self.runtime = runtime
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Future[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: hand over to the event loop, whatever it was doing. In a fresh
        # context: the code the signal interrupted may be a call's (its call_id on the logs).
        if self._loop is None or not self.started:
            self.should_exit = True  # not serving yet: nothing to drain
            return
        self._loop.call_soon_threadsafe(self._on_signal, sig, context=contextvars.Context())

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self._drain is None:
            self._drain = asyncio.ensure_future(self.runtime.drain(cause=name))
            self._drain.add_done_callback(self._drained)
        elif not self._drain.done():
            logger.warning(f"{name} again: ending the calls in flight now")
            self.runtime.hurry()
        else:
            self.force_exit = True

    def _drained(self, task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.opt(exception=task.exception()).error("drain failed; shutting down")
        self.should_exit = True
