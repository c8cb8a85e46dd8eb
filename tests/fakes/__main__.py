"""`python -m tests.fakes --port 9100`: every fake provider on one loopback port.

Prints, one `export VAR=value` a line, the environment that points `pipelines/cloud.yaml` at
the fakes, then `# ready` once they are warm, and serves until interrupted:

    eval "$(python -m tests.fakes --port 9100 --print-env-only)"   # in one shell, or:
    python -m tests.fakes --port 9100 > /tmp/fakes.env &
    . /tmp/fakes.env && voicebot serve --pipeline pipelines/cloud.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys

from tests.fakes.suite import Latencies, running_fakes

READY_LINE = "# ready"  # on stdout after the exports, once the fakes are warm


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = Latencies()
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes",
        description="Local servers speaking Deepgram's, Anthropic's, OpenAI's, ElevenLabs', "
        "Daily's and Twilio's protocols, with injected latencies.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument(
        "--stt-final-ms",
        type=float,
        default=defaults.stt_final_ms,
        help="Deepgram: final transcript this long after the end of speech",
    )
    parser.add_argument("--llm-first-token-ms", type=float, default=defaults.llm_first_token_ms)
    parser.add_argument("--llm-per-token-ms", type=float, default=defaults.llm_per_token_ms)
    parser.add_argument("--tts-first-chunk-ms", type=float, default=defaults.tts_first_chunk_ms)
    parser.add_argument("--tts-per-chunk-ms", type=float, default=defaults.tts_per_chunk_ms)
    parser.add_argument(
        "--transcript",
        default=None,
        help="Deepgram answers this text instead of transcribing (benchmarks)",
    )
    parser.add_argument(
        "--print-env-only",
        action="store_true",
        help="print the environment and exit (the fakes are not kept running)",
    )
    args = parser.parse_args(argv)
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        parser.error("the fakes bind loopback addresses only")
    return args


async def serve(args: argparse.Namespace) -> None:
    latencies = Latencies(
        stt_final_ms=args.stt_final_ms,
        llm_first_token_ms=args.llm_first_token_ms,
        llm_per_token_ms=args.llm_per_token_ms,
        tts_first_chunk_ms=args.tts_first_chunk_ms,
        tts_per_chunk_ms=args.tts_per_chunk_ms,
    )
    async with running_fakes(
        latencies, transcript=args.transcript, host=args.host, port=args.port
    ) as suite:
        for name, value in suite.env().items():
            print(f"export {name}={shlex.quote(value)}", flush=True)
        if args.print_env_only:
            return
        print(f"# fakes serving on {suite.url}; Ctrl-C stops them", file=sys.stderr, flush=True)
        if args.transcript is None:
            await asyncio.to_thread(suite.deepgram.transcribe_blocking, _silence(), 16000)
        await suite.elevenlabs.warm()
        print(READY_LINE, flush=True)
        await asyncio.Event().wait()


def _silence():  # type: ignore[no-untyped-def]
    import numpy as np

    return np.zeros(16000, dtype=np.int16)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
