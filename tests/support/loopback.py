"""WebRTC on loopback: aiortc leaves 127.0.0.1 out of its host candidates, so a host with only
`lo` offers none and never connects; 127.0.0.2 on `lo` gives it one (shared/NOTES.md)."""

from __future__ import annotations

import subprocess

import pytest


def ensure_loopback_candidate_address() -> None:
    """Add 127.0.0.2/8 to `lo` unless it is there; fail the test with the reason otherwise."""
    shown = subprocess.run(
        ["ip", "-4", "addr", "show", "dev", "lo"], capture_output=True, text=True
    )
    if "127.0.0.2/" in shown.stdout:
        return
    added = subprocess.run(
        ["ip", "addr", "add", "127.0.0.2/8", "dev", "lo"], capture_output=True, text=True
    )
    if added.returncode != 0:
        pytest.fail(
            "WebRTC on loopback needs 127.0.0.2 on lo (aiortc skips 127.0.0.1); "
            f"`ip addr add 127.0.0.2/8 dev lo` failed: {added.stderr.strip()}"
        )
