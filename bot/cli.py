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
    from server import create_app

    try:
        app = create_app(settings)
    except PipelineFileError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_INVALID
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        log_config=None,  # uvicorn's records go through loguru (bot.logs)
        timeout_graceful_shutdown=15,
    )
    return 0


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
    latency.add_argument(
        "--transport", action="append", choices=("twilio", "webrtc"), default=None
    )
    latency.add_argument("--calls", type=int, default=5)
    latency.add_argument("--wav", help="the caller's utterance (default: synthesised)")
    latency.add_argument("--json", action="store_true")
    latency.set_defaults(func=_cmd_bench_latency)

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
