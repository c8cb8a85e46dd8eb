"""The provider fakes with no injected latency, on a background loop, for a test module."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from tests.fakes.suite import FakeSuite, Latencies
from tests.support.background import BackgroundLoop


@contextmanager
def instant_fakes(
    transcript: str | None = None, warm: Iterable[str] = ()
) -> Iterator[tuple[BackgroundLoop, FakeSuite]]:
    """Every fake answers at once; `transcript`: the fake Deepgram's canned transcript (no
    Whisper run); `warm`: phrases whose TTS audio the fake ElevenLabs makes ahead."""
    loop = BackgroundLoop()
    suite = FakeSuite(
        Latencies(stt_final_ms=0, llm_first_token_ms=0, tts_first_chunk_ms=0), transcript=transcript
    )
    loop.run(suite.start())
    try:
        for phrase in warm:
            loop.run(suite.elevenlabs.warm(phrase), timeout=60)
        yield loop, suite
    finally:
        loop.run(suite.stop())
        loop.close()
