"""SmallWebRTC's request handler with TURN credentials minted for each new peer connection.

Pipecat's handler holds one static ICE server list and hands it to every new
`SmallWebRTCConnection`; TURN REST credentials expire, so a list minted at start-up would stop
working after the TTL. This handler replaces the list (`update_ice_servers`) right before each
offer is handled: the connection it creates gets credentials valid for the TTL from now
(user "bot"). Nothing awaits between the update and the connection's creation, so concurrent
offers cannot swap lists under each other. The TTL should cover the longest call: the peer
connection keeps its credentials for its lifetime.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pipecat.transports.smallwebrtc.request_handler import (
    SmallWebRTCRequest,
    SmallWebRTCRequestHandler,
)

from bot.turn import TurnConfig, ice_servers

BOT_TURN_USER = "bot"


class TurnRequestHandler(SmallWebRTCRequestHandler):
    def __init__(self, turn: TurnConfig, **kwargs: Any) -> None:
        super().__init__(ice_servers=ice_servers(turn, BOT_TURN_USER), **kwargs)
        self._turn = turn

    async def handle_web_request(
        self,
        request: SmallWebRTCRequest,
        webrtc_connection_callback: Callable[[Any], Awaitable[None]],
    ) -> dict[str, str] | None:
        self.update_ice_servers(ice_servers(self._turn, BOT_TURN_USER))
        return await super().handle_web_request(request, webrtc_connection_callback)
