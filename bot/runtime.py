"""The server's state for its lifetime: settings, the pipeline, shared models, live calls."""

from __future__ import annotations

import asyncio
import os
import time

from loguru import logger

from bot import observability
from bot.calls import CallRegistry
from bot.config import LoadedPipeline, load_pipeline, require_env
from bot.pipeline import preload
from bot.settings import ServerSettings

DRAIN_GRACE_SECS = 10.0


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
        self.ready = True
        logger.info(f"ready: models loaded in {time.perf_counter() - started:.1f}s")

    async def wait_ready(self) -> None:
        if self._preload_task is not None:
            await self._preload_task

    @property
    def accepting_calls(self) -> bool:
        return self.ready and not self.draining

    async def stop(self) -> None:
        """Stop taking calls, let calls in flight end politely, then cancel the rest."""
        self.draining = True
        await self.calls.end_all(DRAIN_GRACE_SECS)
        if self._preload_task is not None and not self._preload_task.done():
            self._preload_task.cancel()
        from bot.tracing import shutdown_tracing

        shutdown_tracing()
