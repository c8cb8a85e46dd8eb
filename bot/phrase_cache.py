"""Pre-synthesised fixed phrases: the greeting, the idle prompt and the goodbye.

Every call of a pipeline says the same greeting (and maybe the same idle prompt and goodbye).
The first time a phrase is said at a given output rate it goes through the TTS service as any
`TTSSpeakFrame` does, and its audio is recorded on the way out; later calls play the recording
without asking the provider.

Two small processors share one `CallPhrases` per call:

- `PhraseGate`, just before the TTS service (and its stall watch): a `TTSSpeakFrame` of a fixed
  phrase that is cached is swallowed and replaced by a `_PlayCachedPhrase` marker. The TTS
  service queues a frame it does not know behind the audio it is still producing, so the
  marker comes out in order (a goodbye after the reply still being spoken; the `EndFrame`
  after the goodbye). A phrase that is not cached passes on to the TTS, and the recorder is
  told to expect it. Upstream `ErrorFrame`s from the TTS pass the gate: a recording open then
  is spoiled.
- `PhrasePlayer`, just after the TTS service: records the audio of the expected phrase's TTS
  context, from its `TTSStartedFrame` to its `TTSStoppedFrame` (frames carry the context id
  the TTS service gave the `TTSSpeakFrame`), and stores it in the process-wide cache only if
  the context ended cleanly (no interruption, no error, no cancel, the text spoken was the
  phrase's and the audio length is plausible). On the marker it plays the recording as the
  TTS would: the segment announcement (`AggregatedTextFrame`, will_be_spoken), a
  `TTSStartedFrame`, 40 ms `TTSAudioRawFrame`s, the `TTSTextFrame` (the transcript, the RTVI
  bot-tts-text and the assistant context read it), an `LLMAssistantPushAggregationFrame` when
  the text goes to the context, and a `TTSStoppedFrame`, all under a fresh context id.
  A barge-in stops it like TTS audio: the output transport drops what it has queued on an
  `InterruptionFrame`.

The cache key is (pipeline identity, phrase text, the TTS options that change the voice,
output sample rate): a phrase recorded at 8 kHz for a phone call is not played to WebRTC.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from pipecat.frames.frames import (
    AggregatedTextFrame,
    CancelFrame,
    DataFrame,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    LLMAssistantPushAggregationFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

CHUNK_SECS = 0.04  # cached audio goes out in 40 ms frames
MAX_ENTRIES = 64  # fixed phrases: a handful per pipeline and rate
# Options that do not change the voice (and a secret that has no business in a key).
_NOT_VOICE = frozenset({"api_key", "enable_logging", "auto_mode", "stall_timeout_secs"})


def _normal(text: str) -> str:
    """Letters and digits only: word timestamps may space or punctuate the text their way."""
    return re.sub(r"[\W_]+", "", text).casefold()


@dataclass(frozen=True)
class CachedPhrase:
    """One phrase's audio (16-bit mono PCM) as the TTS service produced it."""

    text: str
    audio: bytes
    sample_rate: int
    num_channels: int = 1

    @property
    def seconds(self) -> float:
        return len(self.audio) / (2 * self.num_channels * self.sample_rate)


def plausible_seconds(text: str, seconds: float) -> bool:
    """Audio length that a complete rendition of `text` can have (generous bounds)."""
    chars = len(text.strip())
    return max(0.2, 0.02 * chars) <= seconds <= 2.0 + 0.5 * chars


