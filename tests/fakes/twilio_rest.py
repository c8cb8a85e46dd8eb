"""A local stand-in for Twilio's REST API: the Calls resource, as the hang-up uses it.

`POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json` with HTTP basic auth
(AccountSid:AuthToken) and form `Status=completed` answers the call resource JSON, as Twilio does;
wrong credentials get 401 with Twilio's error body (code 20003), an unknown call 404 (20404).
`faults` injects a delay, an HTTP error (Twilio's error body, code 20500) or a stall.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import Faults, sleep_ms


@dataclass
class CallUpdate:
    account_sid: str
    call_sid: str
    form: dict[str, str]
    authorized: bool
    at: float


@dataclass
class FakeTwilioRest:
    """Records every Calls update; `auth_token` is what basic auth must carry."""

    auth_token: str
    known_calls: set[str] | None = None  # None: every CallSid exists
    updates: list[CallUpdate] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    _runner: web.AppRunner | None = None
    url: str = ""
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    def add_routes(self, app: web.Application) -> None:
        """Serve the Calls resource on `app` (to share a port with the other fakes)."""
        app.router.add_post(
            "/2010-04-01/Accounts/{account_sid}/Calls/{call_sid}.json", self._update_call
        )

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        self.add_routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        self.url = f"http://{host}:{sockets[0].getsockname()[1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for_update(self, timeout: float) -> CallUpdate:
        await asyncio.wait_for(self._event.wait(), timeout)
        return self.updates[-1]

    def _authorized(self, request: web.Request, account_sid: str) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == account_sid and password == self.auth_token

    async def _update_call(self, request: web.Request) -> web.Response:
        account_sid = request.match_info["account_sid"]
        call_sid = request.match_info["call_sid"]
        form = {key: str(value) for key, value in (await request.post()).items()}
        authorized = self._authorized(request, account_sid)
        self.updates.append(CallUpdate(account_sid, call_sid, form, authorized, time.monotonic()))
        self._event.set()
        while self.faults.stall:  # no answer until the fault is lifted
            await asyncio.sleep(0.05)
        await sleep_ms(self.faults.first_byte_ms)
        failure = self.faults.take_http_failure()
        if failure is not None:
            return _error(failure, 20500, "An internal server error has occurred")
        if not authorized:
            return _error(401, 20003, "Authenticate")
        if self.known_calls is not None and call_sid not in self.known_calls:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        return web.json_response(_call_resource(account_sid, call_sid, form))


def _error(status: int, code: int, message: str) -> web.Response:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.json_response(body, status=status)


def _call_resource(account_sid: str, call_sid: str, form: dict[str, str]) -> dict[str, Any]:
    return {
        "sid": call_sid,
        "account_sid": account_sid,
        "status": form.get("Status", "in-progress"),
        "direction": "inbound",
        "api_version": "2010-04-01",
        "uri": f"/2010-04-01/Accounts/{account_sid}/Calls/{call_sid}.json",
    }
