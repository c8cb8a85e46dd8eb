"""PII redaction benchmark over the labelled evaluation set (tests/pii_eval/utterances.jsonl).

    python -m tests.pii_eval.benchmark [--pipeline pipelines/local.yaml] [--json] [--data PATH]

Builds the product redactor from the pipeline file and reports, per entity type, fully-covered
recall (a gold span counts only if every letter and digit of it lies inside the union of the
finding spans, whatever their type), span precision (share of finding spans that overlap some
gold span; overall and per finding type), the share of no-PII utterances whose text was altered,
and the latency of `analyze` per utterance. Targets are printed next to each number.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

DEFAULT_DATA = Path(__file__).with_name("utterances.jsonl")
DEFAULT_PIPELINE = "pipelines/local.yaml"

RECALL_TARGETS: dict[str, float] = {
    "US_SSN": 0.99,
    "CREDIT_CARD": 0.99,
    "PHONE_NUMBER": 0.99,
    "US_BANK_NUMBER": 0.99,
    "ABA_ROUTING_NUMBER": 0.99,
    "MEDICAL_RECORD_NUMBER": 0.99,
    "EMAIL_ADDRESS": 0.95,
    "DATE_OF_BIRTH": 0.95,
    "PERSON": 0.92,
    "STREET_ADDRESS": 0.90,
}
NO_PII_ALTERED_MAX = 0.03
LATENCY_MEDIAN_MAX_MS = 5.0
LATENCY_P95_MAX_MS = 15.0


class SpanLike(Protocol):
    start: int
    end: int


class FindingLike(SpanLike, Protocol):
    type: str


# --------------------------------------------------------------------------------------------
# Metrics (pure functions)
# --------------------------------------------------------------------------------------------


def fully_covered(text: str, start: int, end: int, covers: Iterable[tuple[int, int]]) -> bool:
    """True if every letter and digit of text[start:end] lies inside some (start, end) cover."""
    ranges = list(covers)
    for i in range(start, end):
        if text[i].isalnum() and not any(s <= i < e for s, e in ranges):
            return False
    return True


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def precise(finding: tuple[int, int], gold: Iterable[tuple[int, int]]) -> bool:
    """A finding is a true positive if it overlaps some gold span (of any type)."""
    return any(overlaps(finding, g) for g in gold)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def evaluate(
    records: Iterable[dict[str, Any]],
    analyze: Callable[[str], Any],
    *,
    timer: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """Run `analyze` (text -> RedactionResult-like: .text, .findings[.type/.start/.end]) over the
    records and compute the report. Latency covers the `analyze` call only."""
    records = list(records)
    gold_total: dict[str, int] = {}
    gold_hit: dict[str, int] = {}
    by_form_total: dict[str, int] = {}
    by_form_hit: dict[str, int] = {}
    find_total: dict[str, int] = {}
    find_hit: dict[str, int] = {}
    no_pii = no_pii_altered = 0
    latencies: list[float] = []
    misses: list[dict[str, Any]] = []
    false_alarms: list[dict[str, Any]] = []

    for rec in records:
        text: str = rec["text"]
        t0 = timer()
        result = analyze(text)
        latencies.append((timer() - t0) * 1000.0)
        findings = [(f.type, f.start, f.end) for f in result.findings]
        covers = [(s, e) for _, s, e in findings]
        gold = [(g["type"], g["start"], g["end"]) for g in rec["spans"]]
        for gtype, gs, ge in gold:
            hit = fully_covered(text, gs, ge, covers)
            gold_total[gtype] = gold_total.get(gtype, 0) + 1
            gold_hit[gtype] = gold_hit.get(gtype, 0) + int(hit)
            form = rec["form"]
            by_form_total[form] = by_form_total.get(form, 0) + 1
            by_form_hit[form] = by_form_hit.get(form, 0) + int(hit)
            if not hit:
                misses.append({"id": rec["id"], "type": gtype, "gold": text[gs:ge], "text": text})
        gold_ranges = [(s, e) for _, s, e in gold]
        for ftype, fs, fe in findings:
            ok = precise((fs, fe), gold_ranges)
            find_total[ftype] = find_total.get(ftype, 0) + 1
            find_hit[ftype] = find_hit.get(ftype, 0) + int(ok)
            if not ok:
                false_alarms.append(
                    {"id": rec["id"], "type": ftype, "found": text[fs:fe], "text": text}
                )
        if not gold:
            no_pii += 1
            no_pii_altered += int(result.text != text)

    recall = {
        t: {
            "covered": gold_hit.get(t, 0),
            "total": gold_total.get(t, 0),
            "recall": _ratio(gold_hit.get(t, 0), gold_total.get(t, 0)),
            "target": RECALL_TARGETS.get(t),
        }
        for t in [*RECALL_TARGETS, *sorted(set(gold_total) - set(RECALL_TARGETS))]
    }
    precision_by_type = {
        t: {
            "overlapping": find_hit[t],
            "total": find_total[t],
            "precision": _ratio(find_hit[t], find_total[t]),
        }
        for t in sorted(find_total)
    }
    all_found = sum(find_total.values())
    return {
        "utterances": len(records),
        "recall": recall,
        "recall_by_form": {
            f: {
                "covered": by_form_hit[f],
                "total": by_form_total[f],
                "recall": _ratio(by_form_hit[f], by_form_total[f]),
            }
            for f in sorted(by_form_total)
        },
        "precision": {
            "overall": _ratio(sum(find_hit.values()), all_found),
            "findings": all_found,
            "by_type": precision_by_type,
        },
        "no_pii": {
            "utterances": no_pii,
            "altered": no_pii_altered,
            "share": _ratio(no_pii_altered, no_pii),
            "target_max": NO_PII_ALTERED_MAX,
        },
        "latency_ms": {
            "median": statistics.median(latencies) if latencies else 0.0,
            "p95": percentile(latencies, 95),
            "max": max(latencies, default=0.0),
            "target_median_max": LATENCY_MEDIAN_MAX_MS,
            "target_p95_max": LATENCY_P95_MAX_MS,
        },
        "misses": misses,
        "false_alarms": false_alarms,
    }


def targets_met(report: dict[str, Any]) -> bool:
    ok = all(
        r["recall"] is not None and r["recall"] >= r["target"]
        for r in report["recall"].values()
        if r["target"] is not None
    )
    share = report["no_pii"]["share"]
    ok = ok and share is not None and share <= NO_PII_ALTERED_MAX
    lat = report["latency_ms"]
    return ok and lat["median"] <= LATENCY_MEDIAN_MAX_MS and lat["p95"] <= LATENCY_P95_MAX_MS


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:.3f}"


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISS"


def format_table(report: dict[str, Any], examples: int = 0) -> str:
    lines = [f"PII benchmark: {report['utterances']} utterances", ""]
    lines.append(f"{'entity':<24}{'covered':>9}{'total':>7}{'recall':>8}{'target':>9}  ")
    for etype, r in report["recall"].items():
        target = r["target"]
        met = r["recall"] is not None and target is not None and r["recall"] >= target
        tgt = f">= {target:.2f}" if target is not None else ""
        lines.append(
            f"{etype:<24}{r['covered']:>9}{r['total']:>7}{_fmt(r['recall']):>8}{tgt:>9}  "
            + (_mark(met) if target is not None else "")
        )
    lines += ["", "recall by form (all entity types)"]
    for form, r in report["recall_by_form"].items():
        lines.append(f"  {form:<22}{r['covered']:>9}{r['total']:>7}{_fmt(r['recall']):>8}")
    p = report["precision"]
    lines += ["", f"span precision overall: {_fmt(p['overall'])} of {p['findings']} findings"]
    for ftype, r in p["by_type"].items():
        lines.append(f"  {ftype:<22}{r['overlapping']:>9}{r['total']:>7}{_fmt(r['precision']):>8}")
    n = report["no_pii"]
    share = n["share"]
    lines += [
        "",
        f"no-PII utterances altered: {n['altered']}/{n['utterances']} = "
        f"{(share or 0) * 100:.1f}%  (target <= {NO_PII_ALTERED_MAX * 100:.0f}%)  "
        + _mark(share is not None and share <= NO_PII_ALTERED_MAX),
    ]
    lat = report["latency_ms"]
    lines += [
        f"latency per utterance: median {lat['median']:.2f} ms (target <= "
        f"{LATENCY_MEDIAN_MAX_MS:.0f}) {_mark(lat['median'] <= LATENCY_MEDIAN_MAX_MS)}, "
        f"p95 {lat['p95']:.2f} ms (target <= {LATENCY_P95_MAX_MS:.0f}) "
        f"{_mark(lat['p95'] <= LATENCY_P95_MAX_MS)}, max {lat['max']:.2f} ms",
        "",
        "all targets met" if targets_met(report) else "targets NOT met",
    ]
    if examples:
        lines += ["", f"first {examples} misses:"]
        lines += [
            f"  {m['id']} {m['type']}: {m['gold']!r}  <- {m['text']!r}"
            for m in report["misses"][:examples]
        ]
        lines += ["", f"first {examples} false alarms:"]
        lines += [
            f"  {m['id']} {m['type']}: {m['found']!r}  <- {m['text']!r}"
            for m in report["false_alarms"][:examples]
        ]
    return "\n".join(lines)


def load_records(path: str | Path = DEFAULT_DATA) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def build_analyze(pipeline: str) -> Callable[[str], Any]:
    from bot.config import load_pipeline
    from bot.redactor import build_text_redactor

    redactor = build_text_redactor(load_pipeline(pipeline))
    return redactor.analyze


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="PII redaction benchmark")
    parser.add_argument("--pipeline", default=DEFAULT_PIPELINE)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--examples", type=int, default=0, help="print N misses/false alarms")
    args = parser.parse_args(argv)

    records = load_records(args.data)
    analyze = build_analyze(args.pipeline)
    analyze("warm up: my name is John Smith and my number is 415 555 0123")  # not timed
    report = evaluate(records, analyze)
    if args.json:
        out = dict(report)
        out["targets_met"] = targets_met(report)
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_table(report, args.examples))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
