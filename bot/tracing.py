"""OpenTelemetry traces of calls, scrubbed of conversation text before they leave the process.

`VOICEBOT_TRACE_FILE=/path/spans.jsonl` writes every finished span, one JSON object a line
(Pipecat's spans: one per call, turn, STT, LLM and TTS step, tagged with the call id as
`conversation.id`). Every exporter goes through `ScrubbingSpanExporter`: the caller's words,
raw or redacted, never reach a trace.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from bot.tracing_scrub import ScrubbingSpanExporter

_provider: TracerProvider | None = None


class JsonLinesSpanExporter(SpanExporter):
    """Appends each span as one line of JSON to a file."""

    def __init__(self, path: str | Path):
        self._path = Path(path)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(json.loads(span.to_json())) + "\n" for span in spans)
        with self._lock, self._path.open("a", encoding="utf-8") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def setup_tracing(exporter: SpanExporter) -> TracerProvider:
    """Install a tracer provider that exports scrubbed spans through `exporter`."""
    global _provider
    provider = TracerProvider(resource=Resource.create({"service.name": "voicebot"}))
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(exporter)))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def tracing_enabled() -> bool:
    return _provider is not None


def shutdown_tracing() -> None:
    if _provider is not None:
        _provider.shutdown()
