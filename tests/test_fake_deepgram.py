"""The fake Deepgram streaming server, driven by Pipecat's real `DeepgramSTTService`.

Real speech (Piper) goes in as paced 20 ms audio frames; the fake transcribes it with the local
Whisper model. Protocol details the service doesn't exercise (Finalize, CloseStream, KeepAlive,
the idle timeout, encodings, HTTP failures, stall) are checked with a raw aiohttp client.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import numpy as np
import pytest
import soxr
from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.deepgram.stt import DeepgramSTTService
from pipecat.workers.runner import WorkerRunner

from tests.fakes.base import FakeServer
from tests.fakes.deepgram import FakeDeepgram
from tests.support.speech import synthesize, transcribe

KEY = "dg-test-key"
SENTENCE = "What colour is the sky?"
CHUNK_SECONDS = 0.02


@pytest.fixture(scope="module")
def speech() -> dict[int, np.ndarray]:
    """The sentence at 16 and 8 kHz, with 0.2 s of silence before and 0.7 s after.

    Also loads the Whisper model once, so no test pays for it inside a time limit.
    """
    samples, rate = synthesize(SENTENCE)
    out = {}
    for target in (16000, 8000):
        resampled = soxr.resample(samples.astype(np.float32), rate, target)
        speech_part = np.clip(resampled, -32768, 32767).astype(np.int16)
        lead = np.zeros(int(target * 0.2), dtype=np.int16)
        tail = np.zeros(int(target * 0.7), dtype=np.int16)
        out[target] = np.concatenate([lead, speech_part, tail])
    transcribe(out[16000][: 16000 // 2], 16000)  # warm the model up
    return out


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeDeepgram, str]]:
    provider = FakeDeepgram(KEY)
    server = FakeServer(provider)
    url = await server.start()
    try:
        yield provider, url
    finally:
        await server.stop()


def make_stt(url: str, rate: int, api_key: str = KEY) -> DeepgramSTTService:
    """The service as the product builds it."""
    return DeepgramSTTService(
        api_key=api_key,
        base_url=url,
        encoding="linear16",
        sample_rate=rate,
        settings=DeepgramSTTService.Settings(
            model="nova-3",
            language="en-US",
            interim_results=True,
            endpointing=300,
            smart_format=True,
            punctuate=True,
        ),
    )


# A small pipeline around the real service ------------------------------------------------


class Collector(FrameProcessor):
    """Records transcriptions (downstream) and errors (upstream) with their arrival time."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[tuple[float, Frame]] = []
        self.changed = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame | InterimTranscriptionFrame | ErrorFrame):
            self.frames.append((time.monotonic(), frame))
            self.changed.set()
        await self.push_frame(frame, direction)

    def of(self, kind: type[Frame]) -> list[Frame]:
        return [frame for _, frame in self.frames if type(frame) is kind]

    async def wait_for(self, kind: type[Frame], count: int = 1, timeout: float = 8.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.of(kind)) < count:
                self.changed.clear()
                await self.changed.wait()


@dataclass
class Harness:
    worker: PipelineWorker
    rate: int
    down: Collector
    up: Collector
    sent_bytes: int = 0
    sent: list[bytes] = field(default_factory=list)

    async def speak(self, audio: np.ndarray, speed: float = 1.0) -> None:
        """Queue the audio in 20 ms frames, paced at `speed` times real time."""
        step = int(self.rate * CHUNK_SECONDS)
        start = time.monotonic()
        for index, offset in enumerate(range(0, len(audio), step)):
            chunk = audio[offset : offset + step].tobytes()
            await self.worker.queue_frame(
                InputAudioRawFrame(audio=chunk, sample_rate=self.rate, num_channels=1)
            )
            self.sent_bytes += len(chunk)
            due = start + (index + 1) * CHUNK_SECONDS / speed
            await asyncio.sleep(max(0.0, due - time.monotonic()))


@contextlib.asynccontextmanager
async def pipeline(stt: DeepgramSTTService, rate: int) -> AsyncIterator[Harness]:
    up, down = Collector(), Collector()
    worker = PipelineWorker(
        Pipeline([up, stt, down]),
        params=PipelineParams(audio_in_sample_rate=rate),
        cancel_on_idle_timeout=False,
    )
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(_worker: PipelineWorker, _frame: Frame) -> None:
        started.set()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    run = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(started.wait(), 5)
        yield Harness(worker=worker, rate=rate, down=down, up=up)
    finally:
        await worker.queue_frame(EndFrame())
        try:
            await asyncio.wait_for(asyncio.shield(run), 5)
        except TimeoutError:
            await worker.cancel()
            await asyncio.wait_for(run, 5)


