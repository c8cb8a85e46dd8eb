"""A local stand-in for Daily's REST API (rooms and meeting tokens), and a stand-in transport.

`FakeDailyRest` serves, under `/v1/` as `https://api.daily.co/v1` does (so `DAILY_API_URL` is
`http://127.0.0.1:PORT/v1`):

- `POST /v1/rooms` `{name?, privacy?, properties?}` → Daily's room object: `id`, `name`,
  `api_created`, `privacy`, `url` (`https://<domain>.daily.co/<name>`), `created_at`
  (ISO 8601), `config` (the properties given; `exp`/`nbf` as integer seconds).
- `GET /v1/rooms/{name}` → the room object; `DELETE /v1/rooms/{name}` →
  `{"deleted": true, "name": ...}`; an unknown room is 404 `{"error": "not-found", ...}`.
- `POST /v1/meeting-tokens` `{properties: {room_name, is_owner, exp, user_name, ...}}` →
  `{"token": "<JWT>"}`, an HS256 JWT signed with the API key (as Daily's self-signed tokens
  are); `tokens` maps each token to the properties it was made with.

Every request needs `Authorization: Bearer <api_key>`, else 401
`{"error": "authentication-error", "info": ...}`; unknown or ill-typed properties are 400
`{"error": "invalid-request-error", "info": ...}`. `log` records each request (method, path,
whether it was authorized, body, outcome; never the header). `faults` (tests/fakes/base.py):
`http_status`/`http_failures` answer that status with Daily's error body, `first_byte_ms`
delays every answer, `drop_after_ms` closes the connection, `stall` never answers; `bad_json`
answers 200 with a body that is not JSON; `token_faults.http_status` fails only token requests
(a room made, then its tokens refused).

`FakeDailyTransports` is a transport factory for `transports.daily.DailyEdge`: each call makes a
`FakeDailyTransport` that records the room URL, token and params it was given, "joins" when
the pipeline starts (or fails to, with `join_error`), lets a test make a participant join or
leave, and keeps the audio the bot sends.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import string
import threading
import time
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from pipecat.frames.frames import OutputAudioRawFrame, StartFrame
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams

from tests.fakes.base import Faults, RequestLog, sleep_ms

T = TypeVar("T")

ROOM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
ROOM_PROPERTIES = {
    "nbf": int,
    "exp": int,
    "max_participants": int,
    "eject_after_elapsed": int,
    "eject_at_room_exp": bool,
    "enable_people_ui": bool,
    "enable_pip_ui": bool,
    "enable_emoji_reactions": bool,
    "enable_hand_raising": bool,
    "enable_prejoin_ui": bool,
    "enable_live_captions_ui": bool,
    "enable_network_ui": bool,
    "enable_noise_cancellation_ui": bool,
    "enable_breakout_rooms": bool,
    "enable_knocking": bool,
    "enable_screenshare": bool,
    "enable_video_processing_ui": bool,
    "enable_chat": bool,
    "enable_shared_chat_history": bool,
    "start_video_off": bool,
    "start_audio_off": bool,
    "owner_only_broadcast": bool,
    "enable_advanced_chat": bool,
    "enable_hidden_participants": bool,
    "enable_mesh_sfu": bool,
    "sfu_switchover": float,
    "enable_adaptive_simulcast": bool,
    "enforce_unique_user_ids": bool,
    "lang": str,
    "meeting_join_hook": str,
    "geo": str,
    "rtmp_geo": str,
    "enable_recording": str,
    "enable_dialout": bool,
    "enable_transcription_storage": bool,
    "recordings_bucket": dict,
    "transcription_bucket": dict,
    "sip": dict,
    "sip_uri": dict,
    "permissions": dict,
}
TOKEN_PROPERTIES = {
    "room_name": str,
    "eject_at_token_exp": bool,
    "eject_after_elapsed": int,
    "nbf": int,
    "exp": int,
    "is_owner": bool,
    "user_name": str,
    "user_id": str,
    "enable_screenshare": bool,
    "start_video_off": bool,
    "start_audio_off": bool,
    "enable_recording": str,
    "enable_prejoin_ui": bool,
    "enable_live_captions_ui": bool,
    "enable_recording_ui": bool,
    "start_cloud_recording": bool,
    "close_tab_on_exit": bool,
    "redirect_on_meeting_exit": str,
    "lang": str,
    "permissions": dict,
    "knocking": bool,
}
TIMESTAMPS = ("exp", "nbf")


class _Refused(Exception):
    def __init__(self, status: int, error: str, info: str):
        super().__init__(info)
        self.status, self.error, self.info = status, error, info


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _check_properties(given: Any, allowed: dict[str, type], what: str) -> dict[str, Any]:
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise _Refused(400, "invalid-request-error", f"{what} properties must be an object")
    checked: dict[str, Any] = {}
    for key, value in given.items():
        kind = allowed.get(key)
        if kind is None:
            raise _Refused(400, "invalid-request-error", f"unknown {what} property '{key}'")
        if key in TIMESTAMPS:
            # Daily documents integers; Pipecat sends floats (time.time() + n): accept both.
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _Refused(400, "invalid-request-error", f"{key} must be a unix timestamp")
            value = int(value)
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _Refused(400, "invalid-request-error", f"{key} must be a number")
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise _Refused(400, "invalid-request-error", f"{key} must be an integer")
        elif not isinstance(value, kind):
            raise _Refused(400, "invalid-request-error", f"{key} must be a {kind.__name__}")
        checked[key] = value
    return checked


class FakeDailyRest:
    """Daily's REST API for rooms and meeting tokens; `api_key` is what Bearer auth must carry."""

    def __init__(
        self, api_key: str, *, domain: str = "voicebot-test", faults: Faults | None = None
    ):
        self.api_key = api_key
        self.domain = domain
        self.faults = faults or Faults()
        self.log = RequestLog()
        self.bad_json = False
        self.token_faults = Faults()  # http failures for /v1/meeting-tokens only
        self.rooms: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.tokens: dict[str, dict[str, Any]] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/rooms", self._create_room)
        app.router.add_get("/v1/rooms/{name}", self._get_room)
        app.router.add_delete("/v1/rooms/{name}", self._delete_room)
        app.router.add_post("/v1/meeting-tokens", self._create_token)

    def tokens_for(self, room_name: str) -> list[dict[str, Any]]:
        """The properties of every token made for a room, in the order they were made."""
        return [props for props in self.tokens.values() if props.get("room_name") == room_name]

    def decode(self, token: str) -> dict[str, Any]:
        """A token's payload, after checking its signature with the API key."""
        head, payload, signature = token.split(".")
        expected = hmac.new(self.api_key.encode(), f"{head}.{payload}".encode(), hashlib.sha256)
        if not hmac.compare_digest(_b64(expected.digest()), signature):
            raise ValueError("bad token signature")
        return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))

    # Handlers

    async def _create_room(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self._new_room)

    async def _get_room(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, lambda _body: self._room(request.match_info["name"]))

    async def _delete_room(self, request: web.Request) -> web.StreamResponse:
        def delete(_body: Any) -> dict[str, Any]:
            name = request.match_info["name"]
            self._room(name)
            del self.rooms[name]
            self.deleted.append(name)
            return {"deleted": True, "name": name}

        return await self._serve(request, delete)

    async def _create_token(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self._new_token)

    # Resources

    def _room(self, name: str) -> dict[str, Any]:
        if name not in self.rooms:
            raise _Refused(404, "not-found", f"room {name} was not found")
        return self.rooms[name]

    def _new_room(self, body: Any) -> dict[str, Any]:
        body = body if body is not None else {}
        if not isinstance(body, dict):
            raise _Refused(400, "invalid-request-error", "request body must be a JSON object")
        alphabet = string.ascii_letters + string.digits
        name = body.get("name") or "".join(secrets.choice(alphabet) for _ in range(20))
        if not isinstance(name, str) or not ROOM_NAME.match(name):
            raise _Refused(400, "invalid-request-error", "name may only use A-Z a-z 0-9 - _")
        if name in self.rooms:
            raise _Refused(400, "invalid-request-error", f"a room named {name} already exists")
        privacy = body.get("privacy", "public")
        if privacy not in ("public", "private"):
            raise _Refused(400, "invalid-request-error", "privacy must be public or private")
        config = _check_properties(body.get("properties"), ROOM_PROPERTIES, "room")
        if "exp" in config and config["exp"] <= time.time():
            raise _Refused(400, "invalid-request-error", "exp must be in the future")
        room = {
            "id": str(uuid.uuid4()),
            "name": name,
            "api_created": True,
            "privacy": privacy,
            "url": f"https://{self.domain}.daily.co/{name}",
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "config": config,
        }
        self.rooms[name] = room
        return room

    def _new_token(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _Refused(400, "invalid-request-error", "request body must be a JSON object")
        props = _check_properties(body.get("properties"), TOKEN_PROPERTIES, "meeting token")
        claims = {
            "r": props.get("room_name"),
            "o": props.get("is_owner", False),
            "u": props.get("user_name"),
            "exp": props.get("exp"),
            "iat": int(time.time()),
            "d": str(uuid.uuid4()),
        }
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64(json.dumps({k: v for k, v in claims.items() if v is not None}).encode())
        signature = hmac.new(self.api_key.encode(), f"{head}.{payload}".encode(), hashlib.sha256)
        token = f"{head}.{payload}.{_b64(signature.digest())}"
        self.tokens[token] = props
        return {"token": token}

    # Plumbing: auth, faults, errors

    async def _serve(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = ValueError
        authorized = request.headers.get("Authorization", "") == f"Bearer {self.api_key}"
        entry = {
            "method": request.method,
            "path": request.path,
            "authorized": authorized,
            "body": None if body is ValueError else body,
        }
        await sleep_ms(self.faults.first_byte_ms)
        drop = self.faults.take_drop()
        if drop is not None:
            await asyncio.sleep(drop)
            self.log.add(**entry, outcome="drop")
            if request.transport is not None:
                request.transport.close()
            return web.Response()
        if self.faults.stall:
            self.log.add(**entry, outcome="stall")
            while request.transport is not None and not request.transport.is_closing():
                await asyncio.sleep(0.05)
            return web.Response()
        try:
            if not authorized:
                raise _Refused(
                    401,
                    "authentication-error",
                    "authorization header missing or does not hold a valid API key",
                )
            if body is ValueError:
                raise _Refused(400, "invalid-request-error", "request body is not valid JSON")
            status = self.faults.take_http_failure()
            if status is None and request.path.endswith("/meeting-tokens"):
                status = self.token_faults.take_http_failure()
            if status is not None:
                raise _Refused(
                    status,
                    "server-error" if status >= 500 else "request-error",
                    f"injected failure {status}",
                )
            result = handler(body)
        except _Refused as refused:
            self.log.add(**entry, outcome=f"http_{refused.status}")
            return web.json_response(
                {"error": refused.error, "info": refused.info}, status=refused.status
            )
        self.log.add(**entry, outcome="ok")
        if self.bad_json:
            return web.Response(text="<html>Bad Gateway</html>", content_type="application/json")
        return web.json_response(result)


class _FakeInput(BaseInputTransport):
    def __init__(self, transport: FakeDailyTransport, params: TransportParams):
        super().__init__(params)
        self._fake = transport

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        await self._fake._join()


class _FakeOutput(BaseOutputTransport):
    def __init__(self, transport: FakeDailyTransport, params: TransportParams):
        super().__init__(params)
        self._fake = transport

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        self._fake.audio_out.extend(frame.audio)
        self._fake.audio_out_rates.add(frame.sample_rate)
        return True


class FakeDailyTransport(BaseTransport):
    """Stands in for Pipecat's DailyTransport: same events, no SFU."""

    EVENTS = (
        "on_joined",
        "on_left",
        "on_error",
        "on_call_state_updated",
        "on_first_participant_joined",
        "on_participant_joined",
        "on_participant_left",
        "on_client_connected",
        "on_client_disconnected",
    )

    def __init__(self, room_url: str, token: str, params: Any, *, join_error: str | None = None):
        super().__init__()
        self.room_url = room_url
        self.token = token
        self.params = params
        self.join_error = join_error
        self.audio_out = bytearray()
        self.audio_out_rates: set[int] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.joined = threading.Event()
        self._input = _FakeInput(self, params)
        self._output = _FakeOutput(self, params)
        self._participant = {"id": "participant-1", "info": {"userName": "caller"}}
        for event in self.EVENTS:
            self._register_event_handler(event)

    def input(self) -> BaseInputTransport:
        return self._input

    def output(self) -> BaseOutputTransport:
        return self._output

    async def _join(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self.join_error is not None:
            await self._call_event_handler(
                "on_error", f"Error joining {self.room_url}: {self.join_error}"
            )
            return
        await self._call_event_handler("on_joined", {"participants": {"local": {"id": "bot"}}})
        self.joined.set()

    async def participant_joins(self) -> None:
        await self._call_event_handler("on_first_participant_joined", self._participant)
        await self._call_event_handler("on_participant_joined", self._participant)
        await self._call_event_handler("on_client_connected", self._participant)

    async def participant_leaves(self, reason: str = "leftCall") -> None:
        await self._call_event_handler("on_participant_left", self._participant, reason)
        await self._call_event_handler("on_client_disconnected", self._participant)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run a coroutine on the loop the pipeline runs on (from a test's thread)."""
        assert self.loop is not None, "the transport has not started"
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


class FakeDailyTransports:
    """A transport factory that records every transport it makes."""

    def __init__(self) -> None:
        self.made: list[FakeDailyTransport] = []
        self.join_error: str | None = None

    def __call__(self, room_url: str, token: str, params: Any) -> FakeDailyTransport:
        transport = FakeDailyTransport(room_url, token, params, join_error=self.join_error)
        self.made.append(transport)
        return transport
