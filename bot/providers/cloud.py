"""Factories for the cloud providers: Deepgram, Anthropic, OpenAI, ElevenLabs.

Every provider takes `base_url`, so the same client code can be pointed at a proxy, a regional
endpoint or a local server that speaks the vendor's protocol. Keys come from the environment
through the pipeline file's `${VAR}` interpolation and are never logged.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel

from bot.call import CallInfo
from bot.providers import tls
from bot.providers.http_clients import pool_limits, shared_client
from bot.stage_options import AnthropicOptions, DeepgramOptions, ElevenLabsOptions, OpenAIOptions


def _importer(*modules: str) -> Any:
    """A start-up hook that imports a provider's SDK and Pipecat service (a second or more of
    imports), so the first call does not wait for them, and makes the shared TLS context."""

    def preload(_options: BaseModel) -> None:
        for module in modules:
            importlib.import_module(module)
        tls.install()

    return preload


preload_deepgram = _importer("pipecat.services.deepgram.stt", "bot.deepgram_stt")
preload_anthropic = _importer("anthropic", "pipecat.services.anthropic.llm")
preload_openai = _importer("openai", "pipecat.services.openai.llm")
preload_elevenlabs = _importer("pipecat.services.elevenlabs.tts")


def make_deepgram_stt(options: DeepgramOptions, call: CallInfo) -> Any:
    from pipecat.services.deepgram.stt import DeepgramSTTService

    from bot.deepgram_stt import ResilientDeepgramSTTService

    # The transport hands over PCM at its own rate (8 kHz on phone calls, 16 kHz on WebRTC):
    # Deepgram is told exactly that, so nothing is resampled on the way.
    return ResilientDeepgramSTTService(
        api_key=options.api_key,
        base_url=options.base_url,
        encoding="linear16",
        sample_rate=call.audio_in_sample_rate,
        events=call.events,
        settings=DeepgramSTTService.Settings(
            model=options.model,
            language=options.language,
            interim_results=options.interim_results,
            endpointing=options.endpointing,
            smart_format=options.smart_format,
            punctuate=options.punctuate,
            profanity_filter=options.profanity_filter,
        ),
    )


def make_anthropic_llm(options: AnthropicOptions, call: CallInfo, system_instruction: str) -> Any:
    from anthropic import AsyncAnthropic, DefaultAsyncHttpxClient
    from pipecat.services.anthropic.llm import AnthropicLLMService

    client = shared_client(
        ("anthropic", options.base_url, options.api_key, options.max_retries, options.timeout_secs),
        lambda: AsyncAnthropic(
            api_key=options.api_key,
            base_url=options.base_url,
            max_retries=options.max_retries,
            timeout=options.timeout_secs,
            http_client=DefaultAsyncHttpxClient(
                limits=pool_limits(), verify=tls.client_tls_context()
            ),
        ),
    )
    return AnthropicLLMService(
        api_key=options.api_key,
        client=client,
        settings=AnthropicLLMService.Settings(
            model=options.model,
            system_instruction=system_instruction,
            max_tokens=options.max_tokens,
            temperature=options.temperature,
        ),
    )


def make_openai_llm(options: OpenAIOptions, call: CallInfo, system_instruction: str) -> Any:
    from openai import AsyncOpenAI, DefaultAsyncHttpxClient
    from pipecat.services.openai.llm import OpenAILLMService

    class SharedClientOpenAILLMService(OpenAILLMService):
        """Pipecat's OpenAI service on the process's shared client for this endpoint."""

        def create_client(self, api_key: Any = None, base_url: Any = None, **_: Any) -> Any:
            key = ("openai", base_url, api_key, options.max_retries, options.timeout_secs)
            return shared_client(
                key,
                lambda: AsyncOpenAI(
                    api_key=api_key,
                    base_url=base_url,
                    max_retries=options.max_retries,
                    timeout=options.timeout_secs,
                    http_client=DefaultAsyncHttpxClient(
                        limits=pool_limits(), verify=tls.client_tls_context()
                    ),
                ),
            )

    return SharedClientOpenAILLMService(
        api_key=options.api_key,
        base_url=options.base_url,
        settings=OpenAILLMService.Settings(
            model=options.model,
            system_instruction=system_instruction,
            max_tokens=options.max_tokens,
            temperature=options.temperature,
        ),
    )


def make_elevenlabs_tts(options: ElevenLabsOptions, call: CallInfo) -> Any:
    from pipecat.services.elevenlabs.tts import ElevenLabsTTSService

    tls.install()
    voice_settings = {
        key: value
        for key, value in {
            "stability": options.stability,
            "similarity_boost": options.similarity_boost,
            "speed": options.speed,
        }.items()
        if value is not None
    }
    # The output format follows the transport's rate (pcm_8000 on phone calls, pcm_24000 on
    # WebRTC), so the audio goes out as it arrives: nothing is resampled.
    return ElevenLabsTTSService(
        api_key=options.api_key,
        url=options.base_url,
        sample_rate=call.audio_out_sample_rate,
        auto_mode=options.auto_mode,
        enable_logging=options.enable_logging,
        settings=ElevenLabsTTSService.Settings(
            voice=options.voice_id,
            model=options.model,
            apply_text_normalization=options.apply_text_normalization,
            **voice_settings,
        ),
    )
