"""A caller that behaves like Twilio Programmable Voice + bidirectional Media Streams.

1. POST `{url}/twilio/voice` with Twilio's webhook form fields; read the TwiML
   `<Connect><Stream url="wss://HOST/path">` (+ `<Parameter>`s).
2. Open the WebSocket on `{url}`'s host and scheme with the stream URL's path (the public host
   in the TwiML may not be reachable from here).
3. Speak Media Streams: `connected`, `start`, a `media` frame every 20 ms for the whole call
   (μ-law silence when the caller is quiet), `dtmf` on request, `mark` echoes, `stop`.
4. Record what the server sends (`media`, `clear`, `mark`, ...) with monotonic timestamps.

With a Twilio auth token (argument, else $TWILIO_AUTH_TOKEN) every request carries
`X-Twilio-Signature`, computed as Twilio does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import secrets
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import numpy as np
import websockets
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection

from bot.caller.audio import (
    FRAME_SECONDS,
    ULAW_SILENCE,
    load_wav,
    resample,
    speech_end_offset,
    split_frames,
    ulaw_decode,
    ulaw_encode,
)
from bot.caller.timeline import (
    AudioChunk,
    BotAudioLog,
    CallTiming,
    FlowResult,
    HearsTheBot,
    OutgoingAudio,
    flow_summary,
    ms,
    run_call_flow,
    time_of_offset,
)

RATE = 8000
FRAME_SAMPLES = int(RATE * FRAME_SECONDS)  # 160 samples = 160 μ-law bytes
SILENCE_FRAME = bytes([ULAW_SILENCE]) * FRAME_SAMPLES
DEFAULT_FROM = "+15005550006"
DEFAULT_TO = "+15005550001"


class TwilioCallError(RuntimeError):
    """The server did not answer like a Twilio voice application should."""


def new_sid(prefix: str) -> str:
    """A Twilio-shaped identifier: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


@dataclass
class StreamInstruction:
    """What the TwiML answer asked for."""

    url: str  # exactly as written in the TwiML
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass
class TwilioEvent:
    """A message from the server, stamped with time.monotonic() at arrival."""

    t: float
    event: str  # "media", "clear", "mark", ...; "closed" when the server hung up
    message: dict[str, Any]
    chunk: AudioChunk | None = None  # media only


