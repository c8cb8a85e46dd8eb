"""Pipeline files: the shipped ones validate, broken ones are refused with the field named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import PipelineFileError, interpolate, load_pipeline, parse_pipeline, require_env
from bot.registry import PROVIDERS, get_provider

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "pipelines").glob("*.yaml"))

MINIMAL = """
prompt: Be brief.
vad: {provider: silero}
turn: {provider: smart_turn_v3}
stt: {provider: whisper}
redact: {provider: presidio}
llm: {provider: llama_cpp}
tts: {provider: piper}
"""


def run_check(*files: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "check", *map(str, files)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_shipped_pipelines_exist() -> None:
    names = {path.name for path in SHIPPED}
    assert {"local.yaml", "cloud.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_pipeline_validates(path: Path) -> None:
    result = run_check(path)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_cloud_pipeline_reads_every_secret_from_the_environment() -> None:
    loaded = load_pipeline(REPO / "pipelines/cloud.yaml", environ={})
    missing = {name for _, name in loaded.missing_env}
    assert missing == {
        "DEEPGRAM_API_KEY",
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "ELEVENLABS_API_KEY",
    }
    config = loaded.config
    assert (config.stt.provider, config.llm.provider, config.tts.provider) == (
        "deepgram",
        "anthropic",
        "elevenlabs",
    )
    assert [b.provider for b in config.llm.fallback] == ["openai"]
    assert loaded.options["stt"].model == "nova-3"
    assert loaded.options["tts"].model == "eleven_flash_v2_5"
    with pytest.raises(PipelineFileError) as error:
        require_env(loaded)
    assert "ANTHROPIC_API_KEY" in str(error.value)


def test_cloud_base_urls_follow_the_environment() -> None:
    env = {
        "DEEPGRAM_API_KEY": "k1",
        "ANTHROPIC_API_KEY": "k2",
        "OPENAI_API_KEY": "k3",
        "ELEVENLABS_API_KEY": "k4",
        "DEEPGRAM_BASE_URL": "ws://127.0.0.1:9100",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9101",
    }
    loaded = load_pipeline(REPO / "pipelines/cloud.yaml", environ=env)
    assert loaded.missing_env == []
    assert loaded.options["stt"].base_url == "ws://127.0.0.1:9100"
    assert loaded.options["llm"].base_url == "http://127.0.0.1:9101"
    assert loaded.options["llm.fallback[0]"].base_url == "https://api.openai.com/v1"
    assert loaded.options["llm"].api_key == "k2"


def test_interpolation_defaults_and_missing() -> None:
    result = interpolate(
        {"a": "${SET}", "b": "${UNSET:-fallback}", "c": ["x-${UNSET}-y"]}, environ={"SET": "v"}
    )
    assert result.data == {"a": "v", "b": "fallback", "c": ["x--y"]}
    assert result.missing == [("c[0]", "UNSET")]


@pytest.mark.parametrize(
    ("replace", "field", "reason"),
    [
        ("stt: {provider: whisper}", "stt.provider", None),
        ("vad: {provider: silero}", "vad.stop_secs", "less than or equal"),
        ("llm: {provider: llama_cpp}", "llm.colour", "unknown field"),
        ("tts: {provider: piper}", "tts.provider", "unknown tts provider"),
        ("prompt: Be brief.", "prompt", "required field is missing"),
    ],
)
def test_broken_files_name_the_field(
    tmp_path: Path, replace: str, field: str, reason: str | None
) -> None:
    broken = {
        "stt: {provider: whisper}": "stt: {provider: whisperx}",
        "vad: {provider: silero}": "vad: {provider: silero, stop_secs: 30}",
        "llm: {provider: llama_cpp}": "llm: {provider: llama_cpp, colour: blue}",
        "tts: {provider: piper}": "tts: {provider: festival}",
        "prompt: Be brief.": "",
    }[replace]
    path = tmp_path / "broken.yaml"
    path.write_text(MINIMAL.replace(replace, broken))
    result = run_check(path)
    assert result.returncode == 2
    assert f"{path}: {field}:" in result.stderr
    if reason:
        assert reason in result.stderr


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(
        MINIMAL.replace(
            "stt: {provider: whisper}", "stt: {provider: whisper, beam_size: 0}"
        ).replace("tts: {provider: piper}", "tts: {provider: piper, speed: 2}")
    )
    result = run_check(path)
    assert result.returncode == 2
    assert "stt.beam_size" in result.stderr
    assert "tts.speed: unknown field" in result.stderr


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("prompt: [unclosed\n")
    result = run_check(bad, tmp_path / "nope.yaml")
    assert result.returncode == 2
    assert f"{bad}: line" in result.stderr and "not valid YAML" in result.stderr
    assert "nope.yaml: (file): cannot read" in result.stderr


def test_one_bad_file_fails_the_check_but_good_ones_still_report(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL.replace("llm: {provider: llama_cpp}", "llm: {provider: gpt}"))
    result = run_check(REPO / "pipelines/local.yaml", bad)
    assert result.returncode == 2
    assert "local.yaml: ok" in result.stdout
    assert "llm.provider" in result.stderr


def test_fallback_entries_are_validated_with_their_index() -> None:
    text = MINIMAL.replace(
        "llm: {provider: llama_cpp}",
        "llm:\n  provider: llama_cpp\n  fallback:\n    - {provider: openai, api_key: x}\n"
        "    - {provider: anthropic, api_key: y, base_url: ftp://nope}",
    )
    with pytest.raises(PipelineFileError) as error:
        parse_pipeline(text, "f.yaml")
    assert error.value.problems[0][0] == "llm.fallback[1].base_url"


def test_registry_names_every_factory_that_exists() -> None:
    for provider in PROVIDERS:
        assert callable(provider.load_factory()), provider.factory
        if provider.preload:
            assert callable(provider.load_preload()), provider.preload
    assert get_provider("llm", "openai").options.__name__ == "OpenAIOptions"
    with pytest.raises(KeyError, match="known: anthropic, llama_cpp, openai"):
        get_provider("llm", "nope")
