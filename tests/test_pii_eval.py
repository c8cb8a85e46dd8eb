"""The PII evaluation set and the benchmark's metrics (not the product's recall: that is
`python -m tests.pii_eval.benchmark`)."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pii_eval import benchmark, generate

DATA = Path(generate.__file__).with_name("utterances.jsonl")


@pytest.fixture(scope="module")
def seven() -> list[generate.Utterance]:
    return generate.generate(7)


def test_generator_is_deterministic(seven: list[generate.Utterance]) -> None:
    again = generate.dumps(generate.generate(7))
    assert generate.dumps(seven) == again
    assert generate.dumps(generate.generate(8)) != again


def test_committed_file_is_the_seed_7_output(seven: list[generate.Utterance]) -> None:
    assert DATA.read_text(encoding="utf-8") == generate.dumps(seven)


def test_cli_writes_the_same_bytes(tmp_path: Path, seven: list[generate.Utterance]) -> None:
    out = tmp_path / "u.jsonl"
    generate.main(["--seed", "7", "--out", str(out)])
    assert out.read_bytes() == generate.dumps(seven).encode("utf-8")


def test_lines_have_the_schema_and_spans_are_sound() -> None:
    records = benchmark.load_records(DATA)
    assert len(records) >= 2400
    assert len({r["id"] for r in records}) == len(records)
    for rec in records:
        assert set(rec) == {"id", "text", "form", "spans"}
        assert rec["form"] in generate.FORMS
        text = rec["text"]
        previous_end = 0
        for span in sorted(rec["spans"], key=lambda s: s["start"]):
            assert set(span) == {"type", "start", "end"}
            assert span["type"] in generate.ENTITY_TYPES
            assert 0 <= span["start"] < span["end"] <= len(text), rec
            assert span["start"] >= previous_end, f"overlapping gold spans in {rec['id']}"
            previous_end = span["end"]
            value = text[span["start"] : span["end"]]
            assert value == value.strip() and any(c.isalnum() for c in value), rec


def test_counts_forms_and_no_pii_share() -> None:
    records = benchmark.load_records(DATA)
    per_type = Counter(t for r in records for t in {s["type"] for s in r["spans"]})
    for etype in generate.ENTITY_TYPES:
        assert per_type[etype] >= 150, (etype, per_type[etype])
    no_pii = [r for r in records if not r["spans"]]
    assert len(no_pii) / len(records) >= 0.25
    forms = Counter(r["form"] for r in records if r["spans"])
    total = sum(forms.values())
    assert abs(forms["formatted"] / total - 0.40) < 0.05
    assert abs(forms["spoken"] / total - 0.45) < 0.05
    assert abs(forms["mixed"] / total - 0.15) < 0.05
    # Spoken utterances really are spoken: no digits in them.
    spoken = [r for r in records if r["form"] == "spoken"]
    assert not [r["id"] for r in spoken if re.search(r"\d", r["text"])]
    # Traps are there.
    texts = " ".join(r["text"].lower() for r in no_pii)
    for trap in ("next year", "s s n", "march madness", "routing", "agent", "will", "bill"):
        assert trap in texts, trap


def test_every_card_is_luhn_valid_and_every_aba_passes_the_checksum(
    seven: list[generate.Utterance],
) -> None:
    cards = abas = 0
    for utt in seven:
        for span in utt.spans:
            surface = utt.text[span.start : span.end]
            digits = re.sub(r"\D", "", surface)
            if span.type == "CREDIT_CARD":
                cards += 1
                assert generate.luhn_valid(span.value) and len(span.value) in (15, 16)
                assert span.value[0] in "23456", span.value  # Visa, MC, Amex, Discover
                if utt.form == "formatted":
                    assert digits == span.value, surface
            elif span.type == "ABA_ROUTING_NUMBER":
                abas += 1
                assert generate.aba_valid(span.value)
                if utt.form == "formatted":
                    assert digits == span.value, surface
            elif span.type == "US_SSN" and utt.form == "formatted":
                assert digits == span.value
    assert cards >= 150 and abas >= 150


def test_checksum_helpers_reject_bad_numbers() -> None:
    assert generate.luhn_valid("4111111111111111")
    assert not generate.luhn_valid("4111111111111112")
    assert generate.aba_valid("021000021")  # a real published routing number
    assert not generate.aba_valid("021000022")


def test_spoken_number_variations_appear() -> None:
    text = "\n".join(r["text"] for r in benchmark.load_records(DATA))
    for variant in (
        " oh ",
        "double ",
        "triple ",
        " um",
        "nineteen ",
        " dot ",
        " at ",
        "underscore",
        "hundred",
        "third",
    ):
        assert variant in text, variant


@dataclass(frozen=True)
class F:
    type: str
    start: int
    end: int


@dataclass(frozen=True)
class R:
    text: str
    findings: list[F]


def test_fully_covered_needs_every_letter_and_digit() -> None:
    text = "ssn 123-45-6789 ok"
    start, end = 4, 15
    assert benchmark.fully_covered(text, start, end, [(4, 15)])
    # The dashes are not letters or digits: pieces that skip only them still cover it.
    assert benchmark.fully_covered(text, start, end, [(4, 7), (8, 10), (11, 15)])
    assert not benchmark.fully_covered(text, start, end, [(4, 14)])  # last digit left out
    assert not benchmark.fully_covered(text, start, end, [(8, 15)])
    assert not benchmark.fully_covered(text, start, end, [])


def test_precision_overlap() -> None:
    gold = [(4, 15)]
    assert benchmark.precise((0, 5), gold)
    assert benchmark.precise((14, 18), gold)
    assert not benchmark.precise((15, 18), gold)  # touching is not overlapping
    assert not benchmark.precise((0, 4), gold)


def test_evaluate_on_hand_made_records() -> None:
    records = [
        {
            "id": "a",
            "form": "formatted",
            "text": "ssn 123-45-6789",
            "spans": [{"type": "US_SSN", "start": 4, "end": 15}],
        },
        {
            "id": "b",
            "form": "spoken",
            "text": "my name is ann lee",
            "spans": [{"type": "PERSON", "start": 11, "end": 18}],
        },
        {"id": "c", "form": "spoken", "text": "next year", "spans": []},
        {"id": "d", "form": "spoken", "text": "order 3 pizzas", "spans": []},
    ]
    answers = {
        # SSN covered by a PHONE finding: recall is type-agnostic.
        "ssn 123-45-6789": R("ssn <X>", [F("PHONE_NUMBER", 4, 15)]),
        # Only the first name: partially covered, so not recalled; the finding still overlaps.
        "my name is ann lee": R("my name is <P> lee", [F("PERSON", 11, 14)]),
        # A false alarm that alters a no-PII utterance.
        "next year": R("<DATE>", [F("DATE_TIME", 0, 9)]),
        "order 3 pizzas": R("order 3 pizzas", []),
    }
    ticks = iter([0.0, 0.001, 1.0, 1.004, 2.0, 2.002, 3.0, 3.010])
    report = benchmark.evaluate(records, answers.__getitem__, timer=lambda: next(ticks))

    assert report["recall"]["US_SSN"]["recall"] == 1.0
    assert report["recall"]["PERSON"]["recall"] == 0.0
    assert report["recall"]["CREDIT_CARD"]["recall"] is None
    assert report["recall_by_form"]["spoken"]["recall"] == 0.0
    assert report["precision"]["overall"] == pytest.approx(2 / 3)
    assert report["precision"]["by_type"]["DATE_TIME"]["precision"] == 0.0
    assert report["precision"]["by_type"]["PERSON"]["precision"] == 1.0
    assert report["no_pii"]["altered"] == 1 and report["no_pii"]["share"] == 0.5
    lat = report["latency_ms"]
    assert lat["median"] == pytest.approx(3.0)
    assert lat["max"] == pytest.approx(10.0)
    assert lat["p95"] == pytest.approx(10.0)
    assert [m["id"] for m in report["misses"]] == ["b"]
    assert not benchmark.targets_met(report)
    table = benchmark.format_table(report)
    assert "PERSON" in table and ">= 0.92" in table and "targets NOT met" in table


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert benchmark.percentile(values, 95) == 95.0
    assert benchmark.percentile(values, 50) == 50.0
    assert benchmark.percentile([7.0], 95) == 7.0


def test_jsonl_lines_are_plain_json() -> None:
    for line in DATA.read_text(encoding="utf-8").splitlines()[:50]:
        assert json.loads(line)["id"].startswith("u")
