"""The server's limits (bot/limits.py, README "Limits"): calls per process, call starts per
client address, WebSocket message and request body sizes, and the refusals' counter.

The capacity and size rules run against a real `voicebot serve` on `pipelines/cloud.yaml`, its
providers played by the local fakes (tests/fakes), with VOICEBOT_MAX_CALLS=2; the rate limit and
the busy message in-process (an ASGI client can come from any address); the bucket table and
the set-up count as units.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import websockets

from bot.caller.twilio import TwilioCaller, new_sid, webhook_params
from bot.calls import CallRegistry
from bot.limits import MAX_BUCKETS, RateLimit, TokenBuckets, parse_rate_limit
from bot.settings import ServerSettings, SettingsError
from tests.fakes.suite import FakeSuite
from tests.support.instant_fakes import instant_fakes
from tests.support.metrics import sample, scrape
from tests.support.servers import REPO, RunningServer, start_server
from tests.test_twilio_call import pcm8k

GREETING = "Hello! How can I help you today?"
ANSWER = "What color is the sky on a clear day?"
MAX_CALLS = 2
REFUSED = "voicebot_calls_refused_total"
OFFER = {"sdp": "v=0\r\n", "type": "offer"}  # no audio section: 400 once admitted
MIB = 1 << 20


# -------------------------------------------------------------------- one real server


@pytest.fixture(scope="module")
def suite() -> Iterator[FakeSuite]:
    with instant_fakes(ANSWER, warm=[GREETING]) as (_, suite):
        yield suite


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, suite: FakeSuite) -> Iterator[RunningServer]:
    env = {**suite.env(), "VOICEBOT_MAX_CALLS": str(MAX_CALLS)}
    log = tmp_path_factory.mktemp("limits") / "server.log"
    server = start_server(REPO / "pipelines/cloud.yaml", log, env=env)
    yield server
    server.stop()


def _http(url: str, data: bytes, content_type: str) -> tuple[int, Any, str]:
    """Status, headers (case-insensitive) and body."""
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


async def _webhook(base: str) -> tuple[int, str]:
    form = webhook_params(new_sid("AC"), new_sid("CA"), "+15005550006", "+15005550001")
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base}/twilio/voice", data=form) as response,
    ):
        return response.status, await response.text()


async def _offer(base: str) -> tuple[int, Any, Any]:
    data = json.dumps(OFFER).encode()
    status, headers, body = await asyncio.to_thread(
        _http, f"{base}/api/offer", data, "application/json"
    )
    return status, headers, json.loads(body)


def _calls_running(base: str) -> int:
    with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
        return int(json.loads(response.read())["calls"])


async def _until(predicate: Any, max_wait: float) -> bool:
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return True
        await asyncio.sleep(0.05)
    return False


async def _ask(caller: TwilioCaller, wav: Path) -> bool:
    await caller.wait_for_bot_quiet(gap=0.5, max_wait=20)
    await caller.send_pcm(pcm8k(wav))
    said_at = time.monotonic()
    return await caller.wait_for_bot_audio(after=said_at, max_wait=15) is not None


async def test_a_huge_websocket_frame_closes_that_call_only(
    server: RunningServer, speech: dict[str, Path]
) -> None:
    async with TwilioCaller(server.url) as healthy, TwilioCaller(server.url) as rogue:
        assert await healthy.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
        assert await rogue.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
        sent_at = time.monotonic()
        await rogue.send_raw(json.dumps({"event": "media", "pad": "x" * MIB}))
        closed = await rogue.wait_for_event("closed", after=sent_at, max_wait=5)
        assert closed is not None and closed.message["code"] == 1009, rogue.events[-3:]
        # The other call on the same server goes on: it asks, the bot answers.
        assert await _ask(healthy, speech["sky"]), "no reply after the other call was closed"
        assert not healthy.log.closed


async def test_the_call_past_max_calls_is_refused_until_one_ends(server: RunningServer) -> None:
    before = await asyncio.to_thread(scrape, server.url)
    assert await _until(lambda: _calls_running(server.url) == 0, 10)
    ws_url = server.url.replace("http://", "ws://") + "/twilio/stream"
    async with TwilioCaller(server.url) as first:
        assert await first.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
        second = TwilioCaller(server.url)
        await second.connect()
        try:
            assert await second.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
            # MAX_CALLS calls run: the next one is refused on every route.
            status, twiml = await _webhook(server.url)
            assert status == 200 and '<Reject reason="busy" />' in twiml, twiml
            assert "<Stream" not in twiml
            async with websockets.connect(ws_url) as ws:  # accepted, then closed 1013
                with pytest.raises(websockets.exceptions.ConnectionClosed) as refused:
                    await asyncio.wait_for(ws.recv(), 5)
            assert refused.value.rcvd is not None and refused.value.rcvd.code == 1013
            status, headers, body = await _offer(server.url)
            assert (status, body) == (503, {"detail": "at capacity"})
            assert headers.get("Retry-After") == "5"
            assert not first.log.closed and not second.log.closed
        finally:
            await second.stop()
        # One call ended: the next is taken.
        assert await _until(lambda: _calls_running(server.url) < MAX_CALLS, 10)
        async with TwilioCaller(server.url) as third:
            assert await third.wait_for_bot_audio(max_wait=10) is not None, "not taken"
    after = await asyncio.to_thread(scrape, server.url)
    refused_now = sample(after, REFUSED, reason="capacity")
    assert refused_now - sample(before, REFUSED, reason="capacity") == 3, after
    assert f'{REFUSED}{{reason="rate_limited"}}' in after  # every reason listed, at 0 or more


async def test_a_one_mib_body_is_refused_with_413(server: RunningServer) -> None:
    form = b"CallSid=CA1&Pad=" + b"x" * MIB
    for path in ("/twilio/voice", "/twilio/status"):
        status, _, _ = await asyncio.to_thread(
            _http, server.url + path, form, "application/x-www-form-urlencoded"
        )
        assert status == 413, path
    big_offer = json.dumps({**OFFER, "request_data": {"pad": "x" * MIB}}).encode()
    status, _, _ = await asyncio.to_thread(
        _http, server.url + "/api/offer", big_offer, "application/json"
    )
    assert status == 413
    # A normal one still passes (once the earlier tests' calls have ended).
    assert await _until(lambda: _calls_running(server.url) == 0, 10)
    status, twiml = await _webhook(server.url)
    assert status == 200 and "<Connect><Stream" in twiml, twiml


# -------------------------------------------------------------------- in process


def _app(**env: str) -> Any:
    from server import create_app

    pipeline = str(REPO / "pipelines/local.yaml")
    app = create_app(ServerSettings.from_env({"VOICEBOT_PIPELINE": pipeline, **env}))
    app.state.runtime.ready = True  # no model loading: these answers need no pipeline
    return app


def _client(app: Any, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:7860")


FORM = {"CallSid": "CA" + "2" * 32, "AccountSid": "AC" + "1" * 32}


async def test_the_31st_call_start_from_one_address_in_a_minute_gets_429() -> None:
    app = _app()
    before = sample(scrape_local(), REFUSED, reason="rate_limited")
    async with (
        _client(app, "127.0.0.1") as one,
        _client(app, "127.0.0.2") as other,
        _client(app, "127.0.0.3") as third,
    ):
        for _ in range(30):
            answer = await one.post("/twilio/voice", data=FORM)
            assert answer.status_code == 200 and "<Connect>" in answer.text
        answer = await one.post("/twilio/voice", data=FORM)
        assert answer.status_code == 429, answer.text
        assert answer.json() == {"detail": "rate limited"}
        assert 1 <= int(answer.headers["Retry-After"]) <= 2  # 30/minute: one every 2 s
        answer = await other.post("/twilio/voice", data=FORM)
        assert answer.status_code == 200 and "<Connect>" in answer.text, "another address"

        # Offers share the bucket of their address (a renegotiation, with pc_id, takes none).
        answer = await one.post("/api/offer", json=OFFER)
        assert answer.status_code == 429 and "Retry-After" in answer.headers
        for _ in range(30):
            answer = await third.post("/api/offer", json=OFFER)
            assert answer.status_code == 400, answer.text  # admitted; then not a usable SDP
        answer = await third.post("/api/offer", json=OFFER)
        assert answer.status_code == 429, answer.text
    assert sample(scrape_local(), REFUSED, reason="rate_limited") - before == 3


def scrape_local() -> str:
    from prometheus_client import generate_latest

    return generate_latest().decode()


async def test_the_busy_message_is_said_escaped_then_the_call_hangs_up() -> None:
    app = _app(VOICEBOT_MAX_CALLS="1", VOICEBOT_BUSY_MESSAGE="All lines busy <& call back>")
    async with _client(app, "127.0.0.1") as client:
        with app.state.runtime.calls.reserve():  # one call being set up: the limit is reached
            answer = await client.post("/twilio/voice", data=FORM)
        assert answer.status_code == 200
        assert answer.text.endswith(
            "<Response><Say>All lines busy &lt;&amp; call back&gt;</Say><Hangup /></Response>"
        ), answer.text
        answer = await client.post("/twilio/voice", data=FORM)  # the place is free again
        assert "<Connect>" in answer.text


# -------------------------------------------------------------------- units


def test_the_bucket_table_stays_bounded_under_200k_addresses() -> None:
    now = [0.0]
    buckets = TokenBuckets(RateLimit(30, 60.0), clock=lambda: now[0])
    for n in range(200_000):
        assert buckets.take(f"2001:db8::{n:x}") == 0.0
        now[0] += 0.0001  # all within one period: none is idle yet
    assert len(buckets) == MAX_BUCKETS
    # A minute later every bucket is full again: the next look-up forgets them all.
    now[0] += 60.0
    buckets.take("198.51.100.7")
    assert len(buckets) == 1


def test_a_bucket_allows_a_burst_then_one_per_interval() -> None:
    now = [0.0]
    buckets = TokenBuckets(RateLimit(30, 60.0), clock=lambda: now[0])
    assert all(buckets.take("a") == 0.0 for _ in range(30))
    assert buckets.take("a") == pytest.approx(2.0)
    now[0] += 2.0
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0


async def test_calls_being_set_up_count_against_the_limit() -> None:
    calls = CallRegistry()
    release = asyncio.Event()

    class Session:  # what CallRegistry.run uses of a CallSession
        class call:
            call_id, transport, pipeline = "call-1", "webrtc", "test"

        end_reason = "completed"

        async def run(self) -> None:
            await release.wait()

        def write_summary(self, **_: Any) -> None:
            pass

    with calls.reserve():
        assert calls.occupied == 1 and len(calls) == 0
        task = calls.start(Session())  # type: ignore[arg-type]
    assert calls.occupied == 1  # handed over to the call's task, not yet running
    await asyncio.sleep(0)
    assert (calls.occupied, len(calls)) == (1, 1)  # running: counted once
    release.set()
    await task
    assert calls.occupied == 0
    with calls.reserve():
        pass
    assert calls.occupied == 0  # a set-up that started no call


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VOICEBOT_MAX_CALLS": "0"}, "VOICEBOT_MAX_CALLS must be a whole number of calls >= 1"),
        ({"VOICEBOT_MAX_CALLS": "-2"}, "VOICEBOT_MAX_CALLS"),
        ({"VOICEBOT_RATE_LIMIT": "30/day"}, "VOICEBOT_RATE_LIMIT"),
        ({"VOICEBOT_RATE_LIMIT": "lots"}, "VOICEBOT_RATE_LIMIT"),
        ({"VOICEBOT_RETRY_AFTER_SECONDS": "0"}, "VOICEBOT_RETRY_AFTER_SECONDS"),
        ({"VOICEBOT_WS_MAX_BYTES": "100"}, "VOICEBOT_WS_MAX_BYTES"),
        ({"VOICEBOT_MAX_BODY_BYTES": "1e6"}, "VOICEBOT_MAX_BODY_BYTES"),
    ],
)
def test_bad_limits_are_refused_by_the_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        ServerSettings.from_env(env)


def test_limit_defaults() -> None:
    settings = ServerSettings.from_env({})
    assert settings.max_calls == 15 and settings.retry_after_secs == 5
    assert settings.rate_limit == RateLimit(30, 60.0)
    assert (settings.ws_max_bytes, settings.max_body_bytes) == (65536, 131072)
    assert ServerSettings.from_env({"VOICEBOT_RATE_LIMIT": "off"}).rate_limit is None
    assert parse_rate_limit("5/second") == RateLimit(5, 1.0)
    assert parse_rate_limit("100/hour") == RateLimit(100, 3600.0)
