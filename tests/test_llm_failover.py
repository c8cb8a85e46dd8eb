"""LLM failover within a turn, with the product's own Anthropic and OpenAI services talking to
local servers that speak each vendor's streaming protocol.

The switcher must answer the same turn with the fallback LLM when the primary fails before its
first token (429, 500, 529, a dropped connection, or no token in time), hand downstream exactly
one response, skip a failed LLM for the cooldown, and apologise when every LLM has failed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from pipecat.frames.frames import (
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSSpeakFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.tests.utils import SleepFrame, run_test

from bot.call import CallInfo
from bot.llm_failover import TurnFailoverLLMSwitcher
from bot.providers.cloud import make_anthropic_llm, make_openai_llm
from bot.stage_options import AnthropicOptions, OpenAIOptions
from tests.fakes.base import FakeServer
from tests.fakes.llm import FakeAnthropic, FakeOpenAI

A_KEY = "sk-ant-test-failover"
O_KEY = "sk-openai-test-failover"
CALL = CallInfo("call-failover", "webrtc", 16000, 24000)
SKY = [{"role": "user", "content": "What colour is the sky?"}]


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeAnthropic, FakeOpenAI, str]]:
    anthropic, openai = FakeAnthropic(A_KEY), FakeOpenAI(O_KEY)
    server = FakeServer(anthropic, openai)
    url = await server.start()
    yield anthropic, openai, url
    await server.stop()


def _switcher(url: str, *, timeout: float | None = 1.0, cooldown: float = 30.0):
    llms = [
        make_anthropic_llm(
            AnthropicOptions(api_key=A_KEY, base_url=url), CALL, system_instruction="Be brief."
        ),
        make_openai_llm(
            OpenAIOptions(api_key=O_KEY, base_url=f"{url}/v1"), CALL, system_instruction="Be brief."
        ),
    ]
    return TurnFailoverLLMSwitcher(llms, first_token_timeout_secs=timeout, cooldown_secs=cooldown)


async def _turns(switcher: TurnFailoverLLMSwitcher, turns: int = 1, wait: float = 2.5):
    frames = []
    for _ in range(turns):
        frames += [LLMContextFrame(LLMContext(messages=list(SKY))), SleepFrame(sleep=wait)]
    down, up = await run_test(switcher, frames_to_send=frames)
    return down, up


def _answer(down) -> str:  # type: ignore[no-untyped-def]
    return "".join(frame.text for frame in down if isinstance(frame, LLMTextFrame))


def _one_response_each(down, turns: int = 1) -> None:  # type: ignore[no-untyped-def]
    starts = [f for f in down if isinstance(f, LLMFullResponseStartFrame)]
    ends = [f for f in down if isinstance(f, LLMFullResponseEndFrame)]
    assert (len(starts), len(ends)) == (turns, turns), "downstream must see one response a turn"


async def test_healthy_primary_answers_alone(fakes) -> None:
    anthropic, openai, url = fakes
    down, _ = await _turns(_switcher(url))
    assert _answer(down) == "The sky is blue."
    _one_response_each(down)
    assert (anthropic.request_count, openai.request_count) == (1, 0)


@pytest.mark.parametrize("status", [429, 500, 529])
async def test_http_error_is_answered_by_the_fallback_in_the_same_turn(fakes, status: int) -> None:
    anthropic, openai, url = fakes
    anthropic.faults.http_status = status
    down, up = await _turns(_switcher(url))
    assert _answer(down) == "The sky is blue."
    _one_response_each(down)
    assert (anthropic.request_count, openai.request_count) == (1, 1)
    assert anthropic.log.requests[0]["outcome"] == f"http_{status}"
    assert not [f for f in up if type(f).__name__ == "ErrorFrame"], "a recovered error stays in"


async def test_refused_connection_fails_over(fakes) -> None:
    _, openai, url = fakes
    switcher = _switcher(url)
    switcher._llms[0]._client = switcher._llms[0]._client.with_options(
        base_url="http://127.0.0.1:9"  # nothing listens on the discard port
    )
    down, _ = await _turns(switcher)
    assert _answer(down) == "The sky is blue."
    assert openai.request_count == 1


async def test_first_token_timeout_fails_over_and_frees_the_stalled_llm(fakes) -> None:
    anthropic, openai, url = fakes
    anthropic.faults.stall = True
    started = time.monotonic()
    down, _ = await _turns(_switcher(url, timeout=0.5), wait=2.0)
    assert _answer(down) == "The sky is blue."
    _one_response_each(down)
    assert (anthropic.request_count, openai.request_count) == (1, 1)
    assert time.monotonic() - started < 10


async def test_failed_llm_is_skipped_during_the_cooldown(fakes) -> None:
    anthropic, openai, url = fakes
    anthropic.faults.http_status, anthropic.faults.http_failures = 500, 1
    down, _ = await _turns(_switcher(url, cooldown=60), turns=2, wait=1.5)
    assert _answer(down) == "The sky is blue." * 2
    _one_response_each(down, turns=2)
    # Turn 1: Anthropic failed, OpenAI answered. Turn 2: straight to OpenAI.
    assert (anthropic.request_count, openai.request_count) == (1, 2)


async def test_primary_is_tried_again_after_the_cooldown(fakes) -> None:
    anthropic, openai, url = fakes
    anthropic.faults.http_status, anthropic.faults.http_failures = 500, 1
    down, _ = await _turns(_switcher(url, cooldown=0.5), turns=2, wait=1.5)
    assert _answer(down) == "The sky is blue." * 2
    assert (anthropic.request_count, openai.request_count) == (2, 1)


async def test_every_llm_failing_gives_an_apology_not_silence(fakes) -> None:
    anthropic, openai, url = fakes
    anthropic.faults.http_status = 529
    openai.faults.http_status = 503
    down, _ = await _turns(_switcher(url))
    spoken = [f.text for f in down if isinstance(f, TTSSpeakFrame)]
    assert spoken and "sorry" in spoken[0].lower()
    _one_response_each(down)
    assert (anthropic.request_count, openai.request_count) == (1, 1)


async def test_error_after_the_first_token_is_not_replayed(fakes) -> None:
    anthropic, openai, url = fakes
    anthropic.error_mid_stream = 500
    down, _ = await _turns(_switcher(url))
    assert _answer(down) == "The", "the caller already heard the start: no second answer"
    assert openai.request_count == 0
