"""The per-call work cut for capacity (BENCHMARKS.md, "Capacity"): Silero scores on the event
loop with a lean call around the shared session, deciding exactly as Pipecat's analyzer does,
and the caller's audio ends after the user aggregator."""

from __future__ import annotations

import asyncio

import numpy as np
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams, VADState
from pipecat.frames.frames import InputAudioRawFrame, TextFrame
from pipecat.tests.utils import run_test

from bot.audio_analyzers import SharedSileroVADAnalyzer
from bot.caller.audio import resample
from bot.caller_audio_sink import CallerAudioSink
from tests.support.speech import synthesize

RATE = 8000


def _call_audio() -> np.ndarray:
    """Two utterances (each with pauses between words) with digital silence and a quiet line
    hiss around them, at 8 kHz."""
    speech, rate = synthesize("What color is the sky on a clear day?")
    speech = resample(speech, rate, RATE)
    hiss = (np.random.default_rng(3).normal(0, 8, RATE)).astype(np.int16)  # about -72 dBFS
    silence = np.zeros(RATE, dtype=np.int16)
    return np.concatenate([silence, speech, hiss, speech, silence]).astype(np.int16)


def _states(analyzer: SileroVADAnalyzer, audio: np.ndarray) -> list[VADState]:
    analyzer.set_sample_rate(RATE)
    step = RATE // 50  # 20 ms frames, as the transport delivers them

    async def run() -> list[VADState]:
        return [
            await analyzer.analyze_audio(audio[i : i + step].tobytes())
            for i in range(0, len(audio) - step + 1, step)
        ]

    return asyncio.run(run())


def _speech_runs(states: list[VADState]) -> list[tuple[int, int]]:
    runs, start = [], None
    for index, state in enumerate(states):
        speaking = state == VADState.SPEAKING
        if speaking and start is None:
            start = index
        elif not speaking and start is not None:
            runs.append((start, index))
            start = None
    return runs


def test_our_silero_decides_as_pipecats_on_the_loop_without_a_thread() -> None:
    audio = _call_audio()
    ours = SharedSileroVADAnalyzer(params=VADParams(stop_secs=0.2))
    ours_runs = _speech_runs(_states(ours, audio))
    stock = SileroVADAnalyzer(params=VADParams(stop_secs=0.2))  # Pipecat's, its own session
    stock_runs = _speech_runs(_states(stock, audio))
    assert stock._executor._threads, "the comparison should run Pipecat's threaded path"

    assert len(stock_runs) == 2, stock_runs
    assert len(ours_runs) == len(stock_runs), (ours_runs, stock_runs)
    assert ours_runs == stock_runs
    assert not ours._executor._threads, "a worker thread was started"


def test_the_sink_ends_the_callers_audio_and_passes_everything_else() -> None:
    audio = InputAudioRawFrame(audio=b"\x00\x00" * 160, sample_rate=RATE, num_channels=1)
    text = TextFrame("hello")

    async def run() -> None:
        await run_test(
            CallerAudioSink(),
            frames_to_send=[audio, text],
            expected_down_frames=[TextFrame],
        )

    asyncio.run(run())


def test_our_silero_scores_every_window_as_pipecats_model() -> None:
    audio = _call_audio()
    ours = SharedSileroVADAnalyzer(sample_rate=RATE)
    stock = SileroVADAnalyzer(sample_rate=RATE)
    for analyzer in (ours, stock):
        analyzer.set_sample_rate(RATE)
    window = ours.num_frames_required()
    pairs = [
        (
            np.asarray(ours.voice_confidence(chunk)).item(),
            np.asarray(stock.voice_confidence(chunk)).item(),
        )
        for chunk in (
            audio[i : i + window].tobytes() for i in range(0, len(audio) - window + 1, window)
        )
    ]
    assert max(abs(a - b) for a, b in pairs) < 1e-5
    assert max(b for _, b in pairs) > 0.9  # the speech was scored as speech


def test_the_callers_audio_enters_the_pipeline_in_40_ms_frames() -> None:
    import base64
    import json

    from pipecat.frames.frames import InputDTMFFrame
    from pipecat.serializers.twilio import TwilioFrameSerializer

    from transports.twilio import GuardedTwilioSerializer

    serializer = GuardedTwilioSerializer(
        stream_sid="MZ0", params=TwilioFrameSerializer.InputParams(auto_hang_up=False)
    )

    def media(byte: int) -> str:
        payload = base64.b64encode(bytes([byte]) * 160).decode()  # 20 ms of μ-law
        return json.dumps({"event": "media", "media": {"payload": payload}})

    async def run() -> list:
        await serializer.setup(_frame_setup())
        return [
            await serializer.deserialize(message)
            for message in (
                media(0x10),
                json.dumps({"event": "dtmf", "dtmf": {"digit": "5"}}),
                media(0x90),
                media(0x10),
                "not json at all",
                media(0x90),
            )
        ]

    first, dtmf, second, held, bad, third = asyncio.run(run())
    assert first is None and held is None and bad is None
    assert isinstance(dtmf, InputDTMFFrame)  # a key press is not held back with the audio
    for frame in (second, third):
        assert isinstance(frame, InputAudioRawFrame)
        assert frame.sample_rate == RATE and len(frame.audio) == RATE * 2 * 40 // 1000
        halves = np.frombuffer(frame.audio, np.int16).reshape(2, 160)
        assert np.sign(halves[0][0]) != np.sign(halves[1][0])  # both messages, in order


