"""HTTP and WebSocket routes, and the server's lifespan. Everything else lives in bot/ and
transports/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Scope

from bot.limits import Admission
from bot.runtime import Runtime
from bot.settings import ServerSettings
from bot.turn import client_ice_servers
from bot.webrtc_auth import Principal, WebRTCAuth
from transports import twilio
from transports.daily import DailyEdge
from transports.page import add_page_routes
from transports.webrtc import OfferBody, PatchBody, WebRTCEdge

PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


async def _webrtc_caller(request: Request) -> Principal:
    """Who sent an `/api/offer` request (401/403 before the body is even read)."""
    auth: WebRTCAuth = request.app.state.webrtc_auth
    return await auth.caller(request)


WebRTCCaller = Annotated[Principal, Depends(_webrtc_caller)]


def _not_traced(scope: Scope) -> bool:
    """Probes and scrapes, and WebSockets: a call's stream would wrap every media message in
    telemetry code for the whole call; its conversation span stands in for it."""
    return scope.get("type") == "websocket" or scope.get("path") in PROBE_PATHS


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    runtime = Runtime(settings or ServerSettings.from_env())
    webrtc = WebRTCEdge(
        runtime.loaded,
        runtime.calls,
        turn=runtime.settings.turn,
        connect_timeout_secs=runtime.settings.webrtc_connect_timeout_secs,
    )
    webrtc_auth = WebRTCAuth(runtime.settings)
    daily = DailyEdge(runtime.settings, runtime.loaded, runtime.calls)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        webrtc_auth.announce()
        try:
            yield
        finally:
            await runtime.stop()
            await webrtc.close()
            await daily.close()

    app = FastAPI(
        title="voicebot",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # 413 for bigger request bodies, before they are read (VOICEBOT_MAX_BODY_BYTES);
        # FastAPI sets no limit unless told.
        max_body_size=runtime.settings.max_body_bytes,
        # FastAPI's own request spans go to the tracer provider bot.tracing installs (if any):
        # one span per HTTP request that starts a call, none per dependency.
        telemetry={
            "exclude": _not_traced,
            "operation_spans": False,
            "metrics": False,
            "logs": False,
            "auto_configure": False,
        },
    )
    app.state.runtime = runtime
    app.state.daily = daily
    app.state.webrtc_auth = webrtc_auth
    if runtime.settings.cors_origins:  # unset: no CORS headers, same-origin pages only
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(runtime.settings.cors_origins),
            allow_methods=["GET", "POST", "PATCH", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            allow_credentials=False,
            max_age=600,
        )

    admission = Admission(runtime)  # the limits (bot/limits.py): one decision for every route
    app.state.admission = admission

    def require_capacity(request: Request) -> None:
        """429 (rate limit) or 503 (starting, draining, at capacity), with Retry-After."""
        refusal = admission.check(request.client.host if request.client else None)
        if refusal is not None:
            raise HTTPException(refusal.status, refusal.detail, headers=refusal.headers)

    add_page_routes(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if runtime.accepting_calls:
            return JSONResponse({"status": "ready", "calls": len(runtime.calls)})
        status = "draining" if runtime.draining else "failed" if runtime.load_error else "starting"
        return JSONResponse({"status": status}, status_code=503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/api/session")
    async def session(request: Request) -> JSONResponse:
        minted = webrtc_auth.mint(request)
        minted["ice_servers"] = client_ice_servers(runtime.settings.turn, str(minted["token"]))
        return JSONResponse(minted, headers={"Cache-Control": "no-store"})

    @app.get("/api/ice-servers")
    async def ice_servers(caller: WebRTCCaller) -> JSONResponse:
        """The ICE servers a WebRTC client uses: TURN credentials minted for this caller
        (VOICEBOT_TURN_*), none without TURN. The same credential as the offer is required."""
        servers = client_ice_servers(runtime.settings.turn, f"{caller.kind}:{caller.id}")
        return JSONResponse({"ice_servers": servers}, headers={"Cache-Control": "no-store"})

    @app.post("/api/offer")
    async def offer(body: OfferBody, caller: WebRTCCaller, request: Request) -> dict[str, str]:
        if body.pc_id is None:
            caller.require_fresh()
            require_capacity(request)
            with runtime.calls.reserve():  # counted against VOICEBOT_MAX_CALLS from here
                return await webrtc.offer(body, caller)
        return await webrtc.offer(body, caller)

    @app.patch("/api/offer")
    async def patch_offer(body: PatchBody, caller: WebRTCCaller) -> dict[str, str]:
        await webrtc.patch(body, caller)
        return {"status": "success"}

    @app.get("/api/daily/available")
    async def daily_available() -> dict[str, bool]:
        return {"available": daily.available}

    @app.post("/api/daily/start")
    async def daily_start(request: Request, caller: WebRTCCaller) -> dict[str, str]:
        daily.require_configured()
        caller.require_fresh()  # a Daily room is a call too: the same credential as an offer
        require_capacity(request)
        with runtime.calls.reserve():
            return await daily.start()

    @app.post("/twilio/voice")
    async def twilio_voice(request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        twilio.check_http_caller(request, runtime.settings, form)
        refusal = admission.check(request.client.host if request.client else None)
        if refusal is not None and refusal.reason == "rate_limited":
            # No TwiML for this one: Twilio plays its own "application error" to the caller.
            raise HTTPException(refusal.status, refusal.detail, headers=refusal.headers)
        if refusal is not None:  # starting, draining or at capacity: busy (or the message)
            busy = twilio.busy_twiml(runtime.settings.busy_message)
            return Response(busy, media_type="application/xml")
        return Response(
            twilio.voice_twiml(runtime.settings, str(request.url), form),
            media_type="application/xml",
        )

    @app.post("/twilio/status")
    async def twilio_status(request: Request) -> PlainTextResponse:
        form = {key: str(value) for key, value in (await request.form()).items()}
        twilio.check_http_caller(request, runtime.settings, form)
        twilio.log_status_callback(form)
        return PlainTextResponse("", status_code=204)

    @app.websocket("/twilio/stream")
    async def twilio_stream(websocket: WebSocket) -> None:
        await twilio.serve_media_stream(
            websocket, runtime.settings, runtime.loaded, runtime.calls, admission
        )

    return app
