"""Transport-independent bookkeeping for the test caller.

`BotAudioLog` keeps the bot's audio as the caller hears it: each received chunk gets a playback
start on the caller's monotonic clock. `OutgoingAudio` is the caller's microphone: a queue of
20 ms frames, silence when empty, that remembers when each queued frame went out.
`run_call_flow` is the greeting → speech → reply script both transports share.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from bot.caller.audio import rms, write_wav

POLL_SECONDS = 0.01


@dataclass
class AudioChunk:
    """A piece of bot audio, positioned on the caller's monotonic clock."""

    arrival: float  # time.monotonic() when it arrived
    start: float  # when it starts playing (== arrival unless a playback buffer delays it)
    pcm: np.ndarray  # mono int16; shortened when a `clear` cut it
    rate: int
    audible: bool

    @property
    def duration(self) -> float:
        return len(self.pcm) / self.rate

    @property
    def end(self) -> float:
        return self.start + self.duration


@dataclass
class BotAudioLog:
    """Every chunk of bot audio received, with playback times and `clear` handling.

    buffered=True models Twilio's playback buffer: a chunk plays after the previous one ends,
    so a server sending faster than real time is heard in real time, and a `clear` drops what
    has not been played yet. buffered=False (WebRTC): a chunk plays when it arrives.
    A chunk is `audible` when its RMS is above `threshold` (int16 units).
    """

    threshold: float
    buffered: bool = False
    chunks: list[AudioChunk] = field(default_factory=list)
    closed: bool = False  # the remote end hung up
    _play_end: float = 0.0

    def add(self, pcm: np.ndarray, rate: int, now: float | None = None) -> AudioChunk:
        now = time.monotonic() if now is None else now
        start = max(now, self._play_end) if self.buffered else now
        chunk = AudioChunk(now, start, pcm, rate, rms(pcm) > self.threshold)
        self.chunks.append(chunk)
        self._play_end = max(self._play_end, chunk.end)
        return chunk

    def clear(self, now: float | None = None) -> float:
        """Discard audio not played by `now`; returns the seconds discarded."""
        now = time.monotonic() if now is None else now
        dropped = 0.0
        kept: list[AudioChunk] = []
        for chunk in self.chunks:
            if chunk.start >= now:
                dropped += chunk.duration
                continue
            if chunk.end > now:
                keep = round((now - chunk.start) * chunk.rate)
                dropped += (len(chunk.pcm) - keep) / chunk.rate
                chunk.pcm = chunk.pcm[:keep]
            kept.append(chunk)
        self.chunks = kept
        self._play_end = min(self._play_end, now)
        return dropped

    @property
    def play_end(self) -> float:
        """When everything received so far has finished playing."""
        return self._play_end

    def first_audible(self, after: float) -> AudioChunk | None:
        return next((c for c in self.chunks if c.audible and c.start >= after), None)

    def last_audible_end(self) -> float | None:
        return next((c.end for c in reversed(self.chunks) if c.audible), None)

    def underruns(self, since: float, until: float | None = None) -> list[float]:
        """Silences in playback, in seconds, where a chunk arrived after the previous one had
        finished playing, between `since` and `until` (arrival times). A bot that streams
        in real time shows none inside an utterance; a starved event loop shows many."""
        gaps: list[float] = []
        played_until: float | None = None
        for chunk in self.chunks:
            if chunk.arrival < since or (until is not None and chunk.arrival > until):
                continue
            if played_until is not None and chunk.arrival > played_until:
                gaps.append(chunk.arrival - played_until)
            played_until = max(played_until or 0.0, chunk.end)
        return gaps

    def span(self, start: float, end: float) -> list[AudioChunk]:
        """Chunks starting in [start, end)."""
        return [c for c in self.chunks if start <= c.start < end]

    def render(self, start: float, end: float) -> np.ndarray:
        """The audio heard from `start` to `end`, gaps between chunks filled with silence."""
        chunks = self.span(start, end)
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        rate = chunks[0].rate
        parts: list[np.ndarray] = []
        cursor = chunks[0].start
        for chunk in chunks:
            gap = round((chunk.start - cursor) * rate)
            if self.buffered and gap > 0:
                parts.append(np.zeros(gap, dtype=np.int16))
            parts.append(chunk.pcm)
            cursor = max(cursor, chunk.start) + chunk.duration
        return np.concatenate(parts).astype(np.int16)

    async def wait_audible(self, after: float, max_wait: float) -> AudioChunk | None:
        """First audible chunk that starts at or after `after`, waiting up to `max_wait` s."""
        deadline = time.monotonic() + max_wait
        while True:
            chunk = self.first_audible(after)
            if chunk is not None and chunk.start <= time.monotonic():
                return chunk
            if self.closed or time.monotonic() >= deadline:
                return chunk
            await asyncio.sleep(POLL_SECONDS)

    async def wait_quiet(self, gap: float, max_wait: float) -> bool:
        """Wait until no audible bot audio has played for `gap` seconds; False on timeout."""
        deadline = time.monotonic() + max_wait
        while True:
            now = time.monotonic()
            last = self.last_audible_end()
            if last is None or now - last >= gap or self.closed:
                return True
            if now >= deadline:
                return False
            await asyncio.sleep(POLL_SECONDS)


