"""One TLS client context for the whole process, handed to every provider connection.

`ssl.create_default_context()` reads the system's CA bundle each time: about 45 ms of CPU on
the reference machine, spent on the event loop. The SDKs make one wherever nobody passes one:
the Deepgram SDK builds an `httpx.AsyncClient` (and so a context) for every `DeepgramSTTService`,
i.e. for every call, although Pipecat only uses its WebSocket; and `websockets` makes one for
every `wss://` connection (Deepgram, ElevenLabs, each reconnection). With 15 calls on a core,
that was 12 % of the event loop's time and a 45 ms stall in every other call's audio whenever
a call started (BENCHMARKS.md, capacity). An `SSLContext` is meant to be shared: the one here is
made once, at start-up (`preload`), with httpx's defaults (certifi's CA bundle, or
`SSL_CERT_FILE` / `SSL_CERT_DIR` when set).
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable
from typing import Any

import httpx

from bot.providers.http_clients import shared_client


@functools.cache
def client_tls_context() -> ssl.SSLContext:
    """The process's TLS context for connections to providers (certificate and host checked):
    httpx's default, i.e. certifi's CA bundle, or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set."""
    return httpx.create_ssl_context()


def with_shared_tls(connect: Callable[..., Any]) -> Callable[..., Any]:
    """`connect(uri, ...)` from `websockets`, given the shared context on `wss://` URIs."""

    def connect_with_shared_tls(uri: str, *args: Any, **kwargs: Any) -> Any:
        if str(uri).lower().startswith("wss://"):
            kwargs.setdefault("ssl", client_tls_context())
        return connect(uri, *args, **kwargs)

    connect_with_shared_tls.__wrapped__ = connect  # type: ignore[attr-defined]
    return connect_with_shared_tls


def shared_deepgram_http_client(
    timeout: float | None, follow_redirects: bool | None
) -> httpx.AsyncClient:
    """Stands in for the Deepgram SDK's `_make_default_async_client`: one client per loop and
    settings, on the shared context, instead of a new client (and context) per call. The SDK
    never closes it; Pipecat's STT never sends a request on it (it streams over the WebSocket)."""
    return shared_client(
        ("deepgram-http", timeout, follow_redirects),
        lambda: httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=bool(follow_redirects),
            verify=client_tls_context(),
        ),
    )


def install() -> None:
    """Routes the provider SDKs' connections through the shared context (idempotent): Pipecat's
    WebSocket services (ElevenLabs and the rest), and the Deepgram SDK's HTTP client. Deepgram's
    WebSocket is wrapped in `bot.deepgram_stt` along with its compression setting."""
    import deepgram.base_client as deepgram_base_client
    import pipecat.services.websocket_service as pipecat_websocket_service

    connect = pipecat_websocket_service.websocket_connect
    if not hasattr(connect, "__wrapped__"):
        pipecat_websocket_service.websocket_connect = with_shared_tls(connect)
    deepgram_base_client._make_default_async_client = shared_deepgram_http_client
    client_tls_context()