# Through the real DeepgramSTTService ------------------------------------------------------


async def test_service_gets_interims_then_a_real_final_transcript_at_16k(
    fake: tuple[FakeDeepgram, str], speech: dict[int, np.ndarray]
) -> None:
    provider, url = fake
    async with pipeline(make_stt(url, 16000), 16000) as harness:
        await provider.wait_for(lambda: provider.connections_opened == 1, 5)
        await harness.speak(speech[16000])
        await harness.down.wait_for(TranscriptionFrame)
        bytes_sent = harness.sent_bytes
        await provider.wait_for(lambda: provider.bytes_received == bytes_sent, 2)

    final = harness.down.of(TranscriptionFrame)[0]
    assert isinstance(final, TranscriptionFrame)
    assert "sky" in final.text.lower()
    assert final.text[0].isupper()  # punctuate/smart_format: Deepgram returns formatted text

    # Interim results came first, and they were real words of the sentence so far.
    final_at = next(t for t, f in harness.down.frames if isinstance(f, TranscriptionFrame))
    interims = [(t, f) for t, f in harness.down.frames if isinstance(f, InterimTranscriptionFrame)]
    assert interims, "no interim results before the final"
    assert all(t < final_at for t, _ in interims)
    # Real words of the sentence so far. The earliest interim covers only the first few
    # hundred ms, where Whisper may guess ("What's going on?"), so the check is on the last.
    sentence_words = {"what", "color", "colour", "is", "the", "sky", "on", "a", "clear", "day"}
    last_words = {w.strip("?,.!").lower() for w in interims[-1][1].text.split()}
    assert len(last_words & sentence_words) >= 2, interims[-1][1].text

    # The options the service connected with are the ones it was configured with.
    connection = provider.connections[0]
    options = connection.options
    assert (options.encoding, options.sample_rate, options.channels) == ("linear16", 16000, 1)
    assert (options.model, options.language) == ("nova-3", "en-US")
    assert options.endpointing == 300
    assert options.interim_results and options.smart_format and options.punctuate
    assert provider.log.requests[0]["auth_scheme"] == "token"
    assert provider.log.requests[0]["options"]["endpointing"] == 300  # type: ignore[index]

    # The final was the documented shape, and Pipecat parsed it into the SDK's type.
    message = connection.finals[0]
    assert message["is_final"] is True and message["speech_final"] is True
    assert message["from_finalize"] is False
    words = message["channel"]["alternatives"][0]["words"]
    assert [w["word"] for w in words][-1] == "sky"
    assert all(w["start"] < w["end"] for w in words)
    assert 0.1 < words[0]["start"] < 0.4  # the speech starts after 0.2 s of silence
    assert final.result.metadata.request_id == connection.request_id
    assert final.result.channel.alternatives[0].words[-1].punctuated_word == "sky?"
    assert connection.finals_sent == 1 and connection.interims_sent == len(interims)


async def test_service_transcribes_8k_linear16(
    fake: tuple[FakeDeepgram, str], speech: dict[int, np.ndarray]
) -> None:
    provider, url = fake
    async with pipeline(make_stt(url, 8000), 8000) as harness:
        await provider.wait_for(lambda: provider.connections_opened == 1, 5)
        await harness.speak(speech[8000], speed=2.0)
        await harness.down.wait_for(TranscriptionFrame)

    assert "sky" in harness.down.of(TranscriptionFrame)[0].text.lower()  # type: ignore[attr-defined]
    options = provider.connections[0].options
    assert (options.encoding, options.sample_rate) == ("linear16", 8000)
    assert provider.connections[0].audio_seconds == pytest.approx(len(speech[8000]) / 8000, 0.01)


