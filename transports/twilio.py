"""The phone edge: Twilio's voice webhook, its status callbacks and Media Streams.

Twilio calls `POST /twilio/voice`; we answer TwiML `<Connect><Stream>` pointing at
`wss://{public host}/twilio/stream` with `<Parameter>`s (Twilio refuses a query string there).
The stream carries 8 kHz μ-law both ways; the pipeline runs at 8 kHz so nothing is resampled.
Everything the stream needs arrives in its own `start` message, so any server process can take
the WebSocket whichever process answered the webhook.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import HTTPException, Request, WebSocket
from loguru import logger
from pipecat.frames.frames import Frame, InputAudioRawFrame
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)
from starlette.websockets import WebSocketDisconnect
from twilio.request_validator import RequestValidator, get_signature_algorithm
from twilio.twiml.voice_response import Connect, VoiceResponse

from bot.call import CallInfo
from bot.calls import CallRegistry
from bot.config import LoadedPipeline
from bot.limits import Admission
from bot.pipeline import CallSession
from bot.settings import ServerSettings

PHONE_SAMPLE_RATE = 8000
# The pipeline takes the caller's audio in 40 ms frames: two of Twilio's 20 ms media messages
# each. Every frame costs the same queue hops and observer reports whatever its length, so this
# halves the per-frame work of a call's busiest stream for at most 20 ms of waiting
# (BENCHMARKS.md, "Capacity").
INPUT_FRAME_MS = 40
STREAM_PATH = "/twilio/stream"
STATUS_PATH = "/twilio/status"
START_TIMEOUT_SECS = 10.0
MAX_HANDSHAKE_MESSAGES = 10
HANG_UP_TIMEOUT_SECS = 5.0


# Twilio's newer webhook signing (a shared key, HMAC-SHA256) names itself in this header.
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _public_base(settings: ServerSettings, request_url: str) -> str:
    """The public base URL: VOICEBOT_PUBLIC_URL, else (local development) the request's own."""
    if settings.public_url:
        return settings.public_url
    parts = urlsplit(request_url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def websocket_url(base: str, path: str) -> str:
    parts = urlsplit(base)
    scheme = "wss" if parts.scheme in ("https", "wss") else "ws"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def _signed_url(settings: ServerSettings, path: str, query: str) -> str:
    assert settings.public_url is not None
    return settings.public_url + path + (f"?{query}" if query else "")


def check_http_caller(request: Request, settings: ServerSettings, form: dict[str, str]) -> None:
    """Twilio's signature when a token is configured; otherwise loopback clients only."""
    client = request.client.host if request.client else None
    if not settings.twilio_signatures_required:
        if not is_loopback(client):
            logger.warning(f"refused {request.url.path} from {client}: no TWILIO_AUTH_TOKEN set")
            raise HTTPException(403, "Twilio routes serve loopback clients only without a token")
        return
    url = _signed_url(settings, request.url.path, request.url.query)
    if not signature_valid(request.headers, settings, url, form, request.url.path):
        raise HTTPException(403, "invalid Twilio signature")


def signature_valid(
    headers: Mapping[str, str],
    settings: ServerSettings,
    url: str,
    params: dict[str, str],
    path: str,
) -> bool:
    """`X-Twilio-Signature` over `url` and `params`. Signed the legacy way (HMAC-SHA1 under the
    auth token) unless the request carries `X-Twilio-Webhooks-Signature-Settings`: then under
    the webhook shared key (TWILIO_WEBHOOK_SHARED_KEY) with the algorithm the header names
    (HMAC_SHA256), checked by the twilio library."""
    signature = headers.get("X-Twilio-Signature", "")
    signing = headers.get(SIGNATURE_SETTINGS_HEADER)
    if not signature:
        logger.warning(f"refused {path}: no X-Twilio-Signature")
        return False
    if signing:
        algorithm = get_signature_algorithm(signing)
        if settings.twilio_webhook_shared_key is None:
            logger.warning(
                f"refused {path}: signed with a webhook shared key ({algorithm[:20]}) but "
                "TWILIO_WEBHOOK_SHARED_KEY is not set"
            )
            return False
        validator = RequestValidator(settings.twilio_webhook_shared_key)
        valid = validator.validate(url, params, signature, algorithm=algorithm)
    else:
        valid = RequestValidator(settings.twilio_auth_token).validate(url, params, signature)
    if not valid:
        logger.warning(f"refused {path}: invalid X-Twilio-Signature")
    return bool(valid)


def websocket_caller_allowed(websocket: WebSocket, settings: ServerSettings) -> bool:
    """The same rule for the WebSocket upgrade; Twilio signs wss://HOST/path, no params."""
    client = websocket.client.host if websocket.client else None
    if not settings.twilio_signatures_required:
        return is_loopback(client)
    url = websocket_url(settings.public_url or "", websocket.url.path)
    if websocket.url.query:
        url += f"?{websocket.url.query}"
    return signature_valid(websocket.headers, settings, url, {}, websocket.url.path)


def voice_twiml(settings: ServerSettings, request_url: str, form: dict[str, str]) -> str:
    """TwiML that connects the call to our Media Streams endpoint."""
    base = _public_base(settings, request_url)
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(
        url=websocket_url(base, STREAM_PATH), status_callback=base + STATUS_PATH
    )
    # Only what the stream needs, and no personal data (the caller's number stays out).
    for name in ("CallSid", "Direction"):
        if form.get(name):
            stream.parameter(name=name, value=form[name])
    response.append(connect)
    return str(response)


def busy_twiml(message: str | None = None) -> str:
    """The answer while the server takes no call (starting, draining, at VOICEBOT_MAX_CALLS):
    Twilio plays a busy signal; with VOICEBOT_BUSY_MESSAGE, it reads that (XML-escaped) and
    hangs up instead."""
    response = VoiceResponse()
    if message:
        response.say(message)
        response.hangup()
    else:
        response.reject(reason="busy")
    return str(response)


@dataclass(frozen=True)
class StreamStart:
    stream_sid: str
    call_sid: str
    account_sid: str
    custom_parameters: dict[str, Any]
    encoding: str
    sample_rate: int
    received_at: float = field(default_factory=time.monotonic)  # the call's set-up starts here


class HandshakeError(ValueError):
    """The stream did not open as Twilio's protocol says it does."""

    def __init__(self, message: str, call_sid: str | None = None):
        super().__init__(message)
        self.call_sid = call_sid  # when the `start` named its call, for the log line


def parse_start(message: dict[str, Any]) -> StreamStart:
    start = message.get("start")
    if not isinstance(start, dict):
        raise HandshakeError("'start' event without a start object")
    stream_sid = message.get("streamSid") or start.get("streamSid")
    call_sid = start.get("callSid")
    if not isinstance(call_sid, str) or not call_sid:
        raise HandshakeError("'start' event without callSid")
    call_sid = call_sid[:64]
    if not isinstance(stream_sid, str) or not stream_sid:
        raise HandshakeError("'start' event without streamSid", call_sid)
    # Any JSON may stand where Twilio puts its media format: refuse what is not it.
    media_format = start.get("mediaFormat") or {}
    if not isinstance(media_format, dict):
        raise HandshakeError("'start' event with a malformed mediaFormat", call_sid)
    encoding = media_format.get("encoding", "audio/x-mulaw")
    try:
        rate = int(media_format.get("sampleRate", PHONE_SAMPLE_RATE))
    except (TypeError, ValueError, OverflowError):
        raise HandshakeError("'start' event with a malformed sampleRate", call_sid) from None
    if encoding != "audio/x-mulaw" or rate != PHONE_SAMPLE_RATE:
        raise HandshakeError(
            f"unsupported media format {repr(encoding)[:40]} at {rate} Hz"[:120], call_sid
        )
    params = start.get("customParameters") or {}
    return StreamStart(
        stream_sid=stream_sid,
        call_sid=call_sid,
        account_sid=str(start.get("accountSid") or ""),
        custom_parameters=params if isinstance(params, dict) else {},
        encoding=encoding,
        sample_rate=rate,
    )


async def read_start(websocket: WebSocket) -> StreamStart:
    """Read `connected` and `start`; anything else first is a protocol error."""
    for _ in range(MAX_HANDSHAKE_MESSAGES):
        received = await asyncio.wait_for(websocket.receive(), START_TIMEOUT_SECS)
        if received["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(received.get("code", 1000))
        text = received.get("text")
        if text is None:  # receive_text() would raise KeyError on a binary message
            raise HandshakeError("binary message before 'start'")
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            raise HandshakeError("message is not JSON") from None
        if not isinstance(message, dict):
            raise HandshakeError("message is not a JSON object")
        event = message.get("event")
        if event == "connected":
            continue
        if event == "start":
            return parse_start(message)
        raise HandshakeError(f"expected 'start', got {repr(event)[:40]}")
    raise HandshakeError("no 'start' event")


class GuardedTwilioSerializer(TwilioFrameSerializer):
    """Twilio's serializer, but one malformed frame is dropped instead of ending the call, and
    the caller's audio is handed on in INPUT_FRAME_MS frames.

    Pipecat's input transport stops reading the socket at the first exception a frame raises
    (invalid base64, a JSON array instead of an object, ...); here the frame is logged and
    skipped, and the call goes on.
    """

    _bad_frames = 0

    def __init__(self, *args: Any, input_frame_ms: int = INPUT_FRAME_MS, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._frame_bytes = PHONE_SAMPLE_RATE * 2 * input_frame_ms // 1000
        self._pending = bytearray()

    async def deserialize(self, data: str | bytes) -> Frame | None:
        try:
            # Parsed here first: Pipecat's serializer logs each frame that is not JSON in full,
            # which would let a caller write whatever it likes (newlines too) into the log.
            if not isinstance(json.loads(data), dict):
                raise TypeError("not a JSON object")
            frame = await super().deserialize(data)
        except Exception as exc:
            self._bad_frames += 1
            if self._bad_frames <= 5 or self._bad_frames % 500 == 0:
                logger.warning(
                    f"dropped malformed Twilio frame #{self._bad_frames}: {type(exc).__name__}"
                )
            return None
        if not isinstance(frame, InputAudioRawFrame):
            return frame
        self._pending += frame.audio
        if len(self._pending) < self._frame_bytes:
            return None
        audio, self._pending = bytes(self._pending), bytearray()
        return InputAudioRawFrame(audio=audio, num_channels=1, sample_rate=frame.sample_rate)

    async def _hang_up_call(self) -> None:
        """Pipecat's REST hang-up (it logs error answers itself), bounded in time: the media
        stream closes right after it, which ends the call on Twilio's side either way."""
        try:
            await asyncio.wait_for(super()._hang_up_call(), HANG_UP_TIMEOUT_SECS)
        except TimeoutError:
            logger.error(
                f"Twilio REST hang-up got no answer in {HANG_UP_TIMEOUT_SECS:.0f} s; "
                "closing the media stream ends the call"
            )


def _serializer(start: StreamStart, settings: ServerSettings) -> TwilioFrameSerializer:
    hang_up = settings.twilio_auth_token is not None and bool(start.account_sid)
    return GuardedTwilioSerializer(
        stream_sid=start.stream_sid,
        call_sid=start.call_sid,
        account_sid=start.account_sid or None,
        auth_token=settings.twilio_auth_token,
        base_url=settings.twilio_api_base_url,
        params=TwilioFrameSerializer.InputParams(
            twilio_sample_rate=PHONE_SAMPLE_RATE,
            sample_rate=PHONE_SAMPLE_RATE,
            auto_hang_up=hang_up,
        ),
    )


async def serve_media_stream(
    websocket: WebSocket,
    settings: ServerSettings,
    loaded: LoadedPipeline,
    calls: CallRegistry,
    admission: Admission | None = None,
) -> None:
    """One phone call, from the WebSocket upgrade to hang-up."""
    if not websocket_caller_allowed(websocket, settings):
        logger.warning("refused Twilio media stream: signature or origin not accepted")
        await websocket.close(code=1008)  # before accept(): answered as HTTP 403
        return
    # No rate limit here: the call's webhook was the rate-limited request.
    refusal = admission.check(None, rate_limit=False) if admission is not None else None
    if refusal is not None:
        logger.warning(f"refused Twilio media stream: {refusal.reason}")
        if refusal.reason == "capacity":
            await websocket.accept()  # so that Twilio sees 1013 (try again later)
        # Starting or draining: closed before accept(), answered as HTTP 403 (as ever).
        await websocket.close(code=1013, reason=refusal.detail)
        return
    with calls.reserve():  # counted against VOICEBOT_MAX_CALLS from here
        await _serve_admitted(websocket, settings, loaded, calls)


async def _serve_admitted(
    websocket: WebSocket, settings: ServerSettings, loaded: LoadedPipeline, calls: CallRegistry
) -> None:
    await websocket.accept()
    try:
        start = await read_start(websocket)
    except (HandshakeError, TimeoutError, ValueError) as exc:
        call_sid = exc.call_sid if isinstance(exc, HandshakeError) else None
        with logger.contextualize(**({"call_id": call_sid} if call_sid else {})):
            logger.warning(f"Twilio stream refused: {str(exc)[:120]}")
        await websocket.close(code=1008, reason=str(exc)[:120])
        return
    except WebSocketDisconnect:
        return

    call = CallInfo(
        call_id=start.call_sid,
        transport="twilio",
        audio_in_sample_rate=PHONE_SAMPLE_RATE,
        audio_out_sample_rate=PHONE_SAMPLE_RATE,
        metadata={"stream_sid": start.stream_sid},
        pipeline=loaded.config.name,
        setup_started=start.received_at,
    )
    with logger.contextualize(call_id=call.call_id):
        try:
            transport = FastAPIWebsocketTransport(
                websocket=websocket,
                params=FastAPIWebsocketParams(
                    audio_in_enabled=True,
                    audio_out_enabled=True,
                    add_wav_header=False,
                    serializer=_serializer(start, settings),
                ),
            )
            session = CallSession(loaded, call, transport, rtvi=False)
        except Exception as exc:
            logger.exception(f"could not set up the call: {type(exc).__name__}")
            await websocket.close(code=1011)
            return

        @transport.event_handler("on_client_disconnected")
        async def _on_disconnected(_transport: Any, _client: Any) -> None:
            await session.cancel()

        await session.greet()
        await calls.run(session)


def log_status_callback(form: dict[str, str]) -> None:
    """Call and stream status callbacks: logged by call, never with the caller's number."""
    call_sid = form.get("CallSid", "-")
    status = form.get("CallStatus") or form.get("StreamEvent") or "unknown"
    detail = form.get("StreamError") or form.get("ErrorCode") or ""
    with logger.contextualize(call_id=call_sid):
        logger.info(f"Twilio status callback: {status}{f' ({detail})' if detail else ''}")
