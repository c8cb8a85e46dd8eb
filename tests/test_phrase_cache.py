"""The fixed-phrase cache (bot/phrase_cache.py): the greeting is synthesised once, then played.

In process: a real Pipecat pipeline (gate → ElevenLabsTTSService → player → sink) against the
ElevenLabs fake, so the frames recorded and replayed are the ones the real service pushes.
End to end: `voicebot serve` on pipelines/cloud.yaml against the fakes, Twilio calls in a row.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pipecat.frames.frames import (
    AggregatedTextFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    LLMAssistantPushAggregationFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from bot.caller.twilio import TwilioCaller
from bot.caller.webrtc import WebRTCCaller, rtvi_messages
from bot.phrase_cache import (
    CallPhrases,
    PhraseCache,
    plausible_seconds,
    voice_fingerprint,
)
from bot.stage_options import ElevenLabsOptions
from tests.fakes.base import FakeServer
from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.suite import KEYS, FakeSuite
from tests.support.background import BackgroundLoop
from tests.support.instant_fakes import instant_fakes
from tests.support.metrics import added, scrape, summary_in_log
from tests.support.servers import REPO, RunningServer, start_server
from tests.test_twilio_call import pcm8k

GREETING = "Hello! How can I help you today?"
RATE = 8000


# ------------------------------------------------------------------ pure parts


def test_voice_fingerprint_follows_the_voice_not_the_key() -> None:
    base = ElevenLabsOptions(api_key="one", voice_id="voice-a")
    assert voice_fingerprint("elevenlabs", base) == voice_fingerprint(
        "elevenlabs", ElevenLabsOptions(api_key="two", voice_id="voice-a")
    )
    for other in (
        ElevenLabsOptions(api_key="one", voice_id="voice-b"),
        ElevenLabsOptions(api_key="one", voice_id="voice-a", speed=1.1),
        ElevenLabsOptions(api_key="one", voice_id="voice-a", model="eleven_turbo_v2_5"),
    ):
        assert voice_fingerprint("elevenlabs", other) != voice_fingerprint("elevenlabs", base)
    assert "one" not in voice_fingerprint("elevenlabs", base)


def test_plausible_lengths() -> None:
    assert plausible_seconds(GREETING, 2.0)
    assert not plausible_seconds(GREETING, 0.1)  # cut short
    assert not plausible_seconds(GREETING, 60.0)  # runaway


def test_cache_keys_separate_rates_and_pipelines() -> None:
    cache = PhraseCache()
    a = CallPhrases(pipeline="p", voice="v", sample_rate=8000, phrases=[GREETING], cache=cache)
    b = CallPhrases(pipeline="p", voice="v", sample_rate=24000, phrases=[GREETING], cache=cache)
    c = CallPhrases(pipeline="q", voice="v", sample_rate=8000, phrases=[GREETING], cache=cache)
    assert len({a.key(GREETING), b.key(GREETING), c.key(GREETING)}) == 3


# ------------------------------------------------------------------ a real pipeline


class Sink(FrameProcessor):
    """The end of the test pipeline: keeps every downstream frame."""

    def __init__(self) -> None:
        super().__init__(name="Sink")
        self.frames: list[Frame] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            self.frames.append(frame)
        await self.push_frame(frame, direction)

    def of(self, kind: type) -> list[Any]:
        return [f for f in self.frames if isinstance(f, kind)]

    async def wait_for(self, kind: type, count: int = 1, max_wait: float = 15.0) -> None:
        deadline = time.monotonic() + max_wait
        while len(self.of(kind)) < count:
            assert time.monotonic() < deadline, f"no {kind.__name__} in {max_wait}s"
            await asyncio.sleep(0.02)


@pytest.fixture
async def eleven() -> AsyncIterator[tuple[FakeElevenLabs, str]]:
    fake = FakeElevenLabs(KEYS["ELEVENLABS_API_KEY"], chunk_ms=100)
    server = FakeServer(fake)
    url = await server.start()
    await fake.warm(GREETING)
    yield fake, url.replace("http://", "ws://", 1)
    await server.stop()


class Call:
    """One call's TTS section: gate → ElevenLabs → player → sink, running until close()."""

    def __init__(self, ws_url: str, cache: PhraseCache) -> None:
        from pipecat.services.elevenlabs.tts import ElevenLabsTTSService

        self.phrases = CallPhrases(
            pipeline="test", voice="fake", sample_rate=RATE, phrases=[GREETING], cache=cache
        )
        tts = ElevenLabsTTSService(
            api_key=KEYS["ELEVENLABS_API_KEY"],
            url=ws_url,
            sample_rate=RATE,
            settings=ElevenLabsTTSService.Settings(voice="fakevoice", model="eleven_flash_v2_5"),
        )
        self.sink = Sink()
        self.worker = PipelineWorker(
            Pipeline([self.phrases.gate, tts, self.phrases.player, self.sink]),
            params=PipelineParams(audio_out_sample_rate=RATE),
            idle_timeout_secs=None,
        )
        self._runner = WorkerRunner(handle_sigint=False)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._runner.add_workers(self.worker)
        self._task = asyncio.create_task(self._runner.run())
        await asyncio.sleep(0.3)  # the TTS opens its socket on StartFrame

    async def say(self, text: str) -> None:
        await self.worker.queue_frames([TTSSpeakFrame(text)])

    async def close(self) -> None:
        await self.worker.queue_frames([EndFrame()])
        await self.ended()

    async def ended(self) -> None:
        assert self._task is not None
        await asyncio.wait_for(self._task, 20)


