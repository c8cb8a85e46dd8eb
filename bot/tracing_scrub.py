"""No caller's words in exported traces.

Pipecat's OpenTelemetry spans carry the STT's raw `transcript`, the LLM's `input` and `output`,
and the TTS's `text`. `ScrubbingSpanExporter` wraps whatever exporter the server uses and drops
every attribute (on spans and on their events) that can hold conversation text, keeping timings,
models, token counts and ids. Wrap the exporter, not a processor: a span is immutable once it
has ended, so the exporter sends scrubbed copies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

# Exact keys, and words that mark a key as text wherever they appear in it.
_TEXT_KEYS = frozenset({"input", "output", "text", "text_output", "transcript", "value"})
_TEXT_WORDS = ("transcript", "message", "content", "prompt", "completion", "argument", "result")
REDACTED = "[scrubbed]"


def is_text_attribute(key: str) -> bool:
    lowered = key.lower()
    if lowered in _TEXT_KEYS or lowered.split(".")[-1] in _TEXT_KEYS:
        return not lowered.endswith(("is_input", "_tokens", ".type", "_count"))
    return any(word in lowered for word in _TEXT_WORDS) and not lowered.endswith(
        ("_tokens", ".is_input", "_count")
    )


def scrub_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        key: (REDACTED if is_text_attribute(key) else value)
        for key, value in (attributes or {}).items()
    }


def scrub_span(span: ReadableSpan) -> ReadableSpan:
    events: Sequence[Event] = [
        Event(event.name, scrub_attributes(event.attributes), event.timestamp)
        for event in span.events
    ]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=scrub_attributes(span.attributes),
        events=events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class ScrubbingSpanExporter(SpanExporter):
    """Exports scrubbed copies of the spans through `inner`."""

    def __init__(self, inner: SpanExporter):
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([scrub_span(span) for span in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