def _frame_setup():  # type: ignore[no-untyped-def]
    from pipecat.frames.frames import StartFrame

    return StartFrame(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE)


def test_the_end_of_turn_thread_yields_unless_local_models_share_the_core() -> None:
    import os as _os

    from bot import audio_analyzers
    from bot.config import load_pipeline
    from bot.pipeline import has_local_models
    from tests.support.servers import REPO

    assert has_local_models(load_pipeline(REPO / "pipelines/local.yaml"))
    fakes = {
        name: "x"
        for name in (
            "DEEPGRAM_API_KEY",
            "ANTHROPIC_API_KEY",
            "OPENAI_API_KEY",
            "ELEVENLABS_API_KEY",
        )
    }
    saved = {name: _os.environ.get(name) for name in fakes}
    _os.environ.update(fakes)
    try:
        assert not has_local_models(load_pipeline(REPO / "pipelines/cloud.yaml"))
    finally:
        for name, value in saved.items():
            if value is None:
                _os.environ.pop(name, None)
            else:
                _os.environ[name] = value
    try:
        audio_analyzers.turn_model_yields(True)
        assert audio_analyzers._turn_model_niceness == 10
        audio_analyzers.turn_model_yields(False)
        assert audio_analyzers._turn_model_niceness == 0
    finally:
        audio_analyzers.turn_model_yields(True)


class _ScoreRecorder:
    """Wraps an analyzer's `voice_confidence` to keep every window's score."""

    def __init__(self, analyzer: SileroVADAnalyzer):
        self.scores: list[float] = []
        inner = analyzer.voice_confidence

        def recording(buffer: bytes) -> float:
            confidence = inner(buffer)
            self.scores.append(float(np.asarray(confidence).item()))
            return confidence

        analyzer.voice_confidence = recording  # type: ignore[method-assign]


async def _decide(analyzer: SileroVADAnalyzer, audio: np.ndarray, step: int) -> list[VADState]:
    states = []
    for i in range(0, len(audio) - step + 1, step):
        states.append(await analyzer.analyze_audio(audio[i : i + step].tobytes()))
    return states


def test_batched_calls_score_and_decide_as_pipecat_does_for_each_call_alone() -> None:
    """Five calls analysed at once, their windows batched, with 60 ms frames so that most
    buffers complete two windows and Silero's model reset (after 2 s of quiet) often falls
    between them: every window's score and every decision is Pipecat's for that call alone."""
    from bot.audio_analyzers import silero_batcher

    base = _call_audio()
    calls = [np.roll(base, shift) for shift in (0, 1234, 4321, 9000, 15000)]
    step = RATE * 60 // 1000

    def analyzers(kind: type[SileroVADAnalyzer]) -> list[tuple[SileroVADAnalyzer, _ScoreRecorder]]:
        made = []
        for _ in calls:
            analyzer = kind(params=VADParams(stop_secs=0.2))
            analyzer.set_sample_rate(RATE)
            made.append((analyzer, _ScoreRecorder(analyzer)))
        return made

    async def together() -> tuple[list[list[VADState]], float, list[list[float]]]:
        ours = analyzers(SharedSileroVADAnalyzer)
        states = await asyncio.gather(
            *(_decide(a, c, step) for (a, _), c in zip(ours, calls, strict=True))
        )
        batcher = silero_batcher()
        return list(states), batcher.windows / batcher.batches, [r.scores for _, r in ours]

    async def alone() -> tuple[list[list[VADState]], list[list[float]]]:
        stock = analyzers(SileroVADAnalyzer)
        states = [await _decide(a, c, step) for (a, _), c in zip(stock, calls, strict=True)]
        return states, [r.scores for _, r in stock]

    our_states, windows_per_batch, our_scores = asyncio.run(together())
    stock_states, stock_scores = asyncio.run(alone())

    assert windows_per_batch > 3, windows_per_batch  # the calls' windows were scored together
    for ours, stock in zip(our_scores, stock_scores, strict=True):
        assert len(ours) == len(stock)
        assert max(abs(a - b) for a, b in zip(ours, stock, strict=True)) < 1e-4
    assert our_states == stock_states
    assert all(VADState.SPEAKING in states for states in our_states)
