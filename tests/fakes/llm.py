"""Local stand-ins for Anthropic's Messages API and OpenAI's Chat Completions API.

`FakeAnthropic` serves `POST /v1/messages` (also `?beta=true`, which `client.beta.messages`
uses) and `FakeOpenAI` serves `POST /v1/chat/completions`, each in its vendor's wire format, so
the official `anthropic` and `openai` SDKs (and Pipecat's services on top of them) parse the
replies as they would the real ones:

- Anthropic streams Server-Sent Events `message_start`, `content_block_start`, `ping`,
  `content_block_delta` (`text_delta`) ..., `content_block_stop`, `message_delta` (stop_reason,
  usage), `message_stop`; errors are `{"type": "error", "error": {"type": ..., "message": ...}}`
  (401 authentication_error, 429 rate_limit_error, 500 api_error, 529 overloaded_error, ...).
- OpenAI streams `data: {chat.completion.chunk}` lines: the role delta, content deltas, a
  `finish_reason` chunk, a usage chunk with empty `choices` when `stream_options.include_usage`
  is set, then `data: [DONE]`; errors are `{"error": {"message", "type", "param", "code"}}`.

The reply is deterministic: the last user message's text is matched against `rules` (keyword,
reply), case-insensitively, first match wins, otherwise "I heard you say: <text>." A `reply=`
callable replaces the rules. Replies stream a word or so per delta. Every request lands in `log`
(headers without the key, body, model, system, messages, max_tokens, stream). `faults`
(tests/fakes/base.py) delays the first token and later ones, fails requests with the vendor's
HTTP errors, drops connections mid-stream or stalls after the headers.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web

from tests.fakes.base import Faults, RequestLog, sleep_ms

STORY = (
    "Once upon a time a brave knight rode out to find the dragon of the northern hills. "
    "The villagers warned him that the dragon was fierce and ate travellers whole. "
    "When he reached the cave he found the dragon crying over a thorn in its paw. "
    "The knight pulled the thorn out gently and bandaged the wound with his cloak. "
    "The grateful dragon flew him home and the villagers cheered from the rooftops. "
    "From that day the two of them guarded the valley together. "
    "Every winter the dragon warmed the village with its breath. "
    "And the knight never had to draw his sword again."
)

DEFAULT_RULES: tuple[tuple[str, str], ...] = (
    ("sky", "The sky is blue."),
    ("week", "There are seven days in a week."),
    ("story", STORY),
)

ReplyFn = Callable[[str], str]

_HIDDEN_HEADERS = {"x-api-key", "authorization"}


def pieces(text: str) -> list[str]:
    """Split a reply into token-like pieces: a word with its leading space each."""
    return re.findall(r"\s*\S+", text) or [""]


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: words and punctuation marks."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            str(block.get("text", ""))
            for block in content
            if isinstance(block, dict) and block.get("type") == "text"
        ]
        return " ".join(texts)
    return ""


def last_user_text(messages: list[Any]) -> str:
    """The text of the last user message that has any."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            text = content_text(message.get("content")).strip()
            if text:
                return text
    return ""


class _Gone(Exception):
    """The connection is closed (dropped on purpose or by the client)."""


@dataclass
class _Turn:
    """One request being answered."""

    id: str
    model: str
    created: int
    input_tokens: int
    parts: list[str]
    truncated: bool
    include_usage: bool

    @property
    def text(self) -> str:
        return "".join(self.parts)


