"""Calls through Daily (hosted SFU): the room and tokens over Daily's REST API, the bot's start.

Daily's REST API is the local `FakeDailyRest`; the SFU is out of reach (no network), so the bot
joins through `FakeDailyTransport` (same events as Pipecat's DailyTransport) for everything past
the REST boundary, and the last test checks that the real DailyTransport, unable to reach Daily,
fails its call without harming the server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from loguru import logger

from bot.settings import ServerSettings
from server import create_app
from tests.fakes.base import FakeServer, Faults
from tests.fakes.daily import FakeDailyRest, FakeDailyTransports
from tests.support.background import BackgroundLoop
from tests.support.servers import REPO
from transports.daily import JOIN_WINDOW_SECS, daily_transport

pytestmark = pytest.mark.slow

KEY = "daily-test-key-5f3a9c0e7b1d4a2f8e6c"
EXPIRY_SECS = 600
PIPELINE = str(REPO / "pipelines/local.yaml")

# Without VOICEBOT_API_KEYS, rooms are started for loopback clients only (SECURITY.md).
LOOPBACK = ("127.0.0.1", 50000)


def settings_for(api_url: str | None, key: str | None = KEY) -> ServerSettings:
    env = {
        "VOICEBOT_PIPELINE": PIPELINE,
        "DAILY_API_TIMEOUT_SECS": "1",
        "DAILY_ROOM_EXPIRY_SECS": str(EXPIRY_SECS),
    }
    if key:
        env["DAILY_API_KEY"] = key
    if api_url:
        env["DAILY_API_URL"] = api_url
    return ServerSettings.from_env(env)


@pytest.fixture(scope="module")
def log_lines() -> Iterator[list[str]]:
    """Everything logged in this module, tracebacks with variable values included."""
    lines: list[str] = []
    sink = logger.add(
        lambda m: lines.append(str(m)),
        level="DEBUG",
        diagnose=True,
        format="{level} {message} {extra}",
    )
    yield lines
    logger.remove(sink)


@pytest.fixture(scope="module")
def daily() -> Iterator[FakeDailyRest]:
    loop = BackgroundLoop()
    fake = FakeDailyRest(api_key=KEY)
    server = FakeServer(fake)
    fake.url = loop.run(server.start()) + "/v1"  # type: ignore[attr-defined]
    yield fake
    loop.run(server.stop())
    loop.close()


@pytest.fixture(scope="module")
def transports() -> FakeDailyTransports:
    return FakeDailyTransports()


@pytest.fixture(scope="module")
def client(
    daily: FakeDailyRest, transports: FakeDailyTransports, log_lines: list[str]
) -> Iterator[TestClient]:
    app = create_app(settings_for(daily.url))  # type: ignore[attr-defined]
    app.state.daily.transport_factory = transports
    with TestClient(app, client=LOOPBACK) as test_client:
        wait_until(lambda: test_client.get("/readyz").status_code == 200, 120, "server ready")
        yield test_client


@pytest.fixture(autouse=True)
def healthy_daily(daily: FakeDailyRest, transports: FakeDailyTransports) -> Iterator[None]:
    yield
    daily.faults = Faults()
    daily.token_faults = Faults()
    daily.bad_json = False
    daily.api_key = KEY
    transports.join_error = None


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.05)


def calls(client: TestClient) -> Any:
    return client.app.state.runtime.calls  # type: ignore[attr-defined]


def start_call(client: TestClient) -> dict[str, str]:
    response = client.post("/api/daily/start")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"room_url", "token", "call_id"}
    return body


def test_start_creates_a_private_room_two_tokens_and_starts_the_bot(
    client: TestClient, daily: FakeDailyRest, transports: FakeDailyTransports
) -> None:
    assert client.get("/api/daily/available").json() == {"available": True}
    before = time.time()
    body = start_call(client)

    room = next(r for r in daily.rooms.values() if r["url"] == body["room_url"])
    assert room["privacy"] == "private"
    config = room["config"]
    assert config["eject_at_room_exp"] is True and config["max_participants"] == 2
    assert before + EXPIRY_SECS - 5 <= config["exp"] <= time.time() + EXPIRY_SECS + 5

    tokens = daily.tokens_for(room["name"])
    assert len(tokens) == 2, tokens
    bot = next(t for t in tokens if t["is_owner"])
    user = next(t for t in tokens if not t["is_owner"])
    assert bot["user_name"] == "voicebot" and abs(bot["exp"] - config["exp"]) <= 2
    assert user["exp"] <= time.time() + JOIN_WINDOW_SECS + 2 and user["exp"] < config["exp"]
    assert daily.tokens[body["token"]] is user, "the caller must get the non-owner token"
    assert daily.decode(body["token"])["o"] is False
    assert all(entry["authorized"] for entry in daily.log.requests)

    transport = transports.made[-1]
    assert transport.room_url == body["room_url"]
    assert daily.tokens[transport.token] is bot, "the bot must join with the owner token"
    params = transport.params
    assert params.audio_in_enabled and params.audio_out_enabled
    assert (params.audio_in_sample_rate, params.audio_out_sample_rate) == (16000, 24000)

    wait_until(lambda: calls(client).get(body["call_id"]) is not None, 10, "call registered")
    session = calls(client).get(body["call_id"])
    assert session.call.transport == "daily"
    assert (session.call.audio_in_sample_rate, session.call.audio_out_sample_rate) == (
        16000,
        24000,
    )
    assert transport.joined.wait(10), "the bot never joined"
    transport.run(transport.participant_leaves())
    wait_until(lambda: calls(client).get(body["call_id"]) is None, 15, "call ended")


def test_bot_greets_the_first_participant_and_ends_when_they_leave(
    client: TestClient, daily: FakeDailyRest, transports: FakeDailyTransports
) -> None:
    body = start_call(client)
    transport = transports.made[-1]
    assert transport.joined.wait(10), "the bot never joined"
    time.sleep(0.5)
    assert len(transport.audio_out) == 0, "the bot spoke before anyone joined"

    transport.run(transport.participant_joins())
    # The greeting ("Hello! How can I help you today?") is well over half a second of speech.
    wait_until(lambda: len(transport.audio_out) > 24000 * 2 * 0.5, 20, "greeting audio")
    assert transport.audio_out_rates == {24000}

    name = body["room_url"].rsplit("/", 1)[1]
    assert name not in daily.deleted
    transport.run(transport.participant_leaves())
    wait_until(lambda: calls(client).get(body["call_id"]) is None, 15, "call ended")
    wait_until(lambda: name in daily.deleted, 10, "room deleted after the call")


def test_without_a_key_daily_is_unavailable(log_lines: list[str]) -> None:
    app = create_app(settings_for(None, key=None))
    test_client = TestClient(app, client=LOOPBACK)  # no lifespan needed: nothing is started
    assert test_client.get("/api/daily/available").json() == {"available": False}
    response = test_client.post("/api/daily/start")
    assert response.status_code == 503
    assert "DAILY_API_KEY" in response.json()["detail"]
    page = test_client.get("/").text
    assert '<div class="row" id="daily-row" hidden>' in page  # shown only when available


def test_not_ready_server_refuses_before_calling_daily(daily: FakeDailyRest) -> None:
    app = create_app(settings_for(daily.url))  # type: ignore[attr-defined]
    before = len(daily.log.requests)
    # The lifespan is not run: the models are not loaded.
    response = TestClient(app, client=LOOPBACK).post("/api/daily/start")
    assert response.status_code == 503
    assert response.headers.get("Retry-After") == "5"
    assert len(daily.log.requests) == before, "no room may be created while not taking calls"


def _stall(fake: FakeDailyRest) -> None:
    fake.faults.stall = True


def _server_error(fake: FakeDailyRest) -> None:
    fake.faults.http_status = 500


def _wrong_key(fake: FakeDailyRest) -> None:
    fake.api_key = "another-key"


def _not_json(fake: FakeDailyRest) -> None:
    fake.bad_json = True


def _dropped(fake: FakeDailyRest) -> None:
    fake.faults.drop_after_ms = 0


def _token_refused(fake: FakeDailyRest) -> None:
    fake.token_faults.http_status = 500


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (_server_error, "answered HTTP 500 while creating the room"),
        (_wrong_key, "answered HTTP 401 while creating the room"),
        (_stall, "timed out while creating the room"),
        (_not_json, "while creating the room"),
        (_dropped, "while creating the room"),
        (_token_refused, "answered HTTP 500 while creating the bot's meeting token"),
    ],
)
def test_daily_rest_failures_answer_502_and_harm_nothing(
    client: TestClient, daily: FakeDailyRest, fault: Callable[[FakeDailyRest], None], reason: str
) -> None:
    active = len(calls(client))
    rooms = set(daily.rooms)
    fault(daily)
    started = time.monotonic()
    response = client.post("/api/daily/start")
    assert time.monotonic() - started < 5, "a stalled Daily API must time out"
    assert response.status_code == 502, response.text
    detail = response.json()["detail"]
    assert detail.startswith("Daily's REST API") and reason in detail, detail
    assert len(calls(client)) == active, "no call may start without a room"
    new_rooms = set(daily.rooms) - rooms
    if fault is _not_json:  # made, but its name never reached us: it expires on its own
        assert len(new_rooms) <= 1
    else:
        assert not new_rooms, "a room whose tokens failed must be deleted"
    assert not any(daily.tokens_for(name) for name in new_rooms)
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_server_recovers_once_daily_does(
    client: TestClient, daily: FakeDailyRest, transports: FakeDailyTransports
) -> None:
    daily.faults.http_status = 503
    daily.faults.http_failures = 1
    assert client.post("/api/daily/start").status_code == 502
    body = start_call(client)
    transport = transports.made[-1]
    assert transport.joined.wait(10)
    transport.run(transport.participant_leaves())
    wait_until(lambda: calls(client).get(body["call_id"]) is None, 15, "call ended")


def test_a_bot_that_cannot_join_fails_only_its_own_call(
    client: TestClient,
    daily: FakeDailyRest,
    transports: FakeDailyTransports,
    log_lines: list[str],
) -> None:
    healthy = start_call(client)
    good = transports.made[-1]
    assert good.joined.wait(10)

    transports.join_error = "Connection(Api(RoomLookup(RoomInfoFetchFailed)))"
    body = start_call(client)
    name = body["room_url"].rsplit("/", 1)[1]
    wait_until(lambda: calls(client).get(body["call_id"]) is None, 15, "failed call removed")
    wait_until(lambda: name in daily.deleted, 10, "room deleted after the failed join")
    failed = [line for line in log_lines if body["call_id"] in line and "call failed" in line]
    assert failed and "DailyJoinError" in failed[0], failed
    assert any(body["call_id"] in line and "call ended (error)" in line for line in log_lines)

    assert calls(client).get(healthy["call_id"]) is not None, "another call was harmed"
    good.run(good.participant_leaves())
    wait_until(lambda: calls(client).get(healthy["call_id"]) is None, 15, "healthy call ended")


def test_the_key_never_leaves_the_server(
    client: TestClient,
    daily: FakeDailyRest,
    transports: FakeDailyTransports,
    log_lines: list[str],
) -> None:
    bodies = [client.post("/api/daily/start")]
    daily.faults.http_status = 401
    bodies.append(client.post("/api/daily/start"))
    daily.faults = Faults()
    daily.token_faults.http_status = 500
    bodies.append(client.post("/api/daily/start"))
    assert [r.status_code for r in bodies] == [200, 502, 502]
    transport = transports.made[-1]
    assert transport.joined.wait(10)
    transport.run(transport.participant_leaves())
    assert all(KEY not in r.text and KEY not in str(r.headers) for r in bodies)
    assert len(log_lines) > 20
    leaked = [line for line in log_lines if KEY in line]
    assert not leaked, leaked[:3]
    assert KEY not in repr(client.app.state.runtime.settings)  # type: ignore[attr-defined]


def test_real_daily_transport_that_cannot_reach_daily_fails_gracefully(
    client: TestClient, daily: FakeDailyRest, log_lines: list[str]
) -> None:
    """daily-python retries the room lookup for ~19 s without network before it reports."""
    daily_edge = client.app.state.daily  # type: ignore[attr-defined]
    fake_factory = daily_edge.transport_factory
    daily_edge.transport_factory = daily_transport
    try:
        body = start_call(client)
    finally:
        daily_edge.transport_factory = fake_factory
    name = body["room_url"].rsplit("/", 1)[1]
    wait_until(lambda: calls(client).get(body["call_id"]) is not None, 10, "call registered")
    # The event loop is not blocked while daily-python tries to join.
    started = time.monotonic()
    assert client.get("/healthz").status_code == 200
    assert time.monotonic() - started < 1
    wait_until(lambda: calls(client).get(body["call_id"]) is None, 45, "failed call removed")
    wait_until(lambda: name in daily.deleted, 10, "room deleted after the failed join")
    failed = [line for line in log_lines if body["call_id"] in line and "call failed" in line]
    assert failed and "DailyJoinError" in failed[0], failed
    assert client.get("/readyz").status_code == 200


def test_daily_settings_are_read_and_checked() -> None:
    from bot.settings import SettingsError

    settings = ServerSettings.from_env({"DAILY_API_KEY": KEY})
    assert settings.daily_enabled and settings.daily_api_url == "https://api.daily.co/v1"
    assert KEY not in repr(settings)
    assert not ServerSettings.from_env({}).daily_enabled
    with pytest.raises(SettingsError, match="DAILY_API_URL"):
        ServerSettings.from_env({"DAILY_API_URL": "api.daily.co/v1"})
    with pytest.raises(SettingsError, match="DAILY_ROOM_EXPIRY_SECS"):
        ServerSettings.from_env({"DAILY_ROOM_EXPIRY_SECS": "-5"})
