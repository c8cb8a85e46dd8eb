"""Log lines: raw transcripts never reach a sink; the JSON format carries the call_id."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from loguru import logger

from bot.logs import configure_logging, keeps_personal_data_out
from bot.settings import ServerSettings, SettingsError


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


_JSON_LOGGING_SCRIPT = """
import logging
from loguru import logger
from bot.logs import configure_logging
configure_logging("INFO", "json")
logger.info("outside any call")
with logger.contextualize(call_id="CA123"):
    logger.info("inside the call")
    logging.getLogger("uvicorn.error").warning("stdlib line in the call")
    logging.getLogger("aioice.ice").info("candidate pair noise")
    logger.patch(lambda r: r.update(name="pipecat.services.whisper.stt")).info(
        "Transcription: [ my ssn is 123 45 6789 ]"
    )
    logger.bind(call_summary={"turns": 2}).info("call summary")
    try:
        raise ValueError("bad frame")
    except ValueError:
        logger.exception("frame refused")
"""


def test_json_format_writes_one_object_a_line_with_the_call_id_on_stdout() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _JSON_LOGGING_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "6789" not in done.stdout + done.stderr, "the personal-data filter holds in JSON too"
    assert "candidate pair noise" not in done.stdout
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    by_message = {line["message"]: line for line in lines}
    assert by_message["outside any call"]["call_id"] == "-"
    assert by_message["inside the call"]["call_id"] == "CA123"
    stdlib = by_message["stdlib line in the call"]
    assert (stdlib["call_id"], stdlib["logger"], stdlib["level"]) == (
        "CA123",
        "uvicorn.error",
        "WARNING",
    )
    assert by_message["call summary"]["call_summary"] == {"turns": 2}
    assert by_message["frame refused"]["exception"] == "ValueError: bad frame"
    assert all({"ts", "level", "call_id", "logger", "message"} <= set(line) for line in lines)


def test_log_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="one of text, json"):
        configure_logging("INFO", "xml")
    with pytest.raises(SettingsError, match="VOICEBOT_LOG_FORMAT"):
        ServerSettings.from_env({"VOICEBOT_LOG_FORMAT": "xml"})
    with pytest.raises(SettingsError, match="VOICEBOT_LOG_LEVEL"):
        ServerSettings.from_env({"VOICEBOT_LOG_LEVEL": "loud"})
    with pytest.raises(SettingsError, match="http/protobuf"):
        ServerSettings.from_env({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    settings = ServerSettings.from_env(
        {"VOICEBOT_LOG_FORMAT": "JSON", "VOICEBOT_LOG_LEVEL": "debug"}
    )
    assert (settings.log_format, settings.log_level) == ("json", "DEBUG")


_SECRET_LOGGING_SCRIPT = """
import logging
from loguru import logger
from bot.logs import configure_logging
configure_logging("DEBUG", "json")
logger.info("key sk-live-0123456789 in a line")
logging.getLogger("httpx").warning("GET https://api.example/v1?key=b-part-secret-99 refused")
logging.getLogger("websockets.client").debug("> xi-api-key: sk-live-0123456789")
try:
    raise RuntimeError("auth failed for sk-live-0123456789")
except RuntimeError:
    logger.exception("provider error")
logger.info("short values stay: abc")
"""


def test_credentials_from_the_environment_never_reach_a_line() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "ELEVENLABS_API_KEY": "sk-live-0123456789",
        "VOICEBOT_API_KEYS": "a-part-secret-11, b-part-secret-99",
        "SOME_TOKEN": "abc",  # too short to scrub: ordinary words would go too
    }
    done = subprocess.run(
        [sys.executable, "-c", _SECRET_LOGGING_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    out = done.stdout + done.stderr
    assert "sk-live-0123456789" not in out and "b-part-secret-99" not in out, out
    lines = {json.loads(line)["message"]: json.loads(line) for line in done.stdout.splitlines()}
    assert "key [secret] in a line" in lines
    assert "GET https://api.example/v1?key=[secret] refused" in lines
    assert lines["provider error"]["exception"] == "RuntimeError: auth failed for [secret]"
    assert "short values stay: abc" in lines
    assert not any("xi-api-key" in message for message in lines), "handshake headers held back"


def test_secret_values_are_read_from_credential_names() -> None:
    from bot.logs import secret_values

    found = secret_values(
        {
            "DEEPGRAM_API_KEY": "dg-0123456789",
            "TWILIO_AUTH_TOKEN": "tw-0123456789",
            "VOICEBOT_SESSION_SECRET": "s" * 40,
            "VOICEBOT_API_KEYS": "k1-0123456789,k2-0123456789",
            "VOICEBOT_PUBLIC_URL": "https://bot.example.com",
        }
    )
    assert set(found) >= {"dg-0123456789", "tw-0123456789", "s" * 40, "k1-0123456789"}
    assert "https://bot.example.com" not in found
