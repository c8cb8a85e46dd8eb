"""Observability end to end: a server with JSON logs, a summary file and a trace file takes a
two-turn Twilio call and a WebRTC call on the offline stack; then `/metrics`, the summaries, the
log lines and the spans are read back as an operator's tools would read them."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.caller.twilio import TwilioCaller
from bot.caller.webrtc import run_webrtc_call
from tests.support.metrics import sample
from tests.support.servers import REPO, RunningServer, start_server
from tests.test_twilio_call import pcm8k

pytestmark = pytest.mark.slow

HISTOGRAMS = (
    "voicebot_voice_to_voice_seconds",
    "voicebot_stt_latency_seconds",
    "voicebot_turn_end_decision_seconds",
    "voicebot_llm_first_token_seconds",
    "voicebot_tts_first_chunk_seconds",
    "voicebot_stt_confidence",
)


class ObservedServer:
    def __init__(self, server: RunningServer, folder: Path):
        self.server = server
        self.summaries = folder / "summaries.jsonl"
        self.spans = folder / "spans.jsonl"

    @property
    def url(self) -> str:
        return self.server.url

    def summary(self, call_id: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.summaries.exists():
                for line in self.summaries.read_text().splitlines():
                    record = json.loads(line)
                    if record["call_id"] == call_id:
                        return record
            time.sleep(0.2)
        raise AssertionError(f"no summary for {call_id}:\n{self.server.log()[-3000:]}")

    def log_lines(self) -> list[dict[str, Any]]:
        lines = self.server.log().splitlines()
        not_json = [line for line in lines if not line.startswith("{")]
        assert not not_json, f"log lines that are not JSON: {not_json[:3]}"
        return [json.loads(line) for line in lines]

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            return response.read().decode()


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObservedServer]:
    folder = tmp_path_factory.mktemp("observed")
    env = {
        "VOICEBOT_LOG_FORMAT": "json",
        "VOICEBOT_SUMMARY_FILE": str(folder / "summaries.jsonl"),
        "VOICEBOT_TRACE_FILE": str(folder / "spans.jsonl"),
    }
    server = start_server(REPO / "pipelines/local.yaml", folder / "server.log", env=env)
    yield ObservedServer(server, folder)
    server.stop()


def check_turn_breakdowns(summary: dict[str, Any]) -> None:
    for turn in summary["turn_latency"]:
        parts = sum(turn["stages_ms"].values())
        assert abs(parts - turn["voice_to_voice_ms"]) <= 50, turn
        for key in ("endpointing_wait", "transcription", "llm_inference", "speech_synthesis"):
            assert key in turn["stages_ms"], f"stage {key} missing: {turn}"
        for key in (
            "stt_latency_ms",
            "turn_end_decision_ms",
            "llm_first_token_ms",
            "tts_first_chunk_ms",
        ):
            assert turn[key] is not None and 0 < turn[key] < turn["voice_to_voice_ms"], turn


def check_call_lines_carry_the_call_id(lines: list[dict[str, Any]], call_id: str) -> None:
    """Every line from the call's start to its summary belongs to it (one call at a time)."""
    start = next(i for i, line in enumerate(lines) if line["call_id"] == call_id)
    end = next(
        i
        for i, line in enumerate(lines)
        if line["call_id"] == call_id and line["message"].startswith("call summary")
    )
    window = lines[start : end + 1]
    strangers = [line for line in window if line["call_id"] != call_id]
    assert not strangers, f"lines of the call without its call_id: {strangers[:5]}"
    loggers = {line["logger"].split(".")[0] for line in window}
    assert {"bot", "pipecat"} <= loggers, loggers


