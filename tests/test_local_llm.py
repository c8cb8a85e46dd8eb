"""Tests for bot.local_llm: the in-process llama.cpp LLM service (real Qwen GGUF, CPU)."""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("llama_cpp")

from pipecat.frames.frames import (
    InterruptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.tests.utils import SleepFrame, run_test

from bot.local_llm import LlamaChunkStream, LlamaCppLLMService, LlamaModel
from bot.models import ModelAssetError, qwen_gguf_path

SYSTEM_PROMPT = "You are a helpful voice assistant. Answer in one short sentence."
# Answered with "1, 2, 3, ..." for hundreds of tokens (many seconds on CPU).
COUNT_PROMPT = "Count from 1 to 200, writing out every number separated by commas."


@pytest.fixture(scope="module")
def model() -> LlamaModel:
    try:
        path = qwen_gguf_path()
    except ModelAssetError as exc:
        pytest.skip(f"offline Qwen model not installed: {exc}")
    return LlamaModel.load_shared(path)


def make_service(model: LlamaModel, max_tokens: int = 48) -> LlamaCppLLMService:
    return LlamaCppLLMService(
        model=model,
        settings=LlamaCppLLMService.Settings(temperature=0.0, max_tokens=max_tokens),
    )


def make_context(user_text: str) -> LLMContext:
    return LLMContext(
        messages=[
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user_text},
        ]
    )


async def first_text(stream: LlamaChunkStream) -> str:
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            return chunk.choices[0].delta.content
    raise AssertionError("the stream ended without any text")


@pytest.mark.asyncio
async def test_streams_answer_through_pipecat(model: LlamaModel) -> None:
    service = make_service(model)
    frame = LLMContextFrame(context=make_context("What is the capital of France?"))

    down, _ = await run_test(service, frames_to_send=[frame])

    types = [type(f) for f in down]
    assert LLMFullResponseStartFrame in types
    assert LLMFullResponseEndFrame in types
    start = types.index(LLMFullResponseStartFrame)
    end = types.index(LLMFullResponseEndFrame)
    texts = [f.text for f in down[start:end] if isinstance(f, LLMTextFrame)]
    assert len(texts) >= 2, texts
    assert "paris" in "".join(texts).lower(), texts


