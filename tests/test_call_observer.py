"""The call record's pieces that the end-to-end tests cannot force: confidence shapes, the
transcript's turn-taking, the summary file, and a summary when nothing was said."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from pipecat.frames.frames import TranscriptionFrame
from pipecat.processors.frame_processor import FrameProcessor

from bot.call import CallInfo
from bot.call_observer import CallObserver, StageOwner, SummaryFile, transcript_confidence


def _final(result: object) -> TranscriptionFrame:
    return TranscriptionFrame("hello", "user", "2026-12-03T00:00:00Z", result=result)


def test_confidence_from_deepgram_results_and_from_local_stt() -> None:
    deepgram = SimpleNamespace(
        channel=SimpleNamespace(alternatives=[SimpleNamespace(confidence=0.91)])
    )
    assert transcript_confidence(_final(deepgram)) == 0.91
    assert transcript_confidence(_final({"confidence": 0.5})) == 0.5
    assert transcript_confidence(_final({"confidence": None})) is None
    assert transcript_confidence(_final(None)) is None
    assert transcript_confidence(_final(SimpleNamespace(channel=None))) is None


def _observer(call: CallInfo) -> CallObserver:
    stt, tts, llm, redactor = (FrameProcessor(name=n) for n in ("stt", "tts", "llm", "redact"))
    return CallObserver(
        call,
        owners={
            stt: StageOwner("stt", "whisper"),
            llm: StageOwner("llm", "llama_cpp"),
            tts: StageOwner("tts", "piper"),
        },
        stt=stt,
        redactor=redactor,
        turn_provider="smart_turn",
        redact_text=lambda text: text.replace("John", "<PERSON>"),
    )


def test_summary_of_a_call_without_turns_and_its_transcript() -> None:
    call = CallInfo("CAsummary", "twilio", 8000, 8000, pipeline="local")
    observer = _observer(call)
    observer.transcript.bot("Hello!")
    observer.transcript.bot(" How can I help?")
    observer.transcript.user("  my name is John  ")
    observer.transcript.bot("Hi John.")
    call.events.tts_stalled("piper")
    summary = observer.summary(outcome="caller_hung_up", duration_secs=3.21, started_at=0)
    assert summary["turns"] == 0 and summary["turn_latency"] == []
    assert summary["voice_to_voice_ms"] == {"median": None, "max": None}
    assert summary["transcript"] == [
        {"role": "bot", "text": "Hello! How can I help?"},
        {"role": "user", "text": "my name is <PERSON>"},
        {"role": "bot", "text": "Hi <PERSON>."},
    ], "bot lines are redacted too"
    assert summary["provider_events"] == {"tts_stalls": 1}
    assert summary["errors"] == [{"stage": "tts", "provider": "piper", "status_class": "stall"}]
    assert summary["started_at"] == "1970-01-01T00:00:00+00:00"
    json.dumps(summary)  # a JSON record, whatever went into it


def test_summary_file_appends_one_line_per_call(tmp_path: Path) -> None:
    sink = SummaryFile(tmp_path / "deep" / "calls.jsonl")
    sink.write({"call_id": "a"})
    sink.write({"call_id": "b", "transcript": [{"role": "user", "text": "é"}]})
    lines = sink.path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["call_id"] for line in lines] == ["a", "b"]
