"""SIGTERM drains the calls: the server stops taking calls at once, keeps serving the calls in
flight (for up to VOICEBOT_DRAIN_SECONDS), exits as soon as the last one ends, and at the
deadline ends the rest politely (goodbye, then hang-up).

The server is `voicebot serve` on `pipelines/cloud.yaml` with its providers played by the
local fakes (tests/fakes), so a call costs little; one server per test, since each one is
signalled to death.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from bot.caller.twilio import TwilioCaller, new_sid, webhook_params
from bot.runtime import CONNECTIONS_GRACE_SECS, DRAIN_GRACE_SECS
from bot.settings import DEFAULT_DRAIN_SECS, ServerSettings, SettingsError
from tests.fakes.suite import FakeSuite
from tests.support.instant_fakes import instant_fakes
from tests.support.servers import REPO, RunningServer, start_server
from tests.test_twilio_call import pcm8k

pytestmark = pytest.mark.slow

GREETING = "Hello! How can I help you today?"
GOODBYE = "Thanks for calling. Goodbye!"
ANSWER = "What color is the sky on a clear day?"


@pytest.fixture(scope="module")
def suite() -> Iterator[FakeSuite]:
    # A canned transcript: the fake Deepgram answers at once, without running Whisper.
    with instant_fakes(ANSWER, warm=[GREETING, GOODBYE]) as (_, suite):
        yield suite


def _server(suite: FakeSuite, tmp_path: Path, drain_secs: float) -> RunningServer:
    env = {**suite.env(), "VOICEBOT_DRAIN_SECONDS": f"{drain_secs:g}"}
    return start_server(REPO / "pipelines/cloud.yaml", tmp_path / "server.log", env=env)


@pytest.fixture
def servers() -> Iterator[list[RunningServer]]:
    started: list[RunningServer] = []
    yield started
    for server in started:
        server.stop()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _post_voice_webhook(base: str) -> str:
    form = webhook_params(new_sid("AC"), new_sid("CA"), "+15005550006", "+15005550001")
    data = urllib.parse.urlencode(form).encode()
    with urllib.request.urlopen(f"{base}/twilio/voice", data=data, timeout=5) as response:
        assert response.status == 200
        return response.read().decode()


async def _wait_exit(server: RunningServer, max_wait: float) -> float:
    """Seconds until the server process exits (fails after `max_wait`)."""
    started = time.monotonic()
    while server.process.poll() is None:
        if time.monotonic() - started > max_wait:
            raise AssertionError(f"server still running after {max_wait}s:\n{server.log()}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def _ask(caller: TwilioCaller, wav: Path) -> bool:
    """Say `wav` after the bot is quiet; True when the bot's reply audio arrives."""
    await caller.wait_for_bot_quiet(gap=0.7, max_wait=20)
    await caller.send_pcm(pcm8k(wav))
    said_at = time.monotonic()
    return await caller.wait_for_bot_audio(after=said_at, max_wait=15) is not None


async def test_sigterm_drains_the_call_in_flight_then_exits(
    suite: FakeSuite, speech: dict[str, Path], tmp_path: Path, servers: list[RunningServer]
) -> None:
    drain_secs = 60.0  # the call ends long before: the server must not wait for the deadline
    server = _server(suite, tmp_path, drain_secs)
    servers.append(server)
    async with TwilioCaller(server.url) as caller:
        assert await caller.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()

        # It stops taking calls at once...
        status, body = None, ""
        while time.monotonic() - signalled < 5:
            status, body = await asyncio.to_thread(_get, f"{server.url}/readyz")
            if status == 503:
                break
            await asyncio.sleep(0.05)
        assert (status, json.loads(body)["status"]) == (503, "draining"), body
        twiml = await asyncio.to_thread(_post_voice_webhook, server.url)
        assert '<Reject reason="busy"' in twiml and "<Stream" not in twiml, twiml
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            await websockets.connect(server.url.replace("http", "ws") + "/twilio/stream")
        assert refused.value.response.status_code == 403
        assert server.process.poll() is None, "the server exited with a call in flight"

        # ...while the call in flight goes on: the caller asks, the bot answers.
        assert await _ask(caller, speech["sky"]), "no reply during the drain"
        assert not caller.log.closed, "the server closed the stream during the drain"
        assert any(ANSWER.lower() in str(r).lower() for r in suite.anthropic.log.requests[-1:])
        assert time.monotonic() - signalled < drain_secs
    hung_up = time.monotonic()

    # The caller hung up: the server exits at once, cleanly.
    waited = await _wait_exit(server, max_wait=10)
    assert server.process.returncode == 0, server.log()
    assert waited < CONNECTIONS_GRACE_SECS + 2.0, waited
    assert hung_up - signalled < drain_secs
    log = server.log()
    # The drain's lines belong to no call (whatever code the signal interrupted).
    assert "- bot.runtime: SIGTERM: draining, no new calls; 1 call(s) in flight" in log, log
    assert "1 call(s) were in flight, 0 ended by the server" in log, log
    assert "call ended (caller_hung_up)" in log or "call ended (completed)" in log, log


