"""What observability costs a call: the cloud pipeline with everything off, then with everything
on, against the protocol fakes of `tests/fakes` (the set-up of `tests.bench_cloud`).

    python -m tests.bench_observability --turns 20 [--rounds 2] [--json]

Two server configurations, each a fresh `voicebot serve --pipeline pipelines/cloud.yaml`:
- off: VOICEBOT_OBSERVABILITY=off, text logs at WARNING, no OTLP, no summary file;
- on: observability on (Pipecat metrics, turn-latency observers, call summaries, traces),
  JSON logs at INFO, call summaries appended to a JSONL file, and spans exported over
  OTLP/HTTP to a minimal receiver started here (it answers 200 and counts what arrives).
The configurations are run interleaved (off, on, off, on, ... for `--rounds`) to spread the
drift of a shared machine over both. In each run: one warm-up call per transport, then
`--turns` Twilio calls and `--turns` WebRTC calls, one turn each. Reported per run:
voice-to-voice p50/p95/max per transport (as the caller hears it, as in `tests.bench_cloud`),
the server process's CPU seconds (utime + stime from /proc/<pid>/stat) per measured call, its
resident memory after the calls, the log bytes it wrote per call, and for "on" the spans,
requests and bytes the OTLP receiver got and the lines of the summary file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bot.bench import DEFAULT_UTTERANCE, machine, run_latency, summarize, synthesize_utterance
from tests.bench_cloud import stage_lines
from tests.fakes.suite import FakeSuite, Latencies
from tests.support.background import BackgroundLoop
from tests.support.otlp import OtlpReceiver
from tests.support.servers import REPO, start_server

TRANSPORTS = ("twilio", "webrtc")
# Longer than the BatchSpanProcessor's 5 s schedule delay: the spans of the calls before are
# exported (and their CPU spent) inside the window that is measured.
SETTLE_SECS = 6.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (not its children), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; fields from 3 on
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for {pid}")


def child_pids(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children.extend(int(c) for c in text)
    return children


def turn_lines(log: str) -> list[dict[str, float]]:
    """The server's per-turn stage lines, from text logs or from JSON logs' "message"."""
    turns: list[dict[str, float]] = []
    for line in log.splitlines():
        if line.startswith("{"):
            try:
                line = str(json.loads(line).get("message", ""))
            except ValueError:
                continue
        turns.extend(stage_lines(line))
    return turns


def config_env(name: str, scratch: Path, receiver: OtlpReceiver | None) -> dict[str, str]:
    # Empty values override anything inherited from the caller's environment.
    if name == "off":
        return {
            "VOICEBOT_OBSERVABILITY": "off",
            "VOICEBOT_LOG_FORMAT": "text",
            "VOICEBOT_LOG_LEVEL": "WARNING",
            "VOICEBOT_SUMMARY_FILE": "",
            "VOICEBOT_TRACE_FILE": "",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",
        }
    assert receiver is not None
    return {
        "VOICEBOT_OBSERVABILITY": "on",
        "VOICEBOT_LOG_FORMAT": "json",
        "VOICEBOT_LOG_LEVEL": "INFO",
        "VOICEBOT_SUMMARY_FILE": str(scratch / "summaries.jsonl"),
        "VOICEBOT_TRACE_FILE": "",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",
    }


async def run_config(
    name: str, round_no: int, turns: int, wav: Path, suite_env: dict[str, str], scratch: Path
) -> dict[str, Any]:
    run_dir = scratch / f"{name}-{round_no}"
    run_dir.mkdir()
    receiver = OtlpReceiver() if name == "on" else None
    log_path = run_dir / "server.log"
    server = start_server(
        REPO / "pipelines/cloud.yaml",
        log_path,
        env={**suite_env, **config_env(name, run_dir, receiver)},
    )
    pid = server.process.pid
    try:
        for transport in TRANSPORTS:
            await run_latency(server.url, transport, 1, wav)  # warm-up: connections, caches
        await asyncio.sleep(SETTLE_SECS)
        cpu_before = cpu_seconds(pid)
        log_before = log_path.stat().st_size
        spans_before = receiver.counts() if receiver else None
        started = time.monotonic()
        results = {}
        for transport in TRANSPORTS:
            results[transport], _ = await run_latency(server.url, transport, turns, wav)
        calls_secs = time.monotonic() - started
        await asyncio.sleep(SETTLE_SECS)
        cpu_after = cpu_seconds(pid)
        rss = rss_mib(pid)
        children = child_pids(pid)
        log_bytes = log_path.stat().st_size - log_before
        spans_window = receiver.counts() if receiver else None
    finally:
        server.stop()
    calls = turns * len(TRANSPORTS)
    out: dict[str, Any] = {
        "config": name,
        "round": round_no,
        "calls": calls,
        "calls_wall_secs": round(calls_secs, 1),
        "server_cpu_secs_per_call": round((cpu_after - cpu_before) / calls, 4),
        "server_rss_mib_after": rss,
        "server_child_processes": len(children),
        "log_bytes_per_call": round(log_bytes / calls),
        "transports": {},
    }
    for transport, res in results.items():
        v2v = [r["first_reply_audio_ms"] for r in res if r.get("first_reply_audio_ms")]
        out["transports"][transport] = {
            "voice_to_voice_ms": summarize(v2v),
            "values_ms": v2v,
            "errors": [r["error"] for r in res if r.get("error")],
        }
    if receiver is not None and spans_before is not None and spans_window is not None:
        final = receiver.counts()  # after the server's shutdown flushed its last batch
        receiver.close()
        window = {k: spans_window[k] - spans_before[k] for k in spans_window}
        summary_file = run_dir / "summaries.jsonl"
        lines = summary_file.read_text().splitlines() if summary_file.exists() else []
        out["otlp"] = {
            "measured_window": window,
            "spans_per_call": round(window["spans"] / calls, 1),
            "bytes_per_call": round(window["bytes"] / calls),
            "total_after_shutdown": final,
        }
        out["summary_file"] = {
            "lines": len(lines),
            "calls_made": calls + len(TRANSPORTS),  # with the warm-ups
            "parseable": sum(1 for line in lines if _is_json_object(line)),
        }
        out["turn_latency_lines_logged"] = len(turn_lines(server.log()))
    return out


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def pooled(runs: list[dict[str, Any]], config: str) -> dict[str, Any]:
    mine = [r for r in runs if r["config"] == config]
    return {
        "config": config,
        "runs": len(mine),
        "calls": sum(r["calls"] for r in mine),
        "server_cpu_secs_per_call": round(
            statistics.mean(r["server_cpu_secs_per_call"] for r in mine), 4
        ),
        "transports": {
            t: {
                "voice_to_voice_ms": summarize(
                    [v for r in mine for v in r["transports"][t]["values_ms"]]
                )
            }
            for t in TRANSPORTS
        },
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    where = machine()  # at the start: the commit may move while this runs
    loop = BackgroundLoop()
    suite = FakeSuite(Latencies(), transcript=DEFAULT_UTTERANCE)
    loop.run(suite.start())
    loop.run(suite.elevenlabs.warm("Hello! How can I help you today?", "The sky is blue."), 60)
    runs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            scratch = Path(tmp)
            wav = synthesize_utterance(DEFAULT_UTTERANCE, scratch / "utterance.wav")
            for round_no in range(1, args.rounds + 1):
                for config in ("off", "on"):
                    runs.append(
                        await run_config(config, round_no, args.turns, wav, suite.env(), scratch)
                    )
    finally:
        loop.run(suite.stop())
        loop.close()
    return {
        "machine": where,
        "turns_per_transport": args.turns,
        "rounds": args.rounds,
        "runs": runs,
        "pooled": [pooled(runs, "off"), pooled(runs, "on")],
    }


def _fmt(s: dict[str, Any]) -> str:
    return f"{s['p50']} / {s['p95']} / {s['max']}"


def table(output: dict[str, Any]) -> str:
    rows = [
        "| run | calls | Twilio v2v p50 / p95 / max ms | WebRTC v2v p50 / p95 / max ms "
        "| server CPU s/call | RSS after MiB | log bytes/call |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in output["runs"]:
        t = r["transports"]
        rows.append(
            f"| {r['config']} (round {r['round']}) | {r['calls']} "
            f"| {_fmt(t['twilio']['voice_to_voice_ms'])} "
            f"| {_fmt(t['webrtc']['voice_to_voice_ms'])} "
            f"| {r['server_cpu_secs_per_call']:.3f} | {r['server_rss_mib_after']} "
            f"| {r['log_bytes_per_call']} |"
        )
    for p in output["pooled"]:
        t = p["transports"]
        rows.append(
            f"| {p['config']}, all rounds | {p['calls']} "
            f"| {_fmt(t['twilio']['voice_to_voice_ms'])} "
            f"| {_fmt(t['webrtc']['voice_to_voice_ms'])} "
            f"| {p['server_cpu_secs_per_call']:.3f} (mean) | | |"
        )
    lines = ["\n".join(rows), ""]
    for r in output["runs"]:
        errors = [e for t in r["transports"].values() for e in t["errors"]]
        if errors:
            lines.append(f"{r['config']} round {r['round']}: {len(errors)} errors: {errors[:3]}")
        if "otlp" in r:
            o, s = r["otlp"], r["summary_file"]
            lines.append(
                f"on round {r['round']}: OTLP receiver, measured calls: "
                f"{o['measured_window']['spans']} spans in {o['measured_window']['requests']} "
                f"requests, {o['measured_window']['bytes']} bytes ({o['spans_per_call']} spans, "
                f"{o['bytes_per_call']} bytes a call; undecoded "
                f"{o['measured_window']['undecoded']}); total after shutdown "
                f"{o['total_after_shutdown']['spans']} spans; summary file {s['lines']} lines "
                f"({s['parseable']} JSON) for {s['calls_made']} calls; "
                f"turn-latency log lines {r['turn_latency_lines_logged']}"
            )
        if r["server_child_processes"]:
            lines.append(f"{r['config']} round {r['round']}: server has child processes")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench_observability")
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    output = asyncio.run(bench(args))
    if args.json:
        print(json.dumps(output))
        return
    m = output["machine"]
    print(f"{m['cpus']} CPUs, Python {m['python']}, commit {m['commit']}")
    print(table(output))


if __name__ == "__main__":
    main()
