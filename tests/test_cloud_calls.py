"""Whole calls on `pipelines/cloud.yaml`, its providers played by local servers that speak each
vendor's protocol (tests/fakes): the caller's real speech goes to the Deepgram server (which
transcribes it with the local STT), the transcript reaches the Anthropic server, its streamed
reply comes back through the ElevenLabs server (the local voice) to the caller.

The server runs as a subprocess (`voicebot serve`), exactly as deployed; only the base URLs
and keys in its environment differ. Faults are switched on in the fakes mid-module, one test
each: the call keeps talking through every one of them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.caller.twilio import TwilioCaller, run_twilio_call
from bot.caller.webrtc import run_webrtc_call
from tests.fakes.base import Faults
from tests.fakes.deepgram import WORD_CONFIDENCE
from tests.fakes.suite import FakeSuite
from tests.support.background import BackgroundLoop
from tests.support.instant_fakes import instant_fakes
from tests.support.metrics import added, scrape, summary_in_log
from tests.support.servers import REPO, RunningServer, start_server
from tests.support.speech import read_wav, transcribe
from tests.test_twilio_call import pcm8k

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[BackgroundLoop, FakeSuite]]:
    with instant_fakes(warm=["Hello! How can I help you today?"]) as (loop, suite):
        yield loop, suite


@pytest.fixture(scope="module")
def cloud_server(
    tmp_path_factory: pytest.TempPathFactory, fakes: tuple[BackgroundLoop, FakeSuite]
) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("cloud") / "server.log"
    server = start_server(REPO / "pipelines/cloud.yaml", log, env=fakes[1].env())
    yield server
    server.stop()


@pytest.fixture
def suite(fakes: tuple[BackgroundLoop, FakeSuite]) -> Iterator[FakeSuite]:
    """The fakes, healthy again after each test."""
    suite = fakes[1]
    yield suite
    for fake in (suite.deepgram, suite.anthropic, suite.openai, suite.elevenlabs):
        fake.faults = Faults()
    suite.anthropic.error_mid_stream = None


def _last_user(request: dict[str, object]) -> str:
    return str(request.get("last_user", "")).lower()


def _heard(path: Path) -> str:
    samples, rate = read_wav(path)
    return transcribe(samples, rate).lower()


async def test_phone_call_on_the_cloud_pipeline(
    cloud_server: RunningServer, suite: FakeSuite, speech: dict[str, Path], tmp_path: Path
) -> None:
    dg_before, llm_before = len(suite.deepgram.connections), suite.anthropic.request_count
    out = tmp_path / "reply.wav"
    result = await run_twilio_call(speech["sky"], cloud_server.url, out_path=out)
    assert result["error"] is None, result
    assert result["greeting_seconds"] > 0.5 and result["reply_seconds"] > 0.5, result

    # Deepgram heard 8 kHz linear16 with the configured options, and transcribed the caller.
    connection = suite.deepgram.connections[dg_before]
    options = connection.options
    assert (options.encoding, options.sample_rate, options.model) == ("linear16", 8000, "nova-3")
    assert options.interim_results and options.smart_format and options.punctuate
    assert options.endpointing == 300
    # The transcript (redacted, unchanged here) reached Anthropic, with the short voice prompt.
    requests = suite.anthropic.log.requests[llm_before:]
    asked = [r for r in requests if "sky" in _last_user(r)]
    assert asked, [_last_user(r) for r in requests]
    assert "no markdown" in str(asked[0]["system"]).lower()
    # ElevenLabs was asked for 8 kHz PCM (nothing to resample for Twilio) and spoke the reply.
    eleven = suite.elevenlabs.connections[-1]
    assert eleven.output_format == "pcm_8000" and eleven.model_id == "eleven_flash_v2_5"
    assert any("The sky is blue." in " ".join(c.texts) for c in eleven.contexts)
    assert "blue" in _heard(out)
    # The call's summary: Deepgram's confidence, each provider's first byte in the turn.
    summary = await _summary(cloud_server, result["call_sid"])
    assert summary["stt_confidence"]["count"] >= 1
    assert summary["stt_confidence"]["mean"] == pytest.approx(WORD_CONFIDENCE, abs=0.01)
    turn = summary["turn_latency"][0]
    assert turn["llm_provider"] == "anthropic" and turn["tts_first_chunk_ms"] is not None, turn


async def test_webrtc_call_on_the_cloud_pipeline(
    cloud_server: RunningServer, suite: FakeSuite, speech: dict[str, Path], tmp_path: Path
) -> None:
    dg_before = len(suite.deepgram.connections)
    out = tmp_path / "reply.wav"
    result = await run_webrtc_call(speech["week"], cloud_server.url, out_path=out)
    assert result["error"] is None, result
    assert result["reply_seconds"] > 0.5, result
    options = suite.deepgram.connections[dg_before].options
    assert (options.encoding, options.sample_rate) == ("linear16", 16000)
    assert suite.elevenlabs.connections[-1].output_format == "pcm_24000"
    assert "seven" in _heard(out)


async def _ask(caller: TwilioCaller, wav: Path, max_wait: float = 20) -> float | None:
    """Say `wav`; seconds from the end of speech to the bot's first audio (None: silence)."""
    await caller.wait_for_bot_quiet(gap=0.7, max_wait=20)
    await caller.send_pcm(pcm8k(wav))
    said_at = time.monotonic()
    reply = await caller.wait_for_bot_audio(after=said_at, max_wait=max_wait)
    return None if reply is None else reply.arrival - said_at