def _audio(frames: list[TTSAudioRawFrame]) -> bytes:
    return b"".join(f.audio for f in frames)


async def test_first_greeting_is_recorded_and_the_next_one_replayed(
    eleven: tuple[FakeElevenLabs, str],
) -> None:
    fake, url = eleven
    cache = PhraseCache()

    first = Call(url, cache)
    await first.start()
    await first.say(GREETING)
    await first.sink.wait_for(TTSStoppedFrame)
    await first.close()
    spoken = [c for c in fake.contexts if GREETING in " ".join(c.texts)]
    assert len(spoken) == 1, "the first greeting goes to the provider"
    assert (first.phrases.misses, first.phrases.stored) == (1, 1)
    assert cache.texts() == [GREETING]
    heard_first = _audio(first.sink.of(TTSAudioRawFrame))
    assert len(heard_first) > RATE * 2 * 0.8  # over 0.8 s of speech

    # Said as the goodbye is: the phrase, then at once the EndFrame, which must not overtake it.
    second = Call(url, cache)
    await second.start()
    await second.worker.queue_frames([TTSSpeakFrame(GREETING), EndFrame()])
    await second.ended()
    assert isinstance(second.sink.frames[-1], EndFrame)
    assert [c for c in fake.contexts if GREETING in " ".join(c.texts)] == spoken, (
        "the second greeting reached the provider"
    )
    assert second.phrases.hits == 1
    sink = second.sink
    # What the TTS pushes for a TTSSpeakFrame, in its order, under one fresh context id.
    kinds = [
        type(f)
        for f in sink.frames
        if isinstance(
            f,
            AggregatedTextFrame
            | TTSStartedFrame
            | TTSStoppedFrame
            | LLMAssistantPushAggregationFrame,
        )
    ]
    assert kinds == [
        AggregatedTextFrame,
        TTSStartedFrame,
        TTSTextFrame,
        LLMAssistantPushAggregationFrame,
        TTSStoppedFrame,
    ], kinds
    audio = sink.of(TTSAudioRawFrame)
    assert _audio(audio) == heard_first, "the replay is the first rendition's audio"
    assert all(f.sample_rate == RATE and len(f.audio) <= RATE * 2 * 0.04 for f in audio)
    contexts = {f.context_id for f in sink.frames if hasattr(f, "context_id")}
    assert len(contexts) == 1 and None not in contexts
    started = sink.of(TTSStartedFrame)[0]
    stopped = sink.of(TTSStoppedFrame)[0]
    first_audio = sink.frames.index(audio[0])
    assert sink.frames.index(started) < first_audio < sink.frames.index(stopped)
    [text] = sink.of(TTSTextFrame)
    assert text.text == GREETING and text.append_to_context and text.will_be_spoken