async def test_two_turn_phone_call_is_counted_summarised_and_logged(
    observed: ObservedServer, speech: dict[str, Path]
) -> None:
    before = observed.metrics()
    async with TwilioCaller(observed.url) as caller:
        call_id = caller.call_sid
        assert await caller.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
        assert await caller.wait_for_bot_quiet(gap=0.7, max_wait=15)
        for question in ("sky", "week"):
            asked_at = time.monotonic()
            await caller.send_pcm(pcm8k(speech[question]))
            assert await caller.wait_for_bot_audio(after=asked_at, max_wait=30), question
            assert await caller.wait_for_bot_quiet(gap=0.7, max_wait=20)
    summary = observed.summary(call_id)
    after = observed.metrics()

    assert summary["transport"] == "twilio" and summary["pipeline"] == "local"
    assert summary["turns"] == 2, summary
    assert summary["outcome"] == "caller_hung_up"
    assert 0 < summary["setup_ms"] < 1000
    check_turn_breakdowns(summary)
    assert summary["stt_confidence"]["count"] == 2 and 0 < summary["stt_confidence"]["mean"] <= 1
    users = [line["text"] for line in summary["transcript"] if line["role"] == "user"]
    assert len(users) == 2 and "sky" in users[0].lower(), summary["transcript"]
    assert any(
        "blue" in line["text"].lower() for line in summary["transcript"] if line["role"] == "bot"
    ), summary["transcript"]

    labels = {"transport": "twilio", "pipeline": "local"}
    for name in HISTOGRAMS:
        added = sample(after, f"{name}_count", **labels) - sample(before, f"{name}_count", **labels)
        assert added == 2, f"{name}: {added} observations for 2 turns"
    for name in ("voicebot_call_setup_seconds_count", "voicebot_calls_started_total"):
        assert sample(after, name, **labels) - sample(before, name, **labels) == 1, name
    ended = {**labels, "outcome": "caller_hung_up"}
    assert (
        sample(after, "voicebot_calls_ended_total", **ended)
        - sample(before, "voicebot_calls_ended_total", **ended)
        == 1
    )

    lines = observed.log_lines()
    check_call_lines_carry_the_call_id(lines, call_id)
    logged = next(line for line in lines if line.get("call_summary", {}).get("call_id") == call_id)
    assert logged["call_summary"] == summary, "the log line and the file hold the same record"


async def test_webrtc_call_reports_ice_states_and_its_latency(
    observed: ObservedServer, speech: dict[str, Path]
) -> None:
    before = observed.metrics()
    result = await run_webrtc_call(speech["sky"], observed.url)
    assert result["error"] is None and result["first_reply_audio_ms"] is not None, result
    await asyncio.sleep(1.0)
    lines = observed.log_lines()
    call_id = next(
        line["call_id"] for line in reversed(lines) if line["message"].startswith("call started")
    )
    summary = observed.summary(call_id)
    after = observed.metrics()

    assert summary["transport"] == "webrtc" and summary["turns"] == 1, summary
    check_turn_breakdowns(summary)
    # The caller hears the reply after the server sent it: the server's voice-to-voice is never
    # more than the caller's, and less by at most the WebRTC playout path and TTS lead-in.
    served = summary["turn_latency"][0]["voice_to_voice_ms"]
    heard = result["first_reply_audio_ms"]
    assert -50 <= heard - served <= 400, (heard, served)
    check_call_lines_carry_the_call_id(lines, call_id)
    assert any(
        line["message"] == "WebRTC ICE state: checking" and line["call_id"] == call_id
        for line in lines
    )

    def ice(state: str) -> float:
        return sample(after, "voicebot_webrtc_ice_state_transitions_total", state=state) - sample(
            before, "voicebot_webrtc_ice_state_transitions_total", state=state
        )

    assert ice("checking") == 1 and ice("completed") == 1 and ice("failed") == 0
    labels = {"transport": "webrtc", "pipeline": "local"}
    assert (
        sample(after, "voicebot_voice_to_voice_seconds_count", **labels)
        - sample(before, "voicebot_voice_to_voice_seconds_count", **labels)
        == 1
    )


async def test_spans_carry_the_call_id_and_no_conversation_text(
    observed: ObservedServer,
) -> None:
    """Runs after the calls above: the trace file holds their spans."""
    spans = [json.loads(line) for line in observed.spans.read_text().splitlines()]
    requests = [span for span in spans if "http.route" in span["attributes"]]
    routes = {span["attributes"]["http.route"] for span in requests}
    assert {"/twilio/voice", "/api/offer"} <= routes, routes
    assert "/twilio/stream" not in routes, "a call's WebSocket is not wrapped in a request span"
    assert not routes & {"/readyz", "/healthz", "/metrics"}, "probes and scrapes are not traced"
    by_call: dict[str, set[str]] = {}
    for span in spans:
        if span in requests:
            continue
        attributes = span["attributes"]
        assert "call.id" in attributes, f"span without call.id: {span['name']}"
        assert attributes["pipeline.name"] == "local"
        by_call.setdefault(attributes["call.id"], set()).add(span["name"])
    assert len(by_call) >= 2
    for names in by_call.values():
        assert {"conversation", "turn", "stt", "llm", "tts"} <= names, names
    text = observed.spans.read_text().lower()
    assert "sky" not in text and "blue" not in text, "conversation text reached a trace"