def parse_twiml(text: str) -> StreamInstruction:
    """Find `<Connect><Stream url=...>` and its `<Parameter name= value=>`s."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise TwilioCallError(f"webhook answer is not TwiML: {exc}") from exc
    stream = root.find(".//Connect/Stream")
    if stream is None:
        one_way = root.find(".//Start/Stream") is not None
        hint = " (found a one-way <Start><Stream>)" if one_way else ""
        raise TwilioCallError(f"TwiML has no <Connect><Stream>{hint}")
    url = stream.get("url")
    if not url:
        raise TwilioCallError("TwiML <Stream> has no url")
    params = {
        p.get("name", ""): p.get("value", "")
        for p in stream.findall("Parameter")
        if p.get("name") is not None
    }
    return StreamInstruction(url, params)


def local_stream_url(base_url: str, stream_url: str) -> str:
    """`stream_url`'s path and query on `base_url`'s host; http → ws, https → wss."""
    base, stream = urlsplit(base_url), urlsplit(stream_url)
    scheme = {"http": "ws", "https": "wss"}.get(base.scheme, base.scheme)
    return urlunsplit((scheme, base.netloc, stream.path or "/", stream.query, ""))


def webhook_params(
    account_sid: str, call_sid: str, from_number: str, to_number: str
) -> dict[str, str]:
    """The form fields Twilio posts to a voice URL for an inbound call."""
    return {
        "AccountSid": account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": "ringing",
        "Called": to_number,
        "Caller": from_number,
        "Direction": "inbound",
        "From": from_number,
        "To": to_number,
    }


class TwilioCaller(HearsTheBot):
    """One simulated Twilio call against our server. Use `async with` or connect()/stop()."""

    def __init__(
        self,
        url: str = "http://localhost:7860",
        *,
        auth_token: str | None = None,
        public_url: str | None = None,
        from_number: str = DEFAULT_FROM,
        to_number: str = DEFAULT_TO,
        account_sid: str | None = None,
        extra_webhook_params: dict[str, str] | None = None,
        energy_threshold: float = 1.0,
        http_timeout: float = 10.0,
    ) -> None:
        """`public_url`: the base URL the server believes it serves, used only to sign the
        webhook (the server checks the signature over its public URL); default
        $VOICEBOT_PUBLIC_URL, else the URL actually posted.
        `energy_threshold`: RMS (int16 units) above which a media chunk counts as bot audio;
        the default counts any media that is not digital silence."""
        self.url = url.rstrip("/")
        token = auth_token if auth_token is not None else os.environ.get("TWILIO_AUTH_TOKEN")
        self.validator = RequestValidator(token) if token else None
        public_url = public_url or os.environ.get("VOICEBOT_PUBLIC_URL")
        self.public_url = public_url.rstrip("/") if public_url else None
        self.from_number, self.to_number = from_number, to_number
        self.account_sid = account_sid or os.environ.get("TWILIO_ACCOUNT_SID") or new_sid("AC")
        self.call_sid = new_sid("CA")
        self.stream_sid = new_sid("MZ")
        self.extra_webhook_params = dict(extra_webhook_params or {})
        self.http_timeout = http_timeout
        self.log = BotAudioLog(threshold=energy_threshold, buffered=True)
        self.events: list[TwilioEvent] = []
        self.stream: StreamInstruction | None = None
        self.ws_url: str | None = None
        self.started_at: float | None = None  # monotonic time of connect()
        self.connected_at: float | None = None  # WebSocket handshake done
        self.webhook_ms: float | None = None
        self.media_sent = 0
        self._out = OutgoingAudio(FRAME_SAMPLES, SILENCE_FRAME)
        self._ws: ClientConnection | None = None
        self._lock = asyncio.Lock()
        self._sequence = 0
        self._stream_t0 = 0.0
        self._pending_marks: list[tuple[float, str]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def connected_ms(self) -> float | None:
        """From the webhook POST to the WebSocket handshake being done."""
        if self.started_at is None or self.connected_at is None:
            return None
        return ms(self.connected_at - self.started_at)

    def sign(self, uri: str, params: dict[str, str]) -> dict[str, str]:
        """The X-Twilio-Signature header for a request, or no header without a token."""
        if self.validator is None:
            return {}
        return {"X-Twilio-Signature": self.validator.compute_signature(uri, params)}

    async def connect(self) -> None:
        """Webhook, TwiML, WebSocket, `connected` + `start`; then media flows every 20 ms."""
        self.started_at = time.monotonic()
        self.stream = await self._post_webhook()
        self.ws_url = local_stream_url(self.url, self.stream.url)
        headers = self.sign(self.stream.url, {})
        try:
            self._ws = await websockets.connect(
                self.ws_url,
                additional_headers=headers,
                compression=None,
                proxy=None,
                ping_interval=None,
                open_timeout=self.http_timeout,
                user_agent_header="Twilio.TmeWs/1.0",
            )
        except websockets.exceptions.InvalidStatus as exc:
            status = exc.response.status_code
            raise TwilioCallError(f"stream WebSocket refused: HTTP {status}") from exc
        self.connected_at = time.monotonic()
        await self._send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._send_json(self._start_message())
        self._stream_t0 = time.monotonic()
        self._tasks = [
            asyncio.create_task(self._receive_loop(), name="twilio-caller-receive"),
            asyncio.create_task(self._media_loop(), name="twilio-caller-media"),
        ]

    async def stop(self) -> None:
        """Send `stop` and close the WebSocket (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        media_task = self._tasks[1] if len(self._tasks) > 1 else None
        if media_task is not None:
            media_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await media_task
        if self._ws is not None:
            with contextlib.suppress(websockets.exceptions.ConnectionClosed):
                await self._send_json(
                    {
                        "event": "stop",
                        "sequenceNumber": self._next_sequence(),
                        "streamSid": self.stream_sid,
                        "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
                    }
                )
            await self._ws.close()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ---------------------------------------------------------------- sending

    async def send_pcm(self, pcm8k: np.ndarray, realtime: bool = True) -> list[float]:
        """Speak 8 kHz mono int16 audio; returns when each 20 ms frame was sent (monotonic).

        realtime=True queues the frames on the 20 ms media clock (in place of silence) and
        returns once all are sent; realtime=False sends them at once, as fast as possible.
        """
        frames = [ulaw_encode(frame) for frame in split_frames(pcm8k, FRAME_SAMPLES)]
        if realtime:
            playback = self._out.enqueue(frames)
            await playback.done.wait()
            return playback.sent_at
        sent_at: list[float] = []
        async with self._lock:
            for frame in frames:
                now = time.monotonic()
                await self._send_media(frame, now)
                sent_at.append(now)
        return sent_at

    async def send_dtmf(self, digit: str) -> None:
        """Report a key press, as Twilio does for `<Connect><Stream>` calls."""
        async with self._lock:
            await self._send_json(
                {
                    "event": "dtmf",
                    "streamSid": self.stream_sid,
                    "sequenceNumber": self._next_sequence(),
                    "dtmf": {"track": "inbound_track", "digit": str(digit)},
                }
            )

    def _next_sequence(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    def _start_message(self) -> dict[str, Any]:
        params = self.stream.parameters if self.stream else {}
        return {
            "event": "start",
            "sequenceNumber": self._next_sequence(),
            "start": {
                "streamSid": self.stream_sid,
                "accountSid": self.account_sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "customParameters": dict(params),
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1},
            },
            "streamSid": self.stream_sid,
        }

    async def send_raw(self, text: str | bytes) -> None:
        """Send one WebSocket message as is (tests of how the server treats bad frames)."""
        if self._ws is None:
            raise TwilioCallError("not connected")
        await self._ws.send(text)

    async def _send_json(self, message: dict[str, Any]) -> None:
        if self._ws is None:
            raise TwilioCallError("not connected")
        await self._ws.send(json.dumps(message))

    async def _send_media(self, frame: bytes, now: float) -> None:
        self.media_sent += 1
        await self._send_json(
            {
                "event": "media",
                "sequenceNumber": self._next_sequence(),
                "media": {
                    "track": "inbound",
                    "chunk": str(self.media_sent),
                    "timestamp": str(int((now - self._stream_t0) * 1000)),
                    "payload": base64.b64encode(frame).decode("ascii"),
                },
                "streamSid": self.stream_sid,
            }
        )

    async def _send_due_marks(self, now: float) -> None:
        due = [name for at, name in self._pending_marks if at <= now]
        self._pending_marks = [(at, name) for at, name in self._pending_marks if at > now]
        for name in due:
            await self._send_json(
                {
                    "event": "mark",
                    "sequenceNumber": self._next_sequence(),
                    "streamSid": self.stream_sid,
                    "mark": {"name": name},
                }
            )

    async def _media_loop(self) -> None:
        """One media frame every 20 ms on an absolute schedule (no drift)."""
        tick = 0
        t0 = time.monotonic()
        try:
            while True:
                tick += 1
                await asyncio.sleep(max(0.0, t0 + tick * FRAME_SECONDS - time.monotonic()))
                async with self._lock:
                    now = time.monotonic()
                    await self._send_due_marks(now)
                    frame = self._out.next_frame(now)
                    await self._send_media(frame, now)
        except websockets.exceptions.ConnectionClosed:
            self.log.closed = True
        finally:
            self._out.abort()

    # ---------------------------------------------------------------- receiving

    async def _receive_loop(self) -> None:
        ws = self._ws
        if ws is None:
            return
        try:
            async for raw in ws:
                self._handle(raw, time.monotonic())
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            self.log.closed = True
            code = ws.close_code
            self.events.append(TwilioEvent(time.monotonic(), "closed", {"code": code}))

    def _handle(self, raw: str | bytes, now: float) -> None:
        try:
            message = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            self.events.append(TwilioEvent(now, "invalid", {"raw": repr(raw[:200])}))
            return
        if not isinstance(message, dict):
            self.events.append(TwilioEvent(now, "invalid", {"raw": repr(message)[:200]}))
            return
        event = str(message.get("event", ""))
        chunk = None
        if event == "media":
            chunk = self._on_media(message, now)
        elif event == "clear":
            self.log.clear(now)
            self._pending_marks = [(now, name) for _, name in self._pending_marks]
        elif event == "mark":
            name = str((message.get("mark") or {}).get("name", ""))
            self._pending_marks.append((max(now, self.log.play_end), name))
        self.events.append(TwilioEvent(now, event, message, chunk))

    def _on_media(self, message: dict[str, Any], now: float) -> AudioChunk | None:
        try:
            payload = base64.b64decode((message.get("media") or {}).get("payload", ""))
        except (binascii.Error, ValueError):
            return None
        if not payload:
            return None
        return self.log.add(ulaw_decode(payload), RATE, now)

    # ---------------------------------------------------------------- queries

    def events_named(self, name: str, after: float | None = None) -> list[TwilioEvent]:
        return [e for e in self.events if e.event == name and (after is None or e.t >= after)]

    async def wait_for_event(
        self, name: str, after: float | None = None, max_wait: float = 5.0
    ) -> TwilioEvent | None:
        """First `name` event (e.g. "clear") received at or after `after`."""
        deadline = time.monotonic() + max_wait
        closed_at: float | None = None
        while True:
            found = self.events_named(name, after)
            if found:
                return found[0]
            now = time.monotonic()
            if self.log.closed and closed_at is None:
                # The sending side can see the close first: let the receiving side record
                # what arrived before it (and the "closed" event itself).
                closed_at = now
            if now >= deadline or (closed_at is not None and now - closed_at > 0.5):
                return None
            await asyncio.sleep(0.01)

    @property
    def clears(self) -> int:
        return len(self.events_named("clear"))

    # ---------------------------------------------------------------- webhook

    async def _post_webhook(self) -> StreamInstruction:
        posted = f"{self.url}/twilio/voice"
        params = webhook_params(self.account_sid, self.call_sid, self.from_number, self.to_number)
        params.update(self.extra_webhook_params)
        signed = f"{self.public_url}/twilio/voice" if self.public_url else posted
        headers = self.sign(signed, params)
        timeout = aiohttp.ClientTimeout(total=self.http_timeout)
        t0 = time.monotonic()
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(posted, data=params, headers=headers) as response,
        ):
            body = await response.text()
            if response.status != 200:
                raise TwilioCallError(f"webhook {posted} answered HTTP {response.status}")
        self.webhook_ms = ms(time.monotonic() - t0)
        return parse_twiml(body)