async def test_an_interrupted_greeting_is_not_cached(
    eleven: tuple[FakeElevenLabs, str],
) -> None:
    fake, url = eleven
    cache = PhraseCache()
    fake.faults.per_chunk_ms = 250.0  # slower than real time: there is time to barge in

    call = Call(url, cache)
    await call.start()
    await call.say(GREETING)
    await call.sink.wait_for(TTSAudioRawFrame)
    await call.worker.queue_frames([InterruptionFrame()])
    await asyncio.sleep(1.5)
    fake.faults.per_chunk_ms = 0.0
    assert not call.sink.of(TTSStoppedFrame), "the interruption came too late to cut it"
    cut = len(_audio(call.sink.of(TTSAudioRawFrame)))
    assert len(cache) == 0, "an interrupted rendition was cached"
    assert call.phrases.stored == 0

    # Said again in the same call, undisturbed: now it is cached.
    await call.say(GREETING)
    await call.sink.wait_for(TTSStoppedFrame)
    await call.close()
    assert call.phrases.misses == 2 and call.phrases.stored == 1
    assert len(_audio(call.sink.of(TTSAudioRawFrame))) > 2 * cut  # the cut one was short
    assert cache.texts() == [GREETING]
    assert len([c for c in fake.contexts if GREETING in " ".join(c.texts)]) == 2


async def test_other_speech_is_not_touched(eleven: tuple[FakeElevenLabs, str]) -> None:
    fake, url = eleven
    cache = PhraseCache()
    call = Call(url, cache)
    await call.start()
    await call.say("The sky is blue.")
    await call.sink.wait_for(TTSStoppedFrame)
    await call.close()
    assert len(cache) == 0 and call.phrases.misses == 0
    assert any("The sky is blue." in " ".join(c.texts) for c in fake.contexts)


# ------------------------------------------------------------------ end to end


@pytest.fixture
def fakes() -> Iterator[tuple[BackgroundLoop, FakeSuite]]:
    with instant_fakes(warm=[GREETING]) as (loop, suite):
        yield loop, suite


@pytest.fixture
def cloud_server(
    tmp_path: Path, fakes: tuple[BackgroundLoop, FakeSuite]
) -> Iterator[RunningServer]:
    """A fresh server: its phrase cache is empty."""
    log = tmp_path / "server.log"
    server = start_server(REPO / "pipelines/cloud.yaml", log, env=fakes[1].env())
    yield server
    server.stop()


def _greetings(suite: FakeSuite) -> int:
    return len([c for c in suite.elevenlabs.contexts if GREETING in " ".join(c.texts)])


async def _greeting_call(url: str) -> tuple[TwilioCaller, float]:
    """A call that hears the whole greeting and hangs up; returns it and the greeting's
    length in seconds."""
    async with TwilioCaller(url) as caller:
        first = await caller.wait_for_bot_audio(max_wait=10)
        assert first is not None, "no greeting"
        assert await caller.wait_for_bot_quiet(gap=0.7, max_wait=15)
        last = caller.log.last_audible_end()
        assert last is not None
    return caller, last - first.start


async def _summary(server: RunningServer, call_id: str) -> dict[str, Any]:
    for _ in range(50):
        summary = summary_in_log(server.log(), call_id)
        if summary is not None:
            return summary
        await asyncio.sleep(0.2)
    raise AssertionError(f"no call summary for {call_id}")


def _bot_lines(summary: dict[str, Any]) -> list[str]:
    return [line["text"] for line in summary["transcript"] if line["role"] == "bot"]


