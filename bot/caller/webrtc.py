"""A WebRTC caller (aiortc) for Pipecat SmallWebRTC's `POST /api/offer`.

The caller's microphone is `CallerAudioTrack`: 20 ms s16 mono 48 kHz frames, paced in real
time, silence unless audio is queued with `play()`. The bot's audio track is recorded frame by
frame with its arrival time; because WebRTC carries silence too, bot audio is detected by energy.

On loopback, aiortc leaves 127.0.0.1 out of its ICE candidates: a host whose only interface is
`lo` needs another loopback address (`ip addr add 127.0.0.2/8 dev lo`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bot.caller.audio import (
    FRAME_SECONDS,
    float_to_int16,
    load_wav,
    resample,
    speech_end_offset,
    split_frames,
)
from bot.caller.timeline import (
    BotAudioLog,
    CallTiming,
    HearsTheBot,
    OutgoingAudio,
    Playback,
    flow_summary,
    ms,
    run_call_flow,
    time_of_offset,
)
from bot.webrtc_jitter import use_server_jitter_buffer

RATE = 48000
FRAME_SAMPLES = int(RATE * FRAME_SECONDS)  # 960
DEFAULT_ENERGY_THRESHOLD = 50.0  # RMS in int16 units, about -56 dBFS
LOOPBACK_HINT = (
    "the offer has no ICE candidates: aiortc skips 127.0.0.1, so a host with only `lo` needs "
    "another address (ip addr add 127.0.0.2/8 dev lo)"
)


RTVI_CLIENT_READY = {
    "label": "rtvi-ai",
    "type": "client-ready",
    "id": "voicebot-call-1",
    "data": {"version": "1.0.0", "about": {"library": "voicebot-call"}},
}


def rtvi_messages(messages: list[tuple[float, str]], kind: str) -> list[dict[str, Any]]:
    """The RTVI messages of one `type` among data channel messages received."""
    found = []
    for _, text in messages:
        try:
            message = json.loads(text)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("type") == kind:
            found.append(message)
    return found


class WebRTCCallError(RuntimeError):
    """Signalling or connection failed."""


class CallerAudioTrack(MediaStreamTrack):
    """The caller's microphone: queued audio, else silence, one 20 ms frame per 20 ms.

    Frame k (pts = k * 960, time base 1/48000) is handed out at start + (k + 1) * 20 ms, once
    its 20 ms have been "spoken", the way a microphone delivers audio.
    """

    kind = "audio"

    def __init__(self, pcm: np.ndarray | None = None, rate: int = RATE) -> None:
        super().__init__()
        self.rate = rate
        self.frame_samples = int(rate * FRAME_SECONDS)
        self.outgoing = OutgoingAudio(self.frame_samples, np.zeros(self.frame_samples, np.int16))
        self.started_at: float | None = None
        self.frames_sent = 0
        self.initial: Playback | None = self.play(pcm) if pcm is not None else None

    def play(self, pcm: np.ndarray) -> Playback:
        """Queue mono int16 audio at the track's rate; it plays after what is queued."""
        return self.outgoing.enqueue(split_frames(pcm, self.frame_samples))

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.started_at is None:
            self.started_at = time.monotonic()
        due = self.started_at + (self.frames_sent + 1) * FRAME_SECONDS
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        samples = np.asarray(self.outgoing.next_frame(time.monotonic()), dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self.frames_sent * self.frame_samples
        frame.time_base = Fraction(1, self.rate)
        self.frames_sent += 1
        return frame


def frame_to_mono_int16(frame: av.AudioFrame) -> np.ndarray:
    """Any PyAV audio frame (packed or planar, int or float) → mono int16."""
    data = frame.to_ndarray()
    channels = max(1, len(frame.layout.channels))
    if frame.format.is_planar:
        samples = data.reshape(channels, -1).astype(np.float64).mean(axis=0)
    else:
        samples = data.reshape(-1, channels).astype(np.float64).mean(axis=1)
    name = frame.format.name.rstrip("p")
    if name in ("flt", "dbl"):
        return float_to_int16(samples)
    if name == "s32":
        return float_to_int16(samples / float(1 << 31))
    if name == "u8":
        return float_to_int16((samples - 128.0) / 128.0)
    return np.clip(np.round(samples), -32768, 32767).astype(np.int16)


class WebRTCCaller(HearsTheBot):
    """One WebRTC call: offer/answer over HTTP, our mic track out, the bot's audio recorded."""

    def __init__(
        self,
        url: str = "http://localhost:7860",
        *,
        headers: dict[str, str] | None = None,
        request_data: dict[str, Any] | None = None,
        energy_threshold: float = DEFAULT_ENERGY_THRESHOLD,
        data_channel: bool = True,
        ice_servers: list[str] | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        """`headers` go on the offer POST (e.g. Authorization); `ice_servers` are STUN/TURN
        URLs (none by default: loopback and LANs need none, and a default STUN server would
        stall gathering on a machine without internet)."""
        self.url = url.rstrip("/")
        self.headers = dict(headers or {})
        self.request_data = dict(request_data or {})
        self.connect_timeout = connect_timeout
        self.log = BotAudioLog(threshold=energy_threshold, buffered=False)
        self.track = CallerAudioTrack()
        self.messages: list[tuple[float, str]] = []  # data channel messages received
        self.pc_id: str | None = None
        self.started_at: float | None = None  # offer POST sent
        self.connected_at: float | None = None  # connectionState "connected"
        self.offer_ms: float | None = None
        self._with_data_channel = data_channel
        self._ice_servers = [RTCIceServer(u) for u in (ice_servers or [])]
        self._pc: RTCPeerConnection | None = None
        self._connected = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def connected_ms(self) -> float | None:
        """From the offer POST to connectionState "connected"."""
        if self.started_at is None or self.connected_at is None:
            return None
        return ms(self.connected_at - self.started_at)

    async def connect(self) -> None:
        config = RTCConfiguration(
            iceServers=self._ice_servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE
        )
        use_server_jitter_buffer()  # arrival time of the bot audio, not a playout delay
        pc = self._pc = RTCPeerConnection(config)
        self._install_handlers(pc)
        pc.addTrack(self.track)
        if self._with_data_channel:
            channel = pc.createDataChannel("chat")
            channel.on("message", self._on_message)
            # Like Pipecat's client SDKs: announce readiness so the server's RTVI messages flow.
            channel.on("open", lambda: channel.send(json.dumps(RTVI_CLIENT_READY)))
        await pc.setLocalDescription(await pc.createOffer())
        await self._wait_gathering(pc)
        if "a=candidate" not in pc.localDescription.sdp:
            raise WebRTCCallError(LOOPBACK_HINT)
        self.started_at = time.monotonic()
        answer = await self._post_offer(pc.localDescription)
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        try:
            await asyncio.wait_for(self._connected.wait(), self.connect_timeout)
        except TimeoutError as exc:
            state = pc.connectionState
            raise WebRTCCallError(
                f"not connected after {self.connect_timeout} s ({state})"
            ) from exc

    def play(self, pcm48k: np.ndarray) -> Playback:
        """Speak mono int16 48 kHz audio; `Playback.sent_at` fills as frames go out."""
        return self.track.play(pcm48k)

    async def close(self) -> None:
        self.track.stop()
        self.track.outgoing.abort()
        if self._pc is not None:
            await self._pc.close()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ---------------------------------------------------------------- internals

    def _install_handlers(self, pc: RTCPeerConnection) -> None:
        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "connected" and self.connected_at is None:
                self.connected_at = time.monotonic()
                self._connected.set()
            elif pc.connectionState in ("failed", "closed"):
                self.log.closed = True

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._tasks.append(asyncio.create_task(self._record(track)))

    def _on_message(self, message: str | bytes) -> None:
        text = message if isinstance(message, str) else message.decode("utf-8", "replace")
        self.messages.append((time.monotonic(), text))

    async def _record(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self.log.add(frame_to_mono_int16(frame), frame.sample_rate, time.monotonic())
        except MediaStreamError:
            self.log.closed = True

    @staticmethod
    async def _wait_gathering(pc: RTCPeerConnection, max_wait: float = 10.0) -> None:
        """aiortc gathers inside setLocalDescription; this only guards other versions."""
        if pc.iceGatheringState == "complete":
            return
        done = asyncio.Event()

        @pc.on("icegatheringstatechange")
        def on_gathering() -> None:
            if pc.iceGatheringState == "complete":
                done.set()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), max_wait)

    async def _post_offer(self, offer: RTCSessionDescription) -> dict[str, Any]:
        body = {
            "sdp": offer.sdp,
            "type": offer.type,
            "pc_id": None,
            "restart_pc": False,
            "request_data": self.request_data,
        }
        timeout = aiohttp.ClientTimeout(total=self.connect_timeout)
        t0 = time.monotonic()
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(f"{self.url}/api/offer", json=body, headers=self.headers) as response,
        ):
            text = await response.text()
            if response.status != 200:
                raise WebRTCCallError(f"POST /api/offer answered HTTP {response.status}")
        self.offer_ms = ms(time.monotonic() - t0)
        try:
            answer = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WebRTCCallError("POST /api/offer did not answer JSON") from exc
        if not isinstance(answer, dict) or "sdp" not in answer or "type" not in answer:
            raise WebRTCCallError("POST /api/offer answer has no sdp/type")
        self.pc_id = answer.get("pc_id")
        return answer


