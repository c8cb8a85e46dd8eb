"""Silero VAD and smart-turn v3 analyzers whose ONNX sessions are shared by every call.

Pipecat builds a new `onnxruntime.InferenceSession` per analyzer. An inference session is
thread-safe, and the per-call state (Silero's recurrent state, the turn audio buffer) lives
outside it, so each call gets its own analyzer around one process-wide session.

Silero scores a window 31 times a second per call, and one window takes ~0.3 ms: less than the
hop to a worker thread that Pipecat makes for every 20 ms frame (a future, a thread wake-up and
a loop wake-up). So windows are scored on the event loop, and every call's windows that are
ready in the same turn of the loop are scored in one `session.run` (`SileroBatcher`): a batch
of 8 costs 0.06 ms a window against 0.16 ms alone, and a window never waits for a batch to
fill (one alone is scored at the next turn of the loop). The end-of-turn model (~80 ms a
decision) runs off the loop on one process-wide thread, at a lower priority unless local models
share the core (`turn_model_yields`), so a burst of decisions queues there instead of starving
every call's audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import numpy as np
import onnxruntime
from loguru import logger
from pipecat.audio.turn.smart_turn.base_smart_turn import BaseSmartTurn, SmartTurnParams
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams, VADState

from bot.shared import shared


def _bundled(package: str, name: str) -> str:
    return str(resources.files(package).joinpath(name))


def silero_session() -> onnxruntime.InferenceSession:
    """The bundled Silero VAD model, loaded once per process (one thread: ~0.3 ms a window)."""

    def load() -> onnxruntime.InferenceSession:
        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        return onnxruntime.InferenceSession(
            _bundled("pipecat.audio.vad.data", "silero_vad.onnx"),
            providers=["CPUExecutionProvider"],
            sess_options=options,
        )

    return shared(("silero-vad",), load)


def smart_turn_session(cpu_count: int = 1) -> onnxruntime.InferenceSession:
    """The bundled smart-turn v3 model, loaded once per process."""

    def load() -> onnxruntime.InferenceSession:
        options = onnxruntime.SessionOptions()
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = cpu_count
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        return onnxruntime.InferenceSession(
            _bundled("pipecat.audio.turn.smart_turn.data", "smart-turn-v3.2-cpu.onnx"),
            sess_options=options,
        )

    return shared(("smart-turn-v3", cpu_count), load)


class _SharedSileroModel(SileroOnnxModel):
    """Silero's per-stream state around a shared inference session, scoring one stream's
    windows with the least Python around `session.run` (Pipecat's generic call validates,
    reshapes and concatenates on every window: about half of its time)."""

    def __init__(self, session: onnxruntime.InferenceSession):
        self.session = session
        self._rates = {rate: np.array(rate, dtype=np.int64) for rate in (8000, 16000)}
        self._input: np.ndarray | None = None
        self.reset_states()
        self.sample_rates = [8000, 16000]

    def reset_states(self, batch_size: int = 1) -> None:
        super().reset_states(batch_size)
        self._input = None  # the context (the previous window's tail) starts as silence
        self.resets = getattr(self, "resets", 0) + 1

    def fits(self, x: np.ndarray, sr: int) -> bool:
        """Whether `x` is one mono window at a rate the lean path takes."""
        return sr in self._rates and x.ndim == 1 and x.shape[-1] == (512 if sr == 16000 else 256)

    def load_window(self, x: np.ndarray, sr: int) -> np.ndarray:
        """This stream's model input for window `x`: the previous window's tail, then `x`."""
        context = 64 if sr == 16000 else 32
        model_input = self._input
        if model_input is None or self._last_sr != sr:
            if self._last_sr and self._last_sr != sr:
                super().reset_states()
            model_input = self._input = np.zeros((1, context + len(x)), dtype=np.float32)
            self._last_sr, self._last_batch_size = sr, 1
        model_input[0, context:] = x
        return model_input

    def keep(self, state: np.ndarray, sr: int) -> None:
        """Carries the stream on after a window: the recurrent state and the context."""
        context = 64 if sr == 16000 else 32
        self._state = state
        self._input[0, :context] = self._input[0, -context:]

    def __call__(self, x: np.ndarray, sr: int) -> np.ndarray:
        if not self.fits(x, sr):
            return super().__call__(x, sr)  # Pipecat's checks and errors
        model_input = self.load_window(x, sr)
        out, state = self.session.run(
            None, {"input": model_input, "state": self._state, "sr": self._rates[sr]}
        )
        self.keep(state, sr)
        return out


class SileroBatcher:
    """Scores the windows of every call on one event loop in as few `session.run`s as possible.

    `score()` queues a stream's window and returns a future; at the next turn of the loop every
    queued window (one per stream: each stream waits for its score before sending the next) is
    scored in one batch, each row with its own stream's context and recurrent state, which is
    how the Silero model is built to run. A batch's error fails its windows' futures."""

    def __init__(self, session: onnxruntime.InferenceSession):
        self._session = session
        self._queued: dict[int, list[tuple[_SharedSileroModel, np.ndarray, asyncio.Future]]] = {}
        self._flush_scheduled = False
        self.batches = 0
        self.windows = 0

    def score(self, model: _SharedSileroModel, x: np.ndarray, sr: int) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queued.setdefault(sr, []).append((model, x, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        queued, self._queued = self._queued, {}
        for sr, windows in queued.items():
            try:
                self._run(sr, windows)
            except Exception as error:  # a model error fails this batch's windows, not the loop
                for _, _, future in windows:
                    if not future.done():
                        future.set_exception(error)

    def _run(self, sr: int, windows: list) -> None:
        rate = windows[0][0]._rates[sr]
        inputs = np.concatenate([model.load_window(x, sr) for model, x, _ in windows])
        states = np.concatenate([model._state for model, _, _ in windows], axis=1)
        out, state = self._session.run(None, {"input": inputs, "state": states, "sr": rate})
        self.batches += 1
        self.windows += len(windows)
        for row, (model, _, future) in enumerate(windows):
            model.keep(state[:, row : row + 1, :].copy(), sr)
            if not future.done():
                future.set_result(out[row : row + 1])


_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SileroBatcher] = (
    weakref.WeakKeyDictionary()
)


def silero_batcher() -> SileroBatcher:
    """The running loop's batcher around the process-wide Silero session."""
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    if batcher is None:
        batcher = _batchers[loop] = SileroBatcher(silero_session())
    return batcher


