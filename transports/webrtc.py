"""The app edge: self-hosted WebRTC with Pipecat's SmallWebRTC (offer/answer + trickle ICE).

Request and response bodies keep SmallWebRTC's JSON shape, so Pipecat's own client SDKs can
call `/api/offer` unchanged. Audio comes in at 16 kHz (what Silero, smart-turn and Whisper
read) and goes out at 24 kHz; the WebRTC stack carries Opus at 48 kHz on the wire.
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar
from typing import Any, Literal

from fastapi import HTTPException
from loguru import logger
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.request_handler import (
    IceCandidate,
    SmallWebRTCPatchRequest,
    SmallWebRTCRequest,
    SmallWebRTCRequestHandler,
)
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pydantic import AliasChoices, BaseModel, Field

from bot.call import CallInfo, new_call_id
from bot.calls import CallRegistry
from bot.config import LoadedPipeline
from bot.metrics import ICE_STATE_TRANSITIONS
from bot.pipeline import CallSession
from bot.settings import DEFAULT_WEBRTC_CONNECT_TIMEOUT_SECS
from bot.turn import TurnConfig
from bot.webrtc_auth import Principal
from bot.webrtc_jitter import use_server_jitter_buffer
from transports.webrtc_turn import TurnRequestHandler

WEBRTC_IN_SAMPLE_RATE = 16000
WEBRTC_OUT_SAMPLE_RATE = 24000
MAX_SDP_BYTES = 64 * 1024

# The call a new offer starts: its id, when the offer arrived and who sent it (read by the call's
# builder, which Pipecat's handler calls back within the same request).
_NEW_CALL: ContextVar[tuple[str, float, str]] = ContextVar("new_webrtc_call")
UNKNOWN_PC_ID = "unknown pc_id"


class OfferBody(BaseModel):
    """`POST /api/offer`, as Pipecat's SmallWebRTC clients send it."""

    sdp: str = Field(min_length=1, max_length=MAX_SDP_BYTES)
    type: Literal["offer"]
    pc_id: str | None = Field(default=None, max_length=128)
    restart_pc: bool | None = None
    # Pipecat's client-js sends `requestData` (camelCase); its Python clients `request_data`.
    request_data: dict[str, Any] | None = Field(
        default=None, validation_alias=AliasChoices("request_data", "requestData")
    )


class CandidateBody(BaseModel):
    candidate: str = Field(max_length=1024)
    sdp_mid: str | None = Field(default=None, max_length=64)
    sdp_mline_index: int | None = Field(default=None, ge=0, le=64)


class PatchBody(BaseModel):
    """`PATCH /api/offer`: trickled ICE candidates for an existing peer connection."""

    pc_id: str = Field(min_length=1, max_length=128)
    candidates: list[CandidateBody] = Field(max_length=64)


def _looks_like_sdp(sdp: str) -> bool:
    return sdp.lstrip().startswith("v=0") and "m=audio" in sdp


def _output_audio_track(transport: SmallWebRTCTransport) -> Any:
    """Pipecat's audio track to the peer (None before the peer connects)."""
    return getattr(getattr(transport, "_client", None), "_audio_output_track", None)


def _release_audio_writes(track: Any) -> None:
    """Let go of the bot's audio writes that wait for a peer that has gone.

    Each write waits until the peer has read its audio. A caller who hangs up while the bot is
    speaking leaves one write waiting for good; when the call is already ending (the goodbye is
    playing, the EndFrame is queued), Pipecat's cancel waits behind it, and only its write
    timeout (10 s) ends the call, holding the call's place that long. The audio is dropped."""
    queue = getattr(track, "_chunk_queue", None)
    while queue:
        _chunk, future = queue.popleft()
        if future is not None and not future.done():
            future.set_result(False)


