"""Shared pieces of the local provider servers: fault injection and one aiohttp app for all.

Every fake provider is a class with `add_routes(app)` and a `faults: Faults` attribute that
tests (or the `python -m tests.fakes` command line) change at any time. All providers can share
one aiohttp application on one loopback port: their URL paths do not overlap.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web


@dataclass
class Faults:
    """What a fake provider does wrong, and how slowly it does it right.

    - first_byte_ms: delay before the first useful byte (first token, first audio chunk,
      final transcript after the end of speech).
    - per_chunk_ms: delay between later chunks.
    - http_status: answer this HTTP status (e.g. 429, 500, 529) instead of serving, for the
      next `http_failures` requests (-1: every request).
    - drop_after_ms: close the connection abruptly this long after it started (-1: never),
      for the next `drop_count` connections.
    - stall: accept the request, then send nothing more (until the client gives up).
    """

    first_byte_ms: float = 0.0
    per_chunk_ms: float = 0.0
    http_status: int | None = None
    http_failures: int = -1
    drop_after_ms: float = -1.0
    drop_count: int = 1
    stall: bool = False

    def take_http_failure(self) -> int | None:
        """The status to fail this request with, or None to serve it."""
        if self.http_status is None or self.http_failures == 0:
            return None
        if self.http_failures > 0:
            self.http_failures -= 1
        return self.http_status

    def take_drop(self) -> float | None:
        """Seconds after which to drop this connection, or None."""
        if self.drop_after_ms < 0 or self.drop_count == 0:
            return None
        if self.drop_count > 0:
            self.drop_count -= 1
        return self.drop_after_ms / 1000


@dataclass
class RequestLog:
    """What a fake provider received, for assertions."""

    requests: list[dict[str, object]] = field(default_factory=list)

    def add(self, **entry: object) -> None:
        self.requests.append(entry)


class FakeProvider(Protocol):
    faults: Faults
    log: RequestLog

    def add_routes(self, app: web.Application) -> None: ...


async def sleep_ms(ms: float) -> None:
    if ms > 0:
        await asyncio.sleep(ms / 1000)


class FakeServer:
    """One aiohttp app serving several fake providers on one loopback port."""

    def __init__(self, *providers: FakeProvider) -> None:
        self.providers = providers
        self.app = web.Application()
        for provider in providers:
            provider.add_routes(self.app)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()  # type: ignore[union-attr]
        self.url = f"http://{host}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
