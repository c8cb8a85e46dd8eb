"""Where a turn's milliseconds go: one log line per turn, from the VAD's stop to the bot's voice.

`TurnLatencyObserver` watches the frames of one call and notes, after the caller's speech ends
(the VAD's stop), when the final transcript arrived, when the turn was judged over, when the LLM
was asked, its first token, the TTS's first audio and the moment the transport started playing.
Each stage is logged as milliseconds after the VAD's stop, on the pipeline clock at the moment
the frame was pushed (observers run later, off the frames' path).
"""

from __future__ import annotations

from loguru import logger
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    LLMContextFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed

# (mark, frame type): noted once per turn, on the frame's first push.
STAGES: tuple[tuple[str, type], ...] = (
    ("stt_final", TranscriptionFrame),
    ("turn_end", UserStoppedSpeakingFrame),
    ("llm_asked", LLMContextFrame),
    ("llm_first_token", LLMTextFrame),
    ("tts_first_audio", TTSAudioRawFrame),
    ("bot_started", BotStartedSpeakingFrame),
)


class TurnLatencyObserver(BaseObserver):
    """Logs, per turn, each stage's time after the VAD's stop (milliseconds)."""

    def __init__(self) -> None:
        super().__init__(observe_every_push=False)
        self._vad_stop: float | None = None
        self._marks: dict[str, float] = {}
        self.turns: list[dict[str, float]] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        if not data.first_push:
            return
        frame = data.frame
        now = data.timestamp / 1e9  # the pipeline clock at the push, in seconds
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._vad_stop, self._marks = None, {}
            return
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            self._vad_stop, self._marks = now, {}
            return
        if self._vad_stop is None:
            return
        for mark, kind in STAGES:
            if isinstance(frame, kind) and mark not in self._marks:
                self._marks[mark] = round((now - self._vad_stop) * 1000, 1)
                if mark == "bot_started":
                    self._report()
                break

    def _report(self) -> None:
        self.turns.append(dict(self._marks))
        stages = ", ".join(f"{mark} +{ms:.0f}" for mark, ms in self._marks.items())
        logger.info(f"turn latency after VAD stop (ms): {stages}")
        self._vad_stop, self._marks = None, {}
