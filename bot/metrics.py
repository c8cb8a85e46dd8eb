"""Every Prometheus metric the server exports, in one place (served on `GET /metrics`).

prometheus_client rather than OpenTelemetry metrics with a Prometheus exporter: the server is
scraped, not pushed from; prometheus_client is what FastAPI deployments already scrape, it has
a multi-process mode for several workers on one host, and it costs one dict lookup and an add
per observation on the call's event loop. Traces go through OpenTelemetry (`bot.tracing`).

Labels: `transport` (twilio | webrtc | daily), `pipeline` (the pipeline file's `name`) and,
for a stage, `provider` (the stage's provider in the pipeline file). No label ever carries a
call id or anything a caller said: one series per call would grow without bound.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CALL = ["transport", "pipeline"]
STAGE = ["transport", "pipeline", "provider"]

# Latency buckets (seconds) for the turn's stages: dense where the 400 / 800 ms budget is.
LATENCY_BUCKETS = (
    0.025,
    0.05,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.6,
    0.8,
    1.0,
    1.25,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
)

# -- calls ------------------------------------------------------------------------------------
ACTIVE_CALLS = Gauge("voicebot_active_calls", "Calls in progress", CALL)
CALLS_STARTED = Counter("voicebot_calls_started_total", "Calls started", CALL)
CALLS_ENDED = Counter(
    "voicebot_calls_ended_total",
    "Calls ended, by outcome (completed, caller_hung_up, error, cancelled)",
    [*CALL, "outcome"],
)
CALL_DURATION = Histogram(
    "voicebot_call_duration_seconds",
    "Call duration",
    CALL,
    buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 3600),
)
CALL_SETUP = Histogram(
    "voicebot_call_setup_seconds",
    "Call set-up: Twilio `start` message, or WebRTC offer, to the transport connected and the "
    "greeting queued",
    CALL,
    buckets=LATENCY_BUCKETS,
)
TURNS = Counter("voicebot_turns_total", "Bot replies to a caller's turn", CALL)
INTERRUPTIONS = Counter(
    "voicebot_interruptions_total", "Caller barge-ins that cut the bot off", CALL
)
CALLS_REFUSED = Counter(
    "voicebot_calls_refused_total",
    "Call starts refused (bot/limits.py): capacity (VOICEBOT_MAX_CALLS reached), draining, "
    "not_ready (models still loading) or rate_limited (VOICEBOT_RATE_LIMIT, per client address)",
    ["reason"],
)
for _reason in ("capacity", "draining", "not_ready", "rate_limited"):
    CALLS_REFUSED.labels(_reason)  # every series from the start, at 0
PIPELINE_ERRORS = Counter(
    "voicebot_pipeline_errors_total",
    "Errors raised inside a call's pipeline, by the processor that raised them",
    [*CALL, "processor", "fatal"],
)

# -- the turn's stages (Pipecat's metrics frames and latency observers) -----------------------
VOICE_TO_VOICE = Histogram(
    "voicebot_voice_to_voice_seconds",
    "End of the caller's speech to the bot's first audio out",
    CALL,
    buckets=LATENCY_BUCKETS,
)
STT_LATENCY = Histogram(
    "voicebot_stt_latency_seconds",
    "End of the caller's speech to the final transcript (Pipecat's STT TTFB)",
    STAGE,
    buckets=LATENCY_BUCKETS,
)
TURN_END_DECISION = Histogram(
    "voicebot_turn_end_decision_seconds",
    "VAD stop to the end-of-turn decision (the user turn closed)",
    STAGE,
    buckets=LATENCY_BUCKETS,
)
LLM_FIRST_TOKEN = Histogram(
    "voicebot_llm_first_token_seconds",
    "LLM request to its first token (Pipecat's LLM TTFB)",
    STAGE,
    buckets=LATENCY_BUCKETS,
)
TTS_FIRST_CHUNK = Histogram(
    "voicebot_tts_first_chunk_seconds",
    "TTS request to its first audio chunk (Pipecat's TTS TTFB)",
    STAGE,
    buckets=LATENCY_BUCKETS,
)
STT_CONFIDENCE = Histogram(
    "voicebot_stt_confidence",
    "Confidence of final transcripts (0..1, as the STT reports it)",
    STAGE,
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0),
)

# -- provider health --------------------------------------------------------------------------
STT_RECONNECTIONS = Counter(
    "voicebot_stt_reconnections_total",
    "Streaming STT sockets re-opened during a call after a drop",
    STAGE,
)
LLM_ERRORS = Counter(
    "voicebot_llm_errors_total",
    "LLM failures before the first token, by status class (429, 4xx, 5xx, timeout, connection)",
    [*STAGE, "status_class"],
)
LLM_FAILOVERS = Counter(
    "voicebot_llm_failovers_total",
    "LLM turns replayed on the next LLM of the fallback list",
    [*CALL, "from_provider", "to_provider", "status_class"],
)
TTS_STALLS = Counter(
    "voicebot_tts_stalls_total",
    "TTS responses with no audio in time, replaced by a fallback phrase",
    STAGE,
)
ICE_STATE_TRANSITIONS = Counter(
    "voicebot_webrtc_ice_state_transitions_total",
    "WebRTC ICE connection state changes (new, checking, connected, completed, disconnected, "
    "failed, closed)",
    ["pipeline", "state"],
)
PHRASE_CACHE = Counter(
    "voicebot_phrase_cache_total",
    "Fixed phrases (greeting, idle prompt, goodbye) played from the phrase cache (hit) or "
    "synthesised by the TTS provider (miss)",
    ["pipeline", "result"],
)
