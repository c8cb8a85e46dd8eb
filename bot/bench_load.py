"""`voicebot bench load` and `voicebot bench soak`: one server process under many Twilio calls.

The server runs `pipelines/cloud.yaml` against the provider fakes of `tests/fakes` in their
cheap mode (a canned transcript after energy-based end of speech, a canned streamed reply, TTS
audio from a cache, the published latencies injected), started as their own process so their
CPU is not the server's. The callers are `voicebot call`'s Twilio caller, many at once in this
process. With `--pin` (the default on a machine with two or more cores) the server gets CPU 0
to itself and the fakes and callers share the others, so "calls per core" means what it says.

load: for each step N, N caller lanes run calls back to back (greeting, then `--turns` turns of
the caller's utterance and the bot's reply, then hang up) for `--hold` seconds after a ramp.
Per step: first_reply_audio_ms p50/p95 (the end of the caller's speech to the first bot audio
at the caller), the greeting's delay after `start`, audio gaps (a chunk that arrived after the
audio before it had finished playing, inside one bot utterance) longer than `--gap-ms`, the
server's CPU per concurrent call (share of one core), RSS per call, and the same for the load
generator and the fakes. The verdict: the largest N whose first_reply p95 stays within
`--max-added-ms` of the one-call baseline's p95 with no gap and no failed call.

soak: `--calls` calls in sequence (`--lanes` at a time), one turn each; the server's RSS and
open file descriptors after a warm-up and at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bot.bench import (
    DEFAULT_UTTERANCE,
    fakes_process,
    machine,
    spawned_server_process,
    summarize,
    synthesize_utterance,
)
from bot.settings import REPO_ROOT

CLOUD_PIPELINE = str(REPO_ROOT / "pipelines" / "cloud.yaml")
SOAK_UTTERANCE = "Is the sky blue?"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------ process readings (Linux)


@dataclass(frozen=True)
class ProcessReading:
    """CPU seconds (user + system, all threads) and memory of one process, at one time."""

    at: float
    cpu_secs: float
    rss_bytes: int
    open_fds: int


def read_process(pid: int) -> ProcessReading:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    with open(f"/proc/{pid}/statm") as statm:
        rss = int(statm.read().split()[1]) * PAGE_BYTES
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return ProcessReading(time.monotonic(), cpu, rss, fds)


def core_share(before: ProcessReading, after: ProcessReading) -> float:
    """Share of one core used between two readings."""
    wall = after.at - before.at
    return (after.cpu_secs - before.cpu_secs) / wall if wall > 0 else 0.0


# ------------------------------------------------------------------ the fakes' own process


# ------------------------------------------------------------------ one call


@dataclass
class Utterance:
    """The caller's speech at 8 kHz and where in it the speech ends."""

    pcm8k: Any
    speech_end: float

    @classmethod
    def from_wav(cls, path: Path) -> Utterance:
        from bot.caller.audio import load_wav, resample, speech_end_offset

        pcm, rate = load_wav(path)
        return cls(resample(pcm, rate, 8000), speech_end_offset(pcm, rate))


@dataclass
class CallRecord:
    started: float  # monotonic
    greeting_ms: float | None = None  # `start` sent → first greeting audio at the caller
    first_reply_ms: list[tuple[float, float]] = field(default_factory=list)  # (speech end, ms)
    gaps_ms: list[float] = field(default_factory=list)  # inside bot utterances
    error: str | None = None