async def test_wrong_key_is_rejected_before_the_upgrade(fake: tuple[FakeDeepgram, str]) -> None:
    provider, url = fake
    async with pipeline(make_stt(url, 16000, api_key="wrong-key"), 16000) as harness:
        await harness.up.wait_for(ErrorFrame, timeout=5)

    error = harness.up.of(ErrorFrame)[0]
    assert isinstance(error, ErrorFrame) and "401" in error.error
    assert provider.rejected == [401]
    assert provider.connections_opened == 0

    # The raw handshake: 401 with Deepgram's headers; the right key works as Token or Bearer.
    ws_url = url.replace("http", "ws") + "/v1/listen?model=nova-3"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(ws_url, headers={"Authorization": "Token nope"})
        assert info.value.status == 401
        assert info.value.headers is not None and "dg-request-id" in info.value.headers
        async with session.ws_connect(ws_url, headers={"Authorization": f"Bearer {KEY}"}) as ws:
            assert not ws.closed
    assert provider.connections[-1].auth_scheme == "bearer"


async def test_dropped_socket_makes_pipecat_reconnect(
    fake: tuple[FakeDeepgram, str], speech: dict[int, np.ndarray]
) -> None:
    provider, url = fake
    provider.faults.drop_after_ms = 1000  # mid-utterance: the speech starts at 0.2 s
    async with pipeline(make_stt(url, 16000), 16000) as harness:
        await provider.wait_for(lambda: provider.connections_opened == 1, 5)
        await harness.speak(speech[16000][: 16000 * 1])  # the drop lands during this second
        await provider.wait_for(lambda: provider.connections[0].dropped, 2)
        # Pipecat backs off (at least 4 s) and opens a second connection by itself.
        await provider.wait_for(lambda: provider.connections_opened == 2, 8)
        await harness.speak(speech[16000], speed=2.0)
        await harness.down.wait_for(TranscriptionFrame)

    first, second = provider.connections
    assert first.dropped and first.finals_sent == 0
    assert second.finals_sent == 1
    assert "sky" in harness.down.of(TranscriptionFrame)[0].text.lower()  # type: ignore[attr-defined]
    assert "sky" in second.finals[0]["channel"]["alternatives"][0]["transcript"].lower()


# The protocol in detail, with a raw client ------------------------------------------------


def listen_url(url: str, **query: str) -> str:
    params = "&".join(f"{key}={value}" for key, value in query.items())
    return f"{url.replace('http', 'ws')}/v1/listen?{params}"


async def next_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict:
    message = await ws.receive(timeout=timeout)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data)


async def test_finalize_keepalive_and_close_stream(
    fake: tuple[FakeDeepgram, str], speech: dict[int, np.ndarray]
) -> None:
    provider, url = fake
    audio = speech[16000][: -int(16000 * 0.6)].tobytes()  # speech, with little silence after
    query = {"model": "nova-3", "encoding": "linear16", "sample_rate": "16000"}
    query |= {"endpointing": "false", "punctuate": "true"}
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            listen_url(url, **query), headers={"Authorization": f"Token {KEY}"}
        ) as ws,
    ):
        for offset in range(0, len(audio), 3200):
            await ws.send_bytes(audio[offset : offset + 3200])
        await ws.send_str(json.dumps({"type": "KeepAlive"}))
        await ws.send_str(json.dumps({"type": "Finalize"}))
        results = await next_json(ws)
        await ws.send_str(json.dumps({"type": "CloseStream"}))
        metadata = await next_json(ws)
        closing = await ws.receive(timeout=5)

    assert results["type"] == "Results"
    assert results["is_final"] is True and results["from_finalize"] is True
    alternative = results["channel"]["alternatives"][0]
    assert "sky" in alternative["transcript"].lower()
    assert set(alternative) >= {"transcript", "confidence", "words"}
    assert set(alternative["words"][0]) >= {"word", "start", "end", "confidence", "punctuated_word"}
    assert results["start"] == 0.0
    assert results["duration"] == pytest.approx(len(audio) / 2 / 16000, abs=0.02)
    assert set(results["metadata"]) >= {"request_id", "model_info", "model_uuid"}
    assert results["metadata"]["model_info"]["arch"] == "nova-3"

    assert metadata["type"] == "Metadata"
    assert metadata["request_id"] == results["metadata"]["request_id"]
    assert metadata["sha256"] == hashlib.sha256(audio).hexdigest()
    assert metadata["duration"] == pytest.approx(len(audio) / 2 / 16000, abs=0.02)
    assert metadata["channels"] == 1 and metadata["transaction_key"] == "deprecated"
    assert metadata["models"] == [results["metadata"]["model_uuid"]]
    assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1000

    connection = provider.connections[0]
    assert connection.keepalives == 1 and provider.keepalives_received == 1
    assert connection.finalizes == 1 and connection.bytes_received == len(audio)