class _FakeLLM:
    """What both vendors' fakes share: auth, rules, logging, faults and the stream loop."""

    provider: ClassVar[str] = ""
    path: ClassVar[str] = ""
    stream_content_type: ClassVar[str] = "text/event-stream; charset=utf-8"

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        rules: list[tuple[str, str]] | None = None,
        reply: ReplyFn | None = None,
        faults: Faults | None = None,
        retry_after_s: int = 1,
    ) -> None:
        self.api_key = api_key
        self.rules: list[tuple[str, str]] = list(DEFAULT_RULES if rules is None else rules)
        self.reply = reply
        self.faults = faults or Faults()
        self.log = RequestLog()
        self.retry_after_s = retry_after_s
        # Send this status's error in the stream after the first text delta (200 already sent).
        self.error_mid_stream: int | None = None
        self.served = 0  # answered 200 (a stream or a whole reply was started)
        self.completed = 0  # the whole reply went out
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()

    # FakeProvider protocol -------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(self.path, self._handle)
        app.on_shutdown.append(self._cancel_open_requests)

    @property
    def request_count(self) -> int:
        """Every request received, whatever it was answered with."""
        return len(self.log.requests)

    def answer(self, user_text: str) -> str:
        """The reply to a user message, by the `reply` callable or the keyword rules."""
        if self.reply is not None:
            return self.reply(user_text)
        lowered = user_text.lower()
        for keyword, reply in self.rules:
            if keyword.lower() in lowered:
                return reply
        return f"I heard you say: {user_text}."

    # Vendor specifics ------------------------------------------------------------------
    def _auth_error(self, request: web.Request) -> web.Response | None:
        raise NotImplementedError

    def _validate(self, request: web.Request, body: dict[str, Any]) -> web.Response | None:
        raise NotImplementedError

    def _error(self, status: int, message: str | None = None, **extra: Any) -> web.Response:
        raise NotImplementedError

    def _error_body(self, status: int, message: str | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def _system_text(self, body: dict[str, Any]) -> str:
        raise NotImplementedError

    def _max_tokens(self, body: dict[str, Any]) -> int | None:
        raise NotImplementedError

    def _new_turn(self, body: dict[str, Any], reply: str) -> _Turn:
        raise NotImplementedError

    def _head(self, turn: _Turn) -> list[bytes]:
        """Events sent as soon as the headers are (before the first token is ready)."""
        raise NotImplementedError

    def _piece(self, turn: _Turn, index: int, piece: str) -> list[bytes]:
        raise NotImplementedError

    def _tail(self, turn: _Turn) -> list[bytes]:
        raise NotImplementedError

    def _stream_error(self, status: int) -> bytes:
        raise NotImplementedError

    def _whole(self, turn: _Turn) -> dict[str, Any]:
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:
        raise NotImplementedError

    # Request handling ------------------------------------------------------------------
    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):04d}{uuid.uuid4().hex[:20]}"

    def _turn_basics(self, body: dict[str, Any], reply: str) -> tuple[int, list[str], bool]:
        messages = body.get("messages") or []
        prompt = self._system_text(body) + " ".join(
            content_text(m.get("content")) for m in messages if isinstance(m, dict)
        )
        parts = pieces(reply)
        limit = self._max_tokens(body)
        truncated = limit is not None and len(parts) > limit
        if truncated and limit is not None:
            parts = parts[:limit]
        return count_tokens(prompt), parts, truncated

    async def _cancel_open_requests(self, _app: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            return await self._serve(request, time.monotonic())
        finally:
            self._tasks.discard(task)

    async def _serve(self, request: web.Request, started: float) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HIDDEN_HEADERS}
        raw = await request.read()
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        entry: dict[str, Any] = {
            "provider": self.provider,
            "path": request.path,
            "query": dict(request.query),
            "headers": headers,
            "body": body,
            "at": started,
        }
        if isinstance(body, dict):
            messages = body.get("messages") if isinstance(body.get("messages"), list) else []
            entry.update(
                model=body.get("model"),
                system=self._system_text(body),
                messages=messages,
                max_tokens=self._max_tokens(body),
                stream=bool(body.get("stream")),
                last_user=last_user_text(messages or []),
            )

        refusal = self._auth_error(request)
        if refusal is None and not isinstance(body, dict):
            refusal = self._error(400, "The request body is not valid JSON.")
        if refusal is None and isinstance(body, dict):
            refusal = self._validate(request, body)
        status = self.faults.take_http_failure() if refusal is None else None
        if refusal is None and status is not None:
            refusal = self._error(status)
        if refusal is not None:
            self.log.add(**entry, outcome=f"http_{refusal.status}")
            return refusal

        assert isinstance(body, dict)
        reply = self.answer(entry["last_user"])
        drop_after = self.faults.take_drop()
        outcome = "stall" if self.faults.stall else "drop" if drop_after is not None else "ok"
        self.log.add(**entry, reply=reply, outcome=outcome)
        turn = self._new_turn(body, reply)

        response = web.StreamResponse(status=200)
        drop_timer = None
        if drop_after is not None:
            delay = started + drop_after - time.monotonic()
            if delay <= 0:  # reset before any response: the client sees no status at all
                _abort(request)
                return response
            drop_timer = asyncio.get_running_loop().call_later(delay, _abort, request)
        try:
            if self.faults.stall:
                await self._stall(request, response)
            elif body.get("stream"):
                await self._stream(request, response, turn)
            else:
                await self._reply_whole(request, response, turn)
        except _Gone:
            pass  # the connection is gone: nothing more can be sent
        finally:
            if drop_timer is not None:
                drop_timer.cancel()
        return response

    async def _stall(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(self._stream_headers())
        self.served += 1
        await _send(response.prepare(request))
        while request.transport is not None and not request.transport.is_closing():
            await asyncio.sleep(0.05)

    def _stream_headers(self) -> dict[str, str]:
        return {
            **self._headers(),
            "Content-Type": self.stream_content_type,
            "Cache-Control": "no-cache",
        }

    async def _stream(
        self, request: web.Request, response: web.StreamResponse, turn: _Turn
    ) -> None:
        response.headers.update(self._stream_headers())
        self.served += 1
        await _send(response.prepare(request))
        for event in self._head(turn):
            await _send(response.write(event))
        await sleep_ms(self.faults.first_byte_ms)
        for index, piece in enumerate(turn.parts):
            if index:
                await sleep_ms(self.faults.per_chunk_ms)
            for event in self._piece(turn, index, piece):
                await _send(response.write(event))
            if self.error_mid_stream is not None:
                await _send(response.write(self._stream_error(self.error_mid_stream)))
                await _send(response.write_eof())
                return
        for event in self._tail(turn):
            await _send(response.write(event))
        await _send(response.write_eof())
        self.completed += 1

    async def _reply_whole(
        self, request: web.Request, response: web.StreamResponse, turn: _Turn
    ) -> None:
        body = json.dumps(self._whole(turn)).encode()
        response.headers.update({**self._headers(), "Content-Type": "application/json"})
        response.content_length = len(body)
        await sleep_ms(self.faults.first_byte_ms)
        self.served += 1
        await _send(response.prepare(request))
        await _send(response.write(body))
        await _send(response.write_eof())
        self.completed += 1


def _abort(request: web.Request) -> None:
    """Cut the TCP connection without a proper end (no last chunk, no FIN handshake)."""
    transport = request.transport
    if transport is not None:
        transport.abort()


async def _send(write: Any) -> None:
    try:
        await write
    except ConnectionError as error:
        raise _Gone from error


# Anthropic ------------------------------------------------------------------------------

_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: (
        "rate_limit_error",
        "This request would exceed your organization's rate limit. Please try again later.",
    ),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timeout"),
    529: ("overloaded_error", "Overloaded"),
}


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class FakeAnthropic(_FakeLLM):
    """Anthropic's Messages API (`POST /v1/messages`), streaming and not."""

    provider = "anthropic"
    path = "/v1/messages"

    def _headers(self) -> dict[str, str]:
        return {"request-id": self._next_id("req_"), "anthropic-organization-id": "fake-org"}

    def _error_body(self, status: int, message: str | None = None) -> dict[str, Any]:
        kind, default = _ANTHROPIC_ERRORS.get(status, ("api_error", "Internal server error"))
        return {
            "type": "error",
            "error": {"type": kind, "message": message or default},
            "request_id": self._next_id("req_"),
        }

    def _error(self, status: int, message: str | None = None, **extra: Any) -> web.Response:
        headers = self._headers()
        if status == 429:
            headers["retry-after"] = str(self.retry_after_s)
        return web.json_response(self._error_body(status, message), status=status, headers=headers)

    def _auth_error(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-api-key")
        bearer = request.headers.get("Authorization", "")
        if key is None and bearer.startswith("Bearer "):
            key = bearer.removeprefix("Bearer ")
        if key is None:
            return self._error(401, "x-api-key header is required")
        if key != self.api_key:
            return self._error(401, "invalid x-api-key")
        return None

    def _validate(self, request: web.Request, body: dict[str, Any]) -> web.Response | None:
        if "anthropic-version" not in request.headers:
            return self._error(400, "anthropic-version: header is required")
        for name in ("model", "max_tokens", "messages"):
            if name not in body:
                return self._error(400, f"{name}: Field required")
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            return self._error(400, "messages: at least one message is required")
        if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
            return self._error(400, "max_tokens: must be greater than or equal to 1")
        return None

    def _system_text(self, body: dict[str, Any]) -> str:
        return content_text(body.get("system"))

    def _max_tokens(self, body: dict[str, Any]) -> int | None:
        value = body.get("max_tokens")
        return value if isinstance(value, int) else None

    def _new_turn(self, body: dict[str, Any], reply: str) -> _Turn:
        input_tokens, parts, truncated = self._turn_basics(body, reply)
        return _Turn(
            id=self._next_id("msg_"),
            model=str(body.get("model")),
            created=int(time.time()),
            input_tokens=input_tokens,
            parts=parts,
            truncated=truncated,
            include_usage=True,
        )

    def _usage(self, turn: _Turn, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": turn.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    def _message(self, turn: _Turn, content: list[Any], stop_reason: str | None) -> dict:
        return {
            "id": turn.id,
            "type": "message",
            "role": "assistant",
            "model": turn.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": self._usage(turn, len(turn.parts) if stop_reason else 1),
        }

    def _stop_reason(self, turn: _Turn) -> str:
        return "max_tokens" if turn.truncated else "end_turn"

    def _head(self, turn: _Turn) -> list[bytes]:
        message = self._message(turn, [], None)
        return [_sse("message_start", {"type": "message_start", "message": message})]

    def _piece(self, turn: _Turn, index: int, piece: str) -> list[bytes]:
        events = []
        if index == 0:
            block = {"type": "text", "text": ""}
            start = {"type": "content_block_start", "index": 0, "content_block": block}
            events += [_sse("content_block_start", start), _sse("ping", {"type": "ping"})]
        delta = {"type": "text_delta", "text": piece}
        events.append(
            _sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        )
        return events

    def _tail(self, turn: _Turn) -> list[bytes]:
        delta = {"stop_reason": self._stop_reason(turn), "stop_sequence": None}
        return [
            _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": delta,
                    "usage": {"output_tokens": len(turn.parts)},
                },
            ),
            _sse("message_stop", {"type": "message_stop"}),
        ]

    def _stream_error(self, status: int) -> bytes:
        body = self._error_body(status)
        body.pop("request_id", None)
        return _sse("error", body)

    def _whole(self, turn: _Turn) -> dict[str, Any]:
        content = [{"type": "text", "text": turn.text}]
        return self._message(turn, content, self._stop_reason(turn))