@pytest.mark.asyncio
async def test_generation_does_not_block_event_loop(model: LlamaModel) -> None:
    service = make_service(model, max_tokens=80)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    lateness: list[float] = []

    async def ticker() -> None:
        while not done.is_set():
            before = loop.time()
            await asyncio.sleep(0.010)
            lateness.append(loop.time() - before - 0.010)

    ticks = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)  # ticker running before the generation starts
    started = time.perf_counter()
    first_token_s: float | None = None
    pieces: list[str] = []
    stream = await service.get_chat_completions(
        make_context("Count from 1 to 100, writing out every number separated by commas.")
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            if first_token_s is None:
                first_token_s = time.perf_counter() - started
            pieces.append(chunk.choices[0].delta.content)
    generation_s = time.perf_counter() - started
    done.set()
    await ticks

    max_late_ms = max(lateness) * 1000
    print(
        f"\nfirst token {first_token_s * 1000:.0f} ms, {len(pieces)} text chunks in "
        f"{generation_s:.2f} s, {len(lateness)} ticks, max loop lateness {max_late_ms:.1f} ms"
    )
    assert len(pieces) >= 40  # the generation ran long enough to measure anything
    assert len(lateness) >= generation_s / 0.02
    assert max_late_ms < 50


@pytest.mark.asyncio
async def test_cancelled_generation_releases_the_model(model: LlamaModel) -> None:
    service = make_service(model, max_tokens=600)
    long_stream = await service.get_chat_completions(make_context(COUNT_PROMPT))
    got_first = asyncio.Event()

    async def consume() -> None:
        # What BaseOpenAILLMService._process_context does: iterate, aclose() when cancelled.
        try:
            await first_text(long_stream)
            got_first.set()
            async for _ in long_stream:
                pass
        finally:
            await long_stream.aclose()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    started = time.perf_counter()
    second = await service.get_chat_completions(make_context("Say hello."))
    try:
        await asyncio.wait_for(first_text(second), timeout=5)
    finally:
        await second.aclose()
    second_first_token_s = time.perf_counter() - started

    assert long_stream.thread is not None
    long_stream.thread.join(timeout=2)
    print(
        f"\nafter cancel: second reply's first token in {second_first_token_s * 1000:.0f} ms; "
        f"cancelled reply stopped after {long_stream.chunks_generated} chunks"
    )
    assert not long_stream.thread.is_alive()
    assert long_stream.chunks_generated < 100  # stopped, not run to its 600-token limit
    assert second_first_token_s < 1.5


@pytest.mark.asyncio
async def test_pipecat_interruption_stops_generation(model: LlamaModel) -> None:
    service = make_service(model, max_tokens=600)
    frames = [
        LLMContextFrame(context=make_context(COUNT_PROMPT)),
        SleepFrame(sleep=1.0),
        InterruptionFrame(),
        LLMContextFrame(context=make_context("What is the capital of France?")),
    ]

    started = time.perf_counter()
    down, _ = await run_test(service, frames_to_send=frames)
    elapsed = time.perf_counter() - started

    cut = [type(f) for f in down].index(InterruptionFrame)
    counted = "".join(f.text for f in down[:cut] if isinstance(f, LLMTextFrame))
    answer = "".join(f.text for f in down[cut:] if isinstance(f, LLMTextFrame))
    print(f"\ninterrupted run took {elapsed:.2f} s; the count got to {counted[-12:]!r}")
    assert counted.startswith("1, 2, 3"), counted
    assert "200" not in counted  # it really was cut off
    assert "paris" in answer.lower(), answer
    # Uninterrupted, the 600-token count alone would take well over 10 s.
    assert elapsed < 6


@pytest.mark.asyncio
async def test_generation_errors_surface_in_the_iterator(model: LlamaModel) -> None:
    service = make_service(model)
    stream = await service.get_chat_completions(make_context("Hi"))
    # An argument llama.cpp rejects, raised inside the worker thread.
    stream._request.kwargs["temperature"] = "not-a-number"
    with pytest.raises(TypeError):
        await first_text(stream)
    # The failed call released the model.
    assert model.lock.acquire(timeout=2)
    model.lock.release()


def test_two_services_share_one_model(model: LlamaModel) -> None:
    loads_before = LlamaModel.load_count
    again = LlamaModel.load_shared(qwen_gguf_path())
    first = make_service(again)
    second = make_service(LlamaModel.load_shared(qwen_gguf_path()))

    assert again is model
    assert first.model is second.model is model
    assert first.model.llama is second.model.llama
    assert LlamaModel.load_count == loads_before
    assert LlamaModel.load_count >= 1


def test_long_history_is_trimmed_to_fit_context(model: LlamaModel) -> None:
    from bot.local_llm import _fit_messages

    filler = "The quick brown fox jumps over the lazy dog. " * 40  # ~400 tokens
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for i in range(12):
        messages.append({"role": "user", "content": f"{i} {filler}"})
        messages.append({"role": "assistant", "content": f"ok {i}"})
    messages.append({"role": "user", "content": "What is the capital of France?"})

    kept = _fit_messages(model, messages, reserve_tokens=256)

    assert kept[0]["role"] == "system"
    assert kept[-1] is messages[-1]
    assert len(kept) < len(messages)
    prompt = sum(model.count_tokens(m["content"]) + 8 for m in kept)
    assert prompt <= model.n_ctx - 256

    capped = _fit_messages(model, messages, reserve_tokens=256, max_history_messages=3)
    assert [m["role"] for m in capped] == ["system", "user", "assistant", "user"]
    assert capped[-1] is messages[-1]


@pytest.mark.asyncio
async def test_overlong_context_still_answers(model: LlamaModel) -> None:
    # A small context keeps the prompt evaluation short (CPU prefill is ~130 tokens/s).
    small = LlamaModel.load(model.path, n_ctx=512, n_threads=model.n_threads)
    service = make_service(small, max_tokens=16)
    filler = "The quick brown fox jumps over the lazy dog. " * 40
    context = make_context(f"0 {filler}")
    for i in range(1, 8):
        context.add_message({"role": "assistant", "content": f"ok {i}"})
        context.add_message({"role": "user", "content": f"{i} {filler}"})
    context.add_message({"role": "user", "content": "What is the capital of France?"})

    total_tokens = sum(small.count_tokens(m["content"]) for m in context.get_messages())
    assert total_tokens > 3 * small.n_ctx

    answer = await service.run_inference(context)

    assert answer
