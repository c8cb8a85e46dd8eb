"""The stage registry: `provider:` names in pipeline files mapped to options and factories.

Adding a provider is one `Provider(...)` entry here plus its factory function. Factories are
named by import path and imported on first use, so validating a file loads no provider SDK.
A factory is called per call as `factory(options, call)` (LLM factories also get the pipeline's
prompt as `system_instruction=`); an optional `preload(options)` runs once at start-up to load
models shared by every call.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from bot import stage_options as opt


@dataclass(frozen=True)
class Provider:
    """One provider of one stage kind."""

    kind: str
    name: str
    options: type[BaseModel]
    factory: str  # "module:function"
    preload: str | None = None  # "module:function", run at start-up with the options
    offline: bool = False  # runs with no network at all
    description: str = ""

    def load_factory(self) -> Callable[..., Any]:
        return _resolve(self.factory)

    def load_preload(self) -> Callable[[BaseModel], None] | None:
        return _resolve(self.preload) if self.preload else None


def _resolve(path: str) -> Callable[..., Any]:
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


_LOCAL = "bot.providers.local"
_CLOUD = "bot.providers.cloud"

PROVIDERS: tuple[Provider, ...] = (
    Provider(
        "vad",
        "silero",
        opt.SileroVADOptions,
        f"{_LOCAL}:make_silero_vad",
        f"{_LOCAL}:preload_silero_vad",
        offline=True,
    ),
    Provider(
        "turn",
        "smart_turn_v3",
        opt.SmartTurnOptions,
        f"{_LOCAL}:make_smart_turn",
        f"{_LOCAL}:preload_smart_turn",
        offline=True,
    ),
    Provider("turn", "vad", opt.VADTurnOptions, f"{_LOCAL}:make_vad_turn", offline=True),
    Provider(
        "stt",
        "whisper",
        opt.WhisperOptions,
        f"{_LOCAL}:make_whisper_stt",
        f"{_LOCAL}:preload_whisper",
        offline=True,
    ),
    Provider(
        "stt",
        "deepgram",
        opt.DeepgramOptions,
        f"{_CLOUD}:make_deepgram_stt",
        f"{_CLOUD}:preload_deepgram",
    ),
    Provider(
        "redact",
        "presidio",
        opt.PresidioOptions,
        "bot.redactor:make_presidio_redactor",
        "bot.redactor:preload_presidio",
        offline=True,
    ),
    Provider(
        "llm",
        "llama_cpp",
        opt.LlamaCppOptions,
        f"{_LOCAL}:make_llama_cpp_llm",
        f"{_LOCAL}:preload_llama_cpp",
        offline=True,
    ),
    Provider(
        "llm",
        "anthropic",
        opt.AnthropicOptions,
        f"{_CLOUD}:make_anthropic_llm",
        f"{_CLOUD}:preload_anthropic",
    ),
    Provider(
        "llm", "openai", opt.OpenAIOptions, f"{_CLOUD}:make_openai_llm", f"{_CLOUD}:preload_openai"
    ),
    Provider(
        "tts",
        "piper",
        opt.PiperOptions,
        f"{_LOCAL}:make_piper_tts",
        f"{_LOCAL}:preload_piper",
        offline=True,
    ),
    Provider(
        "tts",
        "elevenlabs",
        opt.ElevenLabsOptions,
        f"{_CLOUD}:make_elevenlabs_tts",
        f"{_CLOUD}:preload_elevenlabs",
    ),
)

_BY_KEY = {(provider.kind, provider.name): provider for provider in PROVIDERS}


def get_provider(kind: str, name: str) -> Provider:
    """The registered provider, or KeyError with a message listing the known names."""
    try:
        return _BY_KEY[(kind, name)]
    except KeyError:
        known = ", ".join(sorted(p.name for p in PROVIDERS if p.kind == kind))
        raise KeyError(f"unknown {kind} provider {name!r} (known: {known})") from None


def validate_stage_options(kind: str, name: str, options: dict[str, Any]) -> BaseModel:
    """Validate one stage's options with its provider's model (pydantic ValidationError)."""
    return get_provider(kind, name).options.model_validate(options)
