"""Debian's Chromium, driven by Playwright for Python, with a WAV file as its microphone.

Playwright's own browser download does not work here (no internet), so the tests launch the
system Chromium (`make test` installs it with apt when it is missing). The page is loaded from
http://localhost (a secure context: getUserMedia exists there and not on a plain IP address).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from tests.support.speech import synthesize, write_wav

CHROMIUM = "/usr/bin/chromium"

# Chromium's own background traffic (updates, sync, safe browsing) fails on a closed network,
# many connections at a time: turned off. Loopback candidates are allowed so a call connects on a
# machine whose only interface is `lo`.
QUIET_FLAGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-gpu",
    "--no-sandbox",  # CI runs as root
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_path() -> str:
    """The system Chromium; a clear failure (not a skip) when it is missing."""
    if not Path(CHROMIUM).exists():
        found = shutil.which("chromium")
        if found is None:
            raise RuntimeError(
                f"{CHROMIUM} is missing: `make test` installs Debian's chromium with apt"
            )
        return found
    return CHROMIUM


def fake_microphone_flags(wav: Path | None) -> list[str]:
    """Chromium's fake microphone, granted without a prompt, playing `wav` once (no loop)."""
    flags = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
    if wav is not None:
        flags.append(f"--use-file-for-fake-audio-capture={wav}%noloop")
    return flags


def caller_wav(text: str, path: Path, *, lead_secs: float, tail_secs: float) -> Path:
    """`text` spoken after `lead_secs` of silence (the greeting plays meanwhile), then silence.

    Chromium starts the file when the page opens the microphone, so the lead covers connecting
    and the greeting; the tail keeps the microphone silent while the bot answers."""
    samples, rate = synthesize(text)
    lead = np.zeros(int(rate * lead_secs), dtype=np.int16)
    tail = np.zeros(int(rate * tail_secs), dtype=np.int16)
    return write_wav(path, np.concatenate([lead, samples, tail]), rate)


# Installed in the page before its own script runs: an AnalyserNode on whatever stream the bot's
# <audio> element plays, sampled every 20 ms into window.__botAudio as [ms since load, RMS].
# Independent of the page's own meter, which the test does not trust to measure itself.
BOT_AUDIO_PROBE = """
(() => {
  window.__botAudio = [];
  let analyser = null, stream = null, context = null;
  setInterval(() => {
    const audio = document.getElementById("bot-audio");
    const current = audio && audio.srcObject;
    if (current && current !== stream) {
      stream = current;
      context = context || new AudioContext();
      analyser = context.createAnalyser();
      analyser.fftSize = 2048;
      context.createMediaStreamSource(stream).connect(analyser);
      context.resume();
    }
    if (!analyser) return;
    const samples = new Float32Array(analyser.fftSize);
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    window.__botAudio.push([performance.now(), Math.sqrt(sum / samples.length)]);
  }, 20);
})();
"""
