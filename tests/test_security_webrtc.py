"""Who may call over WebRTC, and CORS.

With VOICEBOT_API_KEYS set, `/api/offer` (POST and PATCH) needs `Authorization: Bearer` with an
API key or a session token from `POST /api/session`; each peer connection belongs to whoever
opened it. Without keys, only loopback clients may call. The HTTP rules are checked against the
app in-process (no lifespan: nothing here needs the models, so the runtime is marked ready by
hand); the last test runs a real call with a session token against `voicebot serve`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from loguru import logger

from bot import webrtc_auth
from bot.caller.webrtc import WebRTCCaller
from bot.settings import ServerSettings, SettingsError
from server import create_app
from tests.support.servers import REPO, RunningServer, start_server
from tests.test_webrtc_call import loopback_candidate_address  # noqa: F401 (autouse: 127.0.0.2)

pytestmark = pytest.mark.slow

KEY = "test-api-key-7Hq2LmV9xR4tZp8W"
OTHER_KEY = "test-api-key-number-two-3kfn28"
SECRET = "test-session-secret-5c1e0d9a8b7f6e4d3c2b1a0f"
TTL = 120
PIPELINE = str(REPO / "pipelines/local.yaml")
LOOPBACK = ("127.0.0.1", 5000)
OUTSIDER = ("203.0.113.9", 5000)
# Well-formed enough to get past our checks; aiortc then refuses it: 400 means auth passed.
GARBAGE_SDP = {"sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nxx", "type": "offer"}
TRACES = "traces.jsonl"
PATCH = {"pc_id": "pc-that-never-was", "candidates": []}
SECURED = {"VOICEBOT_API_KEYS": f"{KEY}, {OTHER_KEY}", "VOICEBOT_SESSION_SECRET": SECRET}


def build_app(env: dict[str, str]) -> FastAPI:
    settings = ServerSettings.from_env({"VOICEBOT_PIPELINE": PIPELINE, **env})
    app = create_app(settings)
    app.state.runtime.ready = True  # takes calls; the models are never needed by these checks
    return app


@pytest.fixture(scope="module")
def secured() -> Iterator[TestClient]:
    env = {**SECURED, "VOICEBOT_SESSION_TTL_SECONDS": str(TTL)}
    yield TestClient(build_app(env), client=LOOPBACK)  # no `with`: no lifespan, no models


@pytest.fixture(scope="module")
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(
        lambda m: lines.append(str(m)), level="TRACE", diagnose=True, format="{message} {extra}"
    )
    yield lines
    logger.remove(sink)


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def mint(client: TestClient, key: str = KEY) -> str:
    response = client.post("/api/session", headers=bearer(key))
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def sign(payload: str, secret: str = SECRET) -> str:
    digest = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def offer(client: TestClient, headers: dict[str, str], **body: Any) -> Any:
    return client.post("/api/offer", json={**GARBAGE_SDP, **body}, headers=headers)


# ------------------------------------------------------------------ API keys and session tokens


@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}],
    ids=["none", "basic", "empty"],
)
def test_no_credential_is_401(secured: TestClient, method: str, headers: dict[str, str]) -> None:
    body = GARBAGE_SDP if method == "POST" else PATCH
    response = secured.request(method, "/api/offer", json=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "missing Authorization: Bearer credential"}
    assert response.headers["www-authenticate"] == "Bearer"
    # Checked before the body: a caller without a credential learns nothing about it.
    response = secured.request(method, "/api/offer", json={"nonsense": 1}, headers=headers)
    assert response.status_code == 401


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_wrong_key_is_401(secured: TestClient, method: str) -> None:
    body = GARBAGE_SDP if method == "POST" else PATCH
    wrong = KEY[:-1] + "X"
    response = secured.request(method, "/api/offer", json=body, headers=bearer(wrong))
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "invalid credential"}


def test_session_route_needs_an_api_key(secured: TestClient) -> None:
    response = secured.post("/api/session")
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "missing Authorization: Bearer API key"}
    response = secured.post("/api/session", headers=bearer("not-the-key-at-all-0000"))
    assert response.status_code == 403, response.text
    assert response.json() == {"detail": "invalid API key"}
    token = mint(secured)
    response = secured.post("/api/session", headers=bearer(token))  # tokens do not breed
    assert response.status_code == 403

    before = int(time.time())
    response = secured.post("/api/session", headers=bearer(OTHER_KEY))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"token", "expires_at", "ice_servers"}
    assert body["ice_servers"] == []  # no TURN configured
    version, expiry, nonce, signature = body["token"].split(".")
    assert version == "v1" and int(expiry) == body["expires_at"]
    assert before + TTL <= body["expires_at"] <= int(time.time()) + TTL
    assert signature == sign(f"v1.{expiry}.{nonce}")


def test_valid_token_starts_the_offer_path(secured: TestClient) -> None:
    response = offer(secured, bearer(mint(secured)))
    assert response.status_code == 400, response.text
    assert "could not answer the offer" in response.json()["detail"]


def test_api_key_starts_the_offer_path(secured: TestClient) -> None:
    for key in (KEY, OTHER_KEY):
        response = offer(secured, bearer(key))
        assert response.status_code == 400, response.text
        assert "could not answer the offer" in response.json()["detail"]


def test_expired_token_is_401(secured: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    token = mint(secured)
    later = time.time() + TTL + 1
    monkeypatch.setattr(webrtc_auth, "_now", lambda: later)
    response = offer(secured, bearer(token))
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "session token expired"}
    assert token not in response.text
    # Just before its expiry, the same token still starts a call.
    monkeypatch.setattr(webrtc_auth, "_now", lambda: later - 2)
    assert offer(secured, bearer(token)).status_code == 400
    # An expired token owns nothing else: a PATCH for someone's pc_id is 401 too.
    monkeypatch.setattr(webrtc_auth, "_now", lambda: later)
    response = secured.patch("/api/offer", json=PATCH, headers=bearer(token))
    assert response.status_code == 401
    # Signed by us, expiry in the past.
    payload = f"v1.{int(time.time()) - 5}.{'n' * 24}"
    response = offer(secured, bearer(f"{payload}.{sign(payload)}"))
    assert response.status_code == 401
    assert response.json() == {"detail": "session token expired"}


def _tampered(token: str) -> dict[str, str]:
    version, expiry, nonce, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    other_payload = f"v1.{expiry}.{nonce}"
    return {
        "signature": f"{version}.{expiry}.{nonce}.{flipped}",
        "expiry": f"{version}.{int(expiry) + 3600}.{nonce}.{signature}",
        "nonce": f"{version}.{expiry}.{nonce[::-1]}.{signature}",
        "other secret": f"{other_payload}.{sign(other_payload, 'x' * 40)}",
        "version": f"v2.{expiry}.{nonce}.{signature}",
        "truncated": f"{version}.{expiry}.{nonce}.{signature[:-1]}",
        "extra part": f"{token}.x",
        "long": "v1." + "9" * 600,
    }


def test_tampered_token_is_401(secured: TestClient) -> None:
    token = mint(secured)
    for how, bad in _tampered(token).items():
        response = offer(secured, bearer(bad))
        assert response.status_code == 401, (how, response.text)
        detail = response.json()["detail"]
        expected = {"invalid session token signature", "malformed session token"}
        if how == "version":  # not a v1 token, not a key
            expected = {"invalid credential"}
        assert detail in expected, (how, detail)
        assert bad not in response.text and token not in response.text
    for how in ("signature", "expiry", "nonce", "other secret"):
        response = offer(secured, bearer(_tampered(token)[how]))
        assert response.json()["detail"] == "invalid session token signature", how


def test_unknown_pc_id_is_404(secured: TestClient) -> None:
    for credential in (mint(secured), KEY):
        response = secured.patch("/api/offer", json=PATCH, headers=bearer(credential))
        assert response.status_code == 404, response.text
        assert response.json() == {"detail": "unknown pc_id"}
        # A renegotiation offer for a pc_id the caller did not open: same answer.
        response = offer(secured, bearer(credential), pc_id="pc-that-never-was")
        assert response.status_code == 404, response.text
        assert response.json() == {"detail": "unknown pc_id"}


def test_without_a_secret_there_are_no_tokens() -> None:
    client = TestClient(build_app({"VOICEBOT_API_KEYS": KEY}), client=LOOPBACK)
    response = client.post("/api/session", headers=bearer(KEY))
    assert response.status_code == 503
    assert response.json() == {"detail": "session tokens are off: set VOICEBOT_SESSION_SECRET"}
    assert client.post("/api/session").status_code == 401
    assert offer(client, bearer(KEY)).status_code == 400  # keys still work
    forged = f"v1.{int(time.time()) + 60}.{'n' * 24}.{'s' * 43}"
    assert offer(client, bearer(forged)).status_code == 401


# ------------------------------------------------------------------ local development (no keys)


@pytest.fixture(scope="module")
def dev_app() -> FastAPI:
    return build_app({})


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_dev_mode_serves_loopback_only(dev_app: FastAPI, method: str) -> None:
    body = GARBAGE_SDP if method == "POST" else PATCH
    local = TestClient(dev_app, client=LOOPBACK)
    response = local.request(method, "/api/offer", json=body)
    assert response.status_code == (400 if method == "POST" else 404), response.text
    # A credential changes nothing in development mode.
    response = local.request(method, "/api/offer", json=body, headers=bearer(KEY))
    assert response.status_code == (400 if method == "POST" else 404), response.text
    response = local.post("/api/session", headers=bearer(KEY))
    assert response.status_code == 503
    outsider = TestClient(dev_app, client=OUTSIDER)
    response = outsider.request(method, "/api/offer", json=body, headers=bearer(KEY))
    assert response.status_code == 403, response.text
    assert response.json() == {
        "detail": "WebRTC calls serve loopback clients only without VOICEBOT_API_KEYS"
    }
    local6 = TestClient(dev_app, client=("::1", 5000))
    response = local6.request(method, "/api/offer", json=body)
    assert response.status_code != 403


def test_dev_mode_is_announced_at_start_up(log_lines: list[str]) -> None:
    app = create_app(ServerSettings.from_env({"VOICEBOT_PIPELINE": PIPELINE}))
    start = len(log_lines)
    app.state.webrtc_auth.announce()
    assert any(
        "VOICEBOT_API_KEYS is not set: WebRTC calls (/api/offer) serve loopback clients only"
        in line
        for line in log_lines[start:]
    ), log_lines[start:]


# ------------------------------------------------------------------ CORS


def preflight(client: TestClient, origin: str) -> Any:
    return client.options(
        "/api/offer",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )


def test_cors_allows_only_the_listed_origins() -> None:
    env = {**SECURED, "VOICEBOT_CORS_ORIGINS": "https://app.example.com, http://localhost:3000/"}
    client = TestClient(build_app(env), client=LOOPBACK)
    for origin in ("https://app.example.com", "http://localhost:3000"):
        response = preflight(client, origin)
        assert response.status_code == 200, response.text
        assert response.headers["access-control-allow-origin"] == origin
        allowed = response.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed
        assert "PATCH" in response.headers["access-control-allow-methods"]
        assert "access-control-allow-credentials" not in response.headers
    response = client.post(
        "/api/session", headers={**bearer(KEY), "Origin": "https://app.example.com"}
    )
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"

    for origin in ("https://evil.example.com", "http://app.example.com", "null"):
        response = preflight(client, origin)
        assert "access-control-allow-origin" not in response.headers, origin
        response = client.post("/api/session", headers={**bearer(KEY), "Origin": origin})
        assert "access-control-allow-origin" not in response.headers, origin


def test_no_cors_headers_when_unset(secured: TestClient) -> None:
    response = preflight(secured, "https://app.example.com")
    assert "access-control-allow-origin" not in response.headers
    assert response.status_code == 405  # no CORS layer: OPTIONS is not a route


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VOICEBOT_CORS_ORIGINS": "*"}, "'*' is refused"),
        ({"VOICEBOT_CORS_ORIGINS": "https://a.example.com,*"}, "'*' is refused"),
        ({"VOICEBOT_CORS_ORIGINS": "https://*.example.com"}, "is refused"),
        ({"VOICEBOT_CORS_ORIGINS": "https://a.example.com/app"}, "must be origins"),
        ({"VOICEBOT_CORS_ORIGINS": "app.example.com"}, "must be origins"),
        ({"VOICEBOT_API_KEYS": "short-key"}, "key #1 has 9 characters"),
        ({"VOICEBOT_API_KEYS": f"{KEY},tiny"}, "key #2 has 4 characters"),
        ({**SECURED, "VOICEBOT_SESSION_SECRET": "too-short-secret"}, "at least 32"),
        ({"VOICEBOT_SESSION_SECRET": SECRET}, "VOICEBOT_API_KEYS is not"),
        ({**SECURED, "VOICEBOT_SESSION_TTL_SECONDS": "0"}, "VOICEBOT_SESSION_TTL_SECONDS"),
        ({**SECURED, "VOICEBOT_SESSION_TTL_SECONDS": "5m"}, "VOICEBOT_SESSION_TTL_SECONDS"),
    ],
)
def test_unsafe_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("*", r"\*")) as refused:
        ServerSettings.from_env(env)
    text = str(refused.value)
    assert "short-key" not in text and "too-short-secret" not in text and KEY not in text


def test_settings_defaults_and_repr() -> None:
    plain = ServerSettings.from_env({})
    assert plain.api_keys == () and plain.session_secret is None and plain.cors_origins == ()
    assert plain.session_ttl_secs == 300
    settings = ServerSettings.from_env({**SECURED, "VOICEBOT_CORS_ORIGINS": "https://A.example"})
    assert settings.api_keys == (KEY, OTHER_KEY)
    assert settings.cors_origins == ("https://a.example",)
    assert KEY not in repr(settings) and SECRET not in repr(settings)


# ------------------------------------------------------------------ secrets stay secret


def test_secrets_never_reach_logs_or_metrics(secured: TestClient, log_lines: list[str]) -> None:
    start = len(log_lines)
    token = mint(secured)
    offer(secured, bearer(token))
    offer(secured, bearer(KEY))
    offer(secured, bearer(KEY + "x"))
    for bad in _tampered(token).values():
        offer(secured, bearer(bad))
    secured.patch("/api/offer", json=PATCH, headers=bearer(token))
    secured.post("/api/session", headers=bearer(SECRET))
    metrics = secured.get("/metrics").text
    logged = "\n".join(log_lines[start:])
    assert "refused POST /api/offer: invalid session token signature" in logged  # logs do flow
    signature = token.rsplit(".", 1)[1]
    for secret in (KEY, OTHER_KEY, SECRET, token, signature):
        assert secret not in logged, f"{secret[:6]}… logged"
        assert secret not in metrics, f"{secret[:6]}… in /metrics"


# ------------------------------------------------------------------ a real call with a token


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("keyed")
    server = start_server(
        PIPELINE,
        folder / "server.log",
        env={**SECURED, "VOICEBOT_TRACE_FILE": str(folder / TRACES)},
    )
    yield server
    server.stop()


def _read(path: Path) -> str:
    return path.read_text(errors="replace")


async def _call(
    method: str, url: str, body: object = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=body, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


async def test_real_call_with_a_session_token(keyed_server: RunningServer) -> None:
    url = keyed_server.url
    status, body = await _call("POST", f"{url}/api/session", headers=bearer(KEY))
    assert status == 200, body
    token = body["token"]
    status, body = await _call("POST", f"{url}/api/offer", GARBAGE_SDP)
    assert status == 401, body

    caller = WebRTCCaller(url, headers=bearer(token))
    try:
        await caller.connect()
        assert await caller.wait_for_bot_audio(max_wait=10) is not None, "no greeting heard"
        pc_id = caller.pc_id
        assert pc_id
        patch = {"pc_id": pc_id, "candidates": []}
        # The owner may trickle candidates for its call; nobody else may even see it exists.
        status, body = await _call("PATCH", f"{url}/api/offer", patch, bearer(token))
        assert (status, body) == (200, {"status": "success"})
        _, other_token = await _call("POST", f"{url}/api/session", headers=bearer(OTHER_KEY))
        for other in (other_token["token"], KEY, OTHER_KEY):
            status, body = await _call("PATCH", f"{url}/api/offer", patch, bearer(other))
            assert (status, body) == (404, {"detail": "unknown pc_id"})
            reoffer = {**GARBAGE_SDP, "pc_id": pc_id}
            status, body = await _call("POST", f"{url}/api/offer", reoffer, bearer(other))
            assert (status, body) == (404, {"detail": "unknown pc_id"})
        unknown = {"pc_id": "pc-that-never-was", "candidates": []}
        status, body = await _call("PATCH", f"{url}/api/offer", unknown, bearer(token))
        assert (status, body) == (404, {"detail": "unknown pc_id"})
    finally:
        await caller.close()

    # Once the call is over its owner is forgotten.
    deadline = time.monotonic() + 15
    while True:
        status, body = await _call("PATCH", f"{url}/api/offer", patch, bearer(token))
        if status == 404:
            break
        assert time.monotonic() < deadline, "the ended call's pc_id is still accepted"
        await asyncio.sleep(0.2)

    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        metrics = await response.text()
    log = keyed_server.log()
    assert "refused PATCH /api/offer: pc_id opened by another caller" in log
    assert "WebRTC calls need an API key (2 configured)" in log
    traces = _read(keyed_server.log_path.parent / TRACES)
    for secret in (KEY, OTHER_KEY, SECRET, token, token.rsplit(".", 1)[1]):
        assert secret not in log, "a secret reached the server log"
        assert secret not in metrics, "a secret reached /metrics"
        assert secret not in traces, "a secret reached the traces"


# ------------------------------------------------------------------ TURN credentials, Daily rooms

TURN_SECRET = "turn-static-auth-secret-0b7e"
TURNED = {
    **SECURED,
    "VOICEBOT_TURN_URLS": "turn:turn.example.com:3478?transport=udp",
    "VOICEBOT_TURN_SECRET": TURN_SECRET,
}


def _coturn_password(username: str) -> str:
    digest = hmac.new(TURN_SECRET.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def test_ice_servers_need_the_offers_credential_and_carry_turn_credentials() -> None:
    client = TestClient(build_app(TURNED), client=OUTSIDER)
    assert client.get("/api/ice-servers").status_code == 401
    assert client.get("/api/ice-servers", headers=bearer("not-a-credential")).status_code == 401

    session = client.post("/api/session", headers=bearer(KEY)).json()
    for servers in (
        session["ice_servers"],
        client.get("/api/ice-servers", headers=bearer(session["token"])).json()["ice_servers"],
    ):
        (server,) = servers
        assert server["urls"] == ["turn:turn.example.com:3478?transport=udp"]
        expiry, _, user = server["username"].partition(":")
        assert int(expiry) > time.time() and user.startswith("web-")
        assert session["token"] not in server["username"]
        assert server["credential"] == _coturn_password(server["username"])


def test_without_turn_the_client_gets_no_ice_servers(secured: TestClient) -> None:
    token = mint(secured)
    answer = secured.get("/api/ice-servers", headers=bearer(token))
    assert answer.status_code == 200 and answer.json() == {"ice_servers": []}


def test_a_daily_room_needs_the_same_credential_as_an_offer() -> None:
    env = {
        **SECURED,
        "DAILY_API_KEY": "daily-key-0123456789",
        "DAILY_API_URL": "http://127.0.0.1:9",
    }
    client = TestClient(build_app(env), client=OUTSIDER)
    assert client.post("/api/daily/start").status_code == 401
    assert client.post("/api/daily/start", headers=bearer("v1.1.x.y")).status_code == 401
    dev = TestClient(build_app({"DAILY_API_KEY": "daily-key-0123456789"}), client=OUTSIDER)
    assert dev.post("/api/daily/start").status_code == 403
