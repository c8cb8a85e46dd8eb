"""The hosted edge: calls through Daily's SFU (Pipecat's DailyTransport).

`POST /api/daily/start` creates a private, short-lived Daily room (at most two participants,
everyone ejected when it expires) and two meeting tokens through Daily's REST API: an owner
token the bot joins with, and a user token that only lets the caller in during the join window.
The bot joins at once and greets the first participant; the call ends when that participant
leaves, when nobody joins within the window, or when the room expires. The room is deleted
when the call ends.

Audio comes in at 16 kHz and goes out at 24 kHz, as on SmallWebRTC. The REST calls go through
Pipecat's `DailyRESTHelper`; the API key stays in the `Authorization` header and never reaches
a log line or a response.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from fastapi import HTTPException
from loguru import logger
from pipecat.transports.base_transport import BaseTransport
from pipecat.transports.daily.transport import DailyParams, DailyTransport
from pipecat.transports.daily.utils import (
    DailyMeetingTokenParams,
    DailyMeetingTokenProperties,
    DailyRESTHelper,
    DailyRoomParams,
    DailyRoomProperties,
)

from bot.call import CallInfo, new_call_id
from bot.calls import CallRegistry
from bot.config import LoadedPipeline
from bot.pipeline import CallSession
from bot.settings import ServerSettings

BOT_NAME = "voicebot"
USER_NAME = "caller"
DAILY_IN_SAMPLE_RATE = 16000
DAILY_OUT_SAMPLE_RATE = 24000
JOIN_WINDOW_SECS = 180.0
MAX_PARTICIPANTS = 2  # the bot and one caller

TransportFactory = Callable[[str, str, DailyParams], BaseTransport]


def daily_transport(room_url: str, token: str, params: DailyParams) -> BaseTransport:
    """The real transport: the bot joins `room_url` through daily-python."""
    return DailyTransport(room_url, token, BOT_NAME, params)


def transport_params() -> DailyParams:
    return DailyParams(
        audio_in_enabled=True,
        audio_out_enabled=True,
        audio_in_sample_rate=DAILY_IN_SAMPLE_RATE,
        audio_out_sample_rate=DAILY_OUT_SAMPLE_RATE,
        camera_out_enabled=False,
    )


class DailyAPIError(Exception):
    """Daily's REST API failed. The message is safe to log and to show: it holds no key."""


class DailyJoinError(RuntimeError):
    """The bot could not join its Daily room."""


@dataclass(frozen=True)
class DailyRoom:
    name: str
    url: str
    expires_at: int
    bot_token: str
    user_token: str


class DailyRooms:
    """Rooms and meeting tokens through Daily's REST API (Pipecat's `DailyRESTHelper`)."""

    def __init__(self, api_key: str, api_url: str, *, timeout_secs: float, expiry_secs: int):
        self._api_key = api_key
        self._api_url = api_url
        self._timeout = aiohttp.ClientTimeout(total=timeout_secs)
        self._expiry_secs = expiry_secs
        self._session: aiohttp.ClientSession | None = None

    def _helper(self) -> DailyRESTHelper:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return DailyRESTHelper(
            daily_api_key=self._api_key, daily_api_url=self._api_url, aiohttp_session=self._session
        )

    async def create(self, join_window_secs: float) -> DailyRoom:
        """A private room for one call, an owner token for the bot and one for the caller."""
        helper = self._helper()
        now = time.time()
        expires_at = int(now + self._expiry_secs)
        params = DailyRoomParams(
            privacy="private",
            properties=DailyRoomProperties(
                exp=expires_at,
                eject_at_room_exp=True,
                max_participants=MAX_PARTICIPANTS,
                enable_prejoin_ui=False,
                enable_chat=False,
                start_video_off=True,
            ),
        )
        room = await self._call("creating the room", helper.create_room(params))
        try:
            bot_token = await self._call(
                "creating the bot's meeting token",
                helper.get_token(
                    room.url,
                    expiry_time=expires_at - now,
                    owner=True,
                    params=_token_params(BOT_NAME),
                ),
            )
            user_token = await self._call(
                "creating the caller's meeting token",
                helper.get_token(
                    room.url,
                    expiry_time=min(join_window_secs, expires_at - now),
                    owner=False,
                    params=_token_params(USER_NAME),
                ),
            )
        except DailyAPIError:
            await self.delete(room.name)
            raise
        for what, token in (("bot", bot_token), ("caller", user_token)):
            if not isinstance(token, str) or not token:
                await self.delete(room.name)
                raise DailyAPIError(f"Daily's REST API returned no {what} meeting token")
        return DailyRoom(room.name, room.url, expires_at, bot_token, user_token)

    async def delete(self, name: str) -> None:
        """Delete a room; best effort (it expires anyway)."""
        try:
            await self._call("deleting the room", self._helper().delete_room_by_name(name))
        except DailyAPIError as exc:
            logger.warning(f"Daily room {name} not deleted: {exc}")
        else:
            logger.info(f"Daily room {name} deleted")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, step: str, request: Any) -> Any:
        """Await one REST request; every way it can fail becomes a DailyAPIError."""
        try:
            return await request
        except TimeoutError:
            reason = "timed out"
        except aiohttp.ClientError as exc:
            reason = f"unreachable or invalid answer ({type(exc).__name__})"
        except Exception as exc:
            status = re.search(r"status: (\d{3})", str(exc))
            reason = f"answered HTTP {status.group(1)}" if status else "returned an invalid answer"
            logger.debug(f"Daily REST API while {step}: {self._scrub(str(exc))}")
        raise DailyAPIError(f"Daily's REST API {reason} while {step}")

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "[redacted]")[:300]


