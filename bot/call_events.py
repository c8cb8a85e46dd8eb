"""Provider health events of one call, counted twice: in Prometheus (labelled by the call's
transport and pipeline) and in the call's own record, for its end-of-call summary.

Services that see a fault (the Deepgram socket re-opened, an LLM failing before its first token,
a stalled TTS) report it here; they never build metric labels themselves.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bot import metrics


@dataclass
class CallEvents:
    """What went wrong with the providers during one call."""

    transport: str
    pipeline: str
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def stt_reconnected(self, provider: str) -> None:
        metrics.STT_RECONNECTIONS.labels(self.transport, self.pipeline, provider).inc()
        self.counts["stt_reconnections"] += 1

    def llm_failed(self, provider: str, status_class: str) -> None:
        metrics.LLM_ERRORS.labels(self.transport, self.pipeline, provider, status_class).inc()
        self.counts["llm_errors"] += 1
        self.errors.append({"stage": "llm", "provider": provider, "status_class": status_class})

    def llm_failed_over(self, from_provider: str, to_provider: str, status_class: str) -> None:
        metrics.LLM_FAILOVERS.labels(
            self.transport, self.pipeline, from_provider, to_provider, status_class
        ).inc()
        self.counts["llm_failovers"] += 1

    def tts_stalled(self, provider: str) -> None:
        metrics.TTS_STALLS.labels(self.transport, self.pipeline, provider).inc()
        self.counts["tts_stalls"] += 1
        self.errors.append({"stage": "tts", "provider": provider, "status_class": "stall"})

    def pipeline_error(self, processor: str, fatal: bool) -> None:
        metrics.PIPELINE_ERRORS.labels(
            self.transport, self.pipeline, processor, str(fatal).lower()
        ).inc()
        self.counts["pipeline_errors"] += 1
        self.errors.append({"processor": processor, "fatal": fatal})
