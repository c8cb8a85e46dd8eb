"""Pipecat's Deepgram STT, made to lose nothing when its socket drops mid-call.

Pipecat reconnects a dropped Deepgram socket on its own, but waits at least 4 s before the
first attempt and throws away the caller's audio in the meantime, and what the old socket heard
but never finalised is lost with it. `ResilientDeepgramSTTService` retries the first time at
once, keeps the audio that no final transcript has covered yet (up to `buffer_secs`: the
utterance in progress plus the gap) and sends it first on the new socket, and counts each
re-opened socket (a metric, and a warning in the call's log).

It also takes Deepgram's own end of speech (`speech_final: true`, after `endpointing` ms of
silence) as a final transcript. Pipecat trusts only the answer to its `Finalize` (sent when the
VAD stops); when Deepgram's endpointing fires first, that answer is empty, and the turn waited
for Pipecat's STT safety-net timer (about 50 ms more) although the transcript was complete.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator
from typing import Any

import deepgram.listen.v1.client as deepgram_listen_client
import pipecat.services.deepgram.stt as pipecat_deepgram
from deepgram.listen.v1.types import ListenV1Results
from loguru import logger
from pipecat.frames.frames import Frame, TranscriptionFrame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.deepgram.stt import DeepgramSTTService
from pipecat.utils.network import exponential_backoff_time

from bot.call_events import CallEvents
from bot.providers import tls
from bot.providers.tls import with_shared_tls

FIRST_RETRY_SECS = 0.1


def _quick_first_retry(attempt: int, *args: Any, **kwargs: Any) -> float:
    """Pipecat's backoff, except that the first retry after a drop goes out at once."""
    if attempt <= 1:
        return FIRST_RETRY_SECS
    return exponential_backoff_time(attempt, *args, **kwargs)


def _uncompressed_connect(*args: Any, **kwargs: Any) -> Any:
    """The SDK's socket without permessage-deflate: raw PCM hardly compresses, and deflating
    every 20 ms frame cost ~0.3 % of a core per call (BENCHMARKS.md, capacity)."""
    kwargs.setdefault("compression", None)
    return _sdk_connect(*args, **kwargs)


_sdk_connect = with_shared_tls(deepgram_listen_client.websockets_client_connect)
deepgram_listen_client.websockets_client_connect = _uncompressed_connect
tls.install()


class ResilientDeepgramSTTService(DeepgramSTTService):
    """`DeepgramSTTService` that buffers audio across a reconnection and counts reconnections."""

    def __init__(
        self,
        *args: Any,
        buffer_secs: float = 10.0,
        events: CallEvents | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self._events = events
        # The retry loop looks the backoff up in its module on each attempt.
        pipecat_deepgram.exponential_backoff_time = _quick_first_retry
        # Audio no final transcript has covered yet: replayed on a new socket after a drop.
        self._unconfirmed: deque[bytes] = deque()
        self._unconfirmed_bytes = 0
        self._replay_pending = False
        self._buffer_limit = int(buffer_secs * (self._init_sample_rate or 16000) * 2)
        self.connections_opened = 0
        listen = self._client.listen.v1
        connect = listen.connect

        def counting_connect(*c_args: Any, **c_kwargs: Any) -> Any:
            self.connections_opened += 1
            if self.connections_opened > 1:
                if self._events is not None:
                    self._events.stt_reconnected("deepgram")
                logger.warning(
                    f"Deepgram socket re-opened (connection {self.connections_opened} this call)"
                )
            return connect(*c_args, **c_kwargs)

        listen.connect = counting_connect

    async def _on_message(self, message: Any) -> None:
        if (
            isinstance(message, ListenV1Results)
            and message.is_final
            and message.speech_final
            and message.channel
            and message.channel.alternatives
            and message.channel.alternatives[0].transcript
        ):
            # Deepgram heard the end of speech: this transcript is final for the utterance.
            self.request_finalize()
            self.confirm_finalize()
        await super()._on_message(message)

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        if self.connections_opened:
            self._keep(audio)
        if self._connection is None:
            self._replay_pending = self.connections_opened > 0
            yield None
            return
        if self._replay_pending:
            await self._replay()  # includes this chunk
            yield None
            return
        async for frame in super().run_stt(audio):
            yield frame
        if self._connection is None:  # the send failed: the socket just went
            self._replay_pending = True

    async def push_frame(self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM):
        if isinstance(frame, TranscriptionFrame):
            self._unconfirmed.clear()  # Deepgram has finalised everything sent so far
            self._unconfirmed_bytes = 0
        await super().push_frame(frame, direction)

    def _keep(self, audio: bytes) -> None:
        self._unconfirmed.append(audio)
        self._unconfirmed_bytes += len(audio)
        while self._unconfirmed_bytes > self._buffer_limit:
            self._unconfirmed_bytes -= len(self._unconfirmed.popleft())

    async def _replay(self) -> None:
        held = b"".join(self._unconfirmed)
        self._replay_pending = False
        logger.info(f"replaying {len(held)} bytes of unconfirmed audio on the new Deepgram socket")
        try:
            await self._connection.send_media(held)  # type: ignore[union-attr]
        except Exception as exc:
            logger.warning(f"could not replay the held audio: {type(exc).__name__}")
            self._replay_pending = True
