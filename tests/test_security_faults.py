"""Callers that vanish without hanging up are reaped, and the server goes on serving.

- A TCP reset (the phone network's side of the socket dies: RST, no WebSocket close): the call
  ends at once and leaves nothing behind.
- A half-open socket (the peer stops sending and reading, the connection stays up): Twilio
  sends a media frame every 20 ms for the life of a call, so silence on the socket means the
  caller is gone; the call policy's idle rule (prompt, then hang up) ends it.
- A WebRTC offer whose peer never connects: dropped after VOICEBOT_WEBRTC_CONNECT_TIMEOUT_SECONDS
  instead of holding a call's place for Pipecat's 60 s.

In both cases the active-calls gauge returns to 0, the call's summary is written with the way
it ended, and the next call is served. The server is `voicebot serve` on a copy of
`pipelines/cloud.yaml` (providers played by tests/fakes) with a 2 s idle timeout.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bot.caller.twilio import TwilioCaller
from tests.fakes.suite import FakeSuite
from tests.support.instant_fakes import instant_fakes
from tests.support.servers import REPO, RunningServer, start_server

pytestmark = pytest.mark.slow

GREETING = "Hello! How can I help you today?"
IDLE_SECS = 2.0
CONNECT_TIMEOUT_SECS = 2.0


@pytest.fixture(scope="module")
def suite() -> Iterator[FakeSuite]:
    with instant_fakes(warm=[GREETING]) as (_, suite):
        yield suite


@pytest.fixture(scope="module")
def server(suite: FakeSuite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("faults")
    pipeline = yaml.safe_load((REPO / "pipelines/cloud.yaml").read_text())
    pipeline["call"] = {"idle_timeout_secs": IDLE_SECS, "idle_prompts_before_hangup": 0}
    path = folder / "cloud-short-idle.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    summaries = folder / "summaries.jsonl"
    env = {
        **suite.env(),
        "VOICEBOT_SUMMARY_FILE": str(summaries),
        "VOICEBOT_WEBRTC_CONNECT_TIMEOUT_SECONDS": f"{CONNECT_TIMEOUT_SECS:g}",
    }
    running = start_server(path, folder / "server.log", env=env)
    running.summaries = summaries  # type: ignore[attr-defined]
    yield running
    running.stop()


def _active_calls(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("voicebot_active_calls")
    )


async def _wait_no_calls(server: RunningServer, max_wait: float) -> float:
    started = time.monotonic()
    while await asyncio.to_thread(_active_calls, server.url) > 0:
        if time.monotonic() - started > max_wait:
            raise AssertionError(f"a call is still active after {max_wait}s:\n{server.log()}")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def _summary(server: RunningServer, call_sid: str, max_wait: float = 5.0) -> dict:
    path: Path = server.summaries  # type: ignore[attr-defined]
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip() and json.loads(line)["call_id"] == call_sid:
                    return json.loads(line)
        time.sleep(0.1)
    raise AssertionError(f"no summary for {call_sid}:\n{server.log()}")


def _socket_of(caller: TwilioCaller) -> socket.socket:
    assert caller._ws is not None
    return caller._ws.transport.get_extra_info("socket")


async def _healthy_call(server: RunningServer) -> None:
    async with TwilioCaller(server.url) as caller:
        assert await caller.wait_for_bot_audio(max_wait=10) is not None, "no greeting"


async def test_a_tcp_reset_ends_the_call_at_once(server: RunningServer) -> None:
    await _wait_no_calls(server, max_wait=10)  # an earlier test's last call has ended
    caller = TwilioCaller(server.url)
    await caller.connect()
    try:
        assert await caller.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
        assert await asyncio.to_thread(_active_calls, server.url) == 1
        sock = _socket_of(caller)
        # SO_LINGER 0: close() sends a RST, no FIN and no WebSocket close frame.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        for task in caller._tasks:
            task.cancel()
        caller._ws.transport.abort()  # type: ignore[union-attr]
        reset_at = time.monotonic()
        waited = await _wait_no_calls(server, max_wait=5)
    finally:
        caller._stopped = True
    assert waited < 3.0, waited
    summary = _summary(server, caller.call_sid)
    assert summary["outcome"] == "caller_hung_up", summary["outcome"]
    assert summary["duration_secs"] < time.monotonic() - reset_at + 15
    await _healthy_call(server)


async def test_a_half_open_socket_is_reaped_by_the_idle_rule(server: RunningServer) -> None:
    await _wait_no_calls(server, max_wait=10)  # an earlier test's last call has ended
    caller = TwilioCaller(server.url)
    await caller.connect()
    try:
        assert await caller.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
        await caller.wait_for_bot_quiet(gap=0.5, max_wait=10)
        # The peer goes silent: no more frames out, nothing read, the TCP connection stays up.
        for task in caller._tasks:
            task.cancel()
        caller._ws.transport.pause_reading()  # type: ignore[union-attr]
        vanished_at = time.monotonic()
        waited = await _wait_no_calls(server, max_wait=IDLE_SECS + 15)
        assert _socket_of(caller).fileno() >= 0, "the client closed its side"
    finally:
        caller._stopped = True
        if caller._ws is not None:
            caller._ws.transport.abort()
    assert IDLE_SECS - 0.5 <= waited <= IDLE_SECS + 10, waited
    summary = _summary(server, caller.call_sid)
    assert summary["outcome"] == "caller_idle", summary["outcome"]
    assert summary["duration_secs"] < time.monotonic() - vanished_at + 15
    await _healthy_call(server)


async def test_a_webrtc_offer_that_never_connects_is_dropped(server: RunningServer) -> None:
    from aiortc import RTCPeerConnection

    await _wait_no_calls(server, max_wait=10)  # the previous test's last call has ended
    peer = RTCPeerConnection()
    try:
        peer.addTransceiver("audio", direction="sendrecv")
        await peer.setLocalDescription(await peer.createOffer())
        offer = {"sdp": peer.localDescription.sdp, "type": "offer"}
        request = urllib.request.Request(
            f"{server.url}/api/offer",
            data=json.dumps(offer).encode(),
            headers={"Content-Type": "application/json"},
        )
        # The answer is never applied: the peer vanishes after its offer.
        answer = await asyncio.to_thread(lambda: json.load(urllib.request.urlopen(request)))
        assert answer["type"] == "answer"
        assert await asyncio.to_thread(_active_calls, server.url) == 1
        waited = await _wait_no_calls(server, max_wait=CONNECT_TIMEOUT_SECS + 10)
    finally:
        await peer.close()
    assert waited < CONNECT_TIMEOUT_SECS + 3, waited
    assert f"did not connect within {CONNECT_TIMEOUT_SECS:g}s" in server.log()
    await _healthy_call(server)
