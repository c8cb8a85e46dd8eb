"""Building a call is light: the models loaded at start-up are shared, none is loaded per call."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport

from bot import shared
from bot.call import CallInfo
from bot.config import load_pipeline
from bot.local_llm import LlamaModel
from bot.pipeline import CallSession, preload

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


class _IdleWebSocket:
    """Stands in for a Starlette WebSocket: the transport only stores it until it starts."""

    client_state = None
    application_state = None


def _transport() -> FastAPIWebsocketTransport:
    return FastAPIWebsocketTransport(
        websocket=_IdleWebSocket(),  # type: ignore[arg-type]
        params=FastAPIWebsocketParams(audio_in_enabled=True, audio_out_enabled=True),
    )


def test_calls_share_the_models_loaded_at_start_up() -> None:
    loaded = load_pipeline(REPO / "pipelines/local.yaml")
    preload(loaded)
    keys_after_preload = set(shared.loaded_keys())
    llama_loads = LlamaModel.load_count

    started = time.perf_counter()
    sessions = [
        CallSession(loaded, CallInfo(f"CA{i}", "twilio", 8000, 8000), _transport(), rtvi=False)
        for i in range(3)
    ]
    per_call_ms = (time.perf_counter() - started) * 1000 / len(sessions)

    assert set(shared.loaded_keys()) == keys_after_preload, "a call loaded a model"
    assert LlamaModel.load_count == llama_loads
    stts = [session.stt for session in sessions]
    assert stts[0]._model._model is stts[1]._model._model  # one WhisperModel
    print(f"building one call: {per_call_ms:.1f} ms")
    assert per_call_ms < 250, f"building a call took {per_call_ms:.0f} ms"


def test_observability_switch_removes_the_per_call_observers() -> None:
    """VOICEBOT_OBSERVABILITY=off (for measuring its cost): no call observer, no Pipecat
    metrics, no turn tracking; on (the default): one call observer and turn tracking."""
    from bot import observability

    loaded = load_pipeline(REPO / "pipelines/local.yaml")
    preload(loaded)
    call = CallInfo("CAon", "twilio", 8000, 8000, pipeline="local")
    on = CallSession(loaded, call, _transport(), rtvi=False)
    assert on.observer is not None and on.worker.turn_tracking_observer is not None
    assert on.worker.params.enable_metrics
    observability.set_enabled(False)
    try:
        off = CallSession(loaded, CallInfo("CAoff", "twilio", 8000, 8000), _transport(), rtvi=False)
    finally:
        observability.set_enabled(True)
    assert off.observer is None and off.worker.turn_tracking_observer is None
    assert not off.worker.params.enable_metrics
