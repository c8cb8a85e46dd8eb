"""`voicebot call`: a caller that smoke-tests a running server over Twilio or WebRTC.

`run_call` returns one dict (the CLI prints it as a JSON line). Always present:
- `transport`: "twilio" or "webrtc"
- `connected_ms`: Twilio: from the webhook POST to the stream WebSocket's open handshake done;
  WebRTC: from the offer POST to connectionState "connected"
- `first_reply_audio_ms`: from the moment the last 20 ms frame of the caller's speech was sent
  to the start of the first bot audio after it (null if none)
- `reply_seconds`: from that first reply audio to the end of the last bot audio heard
- `greeting_seconds`, `greeting_first_audio_ms`, `speech_seconds`, `reply_timed_out`,
  `clears` (Twilio `clear` count; null for WebRTC), `out_path`, `error` (null or a message)
- Twilio extras: `call_sid`, `stream_sid`, `webhook_ms`, `marks`, `signed`;
  WebRTC extras: `pc_id`, `offer_ms`, `data_channel_messages`
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.caller.twilio import TwilioCaller, run_twilio_call
from bot.caller.webrtc import CallerAudioTrack, WebRTCCaller, run_webrtc_call

TRANSPORTS = ("twilio", "webrtc")

__all__ = [
    "TRANSPORTS",
    "CallerAudioTrack",
    "TwilioCaller",
    "WebRTCCaller",
    "run_call",
    "run_twilio_call",
    "run_webrtc_call",
]


async def run_call(
    wav_path: str | Path,
    url: str = "http://localhost:7860",
    transport: str = "twilio",
    out_path: str | Path | None = None,
    **opts: Any,
) -> dict[str, Any]:
    """Place one call over `transport` ("twilio" or "webrtc"); see the module doc for the dict."""
    if transport == "twilio":
        return await run_twilio_call(wav_path, url, out_path, **opts)
    if transport == "webrtc":
        return await run_webrtc_call(wav_path, url, out_path, **opts)
    raise ValueError(f"unknown transport {transport!r}; expected one of {', '.join(TRANSPORTS)}")