class SharedSileroVADAnalyzer(SileroVADAnalyzer):
    """`SileroVADAnalyzer` that reuses the process-wide Silero session and scores its windows
    on the event loop, batched with the other calls' windows.

    The windows a buffer completes are scored first (awaiting the batch), then Pipecat's own
    `_run_analyzer` decides with those scores. Its model reset (after 2 s of quiet) can fall
    between two windows of one buffer; the windows after it are then scored again from the
    reset state, as Pipecat would have, so the decisions are Pipecat's exactly."""

    def __init__(self, *, sample_rate: int | None = None, params: VADParams | None = None):
        VADAnalyzer.__init__(self, sample_rate=sample_rate, params=params)
        self._model = _SharedSileroModel(silero_session())
        self._windows_since_reset = 0
        self._low_confidence_windows = 0
        self._scores: deque[np.ndarray] = deque()

    async def analyze_audio(self, buffer: bytes) -> VADState:
        size = self._vad_frames_num_bytes
        complete = (len(self._vad_buffer) + len(buffer)) // size
        if complete:
            await self._score_windows((self._vad_buffer + buffer)[: complete * size], size)
        try:
            return self._run_analyzer(buffer)
        finally:
            self._scores.clear()

    async def _score_windows(self, audio: bytes, size: int) -> None:
        samples = np.frombuffer(audio, np.int16).astype(np.float32) / 32768.0
        step = size // 2
        batcher = silero_batcher()
        try:
            for start in range(0, len(samples), step):
                window = samples[start : start + step]
                if not self._model.fits(window, self.sample_rate):
                    break  # Pipecat's path scores (and reports) it
                self._scores.append(await batcher.score(self._model, window, self.sample_rate))
        except Exception as error:
            logger.error(f"Silero VAD batch failed, scoring this call's windows alone: {error}")
            self._scores.clear()

    def voice_confidence(self, buffer: bytes) -> float:
        if not self._scores:
            return super().voice_confidence(buffer)
        confidence = self._scores.popleft()[0]
        resets = self._model.resets
        self._maybe_reset_model(confidence.item())
        if self._model.resets != resets:
            self._scores.clear()  # the next windows are scored again, from the reset state
        return confidence


_turn_model_niceness = 10


def turn_model_yields(yields: bool) -> None:
    """Whether the end-of-turn thread runs at nice 10, below the event loop (the default), or
    at the loop's priority. Lowered, a burst of decisions waits instead of starving every
    call's audio (BENCHMARKS.md, "Capacity": at 15 calls, +86 ms p95 and no gaps against +187
    ms and 10 gaps). But beside local models (Whisper, llama.cpp, Piper, whose threads run at
    normal priority) a lowered decision would wait behind a whole transcription, so a pipeline
    with them keeps it level. Set at start-up, before the first decision starts the thread."""
    global _turn_model_niceness
    _turn_model_niceness = 10 if yields else 0


def _set_thread_priority() -> None:
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _turn_model_niceness)


# One thread for every call's end-of-turn decisions: they queue instead of each call's own
# thread taking a share of the core from the event loop while it runs (~80 ms a decision).
_TURN_MODEL_EXECUTOR = ThreadPoolExecutor(
    max_workers=1, thread_name_prefix="smart-turn", initializer=_set_thread_priority
)


class SharedSmartTurnAnalyzerV3(LocalSmartTurnAnalyzerV3):
    """`LocalSmartTurnAnalyzerV3` that reuses the process-wide smart-turn session and runs on
    the process-wide end-of-turn thread."""

    def __init__(self, *, cpu_count: int = 1, params: SmartTurnParams | None = None, **kwargs):
        BaseSmartTurn.__init__(self, params=params, **kwargs)
        self._log_data = False
        self._session = smart_turn_session(cpu_count)

    @property
    def _model_executor(self) -> ThreadPoolExecutor:
        return _TURN_MODEL_EXECUTOR  # never `self._executor`: a call's clean-up must not stop it