class PhraseCache:
    """Process-wide: phrase audio by (pipeline, text, voice settings, sample rate)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: OrderedDict[tuple[str, str, str, int], CachedPhrase] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def get(self, key: tuple[str, str, str, int]) -> CachedPhrase | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: tuple[str, str, str, int], phrase: CachedPhrase) -> None:
        with self._lock:
            self._entries[key] = phrase
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def texts(self) -> list[str]:
        with self._lock:
            return [key[1] for key in self._entries]


CACHE = PhraseCache()


def voice_fingerprint(provider: str, options: Any) -> str:
    """The TTS provider and the options that change its voice, hashed (no key in clear)."""
    if hasattr(options, "model_dump"):
        values = options.model_dump()
    elif isinstance(options, dict):
        values = dict(options)
    else:
        values = {"repr": repr(options)}
    voice = {k: v for k, v in values.items() if k not in _NOT_VOICE}
    blob = json.dumps({"provider": provider, **voice}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class _Recording:
    context_id: str | None
    audio: bytearray = field(default_factory=bytearray)
    sample_rate: int = 0
    num_channels: int = 1
    words: list[str] = field(default_factory=list)
    spoiled: bool = False


@dataclass
class _PlayCachedPhrase(DataFrame):
    """The gate's stand-in for a cached `TTSSpeakFrame`; queued through the TTS in order."""

    phrase: CachedPhrase | None = None
    speak: TTSSpeakFrame | None = None


