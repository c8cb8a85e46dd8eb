"""A local stand-in for Deepgram's live transcription WebSocket: `GET /v1/listen`.

It follows the protocol Deepgram documents (and the deepgram-sdk `listen.v1` client speaks):

- The handshake carries `Authorization: Token <key>` (or `Bearer <key>`, or the browser form
  `Sec-WebSocket-Protocol: token, <key>`) and the options as query parameters. A wrong key is
  answered HTTP 401 before the upgrade, bad options HTTP 400, with Deepgram's `dg-request-id` and
  `dg-error` headers and an `{err_code, err_msg, request_id}` body.
- Binary messages are raw audio (`linear16`, `mulaw`, `alaw` or `linear32` at `sample_rate`).
  An encoding Deepgram accepts but this fake cannot decode (opus, flac, ...) is closed with
  1008 `DATA-0000` ("the payload cannot be decoded as audio") when audio arrives.
- Energy-based endpointing in audio time: a 20 ms frame whose RMS is above `speech_rms` is speech;
  `endpointing` ms of silence after speech ends the utterance (Deepgram's default is 10 ms;
  `endpointing=false` turns it off). The final `Results` (`is_final` and `speech_final` true) is
  sent no sooner than `faults.first_byte_ms` after the end of speech, with the real transcript
  of the utterance (local Whisper via `tests.support.speech.transcribe`).
- With `interim_results=true`, every `interim_every_ms` of speech an interim `Results`
  (`is_final: false`) carries the transcript of the utterance so far; one is skipped while the
  previous one is still being transcribed. `faults.per_chunk_ms` delays each interim.
- `vad_events=true` adds `SpeechStarted`; `utterance_end_ms` adds `UtteranceEnd`.
- Text messages: `KeepAlive` (counted, no answer), `Finalize` (flush: a final `Results` with
  `from_finalize: true`), `CloseStream` (flush, send the `Metadata` summary, close 1000).
  Anything else is answered with an `Error` (`SchemaError`) message.
- No audio and no text message for `idle_timeout` seconds (10 s, like Deepgram) closes the
  socket with 1011 `NET-0001`.
- Faults: `take_http_failure()` answers that status before the upgrade; `take_drop()` aborts the
  TCP connection (no close frame) that many seconds after the upgrade; `stall` accepts and
  reads but never sends anything.

Construct with `transcript="..."` for canned text instead of transcribing. Each connection's
parsed options and counters are in `connections` (and `log`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from tests.fakes.base import Faults, RequestLog, sleep_ms

LISTEN_PATH = "/v1/listen"

DECODABLE_ENCODINGS = frozenset({"linear16", "linear32", "mulaw", "alaw"})
# Encodings Deepgram's streaming API accepts; the ones not decodable here close with DATA-0000.
KNOWN_ENCODINGS = DECODABLE_ENCODINGS | frozenset(
    {"flac", "amr-nb", "amr-wb", "opus", "ogg-opus", "speex", "g729"}
)

FRAME_SECONDS = 0.02
PRE_ROLL_SECONDS = 0.5
WORD_CONFIDENCE = 0.99

# One transcription at a time: the machine has two cores and Whisper uses both.
_TRANSCRIBE_LOCK = threading.Lock()


class OptionsError(ValueError):
    """A query parameter Deepgram would reject with HTTP 400."""


@dataclass
class ListenOptions:
    """The query options of one `/v1/listen` connection, typed, with Deepgram's defaults."""

    model: str = "base"
    language: str = "en"
    encoding: str | None = None
    sample_rate: int | None = None
    channels: int = 1
    multichannel: bool = False
    interim_results: bool = False
    endpointing: int | None = 10  # ms of silence; None when `endpointing=false`
    smart_format: bool = False
    punctuate: bool = False
    vad_events: bool = False
    utterance_end_ms: int | None = None
    query: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, query: dict[str, list[str]]) -> ListenOptions:
        def one(name: str) -> str | None:
            values = query.get(name)
            return values[-1] if values else None

        def flag(name: str, default: bool) -> bool:
            value = one(name)
            if value is None:
                return default
            if value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise OptionsError(f"Invalid value for `{name}`: expected true or false, got {value!r}")

        def number(name: str) -> int | None:
            value = one(name)
            if value is None:
                return None
            try:
                parsed = int(value)
            except ValueError:
                raise OptionsError(f"Invalid value for `{name}`: {value!r}") from None
            if parsed <= 0:
                raise OptionsError(f"Invalid value for `{name}`: {value!r}")
            return parsed

        encoding = one("encoding")
        if encoding is not None and encoding not in KNOWN_ENCODINGS:
            raise OptionsError(f"Invalid value for `encoding`: {encoding!r}")
        sample_rate = number("sample_rate")
        if encoding is not None and sample_rate is None:
            raise OptionsError("`sample_rate` is required when `encoding` is set for raw audio")

        endpointing_raw = one("endpointing")
        endpointing: int | None = 10
        if endpointing_raw is not None:
            if endpointing_raw.lower() == "false":
                endpointing = None
            elif endpointing_raw.lower() == "true":
                endpointing = 10
            else:
                endpointing = number("endpointing")

        return cls(
            model=one("model") or "base",
            language=one("language") or "en",
            encoding=encoding,
            sample_rate=sample_rate,
            channels=number("channels") or 1,
            multichannel=flag("multichannel", False),
            interim_results=flag("interim_results", False),
            endpointing=endpointing,
            smart_format=flag("smart_format", False),
            punctuate=flag("punctuate", False),
            vad_events=flag("vad_events", False),
            utterance_end_ms=number("utterance_end_ms"),
            query=query,
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "language": self.language,
            "encoding": self.encoding,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "multichannel": self.multichannel,
            "interim_results": self.interim_results,
            "endpointing": self.endpointing if self.endpointing is not None else False,
            "smart_format": self.smart_format,
            "punctuate": self.punctuate,
            "vad_events": self.vad_events,
            "utterance_end_ms": self.utterance_end_ms,
        }


