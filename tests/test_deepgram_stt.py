"""A Deepgram socket that drops mid-utterance loses nothing: the product's STT service
reconnects at once, replays the audio no final transcript covered, and counts the reconnection.
Runs against the local Deepgram protocol server, with real speech."""

from __future__ import annotations

import numpy as np
from pipecat.frames.frames import TranscriptionFrame

from bot.call import CallInfo
from bot.deepgram_stt import ResilientDeepgramSTTService
from bot.metrics import STT_RECONNECTIONS
from bot.providers.cloud import make_deepgram_stt
from bot.stage_options import DeepgramOptions
from tests.fakes.deepgram import FakeDeepgram
from tests.test_fake_deepgram import KEY, fake, pipeline, speech  # noqa: F401 (fixtures)


def _reconnections() -> float:
    return STT_RECONNECTIONS.labels("webrtc", "-", "deepgram")._value.get()


async def test_utterance_cut_by_a_dropped_socket_is_still_transcribed(
    fake: tuple[FakeDeepgram, str],  # noqa: F811
    speech: dict[int, np.ndarray],  # noqa: F811
) -> None:
    provider, url = fake
    provider.faults.drop_after_ms = 1000  # the speech starts at 0.2 s: cut in the middle
    call = CallInfo("call-dg-drop", "webrtc", 16000, 24000)
    stt = make_deepgram_stt(DeepgramOptions(api_key=KEY, base_url=url), call)
    assert isinstance(stt, ResilientDeepgramSTTService)
    before = _reconnections()
    async with pipeline(stt, 16000) as harness:
        await provider.wait_for(lambda: provider.connections_opened == 1, 5)
        await harness.speak(speech[16000])  # one utterance, in real time, straight through
        await harness.down.wait_for(TranscriptionFrame, timeout=10)

    first, second = provider.connections[:2]
    assert first.dropped and first.finals_sent == 0
    text = harness.down.of(TranscriptionFrame)[0].text.lower()  # type: ignore[attr-defined]
    assert "colo" in text and "sky" in text, f"words before the drop were lost: {text!r}"
    assert second.opened_at - first.opened_at < 2.5, "the first retry should not back off"
    assert stt.connections_opened == 2
    assert _reconnections() == before + 1
    assert call.events.counts["stt_reconnections"] == 1, "the call's own record counts it too"


async def test_deepgram_end_of_speech_counts_as_a_final_transcript(
    fake: tuple[FakeDeepgram, str],  # noqa: F811
    speech: dict[int, np.ndarray],  # noqa: F811
) -> None:
    """No Finalize is sent here (no VAD): the transcript comes from Deepgram's endpointing."""
    provider, url = fake
    call = CallInfo("call-dg-endpoint", "twilio", 8000, 8000)
    stt = make_deepgram_stt(DeepgramOptions(api_key=KEY, base_url=url), call)
    async with pipeline(stt, 8000) as harness:
        await provider.wait_for(lambda: provider.connections_opened == 1, 5)
        await harness.speak(speech[8000], speed=2.0)
        await harness.down.wait_for(TranscriptionFrame, timeout=10)
    final = provider.connections[0].finals[0]
    assert final["speech_final"] and not final["from_finalize"]
    frame = harness.down.of(TranscriptionFrame)[0]
    assert frame.finalized, "the turn would wait for Pipecat's STT timeout"  # type: ignore[attr-defined]