async def run_one_call(
    url: str,
    utterance: Utterance,
    turns: int,
    gap_ms: float,
    hang_up_at_reply: bool = False,
    after_reply: Callable[[], bool] | None = None,
) -> CallRecord:
    """Greeting, `turns` × (speak, hear the reply), hang up. `after_reply()` is called after
    each reply; True ends the turns early."""
    from bot.caller.timeline import (
        CallTiming,
        FlowResult,
        time_of_offset,
        wait_greeting,
        wait_reply,
    )
    from bot.caller.twilio import FRAME_SECONDS, TwilioCaller

    record = CallRecord(started=time.monotonic())
    timing = CallTiming(greeting_max_wait=10.0, reply_gap=0.8, reply_timeout=15.0)
    caller = TwilioCaller(url, http_timeout=20.0)
    try:
        await caller.connect()
        since = caller.connected_at or record.started
        greeting = await wait_greeting(caller.log, since, timing)
        if greeting.greeting_first is None:
            raise RuntimeError("no greeting")
        record.greeting_ms = round((greeting.greeting_first - since) * 1000, 1)
        _add_gaps(
            record,
            caller,
            greeting.greeting_first,
            greeting.greeting_first + greeting.greeting_seconds,
            gap_ms,
        )
        for _ in range(turns):
            sent_at = await caller.send_pcm(utterance.pcm8k)
            flow = FlowResult(
                speech_end=time_of_offset(sent_at, utterance.speech_end, FRAME_SECONDS)
            )
            if hang_up_at_reply:
                timing.reply_gap = 0.0
            await wait_reply(caller.log, flow, timing)
            if flow.reply_first is None or flow.speech_end is None:
                raise RuntimeError("no reply" + (" (stream closed)" if caller.log.closed else ""))
            record.first_reply_ms.append(
                (flow.speech_end, round((flow.reply_first - flow.speech_end) * 1000, 1))
            )
            if flow.reply_end is not None:
                _add_gaps(record, caller, flow.reply_first, flow.reply_end, gap_ms)
            if after_reply is not None and after_reply():
                break
    except Exception as exc:
        record.error = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await caller.stop()
    return record


def _add_gaps(record: CallRecord, caller: Any, first: float, end: float, gap_ms: float) -> None:
    for gap in caller.log.underruns(first, end):
        if gap * 1000 > gap_ms:
            record.gaps_ms.append(round(gap * 1000, 1))


# ------------------------------------------------------------------ load steps


@dataclass
class Processes:
    server: int
    fakes: int

    def read(self) -> dict[str, ProcessReading]:
        return {
            "server": read_process(self.server),
            "fakes": read_process(self.fakes),
            "callers": read_process(os.getpid()),
        }


async def _concurrency(url: str) -> int | None:
    import aiohttp

    with contextlib.suppress(Exception):
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
            session.get(f"{url}/readyz") as response,
        ):
            return int((await response.json()).get("calls", 0))
    return None


async def run_step(
    url: str,
    processes: Processes,
    calls: int,
    *,
    utterance: Utterance,
    turns: int,
    ramp_secs: float,
    hold_secs: float,
    gap_ms: float,
    min_turns: int = 0,
    base_rss: int | None = None,
) -> dict[str, Any]:
    """`calls` lanes of back-to-back calls; measured after the ramp for `hold_secs` (and, with
    `min_turns`, until that many turns were heard). RSS per call is counted from `base_rss`
    (the warm server before any step: memory that earlier steps left in the allocator is not
    per-call memory) or, without it, from this step's start."""
    idle = processes.read()
    base = base_rss if base_rss is not None else idle["server"].rss_bytes
    t0 = time.monotonic()
    measure_from = t0 + ramp_secs
    stop_at = measure_from + hold_secs
    records: list[CallRecord] = []

    def more_wanted() -> bool:
        if time.monotonic() < stop_at:
            return True
        heard = sum(1 for r in records for at, _ in r.first_reply_ms if at >= measure_from)
        return heard < min_turns

    async def lane(index: int) -> None:
        await asyncio.sleep(ramp_secs * index / max(1, calls))
        while more_wanted():
            records.append(await run_one_call(url, utterance, turns, gap_ms))

    lanes = [asyncio.create_task(lane(i)) for i in range(calls)]
    await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
    start = processes.read()
    concurrency: list[int] = []
    end = start
    peak_rss = start["server"].rss_bytes
    while not all(task.done() for task in lanes):
        await asyncio.sleep(1.0)
        if time.monotonic() <= stop_at:
            active = await _concurrency(url)
            if active is not None:
                concurrency.append(active)
            peak_rss = max(peak_rss, read_process(processes.server).rss_bytes)
            end = processes.read()
    await asyncio.gather(*lanes)

    measured = [r for r in records if r.started >= t0]
    replies = [ms for r in measured for at, ms in r.first_reply_ms if at >= measure_from]
    greetings = [
        r.greeting_ms for r in measured if r.greeting_ms is not None and r.started >= measure_from
    ]
    gaps = [g for r in measured for g in r.gaps_ms]
    errors = [r.error for r in measured if r.error]
    mean_calls = sum(concurrency) / len(concurrency) if concurrency else float(calls)
    shares = {name: core_share(start[name], end[name]) for name in start}
    return {
        "calls": calls,
        "mean_concurrent_calls": round(mean_calls, 1),
        "turns": len(replies),
        "first_reply_audio_ms": summarize(replies),
        "greeting_ms": summarize(greetings),
        "gaps_over_threshold": len(gaps),
        "worst_gap_ms": max(gaps, default=None),
        "failed_calls": len(errors),
        "calls_made": len(measured),
        "errors": sorted(set(errors))[:5],
        "server_core_share": round(shares["server"], 3),
        "server_cpu_per_call_pct": round(100 * shares["server"] / max(mean_calls, 1e-9), 2),
        "callers_core_share": round(shares["callers"], 3),
        "fakes_core_share": round(shares["fakes"], 3),
        "server_rss_mb": round(peak_rss / 2**20, 1),
        "server_rss_base_mb": round(base / 2**20, 1),
        "rss_per_call_mb": round((peak_rss - base) / 2**20 / max(calls, 1), 2),
    }


