"""The one pipeline builder: a pipeline file plus a transport make one call.

transport in → STT → PII redactor → user aggregator (VAD + end of turn) → LLM (with turn
failover) → TTS (with a stall guard) → transport out → assistant aggregator. The transport is
chosen at the edge (`transports/`); this module only sees its input and output processors and
the call's audio rates.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

from loguru import logger
from pipecat.frames.frames import EndFrame, TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frameworks.rtvi.frames import RTVIServerMessageFrame
from pipecat.processors.frameworks.rtvi.observer import RTVIObserverParams
from pipecat.transports.base_transport import BaseTransport
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

from bot import observability
from bot.audio_analyzers import turn_model_yields
from bot.call import CallInfo
from bot.call_observer import (
    CallObserver,
    StageOwner,
    SummaryFile,
    TurnRecord,
    turn_latency_message,
)
from bot.caller_audio_sink import CallerAudioSink
from bot.config import STAGES, LoadedPipeline
from bot.context_window import ContextWindow
from bot.llm_failover import TurnFailoverLLMSwitcher
from bot.phrase_cache import for_call as phrase_cache_for_call
from bot.registry import get_provider
from bot.rtvi import ClientSafeRTVIProcessor
from bot.tracing import tracing_enabled
from bot.tts_stall import TTSStallGuard


def preload(loaded: LoadedPipeline) -> None:
    """Load every model the pipeline's providers share between calls (start-up, blocking)."""
    config = loaded.config
    stages = [(name, name, getattr(config, name)) for name in STAGES]
    stages += [("llm", f"llm.fallback[{i}]", b) for i, b in enumerate(config.llm.fallback)]
    for kind, where, stage in stages:
        hook = get_provider(kind, stage.provider).load_preload()
        if hook is not None:
            hook(loaded.options[where])
    turn_model_yields(not has_local_models(loaded))


def has_local_models(loaded: LoadedPipeline) -> bool:
    """Whether an STT, LLM or TTS stage (fallbacks included) runs a model in this process."""
    config = loaded.config
    stages = [(kind, getattr(config, kind).provider) for kind in ("stt", "llm", "tts")]
    stages += [("llm", backup.provider) for backup in config.llm.fallback]
    return any(get_provider(kind, provider).offline for kind, provider in stages)


def _build_stage(
    loaded: LoadedPipeline, kind: str, where: str, provider: str, call: CallInfo
) -> Any:
    factory = get_provider(kind, provider).load_factory()
    if kind == "llm":
        return factory(loaded.options[where], call, system_instruction=loaded.config.prompt)
    return factory(loaded.options[where], call)


