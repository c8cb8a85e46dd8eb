"""The local ElevenLabs stand-in, driven by Pipecat's real `ElevenLabsTTSService` and raw sockets.

Audio that comes back is transcribed with the local Whisper model, so these tests prove the fake
speaks the words it was sent, at the rate and in the encoding that were asked for.
"""

from __future__ import annotations

import asyncio
import audioop
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import websockets
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.elevenlabs.tts import ElevenLabsTTSService
from pipecat.tests.utils import SleepFrame, run_test

from tests.fakes.base import FakeServer
from tests.fakes.elevenlabs import FakeElevenLabs, ulaw_encode
from tests.support.speech import transcribe

VOICE = "voice-test-1"
MODEL = "eleven_flash_v2_5"
SKY = "The sky is blue. It is very nice today."
STORY = (
    "Once upon a time a knight rode out to find a dragon. "
    "The villagers warned him that the dragon was fierce. "
    "When he reached the cave he found the dragon crying."
)


@pytest.fixture
async def served() -> AsyncIterator[tuple[FakeElevenLabs, str]]:
    """The fake on a loopback port, and its base URL as Pipecat takes it (ws://...)."""
    provider = FakeElevenLabs()
    server = FakeServer(provider)
    url = (await server.start()).replace("http://", "ws://")
    await provider.warm(SKY)
    yield provider, url
    await server.stop()


@pytest.fixture
def fake(served: tuple[FakeElevenLabs, str]) -> FakeElevenLabs:
    return served[0]


@pytest.fixture
def url(served: tuple[FakeElevenLabs, str]) -> str:
    return served[1]


def _tts(url: str, sample_rate: int, api_key: str, **kwargs: Any) -> ElevenLabsTTSService:
    """The product's construction of the service, pointed at the fake."""
    return ElevenLabsTTSService(
        api_key=api_key,
        url=url,
        sample_rate=sample_rate,
        settings=ElevenLabsTTSService.Settings(voice=VOICE, model=MODEL),
        **kwargs,
    )


def _socket_url(url: str, path: str = "multi-stream-input", **query: str) -> str:
    params = {"model_id": MODEL, "output_format": "pcm_16000", **query}
    qs = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{url}/v1/text-to-speech/{VOICE}/{path}?{qs}"


def _pcm(frames: list[Frame]) -> tuple[np.ndarray, set[int]]:
    audio = [f for f in frames if isinstance(f, TTSAudioRawFrame)]
    samples = np.frombuffer(b"".join(f.audio for f in audio), dtype=np.int16)
    return samples, {f.sample_rate for f in audio}


