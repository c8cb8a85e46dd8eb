"""Voice-to-voice latency on `pipelines/cloud.yaml`, its providers played by the local protocol
fakes injecting published latencies (Deepgram final 100 ms after the end of speech, LLM first
token 250 ms, TTS first chunk 75 ms).

    python -m tests.bench_cloud --turns 20 [--json]

Starts the fakes (with a canned transcript, so the fake's own transcription time is not
counted) and `voicebot serve --pipeline pipelines/cloud.yaml`, makes one warm-up call per
transport and then `--turns` calls, one turn each, per transport with `voicebot call`'s clients,
and reads the server's per-turn latency lines. Reports, per transport, p50/p95/max of:

- voice_to_voice_ms: the end of the caller's speech to the first bot audio at the caller;
- overhead_ms: voice_to_voice − (VAD stop + injected latencies), with the VAD stop both as
  configured (stop_secs) and as Silero decides it on this utterance (measured offline);
- pipeline_overhead_ms: in the server, the VAD's stop to the first audio handed to the
  transport, minus the injected latencies: the framework's own share;
- server_stages_ms: the parts of the server's voice-to-voice, as Pipecat's
  `UserBotLatencyObserver` names them (endpointing_wait, transcription, turn_detection,
  llm_inference, sentence_aggregation, speech_synthesis, pipeline, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from bot.bench import DEFAULT_UTTERANCE, machine, run_latency, summarize, synthesize_utterance
from tests.fakes.suite import FakeSuite, Latencies
from tests.support.background import BackgroundLoop
from tests.support.servers import REPO, start_server

VAD_STOP_SECS = 0.2  # pipelines/cloud.yaml
# The server's per-turn line (bot/call_observer.py), from Pipecat's latency breakdown:
# "turn 3: voice-to-voice 712 ms (endpointing_wait 200, transcription 103, ...)".
_TURN_LINE = re.compile(r"turn \d+: voice-to-voice (\d+) ms \(([^)]*)\)")


async def vad_decision_ms(wav: Path, rate: int) -> float:
    """When Silero (as configured in cloud.yaml) declares the end of speech in `wav`, after the
    speech's last audible sample (what `voicebot call` measures from)."""
    import numpy as np
    from pipecat.audio.vad.vad_analyzer import VADParams, VADState

    from bot.audio_analyzers import SharedSileroVADAnalyzer
    from bot.caller.audio import load_wav, resample, speech_end_offset

    pcm, wav_rate = load_wav(wav)
    audio = resample(pcm, wav_rate, rate)
    vad = SharedSileroVADAnalyzer(params=VADParams(stop_secs=VAD_STOP_SECS))
    vad.set_sample_rate(rate)
    step = rate // 50
    state, stopped_at = VADState.QUIET, None

    async def run() -> None:
        nonlocal state, stopped_at
        for offset in range(0, len(audio), step):
            chunk = audio[offset : offset + step].astype(np.int16).tobytes()
            new = await vad.analyze_audio(chunk)
            if new == VADState.QUIET and state != VADState.QUIET:
                stopped_at = (offset + step) / rate
            state = new

    await run()
    if stopped_at is None:
        raise RuntimeError("the VAD never stopped")
    return round((stopped_at - speech_end_offset(audio, rate)) * 1000, 1)


def stage_lines(log: str) -> list[dict[str, float]]:
    """Per turn: the server's voice-to-voice and its parts, in milliseconds."""
    turns = []
    for match in _TURN_LINE.finditer(log):
        parts = (part.rsplit(" ", 1) for part in match.group(2).split(", ") if part)
        turn = {key: float(ms) for key, ms in parts}
        turn["voice_to_voice"] = float(match.group(1))
        turns.append(turn)
    return turns


def report(
    transport: str,
    results: list[dict[str, Any]],
    turns: list[dict[str, float]],
    injected: float,
    vad_measured: float,
) -> dict[str, Any]:
    v2v = [r["first_reply_audio_ms"] for r in results if r.get("first_reply_audio_ms")]
    in_server = [t["voice_to_voice"] - t.get("endpointing_wait", 0.0) - injected for t in turns]
    keys = sorted({key for t in turns for key in t} - {"voice_to_voice"})
    stages = {key: summarize([t.get(key, 0.0) for t in turns]) for key in keys}
    return {
        "transport": transport,
        "turns": len(v2v),
        "voice_to_voice_ms": summarize(v2v),
        "overhead_vs_stop_secs_ms": summarize([x - VAD_STOP_SECS * 1000 - injected for x in v2v]),
        "overhead_vs_measured_vad_ms": summarize([x - vad_measured - injected for x in v2v]),
        "pipeline_overhead_ms": summarize(in_server),
        "server_stages_ms": stages,
        "errors": [r["error"] for r in results if r.get("error")],
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    latencies = Latencies()
    injected = latencies.stt_final_ms + latencies.llm_first_token_ms + latencies.tts_first_chunk_ms
    loop = BackgroundLoop()
    suite = FakeSuite(latencies, transcript=DEFAULT_UTTERANCE)
    loop.run(suite.start())
    loop.run(suite.elevenlabs.warm("Hello! How can I help you today?", "The sky is blue."), 60)
    reports = []
    with tempfile.TemporaryDirectory() as scratch:
        wav = synthesize_utterance(DEFAULT_UTTERANCE, Path(scratch) / "utterance.wav")
        log_path = Path(scratch) / "server.log"
        server = start_server(REPO / "pipelines/cloud.yaml", log_path, env=suite.env())
        try:
            for transport, rate in (("twilio", 8000), ("webrtc", 16000)):
                await run_latency(server.url, transport, 1, wav)  # warm-up: connections, caches
                before = len(stage_lines(server.log()))
                results, _ = await run_latency(server.url, transport, args.turns, wav)
                turns = stage_lines(server.log())[before:]
                vad_ms = await vad_decision_ms(wav, rate)
                reports.append(report(transport, results, turns, injected, vad_ms))
        finally:
            server.stop()
            loop.run(suite.stop())
            loop.close()
    return {
        "machine": machine(),
        "injected_ms": {
            "stt_final": latencies.stt_final_ms,
            "llm_first_token": latencies.llm_first_token_ms,
            "tts_first_chunk": latencies.tts_first_chunk_ms,
        },
        "vad_stop_secs": VAD_STOP_SECS,
        "reports": reports,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench_cloud")
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    output = asyncio.run(bench(args))
    if args.json:
        print(json.dumps(output))
        return
    for rep in output["reports"]:
        print(f"{rep['transport']}: {rep['turns']} turns")
        for key in (
            "voice_to_voice_ms",
            "overhead_vs_stop_secs_ms",
            "overhead_vs_measured_vad_ms",
            "pipeline_overhead_ms",
        ):
            s = rep[key]
            print(f"  {key:<28} p50 {s['p50']:>7}  p95 {s['p95']:>7}  max {s['max']:>7}")
        for key, s in rep["server_stages_ms"].items():
            print(f"  server {key:<21} p50 {s['p50']:>7}  p95 {s['p95']:>7}")
        for error in rep["errors"]:
            print(f"  error: {error}")


if __name__ == "__main__":
    main()
