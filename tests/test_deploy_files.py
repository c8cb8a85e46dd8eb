"""Dockerfile and fly.toml stay honest: no Docker engine runs here, so parse them and check
that what they reference exists and that they say what the README promises."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

from bot.config import load_pipeline

REPO = Path(__file__).resolve().parents[1]


def benchmarked_calls_per_core() -> int:
    """The measured calls per core, as BENCHMARKS.md states it ("Calls per core ...: **N**")."""
    text = (REPO / "BENCHMARKS.md").read_text()
    found = re.search(r"Calls per core within the rule: \*\*(\d+)\*\*", text)
    assert found, "BENCHMARKS.md states no calls per core"
    return int(found.group(1))


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        instruction, _, args = stripped.partition(" ")
        result.append((instruction.upper(), args.strip()))
    return result


def test_dockerfile_is_multi_stage_and_runs_as_non_root() -> None:
    instructions = dockerfile_instructions()
    stages = [args for name, args in instructions if name == "FROM"]
    assert len(stages) >= 2, "expected a build stage and a runtime stage"
    final_stage = instructions[
        max(i for i, (name, _) in enumerate(instructions) if name == "FROM") :
    ]
    users = [args for name, args in final_stage if name == "USER"]
    assert users and users[-1] not in ("root", "0"), "the runtime stage must switch to a user"
    assert any(name == "EXPOSE" and "7860" in args for name, args in final_stage)


def test_dockerfile_health_check_and_command_use_real_routes_and_commands() -> None:
    instructions = dict((name, args) for name, args in dockerfile_instructions())
    assert "/healthz" in instructions["HEALTHCHECK"]
    command = shlex.split(instructions["CMD"].strip("[]").replace(",", " "))
    assert command[:2] == ["voicebot", "serve"]
    from bot.cli import build_parser

    args = build_parser().parse_args(command[1:])  # flags the CLI really accepts
    assert args.port == 7860


def test_dockerfile_copies_only_what_exists_and_bakes_the_models() -> None:
    instructions = dockerfile_instructions()
    for name, args in instructions:
        if name != "COPY" or "--from=" in args:
            continue
        sources = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    runs = " ".join(args for name, args in instructions if name == "RUN")
    assert "--require-hashes -r requirements.lock" in runs, "install from the lock file"
    assert "voicebot models" in runs, "models must be joined and verified at build time"
    env = " ".join(args for name, args in instructions if name == "ENV")
    pipeline = re.search(r"VOICEBOT_PIPELINE=/app/(\S+)", env)
    assert pipeline and (REPO / pipeline.group(1)).is_file()


def test_dockerignore_keeps_the_virtualenv_out() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def fly_seconds(value: str | int) -> float:
    """A fly.toml duration ("300s", "5m" or a bare number of seconds) in seconds."""
    if isinstance(value, int):
        return float(value)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m)?", value.strip())
    assert match, f"unreadable duration {value!r}"
    return float(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_fly_toml_serves_port_7860_with_health_check_and_limits() -> None:
    fly = tomllib.loads((REPO / "fly.toml").read_text())
    service = fly["http_service"]
    assert service["internal_port"] == 7860
    assert service["force_https"] is True
    assert service["auto_stop_machines"] in ("off", False), "stopping machines drops calls"
    assert service["auto_start_machines"] is True
    assert service["min_machines_running"] >= 1
    concurrency = service["concurrency"]
    assert concurrency["type"] == "connections", "one call is one long-lived connection"
    per_core = benchmarked_calls_per_core()
    assert concurrency["soft_limit"] == per_core, (
        f"soft_limit should be BENCHMARKS.md's calls per core ({per_core})"
    )
    assert per_core < concurrency["hard_limit"] <= 2 * per_core
    checks = service["checks"]
    assert any(check["path"] == "/readyz" and check["method"] == "GET" for check in checks), (
        "the proxy must stop sending connections to a starting or draining machine: /readyz"
    )
    assert fly["build"]["dockerfile"] == "Dockerfile" and (REPO / "Dockerfile").is_file()
    pipeline = fly["env"]["VOICEBOT_PIPELINE"].removeprefix("/app/")
    loaded = load_pipeline(REPO / pipeline, environ={})
    assert loaded.config.name == "cloud"


def test_fly_toml_lets_calls_drain_before_the_machine_is_killed() -> None:
    from bot.settings import ServerSettings

    fly = tomllib.loads((REPO / "fly.toml").read_text())
    assert fly["kill_signal"] == "SIGTERM", "the server drains on SIGTERM"
    kill_timeout = fly_seconds(fly["kill_timeout"])
    assert kill_timeout <= 300, "Fly's maximum kill_timeout is 300 s"
    settings = ServerSettings.from_env(dict(fly["env"]))
    drain = float(fly["env"]["VOICEBOT_DRAIN_SECONDS"])
    assert settings.drain_secs == drain, "the server does not read VOICEBOT_DRAIN_SECONDS"
    assert drain + 15 <= kill_timeout, (
        f"VOICEBOT_DRAIN_SECONDS {drain} leaves no time to say goodbye before kill_timeout "
        f"{kill_timeout}s"
    )


def test_fly_toml_runs_one_process_on_a_one_cpu_machine() -> None:
    fly = tomllib.loads((REPO / "fly.toml").read_text())
    (vm,) = fly["vm"]
    assert vm["size"] in ("shared-cpu-1x", "performance-1x"), "one server process uses one core"
    memory = vm["memory"].lower()
    assert memory.endswith("gb") and float(memory.removesuffix("gb")) >= 1, memory


def test_health_routes_exist() -> None:
    from bot.settings import ServerSettings
    from server import create_app

    app = create_app(ServerSettings.from_env({}))
    paths = {getattr(route, "path", None) for route in app.routes}
    assert {
        "/healthz",
        "/readyz",
        "/metrics",
        "/",
        "/api/offer",
        "/twilio/voice",
        "/twilio/stream",
        "/twilio/status",
    } <= paths
