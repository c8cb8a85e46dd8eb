"""Silero VAD and smart-turn v3 analyzers whose ONNX sessions are shared by every call.

Pipecat builds a new `onnxruntime.InferenceSession` per analyzer. An inference session is
thread-safe, and the per-call state (Silero's recurrent state, the turn audio buffer) lives
outside it, so each call gets its own analyzer around one process-wide session.
"""

from __future__ import annotations

from importlib import resources

import onnxruntime
from pipecat.audio.turn.smart_turn.base_smart_turn import BaseSmartTurn, SmartTurnParams
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams

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
    """Silero's per-stream state around a shared inference session."""

    def __init__(self, session: onnxruntime.InferenceSession):
        self.session = session
        self.reset_states()
        self.sample_rates = [8000, 16000]


class SharedSileroVADAnalyzer(SileroVADAnalyzer):
    """`SileroVADAnalyzer` that reuses the process-wide Silero session."""

    def __init__(self, *, sample_rate: int | None = None, params: VADParams | None = None):
        VADAnalyzer.__init__(self, sample_rate=sample_rate, params=params)
        self._model = _SharedSileroModel(silero_session())
        self._windows_since_reset = 0
        self._low_confidence_windows = 0


class SharedSmartTurnAnalyzerV3(LocalSmartTurnAnalyzerV3):
    """`LocalSmartTurnAnalyzerV3` that reuses the process-wide smart-turn session."""

    def __init__(self, *, cpu_count: int = 1, params: SmartTurnParams | None = None, **kwargs):
        BaseSmartTurn.__init__(self, params=params, **kwargs)
        self._log_data = False
        self._session = smart_turn_session(cpu_count)