def passes(step: dict[str, Any], baseline_p95: float, max_added_ms: float) -> bool:
    p95 = step["first_reply_audio_ms"]["p95"]
    return (
        p95 is not None
        and p95 - baseline_p95 <= max_added_ms
        and step["gaps_over_threshold"] == 0
        and step["failed_calls"] == 0
    )


@contextlib.contextmanager
def bench_stack(
    scratch: Path,
    transcript: str,
    pin: bool,
    env: dict[str, str] | None = None,
    pipeline: str = CLOUD_PIPELINE,
) -> Iterator[tuple[str, Processes]]:
    """The fakes and a server on `pipelines/cloud.yaml`; with `pin`, CPU 0 is the server's and
    the others are the fakes' and this process's."""
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus = others = None
    if pin and len(cpus) >= 2:
        server_cpus, others = {cpus[0]}, set(cpus[1:])
        os.sched_setaffinity(0, others)
    with (
        fakes_process(scratch / "fakes.log", transcript, others) as (fakes_env, fakes),
        spawned_server_process(
            pipeline,
            scratch / "server.log",
            env={**fakes_env, "VOICEBOT_LOG_LEVEL": "WARNING", **(env or {})},
            cpus=server_cpus,
        ) as (url, server),
    ):
        yield url, Processes(server.pid, fakes.pid)


def _prepare_utterance(scratch: Path, wav: str | None, text: str) -> tuple[Utterance, str]:
    path = Path(wav) if wav else synthesize_utterance(text, scratch / "utterance.wav")
    return Utterance.from_wav(path), text