@pytest.mark.slow
async def test_second_call_hears_the_cached_greeting(
    cloud_server: RunningServer, fakes: tuple[BackgroundLoop, FakeSuite]
) -> None:
    suite = fakes[1]
    before = scrape(cloud_server.url)
    first, first_secs = await _greeting_call(cloud_server.url)
    assert _greetings(suite) == 1, "the first call's greeting goes to ElevenLabs"
    second, second_secs = await _greeting_call(cloud_server.url)
    assert _greetings(suite) == 1, "the second call's greeting went to ElevenLabs"
    assert len(suite.elevenlabs.connections) >= 2  # the second call still has its TTS socket
    assert second_secs == pytest.approx(first_secs, rel=0.10), (first_secs, second_secs)
    for caller in (first, second):
        summary = await _summary(cloud_server, caller.call_sid)
        assert GREETING in _bot_lines(summary), summary["transcript"]
    after = scrape(cloud_server.url)
    labels = {"pipeline": "cloud"}
    assert added(before, after, "voicebot_phrase_cache_total", **labels, result="miss") == 1
    assert added(before, after, "voicebot_phrase_cache_total", **labels, result="hit") == 1


@pytest.mark.slow
async def test_barge_in_stops_the_cached_greeting(
    cloud_server: RunningServer,
    fakes: tuple[BackgroundLoop, FakeSuite],
    speech: dict[str, Path],
) -> None:
    suite = fakes[1]
    _, full_secs = await _greeting_call(cloud_server.url)  # fills the cache
    async with TwilioCaller(cloud_server.url) as caller:
        first = await caller.wait_for_bot_audio(max_wait=10)
        assert first is not None, "no greeting"
        interrupted_at = time.monotonic()
        await caller.send_pcm(pcm8k(speech["stop"]))
        clear = await caller.wait_for_event("clear", after=interrupted_at, max_wait=5)
        assert clear is not None, "speech during the cached greeting did not clear it"
        greeting = [c for c in caller.log.chunks if c.audible and c.start < clear.t]
        heard = sum(c.duration for c in greeting)
        assert heard < full_secs - 0.3, (heard, full_secs)
    assert _greetings(suite) == 1, "the cached greeting went to ElevenLabs"


async def test_a_greeting_cut_by_a_dropped_socket_is_not_cached(
    eleven: tuple[FakeElevenLabs, str],
) -> None:
    fake, url = eleven
    cache = PhraseCache()
    fake.faults.per_chunk_ms = 250.0
    fake.faults.drop_after_ms = 900.0  # the socket opens ~0.3 s before the greeting is said
    call = Call(url, cache)
    await call.start()
    await call.say(GREETING)
    await call.sink.wait_for(TTSAudioRawFrame)
    await asyncio.sleep(3.0)
    await call.close()
    assert fake.connections[0].dropped
    assert len(cache) == 0, "a greeting cut short by a dropped socket was cached"


async def _webrtc_greeting(url: str) -> WebRTCCaller:
    caller = WebRTCCaller(url)
    try:
        await caller.connect()
        assert await caller.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
        assert await caller.wait_for_bot_quiet(gap=0.7, max_wait=15)
        await asyncio.sleep(0.3)  # the last data channel messages
    finally:
        await caller.close()
    return caller


@pytest.mark.slow
async def test_webrtc_has_its_own_rate_and_still_gets_the_tts_text(
    cloud_server: RunningServer, fakes: tuple[BackgroundLoop, FakeSuite]
) -> None:
    suite = fakes[1]
    await _greeting_call(cloud_server.url)  # 8 kHz: cached for phone calls only
    first = await _webrtc_greeting(cloud_server.url)
    assert _greetings(suite) == 2, "a 24 kHz call played the 8 kHz recording"
    second = await _webrtc_greeting(cloud_server.url)
    assert _greetings(suite) == 2, "the second WebRTC greeting went to ElevenLabs"
    for caller in (first, second):
        said = " ".join(m["data"]["text"] for m in rtvi_messages(caller.messages, "bot-tts-text"))
        assert GREETING.replace(" ", "") in said.replace(" ", ""), caller.messages