class _Timestamps(FrameProcessor):
    """Notes when each frame passes, for latency measurements."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[float, Frame]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        self.seen.append((time.monotonic(), frame))
        await self.push_frame(frame, direction)

    def first_audio_delay(self) -> float:
        started = next(t for t, f in self.seen if isinstance(f, TTSStartedFrame))
        audio = next(t for t, f in self.seen if isinstance(f, TTSAudioRawFrame))
        return audio - started


async def _until_final(ws: Any, context_id: str | None = None) -> list[dict[str, Any]]:
    """Server messages up to and including the final one (for `context_id`, if given)."""
    messages = []
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        messages.append(message)
        if message.get("isFinal") and message.get("contextId") == context_id:
            return messages


def _audio_of(messages: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(m["audio"]) for m in messages if m.get("audio"))


@pytest.mark.parametrize("rate", [8000, 24000])
async def test_pipecat_service_gets_speech_at_the_requested_rate(
    fake: FakeElevenLabs, url: str, rate: int
) -> None:
    tts = _tts(url, rate, fake.api_key)
    down, up = await run_test(tts, frames_to_send=[TTSSpeakFrame(SKY)])

    samples, rates = _pcm(list(down))
    assert rates == {rate}
    assert 1.5 < len(samples) / rate < 6.0
    heard = transcribe(samples, rate).lower()
    assert "sky" in heard and "blue" in heard and "nice" in heard
    assert not [f for f in up if isinstance(f, ErrorFrame)]

    (conn,) = fake.connections
    assert conn.voice_id == VOICE
    assert conn.query["model_id"] == MODEL
    assert conn.query["output_format"] == f"pcm_{rate}"
    assert conn.query["auto_mode"] == "true"
    assert fake.log.requests[0]["query"] == conn.query
    (ctx,) = conn.contexts
    assert ctx.texts == [SKY]
    assert ctx.spoken == ["The sky is blue.", "It is very nice today."]
    assert ctx.final_sent_at is not None
    assert ctx.audio_bytes == samples.nbytes  # every byte sent arrived, once
    assert ctx.audio_chunks > 4  # streamed in pieces, not one blob
    assert conn.messages[-3:] == [
        {"context_id": ctx.context_id, "flush": True},
        {"context_id": ctx.context_id, "close_context": True},
        {"close_socket": True},
    ]
    assert conn.close_code == 1000


async def test_llm_reply_is_streamed_by_sentence_and_timed_by_word(
    fake: FakeElevenLabs, url: str
) -> None:
    tokens = ["The", " sky", " is", " blue.", " It", " is", " very", " nice", " today."]
    frames = [LLMFullResponseStartFrame(), *map(LLMTextFrame, tokens), LLMFullResponseEndFrame()]

    down, _ = await run_test(_tts(url, 16000, fake.api_key), frames_to_send=frames)

    (ctx,) = fake.contexts
    assert [t.strip() for t in ctx.texts] == ["The sky is blue.", "It is very nice today."]
    sent = [m for m in fake.connections[0].messages if m.get("context_id") == ctx.context_id]
    kinds = [next(k for k in ("flush", "close_context", "text") if k in m) for m in sent]
    assert kinds == ["text", "text", "text", "flush", "close_context"]  # init, two sentences
    # Pipecat turns the fake's character alignment back into the words, in order.
    words = [f.text for f in down if isinstance(f, TTSTextFrame)]
    assert " ".join(words) == SKY
    samples, _ = _pcm(list(down))
    assert samples.nbytes == ctx.audio_bytes > 16000 * 2  # over a second of speech


async def test_first_byte_delay_is_honoured(fake: FakeElevenLabs, url: str) -> None:
    async def delay() -> float:
        stamps = _Timestamps()
        pipeline = Pipeline([_tts(url, 16000, fake.api_key), stamps])
        await run_test(pipeline, frames_to_send=[TTSSpeakFrame(SKY)])
        return stamps.first_audio_delay()

    prompt = await delay()
    fake.faults.first_byte_ms = 800
    slow = await delay()

    assert prompt < 0.4
    assert slow >= 0.8
    assert slow - prompt >= 0.6
    late = fake.contexts[1]
    assert late.first_audio_at is not None and late.first_audio_at - late.opened_at >= 0.8


async def test_interrupted_llm_reply_stops_at_the_close(fake: FakeElevenLabs, url: str) -> None:
    await fake.warm(STORY)
    fake.faults.per_chunk_ms = 40  # about 4x faster than real time: still streaming at 0.5 s
    tokens = [LLMTextFrame(word + " ") for word in STORY.split()]
    frames = [LLMFullResponseStartFrame(), *tokens, SleepFrame(0.5), InterruptionFrame()]

    down, _ = await run_test(_tts(url, 16000, fake.api_key), frames_to_send=frames)

    (ctx,) = fake.contexts
    assert len(ctx.texts) >= 2  # sentence by sentence, the reply not finished: no flush yet
    assert fake.connections[0].messages[-2:] == [
        {"context_id": ctx.context_id, "close_context": True},
        {"close_socket": True},
    ]
    assert ctx.barged_in and ctx.flushes == 0
    assert ctx.last_audio_at is not None and ctx.close_requested_at is not None
    assert ctx.last_audio_at <= ctx.close_requested_at  # nothing sent after the close
    full_bytes = sum(len(fake.render(sentence)) for sentence in ctx.spoken)
    assert 0 < ctx.audio_bytes < full_bytes / 2
    samples, _ = _pcm(list(down))
    assert samples.nbytes <= ctx.audio_bytes


async def test_interrupted_speak_frame_audio_is_discarded_by_pipecat(
    fake: FakeElevenLabs, url: str
) -> None:
    await fake.warm(STORY)
    fake.faults.per_chunk_ms = 40
    frames = [TTSSpeakFrame(STORY), SleepFrame(0.5), InterruptionFrame()]

    down, _ = await run_test(_tts(url, 16000, fake.api_key), frames_to_send=frames)

    # Pipecat flushes and closes a speak frame's context at once, so by the time it is
    # interrupted the context is already flushed: ElevenLabs (and the fake) keep sending.
    (ctx,) = fake.contexts
    closes = [m for m in fake.connections[0].messages if m.get("close_context")]
    assert len(closes) == 2 and ctx.flushes == 1 and not ctx.barged_in
    assert ctx.audio_bytes == sum(len(fake.render(sentence)) for sentence in ctx.spoken)
    cut = next(i for i, f in enumerate(down) if isinstance(f, InterruptionFrame))
    assert [f for f in down[:cut] if isinstance(f, TTSAudioRawFrame)]
    assert not [f for f in down[cut:] if isinstance(f, TTSAudioRawFrame)]
    assert _pcm(list(down))[0].nbytes < ctx.audio_bytes / 2


async def test_stalled_server_sends_no_audio(fake: FakeElevenLabs, url: str) -> None:
    fake.faults.stall = True
    tts = _tts(url, 16000, fake.api_key, stop_frame_timeout_s=1.0)

    down, up = await run_test(tts, frames_to_send=[TTSSpeakFrame(SKY)])

    assert not [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert any("no audio" in f.error for f in up if isinstance(f, ErrorFrame))
    (ctx,) = fake.contexts
    assert ctx.texts == [SKY]  # the text was accepted ...
    assert ctx.audio_chunks == 0 and ctx.final_sent_at is None  # ... and nothing came back


async def test_wrong_api_key_is_rejected_before_speaking(fake: FakeElevenLabs, url: str) -> None:
    tts = _tts(url, 16000, "not-the-key")

    down, up = await run_test(tts, frames_to_send=[TTSSpeakFrame(SKY)])

    assert not [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert [f for f in up if isinstance(f, ErrorFrame)]
    assert fake.log.requests and {r["status"] for r in fake.log.requests} == {401}
    assert fake.connections == [] and fake.audio_bytes_sent == 0

    with pytest.raises(websockets.exceptions.InvalidStatus) as rejected:
        await websockets.connect(_socket_url(url), additional_headers={"xi-api-key": "nope"})
    assert rejected.value.response.status_code == 401
    assert b"invalid_api_key" in rejected.value.response.body


async def test_ulaw_output_decodes_to_speech_with_alignment(fake: FakeElevenLabs, url: str) -> None:
    address = _socket_url(url, output_format="ulaw_8000", auto_mode="true")
    async with websockets.connect(address, additional_headers={"xi-api-key": fake.api_key}) as ws:
        await ws.send(json.dumps({"text": " ", "context_id": "c1"}))
        await ws.send(json.dumps({"text": SKY + " ", "context_id": "c1", "flush": True}))
        await ws.send(json.dumps({"context_id": "c1", "close_context": True}))
        messages = await _until_final(ws, "c1")

    audio = [m for m in messages if m.get("audio")]
    assert audio and all(m["contextId"] == "c1" for m in audio)
    samples = np.frombuffer(audioop.ulaw2lin(_audio_of(messages), 2), dtype=np.int16)
    assert 1.5 < len(samples) / 8000 < 6.0
    heard = transcribe(samples, 8000).lower()
    assert "sky" in heard and "blue" in heard
    # Alignment: the characters sent, each chunk's timings spanning that chunk's audio.
    assert "".join("".join(m["alignment"]["chars"]) for m in audio).strip() == SKY
    for message in audio:
        alignment = message["alignment"]
        span = alignment["charStartTimesMs"][-1] + alignment["charDurationsMs"][-1]
        chunk_ms = len(base64.b64decode(message["audio"])) / 8
        assert abs(span - chunk_ms) <= 2


def test_ulaw_encoder_matches_the_g711_reference() -> None:
    every_sample = np.arange(-32768, 32768, dtype=np.int16)
    assert ulaw_encode(every_sample) == audioop.lin2ulaw(every_sample.tobytes(), 2)


async def test_barge_in_drops_pending_audio_and_flush_finishes(
    fake: FakeElevenLabs, url: str
) -> None:
    await fake.warm(STORY)
    fake.faults.per_chunk_ms = 30
    address = _socket_url(url, auto_mode="true")
    async with websockets.connect(address, additional_headers={"xi-api-key": fake.api_key}) as ws:
        # Interrupted: closed without a flush while audio is streaming.
        await ws.send(json.dumps({"text": " ", "context_id": "a"}))
        await ws.send(json.dumps({"text": STORY, "context_id": "a"}))
        first = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        assert first["contextId"] == "a" and first["audio"]
        await ws.send(json.dumps({"context_id": "a", "close_context": True}))
        cut = await _until_final(ws, "a")
        # Finished: flushed, then closed (how Pipecat ends every turn).
        await ws.send(json.dumps({"text": " ", "context_id": "b"}))
        await ws.send(json.dumps({"text": STORY, "context_id": "b"}))
        await ws.send(json.dumps({"context_id": "b", "flush": True}))
        await ws.send(json.dumps({"context_id": "b", "close_context": True}))
        whole = await _until_final(ws, "b")

    a, b = fake.contexts
    assert a.barged_in and not b.barged_in
    assert a.last_audio_at is not None and a.close_requested_at is not None
    assert a.last_audio_at <= a.close_requested_at  # nothing of "a" sent after its close
    assert a.audio_bytes < b.audio_bytes / 3
    assert len(_audio_of(cut)) <= a.audio_bytes
    assert len(_audio_of(whole)) == b.audio_bytes == sum(len(fake.render(s)) for s in b.spoken)
    assert len(b.spoken) == 3 and b.audio_bytes / 32000 > 5.0


async def test_inactivity_timeout_closes_the_socket(fake: FakeElevenLabs, url: str) -> None:
    address = _socket_url(url, inactivity_timeout="1")
    headers = {"xi-api-key": fake.api_key}
    started = time.monotonic()
    async with websockets.connect(address, additional_headers=headers) as ws:
        error = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), timeout=5)
    elapsed = time.monotonic() - started
    assert error["error"] == "input_timeout_exceeded" and error["code"] == 1008
    assert ws.close_code == 1008
    assert 0.9 <= elapsed < 3.0

    # Keepalives (empty text, as Pipecat sends them) hold the socket open.
    async with websockets.connect(address, additional_headers=headers) as ws:
        for _ in range(5):
            await asyncio.sleep(0.3)
            await ws.send(json.dumps({"text": ""}))
        assert ws.close_code is None


async def test_http_failure_and_dropped_connection(fake: FakeElevenLabs, url: str) -> None:
    fake.faults.http_status, fake.faults.http_failures = 503, 1
    headers = {"xi-api-key": fake.api_key}
    with pytest.raises(websockets.exceptions.InvalidStatus) as failed:
        await websockets.connect(_socket_url(url), additional_headers=headers)
    assert failed.value.response.status_code == 503

    fake.faults.drop_after_ms = 300
    started = time.monotonic()
    async with websockets.connect(_socket_url(url), additional_headers=headers) as ws:
        with pytest.raises(websockets.exceptions.ConnectionClosedError):
            await asyncio.wait_for(ws.recv(), timeout=5)
    assert 0.25 <= time.monotonic() - started < 2.0
    assert ws.close_code is None or ws.close_code == 1006  # no close frame: an abrupt drop
    assert [r["status"] for r in fake.log.requests] == [503, 101]
    assert fake.connections[-1].dropped


@pytest.mark.parametrize(
    ("query", "messages", "error"),
    [
        ({"output_format": "wav_8000"}, [], "invalid_request"),
        ({}, [{"text": " ", "context_id": f"c{i}"} for i in range(6)], "max_active_conversations"),
        (
            {},
            [
                {"text": "", "context_id": "k"},  # a keepalive opens the context bare ...
                {"text": " ", "context_id": "k", "voice_settings": {"stability": 0.5}},
            ],
            "invalid_voice_settings",
        ),
    ],
)
async def test_protocol_violations_close_with_1008(
    fake: FakeElevenLabs,
    url: str,
    query: dict[str, str],
    messages: list[dict[str, Any]],
    error: str,
) -> None:
    address = _socket_url(url, **query)
    async with websockets.connect(address, additional_headers={"xi-api-key": fake.api_key}) as ws:
        for message in messages:
            await ws.send(json.dumps(message))
        reply = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), timeout=5)
    assert reply["error"] == error and reply["code"] == 1008
    assert ws.close_code == 1008


async def test_single_context_stream_input(fake: FakeElevenLabs, url: str) -> None:
    address = _socket_url(url, "stream-input", output_format="pcm_22050")
    async with websockets.connect(address) as ws:  # the key in the first message instead
        await ws.send(json.dumps({"text": " ", "xi_api_key": fake.api_key}))
        await ws.send(json.dumps({"text": "The sky is blue. "}))
        await ws.send(json.dumps({"text": ""}))  # end of input
        messages = await _until_final(ws)
        with pytest.raises(websockets.exceptions.ConnectionClosedOK):
            await asyncio.wait_for(ws.recv(), timeout=5)

    assert all("contextId" not in m for m in messages)
    samples = np.frombuffer(_audio_of(messages), dtype=np.int16)
    assert 0.7 < len(samples) / 22050 < 3.0
    assert fake.contexts[0].spoken == ["The sky is blue."]
    assert "xi_api_key" not in fake.connections[0].messages[0]