class WebRTCEdge:
    """Answers offers and starts one call per new peer connection."""

    def __init__(
        self,
        loaded: LoadedPipeline,
        calls: CallRegistry,
        turn: TurnConfig | None = None,
        connect_timeout_secs: float = DEFAULT_WEBRTC_CONNECT_TIMEOUT_SECS,
    ):
        """`turn` (`settings.turn`): the server's peer connections also gather relay candidates
        on that TURN server, with credentials minted per connection. `connect_timeout_secs`: a
        peer that has not connected by then is dropped and its call ended (Pipecat's own limit
        is 60 s, a minute of a call's place held by an offer that will never connect)."""
        self._loaded = loaded
        self._calls = calls
        self._connect_timeout_secs = connect_timeout_secs
        self._closing: set[asyncio.Future[Any]] = set()  # peers being dropped (held till done)
        self._handler = (
            TurnRequestHandler(turn) if turn is not None else SmallWebRTCRequestHandler()
        )
        self._call_ids: dict[str, str] = {}  # pc_id -> call_id, for the PATCHes' log lines
        self._owners: dict[str, str] = {}  # pc_id -> the principal that opened it, while live
        use_server_jitter_buffer()

    def _require_owner(self, pc_id: str, caller: Principal, what: str) -> None:
        """Only the principal that opened a peer connection may touch it; to anyone else it
        is as unknown as an id that never existed (404 either way: ids cannot be probed)."""
        owner = self._owners.get(pc_id)
        if owner == caller.id:
            return
        caller.require_fresh()  # an expired token owns its own calls and nothing else
        with logger.contextualize(call_id=self._call_ids.get(pc_id, "-")):
            reason = "unknown pc_id" if owner is None else "pc_id opened by another caller"
            logger.info(f"refused {what}: {reason}")
        raise HTTPException(404, UNKNOWN_PC_ID)

    async def offer(self, body: OfferBody, caller: Principal) -> dict[str, str]:
        if body.pc_id is not None:
            self._require_owner(body.pc_id, caller, "renegotiation offer")
        if not _looks_like_sdp(body.sdp):
            raise HTTPException(400, "sdp is not an SDP offer with an audio section")
        request = SmallWebRTCRequest(
            sdp=body.sdp,
            type=body.type,
            pc_id=body.pc_id,
            restart_pc=body.restart_pc,
            request_data=body.request_data,
        )
        call_id = self._call_ids.get(body.pc_id or "") or new_call_id()
        _NEW_CALL.set((call_id, time.monotonic(), caller.id))
        # Everything the offer starts (aiortc's ICE and DTLS tasks included) logs with the call_id.
        with logger.contextualize(call_id=call_id):
            return await self._answer(request)

    async def _answer(self, request: SmallWebRTCRequest) -> dict[str, str]:
        try:
            answer = await self._handler.handle_web_request(request, self._start_call)
        except HTTPException:
            raise
        except Exception as exc:
            logger.warning(f"WebRTC offer refused: {type(exc).__name__}: {exc}")
            raise HTTPException(400, f"could not answer the offer: {type(exc).__name__}") from None
        if answer is None:
            raise HTTPException(500, "no SDP answer was produced")
        return answer

    async def patch(self, body: PatchBody, caller: Principal) -> None:
        self._require_owner(body.pc_id, caller, "PATCH /api/offer")
        request = SmallWebRTCPatchRequest(
            pc_id=body.pc_id,
            candidates=[
                IceCandidate(
                    candidate=c.candidate, sdp_mid=c.sdp_mid, sdp_mline_index=c.sdp_mline_index
                )
                for c in body.candidates
            ],
        )
        try:
            with logger.contextualize(call_id=self._call_ids.get(body.pc_id, "-")):
                await self._handler.handle_patch_request(request)
        except HTTPException as exc:
            if exc.status_code == 404:  # closed while we still knew it: the same clean answer
                raise HTTPException(404, UNKNOWN_PC_ID) from None
            raise
        except Exception as exc:
            logger.warning(f"ICE candidate refused: {type(exc).__name__}: {exc}")
            raise HTTPException(400, f"invalid ICE candidate: {type(exc).__name__}") from None

    async def close(self) -> None:
        await self._handler.close()

    async def _start_call(self, connection: SmallWebRTCConnection) -> None:
        owner = _NEW_CALL.get(("", 0.0, ""))[2]
        try:
            task = self._calls.start(self._build_session(connection))
            if owner:
                self._owners[connection.pc_id] = owner
            task.add_done_callback(lambda _: self._forget(connection.pc_id))
        except Exception as exc:
            logger.exception(f"could not set up the call: {type(exc).__name__}")
            await connection.disconnect()
            raise

    def _forget(self, pc_id: str) -> None:
        self._call_ids.pop(pc_id, None)
        self._owners.pop(pc_id, None)

    def _build_session(self, connection: SmallWebRTCConnection) -> CallSession:
        call_id, offered_at, _ = _NEW_CALL.get((new_call_id(), time.monotonic(), ""))
        call = CallInfo(
            call_id=call_id,
            transport="webrtc",
            audio_in_sample_rate=WEBRTC_IN_SAMPLE_RATE,
            audio_out_sample_rate=WEBRTC_OUT_SAMPLE_RATE,
            metadata={"pc_id": connection.pc_id},
            pipeline=self._loaded.config.name,
            setup_started=offered_at,
        )
        self._call_ids[connection.pc_id] = call_id
        self._count_ice_states(connection)
        transport = SmallWebRTCTransport(
            webrtc_connection=connection,
            params=TransportParams(
                audio_in_enabled=True,
                audio_out_enabled=True,
                audio_in_sample_rate=WEBRTC_IN_SAMPLE_RATE,
                audio_out_sample_rate=WEBRTC_OUT_SAMPLE_RATE,
            ),
        )
        session = CallSession(self._loaded, call, transport, rtvi=True)

        deadline = asyncio.get_running_loop().call_later(
            self._connect_timeout_secs, self._give_up, connection, call_id
        )

        output_track: list[Any] = []  # the bot's audio track, once the peer is connected

        @transport.event_handler("on_client_connected")
        async def _on_connected(_transport: Any, _client: Any) -> None:
            deadline.cancel()
            output_track[:] = [_output_audio_track(transport)]
            await session.greet()

        @transport.event_handler("on_client_disconnected")
        async def _on_disconnected(_transport: Any, _client: Any) -> None:
            deadline.cancel()
            if output_track:
                _release_audio_writes(output_track[0])
            await session.cancel()

        return session

    def _give_up(self, connection: SmallWebRTCConnection, call_id: str) -> None:
        with logger.contextualize(call_id=call_id):
            logger.warning(
                f"WebRTC peer did not connect within {self._connect_timeout_secs:g}s: "
                "ending the call"
            )
            task = asyncio.ensure_future(connection.disconnect())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _count_ice_states(self, connection: SmallWebRTCConnection) -> None:
        """Count each ICE connection state the peer connection goes through."""
        pc = connection.pc
        pipeline = self._loaded.config.name

        def count(state: str) -> None:
            ICE_STATE_TRANSITIONS.labels(pipeline, state).inc()
            logger.info(f"WebRTC ICE state: {state}")

        if pc.iceConnectionState != "new":  # ICE may have started while the answer was made
            count(pc.iceConnectionState)

        @pc.on("iceconnectionstatechange")
        def _on_ice_state() -> None:
            count(pc.iceConnectionState)
