"""`voicebot bench latency`: repeated calls, first-reply latency as the caller hears it.

Runs sequential calls with `voicebot call`'s clients against a server (a running one with
`--url`, or one it starts itself with `--pipeline`) and reports median, p95 and max of
`first_reply_audio_ms` (end of the caller's speech to the first bot audio) and `connected_ms`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_UTTERANCE = "What color is the sky on a clear day?"


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: every reported value was observed)."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 1),
        "p95": round(percentile(values, 0.95), 1),
        "max": round(max(values), 1),
    }


def synthesize_utterance(text: str, path: Path) -> Path:
    """Speak `text` with the bundled Piper voice (needs the `piper` extra)."""
    import wave

    from piper import PiperVoice

    from bot.models import PIPER_VOICE, piper_voice_dir

    voice = PiperVoice.load(piper_voice_dir() / f"{PIPER_VOICE}.onnx")
    lead = b"\x00\x00" * int(voice.config.sample_rate * 0.3)
    audio = b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(text))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(voice.config.sample_rate)
        out.writeframes(lead + audio + lead)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def spawned_server(
    pipeline: str,
    log_path: Path,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """`voicebot serve` on a free loopback port, until the block ends; yields its URL."""
    with spawned_server_process(pipeline, log_path, timeout, env) as (url, _process):
        yield url


# A bench drives one server from one address past its limits (bot/limits.py): lifted here,
# unless this environment or the caller sets them.
BENCH_LIMITS = {"VOICEBOT_MAX_CALLS": "100000", "VOICEBOT_RATE_LIMIT": "off"}


@contextlib.contextmanager
def spawned_server_process(
    pipeline: str,
    log_path: Path,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
    cpus: set[int] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`voicebot serve` on a free loopback port (with `env` added to this environment, pinned
    to `cpus` if given), ready to take calls; yields its URL and process."""
    port = _free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bot.cli",
                "serve",
                "--pipeline",
                pipeline,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**BENCH_LIMITS, **os.environ, **(env or {})},
        )
    if cpus:
        os.sched_setaffinity(process.pid, cpus)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited; see {log_path}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {timeout}s; see {log_path}")
            time.sleep(0.25)
        yield url, process
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        if process.poll() is None:
            process.kill()


@contextlib.contextmanager
def fakes_process(
    log_path: Path,
    transcript: str | None = None,
    cpus: set[int] | None = None,
    timeout: float = 120.0,
) -> Iterator[tuple[dict[str, str], subprocess.Popen[str]]]:
    """`python -m tests.fakes` in its own process (with `transcript`: the cheap mode, a canned
    transcript); yields the environment its `export` lines give (keys and base URLs pointing
    `pipelines/cloud.yaml` at it) once it is warm, and the process."""
    repo = Path(__file__).resolve().parent.parent
    if not (repo / "tests" / "fakes" / "__main__.py").is_file():
        raise RuntimeError("the provider fakes need a checkout of the repository (tests/fakes)")
    command = [sys.executable, "-m", "tests.fakes", "--port", str(_free_port())]
    if transcript is not None:
        command += ["--transcript", transcript]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=repo, stdout=subprocess.PIPE, stderr=log, text=True)
    if cpus:
        os.sched_setaffinity(process.pid, cpus)
    try:
        yield read_exports(process, timeout), process
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        if process.poll() is None:
            process.kill()


FAKES_READY = "# ready"  # tests/fakes/__main__.py prints it once the fakes are warm


def read_exports(process: subprocess.Popen[str], timeout: float) -> dict[str, str]:
    """The `export NAME=value` lines, up to `# ready`."""
    import shlex

    assert process.stdout is not None
    env: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the fakes exited with {process.wait()}")
        line = line.strip()
        if line == FAKES_READY:
            return env
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    raise RuntimeError(f"the fakes were not ready after {timeout}s")


async def run_latency(
    url: str, transport: str, calls: int, wav: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from bot.caller import run_call

    results = []
    for _ in range(calls):
        results.append(await run_call(wav, url=url, transport=transport))
    ok = [r for r in results if not r.get("error") and r.get("first_reply_audio_ms") is not None]
    report = {
        "transport": transport,
        "calls": calls,
        "answered": len(ok),
        "first_reply_audio_ms": summarize([r["first_reply_audio_ms"] for r in ok]),
        "connected_ms": summarize(
            [r["connected_ms"] for r in results if r.get("connected_ms") is not None]
        ),
        "errors": [r["error"] for r in results if r.get("error")],
    }
    return results, report


def machine() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit or None,
    }


async def bench_latency(args: Any) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        wav = (
            Path(args.wav)
            if args.wav
            else synthesize_utterance(DEFAULT_UTTERANCE, Path(scratch) / "utterance.wav")
        )
        with contextlib.ExitStack() as stack:
            url = args.url
            if args.pipeline:
                url = stack.enter_context(
                    spawned_server(args.pipeline, Path(scratch) / "server.log")
                )
            reports = []
            for transport in args.transport:
                _, report = await run_latency(url, transport, args.calls, wav)
                reports.append(report)
    output = {"machine": machine(), "pipeline": args.pipeline, "reports": reports}
    if args.json:
        print(json.dumps(output))
    else:
        for report in reports:
            lat, conn = report["first_reply_audio_ms"], report["connected_ms"]
            print(
                f"{report['transport']:>7}: first_reply_audio_ms p50 {lat['p50']} "
                f"p95 {lat['p95']} max {lat['max']} (n={lat['n']}/{report['calls']}); "
                f"connected_ms p50 {conn['p50']}"
            )
            for error in report["errors"]:
                print(f"         error: {error}")
    return 0 if all(r["answered"] == r["calls"] for r in reports) else 1
