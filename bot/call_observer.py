"""One call's record and the turn-stage histograms, from Pipecat's own observers and metrics.

`CallObserver` is Pipecat's `UserBotLatencyObserver` (voice-to-voice with its breakdown into
named contributions, and each service's TTFB) that also reads the call's frames (metrics,
transcripts, errors) and listens to the worker's `TurnTrackingObserver` (barge-ins). One
observer, not two: Pipecat queues every frame to every observer, so each one costs CPU per
frame. Per turn it observes the Prometheus histograms once and keeps a latency breakdown; at
the call's end it writes the call summary.

Nothing here times a stage by hand: every number comes from Pipecat's metrics frames and
latency observer. The transcript it keeps is the redactor's output and the bot's spoken text,
itself passed through the call's redactor.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    BotStoppedSpeakingFrame,
    ErrorFrame,
    InterruptionFrame,
    MetricsFrame,
    TranscriptionFrame,
    TTSTextFrame,
    VADUserStartedSpeakingFrame,
)
from pipecat.metrics.metrics import TurnMetricsData
from pipecat.observers.base_observer import FramePushed
from pipecat.observers.turn_tracking_observer import TurnTrackingObserver
from pipecat.observers.user_bot_latency_observer import (
    LatencyBreakdown,
    MeasuredFrom,
    UserBotLatencyObserver,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from bot import metrics
from bot.call import CallInfo


@dataclass(frozen=True)
class StageOwner:
    """Which pipeline stage, and which provider of the pipeline file, a processor is."""

    stage: str  # stt | llm | tts
    provider: str


@dataclass
class TurnRecord:
    """One caller turn and the bot's reply to it."""

    turn: int
    voice_to_voice_ms: float
    stages_ms: dict[str, float]
    stt_latency_ms: float | None
    turn_end_decision_ms: float | None
    llm_first_token_ms: float | None
    tts_first_chunk_ms: float | None
    llm_provider: str | None


def turn_latency_message(record: TurnRecord) -> dict[str, Any]:
    """A turn's latency as the RTVI `server-message` the browser client shows (`turn-latency`)."""
    return {"type": "turn-latency", **asdict(record)}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def transcript_confidence(frame: TranscriptionFrame) -> float | None:
    """The STT's confidence in a final transcript, where the STT reports one (0..1)."""
    result = frame.result
    if isinstance(result, dict):
        value = result.get("confidence")
    else:
        try:  # Deepgram's Results message
            value = result.channel.alternatives[0].confidence
        except (AttributeError, IndexError, TypeError):
            return None
    return float(value) if isinstance(value, int | float) else None


@dataclass
class _Transcript:
    lines: list[dict[str, str]] = field(default_factory=list)
    bot_words: list[str] = field(default_factory=list)

    def user(self, text: str) -> None:
        self.flush_bot()
        self.lines.append({"role": "user", "text": text.strip()})

    def bot(self, text: str) -> None:
        self.bot_words.append(text.strip())

    def flush_bot(self) -> None:
        words = [w for w in self.bot_words if w]
        if words:
            self.lines.append({"role": "bot", "text": " ".join(words)})
        self.bot_words = []


