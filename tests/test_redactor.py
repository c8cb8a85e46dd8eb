"""The redactor as the pipeline and `voicebot redact` use it: spoken forms, placeholders and
the vault, numbers spread over two finals, fail-closed behaviour, no network."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipecat.frames.frames import InterimTranscriptionFrame, TranscriptionFrame
from pipecat.tests.utils import run_test

from bot.redactor import (
    REDACTION_FAILED_NOTICE,
    RedactionProcessor,
    TextRedactor,
    load_analyzer,
)
from bot.stage_options import PresidioOptions
from tests.support.servers import REPO

DIGIT_WORDS = re.compile(
    r"\b(zero|oh|one|two|three|four|five|six|seven|eight|nine|ten|twenty|thirty|forty|fifty|"
    r"sixty|seventy|eighty|ninety|hundred)\b|\d",
    re.IGNORECASE,
)


def redactor(**options: object) -> TextRedactor:
    opts = PresidioOptions(**options)  # type: ignore[arg-type]
    return TextRedactor(load_analyzer(opts.spacy_model, opts.language), opts)


@pytest.mark.parametrize(
    "utterance",
    [
        "my social is one two three, four five, six seven eight nine",
        "My SSN is 123-45-6789.",
        "the card number is four one one one, one one one one, one one one one, one one one one",
        "you can reach me at four one five, five five five, oh one two three",
    ],
)
def test_spoken_and_written_numbers_are_redacted_where_they_were_said(utterance: str) -> None:
    result = redactor().analyze(utterance)
    assert result.findings, utterance
    assert not DIGIT_WORDS.search(result.text), result.text


def test_text_without_personal_data_is_left_byte_for_byte() -> None:
    text = "Next year I'd like to order three pizzas, maybe at one o'clock."
    assert redactor().redact(text) == text


def test_placeholders_are_consistent_and_the_vault_keeps_the_value() -> None:
    r = redactor(style="placeholder")
    first = r.redact("hi, my name is john smith")
    second = r.redact("yes this is John Smith again")
    placeholders = re.findall(r"\[PERSON_\d+\]", first + " " + second)
    assert placeholders and len(set(placeholders)) == 1, (first, second)
    assert "john" not in (first + second).lower()
    assert r.vault.reveal(placeholders[0]).lower() == "john smith"  # type: ignore[union-attr]
    assert "john" not in repr(r.vault).lower()


async def test_a_number_spread_over_two_finals_is_caught() -> None:
    processor = RedactionProcessor(redactor(), timeout_secs=2.0, window_secs=4.0)
    down, _ = await run_test(
        processor,
        frames_to_send=[
            TranscriptionFrame("my social security number is one two three", "u", "t"),
            TranscriptionFrame("four five six seven eight nine", "u", "t"),
        ],
    )
    texts = [f.text for f in down if isinstance(f, TranscriptionFrame)]
    assert len(texts) == 2
    assert not DIGIT_WORDS.search(texts[1]), texts


class _Broken:
    def analyze(self, **_: object) -> list[object]:
        raise RuntimeError("boom")


class _Slow:
    def analyze(self, **_: object) -> list[object]:
        time.sleep(0.5)
        return []


@pytest.mark.parametrize("analyzer", [_Broken(), _Slow()])
async def test_fails_closed(analyzer: object) -> None:
    processor = RedactionProcessor(
        TextRedactor(analyzer, PresidioOptions()), timeout_secs=0.1, window_secs=0
    )
    secret = "my social is 123-45-6789"
    down, _ = await run_test(
        processor,
        frames_to_send=[
            TranscriptionFrame(secret, "u", "t"),
            InterimTranscriptionFrame(secret, "u", "t"),
        ],
    )
    texts = [f.text for f in down if isinstance(f, TranscriptionFrame | InterimTranscriptionFrame)]
    assert texts == [REDACTION_FAILED_NOTICE] * 2
    await asyncio.sleep(0.5)  # let the slow analysis finish before the next test uses the thread


async def test_interims_can_be_dropped() -> None:
    processor = RedactionProcessor(redactor(), timeout_secs=2.0, interim="drop")
    down, _ = await run_test(
        processor, frames_to_send=[InterimTranscriptionFrame("my name is", "u", "t")]
    )
    assert not [f for f in down if isinstance(f, InterimTranscriptionFrame)]


def test_voicebot_redact_json_without_network(tmp_path: Path) -> None:
    """The contract's `voicebot redact --json`, with every outbound socket blocked."""
    log = tmp_path / "net.log"
    guard = REPO / "tests/support/no_network"
    lines = ["my ssn is 123-45-6789", "nothing to see here"]
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "redact", "--json"],
        input="\n".join(lines) + "\n",
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(guard), str(REPO)]),
            "NO_NETWORK_LOG": str(log),
        },
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out[0]["text"] == "my ssn is <US_SSN>"
    assert out[0]["entities"] == [{"type": "US_SSN", "start": 10, "end": 21}]
    assert out[1] == {"text": "nothing to see here", "entities": []}
    assert "ARMED" in log.read_text() and "BLOCKED" not in log.read_text()


async def test_a_card_read_out_in_pauses_is_redacted_piece_by_piece() -> None:
    processor = RedactionProcessor(redactor(), timeout_secs=2.0)
    pieces = [
        "my card number is 4539.",
        "1488",
        "0343",
        "6467 and I was born on March 3rd.",
        "1980.",
    ]
    down, _ = await run_test(
        processor, frames_to_send=[TranscriptionFrame(p, "u", "t") for p in pieces]
    )
    texts = [f.text for f in down if isinstance(f, TranscriptionFrame)]
    assert len(texts) == len(pieces)
    assert not any(re.search(r"\d", text) for text in texts), texts


def test_spacy_ner_can_be_switched_on_for_names_no_list_knows() -> None:
    opts = PresidioOptions(ner=True)
    ner = TextRedactor(load_analyzer(opts.spacy_model, opts.language, ner=True), opts)
    text = "Yesterday I spoke with Priya Xu about the refund."
    assert "Priya" not in ner.redact(text) and "<PERSON>" in ner.redact(text)


def test_a_number_covered_in_part_is_redacted_whole() -> None:
    before = "my card number is 4539. 1488."
    text = redactor().redact("Zero, three, four, three.", before)
    assert not DIGIT_WORDS.search(text), text
    # ... but the widening stops at the first ordinary word.
    assert redactor().redact("my ssn is 123-45-6789 and one more thing") == (
        "my ssn is <US_SSN> and one more thing"
    )
