"""`voicebot bench setup`: how fast a call is set up and greeted, as the caller sees it.

Sequential calls with `voicebot call`'s clients against a server (a running one with `--url`,
or one it starts itself with `--pipeline`; with `--fakes` the server's providers are the local
protocol fakes of `tests/fakes`, started as a separate process). For each call:

- Twilio: `greeting_ms`, from sending the Media Streams `start` message to the first bot audio
  (the greeting) at the caller; `connected_ms`, from the webhook POST to the stream WebSocket
  open. (Twilio's protocol has no acknowledgement of `start`: the first thing the server sends
  is the greeting's audio, so `greeting_ms` is the set-up as the caller lives it.)
- WebRTC: `connected_ms`, from `POST /api/offer` to the peer connection `connected`;
  `greeting_ms`, from the same POST to the first greeting audio.

Each call hangs up once the greeting is over (`greeting_seconds`: its length as heard). The
first call of each transport is also reported alone (`first_greeting_ms`: on a fresh server
it is the one that synthesises the greeting while the phrase cache is empty, and it pays the
server's first-call warm-up), and the others together (`later_greeting_ms`). Reports
p50/p95/max (nearest rank: with 20 calls p95 is the max) per transport.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bot.bench import fakes_process, machine, spawned_server, summarize
from bot.caller.timeline import ms

TRANSPORTS = ("twilio", "webrtc")


@contextlib.contextmanager
def fakes_env(log_path: Path, timeout: float = 120.0) -> Iterator[dict[str, str]]:
    """The provider fakes in their own process; yields the environment that points
    `pipelines/cloud.yaml` at them."""
    with fakes_process(log_path, timeout=timeout) as (env, _process):
        yield env


async def _record_greeting(
    caller: Any, start: float, result: dict[str, Any], greeting_wait: float
) -> None:
    """Fills `greeting_ms` and `greeting_seconds` once the greeting is over."""
    first = await caller.wait_for_bot_audio(after=start, max_wait=greeting_wait)
    if first is None:
        result["error"] = "no greeting"
        return
    result["greeting_ms"] = ms(first.arrival - start)
    await caller.wait_for_bot_quiet(gap=0.5, max_wait=greeting_wait)
    last = caller.log.last_audible_end() or first.end
    result["greeting_seconds"] = round(last - first.start, 3)


async def twilio_setup(url: str, greeting_wait: float = 10.0) -> dict[str, Any]:
    """One Twilio call: `start` → first greeting audio; hangs up after the greeting."""
    from bot.caller.twilio import TwilioCaller

    class TimedCaller(TwilioCaller):
        start_sent_at: float | None = None

        async def _send_json(self, message: dict[str, Any]) -> None:
            await super()._send_json(message)
            if message.get("event") == "start" and self.start_sent_at is None:
                self.start_sent_at = time.monotonic()

    caller = TimedCaller(url)
    result: dict[str, Any] = {"transport": "twilio", "error": None}
    try:
        await caller.connect()
        result["connected_ms"] = caller.connected_ms
        result["webhook_ms"] = caller.webhook_ms
        start = caller.start_sent_at or caller.connected_at or time.monotonic()
        await _record_greeting(caller, start, result, greeting_wait)
    except Exception as exc:  # reported, the run goes on
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await caller.stop()
    return result


async def webrtc_setup(url: str, greeting_wait: float = 10.0) -> dict[str, Any]:
    """One WebRTC call: offer POST → connected, and → first greeting audio."""
    from bot.caller.webrtc import WebRTCCaller

    caller = WebRTCCaller(url)
    result: dict[str, Any] = {"transport": "webrtc", "error": None}
    try:
        await caller.connect()
        result["connected_ms"] = caller.connected_ms
        result["offer_ms"] = caller.offer_ms
        start = caller.started_at or time.monotonic()
        await _record_greeting(caller, start, result, greeting_wait)
    except Exception as exc:  # reported, the run goes on
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await caller.close()
    return result


async def run_setup(url: str, transport: str, calls: int) -> dict[str, Any]:
    one = twilio_setup if transport == "twilio" else webrtc_setup
    results = [await one(url) for _ in range(calls)]
    ok = [r for r in results if not r["error"]]

    def values(name: str, rows: list[dict[str, Any]]) -> list[float]:
        return [r[name] for r in rows if r.get(name) is not None]

    return {
        "transport": transport,
        "calls": calls,
        "greeted": len(ok),
        "greeting_ms": summarize(values("greeting_ms", ok)),
        "first_greeting_ms": results[0].get("greeting_ms") if results else None,
        "later_greeting_ms": summarize(values("greeting_ms", ok[1:])),
        "greeting_ms_each": [r.get("greeting_ms") for r in results],
        "connected_ms": summarize(values("connected_ms", results)),
        "greeting_seconds": summarize(values("greeting_seconds", ok)),
        "errors": [r["error"] for r in results if r["error"]],
    }


async def bench_setup(args: Any) -> int:
    """args: url, pipeline (starts a server; wins over url), fakes, calls, transport (list or
    None: both), json. Exit status 0 when every call was greeted."""
    transports = list(getattr(args, "transport", None) or TRANSPORTS)
    pipeline = getattr(args, "pipeline", None)
    url = getattr(args, "url", None)
    if not pipeline and not url:
        raise SystemExit("give --url or --pipeline")
    if getattr(args, "fakes", False) and not pipeline:
        raise SystemExit("--fakes starts the server's providers: it needs --pipeline")
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as stack:
        if pipeline:
            env = None
            if getattr(args, "fakes", False):
                env = stack.enter_context(fakes_env(Path(scratch) / "fakes.log"))
            url = stack.enter_context(
                spawned_server(pipeline, Path(scratch) / "server.log", env=env)
            )
        reports = [await run_setup(url, transport, args.calls) for transport in transports]
    output = {
        "machine": machine(),
        "pipeline": pipeline,
        "fakes": bool(getattr(args, "fakes", False)),
        "reports": reports,
    }
    if args.json:
        print(json.dumps(output))
    else:
        for report in reports:
            greet, later = report["greeting_ms"], report["later_greeting_ms"]
            conn = report["connected_ms"]
            print(
                f"{report['transport']:>7}: greeting_ms p50 {greet['p50']} p95 {greet['p95']} "
                f"max {greet['max']} (n={greet['n']}/{report['calls']}); first call "
                f"{report['first_greeting_ms']}, later calls p50 {later['p50']} "
                f"p95 {later['p95']}; connected_ms p50 {conn['p50']} p95 {conn['p95']} "
                f"max {conn['max']}"
            )
            for error in report["errors"]:
                print(f"         error: {error}")
    return 0 if all(r["greeted"] == r["calls"] for r in reports) else 1


def main(argv: list[str] | None = None) -> int:
    """`python -m bot.bench_setup ...` until `voicebot bench setup` exists."""
    import argparse
    import asyncio

    parser = argparse.ArgumentParser(prog="python -m bot.bench_setup")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running server")
    where.add_argument("--pipeline", help="start `voicebot serve` with this pipeline file")
    parser.add_argument(
        "--fakes",
        action="store_true",
        help="with --pipeline: providers played by `python -m tests.fakes`",
    )
    parser.add_argument("--calls", type=int, default=20, help="calls per transport")
    parser.add_argument(
        "--transport",
        action="append",
        choices=TRANSPORTS,
        help="repeat for several (default: both)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return asyncio.run(bench_setup(parser.parse_args(argv)))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
