"""In-process llama.cpp LLM for the fully offline stack.

`LlamaCppLLMService` is Pipecat's `OpenAILLMService` with the HTTP client swapped for a
`llama_cpp.Llama` loaded once per process (`LlamaModel.load_shared`). llama.cpp already streams
OpenAI-shaped chunks, so the base class's streaming code (text frames, TTFB metrics,
interruptions) runs unchanged. Generation happens in a worker thread; one lock per model
serializes calls, and a cancelled reply stops within a token and frees the lock.

Message text is never logged here, only sizes and timings (at DEBUG).
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from loguru import logger
from openai import NotGiven as OpenAINotGiven
from openai.types.chat import ChatCompletionChunk
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.utils.types import NotGiven, assert_given

if TYPE_CHECKING:
    from llama_cpp import Llama

# Chat-template tokens around each message (Qwen: "<|im_start|>role\n...<|im_end|>\n"), rounded up.
_PER_MESSAGE_OVERHEAD_TOKENS = 8
# The assistant header that opens the reply, plus slack for the estimate.
_PROMPT_SLACK_TOKENS = 16
# Retries after llama.cpp still finds the prompt too long for n_ctx.
_MAX_OVERFLOW_RETRIES = 4
# OpenAI request fields that have no llama.cpp meaning.
_TRANSPORT_ONLY_PARAMS = frozenset(
    {"model", "stream", "stream_options", "service_tier", "max_completion_tokens", "messages"}
)


def _given(value: Any) -> bool:
    return value is not None and not isinstance(value, (NotGiven, OpenAINotGiven))


class LlamaModel:
    """A loaded `llama_cpp.Llama` plus the lock that serializes its use."""

    load_count: ClassVar[int] = 0
    """How many models this process has loaded (for tests and diagnostics)."""

    _shared: ClassVar[dict[Path, LlamaModel]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, llama: Llama, *, path: Path, n_ctx: int, n_threads: int) -> None:
        """Wrap an already loaded model; prefer `load` / `load_shared`."""
        self.llama = llama
        self.path = path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.name = path.stem
        self.lock = threading.Lock()
        """Held by the worker thread for the whole of one generation."""

    @classmethod
    def load(
        cls, path: str | Path, *, n_ctx: int = 2048, n_threads: int = 2, **llama_kwargs: Any
    ) -> LlamaModel:
        """Load a GGUF file (blocking, ~0.3 s for the 0.5B model)."""
        from llama_cpp import Llama

        resolved = Path(path).expanduser().resolve()
        started = time.perf_counter()
        llama_kwargs.setdefault("verbose", False)
        llama = Llama(str(resolved), n_ctx=n_ctx, n_threads=n_threads, **llama_kwargs)
        cls.load_count += 1
        logger.info(
            f"Loaded {resolved.name} (n_ctx={n_ctx}, n_threads={n_threads}) "
            f"in {time.perf_counter() - started:.2f}s"
        )
        return cls(llama, path=resolved, n_ctx=llama.n_ctx(), n_threads=n_threads)

    @classmethod
    def load_shared(cls, path: str | Path, n_ctx: int = 2048, n_threads: int = 2) -> LlamaModel:
        """The process-wide model for `path`, loaded on first use."""
        resolved = Path(path).expanduser().resolve()
        with cls._shared_lock:
            model = cls._shared.get(resolved)
            if model is None:
                model = cls.load(resolved, n_ctx=n_ctx, n_threads=n_threads)
                cls._shared[resolved] = model
            elif (model.n_ctx, model.n_threads) != (n_ctx, n_threads):
                logger.warning(
                    f"{resolved.name} is already loaded with n_ctx={model.n_ctx}, "
                    f"n_threads={model.n_threads}; reusing it"
                )
            return model

    def warm_up(self) -> float:
        """Generate one token so the weights are paged in before the first caller's turn.

        The GGUF is memory-mapped: without this the first reply pays for reading ~0.5 GB.
        Returns the seconds it took.
        """
        started = time.perf_counter()
        with self.lock:
            self.llama.create_chat_completion(
                messages=[{"role": "user", "content": "Hello"}], max_tokens=1
            )
        return time.perf_counter() - started

    def count_tokens(self, text: str) -> int:
        """Token count of `text` (no BOS); needs only the vocabulary."""
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))


@dataclass
class _Request:
    """One generation: prompt messages, llama.cpp sampling arguments and context limits."""

    messages: list[dict[str, Any]]
    kwargs: dict[str, Any]
    reserve_tokens: int
    max_history_messages: int | None


@dataclass
class _Failure:
    error: BaseException


_DONE = object()


@dataclass(eq=False)
class _Generation:
    """State shared by one worker thread and the async iterator that reads from it."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    chunks: int = 0
    first_chunk_s: float | None = None

    def emit(self, item: Any) -> bool:
        """Hand `item` to the event loop; False once nobody is listening any more."""
        if self.cancelled.is_set():
            return False
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed
            self.cancelled.set()
            return False
        return True


