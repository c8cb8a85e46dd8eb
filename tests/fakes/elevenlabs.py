"""A local stand-in for ElevenLabs' text-to-speech WebSocket APIs, speaking with the local voice.

`FakeElevenLabs` serves `GET /v1/text-to-speech/{voice_id}/multi-stream-input` (multi-context)
and `GET /v1/text-to-speech/{voice_id}/stream-input` (single context) as ElevenLabs documents
them (AsyncAPI spec of the multi-context socket), so Pipecat's `ElevenLabsTTSService` works
against it unchanged:

- Handshake: the `xi-api-key` header must carry `api_key` (a wrong one gets HTTP 401 with
  `{"detail": {"status": "invalid_api_key", ...}}`); without the header the first message must
  carry `xi_api_key`. Query: `model_id`, `output_format` (pcm_8000/16000/22050/24000/32000/
  44100/48000 as s16le, ulaw_8000 as G.711 mu-law; mp3/opus/alaw are not made here),
  `auto_mode`, `inactivity_timeout` (default 20, at most 180), `sync_alignment`, ... An
  unsupported value closes with 1008.
- Client messages: `{"text": " ", "context_id", "voice_settings"?, "generation_config"?}`
  opens a context; `{"text", "context_id", "flush"?}` adds text; `{"context_id", "flush": true}`
  commits the buffer; `{"context_id", "close_context": true}`; `{"text": ""}` keeps alive;
  `{"close_socket": true}`. At most 5 open contexts (a 6th closes the socket with 1008,
  `max_active_conversations`); `voice_settings` on a context that is already open, when they
  differ from its first message's, closes with 1008 as ElevenLabs does.
- Synthesis: text is buffered per context and committed at sentence ends with `auto_mode=true`,
  by `generation_config.chunk_length_schedule` (default 120, 160, 250, 290 characters) without
  it, and on `flush`. Each committed sentence is spoken by Piper (22,050 Hz) in a worker
  thread, resampled with soxr, encoded, and sent as base64 `audio` chunks of about `chunk_ms`
  with `contextId`, `alignment` and `normalizedAlignment` (chars, charStartTimesMs,
  charDurationsMs, relative to the chunk). Speech is cached per sentence (shared by instances
  that use the default voice).
- `close_context` after a `flush` lets the flushed audio finish, then sends
  `{"isFinal": true, "contextId"}` (this is how Pipecat ends every turn: flush, then close).
  `close_context` without a flush is a barge-in: pending audio is dropped at once, nothing more
  of that context is sent but its `isFinal`. `close_socket` finishes flushed contexts, drops the
  others and closes with 1000.
- Inactivity: a context that gets no message for `inactivity_timeout` seconds while idle is
  closed (`isFinal`); a socket with no message and no open context for that long gets
  `{"message": "Have not received a new text input ...", "error": "input_timeout_exceeded",
  "code": 1008}` and a 1008 close.
- Single context (`stream-input`): the same, without `context_id`; `{"text": ""}` ends the
  input: the rest is spoken, `{"isFinal": true}` sent, and the socket closed.

Faults (tests/fakes/base.py): `first_byte_ms` delays each context's first audio chunk,
`per_chunk_ms` the later ones, `stall` accepts text and never sends audio (nor `isFinal`),
`take_drop()` aborts the TCP connection after that many seconds, `take_http_failure()` answers
an HTTP error before the upgrade. Every handshake lands in `log`; `connections` records each
socket's query, messages and contexts (texts as received, sentences spoken, audio sent).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from tests.fakes.base import Faults, RequestLog, sleep_ms

DEFAULT_API_KEY = "test-elevenlabs-key"
MAX_CONTEXTS = 5
DEFAULT_SCHEDULE = (120, 160, 250, 290)
PCM_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
OUTPUT_FORMATS: dict[str, tuple[str, int]] = {f"pcm_{rate}": ("pcm", rate) for rate in PCM_RATES}
OUTPUT_FORMATS["ulaw_8000"] = ("ulaw", 8000)

_SENTENCE = re.compile(r".*?[.!?\u2026]+[\"'\u201d\u2019)\]]*(?:\s+|$)|.+$", re.DOTALL)
_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?:\s+|$)")
_TIMEOUT_MESSAGE = (
    "Have not received a new text input within the timeout of {secs} seconds. Streaming input "
    "terminated. Please make sure to either feed the input in the timely manner, or to send "
    'the end of input text (empty string "") when done.'
)
_VOICE_SETTINGS_MESSAGE = (
    "voice_settings field must be provided in the first message and then either be not "
    "provided or not change."
)
_MAX_CONTEXTS_MESSAGE = (
    "Maximum simultaneous contexts per WebSocket connection exceeded ({n}). Please close an "
    "existing context before opening a new one."
)

Synthesizer = Callable[[str], tuple[np.ndarray, int]]


def ulaw_encode(samples: np.ndarray) -> bytes:
    """G.711 mu-law bytes for int16 samples (the same bytes as audioop.lin2ulaw)."""
    value = samples.astype(np.int32) >> 2  # 14-bit, as the reference coder works
    mask = np.where(value < 0, 0x7F, 0xFF)
    value = np.minimum(np.abs(value), 8159) + 0x21
    segment = np.clip(np.floor(np.log2(value)).astype(np.int32) - 5, 0, 8)
    code = (np.minimum(segment, 7) << 4) | ((value >> (np.minimum(segment, 7) + 1)) & 0x0F)
    code = np.where(segment > 7, 0x7F, code)
    return (code ^ mask).astype(np.uint8).tobytes()


def split_sentences(text: str) -> list[str]:
    """`text` cut after each sentence end; every piece keeps its trailing whitespace."""
    return [m.group(0) for m in _SENTENCE.finditer(text) if m.group(0).strip()]


class _Speech:
    """Piper speech per sentence, cached, one synthesis at a time (the voice is shared)."""

    def __init__(self, synthesize: Synthesizer | None, cache: bool) -> None:
        self._synthesize = synthesize
        self._cache: dict[str, tuple[np.ndarray, int]] | None = {} if cache else None
        self._lock = threading.Lock()

    def speak(self, text: str) -> tuple[np.ndarray, int]:
        with self._lock:
            if self._cache is not None and text in self._cache:
                return self._cache[text]
            synthesize = self._synthesize
            if synthesize is None:
                from tests.support.speech import synthesize
            result = synthesize(text)
            if self._cache is not None:
                self._cache[text] = result
            return result

    def render(self, text: str, encoding: str, rate: int) -> tuple[bytes, int]:
        """Encoded audio for `text` and its length in samples."""
        samples, source_rate = self.speak(text)
        if source_rate != rate and len(samples):
            import soxr

            samples = soxr.resample(samples.astype(np.int16), source_rate, rate)
        samples = np.asarray(samples, dtype=np.int16)
        data = ulaw_encode(samples) if encoding == "ulaw" else samples.tobytes()
        return data, len(samples)


_SHARED_SPEECH = _Speech(None, cache=True)  # the Piper voice's sentences, for every instance


@dataclass
class ElevenLabsContext:
    """One synthesis context of a connection, as the server saw it."""

    context_id: str
    opened_at: float
    voice_settings: dict[str, Any] | None = None
    generation_config: dict[str, Any] | None = None
    texts: list[str] = field(default_factory=list)  # non-blank texts, as received
    spoken: list[str] = field(default_factory=list)  # sentences committed for synthesis
    flushes: int = 0
    close_requested_at: float | None = None
    barged_in: bool = False  # closed without a flush: pending audio dropped
    timed_out: bool = False
    audio_chunks: int = 0
    audio_bytes: int = 0
    audio_samples: int = 0
    first_audio_at: float | None = None
    last_audio_at: float | None = None
    final_sent_at: float | None = None
    # Internal state.
    buffer: str = ""
    schedule_index: int = 0
    last_input: float = 0.0
    pending: int = 0
    ended: bool = False
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


@dataclass
class ElevenLabsConnection:
    """One WebSocket session: its handshake, every message received, its contexts."""

    multi: bool
    voice_id: str
    query: dict[str, str]
    opened_at: float
    model_id: str | None = None
    output_format: str = "pcm_16000"
    encoding: str = "pcm"
    sample_rate: int = 16000
    auto_mode: bool = False
    inactivity_timeout: float = 20.0
    authenticated: bool = False
    messages: list[dict[str, Any]] = field(default_factory=list)
    contexts: list[ElevenLabsContext] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    closed_at: float | None = None
    dropped: bool = False
    # Internal state.
    active: dict[str, ElevenLabsContext] = field(default_factory=dict)
    last_input: float = 0.0
    ws: web.WebSocketResponse | None = None
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def audio_bytes(self) -> int:
        return sum(ctx.audio_bytes for ctx in self.contexts)


class _Closed(Exception):
    """The server closed this socket (policy violation); stop reading it."""


class FakeElevenLabs:
    """ElevenLabs' stream-input WebSockets, speaking with the local Piper voice."""

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        chunk_ms: float = 150.0,
        cache: bool = True,
        synthesize: Synthesizer | None = None,
    ) -> None:
        self.api_key = api_key
        self.chunk_ms = chunk_ms
        self.faults = Faults()
        self.log = RequestLog()
        self.connections: list[ElevenLabsConnection] = []
        shared = synthesize is None and cache
        self._speech = _SHARED_SPEECH if shared else _Speech(synthesize, cache)

    # -- what tests look at ---------------------------------------------------------------

    @property
    def contexts(self) -> list[ElevenLabsContext]:
        return [ctx for conn in self.connections for ctx in conn.contexts]

    @property
    def audio_bytes_sent(self) -> int:
        return sum(conn.audio_bytes for conn in self.connections)

    async def warm(self, *texts: str) -> None:
        """Load the voice (and cache `texts`) before a timing-sensitive test."""
        for text in texts or ("Hello.",):
            for sentence in split_sentences(text):
                await asyncio.to_thread(self._speech.speak, sentence.strip())

    def render(self, sentence: str, output_format: str = "pcm_16000") -> bytes:
        """The audio this fake sends for one sentence (blocking; cached after the first call)."""
        encoding, rate = OUTPUT_FORMATS[output_format]
        return self._speech.render(sentence.strip(), encoding, rate)[0]

    # -- routes ---------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        base = "/v1/text-to-speech/{voice_id}"
        app.router.add_get(f"{base}/multi-stream-input", self._multi)
        app.router.add_get(f"{base}/stream-input", self._single)

    async def _multi(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, multi=True)

    async def _single(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, multi=False)

    async def _serve(self, request: web.Request, multi: bool) -> web.StreamResponse:
        query = dict(request.query)
        entry: dict[str, object] = {
            "path": request.path,
            "voice_id": request.match_info["voice_id"],
            "query": query,
            "has_api_key_header": "xi-api-key" in request.headers,
        }
        status = self.faults.take_http_failure()
        if status is not None:
            self.log.add(**entry, status=status)
            return _http_error(status, "fault_injected", "Injected failure")
        header_key = request.headers.get("xi-api-key")
        if header_key is not None and header_key != self.api_key:
            self.log.add(**entry, status=401)
            return _http_error(401, "invalid_api_key", "Invalid API key")
        self.log.add(**entry, status=101)

        conn = ElevenLabsConnection(
            multi=multi,
            voice_id=request.match_info["voice_id"],
            query=query,
            opened_at=time.monotonic(),
            authenticated=header_key is not None,
        )
        conn.last_input = conn.opened_at
        self.connections.append(conn)
        ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        conn.ws = ws
        try:
            problem = self._apply_query(conn)
            if problem:
                await self._fail(conn, problem, "invalid_request")
                return ws
            drop_after = self.faults.take_drop()
            if drop_after is not None:
                self._spawn(conn, self._drop_later(conn, request, drop_after))
            self._spawn(conn, self._watch_inactivity(conn))
            await self._read(conn, ws)
        finally:
            for task in list(conn.tasks) + [c.task for c in conn.contexts if c.task]:
                task.cancel()
            if conn.closed_at is None:
                conn.closed_at = time.monotonic()
                conn.close_code = ws.close_code
        return ws

    def _apply_query(self, conn: ElevenLabsConnection) -> str | None:
        query = conn.query
        conn.model_id = query.get("model_id")
        conn.output_format = query.get("output_format", "mp3_44100_128")
        if conn.output_format not in OUTPUT_FORMATS:
            return f"Invalid output_format: {conn.output_format!r} (this fake speaks pcm/ulaw)"
        conn.encoding, conn.sample_rate = OUTPUT_FORMATS[conn.output_format]
        conn.auto_mode = query.get("auto_mode", "false").lower() == "true"
        try:
            conn.inactivity_timeout = float(int(query.get("inactivity_timeout", "20")))
        except ValueError:
            return "inactivity_timeout must be an integer"
        if not 0 < conn.inactivity_timeout <= 180:
            return "inactivity_timeout must be between 1 and 180 seconds"
        return None

    def _spawn(self, conn: ElevenLabsConnection, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)

    # -- reading --------------------------------------------------------------------------

    async def _read(self, conn: ElevenLabsConnection, ws: web.WebSocketResponse) -> None:
        async for raw in ws:
            if raw.type != WSMsgType.TEXT:
                continue
            try:
                message = json.loads(raw.data)
                if not isinstance(message, dict):
                    raise ValueError("not an object")
            except ValueError:
                await self._fail(conn, "Invalid message: expected a JSON object", "invalid_message")
                return
            conn.messages.append({k: v for k, v in message.items() if k != "xi_api_key"})
            conn.last_input = time.monotonic()
            try:
                await self._handle(conn, message)
            except _Closed:
                return

    async def _handle(self, conn: ElevenLabsConnection, message: dict[str, Any]) -> None:
        if not conn.authenticated:
            key = message.get("xi_api_key") or ""
            bearer = str(message.get("authorization") or "").removeprefix("Bearer ")
            if self.api_key not in (key, bearer):
                await self._fail(conn, "Invalid API key", "invalid_api_key")
                raise _Closed
            conn.authenticated = True
        if message.get("close_socket"):
            self._spawn(conn, self._close_socket(conn))
            return
        if conn.multi:
            context_id = message.get("context_id")
        else:
            context_id = "default"
        text = message.get("text")
        if context_id is None:
            if not text or not str(text).strip():
                return  # A keepalive for the connection.
            context_id = "default"
        context_id = str(context_id)
        ctx = conn.active.get(context_id)
        if message.get("close_context"):
            if ctx is not None:
                await self._close_context(conn, ctx)
            return
        if ctx is None:
            ctx = await self._open_context(conn, context_id, message)
        elif "voice_settings" in message and message["voice_settings"] != ctx.voice_settings:
            await self._fail(conn, _VOICE_SETTINGS_MESSAGE, "invalid_voice_settings")
            raise _Closed
        ctx.last_input = conn.last_input
        if isinstance(text, str):
            if text.strip():
                ctx.texts.append(text)
                ctx.buffer += text
                self._commit(ctx, conn.auto_mode)
            elif text == "" and not conn.multi:
                self._commit(ctx, auto_mode=False, everything=True)
                ctx.flushes += 1
                await self._close_context(conn, ctx)
                return
        if message.get("flush"):
            ctx.flushes += 1
            self._commit(ctx, auto_mode=False, everything=True)

    async def _open_context(
        self, conn: ElevenLabsConnection, context_id: str, message: dict[str, Any]
    ) -> ElevenLabsContext:
        if len(conn.active) >= MAX_CONTEXTS:
            await self._fail(
                conn, _MAX_CONTEXTS_MESSAGE.format(n=MAX_CONTEXTS), "max_active_conversations"
            )
            raise _Closed
        ctx = ElevenLabsContext(
            context_id=context_id,
            opened_at=time.monotonic(),
            voice_settings=message.get("voice_settings"),
            generation_config=message.get("generation_config"),
        )
        conn.contexts.append(ctx)
        conn.active[context_id] = ctx
        ctx.task = asyncio.ensure_future(self._speak_context(conn, ctx))
        return ctx

    def _commit(self, ctx: ElevenLabsContext, auto_mode: bool, everything: bool = False) -> None:
        """Move the text that is ready from the context's buffer to its synthesis queue."""
        if everything:
            ready, ctx.buffer = ctx.buffer, ""
        elif auto_mode:
            ends = list(_SENTENCE_END.finditer(ctx.buffer))
            if not ends:
                return
            cut = ends[-1].end()
            ready, ctx.buffer = ctx.buffer[:cut], ctx.buffer[cut:]
        else:
            schedule = (ctx.generation_config or {}).get("chunk_length_schedule")
            schedule = list(schedule or DEFAULT_SCHEDULE)
            need = schedule[min(ctx.schedule_index, len(schedule) - 1)]
            cut = ctx.buffer.rfind(" ") + 1
            if len(ctx.buffer.strip()) < need or cut <= 0:
                return
            ctx.schedule_index += 1
            ready, ctx.buffer = ctx.buffer[:cut], ctx.buffer[cut:]
        for sentence in split_sentences(ready.lstrip()):
            ctx.spoken.append(sentence.strip())
            ctx.pending += 1
            ctx.queue.put_nowait(sentence.strip() + " ")

    async def _close_context(self, conn: ElevenLabsConnection, ctx: ElevenLabsContext) -> None:
        """Finish a flushed context's audio, or drop a context that was never flushed."""
        if ctx.close_requested_at is None:
            ctx.close_requested_at = time.monotonic()
        ctx.buffer = ""
        if ctx.flushes:
            ctx.queue.put_nowait(None)
            return
        ctx.barged_in = True
        await self._end_context(conn, ctx)

    async def _end_context(self, conn: ElevenLabsConnection, ctx: ElevenLabsContext) -> None:
        """Stop a context now: no audio of it is sent after this, only its isFinal."""
        if ctx.ended:
            return
        ctx.ended = True
        conn.active.pop(ctx.context_id, None)
        if ctx.task is not None and ctx.task is not asyncio.current_task():
            ctx.task.cancel()
        self._spawn(conn, self._send_final(conn, ctx))

    async def _close_socket(self, conn: ElevenLabsConnection) -> None:
        """`close_socket`: flushed contexts finish, the others stop, then a normal close."""
        waiting = []
        for ctx in list(conn.active.values()):
            if ctx.flushes and ctx.task is not None and not self.faults.stall:
                ctx.queue.put_nowait(None)
                waiting.append(ctx.task)
            else:
                await self._end_context(conn, ctx)
        if waiting:
            await asyncio.gather(*waiting, return_exceptions=True)
        await self._close(conn, 1000, "")

    # -- speaking -------------------------------------------------------------------------

    async def _speak_context(self, conn: ElevenLabsConnection, ctx: ElevenLabsContext) -> None:
        while (sentence := await ctx.queue.get()) is not None:
            if any(ch.isalnum() for ch in sentence):
                data, count = await asyncio.to_thread(
                    self._speech.render, sentence.strip(), conn.encoding, conn.sample_rate
                )
                for chunk in self._chunks(sentence, data, count, conn):
                    await self._pace(ctx)
                    if not await self._send(conn, ctx, {**chunk, "contextId": ctx.context_id}):
                        return
                    size = len(base64.b64decode(chunk["audio"]))
                    ctx.audio_chunks += 1
                    ctx.audio_bytes += size
                    ctx.audio_samples += size // (1 if conn.encoding == "ulaw" else 2)
                    now = time.monotonic()
                    ctx.first_audio_at = ctx.first_audio_at or now
                    ctx.last_audio_at = now
            ctx.pending -= 1
        ctx.ended = True
        conn.active.pop(ctx.context_id, None)
        await self._send_final(conn, ctx)

    async def _pace(self, ctx: ElevenLabsContext) -> None:
        while self.faults.stall:
            await asyncio.sleep(0.05)
        await sleep_ms(self.faults.per_chunk_ms if ctx.audio_chunks else self.faults.first_byte_ms)

    def _chunks(
        self, text: str, data: bytes, count: int, conn: ElevenLabsConnection
    ) -> list[dict[str, Any]]:
        """Audio cut at character boundaries into ~chunk_ms pieces, each with its alignment."""
        width = 1 if conn.encoding == "ulaw" else 2
        total_ms = count * 1000 // conn.sample_rate
        bounds = [round(i * total_ms / len(text)) for i in range(len(text) + 1)]
        chunks = []
        first = 0
        while first < len(text):
            last = first + 1
            while last < len(text) and bounds[last] - bounds[first] < self.chunk_ms:
                last += 1
            start = bounds[first] * conn.sample_rate // 1000
            end = count if last == len(text) else bounds[last] * conn.sample_rate // 1000
            alignment = {
                "chars": list(text[first:last]),
                "charStartTimesMs": [bounds[i] - bounds[first] for i in range(first, last)],
                "charDurationsMs": [bounds[i + 1] - bounds[i] for i in range(first, last)],
            }
            audio = data[start * width : end * width]
            if audio:
                chunks.append(
                    {
                        "audio": base64.b64encode(audio).decode(),
                        "alignment": alignment,
                        "normalizedAlignment": alignment,
                    }
                )
            first = last
        return chunks

    # -- sending and closing --------------------------------------------------------------

    async def _send(
        self, conn: ElevenLabsConnection, ctx: ElevenLabsContext | None, payload: dict[str, Any]
    ) -> bool:
        """Send one message; audio of a context that has ended is never sent."""
        if not conn.multi:
            payload.pop("contextId", None)
        async with conn.send_lock:
            if ctx is not None and "audio" in payload and ctx.ended:
                return False
            ws = conn.ws
            if ws is None or ws.closed:
                return False
            try:
                await ws.send_str(json.dumps(payload))
            except (ConnectionError, RuntimeError):
                return False
        return True

    async def _send_final(self, conn: ElevenLabsConnection, ctx: ElevenLabsContext) -> None:
        while self.faults.stall:
            await asyncio.sleep(0.05)
        if await self._send(conn, ctx, {"isFinal": True, "contextId": ctx.context_id}):
            ctx.final_sent_at = time.monotonic()
        if not conn.multi:
            await self._close(conn, 1000, "")

    async def _fail(self, conn: ElevenLabsConnection, message: str, error: str) -> None:
        """ElevenLabs' error message, then a 1008 (policy violation) close."""
        await self._send(conn, None, {"message": message, "error": error, "code": 1008})
        await self._close(conn, 1008, message)

    async def _close(self, conn: ElevenLabsConnection, code: int, reason: str) -> None:
        if conn.closed_at is None:
            conn.closed_at = time.monotonic()
            conn.close_code = code
            conn.close_reason = reason
        if conn.ws is not None and not conn.ws.closed:
            await conn.ws.close(code=code, message=reason.encode()[:123])

    async def _drop_later(
        self, conn: ElevenLabsConnection, request: web.Request, after: float
    ) -> None:
        await asyncio.sleep(after)
        conn.dropped = True
        conn.closed_at = time.monotonic()
        conn.close_code = 1006
        if request.transport is not None:
            request.transport.abort()

    async def _watch_inactivity(self, conn: ElevenLabsConnection) -> None:
        timeout = conn.inactivity_timeout
        while True:
            await asyncio.sleep(min(0.25, timeout / 4))
            now = time.monotonic()
            busy = any(c.pending or c.close_requested_at for c in conn.active.values())
            if not conn.multi and not busy and now - conn.last_input >= timeout:
                conn.active.clear()
            for ctx in list(conn.active.values()) if conn.multi else []:
                idle = ctx.pending == 0 and ctx.close_requested_at is None
                if idle and now - ctx.last_input >= timeout:
                    ctx.timed_out = True
                    await self._end_context(conn, ctx)
            if not conn.active and now - conn.last_input >= timeout:
                secs = f"{timeout:g}"
                await self._fail(conn, _TIMEOUT_MESSAGE.format(secs=secs), "input_timeout_exceeded")
                return


def _http_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"detail": {"status": code, "message": message}}, status=status)
