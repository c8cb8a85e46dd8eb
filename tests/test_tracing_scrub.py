"""Exported spans keep timings and ids but no conversation text."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bot.tracing_scrub import REDACTED, ScrubbingSpanExporter, is_text_attribute

SECRET = "my social is 123-45-6789"


def test_text_attributes_are_scrubbed_and_the_rest_kept() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(memory)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("stt") as span:
        span.set_attribute("transcript", SECRET)
        span.set_attribute("input", f'[{{"role": "user", "content": "{SECRET}"}}]')
        span.set_attribute("output", SECRET)
        span.set_attribute("text", SECRET)
        span.set_attribute("gen_ai.usage.input_tokens", 12)
        span.set_attribute("transcript.is_input", True)
        span.set_attribute("metrics.ttfb", 0.25)
        span.set_attribute("conversation.id", "call-1")
        span.add_event("said", {"message": SECRET, "turn": 3})
    (exported,) = memory.get_finished_spans()
    attributes = dict(exported.attributes or {})
    assert SECRET not in repr(attributes) and "6789" not in repr(exported.to_json())
    assert attributes["transcript"] == REDACTED
    assert attributes["gen_ai.usage.input_tokens"] == 12
    assert attributes["transcript.is_input"] is True
    assert attributes["metrics.ttfb"] == 0.25
    assert attributes["conversation.id"] == "call-1"
    assert dict(exported.events[0].attributes or {}) == {"message": REDACTED, "turn": 3}


def test_what_counts_as_text() -> None:
    for key in (
        "transcript",
        "input",
        "output",
        "text",
        "text_output",
        "gen_ai.prompt",
        "llm.messages",
        "tool.arguments",
        "function.result",
    ):
        assert is_text_attribute(key), key
    for key in (
        "gen_ai.usage.output_tokens",
        "transcript.is_input",
        "metrics.ttfb",
        "gen_ai.request.model",
        "conversation.id",
        "voice_id",
        "is_final",
    ):
        assert not is_text_attribute(key), key


def test_trace_file_gets_one_scrubbed_json_span_a_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from bot.tracing import JsonLinesSpanExporter

    path = tmp_path / "spans.jsonl"
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(ScrubbingSpanExporter(JsonLinesSpanExporter(path)))
    )
    tracer = provider.get_tracer("test")
    for number in range(2):
        with tracer.start_as_current_span(f"turn-{number}") as span:
            span.set_attribute("transcript", SECRET)
            span.set_attribute("conversation.id", "call-7")
    spans = [json.loads(line) for line in path.read_text().splitlines()]
    assert [s["name"] for s in spans] == ["turn-0", "turn-1"]
    assert all(s["attributes"]["conversation.id"] == "call-7" for s in spans)
    assert "6789" not in path.read_text()
