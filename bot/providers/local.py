"""Factories for the offline providers: Silero, smart-turn v3, Whisper, llama.cpp, Piper.

Each `preload_*` loads the process-wide model at start-up; each `make_*` builds the light
per-call service around it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipecat.audio.turn.smart_turn.base_smart_turn import SmartTurnParams
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.transcriptions.language import Language
from pipecat.turns.user_stop import (
    SpeechTimeoutUserTurnStopStrategy,
    TurnAnalyzerUserTurnStopStrategy,
)

from bot import models
from bot.call import CallInfo
from bot.stage_options import (
    LlamaCppOptions,
    PiperOptions,
    SileroVADOptions,
    SmartTurnOptions,
    VADTurnOptions,
    WhisperOptions,
)

# --- vad and turn --------------------------------------------------------------------------------


def preload_silero_vad(options: SileroVADOptions) -> None:
    from bot.audio_analyzers import silero_session

    silero_session()


def make_silero_vad(options: SileroVADOptions, call: CallInfo) -> Any:
    from bot.audio_analyzers import SharedSileroVADAnalyzer

    return SharedSileroVADAnalyzer(
        params=VADParams(
            confidence=options.confidence,
            start_secs=options.start_secs,
            stop_secs=options.stop_secs,
            min_volume=options.min_volume,
        )
    )


def preload_smart_turn(options: SmartTurnOptions) -> None:
    from bot.audio_analyzers import smart_turn_session

    smart_turn_session(options.cpu_count)


def make_smart_turn(options: SmartTurnOptions, call: CallInfo) -> Any:
    from bot.audio_analyzers import SharedSmartTurnAnalyzerV3

    analyzer = SharedSmartTurnAnalyzerV3(
        cpu_count=options.cpu_count,
        params=SmartTurnParams(
            stop_secs=options.stop_secs, max_duration_secs=options.max_duration_secs
        ),
    )
    return [TurnAnalyzerUserTurnStopStrategy(turn_analyzer=analyzer)]


def make_vad_turn(options: VADTurnOptions, call: CallInfo) -> Any:
    return [SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=options.timeout_secs)]


# --- stt -----------------------------------------------------------------------------------------


def _whisper_dir(options: WhisperOptions) -> Path:
    return models.whisper_base_dir() if options.model == "bundled" else Path(options.model)


def preload_whisper(options: WhisperOptions) -> None:
    from bot.local_speech import load_whisper, warm_up_whisper

    model = load_whisper(_whisper_dir(options), options.compute_type, options.cpu_threads)
    warm_up_whisper(model)


def make_whisper_stt(options: WhisperOptions, call: CallInfo) -> Any:
    from bot.local_speech import SharedWhisperSTTService, load_whisper

    model = load_whisper(_whisper_dir(options), options.compute_type, options.cpu_threads)
    return SharedWhisperSTTService(
        model=model,
        beam_size=options.beam_size,
        settings=SharedWhisperSTTService.Settings(
            model=str(_whisper_dir(options)),
            language=Language(options.language),
            no_speech_prob=options.no_speech_prob,
        ),
    )


# --- llm -----------------------------------------------------------------------------------------


def _gguf_path(options: LlamaCppOptions) -> Path:
    return models.qwen_gguf_path() if options.model == "bundled" else Path(options.model)


def preload_llama_cpp(options: LlamaCppOptions) -> None:
    from bot.local_llm import LlamaModel

    model = LlamaModel.load_shared(
        _gguf_path(options), n_ctx=options.n_ctx, n_threads=options.n_threads
    )
    model.warm_up()


def make_llama_cpp_llm(options: LlamaCppOptions, call: CallInfo, system_instruction: str) -> Any:
    from bot.local_llm import LlamaCppLLMService, LlamaModel

    model = LlamaModel.load_shared(
        _gguf_path(options), n_ctx=options.n_ctx, n_threads=options.n_threads
    )
    return LlamaCppLLMService(
        model=model,
        settings=LlamaCppLLMService.Settings(
            system_instruction=system_instruction,
            temperature=options.temperature,
            max_tokens=options.max_tokens,
        ),
    )


# --- tts -----------------------------------------------------------------------------------------


def _voice_dir(options: PiperOptions) -> Path:
    return models.piper_voice_dir() if options.voice_dir == "bundled" else Path(options.voice_dir)


def preload_piper(options: PiperOptions) -> None:
    from bot.local_speech import load_piper

    voice = load_piper(_voice_dir(options), options.voice)
    for _ in voice.synthesize("Hello."):  # first synthesis initialises onnxruntime's kernels
        pass


def make_piper_tts(options: PiperOptions, call: CallInfo) -> Any:
    from bot.local_speech import SharedPiperTTSService, load_piper

    voice = load_piper(_voice_dir(options), options.voice)
    return SharedPiperTTSService(voice=voice, voice_name=options.voice)
