"""Where the caller's audio stops travelling down the pipeline.

The transport hands the pipeline a 20 ms frame of the caller's audio 50 times a second. The STT
and the user aggregator (VAD and end of turn) need it; the stages after them (context window,
LLM, TTS, transport output, assistant aggregator) only pass it on, and every hop costs a queue
round trip plus a report to each observer. Ending those frames right after the user aggregator
is the cheapest way to keep per-frame work off the hot path.
"""

from __future__ import annotations

from pipecat.frames.frames import Frame, InputAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


class CallerAudioSink(FrameProcessor):
    """Drops `InputAudioRawFrame`s; passes every other frame on unchanged."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            return
        await self.push_frame(frame, direction)
