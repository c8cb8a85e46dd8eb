"""Offline speech services (faster-whisper STT, Piper TTS) over models shared by every call.

Pipecat's `WhisperSTTService` and `PiperTTSService` load their model in the constructor, once
per call. These subclasses take the process-wide model instead and change nothing else.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from faster_whisper import WhisperModel
from pipecat.frames.frames import Frame, TranscriptionFrame
from pipecat.services.piper.tts import PiperTTSService
from pipecat.services.tts_service import TTSService
from pipecat.services.whisper.stt import WhisperSTTService
from piper import PiperVoice

from bot.shared import shared

WHISPER_SAMPLE_RATE = 16000


class _GreedyWhisper:
    """A WhisperModel whose `transcribe` uses latency-friendly decoding for short turns."""

    def __init__(self, model: WhisperModel, beam_size: int):
        self._model = model
        self._beam_size = beam_size
        # exp(mean log-probability per token) of the last transcription's segments: 0..1.
        self.last_confidence: float | None = None

    @property
    def supported_languages(self) -> list[str]:
        return self._model.supported_languages

    def transcribe(self, audio: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("beam_size", self._beam_size)
        kwargs.setdefault("condition_on_previous_text", False)
        kwargs.setdefault("without_timestamps", True)
        self.last_confidence = None
        segments, info = self._model.transcribe(audio, **kwargs)
        return self._scored(segments), info

    def _scored(self, segments: Iterable[Any]) -> Iterator[Any]:
        logprobs = []
        for segment in segments:
            logprobs.append(segment.avg_logprob)
            yield segment
        if logprobs:
            self.last_confidence = min(1.0, math.exp(sum(logprobs) / len(logprobs)))


def load_whisper(model_dir: Path, compute_type: str, cpu_threads: int) -> WhisperModel:
    """A CTranslate2 Whisper model from a local folder, loaded once per process."""
    return shared(
        ("whisper", str(model_dir), compute_type, cpu_threads),
        lambda: WhisperModel(
            str(model_dir),
            device="cpu",
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=1,
            local_files_only=True,
        ),
    )


def warm_up_whisper(model: WhisperModel) -> None:
    """One transcription of a second of silence: the first one pays CTranslate2's set-up."""
    segments, _ = model.transcribe(np.zeros(WHISPER_SAMPLE_RATE, dtype=np.float32), beam_size=1)
    list(segments)


class SharedWhisperSTTService(WhisperSTTService):
    """`WhisperSTTService` over a model loaded once per process.

    Whisper reads 16 kHz audio. Phone calls run the pipeline at 8 kHz, so each finished segment
    is resampled once here (a whole segment at a time: no streaming resampler delay).
    """

    def __init__(self, *, model: WhisperModel, beam_size: int = 1, **kwargs: Any):
        self._shared_model = _GreedyWhisper(model, beam_size)
        super().__init__(device="cpu", **kwargs)

    def _load(self) -> None:
        self._model = self._shared_model  # type: ignore[assignment]
        unsupported = self._unsupported_language()
        if unsupported:
            raise ValueError(unsupported)

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        if self.sample_rate and self.sample_rate != WHISPER_SAMPLE_RATE:
            audio = to_whisper_rate(audio, self.sample_rate)
        async for frame in super().run_stt(audio):
            if isinstance(frame, TranscriptionFrame):
                frame.result = {"confidence": self._shared_model.last_confidence}
            yield frame


def to_whisper_rate(audio: bytes, rate: int) -> bytes:
    """16-bit PCM at `rate` to 16-bit PCM at 16 kHz."""
    samples = np.frombuffer(audio, dtype=np.int16).astype(np.float32)
    resampled = soxr.resample(samples, rate, WHISPER_SAMPLE_RATE, quality="HQ")
    return np.clip(resampled, -32768, 32767).astype(np.int16).tobytes()


def load_piper(voice_dir: Path, voice: str) -> PiperVoice:
    """A Piper voice from a local folder (`<voice>.onnx` + `.onnx.json`), loaded once."""
    model_path = voice_dir / f"{voice}.onnx"
    if not model_path.is_file():
        raise FileNotFoundError(f"Piper voice {voice!r} not found in {voice_dir}")
    return shared(("piper", str(model_path)), lambda: PiperVoice.load(model_path))


class SharedPiperTTSService(PiperTTSService):
    """`PiperTTSService` over a voice loaded once per process (nothing is downloaded)."""

    def __init__(self, *, voice: PiperVoice, voice_name: str, **kwargs: Any):
        settings = self.Settings(model=None, voice=voice_name, language=None)
        TTSService.__init__(
            self, push_start_frame=True, push_stop_frames=True, settings=settings, **kwargs
        )
        self._voice = voice