async def test_drain_deadline_ends_the_call_with_a_goodbye(
    suite: FakeSuite, tmp_path: Path, servers: list[RunningServer]
) -> None:
    drain_secs = 2.0
    server = _server(suite, tmp_path, drain_secs)
    servers.append(server)
    async with TwilioCaller(server.url) as caller:  # a caller that never hangs up
        assert await caller.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
        await caller.wait_for_bot_quiet(gap=0.7, max_wait=20)
        texts_before = _tts_texts(suite)
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()

        # Nothing is said before the deadline; then the goodbye, then the stream stops.
        goodbye = await caller.wait_for_bot_audio(after=signalled, max_wait=drain_secs + 5)
        assert goodbye is not None, "no goodbye audio"
        assert goodbye.arrival - signalled >= drain_secs - 0.1, goodbye.arrival - signalled
        closed = await caller.wait_for_event("closed", max_wait=drain_secs + DRAIN_GRACE_SECS)
        assert closed is not None, "the server did not end the call"
        assert closed.t > goodbye.arrival
    assert GOODBYE in _tts_texts(suite)[len(texts_before) :], _tts_texts(suite)

    waited = await _wait_exit(server, max_wait=drain_secs + DRAIN_GRACE_SECS + 10)
    elapsed = time.monotonic() - signalled
    assert server.process.returncode == 0, server.log()
    assert drain_secs <= elapsed < drain_secs + DRAIN_GRACE_SECS + 2.0, (elapsed, waited)
    log = server.log()
    assert "drain deadline reached: ending 1 call(s) politely" in log, log
    assert "1 call(s) were in flight, 1 ended by the server" in log, log
    assert "call ended (shutdown)" in log, log


async def test_second_signal_ends_the_calls_at_once(
    suite: FakeSuite, tmp_path: Path, servers: list[RunningServer]
) -> None:
    drain_secs = 60.0
    server = _server(suite, tmp_path, drain_secs)
    servers.append(server)
    async with TwilioCaller(server.url) as caller:
        assert await caller.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
        await caller.wait_for_bot_quiet(gap=0.7, max_wait=20)
        server.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        assert server.process.poll() is None
        server.process.send_signal(signal.SIGINT)
        hurried = time.monotonic()
        goodbye = await caller.wait_for_bot_audio(after=hurried, max_wait=5)
        assert goodbye is not None, "no goodbye audio after the second signal"
        closed = await caller.wait_for_event("closed", max_wait=DRAIN_GRACE_SECS + 2)
        assert closed is not None, "the server did not end the call"
    await _wait_exit(server, max_wait=DRAIN_GRACE_SECS + CONNECTIONS_GRACE_SECS + 5)
    assert time.monotonic() - hurried < DRAIN_GRACE_SECS + 3.0
    assert server.process.returncode == 0, server.log()
    log = server.log()
    assert "SIGINT again: ending the calls in flight now" in log, log
    assert "second signal: ending 1 call(s) politely" in log, log


def _tts_texts(suite: FakeSuite) -> list[str]:
    return [
        text for conn in suite.elevenlabs.connections for ctx in conn.contexts for text in ctx.texts
    ]


# ------------------------------------------------------------------ VOICEBOT_DRAIN_SECONDS


def test_drain_seconds_default_and_value() -> None:
    assert ServerSettings.from_env({}).drain_secs == DEFAULT_DRAIN_SECS == 10.0
    assert ServerSettings.from_env({"VOICEBOT_DRAIN_SECONDS": " 2.5 "}).drain_secs == 2.5
    assert ServerSettings.from_env({"VOICEBOT_DRAIN_SECONDS": ""}).drain_secs == 10.0


@pytest.mark.parametrize("raw", ["0", "-1", "ten", "10s", "nan", "inf"])
def test_drain_seconds_must_be_a_positive_number(raw: str) -> None:
    with pytest.raises(SettingsError, match="VOICEBOT_DRAIN_SECONDS") as error:
        ServerSettings.from_env({"VOICEBOT_DRAIN_SECONDS": raw})
    assert repr(raw) in str(error.value)


def test_serve_refuses_a_bad_drain_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import EXIT_INVALID, main

    monkeypatch.setenv("VOICEBOT_PIPELINE", "pipelines/local.yaml")  # restored afterwards
    monkeypatch.setenv("VOICEBOT_DRAIN_SECONDS", "-5")
    assert main(["serve", "--pipeline", "pipelines/local.yaml"]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "VOICEBOT_DRAIN_SECONDS must be positive, got '-5'" in err, err
