"""HTTP and WebSocket routes, and the server's lifespan. Everything else lives in bot/ and
transports/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import Scope

from bot.runtime import Runtime
from bot.settings import ServerSettings
from transports import twilio
from transports.daily import DailyEdge
from transports.webrtc import OfferBody, PatchBody, WebRTCEdge

PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _not_traced(scope: Scope) -> bool:
    """Probes and scrapes, and WebSockets: a call's stream would wrap every media message in
    telemetry code for the whole call; its conversation span stands in for it."""
    return scope.get("type") == "websocket" or scope.get("path") in PROBE_PATHS


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    runtime = Runtime(settings or ServerSettings.from_env())
    webrtc = WebRTCEdge(runtime.loaded, runtime.calls)
    daily = DailyEdge(runtime.settings, runtime.loaded, runtime.calls)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
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

    def require_capacity() -> None:
        if not runtime.accepting_calls:
            raise HTTPException(503, "not taking calls", headers={"Retry-After": "5"})

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return resources.files("transports").joinpath("static/index.html").read_text("utf-8")

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

    @app.post("/api/offer")
    async def offer(body: OfferBody) -> dict[str, str]:
        if body.pc_id is None:
            require_capacity()
        return await webrtc.offer(body)

    @app.patch("/api/offer")
    async def patch_offer(body: PatchBody) -> dict[str, str]:
        await webrtc.patch(body)
        return {"status": "success"}

    @app.get("/api/daily/available")
    async def daily_available() -> dict[str, bool]:
        return {"available": daily.available}

    @app.post("/api/daily/start")
    async def daily_start() -> dict[str, str]:
        daily.require_configured()
        require_capacity()
        return await daily.start()

    @app.post("/twilio/voice")
    async def twilio_voice(request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        twilio.check_http_caller(request, runtime.settings, form)
        if not runtime.accepting_calls:
            return Response(twilio.busy_twiml(), media_type="application/xml")
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
        if not runtime.accepting_calls:
            await websocket.close(code=1013)
            return
        await twilio.serve_media_stream(websocket, runtime.settings, runtime.loaded, runtime.calls)

    return app
