"""Start the real server as a subprocess on loopback, as a user would (`voicebot serve`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_server(
    pipeline: str | Path,
    log_path: Path,
    env: dict[str, str] | None = None,
    ready_timeout: float = 90.0,
) -> RunningServer:
    """Run `voicebot serve` and wait for /readyz; raise with the server's log if it fails."""
    port = free_port()
    # Every test call comes from 127.0.0.1: no per-address rate limit unless a test asks for one.
    full_env = {
        "VOICEBOT_RATE_LIMIT": "off",
        **os.environ,
        "VOICEBOT_LOG_LEVEL": "INFO",
        **(env or {}),
    }
    for name in (
        "TWILIO_AUTH_TOKEN",
        "VOICEBOT_PUBLIC_URL",
        "VOICEBOT_API_KEYS",
        "VOICEBOT_SESSION_SECRET",
        "VOICEBOT_TURN_URLS",
        "VOICEBOT_TURN_SECRET",
    ):
        if env is None or name not in env:
            full_env.pop(name, None)
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "serve",
            "--pipeline",
            str(pipeline),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=REPO,
        env=full_env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    server = RunningServer(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(f"{server.url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"server not ready after {ready_timeout}s:\n{server.log()}")
