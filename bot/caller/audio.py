"""Audio helpers for the test caller: WAV in/out, resampling, G.711 μ-law, speech end.

Everything works on mono int16 numpy arrays. No audioop (deprecated in 3.11, gone in 3.13).
"""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import soxr

FRAME_SECONDS = 0.02  # 20 ms, the telephony and WebRTC packet size

_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_FLOAT = 0x0003
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE

_ULAW_BIAS = 0x84
_ULAW_CLIP = 32635


class WavError(ValueError):
    """The file is not a WAV this module can read."""


# --------------------------------------------------------------------------------------------
# WAV


def _riff_chunks(data: bytes) -> dict[bytes, bytes]:
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RF64") or data[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file")
    chunks: dict[bytes, bytes] = {}
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = struct.unpack_from("<4sI", data, pos)
        body = data[pos + 8 : pos + 8 + size]
        chunks.setdefault(chunk_id, body)
        pos += 8 + size + (size & 1)  # chunks are word aligned
    return chunks


def _samples_to_float(raw: bytes, fmt_tag: int, bits: int) -> np.ndarray:
    """Interleaved samples → float64 in [-1, 1)."""
    if fmt_tag == _WAVE_FORMAT_FLOAT:
        dtype = {32: "<f4", 64: "<f8"}.get(bits)
        if dtype is None:
            raise WavError(f"unsupported float WAV with {bits} bits")
        return np.frombuffer(raw, dtype=dtype).astype(np.float64)
    if bits == 8:
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    if bits == 16:
        return np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    if bits == 24:
        b = np.frombuffer(raw[: len(raw) // 3 * 3], dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        return value.astype(np.float64) / float(1 << 23)
    if bits == 32:
        return np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)
    raise WavError(f"unsupported PCM WAV with {bits} bits")


def float_to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] → int16 with clipping."""
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)


def load_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a PCM (8/16/24/32-bit), float or WAVE_FORMAT_EXTENSIBLE file as mono int16.

    Returns `(samples, sample_rate)`; channels are averaged.
    """
    chunks = _riff_chunks(Path(path).read_bytes())
    fmt, raw = chunks.get(b"fmt "), chunks.get(b"data")
    if fmt is None or raw is None or len(fmt) < 16:
        raise WavError(f"{path}: missing fmt or data chunk")
    fmt_tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if fmt_tag == _WAVE_FORMAT_EXTENSIBLE and len(fmt) >= 26:
        fmt_tag = struct.unpack_from("<H", fmt, 24)[0]  # first two bytes of the sub-format GUID
    if fmt_tag not in (_WAVE_FORMAT_PCM, _WAVE_FORMAT_FLOAT) or channels < 1:
        raise WavError(f"{path}: unsupported WAV format tag {fmt_tag:#x}")
    frame_bytes = channels * (bits // 8)
    raw = raw[: len(raw) // frame_bytes * frame_bytes]
    samples = _samples_to_float(raw, fmt_tag, bits).reshape(-1, channels).mean(axis=1)
    return float_to_int16(samples), int(rate)


def write_wav(path: str | Path, pcm: np.ndarray, rate: int) -> None:
    """Write mono int16 samples as a 16-bit PCM WAV."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(rate))
        out.writeframes(np.asarray(pcm, dtype="<i2").tobytes())


def resample(pcm: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Resample mono int16 audio (soxr, high quality)."""
    pcm = np.asarray(pcm, dtype=np.int16)
    if in_rate == out_rate or pcm.size == 0:
        return pcm.copy()
    out = soxr.resample(pcm.astype(np.float32) / 32768.0, in_rate, out_rate, quality="HQ")
    return float_to_int16(np.asarray(out, dtype=np.float64))


# --------------------------------------------------------------------------------------------
# G.711 μ-law


def _build_ulaw_encode_table() -> np.ndarray:
    x = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(x < 0, 0x80, 0x00)
    magnitude = np.minimum(np.abs(x), _ULAW_CLIP) + _ULAW_BIAS  # 132 .. 32767
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7  # 0 .. 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    codes = ~(sign | (exponent << 4) | mantissa) & 0xFF
    # Index with the int16 value reinterpreted as uint16: 0..32767 then -32768..-1.
    return np.roll(codes.astype(np.uint8), -32768)


def _build_ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    magnitude = ((((u & 0x0F) << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


ULAW_ENCODE_TABLE = _build_ulaw_encode_table()  # 65536 entries, index: int16 viewed as uint16
ULAW_DECODE_TABLE = _build_ulaw_decode_table()  # 256 entries
ULAW_SILENCE = 0xFF  # encode(0)


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """Mono int16 → G.711 μ-law bytes."""
    samples = np.ascontiguousarray(pcm, dtype=np.int16)
    return ULAW_ENCODE_TABLE[samples.view(np.uint16)].tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    """G.711 μ-law bytes → mono int16."""
    return ULAW_DECODE_TABLE[np.frombuffer(data, dtype=np.uint8)]


# --------------------------------------------------------------------------------------------
# Levels


def rms(pcm: np.ndarray) -> float:
    """Root mean square of int16 samples (0 for an empty array)."""
    if len(pcm) == 0:
        return 0.0
    values = np.asarray(pcm, dtype=np.float64)
    return float(np.sqrt(np.mean(values * values)))


def frame_rms(pcm: np.ndarray, rate: int, frame_seconds: float = FRAME_SECONDS) -> np.ndarray:
    """RMS of each consecutive frame (the last, partial frame included)."""
    size = max(1, round(rate * frame_seconds))
    values = np.asarray(pcm, dtype=np.float64)
    count = -(-len(values) // size)
    padded = np.zeros(count * size)
    padded[: len(values)] = values
    squares = (padded * padded).reshape(count, size)
    lengths = np.full(count, size, dtype=np.float64)
    if count and len(values) % size:
        lengths[-1] = len(values) % size
    return np.sqrt(squares.sum(axis=1) / lengths)


def speech_end_offset(pcm: np.ndarray, rate: int, threshold: float | None = None) -> float:
    """Seconds from the start of `pcm` to the end of its last 20 ms frame above `threshold`.

    `threshold` is an RMS in int16 units; by default 2 % of the loudest frame's RMS, at least 64
    (about -54 dBFS), which ignores a recording's noise floor and a voice's trailing breath.
    Returns 0.0 when no frame is loud enough.
    """
    levels = frame_rms(pcm, rate)
    if levels.size == 0:
        return 0.0
    if threshold is None:
        threshold = max(64.0, 0.02 * float(levels.max()))
    loud = np.flatnonzero(levels > threshold)
    if loud.size == 0:
        return 0.0
    size = max(1, round(rate * FRAME_SECONDS))
    end_sample = min(len(pcm), (int(loud[-1]) + 1) * size)
    return end_sample / rate


def split_frames(pcm: np.ndarray, frame_samples: int) -> list[np.ndarray]:
    """Cut audio into frames of `frame_samples`, zero-padding the last one."""
    pcm = np.asarray(pcm, dtype=np.int16)
    count = -(-len(pcm) // frame_samples)
    padded = np.zeros(count * frame_samples, dtype=np.int16)
    padded[: len(pcm)] = pcm
    return list(padded.reshape(count, frame_samples)) if count else []
