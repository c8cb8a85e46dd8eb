"""The `voicebot call` client against a tiny Twilio-like peer that lives in this file.

The peer answers `/twilio/voice` with TwiML, records every WebSocket message with its arrival
time, plays a short greeting, and replies `REPLY_DELAY` seconds after the caller's tone ends.
DTMF digits drive extra behaviour: "5" sends a 2 s burst plus a mark, "7" starts a long paced
monologue that the peer cuts with a `clear` when the caller talks over it, "9" sends a `clear`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import warnings
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiohttp import WSMsgType, web
from twilio.request_validator import RequestValidator

from bot.caller import run_call
from bot.caller.audio import (
    load_wav,
    resample,
    rms,
    speech_end_offset,
    ulaw_decode,
    ulaw_encode,
    write_wav,
)
from bot.caller.timeline import BotAudioLog
from bot.caller.twilio import TwilioCaller, local_stream_url, parse_twiml
from bot.caller.webrtc import CallerAudioTrack, frame_to_mono_int16

PUBLIC_STREAM_URL = "wss://bot.example.test/twilio/stream"
CUSTOM_PARAMETERS = {"from_number": "+15005550006", "tenant": "acme & co"}
REPLY_DELAY = 0.3
GREETING_SECONDS = 0.6
REPLY_SECONDS = 1.0
LOUD_RMS = 300.0


def tone(seconds: float, rate: int = 8000, amplitude: float = 8000.0, hz: float = 440.0):
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def silence(seconds: float, rate: int = 8000) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.int16)


# ------------------------------------------------------------------------------ the peer


@dataclass
class PeerConnection:
    """What one WebSocket connection of the peer saw."""

    headers: dict[str, str]
    path: str
    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    reply_started_at: float | None = None
    last_loud_at: float | None = None
    loud_frames: int = 0
    barge_frames: int = 0
    monologue: asyncio.Task[None] | None = None


class TwilioPeer:
    """A stand-in for our server's Twilio routes."""

    def __init__(self) -> None:
        self.webhooks: list[tuple[dict[str, str], dict[str, str]]] = []  # (form, headers)
        self.connections: list[PeerConnection] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/twilio/voice", self.voice)
        app.router.add_get("/twilio/stream", self.stream)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    async def voice(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.webhooks.append((form, dict(request.headers)))
        params = "".join(
            f'<Parameter name="{k}" value="{v.replace("&", "&amp;")}"/>'
            for k, v in CUSTOM_PARAMETERS.items()
        )
        twiml = (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
            f'<Stream url="{PUBLIC_STREAM_URL}">{params}</Stream></Connect></Response>'
        )
        return web.Response(text=twiml, content_type="text/xml")

    async def stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = PeerConnection(dict(request.headers), request.path)
        self.connections.append(conn)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            message = json.loads(msg.data)
            conn.messages.append((time.monotonic(), message))
            self._on_message(ws, conn, message)
        return ws

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _on_message(self, ws: web.WebSocketResponse, conn: PeerConnection, message: dict) -> None:
        event = message.get("event")
        if event == "start":
            self._spawn(self.play(ws, tone(GREETING_SECONDS, hz=300.0)))
        elif event == "media":
            self._on_media(ws, conn, ulaw_decode(base64.b64decode(message["media"]["payload"])))
        elif event == "dtmf":
            self._on_digit(ws, conn, message["dtmf"]["digit"])

    def _on_media(self, ws: web.WebSocketResponse, conn: PeerConnection, pcm: np.ndarray) -> None:
        now = time.monotonic()
        if rms(pcm) > LOUD_RMS:
            conn.loud_frames += 1
            conn.last_loud_at = now
            if conn.monologue is not None and not conn.monologue.done():
                conn.barge_frames += 1
                if conn.barge_frames >= 10:  # 200 ms of caller speech over the bot
                    conn.monologue.cancel()
                    self._spawn(ws.send_json({"event": "clear", "streamSid": "MZpeer"}))
            return
        if conn.loud_frames >= 25 and conn.reply_started_at is None and conn.monologue is None:
            conn.reply_started_at = conn.last_loud_at  # placeholder until the reply starts
            self._spawn(self.reply(ws, conn))

    def _on_digit(self, ws: web.WebSocketResponse, conn: PeerConnection, digit: str) -> None:
        if digit == "5":
            self._spawn(self.burst_then_mark(ws))
        elif digit == "7":
            conn.monologue = self._spawn(self.play(ws, tone(3.0, hz=200.0)))
        elif digit == "9":
            self._spawn(ws.send_json({"event": "clear", "streamSid": "MZpeer"}))

    async def reply(self, ws: web.WebSocketResponse, conn: PeerConnection) -> None:
        assert conn.last_loud_at is not None
        await asyncio.sleep(max(0.0, conn.last_loud_at + REPLY_DELAY - time.monotonic()))
        conn.reply_started_at = time.monotonic()
        await self.play(ws, tone(REPLY_SECONDS, hz=500.0))

    async def play(self, ws: web.WebSocketResponse, pcm: np.ndarray) -> None:
        """Stream μ-law in 20 ms messages, paced in real time like our server."""
        start = time.monotonic()
        for index in range(0, len(pcm), 160):
            await asyncio.sleep(max(0.0, start + index / 8000 - time.monotonic()))
            await self.send_media(ws, pcm[index : index + 160])

    async def burst_then_mark(self, ws: web.WebSocketResponse) -> None:
        await self.send_media(ws, tone(2.0, hz=250.0))
        await ws.send_json({"event": "mark", "streamSid": "MZpeer", "mark": {"name": "burst"}})

    @staticmethod
    async def send_media(ws: web.WebSocketResponse, pcm: np.ndarray) -> None:
        payload = base64.b64encode(ulaw_encode(pcm)).decode()
        await ws.send_json({"event": "media", "streamSid": "MZpeer", "media": {"payload": payload}})


@pytest.fixture
async def peer() -> AsyncIterator[TwilioPeer]:
    server = TwilioPeer()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def caller_wav(tmp_path: Path) -> Path:
    """0.3 s silence, 1.0 s tone (the caller's "speech"), 0.5 s silence, at 16 kHz stereo."""
    mono = np.concatenate([silence(0.3, 16000), tone(1.0, 16000), silence(0.5, 16000)])
    path = tmp_path / "caller.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(np.repeat(mono, 2).astype("<i2").tobytes())
    return path


def media_messages(conn: PeerConnection) -> list[tuple[float, dict[str, Any]]]:
    return [(t, m) for t, m in conn.messages if m.get("event") == "media"]


# ------------------------------------------------------------------------------ audio helpers


def test_ulaw_round_trip_accuracy() -> None:
    x = np.arange(-32768, 32768, dtype=np.int16)
    decoded = ulaw_decode(ulaw_encode(x)).astype(np.int64)
    error = np.abs(decoded - x.astype(np.int64))
    magnitude = np.abs(x.astype(np.int64))
    relative = error / np.maximum(magnitude, 1)
    # 8-bit μ-law keeps ~3 % relative error (up to 4.2 % at a segment's low edge), small
    # values stay within half a step, and values beyond the clip level (32635) saturate
    assert error[magnitude <= 256].max() <= 8
    assert relative[magnitude > 256].max() < 0.043
    assert relative[(magnitude > 4096) & (magnitude <= 32635)].max() < 0.034
    # every code except μ-law's "negative zero" (0x7F) survives decode → encode unchanged
    codes = np.array([c for c in range(256) if c != 0x7F], dtype=np.uint8)
    assert ulaw_encode(ulaw_decode(codes.tobytes())) == codes.tobytes()
    assert ulaw_encode(np.zeros(4, np.int16)) == b"\xff" * 4
    assert ulaw_decode(b"\xff\x7f").tolist() == [0, 0]
    assert len(ulaw_encode(tone(0.02))) == 160


def test_ulaw_decode_matches_g711_reference() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
        reference = np.frombuffer(audioop.ulaw2lin(bytes(range(256)), 2), dtype=np.int16)
        encoded_ref = np.frombuffer(audioop.lin2ulaw(tone(0.5).tobytes(), 2), np.uint8)
    assert np.array_equal(ulaw_decode(bytes(range(256))), reference)
    ours = np.frombuffer(ulaw_encode(tone(0.5)), np.uint8).astype(int)
    assert np.abs(ours - encoded_ref.astype(int)).max() <= 1  # rounding of negatives only


def test_wav_stereo_any_rate_to_mono(tmp_path: Path) -> None:
    left, right = np.full(441, 1000, np.int16), np.full(441, 3000, np.int16)
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(44100)
        out.writeframes(np.column_stack([left, right]).astype("<i2").tobytes())
    pcm, rate = load_wav(path)
    assert rate == 44100 and pcm.dtype == np.int16 and len(pcm) == 441
    assert np.all(pcm == 2000)
    write_wav(tmp_path / "mono.wav", pcm, rate)
    again, again_rate = load_wav(tmp_path / "mono.wav")
    assert again_rate == 44100 and np.array_equal(again, pcm)


def test_resample_keeps_duration_and_pitch() -> None:
    out = resample(tone(1.0, 22050, hz=440.0), 22050, 8000)
    assert abs(len(out) - 8000) <= 1
    spectrum = np.abs(np.fft.rfft(out.astype(np.float64)))
    assert abs(np.argmax(spectrum) * 8000 / len(out) - 440.0) < 2.0


def test_speech_end_offset() -> None:
    pcm = np.concatenate([silence(0.5, 16000), tone(1.0, 16000), silence(0.7, 16000)])
    assert speech_end_offset(pcm, 16000) == pytest.approx(1.5, abs=0.021)
    noisy = pcm + np.random.default_rng(1).normal(0, 20, len(pcm)).astype(np.int16)
    assert speech_end_offset(noisy, 16000) == pytest.approx(1.5, abs=0.021)
    assert speech_end_offset(silence(1.0), 8000) == 0.0


def test_twiml_and_stream_url() -> None:
    twiml = (
        '<Response><Connect><Stream url="wss://bot.example.test/twilio/stream">'
        '<Parameter name="a" value="1"/></Stream></Connect></Response>'
    )
    stream = parse_twiml(twiml)
    assert stream.url == "wss://bot.example.test/twilio/stream" and stream.parameters == {"a": "1"}
    assert (
        local_stream_url("http://localhost:7860", stream.url) == "ws://localhost:7860/twilio/stream"
    )
    assert local_stream_url("https://x.test", stream.url) == "wss://x.test/twilio/stream"


def test_clear_discards_unplayed_audio() -> None:
    log = BotAudioLog(threshold=1.0, buffered=True)
    for _ in range(100):  # 2 s arriving at once at t=10: plays 10.0 .. 12.0
        log.add(tone(0.02), 8000, now=10.0)
    assert log.play_end == pytest.approx(12.0)
    dropped = log.clear(now=10.5)
    assert dropped == pytest.approx(1.5, abs=1e-6)
    assert log.last_audible_end() == pytest.approx(10.5)
    assert len(log.render(10.0, 11.0)) == 4000


# ------------------------------------------------------------------------------ Twilio caller


@pytest.mark.asyncio
async def test_twilio_call_protocol_and_timing(
    peer: TwilioPeer, caller_wav: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    out = tmp_path / "reply.wav"
    result = await run_call(caller_wav, peer.base_url, "twilio", out, greeting_max_wait=3.0)

    assert result["error"] is None, result
    assert result["transport"] == "twilio"
    assert 0 < result["connected_ms"] < 1000
    assert result["greeting_seconds"] == pytest.approx(GREETING_SECONDS, abs=0.1)
    assert result["speech_seconds"] == pytest.approx(1.3, abs=0.021)
    assert result["first_reply_audio_ms"] == pytest.approx(REPLY_DELAY * 1000, abs=60)
    assert result["reply_seconds"] == pytest.approx(REPLY_SECONDS, abs=0.1)
    assert result["clears"] == 0 and result["signed"] is False

    # the webhook looked like Twilio's
    form, headers = peer.webhooks[0]
    assert form["CallSid"] == result["call_sid"] and len(form["CallSid"]) == 34
    assert form["AccountSid"].startswith("AC") and len(form["AccountSid"]) == 34
    assert form["CallStatus"] == "ringing" and form["Direction"] == "inbound"
    assert "X-Twilio-Signature" not in headers

    conn = peer.connections[0]
    assert conn.path == "/twilio/stream"
    first, second = conn.messages[0][1], conn.messages[1][1]
    assert first == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert second["event"] == "start"
    start = second["start"]
    assert second["streamSid"] == start["streamSid"] == result["stream_sid"]
    assert start["streamSid"].startswith("MZ") and len(start["streamSid"]) == 34
    assert start["callSid"] == result["call_sid"]
    assert start["accountSid"] == form["AccountSid"]
    assert start["tracks"] == ["inbound"]
    assert start["customParameters"] == CUSTOM_PARAMETERS
    assert start["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert conn.messages[-1][1]["event"] == "stop"
    assert conn.messages[-1][1]["stop"]["callSid"] == result["call_sid"]

    media = media_messages(conn)
    payloads = [base64.b64decode(m["media"]["payload"]) for _, m in media]
    assert all(len(p) == 160 for p in payloads)
    assert all(m["media"]["track"] == "inbound" for _, m in media)
    assert [int(m["media"]["chunk"]) for _, m in media] == list(range(1, len(media) + 1))
    sequence = [int(m["sequenceNumber"]) for _, m in conn.messages[1:]]
    assert sequence == sorted(sequence) and len(set(sequence)) == len(sequence)
    stamps = [int(m["media"]["timestamp"]) for _, m in media]
    assert stamps == sorted(stamps)
    # real-time pacing: every window of 50 frames spans 1 s ± 15 %
    times = [t for t, _ in media]
    spans = [times[i + 50] - times[i] for i in range(0, len(times) - 50, 25)]
    assert spans and all(0.85 < span < 1.15 for span in spans), spans
    # the caller's tone went out (silence around it: 0xFF), about 1 s of it
    loud = [p for p in payloads if rms(ulaw_decode(p)) > LOUD_RMS]
    assert 48 <= len(loud) <= 52
    assert payloads[0] == b"\xff" * 160

    pcm, rate = load_wav(out)
    assert rate == 8000 and len(pcm) / rate == pytest.approx(REPLY_SECONDS, abs=0.1)
    assert rms(pcm) > 4000


@pytest.mark.asyncio
async def test_twilio_signatures_verify(peer: TwilioPeer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "env-token")
    monkeypatch.delenv("VOICEBOT_PUBLIC_URL", raising=False)
    validator = RequestValidator("env-token")
    async with TwilioCaller(peer.base_url, energy_threshold=1.0):
        pass
    form, headers = peer.webhooks[0]
    posted = f"{peer.base_url}/twilio/voice"
    assert validator.validate(posted, form, headers["X-Twilio-Signature"])
    assert not RequestValidator("other").validate(posted, form, headers["X-Twilio-Signature"])
    ws_signature = peer.connections[0].headers["X-Twilio-Signature"]
    assert validator.validate(PUBLIC_STREAM_URL, {}, ws_signature)

    # an explicit token wins over the environment; public_url changes the signed webhook URL
    async with TwilioCaller(peer.base_url, auth_token="arg-token", public_url="https://pub.test"):
        pass
    form, headers = peer.webhooks[1]
    signature = headers["X-Twilio-Signature"]
    assert RequestValidator("arg-token").validate("https://pub.test/twilio/voice", form, signature)
    ws_signature = peer.connections[1].headers["X-Twilio-Signature"]
    assert RequestValidator("arg-token").validate(PUBLIC_STREAM_URL, {}, ws_signature)

    # like the server, the caller takes the public URL from VOICEBOT_PUBLIC_URL
    monkeypatch.setenv("VOICEBOT_PUBLIC_URL", "https://env-public.test/")
    async with TwilioCaller(peer.base_url):
        pass
    form, headers = peer.webhooks[2]
    signed = "https://env-public.test/twilio/voice"
    assert validator.validate(signed, form, headers["X-Twilio-Signature"])


@pytest.mark.asyncio
async def test_twilio_barge_in_dtmf_and_marks(
    peer: TwilioPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    async with TwilioCaller(peer.base_url) as caller:
        assert await caller.wait_for_bot_audio(max_wait=2.0) is not None  # the greeting
        assert await caller.wait_for_bot_quiet(gap=0.3, max_wait=3.0)

        # a mark after a 2 s burst is echoed once the burst has "played"
        await caller.send_dtmf("5")
        mark = await caller.wait_for_event("mark", max_wait=2.0)
        assert mark is not None and mark.message["mark"]["name"] == "burst"
        await asyncio.sleep(0.3)
        # barge in: the peer's monologue starts, the caller talks over it, the peer clears
        await caller.send_dtmf("7")
        monologue = await caller.wait_for_bot_audio(after=time.monotonic(), max_wait=2.0)
        assert monologue is not None
        spoke_at = time.monotonic()
        await caller.send_pcm(tone(0.5))
        clear = await caller.wait_for_event("clear", after=spoke_at, max_wait=2.0)
        assert clear is not None
        assert clear.t - spoke_at < 0.5  # 200 ms of speech + pacing
        assert await caller.wait_for_bot_quiet(gap=0.3, max_wait=2.0)
        heard_after_clear = [c for c in caller.log.chunks if c.start > clear.t + 0.05]
        assert not any(c.audible for c in heard_after_clear)

    conn = peer.connections[0]
    digits = [m["dtmf"] for _, m in conn.messages if m["event"] == "dtmf"]
    assert digits == [
        {"track": "inbound_track", "digit": "5"},
        {"track": "inbound_track", "digit": "7"},
    ]
    echoes = [(t, m) for t, m in conn.messages if m["event"] == "mark"]
    assert len(echoes) == 1 and echoes[0][1]["mark"] == {"name": "burst"}
    assert echoes[0][1]["streamSid"] == caller.stream_sid
    # the burst arrived in one go; Twilio echoes the mark after playing its 2 s
    assert echoes[0][0] - mark.t == pytest.approx(2.0, abs=0.15)


@pytest.mark.asyncio
async def test_twilio_clear_echoes_pending_marks(
    peer: TwilioPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    async with TwilioCaller(peer.base_url) as caller:
        await caller.send_dtmf("5")
        mark = await caller.wait_for_event("mark", max_wait=2.0)
        assert mark is not None
        await caller.send_dtmf("9")
        clear = await caller.wait_for_event("clear", max_wait=2.0)
        assert clear is not None
        await asyncio.sleep(0.1)
    echoes = [t for t, m in peer.connections[0].messages if m["event"] == "mark"]
    assert len(echoes) == 1 and echoes[0] - clear.t < 0.1
    assert caller.clears == 1


@pytest.mark.asyncio
async def test_twilio_refused_webhook_is_reported(tmp_path: Path, caller_wav: Path) -> None:
    app = web.Application()
    app.router.add_post("/twilio/voice", lambda _: web.Response(status=403))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        result = await run_call(caller_wav, url, "twilio")
    finally:
        await runner.cleanup()
    assert result["error"] is not None and "403" in result["error"]
    assert result["first_reply_audio_ms"] is None and result["connected_ms"] is None


# ------------------------------------------------------------------------------ WebRTC track


@pytest.mark.asyncio
async def test_webrtc_track_frames_and_pacing() -> None:
    speech = tone(0.1, 48000)  # 4800 samples = 5 frames
    track = CallerAudioTrack(speech)
    frames = []
    t0 = time.monotonic()
    for _ in range(10):
        frames.append(await track.recv())
    elapsed = time.monotonic() - t0
    assert elapsed == pytest.approx(0.2, abs=0.04)
    for index, frame in enumerate(frames):
        assert frame.samples == 960
        assert frame.sample_rate == 48000
        assert frame.format.name == "s16" and frame.layout.name == "mono"
        assert frame.pts == index * 960 and frame.time_base == Fraction(1, 48000)
    audio = np.concatenate([frame_to_mono_int16(f) for f in frames])
    assert np.array_equal(audio[:4800], speech)
    assert not audio[4800:].any()
    assert track.initial is not None and track.initial.done.is_set()
    assert len(track.initial.sent_at) == 5
    track.stop()


def test_frame_to_mono_int16_handles_stereo_and_float() -> None:
    stereo = np.column_stack([np.full(960, 1000), np.full(960, 3000)]).astype(np.int16)
    packed = av.AudioFrame.from_ndarray(stereo.reshape(1, -1), format="s16", layout="stereo")
    assert np.all(frame_to_mono_int16(packed) == 2000)
    planar = av.AudioFrame.from_ndarray(
        np.full((2, 960), 0.5, dtype=np.float32), format="fltp", layout="stereo"
    )
    assert np.all(frame_to_mono_int16(planar) == 16384)