class CallPhrases:
    """One call's view of the cache: the gate and the player around its TTS service."""

    def __init__(
        self,
        *,
        pipeline: str,
        voice: str,
        sample_rate: int,
        phrases: list[str],
        cache: PhraseCache = CACHE,
        metrics_label: str | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.voice = voice
        self.sample_rate = sample_rate
        self.phrases = {p for p in phrases if p and p.strip()}
        self.cache = cache
        self.metrics_label = metrics_label
        self.hits = 0
        self.misses = 0
        self.stored = 0
        self.expected: set[str] = set()  # phrases on their way through the TTS
        self.recordings: dict[str | None, _Recording] = {}
        self.gate = PhraseGate(self)
        self.player = PhrasePlayer(self)

    def key(self, text: str) -> tuple[str, str, str, int]:
        return (self.pipeline, text, self.voice, self.sample_rate)

    def lookup(self, text: str) -> CachedPhrase | None:
        entry = self.cache.get(self.key(text))
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        self._count("hit" if entry is not None else "miss")
        return entry

    def _count(self, result: str) -> None:
        if self.metrics_label is None:
            return
        from bot import metrics

        metrics.PHRASE_CACHE.labels(self.metrics_label, result).inc()

    def spoil_all(self) -> None:
        for recording in self.recordings.values():
            recording.spoiled = True

    def forget_all(self) -> None:
        """An interruption: what was being synthesised was cut off (and is not awaited)."""
        self.recordings.clear()
        self.expected.clear()

    def finish(self, context_id: str | None) -> None:
        recording = self.recordings.pop(context_id, None)
        if recording is None or recording.spoiled or not recording.sample_rate:
            return
        spoken = " ".join(w.strip() for w in recording.words if w.strip())
        text = next((p for p in self.expected if _normal(p) == _normal(spoken)), None)
        if text is None:
            return  # not one of ours (an LLM reply spoken meanwhile), or cut short
        phrase = CachedPhrase(
            text, bytes(recording.audio), recording.sample_rate, recording.num_channels
        )
        if not plausible_seconds(text, phrase.seconds):
            return
        self.expected.discard(text)
        self.cache.put(self.key(text), phrase)
        self.stored += 1


class PhraseGate(FrameProcessor):
    """Before the TTS: a cached fixed phrase does not reach the provider."""

    def __init__(self, phrases: CallPhrases) -> None:
        super().__init__(name="PhraseGate")
        self._phrases = phrases

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        phrases = self._phrases
        if (
            direction == FrameDirection.DOWNSTREAM
            and isinstance(frame, TTSSpeakFrame)
            and frame.text in phrases.phrases
        ):
            cached = phrases.lookup(frame.text)
            if cached is not None:
                marker = _PlayCachedPhrase(phrase=cached, speak=frame)
                marker.interruptible = frame.interruptible
                await self.push_frame(marker, direction)
                return
            phrases.expected.add(frame.text)
        elif direction == FrameDirection.UPSTREAM and isinstance(frame, ErrorFrame):
            phrases.spoil_all()  # the TTS (or a stage after it) failed mid-phrase
        await self.push_frame(frame, direction)


class PhrasePlayer(FrameProcessor):
    """After the TTS: records a fixed phrase's first rendition, plays the cached ones."""

    def __init__(self, phrases: CallPhrases) -> None:
        super().__init__(name="PhrasePlayer")
        self._phrases = phrases

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            if isinstance(frame, _PlayCachedPhrase):
                if frame.phrase is not None and frame.speak is not None:
                    await self._play(frame.phrase, frame.speak)
                return
            self._record(frame)
        elif isinstance(frame, ErrorFrame):
            self._phrases.spoil_all()
        await self.push_frame(frame, direction)

    def _record(self, frame: Frame) -> None:
        phrases = self._phrases
        if isinstance(frame, TTSStartedFrame):
            if phrases.expected:
                phrases.recordings[frame.context_id] = _Recording(frame.context_id)
        elif isinstance(frame, TTSAudioRawFrame):
            recording = phrases.recordings.get(frame.context_id)
            if recording is None and frame.context_id is None and len(phrases.recordings) == 1:
                recording = next(iter(phrases.recordings.values()))
            if recording is None:
                return
            if recording.sample_rate and recording.sample_rate != frame.sample_rate:
                recording.spoiled = True
            recording.sample_rate = frame.sample_rate
            recording.num_channels = frame.num_channels
            recording.audio += frame.audio
        elif isinstance(frame, TTSTextFrame):
            recording = phrases.recordings.get(frame.context_id)
            if recording is not None:
                recording.words.append(frame.text)
        elif isinstance(frame, TTSStoppedFrame):
            phrases.finish(frame.context_id)
        elif isinstance(frame, InterruptionFrame | CancelFrame):
            phrases.forget_all()  # whatever was being synthesised was cut off

    async def _play(self, phrase: CachedPhrase, speak: TTSSpeakFrame) -> None:
        """Push what the TTS service pushes for a `TTSSpeakFrame`, from the recording."""
        context_id = str(uuid.uuid4())
        interruptible = speak.interruptible

        def mark(frame: Frame) -> Frame:
            frame.interruptible = interruptible
            return frame

        announce = AggregatedTextFrame(
            speak.text, speak.text_type, context_id=context_id, raw_text=speak.text
        )
        announce.append_to_context = False
        announce.will_be_spoken = True
        await self.push_frame(mark(announce))
        started = TTSStartedFrame(context_id=context_id, append_to_context=speak.append_to_context)
        await self.push_frame(mark(started))
        step = max(2, int(phrase.sample_rate * CHUNK_SECS) * 2 * phrase.num_channels)
        audio = phrase.audio
        for start in range(0, len(audio), step):
            chunk = TTSAudioRawFrame(
                audio[start : start + step],
                phrase.sample_rate,
                phrase.num_channels,
                context_id=context_id,
            )
            await self.push_frame(mark(chunk))
        text = TTSTextFrame(
            speak.text, text_type=speak.text_type, context_id=context_id, segment_id=announce.id
        )
        text.will_be_spoken = True
        text.append_to_context = speak.append_to_context
        await self.push_frame(mark(text))
        if speak.append_to_context:
            await self.push_frame(mark(LLMAssistantPushAggregationFrame()))
        await self.push_frame(mark(TTSStoppedFrame(context_id=context_id)))


def for_call(loaded: Any, call: Any) -> CallPhrases:
    """The phrase cache of one call of `loaded` (a `LoadedPipeline`), on `call`'s output rate."""
    config = loaded.config
    policy = config.call
    return CallPhrases(
        pipeline=f"{config.name}@{loaded.path}",
        voice=voice_fingerprint(config.tts.provider, loaded.options.get("tts")),
        sample_rate=call.audio_out_sample_rate,
        phrases=[config.greeting or "", policy.idle_prompt or "", policy.goodbye or ""],
        metrics_label=call.pipeline,
    )
