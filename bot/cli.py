"""`voicebot`: serve, check pipeline files, redact text, call a running server, prepare models."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence

from bot.settings import DEFAULT_PIPELINE, resolve_pipeline_path

EXIT_INVALID = 2


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from bot.config import PipelineFileError
    from bot.logs import configure_logging
    from bot.settings import ServerSettings, SettingsError

    os.environ["VOICEBOT_PIPELINE"] = str(resolve_pipeline_path(args.pipeline))
    # Pipecat logs whole LLM contexts (callers' words) unless told not to.
    os.environ.setdefault("PIPECAT_LOG_LLM_CONTEXT", "off")
    try:
        settings = ServerSettings.from_env()
    except SettingsError as exc:
        print(f"voicebot serve: {exc}", file=sys.stderr)
        return EXIT_INVALID
    configure_logging(settings.log_level, settings.log_format)
    # Only now: importing Pipecat logs its banner, which must go out in the configured format.
    from bot.runtime import CONNECTIONS_GRACE_SECS, DrainingServer
    from server import create_app

    try:
        app = create_app(settings)
    except PipelineFileError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_INVALID
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        log_config=None,  # uvicorn's records go through loguru (bot.logs)
        # SIGTERM/SIGINT drain the calls first (VOICEBOT_DRAIN_SECONDS, see DrainingServer);
        # after that uvicorn only has idle connections left to close.
        timeout_graceful_shutdown=CONNECTIONS_GRACE_SECS,
        # A bigger WebSocket message closes that socket with 1009 (VOICEBOT_WS_MAX_BYTES).
        ws_max_size=settings.ws_max_bytes,
        # proxy_headers (on) and forwarded_allow_ips (FORWARDED_ALLOW_IPS, default 127.0.0.1)
        # stay uvicorn's: the rate limit's client address is X-Forwarded-For's only when the
        # peer is a trusted proxy (bot/limits.py).
    )
    server = DrainingServer(config, app.state.runtime)
    server.run()
    return 0 if server.started else 3  # 3: uvicorn's STARTUP_FAILURE


def _cmd_check(args: argparse.Namespace) -> int:
    from bot.config import PipelineFileError, load_pipeline

    failed = False
    for path in args.files:
        try:
            loaded = load_pipeline(path)
        except PipelineFileError as exc:
            print(exc.render(), file=sys.stderr)
            failed = True
            continue
        for where, name in loaded.missing_env:
            print(f"{path}: {where}: note: ${{{name}}} is not set here", file=sys.stderr)
        print(f"{path}: ok ({loaded.config.name})")
    return EXIT_INVALID if failed else 0


def _cmd_redact(args: argparse.Namespace) -> int:
    from bot.config import PipelineFileError, load_pipeline
    from bot.redactor import build_text_redactor

    try:
        loaded = load_pipeline(resolve_pipeline_path(args.pipeline))
    except PipelineFileError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_INVALID
    redactor = build_text_redactor(loaded)
    for line in sys.stdin:
        text = line.rstrip("\n")
        result = redactor.analyze(text)
        if args.json:
            entities = [{"type": f.type, "start": f.start, "end": f.end} for f in result.findings]
            print(json.dumps({"text": result.text, "entities": entities}), flush=True)
        else:
            print(result.text, flush=True)
    return 0


def _cmd_call(args: argparse.Namespace) -> int:
    from bot.caller import run_call

    result = asyncio.run(
        run_call(args.wav, url=args.url, transport=args.transport, out_path=args.out)
    )
    print(json.dumps(result), flush=True)
    return 0 if not result.get("error") else 1


def _cmd_bench_latency(args: argparse.Namespace) -> int:
    from bot.bench import bench_latency

    return asyncio.run(bench_latency(args))


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 10,25,50, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _cmd_bench_load(args: argparse.Namespace) -> int:
    from bot.bench_load import bench_load, dump

    result = asyncio.run(bench_load(args))
    if args.json:
        print(dump(result))
    else:
        print(
            f"calls per core within the rule: {result['calls_per_core']} "
            f"(baseline p95 {result['baseline']['first_reply_audio_ms']['p95']} ms)"
        )
    return 0


def _cmd_bench_setup(args: argparse.Namespace) -> int:
    from bot.bench_setup import bench_setup

    return asyncio.run(bench_setup(args))


def _cmd_bench_soak(args: argparse.Namespace) -> int:
    from bot.bench_load import bench_soak, dump, print_soak

    result = asyncio.run(bench_soak(args))
    if args.json:
        print(dump(result))
    else:
        print_soak(result)
    return 0 if result["failed_calls"] == 0 else 1


def _cmd_models(args: argparse.Namespace) -> int:
    from bot import models

    for name, path in models.prepare_all().items():
        print(f"{name}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--pipeline", default=os.environ.get("VOICEBOT_PIPELINE", DEFAULT_PIPELINE))
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "7860")))
    serve.set_defaults(func=_cmd_serve)

    check = commands.add_parser("check", help="validate pipeline files")
    check.add_argument("files", nargs="+")
    check.set_defaults(func=_cmd_check)

    redact = commands.add_parser("redact", help="redact utterances read from standard input")
    redact.add_argument("--pipeline", default=DEFAULT_PIPELINE)
    redact.add_argument("--json", action="store_true")
    redact.set_defaults(func=_cmd_redact)

    call = commands.add_parser("call", help="call a running server with a WAV as the caller")
    call.add_argument("wav")
    call.add_argument("--url", default="http://localhost:7860")
    call.add_argument("--transport", choices=("twilio", "webrtc"), default="twilio")
    call.add_argument("--out", default=None, help="write the bot's reply audio to this WAV")
    call.set_defaults(func=_cmd_call)

    bench = commands.add_parser("bench", help="measure the server (see BENCHMARKS.md)")
    bench_kinds = bench.add_subparsers(dest="kind", required=True)
    latency = bench_kinds.add_parser("latency", help="first-reply latency over repeated calls")
    target = latency.add_mutually_exclusive_group()
    target.add_argument("--url", default="http://localhost:7860", help="a running server")
    target.add_argument("--pipeline", help="start a server with this pipeline file instead")
    latency.add_argument("--transport", action="append", choices=("twilio", "webrtc"), default=None)
    latency.add_argument("--calls", type=int, default=5)
    latency.add_argument("--wav", help="the caller's utterance (default: synthesised)")
    latency.add_argument("--json", action="store_true")
    latency.set_defaults(func=_cmd_bench_latency)

    pin_help = "server on CPU 0 alone, fakes and callers on the rest (default with 2+ CPUs)"
    cloud_pipeline = str(resolve_pipeline_path("pipelines/cloud.yaml"))
    pipeline_help = "a pipeline with cloud.yaml's providers (they are played by the fakes)"
    load = bench_kinds.add_parser(
        "load", help="concurrent Twilio calls against one server process, ramping N"
    )
    load.add_argument(
        "--steps",
        type=_int_list,
        default=[10, 25, 50, 75, 100],
        help="concurrent calls per step, comma-separated",
    )
    load.add_argument("--hold", type=float, default=30.0, help="seconds measured per step")
    load.add_argument("--ramp", type=float, default=5.0, help="seconds to start a step's calls")
    load.add_argument("--turns", type=int, default=3, help="turns per call")
    load.add_argument("--baseline-turns", type=int, default=20)
    load.add_argument(
        "--max-added-ms",
        type=float,
        default=50.0,
        help="allowed first-reply p95 over the one-call baseline",
    )
    load.add_argument("--gap-ms", type=float, default=100.0, help="audio gap threshold")
    load.add_argument("--stop-on-fail", action="store_true")
    load.add_argument("--wav", help="the caller's utterance (default: synthesised)")
    load.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=(os.cpu_count() or 1) >= 2,
        help=pin_help,
    )
    load.add_argument("--keep-logs", metavar="DIR", help="keep the server's and fakes' logs")
    load.add_argument("--pipeline", default=cloud_pipeline, help=pipeline_help)
    load.add_argument("--json", action="store_true")
    load.set_defaults(func=_cmd_bench_load)

    setup = bench_kinds.add_parser(
        "setup", help="call set-up: Twilio start / WebRTC offer to the greeting, offer to connected"
    )
    setup_target = setup.add_mutually_exclusive_group()
    setup_target.add_argument("--url", default="http://localhost:7860", help="a running server")
    setup_target.add_argument("--pipeline", help="start a server with this pipeline file instead")
    setup.add_argument(
        "--fakes",
        action="store_true",
        help="with --pipeline: providers played by `python -m tests.fakes`",
    )
    setup.add_argument("--transport", action="append", choices=("twilio", "webrtc"), default=None)
    setup.add_argument("--calls", type=int, default=20)
    setup.add_argument("--json", action="store_true")
    setup.set_defaults(func=_cmd_bench_setup)

    soak = bench_kinds.add_parser("soak", help="many calls in sequence: RSS and fds, before/after")
    soak.add_argument("--calls", type=int, default=500)
    soak.add_argument("--lanes", type=int, default=1, help="calls at a time")
    soak.add_argument("--warmup", type=int, default=20, help="calls before the first reading")
    soak.add_argument("--gap-ms", type=float, default=100.0)
    soak.add_argument("--wav", help="the caller's utterance (default: synthesised)")
    soak.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=(os.cpu_count() or 1) >= 2,
        help=pin_help,
    )
    soak.add_argument("--keep-logs", metavar="DIR")
    soak.add_argument("--pipeline", default=cloud_pipeline, help=pipeline_help)
    soak.add_argument("--json", action="store_true")
    soak.set_defaults(func=_cmd_bench_soak)

    prepare = commands.add_parser("models", help="join and verify the offline models")
    prepare.set_defaults(func=_cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "kind", None) == "latency" and not args.transport:
        args.transport = ["twilio", "webrtc"]
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
