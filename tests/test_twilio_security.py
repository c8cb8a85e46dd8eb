"""Who may use the Twilio routes, and the bot hanging up through Twilio's REST API.

A server with TWILIO_AUTH_TOKEN checks X-Twilio-Signature (computed over VOICEBOT_PUBLIC_URL,
not the Host header) on the webhook, the status callback and the WebSocket upgrade. Without a
token it serves loopback clients only. When the bot ends a call it POSTs Status=completed to
the Calls resource of a local stand-in for Twilio's REST API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import websockets
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from twilio.request_validator import RequestValidator

from bot.caller.twilio import TwilioCaller
from bot.settings import ServerSettings
from tests.fakes.twilio_rest import FakeTwilioRest
from tests.support.background import BackgroundLoop
from tests.support.servers import REPO, RunningServer, start_server

pytestmark = pytest.mark.slow

TOKEN = "test-auth-token-0123456789abcdef"
ACCOUNT = "AC" + "1" * 32
PUBLIC = "https://bot.example.test"
VALIDATOR = RequestValidator(TOKEN)
FORM = {"CallSid": "CA" + "2" * 32, "AccountSid": ACCOUNT, "From": "+15550001111"}


@pytest.fixture(scope="module")
def twilio_rest() -> Iterator[tuple[BackgroundLoop, FakeTwilioRest]]:
    loop = BackgroundLoop()
    fake = FakeTwilioRest(auth_token=TOKEN)
    loop.run(fake.start())
    yield loop, fake
    loop.run(fake.stop())
    loop.close()


@pytest.fixture(scope="module")
def signed_server(
    tmp_path_factory: pytest.TempPathFactory, twilio_rest: tuple[BackgroundLoop, FakeTwilioRest]
) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("signed")
    pipeline = folder / "quick-hangup.yaml"
    pipeline.write_text(
        (REPO / "pipelines/local.yaml")
        .read_text()
        .replace("idle_timeout_secs: 12", "idle_timeout_secs: 2\n  idle_prompts_before_hangup: 0")
    )
    server = start_server(
        pipeline,
        folder / "server.log",
        env={
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_ACCOUNT_SID": ACCOUNT,
            "VOICEBOT_PUBLIC_URL": PUBLIC,
            "VOICEBOT_TWILIO_API_URL": twilio_rest[1].url,
        },
    )
    yield server
    server.stop()


async def post(url: str, form: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=form, headers=headers) as response,
    ):
        return response.status, await response.text()


@pytest.mark.parametrize("path", ["/twilio/voice", "/twilio/status"])
async def test_webhooks_need_a_valid_signature(signed_server: RunningServer, path: str) -> None:
    signature = VALIDATOR.compute_signature(PUBLIC + path, FORM)
    status, body = await post(signed_server.url + path, FORM, {"X-Twilio-Signature": signature})
    assert status in (200, 204), body
    if path == "/twilio/voice":
        assert '<Stream url="wss://bot.example.test/twilio/stream"' in body.replace(
            'statusCallback="https://bot.example.test/twilio/status" ', ""
        )
        assert "<Parameter" in body and "?" not in body.split("url=")[1].split('"')[1]
        assert "+15550001111" not in body, "the caller's number must not travel in TwiML"

    status, _ = await post(signed_server.url + path, FORM, {})
    assert status == 403
    wrong = VALIDATOR.compute_signature(PUBLIC + path, {**FORM, "From": "+15559999999"})
    status, _ = await post(signed_server.url + path, FORM, {"X-Twilio-Signature": wrong})
    assert status == 403
    # Signed over the Host header the server saw instead of the public URL: refused.
    host_signed = VALIDATOR.compute_signature(signed_server.url + path, FORM)
    status, _ = await post(signed_server.url + path, FORM, {"X-Twilio-Signature": host_signed})
    assert status == 403


async def test_websocket_upgrade_needs_a_valid_signature(signed_server: RunningServer) -> None:
    ws_url = signed_server.url.replace("http://", "ws://") + "/twilio/stream"
    for headers in ({}, {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}):
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(ws_url, additional_headers=headers):
                pass
        assert refused.value.response.status_code == 403
    good = VALIDATOR.compute_signature("wss://bot.example.test/twilio/stream", {})
    async with websockets.connect(ws_url, additional_headers={"X-Twilio-Signature": good}) as ws:
        await ws.send('{"event": "connected", "protocol": "Call", "version": "1.0.0"}')
        await ws.send("not json")
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_bot_hangs_up_through_the_rest_api(
    signed_server: RunningServer, twilio_rest: tuple[BackgroundLoop, FakeTwilioRest]
) -> None:
    _, fake = twilio_rest
    before = len(fake.updates)
    caller = TwilioCaller(
        signed_server.url, auth_token=TOKEN, public_url=PUBLIC, account_sid=ACCOUNT
    )
    async with caller:
        assert await caller.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
        # Say nothing: after 2 s of silence the bot says goodbye and hangs up.
        await asyncio.wait_for(_until(lambda: len(fake.updates) > before), 30)
    update = fake.updates[-1]
    assert update.authorized, "hang-up must use the account SID and auth token"
    assert (update.account_sid, update.call_sid) == (ACCOUNT, caller.call_sid)
    assert update.form == {"Status": "completed"}
    goodbye = caller.log.render(caller.connected_at or 0.0, update.at + 60)
    assert len(goodbye) / 8000 > 2.5, "greeting and goodbye should both have been heard"


async def _until(predicate) -> None:  # type: ignore[no-untyped-def]
    while not predicate():
        await asyncio.sleep(0.05)


def test_without_a_token_only_loopback_clients_are_served() -> None:
    settings = ServerSettings.from_env({"VOICEBOT_PIPELINE": str(REPO / "pipelines/local.yaml")})
    assert not settings.twilio_signatures_required
    from server import create_app

    # TestClient's peer is "testclient", not a loopback address.
    with TestClient(create_app(settings)) as client:
        assert client.post("/twilio/voice", data=FORM).status_code == 403
        assert client.post("/twilio/status", data=FORM).status_code == 403
        with pytest.raises(WebSocketDisconnect), client.websocket_connect("/twilio/stream"):
            pass
        assert client.get("/healthz").status_code == 200


async def test_loopback_client_without_token_is_served(local_server: RunningServer) -> None:
    status, body = await post(local_server.url + "/twilio/voice", FORM, {})
    assert status == 200 and "<Connect><Stream" in body


def test_token_without_public_url_refuses_to_start() -> None:
    from bot.settings import SettingsError

    with pytest.raises(SettingsError, match="VOICEBOT_PUBLIC_URL"):
        ServerSettings.from_env({"TWILIO_AUTH_TOKEN": TOKEN})


def test_settings_keep_the_token_out_of_their_repr() -> None:
    settings = ServerSettings.from_env({"TWILIO_AUTH_TOKEN": TOKEN, "VOICEBOT_PUBLIC_URL": PUBLIC})
    assert TOKEN not in repr(settings)
    assert Path(settings.pipeline_path).name == "local.yaml"


@pytest.mark.parametrize("fault", ["http_500", "no_answer"])
async def test_call_still_ends_when_the_rest_hang_up_fails(
    signed_server: RunningServer,
    twilio_rest: tuple[BackgroundLoop, FakeTwilioRest],
    fault: str,
) -> None:
    _, fake = twilio_rest
    if fault == "http_500":
        fake.faults.http_status, fake.faults.http_failures = 500, 1
    else:
        fake.faults.stall = True
    before = len(fake.updates)
    log_start = signed_server.log_path.stat().st_size
    caller = TwilioCaller(
        signed_server.url, auth_token=TOKEN, public_url=PUBLIC, account_sid=ACCOUNT
    )
    try:
        async with caller:
            assert await caller.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
            # Silence: goodbye, then the REST hang-up fails; the media stream must close anyway.
            closed = await caller.wait_for_event("closed", max_wait=40)
            assert closed is not None, "the server never closed the media stream"
    finally:
        fake.faults.stall = False
        fake.faults.http_status = None
    assert len(fake.updates) > before, "the bot did not try the REST hang-up"
    log = signed_server.log_path.read_text()[log_start:]
    expected = "Status 500" if fault == "http_500" else "got no answer"
    assert expected in log, f"the failed hang-up was not logged:\n{log[-2000:]}"
    assert TOKEN not in log


SHARED_KEY = "webhook-shared-key-secret-0123456789"
SHARED_SETTINGS = {
    "X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"
}


def _signed_app(shared_key: str | None) -> TestClient:
    from server import create_app

    env = {
        "VOICEBOT_PIPELINE": str(REPO / "pipelines/local.yaml"),
        "TWILIO_AUTH_TOKEN": TOKEN,
        "VOICEBOT_PUBLIC_URL": PUBLIC,
    }
    if shared_key:
        env["TWILIO_WEBHOOK_SHARED_KEY"] = shared_key
    return TestClient(create_app(ServerSettings.from_env(env)))


def test_webhooks_signed_with_the_shared_key_and_hmac_sha256() -> None:
    url = PUBLIC + "/twilio/status"
    sha256 = RequestValidator(SHARED_KEY).compute_signature(url, FORM, algorithm="HMAC_SHA256")
    under_token = VALIDATOR.compute_signature(url, FORM, algorithm="HMAC_SHA256")
    legacy = VALIDATOR.compute_signature(url, FORM)

    def status(client: TestClient, headers: dict[str, str]) -> int:
        return client.post("/twilio/status", data=FORM, headers=headers).status_code

    client = _signed_app(SHARED_KEY)
    assert status(client, {**SHARED_SETTINGS, "X-Twilio-Signature": sha256}) == 204
    assert status(client, {**SHARED_SETTINGS, "X-Twilio-Signature": under_token}) == 403
    assert status(client, {**SHARED_SETTINGS, "X-Twilio-Signature": legacy}) == 403
    assert status(client, {"X-Twilio-Signature": legacy}) == 204  # the legacy way still works
    assert status(client, {"X-Twilio-Signature": sha256}) == 403  # no header: SHA-1 expected
    # Without the shared key configured, a request signed with it cannot be checked: refused.
    assert status(_signed_app(None), {**SHARED_SETTINGS, "X-Twilio-Signature": sha256}) == 403
    assert SHARED_KEY not in repr(
        ServerSettings.from_env({"TWILIO_WEBHOOK_SHARED_KEY": SHARED_KEY})
    )