@dataclass
class ListenConnection:
    """One upgraded `/v1/listen` socket: its options and what went over it."""

    request_id: str
    options: ListenOptions
    auth_scheme: str
    opened_at: float = field(default_factory=time.monotonic)
    bytes_received: int = 0
    audio_seconds: float = 0.0
    keepalives: int = 0
    finalizes: int = 0
    close_streams: int = 0
    interims_sent: int = 0
    finals_sent: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    dropped: bool = False
    closed: bool = False
    errors: list[str] = field(default_factory=list)
    transport: Any = field(default=None, repr=False)

    @property
    def finals(self) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("type") == "Results" and m.get("is_final")]

    @property
    def interims(self) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("type") == "Results" and not m.get("is_final")]


def decode_mulaw(data: bytes) -> np.ndarray:
    """G.711 μ-law bytes to int16 samples."""
    u = ~np.frombuffer(data, dtype=np.uint8)
    magnitude = ((u & 0x0F).astype(np.int32) << 3) + 0x84
    magnitude <<= (u & 0x70).astype(np.int32) >> 4
    return np.where(u & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)


def decode_alaw(data: bytes) -> np.ndarray:
    """G.711 A-law bytes to int16 samples."""
    a = np.frombuffer(data, dtype=np.uint8) ^ 0x55
    mantissa = (a & 0x0F).astype(np.int32) << 4
    segment = (a & 0x70).astype(np.int32) >> 4
    magnitude = np.where(
        segment == 0, mantissa + 8, (mantissa + 0x108) << np.maximum(segment - 1, 0)
    )
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


def _model_info(model: str) -> tuple[str, dict[str, str]]:
    """A stable model uuid and Deepgram-shaped `model_info` for a model name like `nova-3`."""
    match = re.match(r"^(nova-\d|enhanced|base|whisper)(?:-(.+))?$", model)
    arch = match.group(1) if match else model
    variant = (match.group(2) if match else None) or "general"
    model_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"fake-deepgram/{model}"))
    return model_uuid, {"name": f"{variant}-{arch}", "version": "fake-local", "arch": arch}


def _error_body(status: int, request_id: str, message: str) -> tuple[str, dict[str, str]]:
    codes = {
        401: "INVALID_AUTH",
        402: "ASR_PAYMENT_REQUIRED",
        403: "INSUFFICIENT_PERMISSIONS",
        429: "TOO_MANY_REQUESTS",
    }
    code = codes.get(status, "Bad Request" if status == 400 else "INTERNAL_SERVER_ERROR")
    return code, {"err_code": code, "err_msg": message, "request_id": request_id}