def _token_params(user_name: str) -> DailyMeetingTokenParams:
    # room_name, exp, is_owner and eject_at_token_exp are set by DailyRESTHelper.get_token.
    return DailyMeetingTokenParams(
        properties=DailyMeetingTokenProperties(user_name=user_name, start_video_off=True)
    )


class DailyCallSession(CallSession):
    """A call in a Daily room: knows whether the bot got in and whether anyone joined."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.joined = False
        self.participant_joined = False
        self.join_error: str | None = None

    @property
    def ending(self) -> bool:
        return self._ending

    async def run(self) -> None:
        await super().run()
        if self.join_error is not None:
            # Raised so the registry logs and counts the call as failed.
            raise DailyJoinError(self.join_error)


class DailyEdge:
    """Creates a room per call and runs the bot in it; `transport_factory` is swappable."""

    def __init__(
        self,
        settings: ServerSettings,
        loaded: LoadedPipeline,
        calls: CallRegistry,
        *,
        transport_factory: TransportFactory = daily_transport,
        join_window_secs: float = JOIN_WINDOW_SECS,
    ):
        self._loaded = loaded
        self._calls = calls
        self.transport_factory = transport_factory
        self.join_window_secs = join_window_secs
        self._rooms = (
            DailyRooms(
                settings.daily_api_key,
                settings.daily_api_url,
                timeout_secs=settings.daily_api_timeout_secs,
                expiry_secs=settings.daily_room_expiry_secs,
            )
            if settings.daily_api_key
            else None
        )
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def available(self) -> bool:
        return self._rooms is not None

    def require_configured(self) -> None:
        if self._rooms is None:
            raise HTTPException(503, "Daily is not configured on this server: set DAILY_API_KEY")

    async def start(self) -> dict[str, str]:
        """Create a room, start the bot in it, and hand the caller the room URL and token."""
        self.require_configured()
        assert self._rooms is not None
        call_id = new_call_id()
        with logger.contextualize(call_id=call_id):
            try:
                room = await self._rooms.create(self.join_window_secs)
            except DailyAPIError as exc:
                logger.warning(f"no Daily room for this call: {exc}")
                raise HTTPException(502, str(exc)) from None
            try:
                session = self._build_session(call_id, room)
            except Exception as exc:
                logger.error(f"could not set up the Daily call: {type(exc).__name__}: {exc}")
                await self._rooms.delete(room.name)
                raise HTTPException(500, "could not start the bot for this room") from None
            logger.info(f"Daily room {room.name} created, bot joining")
        task = asyncio.create_task(self._run_call(session, room), name=f"daily:{call_id}")
        self._calls.hand_over(task)  # counted against VOICEBOT_MAX_CALLS until it runs
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return {"room_url": room.url, "token": room.user_token, "call_id": call_id}

    async def close(self) -> None:
        if self._rooms is not None:
            await self._rooms.close()

    def _build_session(self, call_id: str, room: DailyRoom) -> DailyCallSession:
        call = CallInfo(
            call_id=call_id,
            transport="daily",
            audio_in_sample_rate=DAILY_IN_SAMPLE_RATE,
            audio_out_sample_rate=DAILY_OUT_SAMPLE_RATE,
            metadata={"room_name": room.name},
            pipeline=self._loaded.config.name,
        )
        transport = self.transport_factory(room.url, room.bot_token, transport_params())
        session = DailyCallSession(self._loaded, call, transport, rtvi=True)

        @transport.event_handler("on_joined")
        async def _on_joined(_transport: Any, _data: Any) -> None:
            session.joined = True
            logger.info("bot joined the Daily room")

        @transport.event_handler("on_error")
        async def _on_error(_transport: Any, error: Any) -> None:
            if session.joined or session.join_error is not None:
                return  # errors after joining are Pipecat's non-fatal ErrorFrames
            session.join_error = str(error)[:300]
            logger.error("bot could not join the Daily room: ending the call")
            await session.cancel()

        @transport.event_handler("on_first_participant_joined")
        async def _on_first_participant(_transport: Any, _participant: Any) -> None:
            session.participant_joined = True
            await session.greet()

        @transport.event_handler("on_participant_left")
        async def _on_participant_left(_transport: Any, _participant: Any, reason: Any) -> None:
            if not session.ending:
                logger.info(f"caller left the Daily room ({reason})")
                await session.cancel()

        @transport.event_handler("on_call_state_updated")
        async def _on_call_state(_transport: Any, state: Any) -> None:
            if state == "left" and not session.ending:
                logger.info("bot is out of the Daily room (room expired or ejected)")
                await session.cancel()

        return session

    async def _run_call(self, session: DailyCallSession, room: DailyRoom) -> None:
        watchdog = asyncio.create_task(self._end_if_nobody_joins(session))
        try:
            await self._calls.run(session)
        finally:
            watchdog.cancel()
        if self._rooms is not None:
            with logger.contextualize(call_id=session.call.call_id):
                await self._rooms.delete(room.name)

    async def _end_if_nobody_joins(self, session: DailyCallSession) -> None:
        await asyncio.sleep(self.join_window_secs)
        if not session.participant_joined and not session.ending:
            with logger.contextualize(call_id=session.call.call_id):
                logger.info(f"nobody joined the Daily room in {self.join_window_secs:.0f}s")
            await session.cancel()