# OpenAI ---------------------------------------------------------------------------------

_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached on requests per min (RPM): Limit 3, Used 3, Requested 1. "
        "Please try again in 1s.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def _data(payload: dict[str, Any] | str) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


class FakeOpenAI(_FakeLLM):
    """OpenAI's Chat Completions API (`POST /v1/chat/completions`), streaming and not."""

    provider = "openai"
    path = "/v1/chat/completions"

    def _headers(self) -> dict[str, str]:
        return {"x-request-id": self._next_id("req_"), "openai-processing-ms": "1"}

    def _error_body(self, status: int, message: str | None = None) -> dict[str, Any]:
        kind, code, default = _OPENAI_ERRORS.get(status, ("server_error", None, "Server error."))
        return {"error": {"message": message or default, "type": kind, "param": None, "code": code}}

    def _error(self, status: int, message: str | None = None, **extra: Any) -> web.Response:
        body = self._error_body(status, message)
        body["error"].update(extra)
        headers = self._headers()
        if status == 429:
            headers["retry-after"] = str(self.retry_after_s)
        return web.json_response(body, status=status, headers=headers)

    def _auth_error(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header.removeprefix("Bearer ").strip():
            return self._error(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code=None,
            )
        key = header.removeprefix("Bearer ").strip()
        if key != self.api_key:
            shown = f"{key[:3]}***{key[-2:]}" if len(key) > 6 else "***"
            return self._error(401, f"Incorrect API key provided: {shown}.")
        return None

    def _validate(self, request: web.Request, body: dict[str, Any]) -> web.Response | None:
        if not body.get("model"):
            return self._error(400, "you must provide a model parameter")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._error(
                400,
                "Missing required parameter: 'messages'.",
                param="messages",
                code="missing_required_parameter",
            )
        return None

    def _system_text(self, body: dict[str, Any]) -> str:
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        return "\n".join(
            content_text(m.get("content"))
            for m in messages or []
            if isinstance(m, dict) and m.get("role") in ("system", "developer")
        )

    def _max_tokens(self, body: dict[str, Any]) -> int | None:
        for name in ("max_completion_tokens", "max_tokens"):
            value = body.get(name)
            if isinstance(value, int):
                return value
        return None

    def _new_turn(self, body: dict[str, Any], reply: str) -> _Turn:
        input_tokens, parts, truncated = self._turn_basics(body, reply)
        options = body.get("stream_options")
        return _Turn(
            id=self._next_id("chatcmpl-"),
            model=str(body.get("model")),
            created=int(time.time()),
            input_tokens=input_tokens,
            parts=parts,
            truncated=truncated,
            include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
        )

    def _chunk(self, turn: _Turn, choices: list[Any], usage: Any = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": turn.id,
            "object": "chat.completion.chunk",
            "created": turn.created,
            "model": turn.model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
            "choices": choices,
        }
        if turn.include_usage:
            chunk["usage"] = usage
        return _data(chunk)

    def _usage(self, turn: _Turn) -> dict[str, Any]:
        return {
            "prompt_tokens": turn.input_tokens,
            "completion_tokens": len(turn.parts),
            "total_tokens": turn.input_tokens + len(turn.parts),
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    @staticmethod
    def _choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    def _finish_reason(self, turn: _Turn) -> str:
        return "length" if turn.truncated else "stop"

    def _head(self, turn: _Turn) -> list[bytes]:
        # The role chunk comes with the first token, once the prompt is processed.
        return []

    def _piece(self, turn: _Turn, index: int, piece: str) -> list[bytes]:
        events = []
        if index == 0:
            role = {"role": "assistant", "content": "", "refusal": None}
            events.append(self._chunk(turn, [self._choice(role)]))
        events.append(self._chunk(turn, [self._choice({"content": piece})]))
        return events

    def _tail(self, turn: _Turn) -> list[bytes]:
        events = [self._chunk(turn, [self._choice({}, self._finish_reason(turn))])]
        if turn.include_usage:
            events.append(self._chunk(turn, [], self._usage(turn)))
        events.append(_data("[DONE]"))
        return events

    def _stream_error(self, status: int) -> bytes:
        return _data(self._error_body(status))

    def _whole(self, turn: _Turn) -> dict[str, Any]:
        message = {"role": "assistant", "content": turn.text, "refusal": None, "annotations": []}
        return {
            "id": turn.id,
            "object": "chat.completion",
            "created": turn.created,
            "model": turn.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self._finish_reason(turn),
                }
            ],
            "usage": self._usage(turn),
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
