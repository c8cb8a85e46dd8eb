"""One phone call to an in-process server whose spans go to OpenTelemetry's in-memory exporter.

    python -m tests.support.traced_call QUESTION.wav

The tracer provider is process-global and set once, so this runs in a process of its own: it
installs `bot.tracing.setup_tracing(InMemorySpanExporter())`, serves `server.create_app` for
pipelines/local.yaml with uvicorn on a free loopback port, makes one Twilio call saying the WAV,
and prints one JSON object on stdout: {"call": <run_twilio_call's result>, "spans": [{name,
span_id, parent_id, attributes}, ...]}.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import uvicorn
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bot import tracing
from bot.caller.twilio import run_twilio_call
from tests.support.servers import REPO, free_port


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


async def _wait_ready(url: str, serving: asyncio.Task[None], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if serving.done():
            serving.result()  # raises the server's error, if any
            raise RuntimeError("the server stopped before it was ready")
        if await asyncio.to_thread(_ready, url):
            return
        await asyncio.sleep(0.25)
    raise RuntimeError(f"server not ready after {timeout}s")


def _span_record(span: ReadableSpan) -> dict[str, Any]:
    return {
        "name": span.name,
        "span_id": f"{span.context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent is not None else None,
        "trace_id": f"{span.context.trace_id:032x}",
        "attributes": {key: _jsonable(value) for key, value in (span.attributes or {}).items()},
        "resource": dict(span.resource.attributes),
    }


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


async def main(wav: str) -> dict[str, Any]:
    exporter = InMemorySpanExporter()
    tracing.setup_tracing(exporter)

    from bot.settings import ServerSettings
    from server import create_app

    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("OTEL_")
        and key not in ("VOICEBOT_TRACE_FILE", "TWILIO_AUTH_TOKEN", "VOICEBOT_PUBLIC_URL")
    }
    environ["VOICEBOT_PIPELINE"] = str(REPO / "pipelines/local.yaml")
    app = create_app(ServerSettings.from_env(environ))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        await _wait_ready(url, serving)
        result = await run_twilio_call(wav, url)
        await asyncio.sleep(1.0)  # the call ends on the server after the caller hangs up
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)
    tracing.shutdown_tracing()
    return {"call": result, "spans": [_span_record(s) for s in exporter.get_finished_spans()]}


if __name__ == "__main__":
    output = asyncio.run(main(sys.argv[1]))
    sys.stdout.write(json.dumps(output) + "\n")
    sys.stdout.flush()
