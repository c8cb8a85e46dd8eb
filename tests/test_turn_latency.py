"""The per-turn latency line: each stage once, in milliseconds after the VAD's stop."""

from __future__ import annotations

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    Frame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import SleepFrame, run_test

from bot.turn_latency import TurnLatencyObserver


class Passthrough(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


async def test_stages_are_timed_from_the_vad_stop() -> None:
    observer = TurnLatencyObserver()
    audio = TTSAudioRawFrame(b"\x00\x00" * 160, 8000, 1)
    await run_test(
        Passthrough(),
        frames_to_send=[
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(),
            SleepFrame(sleep=0.1),
            TranscriptionFrame("hello", "user", "now"),
            SleepFrame(sleep=0.1),
            LLMTextFrame("Hi"),
            LLMTextFrame(" there"),
            audio,
            BotStartedSpeakingFrame(),
        ],
        observers=[observer],
    )
    assert len(observer.turns) == 1
    turn = observer.turns[0]
    assert list(turn) == ["stt_final", "llm_first_token", "tts_first_audio", "bot_started"]
    assert 90 <= turn["stt_final"] < 180
    assert 190 <= turn["llm_first_token"] <= turn["tts_first_audio"] <= turn["bot_started"]


async def test_speech_again_before_the_bot_answers_starts_a_new_turn() -> None:
    observer = TurnLatencyObserver()
    await run_test(
        Passthrough(),
        frames_to_send=[
            VADUserStoppedSpeakingFrame(),
            TranscriptionFrame("hello", "user", "now"),
            VADUserStartedSpeakingFrame(),
            BotStartedSpeakingFrame(),  # no VAD stop since the caller spoke again
        ],
        observers=[observer],
    )
    assert observer.turns == []