def _reply_text(caller: TwilioCaller, since: float) -> str:
    audio = caller.log.render(since, time.monotonic() + 30)
    return transcribe(audio, 8000).lower()


async def test_deepgram_socket_dropped_mid_utterance(
    cloud_server: RunningServer,
    fakes: tuple[BackgroundLoop, FakeSuite],
    suite: FakeSuite,
    speech: dict[str, Path],
) -> None:
    before = scrape(cloud_server.url)
    async with TwilioCaller(cloud_server.url) as caller:
        assert await caller.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
        await caller.wait_for_bot_quiet(gap=0.7, max_wait=20)
        opened = len(suite.deepgram.connections)
        current = suite.deepgram.connections[-1]
        # Drop the call's socket 1 s into the question, without a close frame.
        asked = asyncio.create_task(caller.send_pcm(pcm8k(speech["sky"])))
        await asyncio.sleep(1.0)
        fakes[0].loop.call_soon_threadsafe(suite.deepgram.drop, current)
        await asked
        said_at = time.monotonic()
        assert await caller.wait_for_bot_audio(after=said_at, max_wait=20), "no reply after drop"
        await caller.wait_for_bot_quiet(gap=0.7, max_wait=20)
        assert "blue" in _reply_text(caller, said_at)
        assert len(suite.deepgram.connections) > opened, "Deepgram was not reconnected"
        # And the next utterance, on the new socket, is understood too.
        since = time.monotonic()
        assert await _ask(caller, speech["week"]) is not None
        await caller.wait_for_bot_quiet(gap=0.7, max_wait=20)
        assert "seven" in _reply_text(caller, since)
    assert "Deepgram socket re-opened" in cloud_server.log()
    after = scrape(cloud_server.url)
    labels = {"transport": "twilio", "pipeline": "cloud", "provider": "deepgram"}
    assert added(before, after, "voicebot_stt_reconnections_total", **labels) == 1
    summary = await _summary(cloud_server, caller.call_sid)
    assert summary["provider_events"].get("stt_reconnections") == 1, summary