_running: weakref.WeakSet[_Generation] = weakref.WeakSet()


@atexit.register
def _stop_running_generations() -> None:
    # Worker threads are daemons; stop them before the interpreter frees the model under them.
    generations = list(_running)
    for generation in generations:
        generation.cancelled.set()
    for generation in generations:
        if generation.thread is not None:
            generation.thread.join(timeout=2.0)


def _flatten_content(content: Any) -> str:
    """OpenAI content (a string or a list of parts) as plain text; non-text parts are dropped."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = [
        part.get("text", "")
        for part in content
        if isinstance(part, dict) and part.get("type") == "text"
    ]
    return "\n".join(parts)


def _normalize_messages(messages: list[Any]) -> list[dict[str, Any]]:
    normalized = []
    for message in messages:
        item = dict(message)
        item["content"] = _flatten_content(item.get("content"))
        normalized.append(item)
    return normalized


def _fit_messages(
    model: LlamaModel,
    messages: list[dict[str, Any]],
    *,
    reserve_tokens: int,
    max_history_messages: int | None = None,
    extra_drops: int = 0,
) -> list[dict[str, Any]]:
    """Drop the oldest non-system messages until the prompt fits n_ctx minus the reply."""
    system = [i for i, m in enumerate(messages) if m.get("role") == "system"]
    history = [i for i, m in enumerate(messages) if m.get("role") != "system"]
    if max_history_messages is not None and len(history) > max_history_messages:
        history = history[len(history) - max(max_history_messages, 1) :]
    history = history[min(extra_drops, max(len(history) - 1, 0)) :]

    def cost(i: int) -> int:
        return model.count_tokens(messages[i].get("content") or "") + _PER_MESSAGE_OVERHEAD_TOKENS

    budget = model.n_ctx - reserve_tokens - _PROMPT_SLACK_TOKENS
    costs = {i: cost(i) for i in system + history}
    total = sum(costs.values())
    # Always keep the newest message; a reply needs something to answer.
    while len(history) > 1 and total > budget:
        total -= costs[history.pop(0)]
    # A tool result whose call was dropped confuses the chat template.
    while len(history) > 1 and messages[history[0]].get("role") == "tool":
        total -= costs[history.pop(0)]
    kept = sorted(system + history)
    if len(kept) != len(messages):
        logger.debug(
            f"Dropped {len(messages) - len(kept)} old messages to fit n_ctx={model.n_ctx} "
            f"(prompt ~{total} tokens)"
        )
    return [messages[i] for i in kept]


def _to_chunk(raw: dict[str, Any], model_name: str) -> ChatCompletionChunk:
    data = dict(raw)
    data.setdefault("id", "chatcmpl-local")
    data.setdefault("object", "chat.completion.chunk")
    data.setdefault("created", int(time.time()))
    data.setdefault("model", model_name)
    data["choices"] = [
        {**choice, "index": choice.get("index", 0), "delta": choice.get("delta") or {}}
        for choice in data.get("choices") or []
    ]
    return ChatCompletionChunk.model_validate(data)


def _is_context_overflow(error: ValueError) -> bool:
    return "exceed context window" in str(error)


def _generate(model: LlamaModel, generation: _Generation, request: _Request) -> None:
    """Worker thread: run one generation under the model lock, streaming chunks to the loop."""
    queued = time.perf_counter()
    started = queued
    stopped_early = False
    try:
        with model.lock:
            started = time.perf_counter()
            for attempt in range(_MAX_OVERFLOW_RETRIES + 1):
                if generation.cancelled.is_set():
                    stopped_early = True
                    return
                messages = _fit_messages(
                    model,
                    request.messages,
                    reserve_tokens=request.reserve_tokens,
                    max_history_messages=request.max_history_messages,
                    extra_drops=attempt,
                )
                stream: Iterator[Any] = model.llama.create_chat_completion(  # type: ignore[assignment]
                    messages=messages, stream=True, **request.kwargs
                )
                try:
                    for raw in stream:
                        if generation.cancelled.is_set():
                            stopped_early = True
                            break
                        if generation.chunks == 0:
                            generation.first_chunk_s = time.perf_counter() - started
                        generation.chunks += 1
                        if not generation.emit(_to_chunk(raw, model.name)):
                            stopped_early = True
                            break
                    return
                except ValueError as error:
                    # llama.cpp raises this before the first token; retry with less history.
                    if generation.chunks or not _is_context_overflow(error):
                        raise
                    if attempt == _MAX_OVERFLOW_RETRIES or len(messages) <= 1:
                        raise
                    logger.debug(f"Prompt of {len(messages)} messages overflowed n_ctx; retrying")
                finally:
                    close = getattr(stream, "close", None)
                    if close is not None:
                        close()
    except Exception as error:  # re-raised by the async iterator
        generation.emit(_Failure(error))
    finally:
        generation.emit(_DONE)
        first = generation.first_chunk_s
        logger.debug(
            f"llama.cpp generation: waited {(started - queued) * 1000:.0f} ms for the model, "
            f"first chunk {'-' if first is None else f'{first * 1000:.0f} ms'}, "
            f"{generation.chunks} chunks in {(time.perf_counter() - started) * 1000:.0f} ms"
            f"{' (cancelled)' if stopped_early else ''}"
        )


class LlamaChunkStream:
    """Async iterator of `ChatCompletionChunk`s from one llama.cpp generation.

    The worker thread starts on the first `__anext__`. `aclose()` (which Pipecat calls when it
    is interrupted) stops the thread after the current token.
    """

    def __init__(self, model: LlamaModel, request: _Request) -> None:
        """Prepare a generation; nothing runs until iteration starts."""
        self._model = model
        self._request = request
        self._generation: _Generation | None = None
        self._finished = False

    @property
    def chunks_generated(self) -> int:
        """Chunks the worker has produced so far (including any not yet consumed)."""
        return self._generation.chunks if self._generation else 0

    @property
    def thread(self) -> threading.Thread | None:
        """The worker thread, once started."""
        return self._generation.thread if self._generation else None

    def __aiter__(self) -> LlamaChunkStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        if self._finished:
            raise StopAsyncIteration
        if self._generation is None:
            self._start()
        assert self._generation is not None
        item = await self._generation.queue.get()
        if item is _DONE:
            self._finished = True
            raise StopAsyncIteration
        if isinstance(item, _Failure):
            self._finished = True
            raise item.error
        return item

    async def aclose(self) -> None:
        """Stop the generation (idempotent); the worker releases the model within a token."""
        self._cancel()

    def _start(self) -> None:
        generation = _Generation(loop=asyncio.get_running_loop())
        generation.thread = threading.Thread(
            target=_generate,
            args=(self._model, generation, self._request),
            name="llama-cpp-generate",
            daemon=True,
        )
        self._generation = generation
        _running.add(generation)
        generation.thread.start()

    def _cancel(self) -> None:
        self._finished = True
        if self._generation is not None:
            self._generation.cancelled.set()

    def __del__(self) -> None:
        # An abandoned, unclosed stream must not keep the model busy.
        if self._generation is not None:
            self._generation.cancelled.set()


class LlamaCppLLMService(OpenAILLMService):
    """OpenAI-compatible Pipecat LLM service that runs a local GGUF through llama.cpp.

    Tool calling is not supported: tools in the context are ignored.
    """

    Settings = OpenAILLMService.Settings
    supports_developer_role = False
    supports_response_schema = True

    _create_chat_completion_params: ClassVar[frozenset[str] | None] = None

    def __init__(
        self,
        *,
        model: LlamaModel,
        settings: Settings | None = None,
        max_history_messages: int | None = None,
        reply_reserve_tokens: int = 256,
        **kwargs: Any,
    ) -> None:
        """Create the service.

        Args:
            model: The shared model, e.g. `LlamaModel.load_shared(qwen_gguf_path())`.
            settings: Sampling settings (temperature, max_tokens, top_p, top_k, seed, ...);
                `settings.extra` may carry other llama.cpp arguments (min_p, repeat_penalty,
                stop). `model` defaults to the GGUF file name.
            max_history_messages: Keep at most this many non-system messages (None: no cap).
            reply_reserve_tokens: Context kept free for the reply when max_tokens is unset.
            **kwargs: Passed on to `OpenAILLMService` / `LLMService`.
        """
        merged = self.Settings(model=model.name)
        if settings is not None:
            merged.apply_update(settings)
        self._llama_model = model
        self._max_history_messages = max_history_messages
        self._reply_reserve_tokens = reply_reserve_tokens
        self._warned_tools = False
        super().__init__(settings=merged, **kwargs)

    @property
    def model(self) -> LlamaModel:
        """The shared llama.cpp model this service generates with."""
        return self._llama_model

    def create_client(self, *args: Any, **kwargs: Any) -> None:
        """No HTTP client: generation runs in-process."""

    async def get_chat_completions(self, context: LLMContext) -> LlamaChunkStream:  # type: ignore[override]
        """Stream a reply to `context` as OpenAI `ChatCompletionChunk`s."""
        return await self._open_stream(context, assert_given(self._settings.system_instruction))

    async def run_inference(
        self,
        context: LLMContext,
        max_tokens: int | None = None,
        system_instruction: str | None = None,
        response_schema: dict[str, Any] | None = None,
    ) -> str | None:
        """One-shot, out-of-pipeline inference; returns the whole reply text."""
        overrides: dict[str, Any] = {}
        if max_tokens is not None:
            overrides["max_tokens"] = max_tokens
        schema = self._check_response_schema(response_schema)
        if schema is not None:
            overrides["response_format"] = {"type": "json_object", "schema": schema}
        instruction = system_instruction or assert_given(self._settings.system_instruction)
        stream = await self._open_stream(context, instruction, overrides)
        parts: list[str] = []
        try:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
        finally:
            await stream.aclose()
        return "".join(parts) or None

    async def _open_stream(
        self,
        context: LLMContext,
        system_instruction: str | None,
        overrides: dict[str, Any] | None = None,
    ) -> LlamaChunkStream:
        # Same message preparation as BaseOpenAILLMService.get_chat_completions, minus its
        # DEBUG log of the full context (message text may be personal data).
        adapter = self.get_llm_adapter()
        params_from_context = await adapter.get_llm_invocation_params(
            context,
            system_instruction=system_instruction,
            convert_developer_to_user=not self.supports_developer_role,
        )
        params = self.build_chat_completion_params(params_from_context)
        params.update(overrides or {})
        request = self._build_request(params)
        logger.debug(
            f"{self}: generating from {len(request.messages)} messages, "
            f"{sum(len(m['content']) for m in request.messages)} chars"
        )
        return LlamaChunkStream(self._llama_model, request)

    @classmethod
    def _llama_param_names(cls) -> frozenset[str]:
        if cls._create_chat_completion_params is None:
            from llama_cpp import Llama

            names = inspect.signature(Llama.create_chat_completion).parameters
            cls._create_chat_completion_params = frozenset(names) - {"self", "messages", "stream"}
        return cls._create_chat_completion_params

    def _build_request(self, params: dict[str, Any]) -> _Request:
        """Map OpenAI chat-completion params onto `Llama.create_chat_completion` arguments."""
        messages = _normalize_messages(list(params.get("messages") or []))

        for key in ("tools", "tool_choice"):
            if _given(params.pop(key, None)) and not self._warned_tools:
                self._warned_tools = True
                logger.warning(f"{self}: tool calling is not supported; tools are ignored")

        max_tokens = params.get("max_tokens")
        if not _given(max_tokens) and _given(params.get("max_completion_tokens")):
            params["max_tokens"] = params["max_completion_tokens"]
        if _given(self._settings.top_k) and "top_k" not in params:
            params["top_k"] = self._settings.top_k

        response_format = params.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema")
            params["response_format"] = {"type": "json_object", "schema": schema}

        accepted = self._llama_param_names()
        kwargs: dict[str, Any] = {"model": self._settings.model}
        for key, value in params.items():
            if key in _TRANSPORT_ONLY_PARAMS or not _given(value):
                continue
            if key in accepted:
                kwargs[key] = value
            else:
                logger.debug(f"{self}: ignoring parameter {key!r}, unknown to llama.cpp")

        max_tokens = kwargs.get("max_tokens")
        reserve = max_tokens if isinstance(max_tokens, int) else self._reply_reserve_tokens
        reserve = max(1, min(reserve, self._llama_model.n_ctx // 2))
        return _Request(
            messages=messages,
            kwargs=kwargs,
            reserve_tokens=reserve,
            max_history_messages=self._max_history_messages,
        )


__all__ = ["LlamaChunkStream", "LlamaCppLLMService", "LlamaModel"]
