"""The offline stack needs no network: the whole server runs with outbound sockets blocked.

The server subprocess loads tests/support/no_network/sitecustomize.py, which refuses every
non-loopback connect, sendto and name lookup and records each attempt. The model cache starts
empty, so joining the packaged model parts happens under the block too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.caller.twilio import run_twilio_call
from tests.support.servers import REPO, start_server

pytestmark = pytest.mark.slow

GUARD = REPO / "tests/support/no_network"


def guarded_env(log: Path, cache: Path) -> dict[str, str]:
    return {
        "PYTHONPATH": os.pathsep.join([str(GUARD), str(REPO)]),
        "NO_NETWORK_LOG": str(log),
        "VOICEBOT_CACHE_DIR": str(cache),
    }


def test_the_guard_blocks_and_records(tmp_path: Path) -> None:
    log = tmp_path / "net.log"
    probe = "import urllib.request; urllib.request.urlopen('http://example.com', timeout=5)"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, **guarded_env(log, tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ARMED" in log.read_text() and "BLOCKED getaddrinfo 'example.com'" in log.read_text()


async def test_offline_pipeline_serves_a_call_without_network(
    tmp_path: Path, speech: dict[str, Path]
) -> None:
    log = tmp_path / "net.log"
    cache = tmp_path / "cache"
    server = start_server(
        REPO / "pipelines/local.yaml", tmp_path / "server.log", env=guarded_env(log, cache)
    )
    try:
        result = await run_twilio_call(speech["week"], server.url)
    finally:
        server.stop()
    attempts = log.read_text()
    assert "ARMED" in attempts, "the network guard was not loaded by the server"
    assert "BLOCKED" not in attempts, attempts
    assert result["error"] is None and result["reply_seconds"] > 0.5, result
    assert (cache / "whisper-base-ct2/model.bin").is_file()
    assert any(cache.glob("*.gguf"))
