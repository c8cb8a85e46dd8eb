"""The server's WebRTC receiver hands the caller's audio on as soon as it has arrived.

aiortc holds every received audio packet until four more have arrived (`prefetch=4`): a
playout jitter buffer, right for a client that plays the audio at a steady pace, but the server
does not play it: the VAD and the STT only need it in order. Those 80 ms were added to every
turn, before the VAD could even hear the end of the caller's speech. With one packet of
prefetch (the least aiortc allows: a frame is complete when the next one starts) packets are
still put back in order and gaps still skipped, 60 ms sooner. Video keeps aiortc's settings.

`voicebot call` uses it too: it measures when the bot's audio reaches the caller, not when a
player's buffer would release it (a browser adds its own, adaptive, playout delay).
"""

from __future__ import annotations

from typing import Any

SERVER_AUDIO_PREFETCH = 1


def use_server_jitter_buffer() -> None:
    """Make aiortc's receivers in this process use the server's audio prefetch (idempotent)."""
    import aiortc.rtcrtpreceiver as receiver

    original = receiver.JitterBuffer
    if getattr(original, "server_audio_prefetch", None) is not None:
        return

    class ServerJitterBuffer(original):  # type: ignore[misc, valid-type]
        server_audio_prefetch = SERVER_AUDIO_PREFETCH

        def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False, **kw: Any):
            if not is_video:
                prefetch = min(prefetch, SERVER_AUDIO_PREFETCH)
            super().__init__(capacity, prefetch=prefetch, is_video=is_video, **kw)

    receiver.JitterBuffer = ServerJitterBuffer
