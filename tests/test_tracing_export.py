"""Traces of whole phone calls, as an operator's collector would receive them.

- In memory: a child process serves the app in-process with `bot.tracing.setup_tracing(
  InMemorySpanExporter())` and makes one Twilio call (tests/support/traced_call.py).
- Over OTLP/HTTP: `voicebot serve` with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a tiny receiver
  in this process, which decodes the protobuf export requests; a server without the variables
  sends nothing.
- `CallAttributesSpanProcessor` on a private tracer provider.

Every span of a call carries its `call.id` (the CallSid), `call.transport` and `pipeline.name`,
hangs under the call's conversation span, and holds none of the conversation's words.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan

from bot.caller.twilio import TwilioCaller, run_twilio_call
from bot.tracing import CallAttributesSpanProcessor
from tests.support.otlp import OtlpReceiver
from tests.support.servers import REPO, RunningServer, start_server

PIPECAT_SPANS = {"conversation", "turn", "stt", "llm", "tts"}
# Words of the question ("What color is the sky on a clear day?") and of the answer.
CONVERSATION_WORDS = re.compile(r"\bsky\b|\bblue\b|\bcolou?r\b|clear day", re.IGNORECASE)
OTLP_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def check_call_spans(spans: list[dict[str, Any]], call_sid: str) -> None:
    """`spans`: {name, span_id, parent_id, attributes} of one server that took one call."""
    names = {span["name"] for span in spans}
    assert PIPECAT_SPANS <= names, f"missing spans: {PIPECAT_SPANS - names}"
    call_spans = [span for span in spans if "http.route" not in span["attributes"]]
    for span in call_spans:
        attributes = span["attributes"]
        assert attributes.get("call.id") == call_sid, (span["name"], attributes)
        assert attributes.get("call.transport") == "twilio", (span["name"], attributes)
        assert attributes.get("pipeline.name") == "local", (span["name"], attributes)

    by_id = {span["span_id"]: span for span in spans}

    def parent_name(span: dict[str, Any]) -> str | None:
        parent = by_id.get(span["parent_id"])
        return parent["name"] if parent is not None else None

    conversations = [span for span in spans if span["name"] == "conversation"]
    assert len(conversations) == 1, conversations
    turns = [span for span in spans if span["name"] == "turn"]
    assert turns and all(span["parent_id"] == conversations[0]["span_id"] for span in turns)
    for span in spans:
        if span["name"] in ("stt", "llm", "tts"):
            assert parent_name(span) == "turn", f"{span['name']} under {parent_name(span)}"
    # One turn both heard the question and answered it.
    assert any(
        {"stt", "llm", "tts"} <= {s["name"] for s in spans if s["parent_id"] == turn["span_id"]}
        for turn in turns
    ), "no turn with stt, llm and tts"

    routes = {span["attributes"]["http.route"] for span in spans if span not in call_spans}
    assert "/twilio/voice" in routes and "/twilio/stream" not in routes, routes
    assert not routes & {"/readyz", "/healthz", "/metrics"}, routes

    leaked = [
        (span["name"], key, value)
        for span in spans
        for key, value in span["attributes"].items()
        if CONVERSATION_WORDS.search(json.dumps(value))
    ]
    assert not leaked, f"conversation text reached a span: {leaked}"


def check_call_answered(result: dict[str, Any]) -> None:
    assert result["error"] is None, result
    assert result["first_reply_audio_ms"] is not None and not result["reply_timed_out"], result


# ---- 1. in memory, in the server's own process --------------------------------------------


@pytest.mark.slow
def test_in_memory_spans_of_a_phone_call(speech: dict[str, Path]) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("OTEL_") and key != "VOICEBOT_TRACE_FILE"
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.traced_call", str(speech["sky"])],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, f"traced_call failed:\n{done.stderr[-4000:]}"
    output = json.loads(done.stdout.strip().splitlines()[-1])
    result = output["call"]
    check_call_answered(result)
    spans = output["spans"]
    assert {span["resource"].get("service.name") for span in spans} == {"voicebot"}
    check_call_spans(spans, result["call_sid"])


# ---- 2. over OTLP/HTTP --------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def otlp_server(receiver: OtlpReceiver, tmp_path: Path) -> Iterator[RunningServer]:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    server = start_server(REPO / "pipelines/local.yaml", tmp_path / "otlp.log", env=env)
    yield server
    server.stop()


@pytest.mark.slow
async def test_otlp_receives_the_call_spans_scrubbed(
    receiver: OtlpReceiver, otlp_server: RunningServer, speech: dict[str, Path]
) -> None:
    assert "traces (scrubbed of conversation text) go over OTLP/HTTP" in otlp_server.log()
    result = await run_twilio_call(speech["sky"], otlp_server.url)
    check_call_answered(result)
    spans = receiver.wait_for_spans(result["call_sid"])

    assert receiver.requests and all(
        request == ("POST", "/v1/traces", "application/x-protobuf") for request in receiver.requests
    ), receiver.requests
    assert {span["resource"].get("service.name") for span in spans} == {"voicebot"}
    check_call_spans(spans, result["call_sid"])
    raw = b"".join(receiver.bodies).decode("utf-8", errors="replace")
    assert not CONVERSATION_WORDS.search(raw), "conversation text reached the collector"


DEFAULT_OTLP_PORT = 4318  # where an exporter with no endpoint configured would send


@pytest.fixture
def default_port_receiver() -> Iterator[OtlpReceiver]:
    """A receiver on the OTLP/HTTP default port when it is free (else on any port)."""
    try:
        receiver = OtlpReceiver(DEFAULT_OTLP_PORT)
    except OSError:
        receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.mark.slow
async def test_a_server_without_otlp_variables_exports_nothing(
    default_port_receiver: OtlpReceiver, local_server: RunningServer
) -> None:
    unset = [name for name in (*OTLP_VARIABLES, "VOICEBOT_TRACE_FILE") if os.environ.get(name)]
    assert not unset, f"the local_server fixture inherits {unset} from this environment"
    async with TwilioCaller(local_server.url) as caller:
        assert await caller.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
        assert await caller.wait_for_bot_quiet(gap=0.7, max_wait=15)
    await asyncio.sleep(1.5)  # several OTEL_BSP_SCHEDULE_DELAYs' worth, had it been configured
    assert default_port_receiver.requests == []
    traces_lines = [line for line in local_server.log().splitlines() if "traces (" in line]
    assert not traces_lines, f"the server says it traces: {traces_lines}"


# ---- 3. CallAttributesSpanProcessor -------------------------------------------------------


def test_call_attributes_reach_spans_started_from_a_bare_parent_context() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(CallAttributesSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")

    conversation = tracer.start_span("conversation")
    # Set after the span started, as Pipecat does with additional_span_attributes.
    conversation.set_attribute("call.id", "CA123")
    conversation.set_attribute("call.transport", "twilio")
    conversation.set_attribute("pipeline.name", "local")
    conversation.set_attribute("conversation.id", "CA123")

    def under(span: trace.Span) -> Any:
        return trace.set_span_in_context(NonRecordingSpan(span.get_span_context()))

    turn = tracer.start_span("turn", context=under(conversation))
    stt = tracer.start_span("stt", context=under(turn))
    stt.end()
    turn.end()
    orphan = tracer.start_span("orphan")
    orphan.end()
    conversation.end()
    late = tracer.start_span("late", context=under(conversation))  # parent already ended
    late.end()
    provider.shutdown()

    spans = {span.name: dict(span.attributes or {}) for span in exporter.get_finished_spans()}
    call = {"call.id": "CA123", "call.transport": "twilio", "pipeline.name": "local"}
    for name in ("turn", "stt"):
        assert {key: spans[name].get(key) for key in call} == call, (name, spans[name])
        assert "conversation.id" not in spans[name], "only the call's attributes are copied"
    assert not set(spans["orphan"]) & set(call), spans["orphan"]
    assert not set(spans["late"]) & set(call), "ended spans are forgotten"