class CallObserver(UserBotLatencyObserver):
    """Per-turn latency by stage, STT confidence, barge-ins and errors of one call."""

    def __init__(
        self,
        call: CallInfo,
        *,
        owners: dict[FrameProcessor, StageOwner],
        stt: FrameProcessor,
        redactor: FrameProcessor,
        turn_provider: str,
        redact_text: Callable[[str], str],
        private_interruptions: Callable[[int], bool] = lambda _frame_id: False,
    ):
        super().__init__()
        self._call = call
        self._owners = owners
        self._owner_names = {processor.name: owner for processor, owner in owners.items()}
        self._stt = stt
        self._redactor = redactor
        self._turn_provider = turn_provider
        self._redact_text = redact_text
        self._private_interruption = private_interruptions
        self._labels = (call.transport, call.pipeline)
        self._turn_decision_secs: float | None = None
        self.turns: list[TurnRecord] = []
        self.interruptions = 0
        self.confidences: list[float] = []
        self.transcript = _Transcript()
        self.setup_secs: float | None = None
        self.add_event_handler("on_latency_breakdown", self._on_latency_breakdown)
        # Told each turn's record as it is made (the RTVI client's latency readout).
        self.on_turn: Callable[[TurnRecord], Awaitable[None]] | None = None

    def attach_turn_tracking(self, turns: TurnTrackingObserver | None) -> None:
        if turns is not None:
            turns.add_event_handler("on_turn_ended", self._on_turn_ended)

    # -- the call's set-up --------------------------------------------------------------------

    def call_set_up(self) -> None:
        """The transport is connected and the greeting queued: the call is set up."""
        if self.setup_secs is not None:
            return
        self.setup_secs = time.monotonic() - self._call.setup_started
        metrics.CALL_SETUP.labels(*self._labels).observe(self.setup_secs)

    # -- frames -------------------------------------------------------------------------------

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        if isinstance(frame, InterruptionFrame) and self._private_interruption(frame.id):
            return  # a stalled service being stopped: the turn goes on (failover, fallback)
        await super().on_push_frame(data)  # the latency breakdown
        if isinstance(frame, MetricsFrame):
            for item in frame.data:
                if isinstance(item, TurnMetricsData):
                    self._turn_decision_secs = item.e2e_processing_time_ms / 1000
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._turn_decision_secs = None
        elif isinstance(frame, TranscriptionFrame):
            self._on_transcript(data.source, frame)
        elif isinstance(frame, TTSTextFrame) and data.direction == FrameDirection.DOWNSTREAM:
            self.transcript.bot(frame.text)
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self.transcript.flush_bot()
        elif isinstance(frame, ErrorFrame):
            owner = self._owners.get(data.source)
            if owner is None or owner.stage != "llm":  # LLM failures: counted by the failover
                self._call.events.pipeline_error(type(data.source).__name__, bool(frame.fatal))

    def _on_transcript(self, source: FrameProcessor, frame: TranscriptionFrame) -> None:
        if source is self._stt:
            confidence = transcript_confidence(frame)
            if confidence is not None:
                self.confidences.append(confidence)
                provider = self._owners[self._stt].provider
                metrics.STT_CONFIDENCE.labels(*self._labels, provider).observe(confidence)
        elif source is self._redactor:
            self.transcript.user(frame.text)

    async def _on_turn_ended(self, _observer: Any, _turn: int, _secs: float, interrupted: bool):
        if interrupted:
            self.interruptions += 1
            metrics.INTERRUPTIONS.labels(*self._labels).inc()

    # -- one turn's latency -------------------------------------------------------------------

    async def _on_latency_breakdown(self, _observer: Any, breakdown: LatencyBreakdown) -> None:
        if breakdown.measured_from != MeasuredFrom.USER_SILENCE:
            return  # the greeting: timed from the client connecting, not a turn
        stages: dict[str, float] = {}
        for part in breakdown.contributions:
            stages[part.key] = stages.get(part.key, 0.0) + part.duration_secs
        # Each stage's first byte in this turn: the first one, except for the LLM, whose last
        # is the one that answered (an LLM that failed over can report its abandoned wait).
        ttfb: dict[str, tuple[float, str]] = {}
        for item in breakdown.ttfb:
            owner = self._owner_names.get(item.processor)
            if owner is not None and (owner.stage == "llm" or owner.stage not in ttfb):
                ttfb[owner.stage] = (item.duration_secs, owner.provider)
        stt_secs = ttfb["stt"][0] if "stt" in ttfb else stages.get("transcription")
        decision = self._turn_decision_secs
        if decision is None and breakdown.user_turn_secs is not None:
            decision = max(0.0, breakdown.user_turn_secs - stages.get("endpointing_wait", 0.0))
        self._observe(breakdown.total_secs, stt_secs, decision, ttfb)
        record = TurnRecord(
            turn=len(self.turns) + 1,
            voice_to_voice_ms=_ms(breakdown.total_secs) or 0.0,
            stages_ms={key: round(secs * 1000, 1) for key, secs in stages.items()},
            stt_latency_ms=_ms(stt_secs),
            turn_end_decision_ms=_ms(decision),
            llm_first_token_ms=_ms(ttfb["llm"][0]) if "llm" in ttfb else None,
            tts_first_chunk_ms=_ms(ttfb["tts"][0]) if "tts" in ttfb else None,
            llm_provider=ttfb["llm"][1] if "llm" in ttfb else None,
        )
        self.turns.append(record)
        parts = ", ".join(f"{key} {ms:.0f}" for key, ms in record.stages_ms.items())
        logger.info(
            f"turn {record.turn}: voice-to-voice {record.voice_to_voice_ms:.0f} ms ({parts})"
        )
        if self.on_turn is not None:
            await self.on_turn(record)

    def _observe(
        self,
        total: float,
        stt_secs: float | None,
        decision: float | None,
        ttfb: dict[str, tuple[float, str]],
    ) -> None:
        transport, pipeline = self._labels
        metrics.TURNS.labels(transport, pipeline).inc()
        metrics.VOICE_TO_VOICE.labels(transport, pipeline).observe(total)
        if stt_secs is not None:
            stt_provider = self._owners[self._stt].provider
            metrics.STT_LATENCY.labels(transport, pipeline, stt_provider).observe(stt_secs)
        if decision is not None:
            metrics.TURN_END_DECISION.labels(transport, pipeline, self._turn_provider).observe(
                decision
            )
        if "llm" in ttfb:
            secs, provider = ttfb["llm"]
            metrics.LLM_FIRST_TOKEN.labels(transport, pipeline, provider).observe(secs)
        if "tts" in ttfb:
            secs, provider = ttfb["tts"]
            metrics.TTS_FIRST_CHUNK.labels(transport, pipeline, provider).observe(secs)

    # -- the call's summary -------------------------------------------------------------------

    def summary(self, *, outcome: str, duration_secs: float, started_at: float) -> dict[str, Any]:
        """The call's one record: latency by turn, barge-ins, errors, outcome, transcript."""
        self.transcript.flush_bot()
        events = self._call.events
        v2v = [t.voice_to_voice_ms for t in self.turns]
        return {
            "call_id": self._call.call_id,
            "transport": self._call.transport,
            "pipeline": self._call.pipeline,
            "started_at": datetime.fromtimestamp(started_at, UTC).isoformat(timespec="seconds"),
            "duration_secs": round(duration_secs, 2),
            "setup_ms": _ms(self.setup_secs),
            "outcome": outcome,
            "turns": len(self.turns),
            "voice_to_voice_ms": {
                "median": round(statistics.median(v2v), 1) if v2v else None,
                "max": max(v2v) if v2v else None,
            },
            "turn_latency": [asdict(turn) for turn in self.turns],
            "interruptions": self.interruptions,
            "stt_confidence": {
                "count": len(self.confidences),
                "mean": round(statistics.fmean(self.confidences), 3) if self.confidences else None,
                "min": round(min(self.confidences), 3) if self.confidences else None,
            },
            "provider_events": dict(events.counts),
            "errors": list(events.errors),
            "transcript": [
                {"role": line["role"], "text": self._redact_text(line["text"])}
                for line in self.transcript.lines
            ],
        }


class SummaryFile:
    """Appends call summaries to a JSON-lines file (the pipeline file's `observability`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, summary: dict[str, Any]) -> None:
        line = json.dumps(summary, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line)