def _result_template(url: str) -> dict[str, Any]:
    return {
        "transport": "webrtc",
        "url": url,
        "connected_ms": None,
        "first_reply_audio_ms": None,
        "reply_seconds": 0.0,
        "greeting_seconds": 0.0,
        "greeting_first_audio_ms": None,
        "speech_seconds": None,
        "reply_timed_out": False,
        "clears": None,
        "pc_id": None,
        "offer_ms": None,
        "data_channel_messages": 0,
        "out_path": None,
        "error": None,
    }


async def run_webrtc_call(
    wav_path: str | Path,
    url: str = "http://localhost:7860",
    out_path: str | Path | None = None,
    *,
    headers: dict[str, str] | None = None,
    request_data: dict[str, Any] | None = None,
    energy_threshold: float = DEFAULT_ENERGY_THRESHOLD,
    speech_threshold: float | None = None,
    data_channel: bool = True,
    ice_servers: list[str] | None = None,
    connect_timeout: float = 10.0,
    greeting_max_wait: float = 8.0,
    greeting_gap: float = 0.7,
    greeting_timeout: float = 30.0,
    reply_gap: float = 1.0,
    reply_timeout: float = 30.0,
) -> dict[str, Any]:
    """Call the server over WebRTC, say the WAV after the greeting, record the reply."""
    result = _result_template(url)
    timing = CallTiming(greeting_max_wait, greeting_gap, greeting_timeout, reply_gap, reply_timeout)
    call = WebRTCCaller(
        url,
        headers=headers,
        request_data=request_data,
        energy_threshold=energy_threshold,
        data_channel=data_channel,
        ice_servers=ice_servers,
        connect_timeout=connect_timeout,
    )
    try:
        pcm, rate = load_wav(wav_path)
        speech_end = speech_end_offset(pcm, rate, speech_threshold)
        result["speech_seconds"] = round(speech_end, 3)
        pcm48k = resample(pcm, rate, RATE)
        await call.connect()
        result.update(connected_ms=call.connected_ms, pc_id=call.pc_id, offer_ms=call.offer_ms)

        async def play() -> float | None:
            playback = call.play(pcm48k)
            limit = playback.frames * FRAME_SECONDS + connect_timeout
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(playback.done.wait(), limit)
            return time_of_offset(playback.sent_at, speech_end, FRAME_SECONDS)

        flow = await run_call_flow(call.log, call.connected_at or 0.0, play, timing)
        result.update(flow_summary(call.log, flow, str(out_path) if out_path else None))
        if flow.greeting_first is not None and call.connected_at is not None:
            result["greeting_first_audio_ms"] = ms(flow.greeting_first - call.connected_at)
        if call.log.closed and flow.reply_first is None:
            result["error"] = "the connection closed before the bot replied"
    except Exception as exc:  # reported in the result: the CLI prints it
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await call.close()
    result["data_channel_messages"] = len(call.messages)
    return result