class CallSession:
    """One call's pipeline, its worker and its lifecycle (greeting, idle, goodbye, end)."""

    def __init__(
        self, loaded: LoadedPipeline, call: CallInfo, transport: BaseTransport, *, rtvi: bool
    ):
        self.call = call
        self._rtvi = rtvi
        self.loaded = loaded
        config = loaded.config
        self._policy = config.call
        self._idle_prompts = 0
        self._ending = False
        self.end_reason = "completed"  # how the call ended, unless it failed
        self._deadline_task: asyncio.Task[None] | None = None

        vad = _build_stage(loaded, "vad", "vad", config.vad.provider, call)
        stop_strategies = _build_stage(loaded, "turn", "turn", config.turn.provider, call)
        self.stt = _build_stage(loaded, "stt", "stt", config.stt.provider, call)
        redactor = _build_stage(loaded, "redact", "redact", config.redact.provider, call)
        llms = [_build_stage(loaded, "llm", "llm", config.llm.provider, call)]
        llms += [
            _build_stage(loaded, "llm", f"llm.fallback[{i}]", backup.provider, call)
            for i, backup in enumerate(config.llm.fallback)
        ]
        llm_providers = [config.llm.provider, *(b.provider for b in config.llm.fallback)]
        llm = TurnFailoverLLMSwitcher(
            llms,
            first_token_timeout_secs=config.llm.first_token_timeout_secs,
            cooldown_secs=config.llm.failover_cooldown_secs,
            providers=llm_providers,
            events=call.events,
        )
        tts = _build_stage(loaded, "tts", "tts", config.tts.provider, call)
        # What an RTVI client is told failed, when something does (bot/rtvi.py).
        client_stages = {self.stt: "speech-to-text", tts: "text-to-speech", redactor: "redactor"}
        client_stages |= {service: "language model" for service in [llm, *llms]}
        # The greeting, idle prompt and goodbye: synthesised once per process and output rate,
        # then played from the phrase cache (bot/phrase_cache.py) without the provider.
        self.phrases = phrase_cache_for_call(loaded, call)
        tts_stages: list[Any] = [tts]
        guard: TTSStallGuard | None = None
        if config.tts.stall_timeout_secs is not None:
            guard = TTSStallGuard(
                tts,
                timeout_secs=config.tts.stall_timeout_secs,
                sample_rate=call.audio_out_sample_rate,
                provider=config.tts.provider,
                events=call.events,
            )
            tts_stages = [guard.input_watch, tts, guard]
        tts_stages = [self.phrases.gate, *tts_stages]
        tts_stages.insert(tts_stages.index(tts) + 1, self.phrases.player)

        self.context = LLMContext()
        aggregators = LLMContextAggregatorPair(
            self.context,
            user_params=LLMUserAggregatorParams(
                vad_analyzer=vad,
                user_turn_strategies=UserTurnStrategies(stop=stop_strategies),
                user_idle_timeout=self._policy.idle_timeout_secs,
            ),
        )
        user_aggregator = aggregators.user()
        user_aggregator.add_event_handler("on_user_turn_idle", self._on_user_idle)
        user_aggregator.add_event_handler("on_user_turn_started", self._on_user_turn_started)

        pipeline = Pipeline(
            [
                transport.input(),
                self.stt,
                redactor,
                user_aggregator,
                CallerAudioSink(),  # nothing after here listens to the caller's audio
                ContextWindow(config.llm.max_context_messages),
                llm,
                *tts_stages,
                transport.output(),
                aggregators.assistant(),
            ]
        )
        observe = observability.enabled()
        self.observer: CallObserver | None = None
        observers: list[Any] = []
        if observe:
            owners = {self.stt: StageOwner("stt", config.stt.provider)}
            owners |= {s: StageOwner("llm", p) for s, p in zip(llms, llm_providers, strict=True)}
            owners[tts] = StageOwner("tts", config.tts.provider)
            self.observer = CallObserver(
                call,
                owners=owners,
                stt=self.stt,
                redactor=redactor,
                turn_provider=config.turn.provider,
                redact_text=getattr(redactor, "redact_text", lambda text: text),
                private_interruptions=lambda frame_id: (
                    frame_id in llm.private_interruptions
                    or (guard is not None and frame_id in guard.private_interruptions)
                ),
            )
            observers = [self.observer]
        self.worker = PipelineWorker(
            pipeline,
            params=PipelineParams(
                audio_in_sample_rate=call.audio_in_sample_rate,
                audio_out_sample_rate=call.audio_out_sample_rate,
                enable_metrics=observe,
            ),
            conversation_id=call.call_id,
            additional_span_attributes={
                "call.id": call.call_id,
                "call.transport": call.transport,
                "pipeline.name": call.pipeline,
            },
            enable_tracing=tracing_enabled(),
            enable_turn_tracking=observe or tracing_enabled(),
            enable_rtvi=rtvi,
            rtvi_processor=ClientSafeRTVIProcessor(client_stages) if rtvi else None,
            # The RTVI observer reports a frame on its first push: the STT's raw transcript
            # must never reach the client, only the redactor's copy.
            rtvi_observer_params=RTVIObserverParams(ignored_sources=[self.stt]) if rtvi else None,
            idle_timeout_secs=None,
            observers=observers,
        )
        if self.observer is not None:
            self.observer.attach_turn_tracking(self.worker.turn_tracking_observer)
            if rtvi:
                self.observer.on_turn = self._report_turn_latency

    async def _report_turn_latency(self, record: TurnRecord) -> None:
        """The turn's latency to the RTVI client (a `server-message`): the page's readout."""
        await self.worker.queue_frame(RTVIServerMessageFrame(data=turn_latency_message(record)))

    async def greet(self) -> None:
        """Say the greeting (once the transport is connected)."""
        if self._deadline_task is None:
            self._deadline_task = asyncio.create_task(self._end_at_deadline())
        if self.observer is not None:
            self.observer.call_set_up()
        greeting = self.loaded.config.greeting
        if greeting:
            await self.worker.queue_frames([TTSSpeakFrame(greeting)])

    async def end(self, *, goodbye: bool = True, reason: str = "bot_ended") -> None:
        """End the call politely: say goodbye, then an EndFrame (Twilio: REST hang-up)."""
        if self._ending:
            return
        self._ending = True
        self.end_reason = reason
        frames: list[Any] = []
        if self._rtvi:  # the app says why the call ended, not "the connection dropped"
            frames.append(RTVIServerMessageFrame(data={"type": "call-ended", "reason": reason}))
        if goodbye and self._policy.goodbye:
            frames.append(TTSSpeakFrame(self._policy.goodbye))
        frames.append(EndFrame())
        await self.worker.queue_frames(frames)

    async def cancel(self) -> None:
        """The caller is gone: stop at once."""
        if not self._ending:
            self.end_reason = "caller_hung_up"
        self._ending = True
        await self.worker.cancel()

    async def run(self) -> None:
        """Run the call to its end."""
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(self.worker)
        try:
            await runner.run()
        finally:
            if self._deadline_task is not None:
                self._deadline_task.cancel()

    async def _end_at_deadline(self) -> None:
        await asyncio.sleep(self._policy.max_duration_secs)
        logger.info("call reached its maximum duration")
        await self.end(reason="max_duration")

    async def _on_user_turn_started(self, *_: Any) -> None:
        self._idle_prompts = 0

    async def _on_user_idle(self, *_: Any) -> None:
        if self._ending:
            return
        if self._idle_prompts < self._policy.idle_prompts_before_hangup:
            self._idle_prompts += 1
            await self.worker.queue_frames([TTSSpeakFrame(self._policy.idle_prompt)])
            return
        logger.info("caller idle: ending the call")
        await self.end(reason="caller_idle")

    def write_summary(self, *, outcome: str, duration_secs: float, started_at: float) -> None:
        """Log the call's summary (and append it to the pipeline's summary file, if any)."""
        if self.observer is None:
            return
        try:
            summary = self.observer.summary(
                outcome=outcome, duration_secs=duration_secs, started_at=started_at
            )
            logger.bind(call_summary=summary).info(
                "call summary " + json.dumps(summary, ensure_ascii=False)
            )
            path = self.loaded.config.observability.summary_file
            if path:
                _summary_file(path).write(summary)
        except Exception as exc:  # a summary must never take the call's clean-up down with it
            logger.error(f"call summary not written: {type(exc).__name__}: {exc}")


@functools.cache
def _summary_file(path: str) -> SummaryFile:
    return SummaryFile(path)
