"""The cloud providers build here (no network is touched until a call starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.call import CallInfo
from bot.config import load_pipeline
from bot.registry import get_provider

REPO = Path(__file__).resolve().parents[1]
ENV = {
    "DEEPGRAM_API_KEY": "dg-test",
    "ANTHROPIC_API_KEY": "sk-ant-test",
    "OPENAI_API_KEY": "sk-test",
    "ELEVENLABS_API_KEY": "el-test",
    "DEEPGRAM_BASE_URL": "ws://127.0.0.1:9",
    "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
    "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
    "ELEVENLABS_BASE_URL": "ws://127.0.0.1:9",
}
PHONE = CallInfo("CAtest", "twilio", 8000, 8000)
WEB = CallInfo("call-test", "webrtc", 16000, 24000)


def build(where: str, call: CallInfo):  # type: ignore[no-untyped-def]
    loaded = load_pipeline(REPO / "pipelines/cloud.yaml", environ=ENV)
    kind = where.split(".")[0]
    stage = (
        loaded.config.llm.fallback[0]
        if where == "llm.fallback[0]"
        else getattr(loaded.config, kind)
    )
    factory = get_provider(kind, stage.provider).load_factory()
    if kind == "llm":
        return factory(loaded.options[where], call, system_instruction=loaded.config.prompt)
    return factory(loaded.options[where], call)


@pytest.mark.parametrize("call", [PHONE, WEB], ids=["twilio", "webrtc"])
def test_deepgram_builds_for_the_transport_rate(call: CallInfo) -> None:
    from pipecat.services.deepgram.stt import DeepgramSTTService

    stt = build("stt", call)
    assert isinstance(stt, DeepgramSTTService)
    assert stt._settings.model == "nova-3"
    assert stt._settings.endpointing == 300
    assert stt._settings.interim_results is True


def test_llms_build_with_their_base_urls() -> None:
    from pipecat.services.anthropic.llm import AnthropicLLMService
    from pipecat.services.openai.llm import OpenAILLMService

    primary = build("llm", PHONE)
    backup = build("llm.fallback[0]", PHONE)
    assert isinstance(primary, AnthropicLLMService)
    assert isinstance(backup, OpenAILLMService)
    assert str(primary._client.base_url).startswith("http://127.0.0.1:9")
    assert str(backup._client.base_url).startswith("http://127.0.0.1:9/v1")
    assert primary._settings.model == "claude-haiku-4-5"
    assert backup._settings.model == "gpt-4o-mini"
    assert "voice assistant" in primary._settings.system_instruction


def test_elevenlabs_builds_with_flash_model() -> None:
    from pipecat.services.elevenlabs.tts import ElevenLabsTTSService

    tts = build("tts", WEB)
    assert isinstance(tts, ElevenLabsTTSService)
    assert tts._settings.model == "eleven_flash_v2_5"
    assert tts._url == "ws://127.0.0.1:9"
