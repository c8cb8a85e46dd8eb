"""What an RTVI client hears when the bot fails: the stage and the kind of failure, never the
provider's own error text (bot/rtvi.py).

End to end: `pipelines/cloud.yaml` against the protocol fakes with both LLMs answering HTTP 500;
a WebRTC caller asks a question and reads the data channel.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipecat.frames.frames import ErrorFrame
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.utils.errors import ErrorCategory

from bot.caller.audio import load_wav, resample
from bot.caller.webrtc import WebRTCCaller, rtvi_messages
from bot.rtvi import client_error_text
from tests.fakes.base import Faults
from tests.fakes.suite import FakeSuite
from tests.support.instant_fakes import instant_fakes
from tests.support.loopback import ensure_loopback_candidate_address
from tests.support.servers import REPO, start_server


def test_the_text_names_the_stage_and_the_kind_of_failure() -> None:
    llm, stranger = FrameProcessor(), FrameProcessor()
    stages = {llm: "language model"}

    def text(processor: FrameProcessor | None, category: ErrorCategory | None) -> str:
        frame = ErrorFrame(
            error="POST http://10.0.0.7:8080/v1/messages: 500 {'prompt': 'my card is'}",
            processor=processor,
            category=category,
        )
        return client_error_text(frame, stages)

    assert text(llm, ErrorCategory.SERVER) == "The language model failed"
    assert text(llm, ErrorCategory.CONNECTIVITY) == "The language model could not be reached"
    assert text(llm, ErrorCategory.RATE_LIMIT) == "The language model is rate limiting the server"
    assert text(llm, None) == "The language model failed"
    assert text(stranger, ErrorCategory.SERVER) == "The bot had an internal error"
    assert text(None, None) == "The bot had an internal error"


@pytest.fixture(scope="module")
def failing_llms() -> Iterator[FakeSuite]:
    with instant_fakes(transcript="What color is the sky?") as (_, suite):
        suite.anthropic.faults = Faults(http_status=500)
        suite.openai.faults = Faults(http_status=500)
        yield suite


@pytest.mark.slow
async def test_the_client_hears_which_stage_failed_and_nothing_more(
    failing_llms: FakeSuite, speech: dict[str, Path], tmp_path: Path
) -> None:
    ensure_loopback_candidate_address()
    server = start_server(
        REPO / "pipelines/cloud.yaml", tmp_path / "server.log", env=failing_llms.env()
    )
    try:
        pcm, rate = load_wav(speech["sky"])
        caller = WebRTCCaller(server.url)
        try:
            await caller.connect()
            assert await caller.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
            await caller.wait_for_bot_quiet(gap=0.7, max_wait=20)
            caller.play(resample(pcm, rate, 48000))
            deadline = time.monotonic() + 30
            while not rtvi_messages(caller.messages, "error"):
                assert time.monotonic() < deadline, "no RTVI error message arrived"
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
        finally:
            await caller.close()
        log = server.log()
    finally:
        server.stop()
    errors = [message["data"] for message in rtvi_messages(caller.messages, "error")]
    assert errors == [{"error": "The language model failed", "fatal": False}] * len(errors)
    everything = "\n".join(text for _, text in caller.messages)
    for internal in ("127.0.0.1", "http", "500", "Error code", "Traceback"):
        assert internal not in json.dumps(errors) and f'"{internal}' not in everything, internal
    assert "every LLM failed this turn" in log  # the details are in the server's log