class FakeDeepgram:
    """Deepgram's streaming STT endpoint on loopback, for tests (FakeProvider protocol)."""

    def __init__(
        self,
        api_key: str,
        *,
        transcript: str | None = None,
        faults: Faults | None = None,
        speech_rms: float = 300.0,
        interim_every_ms: float = 500.0,
        idle_timeout: float = 10.0,
        transcribe: Callable[[np.ndarray, int], str] | None = None,
    ) -> None:
        self.api_key = api_key
        self.transcript = transcript
        self.faults = faults or Faults()
        self.log = RequestLog()
        self.speech_rms = speech_rms
        self.interim_every_ms = interim_every_ms
        self.idle_timeout = idle_timeout
        self._transcribe = transcribe
        self.connections: list[ListenConnection] = []
        self.rejected: list[int] = []  # HTTP statuses answered instead of upgrading

    # FakeProvider ------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(LISTEN_PATH, self._listen)

    # Counters for tests ------------------------------------------------------------------

    @property
    def connections_opened(self) -> int:
        return len(self.connections)

    @property
    def keepalives_received(self) -> int:
        return sum(c.keepalives for c in self.connections)

    @property
    def finals_sent(self) -> int:
        return sum(c.finals_sent for c in self.connections)

    @property
    def interims_sent(self) -> int:
        return sum(c.interims_sent for c in self.connections)

    @property
    def bytes_received(self) -> int:
        return sum(c.bytes_received for c in self.connections)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until `predicate()` holds, checking every 20 ms; TimeoutError after `timeout`."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)

    # Transcription -----------------------------------------------------------------------

    def transcribe_blocking(self, samples: np.ndarray, rate: int) -> str:
        if self._transcribe is not None:
            return self._transcribe(samples, rate)
        from tests.support.speech import transcribe

        with _TRANSCRIBE_LOCK:
            return transcribe(samples, rate)

    # Handshake ---------------------------------------------------------------------------

    def _key_from(self, request: web.Request) -> tuple[str | None, str]:
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() in ("token", "bearer") and key:
            return key.strip(), scheme.lower()
        protocols = [
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
        ]
        if len(protocols) == 2 and protocols[0].lower() in ("token", "bearer"):
            return protocols[1], f"subprotocol-{protocols[0].lower()}"
        return None, "none"

    def _reject(self, request_id: str, status: int, message: str) -> web.Response:
        self.rejected.append(status)
        _, body = _error_body(status, request_id, message)
        headers = {"dg-request-id": request_id, "dg-error": message}
        return web.json_response(body, status=status, headers=headers)

    async def _listen(self, request: web.Request) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        query = {key: request.query.getall(key) for key in request.query}
        key, scheme = self._key_from(request)
        entry: dict[str, object] = {
            "path": request.path,
            "query": query,
            "auth_scheme": scheme,
            "request_id": request_id,
            "session_id": request.headers.get("x-deepgram-session-id"),
        }

        status = self.faults.take_http_failure()
        if status is not None:
            self.log.add(**entry, status=status)
            return self._reject(request_id, status, f"Injected failure (HTTP {status}).")
        if key != self.api_key:
            self.log.add(**entry, status=401)
            return self._reject(request_id, 401, "Invalid credentials.")
        try:
            options = ListenOptions.parse(query)
        except OptionsError as exc:
            self.log.add(**entry, status=400)
            return self._reject(request_id, 400, str(exc))

        protocols = ("token", "bearer") if scheme.startswith("subprotocol") else ()
        ws = web.WebSocketResponse(protocols=protocols, autoping=True, max_msg_size=0)
        if not ws.can_prepare(request).ok:
            self.log.add(**entry, status=400)
            return self._reject(request_id, 400, "Expected a WebSocket upgrade.")
        ws.headers["dg-request-id"] = request_id
        transport = request.transport
        await ws.prepare(request)

        connection = ListenConnection(request_id=request_id, options=options, auth_scheme=scheme)
        connection.transport = transport
        self.connections.append(connection)
        self.log.add(**entry, status=101, options=options.as_dict(), connection=connection)

        drop_after = self.faults.take_drop()
        drop_handle = None
        if drop_after is not None and transport is not None:
            drop_handle = asyncio.get_running_loop().call_later(
                drop_after, self._drop, connection, transport
            )
        try:
            await _Session(self, connection, ws).run()
        finally:
            if drop_handle is not None:
                drop_handle.cancel()
            connection.closed = True
        return ws

    def drop(self, connection: ListenConnection) -> None:
        """Abort a live socket now, with no close frame (call it on the fake's event loop)."""
        if connection.transport is not None:
            self._drop(connection, connection.transport)

    def _drop(self, connection: ListenConnection, transport: asyncio.BaseTransport) -> None:
        if connection.closed:
            return
        connection.dropped = True
        transport.abort()  # type: ignore[attr-defined]


