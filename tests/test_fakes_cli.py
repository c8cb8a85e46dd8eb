"""`python -m tests.fakes`: the fakes on one port, and the environment that points
`pipelines/cloud.yaml` at them, one `export VAR=value` a line."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import anthropic
import pytest

from bot.config import load_pipeline, require_env
from tests.support.servers import REPO, free_port


def _exports(lines: list[str]) -> dict[str, str]:
    env = {}
    for line in lines:
        assert line.startswith("export "), line
        name, _, value = line[len("export ") :].partition("=")
        env[name] = shlex.split(value)[0]
    return env


def test_cli_serves_the_fakes_and_prints_the_cloud_environment() -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes",
            "--port",
            str(port),
            "--transcript",
            "hi",
            "--llm-first-token-ms",
            "0",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(12)]
        env = _exports(lines)
        assert env["ANTHROPIC_BASE_URL"] == f"http://127.0.0.1:{port}"
        assert env["DEEPGRAM_BASE_URL"] == f"ws://127.0.0.1:{port}"
        # The printed environment is all cloud.yaml needs ...
        loaded = load_pipeline(REPO / "pipelines/cloud.yaml", environ=env)
        require_env(loaded)
        # ... and the servers behind it answer the vendors' own SDKs.
        client = anthropic.Anthropic(
            api_key=env["ANTHROPIC_API_KEY"], base_url=env["ANTHROPIC_BASE_URL"], max_retries=0
        )
        reply = client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=50,
            messages=[{"role": "user", "content": "What colour is the sky?"}],
        )
        assert reply.content[0].text == "The sky is blue."  # type: ignore[union-attr]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_cli_refuses_a_non_loopback_address() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.fakes", "--host", "0.0.0.0", "--print-env-only"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )
    assert result.returncode == 2
    assert "loopback" in result.stderr


@pytest.mark.parametrize("flag", ["--stt-final-ms", "--llm-first-token-ms", "--tts-first-chunk-ms"])
def test_latency_options_are_documented(flag: str) -> None:
    assert flag in (REPO / "README.md").read_text()
