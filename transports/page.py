"""The browser client: `GET /` and its bundled script under `/static/`.

The page's script (`static/app.js`) is Pipecat's client-js with its SmallWebRTC transport,
bundled from `client/` by `make client`. Everything the page loads comes from this server: the
Content-Security-Policy says so, so a page that tried to load from a CDN would fail loudly in
the tests, not quietly on a machine that is offline.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response

STATIC_FILES = {  # what /static/ serves, and nothing else
    "app.js": "text/javascript; charset=utf-8",
    "app.js.LEGAL.txt": "text/plain; charset=utf-8",
}

# Scripts and connections to this server only; Daily Prebuilt in its frame when the server has
# a Daily key (the page shows that button only then).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-src https://*.daily.co",
        "base-uri 'none'",
        "form-action 'none'",
        "object-src 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _static(name: str) -> bytes:
    return resources.files("transports").joinpath("static", name).read_bytes()


def add_page_routes(app: FastAPI) -> None:
    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(_static("index.html").decode("utf-8"), headers=PAGE_HEADERS)

    @app.get("/static/{name}")
    async def static(name: str) -> Response:
        media_type = STATIC_FILES.get(name)
        if media_type is None:
            raise HTTPException(404, "not found")
        try:
            body = _static(name)
        except FileNotFoundError:
            raise HTTPException(404, f"{name} is not built: run `make client`") from None
        return Response(
            body,
            media_type=media_type,
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )
