"""What the pipeline builder knows about one call: its id and its transport's audio format."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any


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

    @property
    def is_phone(self) -> bool:
        return self.transport == "twilio"