@pytest.mark.parametrize("fault", ["429", "500", "first_token_timeout"])
async def test_anthropic_failure_is_answered_by_openai(
    cloud_server: RunningServer, suite: FakeSuite, speech: dict[str, Path], fault: str
) -> None:
    if fault == "first_token_timeout":
        suite.anthropic.faults.stall = True
    else:
        suite.anthropic.faults.http_status = int(fault)
    openai_before = suite.openai.request_count
    before = scrape(cloud_server.url)
    async with TwilioCaller(cloud_server.url) as caller:
        assert await caller.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
        since = time.monotonic()
        waited = await _ask(caller, speech["sky"])
        assert waited is not None, "the caller heard nothing"
        await caller.wait_for_bot_quiet(gap=0.7, max_wait=20)
        assert "blue" in _reply_text(caller, since)
    assert suite.openai.request_count > openai_before, "OpenAI did not answer the turn"
    if fault == "first_token_timeout":
        # cloud.yaml: first_token_timeout_secs 2.0, so the answer comes a little after that.
        assert 2.0 <= waited < 6.0, waited
    else:
        assert waited < 4.0, waited
    assert "answering this turn with" in cloud_server.log()
    after = scrape(cloud_server.url)
    status_class = {"429": "429", "500": "5xx", "first_token_timeout": "timeout"}[fault]
    call = {"transport": "twilio", "pipeline": "cloud"}
    assert (
        added(
            before,
            after,
            "voicebot_llm_errors_total",
            **call,
            provider="anthropic",
            status_class=status_class,
        )
        == 1
    )
    assert (
        added(
            before,
            after,
            "voicebot_llm_failovers_total",
            **call,
            from_provider="anthropic",
            to_provider="openai",
            status_class=status_class,
        )
        == 1
    )
    assert (
        added(before, after, "voicebot_llm_first_token_seconds_count", **call, provider="openai")
        == 1
    ), "the turn's first token came from OpenAI"
    summary = await _summary(cloud_server, caller.call_sid)
    assert summary["provider_events"] == {"llm_errors": 1, "llm_failovers": 1}, summary
    assert summary["turn_latency"][0]["llm_provider"] == "openai", summary


async def test_elevenlabs_stall_plays_the_cached_phrase(
    cloud_server: RunningServer, suite: FakeSuite, speech: dict[str, Path]
) -> None:
    before = scrape(cloud_server.url)
    async with TwilioCaller(cloud_server.url) as caller:
        assert await caller.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
        suite.elevenlabs.faults.stall = True
        since = time.monotonic()
        waited = await _ask(caller, speech["sky"])
        assert waited is not None, "silence: the stalled TTS was not covered"
        # cloud.yaml: stall_timeout_secs 1.5 after the sentence reached the TTS.
        assert waited < 1.5 + 2.5, waited
        await caller.wait_for_bot_quiet(gap=0.7, max_wait=20)
        heard = _reply_text(caller, since)
        assert "trouble" in heard and "voice" in heard, heard
        # The TTS recovers: the next turn is spoken by it again.
        suite.elevenlabs.faults.stall = False
        since = time.monotonic()
        assert await _ask(caller, speech["week"]) is not None
        await caller.wait_for_bot_quiet(gap=0.7, max_wait=20)
        assert "seven" in _reply_text(caller, since)
    assert "playing the cached phrase" in cloud_server.log()
    after = scrape(cloud_server.url)
    labels = {"transport": "twilio", "pipeline": "cloud", "provider": "elevenlabs"}
    assert added(before, after, "voicebot_tts_stalls_total", **labels) == 1
    summary = await _summary(cloud_server, caller.call_sid)
    assert summary["provider_events"].get("tts_stalls") == 1, summary


async def _summary(server: RunningServer, call_id: str) -> dict[str, object]:
    """The call's summary from the server's log (written as the call ends)."""
    for _ in range(50):
        summary = summary_in_log(server.log(), call_id)
        if summary is not None:
            return summary
        await asyncio.sleep(0.2)
    raise AssertionError(f"no call summary for {call_id}")
