"""The process-wide observability switch, set once at start-up (`VOICEBOT_OBSERVABILITY`).

On (the default): every call gets Pipecat's metrics, the per-turn latency observers and its
summary. Off exists to measure what observability costs (BENCHMARKS.md), not for production:
calls still count in the call metrics, but have no turn metrics, breakdown or summary.
"""

from __future__ import annotations

_enabled = True


def set_enabled(enabled: bool) -> None:
    global _enabled
    _enabled = enabled


def enabled() -> bool:
    return _enabled