async def test_idle_socket_closes_with_net_0001_and_keepalive_holds_it(
    fake: tuple[FakeDeepgram, str],
) -> None:
    provider, url = fake
    provider.idle_timeout = 0.3
    headers = {"Authorization": f"Token {KEY}"}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(listen_url(url, model="nova-3"), headers=headers) as ws:
            for _ in range(6):  # 0.6 s, twice the timeout, held open by KeepAlive
                await ws.send_str(json.dumps({"type": "KeepAlive"}))
                await asyncio.sleep(0.1)
            assert not ws.closed
            closing = await ws.receive(timeout=2)
    assert closing.type == aiohttp.WSMsgType.CLOSE
    assert (closing.data, closing.extra) == (1011, "NET-0001")
    assert provider.connections[0].keepalives == 6


async def test_mulaw_endpointing_and_final_latency(
    fake: tuple[FakeDeepgram, str], speech: dict[int, np.ndarray]
) -> None:
    provider, url = fake
    provider.faults.first_byte_ms = 1200
    audio = encode_mulaw(speech[8000])
    query = {"encoding": "mulaw", "sample_rate": "8000", "model": "nova-3", "endpointing": "300"}
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            listen_url(url, **query), headers={"Authorization": f"Token {KEY}"}
        ) as ws,
    ):
        for offset in range(0, len(audio), 1600):
            await ws.send_bytes(audio[offset : offset + 1600])
        sent_at = time.monotonic()
        results = await next_json(ws)
        latency = time.monotonic() - sent_at

    assert results["is_final"] is True and results["speech_final"] is True
    assert "sky" in results["channel"]["alternatives"][0]["transcript"]  # lower case: no punctuate
    assert "punctuated_word" not in results["channel"]["alternatives"][0]["words"][0]
    assert latency >= 1.15
    assert provider.connections[0].finals_sent == 1


async def test_bad_options_unsupported_audio_http_failures_and_stall(
    fake: tuple[FakeDeepgram, str], speech: dict[int, np.ndarray]
) -> None:
    provider, url = fake
    headers = {"Authorization": f"Token {KEY}"}
    async with aiohttp.ClientSession() as session:
        # An encoding Deepgram doesn't know: 400 before the upgrade, with dg-error.
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(
                listen_url(url, encoding="wav", sample_rate="8000"), headers=headers
            )
        assert info.value.status == 400
        assert info.value.headers is not None and "encoding" in info.value.headers["dg-error"]

        # One it knows but that this audio isn't: closed with DATA-0000 once audio arrives.
        opus = listen_url(url, encoding="opus", sample_rate="48000")
        async with session.ws_connect(opus, headers=headers) as ws:
            await ws.send_bytes(b"\x01\x02\x03\x04")
            closing = await ws.receive(timeout=2)
        assert (closing.data, closing.extra) == (1008, "DATA-0000")

        # Injected HTTP failure, once; the next attempt is served.
        provider.faults.http_status, provider.faults.http_failures = 503, 1
        linear = listen_url(url, encoding="linear16", sample_rate="16000", endpointing="300")
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(linear, headers=headers)
        assert info.value.status == 503

        # Stall: accepted, audio read, nothing sent back.
        provider.faults.stall = True
        async with session.ws_connect(linear, headers=headers) as ws:
            await ws.send_bytes(speech[16000].tobytes())
            await ws.send_str(json.dumps({"type": "Finalize"}))
            with pytest.raises(TimeoutError):
                await ws.receive(timeout=1.0)
    stalled = provider.connections[-1]
    assert stalled.bytes_received == speech[16000].nbytes and stalled.sent == []
    assert provider.rejected == [400, 503]


def encode_mulaw(samples: np.ndarray) -> bytes:
    """int16 samples to G.711 μ-law bytes (the same as CPython's old `audioop.lin2ulaw`)."""
    pcm = samples.astype(np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    pcm = np.minimum(np.abs(pcm), 8159) + 0x21
    segment = np.searchsorted([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], pcm)
    value = np.where(segment > 7, 0x7F, (segment << 4) | ((pcm >> (segment + 1)) & 0x0F))
    return (value ^ mask).astype(np.uint8).tobytes()
