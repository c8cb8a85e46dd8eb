"""Shared fixtures: the real server on loopback and real speech to say to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import REPO, RunningServer, start_server
from tests.support.speech import synthesize_wav

QUESTIONS = {
    "sky": "What color is the sky on a clear day?",
    "week": "How many days are there in a week?",
    "story": "Please tell me a long story about a brave knight and a friendly dragon.",
    "stop": "Stop. Wait a moment please.",
    "name": "Hello, my name is John Smith.",
}


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def speech(speech_dir: Path) -> dict[str, Path]:
    """The test utterances as WAV files, spoken by the local TTS."""
    return {
        name: synthesize_wav(text, speech_dir / f"{name}.wav") for name, text in QUESTIONS.items()
    }


@pytest.fixture(scope="session")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """`voicebot serve` with the shipped offline pipeline, no Twilio token (loopback only)."""
    log = tmp_path_factory.mktemp("server") / "local.log"
    server = start_server(REPO / "pipelines/local.yaml", log)
    yield server
    server.stop()
