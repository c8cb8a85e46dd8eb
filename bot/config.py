"""Pipeline files: YAML with `${ENV}` interpolation, validated by a pydantic schema.

A file declares one pipeline: the stages `vad`, `turn`, `stt`, `redact`, `llm` (with an ordered
`fallback` list) and `tts`, each as `provider:` plus that provider's options, and the bot's
`prompt` and `greeting`. The options of each provider are checked by the model that provider
registered in `bot.registry`, so an error names the stage, the option and the reason.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

STAGES = ("vad", "turn", "stt", "redact", "llm", "tts")

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


class PipelineFileError(Exception):
    """A pipeline file that cannot be used; `problems` lists every (field, reason)."""

    def __init__(self, path: str, problems: list[tuple[str, str]]):
        self.path = path
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(f"{self.path}: {where}: {reason}" for where, reason in self.problems)


@dataclass
class Interpolation:
    """Result of `${ENV}` substitution: the data and the variables that were not set."""

    data: Any
    missing: list[tuple[str, str]] = field(default_factory=list)  # (field, variable)


def interpolate(data: Any, environ: dict[str, str] | None = None, where: str = "") -> Interpolation:
    """Replace `${VAR}` and `${VAR:-default}` in every string of a YAML tree.

    Unset variables without a default become empty strings and are reported in `missing`,
    so the caller decides whether that is an error (serving) or a warning (checking a file).
    """
    env = os.environ if environ is None else environ
    result = Interpolation(data=None)

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, dict):
            return {key: walk(value, _join(path, str(key))) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value, f"{path}[{index}]") for index, value in enumerate(node)]
        if isinstance(node, str):
            return _substitute(node, path)
        return node

    def _substitute(text: str, path: str) -> str:
        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = env.get(name)
            if value:
                return value
            if default is not None:
                return default
            result.missing.append((path, name))
            return ""

        return _ENV_PATTERN.sub(replace, text)

    result.data = walk(data, where)
    return result


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class StageConfig(BaseModel):
    """One stage: `provider:` plus options that the provider's own model validates."""

    model_config = ConfigDict(extra="allow")

    provider: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LLMStageConfig(StageConfig):
    """The LLM stage, with backups tried in order when the primary fails.

    A turn whose LLM fails before its first token (429, 5xx, connection error, or no token
    within `first_token_timeout_secs`) is answered by the next entry of `fallback`; a failed
    LLM is skipped for `failover_cooldown_secs`. When every LLM fails the bot apologises.
    """

    fallback: list[StageConfig] = Field(default_factory=list)
    first_token_timeout_secs: float | None = Field(3.0, gt=0, le=120)
    failover_cooldown_secs: float = Field(30.0, ge=0, le=3600)
    # The most recent user and assistant messages sent with each turn (the prompt is extra).
    max_context_messages: int = Field(16, ge=2, le=1000)


class TTSStageConfig(StageConfig):
    """The TTS stage. A response whose first audio takes longer than `stall_timeout_secs` is
    replaced by a short cached phrase: the caller never waits in silence."""

    stall_timeout_secs: float | None = Field(2.0, gt=0, le=30)


class CallPolicy(BaseModel):
    """How the bot handles silence and when it ends a call on its own."""

    model_config = ConfigDict(extra="forbid")

    idle_timeout_secs: float = Field(12.0, gt=0, le=600)
    idle_prompt: str = "Are you still there?"
    idle_prompts_before_hangup: int = Field(1, ge=0, le=10)
    goodbye: str = "Thanks for calling. Goodbye!"
    max_duration_secs: float = Field(900.0, gt=0, le=86400)


class ObservabilityConfig(BaseModel):
    """Where the end-of-call summaries go besides the log (one JSON object a line)."""

    model_config = ConfigDict(extra="forbid")

    summary_file: str | None = None


class PipelineConfig(BaseModel):
    """A whole pipeline file after interpolation."""

    model_config = ConfigDict(extra="forbid")

    name: str = "pipeline"
    description: str = ""
    prompt: str
    greeting: str = ""
    call: CallPolicy = Field(default_factory=CallPolicy)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)
    vad: StageConfig
    turn: StageConfig
    stt: StageConfig
    redact: StageConfig
    llm: LLMStageConfig
    tts: TTSStageConfig

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


@dataclass
class LoadedPipeline:
    """A validated pipeline file and the unset variables it refers to."""

    path: str
    config: PipelineConfig
    missing_env: list[tuple[str, str]]
    options: dict[str, BaseModel]  # stage path ("stt", "llm.fallback[0]") -> validated options


def _pydantic_problems(error: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        where = _join(prefix, where) if where else prefix or "(file)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "missing":
            message = "required field is missing"
        problems.append((where, message))
    return problems


def parse_pipeline(
    text: str, path: str = "<pipeline>", environ: dict[str, str] | None = None
) -> LoadedPipeline:
    """Validate a pipeline file's text. Raises PipelineFileError listing every problem."""
    from bot.registry import validate_stage_options

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(file)"
        raise PipelineFileError(path, [(where, f"not valid YAML: {exc}")]) from None
    if not isinstance(raw, dict):
        raise PipelineFileError(path, [("(file)", "must be a mapping of stages and settings")])

    interpolated = interpolate(raw, environ)
    try:
        config = PipelineConfig.model_validate(interpolated.data)
    except ValidationError as exc:
        raise PipelineFileError(path, _pydantic_problems(exc)) from None

    problems: list[tuple[str, str]] = []
    options: dict[str, BaseModel] = {}
    stage_items: list[tuple[str, str, StageConfig]] = [
        (name, name, getattr(config, name)) for name in STAGES
    ]
    stage_items += [
        ("llm", f"llm.fallback[{i}]", backup) for i, backup in enumerate(config.llm.fallback)
    ]
    for kind, where, stage in stage_items:
        stage_options = stage.options
        if where == "llm":
            stage_options.pop("fallback", None)
        try:
            options[where] = validate_stage_options(kind, stage.provider, stage_options)
        except KeyError as exc:
            problems.append((f"{where}.provider", str(exc.args[0])))
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, where))
    if problems:
        raise PipelineFileError(path, problems)
    return LoadedPipeline(
        path=path, config=config, missing_env=interpolated.missing, options=options
    )


def load_pipeline(path: str | Path, environ: dict[str, str] | None = None) -> LoadedPipeline:
    """Read and validate a pipeline file from disk."""
    file_path = Path(path)
    try:
        text = file_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PipelineFileError(str(path), [("(file)", f"cannot read: {exc.strerror}")]) from None
    return parse_pipeline(text, str(path), environ)


def require_env(loaded: LoadedPipeline) -> None:
    """Refuse to serve a pipeline whose secrets are not in the environment."""
    if loaded.missing_env:
        raise PipelineFileError(
            loaded.path,
            [
                (where, f"environment variable {name} is not set")
                for where, name in loaded.missing_env
            ],
        )
