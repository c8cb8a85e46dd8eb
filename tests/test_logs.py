"""Raw transcripts that libraries log never reach a log sink."""

from __future__ import annotations

import io

from loguru import logger

from bot.logs import keeps_personal_data_out


def test_whisper_transcription_lines_are_dropped_at_any_level() -> None:
    sink = io.StringIO()
    handler = logger.add(sink, level="TRACE", filter=keeps_personal_data_out, format="{message}")
    try:
        logger.patch(lambda r: r.update(name="pipecat.services.whisper.stt")).debug(
            "Transcription: [ my ssn is 123 45 6789 ]"
        )
        logger.patch(lambda r: r.update(name="pipecat.services.deepgram.flux.stt_base")).trace(
            "Update event: call me at 555 0100"
        )
        logger.patch(lambda r: r.update(name="pipecat.services.whisper.stt")).debug(
            "Loaded Whisper model"
        )
    finally:
        logger.remove(handler)
    text = sink.getvalue()
    assert "6789" not in text and "555 0100" not in text
    assert "Loaded Whisper model" in text


def test_tts_text_lines_are_dropped() -> None:
    sink = io.StringIO()
    handler = logger.add(sink, level="DEBUG", filter=keeps_personal_data_out, format="{message}")
    try:
        tts = logger.patch(lambda r: r.update(name="pipecat.services.tts_service"))
        tts.debug("ElevenLabsTTSService#0: Generating TTS [Your card ends in 6467.]")
        tts.debug("TTS request: ctx-1 - Your card ends in 6467.")
        tts.debug("ElevenLabsTTSService#0: connected")
    finally:
        logger.remove(handler)
    text = sink.getvalue()
    assert "6467" not in text
    assert "connected" in text
