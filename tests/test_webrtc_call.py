"""App calls over WebRTC (Pipecat SmallWebRTC), end to end, with an aiortc client.

aiortc leaves out 127.0.0.1 and ::1 when it gathers ICE candidates, so on a machine whose only
interface is `lo` an offer carries no candidate and never connects. The fixture below adds
127.0.0.2 to `lo` (`ip addr add 127.0.0.2/8 dev lo`, needs root, as CI has) when it is missing.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from bot.caller.audio import load_wav, resample
from bot.caller.webrtc import WebRTCCaller, rtvi_messages, run_webrtc_call
from tests.conftest import QUESTIONS
from tests.support.loopback import ensure_loopback_candidate_address
from tests.support.servers import RunningServer
from tests.support.speech import read_wav, transcribe
from tests.test_twilio_call import assert_is_a_reply

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def loopback_candidate_address() -> None:
    ensure_loopback_candidate_address()


async def test_webrtc_call_gets_a_spoken_reply(
    local_server: RunningServer, speech: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "reply.wav"
    result = await run_webrtc_call(speech["sky"], local_server.url, out_path=out)
    assert result["error"] is None, result
    assert result["connected_ms"] is not None and result["connected_ms"] < 3000, result
    assert result["greeting_seconds"] > 0.5, "no greeting was heard"
    assert result["reply_seconds"] > 0.5, result
    samples, rate = read_wav(out)
    reply = transcribe(samples, rate)
    print(f"reply: {reply!r} after {result['first_reply_audio_ms']} ms")
    assert_is_a_reply(reply, QUESTIONS["sky"])
    assert "blue" in reply.lower(), reply


async def test_the_client_sees_only_the_redacted_transcript(
    local_server: RunningServer, speech: dict[str, Path]
) -> None:
    caller = WebRTCCaller(local_server.url)
    try:
        await caller.connect()
        assert await caller.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
        assert await caller.wait_for_bot_quiet(gap=0.7, max_wait=15)
        pcm, rate = load_wav(speech["name"])
        caller.play(resample(pcm, rate, 48000))
        deadline = time.monotonic() + 30
        while not any("<PERSON>" in text for text in _finals(caller)):
            assert time.monotonic() < deadline, f"no redacted name arrived: {_finals(caller)}"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # let anything else about this turn arrive
    finally:
        await caller.close()
    everything = "\n".join(text for _, text in caller.messages)
    assert "Smith" not in everything and "smith" not in everything.lower(), everything


def _finals(caller: WebRTCCaller) -> list[str]:
    messages = rtvi_messages(caller.messages, "user-transcription")
    return [m["data"]["text"] for m in messages if m["data"].get("final")]


async def _request(method: str, url: str, body: object) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=body) as response,
    ):
        return response.status, await response.text()


@pytest.mark.parametrize(
    ("method", "body", "status"),
    [
        ("POST", {"sdp": "hello", "type": "offer"}, 400),
        ("POST", {"sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nxx", "type": "offer"}, 400),
        ("POST", {"sdp": "v=0", "type": "answer"}, 422),
        ("POST", {"type": "offer"}, 422),
        ("POST", {"sdp": "v=0\r\nm=audio " + "x" * 70000, "type": "offer"}, 422),
        ("PATCH", {"pc_id": "nope", "candidates": []}, 404),
        ("PATCH", {"candidates": []}, 422),
    ],
)
async def test_bad_offers_are_refused_and_harm_nothing(
    local_server: RunningServer, method: str, body: object, status: int
) -> None:
    code, text = await _request(method, local_server.url + "/api/offer", body)
    assert code == status, text
    async with (
        aiohttp.ClientSession() as session,
        session.get(local_server.url + "/readyz") as response,
    ):
        assert response.status == 200