# -------------------------------------------------------------------- one whole call


def _result_template(url: str, caller: TwilioCaller) -> dict[str, Any]:
    return {
        "transport": "twilio",
        "url": url,
        "connected_ms": None,
        "first_reply_audio_ms": None,
        "reply_seconds": 0.0,
        "greeting_seconds": 0.0,
        "greeting_first_audio_ms": None,
        "speech_seconds": None,
        "reply_timed_out": False,
        "clears": 0,
        "marks": 0,
        "call_sid": caller.call_sid,
        "stream_sid": caller.stream_sid,
        "webhook_ms": None,
        "signed": caller.validator is not None,
        "out_path": None,
        "error": None,
    }


async def run_twilio_call(
    wav_path: str | Path,
    url: str = "http://localhost:7860",
    out_path: str | Path | None = None,
    *,
    auth_token: str | None = None,
    public_url: str | None = None,
    from_number: str = DEFAULT_FROM,
    to_number: str = DEFAULT_TO,
    energy_threshold: float = 1.0,
    speech_threshold: float | None = None,
    greeting_max_wait: float = 8.0,
    greeting_gap: float = 0.7,
    greeting_timeout: float = 30.0,
    reply_gap: float = 1.0,
    reply_timeout: float = 30.0,
) -> dict[str, Any]:
    """Call the server like Twilio, say the WAV after the greeting, record the reply.

    Returns the result dict (see bot.caller); errors end up in its "error" field.
    """
    caller = TwilioCaller(
        url,
        auth_token=auth_token,
        public_url=public_url,
        from_number=from_number,
        to_number=to_number,
        energy_threshold=energy_threshold,
    )
    result = _result_template(url, caller)
    timing = CallTiming(greeting_max_wait, greeting_gap, greeting_timeout, reply_gap, reply_timeout)
    try:
        pcm, rate = load_wav(wav_path)
        speech_end = speech_end_offset(pcm, rate, speech_threshold)
        result["speech_seconds"] = round(speech_end, 3)
        pcm8k = resample(pcm, rate, RATE)
        await caller.connect()
        result["connected_ms"] = caller.connected_ms
        result["webhook_ms"] = caller.webhook_ms

        async def play() -> float | None:
            sent_at = await caller.send_pcm(pcm8k)
            return time_of_offset(sent_at, speech_end, FRAME_SECONDS)

        flow = await run_call_flow(caller.log, caller.connected_at or 0.0, play, timing)
        result.update(_summary(caller, flow, out_path))
    except Exception as exc:  # reported in the result: the CLI prints it
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await caller.stop()
    result["clears"] = caller.clears
    result["marks"] = len(caller.events_named("mark"))
    return result


def _summary(caller: TwilioCaller, flow: FlowResult, out_path: str | Path | None) -> dict:
    summary = flow_summary(caller.log, flow, str(out_path) if out_path is not None else None)
    if flow.greeting_first is not None and caller.connected_at is not None:
        summary["greeting_first_audio_ms"] = ms(flow.greeting_first - caller.connected_at)
    if caller.log.closed and flow.reply_first is None:
        summary["error"] = "the server closed the stream before replying"
    return summary
