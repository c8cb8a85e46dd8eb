"""The fake Anthropic and OpenAI servers speak their vendors' protocols.

Checked with the official SDKs (streaming and not, typed errors, faults) and with Pipecat's
`AnthropicLLMService` and `OpenAILLMService` in a pipeline.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anthropic
import httpx2
import openai
import pytest
from pipecat.frames.frames import LLMContextFrame, LLMTextFrame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.anthropic.llm import AnthropicLLMService
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.tests.utils import run_test

from tests.fakes.base import FakeServer
from tests.fakes.llm import STORY, FakeAnthropic, FakeOpenAI

A_KEY = "sk-ant-test-0123456789"
O_KEY = "sk-openai-test-0123456789"
SKY = [{"role": "user", "content": "What colour is the sky?"}]


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeAnthropic, FakeOpenAI, str]]:
    ant, oai = FakeAnthropic(A_KEY), FakeOpenAI(O_KEY)
    server = FakeServer(ant, oai)
    url = await server.start()
    yield ant, oai, url
    await server.stop()


def ant_client(url: str, key: str = A_KEY, **kwargs: object) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key=key, base_url=url, max_retries=0, **kwargs)  # type: ignore[arg-type]


def oai_client(url: str, key: str = O_KEY, **kwargs: object) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, base_url=f"{url}/v1", max_retries=0, **kwargs)  # type: ignore[arg-type]


async def test_anthropic_streams_reply_in_pieces_with_usage(fakes) -> None:
    ant, oai, url = fakes
    stream = await ant_client(url).messages.create(
        model="claude-haiku-4-5",
        max_tokens=200,
        system="You are a terse voice assistant.",
        messages=SKY,
        stream=True,
    )
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds[1] == "content_block_start"
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert len(deltas) >= 3
    assert "".join(deltas) == "The sky is blue."
    message_delta = next(e for e in events if e.type == "message_delta")
    assert message_delta.delta.stop_reason == "end_turn"
    assert message_delta.usage.output_tokens == len(deltas)
    assert events[0].message.usage.input_tokens > 0

    (entry,) = ant.log.requests
    assert entry["system"] == "You are a terse voice assistant."
    assert entry["messages"] == SKY
    assert entry["model"] == "claude-haiku-4-5" and entry["max_tokens"] == 200
    assert entry["stream"] is True
    headers = {k.lower(): v for k, v in entry["headers"].items()}
    assert headers["anthropic-version"] == "2023-06-01"
    assert "x-api-key" not in headers and A_KEY not in str(entry)
    assert (ant.request_count, ant.served, ant.completed) == (1, 1, 1)
    assert oai.request_count == 0


async def test_anthropic_stream_helper_and_whole_message(fakes) -> None:
    ant, _, url = fakes
    client = ant_client(url)
    async with client.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=200,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Tell me a story"}]}],
    ) as stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == STORY and len(texts) > 50
    assert final.usage.output_tokens == len(texts)

    whole = await client.beta.messages.create(
        model="claude-haiku-4-5",
        max_tokens=4,
        messages=[{"role": "user", "content": "How many days in a week?"}],
        betas=["interleaved-thinking-2025-05-14"],
    )
    assert whole.content[0].text == "There are seven days"
    assert whole.stop_reason == "max_tokens"
    assert ant.log.requests[1]["query"] == {"beta": "true"}
    headers = {k.lower(): v for k, v in ant.log.requests[1]["headers"].items()}
    assert headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"


async def test_openai_streams_role_then_content_then_usage(fakes) -> None:
    ant, oai, url = fakes
    stream = await oai_client(url).chat.completions.create(
        model="gpt-4o-mini",
        stream=True,
        stream_options={"include_usage": True},
        messages=[
            {"role": "system", "content": "You are a terse voice assistant."},
            {"role": "user", "content": "How many days are in a week?"},
        ],
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    contents = [c.choices[0].delta.content for c in chunks[1:] if c.choices]
    texts = [text for text in contents if text]
    assert len(texts) >= 3 and "".join(texts) == "There are seven days in a week."
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "stop" and set(finish[:-1]) == {None}
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == len(texts)
    assert usage_chunk.usage.total_tokens == (
        usage_chunk.usage.prompt_tokens + usage_chunk.usage.completion_tokens
    )

    (entry,) = oai.log.requests
    assert entry["system"] == "You are a terse voice assistant."
    assert entry["last_user"] == "How many days are in a week?"
    assert entry["body"]["stream_options"] == {"include_usage": True}
    assert "authorization" not in {k.lower() for k in entry["headers"]}
    assert (oai.request_count, oai.served, oai.completed) == (1, 1, 1)
    assert ant.request_count == 0


async def test_openai_whole_reply_and_rules(fakes) -> None:
    _, oai, url = fakes
    client = oai_client(url)
    echo = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Good morning"}]
    )
    assert echo.choices[0].message.content == "I heard you say: Good morning."
    assert echo.choices[0].finish_reason == "stop"

    oai.rules.insert(0, ("morning", "Morning to you."))
    changed = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Good morning"}]
    )
    assert changed.choices[0].message.content == "Morning to you."

    oai.reply = lambda text: text.upper()
    shouted = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "what colour is the sky"}]
    )
    assert shouted.choices[0].message.content == "WHAT COLOUR IS THE SKY"


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.APIStatusError, "overloaded_error"),
    ],
)
async def test_anthropic_http_failures_raise_typed_errors(
    fakes, status: int, error_class: type[Exception], error_type: str
) -> None:
    ant, _, url = fakes
    ant.faults.http_status, ant.faults.http_failures = status, 1
    client = ant_client(url)
    with pytest.raises(error_class) as caught:
        await client.messages.create(
            model="claude-haiku-4-5", max_tokens=50, messages=SKY, stream=True
        )
    error = caught.value
    assert isinstance(error, anthropic.APIStatusError) and error.status_code == status
    assert error.body["type"] == "error" and error.body["error"]["type"] == error_type
    if status == 429:
        assert error.response.headers["retry-after"] == "1"
    # The failure was for one request only: the next one is served.
    message = await client.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=SKY)
    assert message.content[0].text == "The sky is blue."
    assert (ant.request_count, ant.served) == (2, 1)


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (429, openai.RateLimitError, "requests"),
        (500, openai.InternalServerError, "server_error"),
        (503, openai.InternalServerError, "server_error"),
    ],
)
async def test_openai_http_failures_raise_typed_errors(
    fakes, status: int, error_class: type[Exception], error_type: str
) -> None:
    _, oai, url = fakes
    oai.faults.http_status, oai.faults.http_failures = status, 1
    client = oai_client(url)
    with pytest.raises(error_class) as caught:
        await client.chat.completions.create(model="gpt-4o-mini", messages=SKY, stream=True)
    error = caught.value
    assert isinstance(error, openai.APIStatusError) and error.status_code == status
    assert error.type == error_type and error.message
    if status == 429:
        assert error.code == "rate_limit_exceeded"
        assert error.response.headers["retry-after"] == "1"
    reply = await client.chat.completions.create(model="gpt-4o-mini", messages=SKY)
    assert reply.choices[0].message.content == "The sky is blue."
    assert (oai.request_count, oai.served) == (2, 1)


async def test_wrong_or_missing_key_is_refused(fakes) -> None:
    ant, oai, url = fakes
    with pytest.raises(anthropic.AuthenticationError) as a_error:
        await ant_client(url, key="sk-ant-wrong").messages.create(
            model="claude-haiku-4-5", max_tokens=50, messages=SKY, stream=True
        )
    assert a_error.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError) as o_error:
        await oai_client(url, key="sk-wrong-key-123").chat.completions.create(
            model="gpt-4o-mini", messages=SKY, stream=True
        )
    assert o_error.value.code == "invalid_api_key"
    # A key of the other vendor is no good either, and a missing one neither.
    with pytest.raises(openai.AuthenticationError):
        await oai_client(url, key=A_KEY).chat.completions.create(model="m", messages=SKY)
    async with ant_client(url)._client as http:  # raw HTTP: the SDK won't send no key
        response = await http.post(
            f"{url}/v1/messages",
            json={"model": "m", "max_tokens": 5, "messages": SKY},
            headers={"anthropic-version": "2023-06-01"},
        )
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "x-api-key header is required"
    assert (ant.served, oai.served) == (0, 0)
    assert ant.request_count == 2 and oai.request_count == 2
    assert {e["outcome"] for e in ant.log.requests + oai.log.requests} == {"http_401"}


async def test_first_byte_delay_comes_after_the_headers(fakes) -> None:
    """Headers (and Anthropic's message_start) go out at once; the first token waits."""
    ant, oai, url = fakes
    for fake in (ant, oai):
        fake.faults.first_byte_ms = 400
        fake.faults.per_chunk_ms = 20

    start = time.monotonic()
    a_stream = await ant_client(url).messages.create(
        model="claude-haiku-4-5", max_tokens=50, messages=SKY, stream=True
    )
    a_headers = time.monotonic() - start
    a_start = a_first = a_last = 0.0
    async for event in a_stream:
        if event.type == "message_start":
            a_start = time.monotonic() - start
        if event.type == "content_block_delta":
            a_last = time.monotonic() - start
            a_first = a_first or a_last
    assert 0.4 <= a_first < 1.5
    assert a_first - a_headers >= 0.3 and a_first - a_start >= 0.3
    # Four pieces sent 20 ms apart: 60 ms between the first and last sent. They are timed here
    # on arrival, where the first can be a millisecond later than it left (CI saw 59.4 ms);
    # unpaced, they would arrive together.
    assert a_last - a_first >= 3 * 0.02 - 0.005

    start = time.monotonic()
    o_stream = await oai_client(url).chat.completions.create(
        model="gpt-4o-mini", messages=SKY, stream=True
    )
    o_headers = time.monotonic() - start
    o_first = 0.0
    async for chunk in o_stream:
        if chunk.choices and chunk.choices[0].delta.content:
            o_first = o_first or time.monotonic() - start
    assert 0.4 <= o_first < 1.5
    assert o_first - o_headers >= 0.3


async def test_dropped_connection_mid_stream_fails_the_client(fakes) -> None:
    ant, oai, url = fakes
    for fake in (ant, oai):
        fake.faults.per_chunk_ms = 50
        fake.faults.drop_after_ms = 300
        fake.faults.drop_count = 1
    story = [{"role": "user", "content": "Tell me a story"}]

    # The anthropic SDK does not wrap errors raised while iterating a stream: the
    # transport's own exception comes out (Pipecat catches it as a generic Exception).
    received: list[str] = []
    with pytest.raises(httpx2.RemoteProtocolError):
        stream = await ant_client(url).messages.create(
            model="claude-haiku-4-5", max_tokens=200, messages=story, stream=True
        )
        async for event in stream:
            if event.type == "content_block_delta":
                received.append(event.delta.text)
    assert 2 <= len(received) < len(STORY.split())
    assert (ant.served, ant.completed) == (1, 0)
    assert ant.log.requests[0]["outcome"] == "drop"

    o_received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        o_stream = await oai_client(url).chat.completions.create(
            model="gpt-4o-mini", messages=story, stream=True
        )
        async for chunk in o_stream:
            if chunk.choices and chunk.choices[0].delta.content:
                o_received.append(chunk.choices[0].delta.content)
    assert 2 <= len(o_received) < len(STORY.split())
    assert (oai.served, oai.completed) == (1, 0)

    # drop_count was 1: the next request streams to the end.
    reply = await oai_client(url).chat.completions.create(model="gpt-4o-mini", messages=SKY)
    assert reply.choices[0].message.content == "The sky is blue."


async def test_drop_at_zero_resets_before_any_response(fakes) -> None:
    ant, oai, url = fakes
    for fake in (ant, oai):
        fake.faults.drop_after_ms = 0
        fake.faults.drop_count = 1
    with pytest.raises(anthropic.APIConnectionError):
        await ant_client(url).messages.create(
            model="claude-haiku-4-5", max_tokens=50, messages=SKY, stream=True
        )
    with pytest.raises(openai.APIConnectionError):
        await oai_client(url).chat.completions.create(
            model="gpt-4o-mini", messages=SKY, stream=True
        )
    assert (ant.request_count, ant.served, oai.request_count, oai.served) == (1, 0, 1, 0)


async def test_stall_sends_headers_then_nothing(fakes) -> None:
    ant, oai, url = fakes
    ant.faults.stall = oai.faults.stall = True

    stream = await ant_client(url, timeout=0.3).messages.create(
        model="claude-haiku-4-5", max_tokens=50, messages=SKY, stream=True
    )
    start = time.monotonic()
    # As with a drop, the anthropic SDK lets the transport's read timeout through.
    with pytest.raises(httpx2.ReadTimeout):
        async for _ in stream:
            pass
    assert time.monotonic() - start >= 0.25

    o_stream = await oai_client(url, timeout=0.3).chat.completions.create(
        model="gpt-4o-mini", messages=SKY, stream=True
    )
    with pytest.raises(openai.APITimeoutError):
        async for _ in o_stream:
            pass
    assert (ant.served, ant.completed, oai.served, oai.completed) == (1, 0, 1, 0)


async def test_anthropic_error_event_mid_stream(fakes) -> None:
    ant, _, url = fakes
    ant.error_mid_stream = 529
    texts: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        stream = await ant_client(url).messages.create(
            model="claude-haiku-4-5", max_tokens=50, messages=SKY, stream=True
        )
        async for event in stream:
            if event.type == "content_block_delta":
                texts.append(event.delta.text)
    assert texts == ["The"]
    assert caught.value.body["error"]["type"] == "overloaded_error"


async def test_openai_error_chunk_mid_stream(fakes) -> None:
    _, oai, url = fakes
    oai.error_mid_stream = 500
    texts: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        stream = await oai_client(url).chat.completions.create(
            model="gpt-4o-mini", messages=SKY, stream=True
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                texts.append(chunk.choices[0].delta.content)
    assert texts == ["The"]
    assert caught.value.type == "server_error"


async def _run_llm(service: object) -> str:
    context = LLMContext(messages=list(SKY))
    down, _ = await run_test(service, frames_to_send=[LLMContextFrame(context)])  # type: ignore[arg-type]
    texts = [frame.text for frame in down if isinstance(frame, LLMTextFrame)]
    assert len(texts) >= 3  # streamed, not one block
    return "".join(texts)


async def test_pipecat_anthropic_service_against_the_fake(fakes) -> None:
    ant, _, url = fakes
    service = AnthropicLLMService(
        api_key=A_KEY,
        client=anthropic.AsyncAnthropic(api_key=A_KEY, base_url=url),
        settings=AnthropicLLMService.Settings(
            model="claude-haiku-4-5",
            system_instruction="You are a helpful voice assistant.",
            max_tokens=200,
        ),
    )
    assert await _run_llm(service) == "The sky is blue."
    (entry,) = ant.log.requests
    assert entry["system"] == "You are a helpful voice assistant."
    assert entry["last_user"] == "What colour is the sky?"
    assert entry["max_tokens"] == 200 and entry["stream"] is True
    assert entry["query"] == {"beta": "true"}


async def test_pipecat_openai_service_against_the_fake(fakes) -> None:
    _, oai, url = fakes
    service = OpenAILLMService(
        api_key=O_KEY,
        base_url=f"{url}/v1",
        settings=OpenAILLMService.Settings(
            model="gpt-4o-mini", system_instruction="You are a helpful voice assistant."
        ),
    )
    assert await _run_llm(service) == "The sky is blue."
    (entry,) = oai.log.requests
    assert entry["system"] == "You are a helpful voice assistant."
    assert entry["messages"][-1] == SKY[0]
    assert entry["body"]["stream_options"] == {"include_usage": True}
