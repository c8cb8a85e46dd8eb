"""The canary call: a caller says an SSN, a card number and a date of birth out loud; afterwards
none of them appears anywhere outside the STT provider that had to hear them.

Runs `pipelines/cloud.yaml` as deployed (subprocess, DEBUG logs, traces to a file) against the
protocol fakes; the Deepgram fake transcribes the caller's real speech with the local STT. The
places checked: every server log line, every exported span, every message sent to the WebRTC
client, `/metrics`, and every request the LLM server received.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from bot.caller.webrtc import WebRTCCaller
from tests.fakes.suite import FakeSuite
from tests.support.instant_fakes import instant_fakes
from tests.support.servers import REPO, RunningServer, start_server
from tests.support.speech import synthesize_wav

pytestmark = pytest.mark.slow

SPOKEN = (
    "My social security number is five three six, two two, eight one four seven. "
    "My card number is four five three nine, one four eight eight, zero three four three, "
    "six four six seven. And I was born on March third, nineteen eighty."
)
SSN, CARD = "536228147", "4539148803436467"
NUMBER_WORDS = r"(zero|oh|one|two|three|four|five|six|seven|eight|nine)"


def leaks(text: str, last_four: bool = True) -> list[str]:
    """Every trace of the three secrets in `text`, whatever form the STT gave them. The last
    four digits alone are only searched in conversation text (ids and clocks in logs and spans
    can hold any four digits)."""
    found = []
    for number in (SSN, CARD):
        pattern = r"\D{0,3}".join(number)  # 536-22-8147, 5 3 6 2 2..., 536228147
        found += re.findall(pattern, text)
        if last_four:
            found += re.findall(rf"(?<!\d){number[-4:]}(?!\d)", text)
    run = rf"\b{NUMBER_WORDS}[\s,.-]+{NUMBER_WORDS}[\s,.-]+{NUMBER_WORDS}\b"
    found += re.findall(run, text, re.I)
    found += re.findall(r"march\W+(3|third)|nineteen eighty|\b1980\b|03/03|3/3/", text, re.I)
    return found


def test_the_leak_detector_finds_each_form() -> None:
    for form in (
        "536-22-8147",
        "5 3 6 2 2 8 1 4 7",
        "4539 1488 0343 6467",
        "card ending 6467",
        "five three six",
        "March 3rd, 1980",
        "march third nineteen eighty",
    ):
        assert leaks(form), form
    assert not leaks("my social is <US_SSN> and I was born on <DATE_OF_BIRTH>, call 7862")


@pytest.fixture(scope="module")
def fakes() -> Iterator[FakeSuite]:
    with instant_fakes() as (_, suite):
        yield suite


async def test_secrets_said_on_a_call_leak_nowhere(fakes: FakeSuite, tmp_path: Path) -> None:
    wav = synthesize_wav(SPOKEN, tmp_path / "secrets.wav")
    spans = tmp_path / "spans.jsonl"
    server: RunningServer = start_server(
        REPO / "pipelines/cloud.yaml",
        tmp_path / "server.log",
        env={**fakes.env(), "VOICEBOT_LOG_LEVEL": "DEBUG", "VOICEBOT_TRACE_FILE": str(spans)},
    )
    try:
        from bot.caller.audio import load_wav, resample

        pcm, rate = load_wav(wav)
        caller = WebRTCCaller(server.url)
        try:
            await caller.connect()
            assert await caller.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
            await caller.wait_for_bot_quiet(gap=0.7, max_wait=20)
            caller.play(resample(pcm, rate, 48000))
            await asyncio.sleep(len(pcm) / rate)
            said = time.monotonic()
            assert await caller.wait_for_bot_audio(after=said, max_wait=30), "no reply"
            await caller.wait_for_bot_quiet(gap=1.0, max_wait=30)
        finally:
            await caller.close()
        client_messages = "\n".join(text for _, text in caller.messages)
        async with aiohttp.ClientSession() as session, session.get(f"{server.url}/metrics") as r:
            metrics = await r.text()
    finally:
        server.stop()

    llm_requests = json.dumps([r.get("body") for r in fakes.anthropic.log.requests])
    heard = [str(r.get("last_user", "")) for r in fakes.anthropic.log.requests]
    assert any("<US_SSN>" in text or "[US_SSN" in text for text in heard), heard
    span_text = json.dumps(
        [
            [s["name"], s["attributes"], [e["attributes"] for e in s["events"]]]
            for s in map(json.loads, spans.read_text().splitlines())
        ]
    )
    places = {  # (text, search the last four digits too)
        "server log": (server.log(), False),
        "exported spans": (span_text, True),
        "messages to the client": (client_messages, True),
        "/metrics": (metrics, False),
        "LLM requests": (llm_requests, True),
    }
    assert "conversation.id" in span_text, "tracing was not on"
    assert "user-transcription" in client_messages, "the client got no transcript at all"
    found = {
        place: [text[max(0, m.start() - 80) : m.end() + 40] for m in _leak_matches(text)]
        or leaks(text, last_four)
        for place, (text, last_four) in places.items()
        if leaks(text, last_four)
    }
    assert not found, found


def _leak_matches(text: str) -> list[re.Match[str]]:
    run = rf"\b{NUMBER_WORDS}[\s,.-]+{NUMBER_WORDS}[\s,.-]+{NUMBER_WORDS}\b"
    patterns = [r"\D{0,3}".join(SSN), r"\D{0,3}".join(CARD), SSN[-4:], CARD[-4:], run]
    return [m for p in patterns for m in re.finditer(p, text, re.I)]
