"""`bot.bench_setup`: the fakes' environment is read from their `export` lines, and the bench
reports the greeting's set-up time of real calls."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.bench import read_exports as _read_exports
from bot.bench_setup import bench_setup
from tests.fakes.suite import FakeSuite, Latencies
from tests.support.background import BackgroundLoop
from tests.support.servers import REPO, RunningServer, start_server


def _printer(script: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True
    )


def test_exports_are_read_up_to_ready() -> None:
    process = _printer(
        """
        print("export A=plain")
        print("export B='with space'")
        print("noise")
        print("# ready", flush=True)
        import time; time.sleep(30)
        """
    )
    try:
        assert _read_exports(process, timeout=10) == {"A": "plain", "B": "with space"}
    finally:
        process.kill()
        process.wait()


def test_fakes_that_exit_are_reported() -> None:
    process = _printer('print("export A=1")')
    with pytest.raises(RuntimeError, match="exited"):
        _read_exports(process, timeout=10)


@pytest.fixture
def cloud_server(tmp_path: Path) -> Iterator[RunningServer]:
    loop = BackgroundLoop()
    suite = FakeSuite(Latencies(stt_final_ms=0, llm_first_token_ms=0, tts_first_chunk_ms=0))
    loop.run(suite.start())
    server = start_server(REPO / "pipelines/cloud.yaml", tmp_path / "server.log", env=suite.env())
    yield server
    server.stop()
    loop.run(suite.stop())
    loop.close()


@pytest.mark.slow
async def test_bench_setup_reports_both_transports(
    cloud_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(
        url=cloud_server.url, pipeline=None, fakes=False, calls=2, transport=None, json=True
    )
    assert await bench_setup(args) == 0
    output = json.loads(capsys.readouterr().out)
    reports = {r["transport"]: r for r in output["reports"]}
    assert set(reports) == {"twilio", "webrtc"}
    for report in reports.values():
        assert report["greeted"] == 2 and report["errors"] == [], report
        assert report["greeting_ms"]["n"] == 2 and report["later_greeting_ms"]["n"] == 1
        assert all(0 < ms < 10_000 for ms in report["greeting_ms_each"]), report
        assert report["greeting_seconds"]["p50"] > 0.5  # the whole greeting was heard
    assert reports["webrtc"]["connected_ms"]["n"] == 2