async def bench_load(args: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(args.keep_logs) if args.keep_logs else Path(tmp)
        scratch.mkdir(parents=True, exist_ok=True)
        utterance, transcript = _prepare_utterance(scratch, args.wav, DEFAULT_UTTERANCE)
        with bench_stack(scratch, transcript, args.pin, pipeline=args.pipeline) as (
            url,
            processes,
        ):
            step_args = dict(utterance=utterance, turns=args.turns, gap_ms=args.gap_ms)
            # Warm-up: the fakes' TTS cache, the server's first-call paths.
            await run_step(url, processes, 1, ramp_secs=0, hold_secs=0, min_turns=1, **step_args)
            step_args["base_rss"] = read_process(processes.server).rss_bytes
            baseline = await run_step(
                url,
                processes,
                1,
                ramp_secs=0,
                hold_secs=args.hold,
                min_turns=args.baseline_turns,
                **step_args,
            )
            baseline_p95 = baseline["first_reply_audio_ms"]["p95"]
            if baseline_p95 is None:
                raise RuntimeError(f"the one-call baseline got no reply: {baseline['errors']}")
            steps = []
            for calls in args.steps:
                step = await run_step(
                    url, processes, calls, ramp_secs=args.ramp, hold_secs=args.hold, **step_args
                )
                step["added_p95_ms"] = round(
                    (step["first_reply_audio_ms"]["p95"] or float("inf")) - baseline_p95, 1
                )
                step["passes"] = passes(step, baseline_p95, args.max_added_ms)
                steps.append(step)
                _print_step(step, args.json)
                if not step["passes"] and args.stop_on_fail:
                    break
                await asyncio.sleep(3.0)  # calls end and the server settles
    best = max((s["calls"] for s in steps if s["passes"]), default=0)
    server_cores = 1 if args.pin else len(os.sched_getaffinity(0))
    return {
        "machine": machine(),
        "command": " ".join(["voicebot", "bench", "load", *sys.argv[3:]]),
        "rule": {"max_added_p95_ms": args.max_added_ms, "gap_ms": args.gap_ms},
        "baseline": baseline,
        "steps": steps,
        "max_calls_passing": best,
        "calls_per_core": round(best / server_cores, 1),
    }


def _print_step(step: dict[str, Any], quiet: bool) -> None:
    if quiet:
        return
    lat = step["first_reply_audio_ms"]
    print(
        f"N={step['calls']:>4} (mean {step['mean_concurrent_calls']:>5}): first reply p50 "
        f"{lat['p50']} p95 {lat['p95']} (+{step['added_p95_ms']}) over {step['turns']} turns; "
        f"gaps {step['gaps_over_threshold']}; failed {step['failed_calls']}; "
        f"server {100 * step['server_core_share']:.0f}% of a core, "
        f"{step['server_cpu_per_call_pct']}%/call, RSS {step['server_rss_mb']} MB "
        f"({step['rss_per_call_mb']} MB/call); callers {100 * step['callers_core_share']:.0f}%, "
        f"fakes {100 * step['fakes_core_share']:.0f}% -> {'PASS' if step['passes'] else 'FAIL'}",
        flush=True,
    )


async def bench_soak(args: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(args.keep_logs) if args.keep_logs else Path(tmp)
        scratch.mkdir(parents=True, exist_ok=True)
        utterance, transcript = _prepare_utterance(scratch, args.wav, SOAK_UTTERANCE)
        with bench_stack(scratch, transcript, args.pin, pipeline=args.pipeline) as (
            url,
            processes,
        ):
            done = 0
            records: list[CallRecord] = []
            readings: dict[str, Any] = {}

            async def lane() -> None:
                nonlocal done
                while done < args.calls:
                    done += 1
                    records.append(
                        await run_one_call(url, utterance, 1, args.gap_ms, hang_up_at_reply=True)
                    )
                    if len(records) == args.warmup:
                        readings["after_warmup"] = await _settled(url, processes.server)
                    if not args.json and len(records) % 50 == 0:
                        print(
                            f"{len(records)} calls, RSS "
                            f"{read_process(processes.server).rss_bytes / 2**20:.1f} MB",
                            flush=True,
                        )

            started = time.monotonic()
            await asyncio.gather(*(lane() for _ in range(args.lanes)))
            readings["end"] = await _settled(url, processes.server)
            elapsed = time.monotonic() - started
    before, after = readings["after_warmup"], readings["end"]
    errors = [r.error for r in records if r.error]
    return {
        "machine": machine(),
        "command": " ".join(["voicebot", "bench", "soak", *sys.argv[3:]]),
        "calls": len(records),
        "lanes": args.lanes,
        "minutes": round(elapsed / 60, 1),
        "failed_calls": len(errors),
        "errors": sorted(set(errors))[:5],
        "first_reply_audio_ms": summarize([ms for r in records for _, ms in r.first_reply_ms]),
        "warmup_calls": args.warmup,
        "rss_mb_after_warmup": round(before.rss_bytes / 2**20, 1),
        "rss_mb_end": round(after.rss_bytes / 2**20, 1),
        "rss_growth_pct": round(100 * (after.rss_bytes - before.rss_bytes) / before.rss_bytes, 2),
        "server_cpu_secs_per_call": round(
            (after.cpu_secs - before.cpu_secs) / max(1, len(records) - args.warmup), 3
        ),
        "open_fds_after_warmup": before.open_fds,
        "open_fds_end": after.open_fds,
    }


async def _settled(url: str, pid: int, max_wait: float = 30.0) -> ProcessReading:
    """The server's reading once its calls have all ended."""
    deadline = time.monotonic() + max_wait
    for _ in range(int(max_wait / 0.5)):
        if time.monotonic() >= deadline or (await _concurrency(url) or 0) == 0:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(2.0)
    return read_process(pid)


def print_soak(result: dict[str, Any]) -> None:
    print(
        f"{result['calls']} calls ({result['lanes']} at a time) in {result['minutes']} min, "
        f"{result['failed_calls']} failed; RSS {result['rss_mb_after_warmup']} MB after "
        f"{result['warmup_calls']} calls -> {result['rss_mb_end']} MB "
        f"({result['rss_growth_pct']:+.2f} %); open fds {result['open_fds_after_warmup']} -> "
        f"{result['open_fds_end']}"
    )


def dump(result: dict[str, Any]) -> str:
    return json.dumps(
        result, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o)
    )
