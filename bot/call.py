"""What the pipeline builder knows about one call: its id and its transport's audio format."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from bot.call_events import CallEvents


def new_call_id() -> str:
    """A call id for calls that have none from their carrier (WebRTC)."""
    return "call-" + uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class CallInfo:
    """One call as the stage factories see it. The pipeline never sees the transport itself."""

    call_id: str
    transport: str  # "twilio" | "webrtc" | "daily"
    audio_in_sample_rate: int
    audio_out_sample_rate: int
    metadata: dict[str, Any] = field(default_factory=dict)
    pipeline: str = "-"  # the pipeline file's name, a label on the call's metrics
    # When the call's set-up began (time.monotonic()): Twilio's `start`, or the WebRTC offer.
    setup_started: float = field(default_factory=time.monotonic)
    events: CallEvents = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "events", CallEvents(self.transport, self.pipeline))

    @property
    def is_phone(self) -> bool:
        return self.transport == "twilio"
