"""Never silence: a TTS that sends no audio in time is replaced by a cached phrase.

Two small processors sit around the TTS service. `TTSInputWatch` (before it) starts the clock
when the TTS is given a whole sentence to say; `TTSStallGuard` (after it) stops the clock at the
first audio. When `timeout_secs` pass with no audio, the guard stops the stalled TTS (an
interruption sent to it alone), drops the rest of that response's text, and plays a short
phrase that ships with the package ("Sorry, I'm having trouble with my voice...") at the
transport's rate, so the caller always hears something and knows to go on.
"""

from __future__ import annotations

import asyncio
import functools
import re
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from loguru import logger
from pipecat.frames.frames import (
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from bot.call_events import CallEvents

STALL_PHRASE = "Sorry, I'm having trouble with my voice. Could you say that again?"
STALL_PHRASE_WAV = Path(__file__).parent / "assets" / "tts_stall_phrase.wav"
_SENTENCE_END = re.compile(r"[.!?](\s|$)")
_CHUNK_SECS = 0.1


@functools.cache
def stall_phrase_audio(sample_rate: int) -> bytes:
    """The cached phrase as 16-bit mono PCM at `sample_rate` (resampled once per rate)."""
    import soxr

    with wave.open(str(STALL_PHRASE_WAV), "rb") as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    if rate != sample_rate:
        resampled = soxr.resample(samples.astype(np.float32) / 32768.0, rate, sample_rate)
        samples = np.clip(resampled * 32768.0, -32768, 32767).astype(np.int16)
    return samples.tobytes()


@dataclass
class _Clock:
    """What the two processors share: when the TTS was given text and has not answered."""

    waiting_since: float | None = None
    abandoned: bool = False  # this response stalled: its remaining text is dropped
    text: str = ""


class TTSInputWatch(FrameProcessor):
    """Before the TTS: starts the clock when the TTS has a whole sentence to say."""

    def __init__(self, guard: TTSStallGuard):
        super().__init__(name="TTSInputWatch")
        self._guard = guard

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        clock = self._guard.clock
        if direction == FrameDirection.DOWNSTREAM:
            if isinstance(frame, InterruptionFrame):
                self._guard.reset()
            elif isinstance(frame, LLMFullResponseStartFrame):
                self._guard.reset()
            elif isinstance(frame, LLMTextFrame):
                if clock.abandoned:
                    return  # the stalled TTS is not given the rest of this response
                clock.text += frame.text
                if _SENTENCE_END.search(clock.text):
                    self._guard.arm()
            elif isinstance(frame, LLMFullResponseEndFrame):
                if clock.text.strip() and not clock.abandoned:
                    self._guard.arm()
            elif isinstance(frame, TTSSpeakFrame):
                self._guard.reset()
                self._guard.arm()
        await self.push_frame(frame, direction)


class TTSStallGuard(FrameProcessor):
    """After the TTS: plays the cached phrase when no audio came within `timeout_secs`."""

    def __init__(
        self,
        tts: FrameProcessor,
        *,
        timeout_secs: float,
        sample_rate: int,
        provider: str = "",
        events: CallEvents | None = None,
    ):
        super().__init__(name="TTSStallGuard")
        self._tts = tts
        self._provider = provider or tts.name
        self._events = events
        self._timeout = timeout_secs
        self._sample_rate = sample_rate
        self.clock = _Clock()
        self._audio_seen = False
        self._timer: asyncio.Task[None] | None = None
        # Every interruption sent to stop a stalled TTS: dropped when it comes back out, and
        # not the caller's barge-in, so the turn's observer (the latency breakdown) ignores it.
        self.private_interruptions: set[int] = set()
        self.input_watch = TTSInputWatch(self)

    def arm(self) -> None:
        """The TTS has something to say: audio must follow within the timeout."""
        if self._audio_seen or self.clock.waiting_since is not None:
            return
        self.clock.waiting_since = asyncio.get_running_loop().time()
        self._timer = asyncio.create_task(self._deadline())

    def reset(self) -> None:
        """A new response (or an interruption): nothing is awaited any more."""
        self._cancel_timer()
        self.clock = _Clock()
        self._audio_seen = False

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InterruptionFrame) and frame.id in self.private_interruptions:
            return  # ours, sent to the TTS alone
        if isinstance(frame, TTSAudioRawFrame) and direction == FrameDirection.DOWNSTREAM:
            self._audio_seen = True
            self.clock.waiting_since = None
            self._cancel_timer()
        await self.push_frame(frame, direction)

    async def _deadline(self) -> None:
        await asyncio.sleep(self._timeout)
        self._timer = None
        if self._audio_seen or self.clock.waiting_since is None:
            return
        if self._events is not None:
            self._events.tts_stalled(self._provider)
        logger.warning(
            f"{self._tts.name} sent no audio within {self._timeout:.1f} s: "
            "playing the cached phrase instead"
        )
        self.clock.abandoned = True
        self.clock.waiting_since = None
        interruption = InterruptionFrame()
        self.private_interruptions.add(interruption.id)
        await self._tts.queue_frame(interruption)
        await self._play_phrase()

    async def _play_phrase(self) -> None:
        audio = stall_phrase_audio(self._sample_rate)
        chunk = int(self._sample_rate * _CHUNK_SECS) * 2
        await self.push_frame(TTSStartedFrame())
        await self.push_frame(TTSTextFrame(STALL_PHRASE, "sentence"))
        for start in range(0, len(audio), chunk):
            await self.push_frame(
                TTSAudioRawFrame(audio[start : start + chunk], self._sample_rate, 1)
            )
        await self.push_frame(TTSStoppedFrame())
        self._audio_seen = True

    async def cleanup(self) -> None:
        self._cancel_timer()
        await super().cleanup()