@dataclass
class _Segment:
    """Audio since the last final result (trimmed of long leading silence)."""

    start: int  # sample index of the segment start in the stream
    audio_start: int  # sample index of the first sample kept in `chunks`
    chunks: list[np.ndarray] = field(default_factory=list)
    speech_start: int | None = None
    speech_end: int | None = None

    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.int16)


class _Session:
    """One connection's audio processing and message sending."""

    def __init__(self, fake: FakeDeepgram, connection: ListenConnection, ws: web.WebSocketResponse):
        self.fake = fake
        self.conn = connection
        self.ws = ws
        options = connection.options
        self.rate = options.sample_rate or 16000
        self.channels = max(1, options.channels)
        self.frame_len = max(1, int(self.rate * FRAME_SECONDS))
        self.model_uuid, self.model_info = _model_info(options.model)
        self.sha256 = hashlib.sha256()
        self.leftover = b""
        self.pending = np.zeros(0, dtype=np.int16)
        self.position = 0  # samples processed (per channel)
        self.segment = _Segment(start=0, audio_start=0)
        self.in_speech = False
        self.silence_run = 0
        self.since_interim = 0
        self.interim_busy = False
        self.last_word_end: float | None = None
        self.utterance_end_due = False
        self.outbox: asyncio.Queue[asyncio.Task[dict[str, Any] | None]] = asyncio.Queue()
        self.tasks: set[asyncio.Task[Any]] = set()

    # Main loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        sender = asyncio.create_task(self._sender())
        try:
            await self._receive_loop()
        finally:
            sender.cancel()
            for task in list(self.tasks):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            if self.ws.close_code is not None and self.conn.close_code is None:
                self.conn.close_code = self.ws.close_code

    async def _receive_loop(self) -> None:
        while not self.ws.closed:
            try:
                message = await self.ws.receive(timeout=self.fake.idle_timeout)
            except TimeoutError:
                await self._close(1011, "NET-0001")
                return
            if message.type == WSMsgType.BINARY:
                if not message.data:
                    continue  # an empty byte used to mean "close"; Deepgram warns against it
                if not await self._on_audio(message.data):
                    return
            elif message.type == WSMsgType.TEXT:
                if not await self._on_text(message.data):
                    return
            else:  # CLOSE, CLOSING, CLOSED, ERROR
                return

    async def _close(self, code: int, reason: str) -> None:
        self.conn.close_code = code
        self.conn.close_reason = reason
        await self.ws.close(code=code, message=reason.encode())

    # Text messages -----------------------------------------------------------------------

    async def _on_text(self, text: str) -> bool:
        try:
            message = json.loads(text)
            kind = message.get("type") if isinstance(message, dict) else None
        except ValueError:
            kind = None
        if kind == "KeepAlive":
            self.conn.keepalives += 1
        elif kind == "Finalize":
            self.conn.finalizes += 1
            self._emit_final(from_finalize=True, speech_final=False, always=True)
        elif kind == "CloseStream":
            self.conn.close_streams += 1
            if self.fake.faults.stall:
                return True
            if self.segment.speech_start is not None:
                self._emit_final(from_finalize=False, speech_final=True, always=False)
            await self.outbox.join()
            await self._send(self._metadata())
            await self._close(1000, "")
            return False
        else:
            self._send_soon(
                {
                    "type": "Error",
                    "variant": "SchemaError",
                    "description": "Could not parse the client message.",
                    "message": text[:1000],
                }
            )
        return True

    # Audio -------------------------------------------------------------------------------

    def _decode(self, data: bytes) -> np.ndarray | None:
        encoding = self.conn.options.encoding
        if encoding in ("linear16", "linear32"):
            width = 2 if encoding == "linear16" else 4
            data = self.leftover + data
            usable = len(data) - len(data) % (width * self.channels)
            self.leftover = data[usable:]
            dtype = "<i2" if width == 2 else "<i4"
            samples = np.frombuffer(data[:usable], dtype=dtype)
            if width == 4:
                samples = (samples >> 16).astype(np.int16)
        elif encoding == "mulaw":
            samples = decode_mulaw(data)
        elif encoding == "alaw":
            samples = decode_alaw(data)
        else:
            return None
        samples = samples.astype(np.int16)
        if self.channels > 1:
            usable = len(samples) - len(samples) % self.channels
            frames = samples[:usable].reshape(-1, self.channels).astype(np.int32)
            samples = frames.mean(axis=1).astype(np.int16)
        return samples

    async def _on_audio(self, data: bytes) -> bool:
        self.conn.bytes_received += len(data)
        self.sha256.update(data)
        samples = self._decode(data)
        if samples is None:
            await self._close(1008, "DATA-0000")
            return False
        self.conn.audio_seconds += len(samples) / self.rate
        self.pending = np.concatenate([self.pending, samples])
        while len(self.pending) >= self.frame_len:
            frame, self.pending = self.pending[: self.frame_len], self.pending[self.frame_len :]
            self._on_frame(frame)
        return True

    def _on_frame(self, frame: np.ndarray) -> None:
        faults = self.fake.faults
        rms = math.sqrt(float(np.mean(frame.astype(np.float64) ** 2)))
        frame_start = self.position
        self.position += len(frame)
        self.segment.chunks.append(frame)
        options = self.conn.options

        if rms > self.fake.speech_rms:
            if not self.in_speech:
                self.in_speech = True
                self.since_interim = 0
                if self.segment.speech_start is None:
                    self.segment.speech_start = frame_start
                if options.vad_events and not faults.stall:
                    self._send_soon(
                        {
                            "type": "SpeechStarted",
                            "channel": [0],
                            "timestamp": round(frame_start / self.rate, 3),
                        }
                    )
            self.silence_run = 0
            self.segment.speech_end = self.position
            self.utterance_end_due = False
        elif self.in_speech:
            self.silence_run += len(frame)
            endpointing = options.endpointing
            if endpointing is not None and self.silence_run * 1000 >= endpointing * self.rate:
                self.in_speech = False
                self._emit_final(from_finalize=False, speech_final=True, always=False)
                return

        if self.in_speech and options.interim_results:
            self.since_interim += len(frame)
            if self.since_interim * 1000 >= self.fake.interim_every_ms * self.rate:
                self.since_interim = 0
                self._emit_interim()

        if self.segment.speech_start is None:
            self._trim_leading_silence()

        if (
            self.utterance_end_due
            and options.utterance_end_ms is not None
            and self.last_word_end is not None
            and (self.position / self.rate - self.last_word_end) * 1000 >= options.utterance_end_ms
        ):
            self.utterance_end_due = False
            if not faults.stall:
                self._send_soon(
                    {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": self.last_word_end}
                )

    def _trim_leading_silence(self) -> None:
        keep = int(self.rate * PRE_ROLL_SECONDS)
        held = self.position - self.segment.audio_start
        if held <= keep + self.frame_len:
            return
        audio = self.segment.audio()[-keep:]
        self.segment.chunks = [audio]
        self.segment.audio_start = self.position - len(audio)

    # Results -----------------------------------------------------------------------------

    def _emit_interim(self) -> None:
        if self.interim_busy or self.fake.faults.stall:
            return
        self.interim_busy = True
        segment = self.segment
        audio, start, end = segment.audio(), segment.start, self.position
        speech = (segment.speech_start, segment.speech_end)

        async def build() -> dict[str, Any] | None:
            try:
                text = await self._text_for(audio, speech, end - start, interim=True)
                await sleep_ms(self.fake.faults.per_chunk_ms)
            finally:
                self.interim_busy = False
            if not text:
                return None
            return self._results(
                text, start, end, speech, is_final=False, speech_final=False, from_finalize=False
            )

        self._enqueue(build())

    def _emit_final(self, *, from_finalize: bool, speech_final: bool, always: bool) -> None:
        segment = self.segment
        start, end = segment.start, self.position
        speech = (segment.speech_start, segment.speech_end)
        audio = segment.audio() if segment.speech_start is not None else None
        self.segment = _Segment(start=end, audio_start=end)
        self.in_speech = False
        self.silence_run = 0
        self.since_interim = 0
        if self.fake.faults.stall or (audio is None and not always):
            return
        deadline = time.monotonic() + self.fake.faults.first_byte_ms / 1000

        async def build() -> dict[str, Any] | None:
            text = ""
            if audio is not None:
                text = await self._text_for(audio, speech, end - start, interim=False)
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            if text and speech[1] is not None:
                self.last_word_end = round(speech[1] / self.rate, 3)
                self.utterance_end_due = True
            return self._results(
                text,
                start,
                end,
                speech,
                is_final=True,
                speech_final=speech_final,
                from_finalize=from_finalize,
            )

        self._enqueue(build())

    async def _text_for(
        self, audio: np.ndarray, speech: tuple[int | None, int | None], length: int, interim: bool
    ) -> str:
        canned = self.fake.transcript
        if canned is not None:
            if not interim:
                return canned
            start, end = speech
            spoken = ((end or 0) - (start or 0)) / self.rate
            words = canned.split()
            return " ".join(words[: max(1, min(len(words), round(spoken * 2.5)))])
        if len(audio) == 0:
            return ""
        return await asyncio.to_thread(self.fake.transcribe_blocking, audio, self.rate)

    def _results(
        self,
        text: str,
        start: int,
        end: int,
        speech: tuple[int | None, int | None],
        *,
        is_final: bool,
        speech_final: bool,
        from_finalize: bool,
    ) -> dict[str, Any]:
        options = self.conn.options
        punctuated = options.punctuate or options.smart_format
        tokens = text.split()
        bare = [re.sub(r"[^\w'-]", "", token).lower() for token in tokens]
        pairs = [(b, t) for b, t in zip(bare, tokens, strict=True) if b]
        transcript = text.strip() if punctuated else " ".join(b for b, _ in pairs)

        words_start = (speech[0] if speech[0] is not None else start) / self.rate
        words_end = (speech[1] if speech[1] is not None else end) / self.rate
        step = (words_end - words_start) / len(pairs) if pairs else 0.0
        words = []
        for index, (word, token) in enumerate(pairs):
            item: dict[str, Any] = {
                "word": word,
                "start": round(words_start + index * step, 3),
                "end": round(words_start + (index + 1) * step, 3),
                "confidence": WORD_CONFIDENCE,
            }
            if punctuated:
                item["punctuated_word"] = token
            words.append(item)

        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round((end - start) / self.rate, 3),
            "start": round(start / self.rate, 3),
            "is_final": is_final,
            "speech_final": speech_final,
            "channel": {
                "alternatives": [
                    {
                        "transcript": transcript,
                        "confidence": WORD_CONFIDENCE if words else 0.0,
                        "words": words,
                    }
                ]
            },
            "metadata": {
                "request_id": self.conn.request_id,
                "model_info": self.model_info,
                "model_uuid": self.model_uuid,
            },
            "from_finalize": from_finalize,
        }

    def _metadata(self) -> dict[str, Any]:
        created = datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="milliseconds")
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.conn.request_id,
            "sha256": self.sha256.hexdigest(),
            "created": created.replace("+00:00", "Z"),
            "duration": round(self.position / self.rate, 3),
            "channels": self.channels if self.position else 0,
            "models": [self.model_uuid],
            "model_info": {self.model_uuid: self.model_info},
        }

    # Sending, in order -------------------------------------------------------------------

    def _enqueue(self, build: Awaitable[dict[str, Any] | None]) -> None:
        task: asyncio.Task[dict[str, Any] | None] = asyncio.ensure_future(build)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        self.outbox.put_nowait(task)

    def _send_soon(self, message: dict[str, Any]) -> None:
        async def ready() -> dict[str, Any]:
            return message

        self._enqueue(ready())

    async def _sender(self) -> None:
        while True:
            task = await self.outbox.get()
            try:
                message = await task
                if message is not None and not self.ws.closed:
                    await self._send(message)
            except (ConnectionError, RuntimeError):
                pass  # the socket went away under us
            except Exception as exc:  # a failed transcription must not stop the sender
                self.conn.errors.append(repr(exc))
            finally:
                self.outbox.task_done()

    async def _send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))
        self.conn.sent.append(message)
        if message.get("type") == "Results":
            if message["is_final"]:
                self.conn.finals_sent += 1
            else:
                self.conn.interims_sent += 1