class HearsTheBot:
    """The waits both callers share; needs `log` (BotAudioLog) and `connected_at`."""

    log: BotAudioLog
    connected_at: float | None

    async def wait_for_bot_audio(
        self, after: float | None = None, max_wait: float = 10.0
    ) -> AudioChunk | None:
        """First bot audio playing at or after `after` (default: since connect)."""
        since = after if after is not None else (self.connected_at or 0.0)
        return await self.log.wait_audible(since, max_wait)

    async def wait_for_bot_quiet(self, gap: float = 0.7, max_wait: float = 30.0) -> bool:
        """Until no bot audio has played for `gap` seconds; False on timeout."""
        return await self.log.wait_quiet(gap, max_wait)


@dataclass
class Playback:
    """Audio queued on an `OutgoingAudio`; `sent_at[i]` is when frame i went out."""

    frames: int
    sent_at: list[float] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class OutgoingAudio:
    """The caller's microphone: fixed-size frames, silence when nothing is queued."""

    def __init__(self, frame_samples: int, silence: np.ndarray | bytes) -> None:
        self.frame_samples = frame_samples
        self.silence = silence
        self._queue: deque[tuple[np.ndarray | bytes, Playback, bool]] = deque()

    def enqueue(self, frames: list[np.ndarray] | list[bytes]) -> Playback:
        playback = Playback(len(frames))
        for index, frame in enumerate(frames):
            self._queue.append((frame, playback, index == len(frames) - 1))
        if not frames:
            playback.done.set()
        return playback

    def next_frame(self, now: float) -> np.ndarray | bytes:
        """The frame to send at `now` (records its time on its `Playback`)."""
        if not self._queue:
            return self.silence
        frame, playback, last = self._queue.popleft()
        playback.sent_at.append(now)
        if last:
            playback.done.set()
        return frame

    def abort(self) -> None:
        """Drop queued frames and release whoever waits on them (the connection is gone)."""
        for _, playback, _ in self._queue:
            playback.done.set()
        self._queue.clear()

    @property
    def pending(self) -> int:
        return len(self._queue)


def time_of_offset(sent_at: list[float], offset: float, frame_seconds: float) -> float | None:
    """When the frame holding the audio just before `offset` seconds went out."""
    if not sent_at:
        return None
    index = max(0, int(np.ceil(offset / frame_seconds - 1e-9)) - 1)
    return sent_at[min(index, len(sent_at) - 1)]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 1)


@dataclass
class CallTiming:
    """Options of the shared flow; seconds unless said otherwise."""

    greeting_max_wait: float = 8.0  # no greeting by then: speak anyway
    greeting_gap: float = 0.7  # greeting over after this long without bot audio
    greeting_timeout: float = 30.0  # a greeting that never stops: speak anyway
    reply_gap: float = 1.0  # reply over after this long without bot audio
    reply_timeout: float = 30.0  # from the end of the caller's speech


@dataclass
class FlowResult:
    greeting_first: float | None = None  # playback start of the greeting's first audio
    greeting_seconds: float = 0.0
    speech_end: float | None = None  # wall time the last speech frame went out
    reply_first: float | None = None
    reply_end: float | None = None
    reply_timed_out: bool = False


async def wait_greeting(log: BotAudioLog, since: float, timing: CallTiming) -> FlowResult:
    result = FlowResult()
    first = await log.wait_audible(since, timing.greeting_max_wait)
    if first is None:
        return result
    await log.wait_quiet(timing.greeting_gap, timing.greeting_timeout)
    result.greeting_first = first.start
    last = log.last_audible_end() or first.end
    result.greeting_seconds = max(0.0, last - first.start)
    return result


async def wait_reply(log: BotAudioLog, result: FlowResult, timing: CallTiming) -> None:
    if result.speech_end is None:
        raise ValueError("wait_reply needs the time the caller's speech ended")
    deadline = result.speech_end + timing.reply_timeout
    first = await log.wait_audible(result.speech_end, max(0.0, deadline - time.monotonic()))
    if first is None:
        result.reply_timed_out = not log.closed
        return
    result.reply_first = first.start
    quiet = await log.wait_quiet(timing.reply_gap, max(0.0, deadline - time.monotonic()))
    result.reply_timed_out = not quiet
    result.reply_end = log.last_audible_end()


async def run_call_flow(
    log: BotAudioLog,
    since: float,
    play: Callable[[], Awaitable[float | None]],
    timing: CallTiming,
) -> FlowResult:
    """Greeting, then `play()` (returns the wall time speech ended), then the reply."""
    result = await wait_greeting(log, since, timing)
    result.speech_end = await play()
    if result.speech_end is None:
        raise RuntimeError("the caller's audio was not sent")
    await wait_reply(log, result, timing)
    return result


def flow_summary(log: BotAudioLog, flow: FlowResult, out_path: str | None) -> dict[str, object]:
    """The timing fields of the result dict; writes the reply WAV when asked."""
    reply_seconds = 0.0
    if flow.reply_first is not None and flow.reply_end is not None:
        reply_seconds = max(0.0, flow.reply_end - flow.reply_first)
    first_ms = None
    if flow.reply_first is not None and flow.speech_end is not None:
        first_ms = ms(flow.reply_first - flow.speech_end)
    written = None
    if out_path is not None and flow.reply_first is not None and flow.reply_end is not None:
        chunks = log.span(flow.reply_first, flow.reply_end)
        if chunks:
            write_wav(out_path, log.render(flow.reply_first, flow.reply_end), chunks[0].rate)
            written = str(out_path)
    return {
        "greeting_seconds": round(flow.greeting_seconds, 3),
        "first_reply_audio_ms": first_ms,
        "reply_seconds": round(reply_seconds, 3),
        "reply_timed_out": flow.reply_timed_out,
        "out_path": written,
    }
