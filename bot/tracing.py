"""OpenTelemetry traces of calls, scrubbed of conversation text before they leave the process.

Pipecat's spans (conversation → turn → stt / llm / tts), each with the call's `call.id`,
`call.transport` and `pipeline.name` attributes, go:
- over OTLP (HTTP/protobuf) when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` or
  `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (the exporter reads the other `OTEL_*`
  variables itself: headers, timeout, compression);
- to a file with `VOICEBOT_TRACE_FILE=/path/spans.jsonl`, one JSON object a line;
- nowhere otherwise: tracing stays off and costs nothing.
Every exporter goes through `ScrubbingSpanExporter`: the caller's words, raw or redacted, never
reach a trace.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

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


# The call's attributes: Pipecat puts them on the conversation span only; every span of the
# call carries them here, so any one span can be found by call id.
CALL_ATTRIBUTES = ("call.id", "call.transport", "pipeline.name")


class CallAttributesSpanProcessor(SpanProcessor):
    """Copies the call's attributes from a span's parent onto the span when it starts.

    Pipecat hands its spans their parent as a bare span context, so the parents are looked up
    among the spans this process has open.
    """

    def __init__(self) -> None:
        self._open: dict[int, Span] = {}
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        parent_id = span.parent.span_id if span.parent is not None else None
        with self._lock:
            self._open[span.context.span_id] = span
            parent = self._open.get(parent_id) if parent_id is not None else None
        attributes = (parent.attributes if parent is not None else None) or {}
        for key in CALL_ATTRIBUTES:
            if key in attributes:
                span.set_attribute(key, attributes[key])

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            self._open.pop(span.context.span_id, None)


OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def otlp_configured(environ: Mapping[str, str]) -> bool:
    return any((environ.get(name) or "").strip() for name in OTLP_ENDPOINT_VARIABLES)


def otlp_exporter() -> SpanExporter:
    """The OTLP/HTTP span exporter; it reads the standard OTEL_EXPORTER_OTLP_* variables
    itself (the protocol is checked with the server's settings at start-up)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def setup_tracing(exporter: SpanExporter, *, batch: bool = False) -> TracerProvider:
    """Install a tracer provider that exports scrubbed spans through `exporter`.

    `batch`: export from a background thread in batches (network exporters), so a slow
    collector never holds up a call's event loop.
    """
    global _provider
    provider = TracerProvider(resource=Resource.create({"service.name": "voicebot"}))
    provider.add_span_processor(CallAttributesSpanProcessor())
    scrubbed = ScrubbingSpanExporter(exporter)
    processor = BatchSpanProcessor(scrubbed) if batch else SimpleSpanProcessor(scrubbed)
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def add_exporter(exporter: SpanExporter, *, batch: bool = False) -> None:
    """One more scrubbed exporter on the installed provider (e.g. a file beside OTLP)."""
    assert _provider is not None, "setup_tracing first"
    scrubbed = ScrubbingSpanExporter(exporter)
    _provider.add_span_processor(
        BatchSpanProcessor(scrubbed) if batch else SimpleSpanProcessor(scrubbed)
    )


def tracing_enabled() -> bool:
    return _provider is not None


def shutdown_tracing() -> None:
    if _provider is not None:
        _provider.shutdown()
