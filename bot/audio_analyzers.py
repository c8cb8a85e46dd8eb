"""Silero VAD and smart-turn v3 analyzers whose ONNX sessions are shared by every call.

Pipecat builds a new `onnxruntime.InferenceSession` per analyzer. An inference session is
thread-safe, and the per-call state (Silero's recurrent state, the turn audio buffer) lives
outside it, so each call gets its own analyzer around one process-wide session.

Silero scores a window 31 times a second per call, and one window takes ~0.3 ms: less than the
hop to a worker thread that Pipecat makes for every 20 ms frame (a future, a thread wake-up and
a loop wake-up). So windows are scored on the event loop. The end-of-turn model (~80 ms a
decision) runs off the loop on one process-wide thread, at a lower priority unless local models
share the core (`turn_model_yields`), so a burst of decisions queues there instead of starving
every call's audio.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import numpy as np
import onnxruntime
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

    def __call__(self, x: np.ndarray, sr: int) -> np.ndarray:
        window = x.shape[-1]
        context = 64 if sr == 16000 else 32
        if window != (512 if sr == 16000 else 256) or sr not in self._rates or x.ndim != 1:
            return super().__call__(x, sr)  # Pipecat's checks and errors
        model_input = self._input
        if model_input is None or self._last_sr != sr:
            if self._last_sr and self._last_sr != sr:
                super().reset_states()
            model_input = self._input = np.zeros((1, context + window), dtype=np.float32)
            self._last_sr, self._last_batch_size = sr, 1
        model_input[0, context:] = x
        out, self._state = self.session.run(
            None, {"input": model_input, "state": self._state, "sr": self._rates[sr]}
        )
        model_input[0, :context] = model_input[0, -context:]
        return out


class SharedSileroVADAnalyzer(SileroVADAnalyzer):
    """`SileroVADAnalyzer` that reuses the process-wide Silero session and scores its windows
    on the event loop."""

    def __init__(self, *, sample_rate: int | None = None, params: VADParams | None = None):
        VADAnalyzer.__init__(self, sample_rate=sample_rate, params=params)
        self._model = _SharedSileroModel(silero_session())
        self._windows_since_reset = 0
        self._low_confidence_windows = 0

    async def analyze_audio(self, buffer: bytes) -> VADState:
        return self._run_analyzer(buffer)


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
