"""Who may start a call now: one decision for every route that starts one.

`Admission.check` answers, in this order:
- `rate_limited`: the client's address has used up its token bucket (VOICEBOT_RATE_LIMIT);
- `draining` / `not_ready`: the server is shutting down, or its models are not loaded yet;
- `capacity`: VOICEBOT_MAX_CALLS calls are running or being set up in this process.

Each route turns the refusal into its own answer (server.py, transports/twilio.py): 429 or 503
with Retry-After over HTTP, busy TwiML on Twilio's webhook, close code 1013 on a media stream.
Every refusal is counted in `voicebot_calls_refused_total{reason}`.

The client's address is `request.client.host`: uvicorn's proxy-headers middleware has already
replaced the peer with the X-Forwarded-For client when the peer is a trusted proxy
(FORWARDED_ALLOW_IPS, default 127.0.0.1). Nothing here reads X-Forwarded-For itself: any client
can write that header.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.metrics import CALLS_REFUSED

if TYPE_CHECKING:
    from bot.runtime import Runtime

PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
# Address-spraying (IPv6 gives an attacker plenty) must not grow the table without bound; at the
# bound the least recently seen address is forgotten (it starts again with a full bucket).
MAX_BUCKETS = 100_000
REASONS = ("capacity", "draining", "not_ready", "rate_limited")


@dataclass(frozen=True)
class RateLimit:
    """`count` call starts per `period_secs` per client address, in bursts of up to `count`."""

    count: int
    period_secs: float

    @property
    def per_second(self) -> float:
        return self.count / self.period_secs

    def __str__(self) -> str:
        name = next(n for n, secs in PERIODS.items() if secs == self.period_secs)
        return f"{self.count}/{name}"


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour)s?\s*$", re.IGNORECASE)


def parse_rate_limit(raw: str) -> RateLimit | None:
    """`30/minute` (per second, minute or hour) -> RateLimit; `off` -> None; else ValueError."""
    if raw.strip().lower() == "off":
        return None
    match = _RATE.match(raw)
    if match is None:
        raise ValueError(f'expected "N/second", "N/minute", "N/hour" or "off", got {raw!r}')
    count = int(match.group(1))
    if count < 1:
        raise ValueError(f"the count must be at least 1, got {raw!r} (use off to disable)")
    return RateLimit(count, PERIODS[match.group(2).lower()])


class TokenBuckets:
    """One token bucket per key (a client address), in process memory, at most `max_entries`.

    A bucket holds up to `limit.count` tokens and refills at `limit.per_second`; a call start
    takes one. A bucket left alone for a whole period is full again, the same as a new one, so
    it is forgotten; beyond `max_entries` the least recently used bucket is forgotten too."""

    def __init__(
        self,
        limit: RateLimit,
        max_entries: int = MAX_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.limit = limit
        self.max_entries = max_entries
        self._clock = clock
        self._idle_secs = limit.period_secs  # from empty to full
        # key -> (tokens, last update), least recently used first
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Take a token for `key`: 0.0 when granted, else the seconds until one is due."""
        now = self._clock()
        capacity = float(self.limit.count)
        tokens, updated = self._buckets.pop(key, (capacity, now))
        tokens = min(capacity, tokens + (now - updated) * self.limit.per_second)
        self._evict(now)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.limit.per_second

    def _evict(self, now: float) -> None:
        buckets = self._buckets
        # Idle ones first (oldest first, so stop at the first one still refilling)...
        while buckets:
            _, updated = next(iter(buckets.values()))
            if now - updated < self._idle_secs:
                break
            buckets.popitem(last=False)
        # ...then, still full, the least recently used: room for the key about to go in.
        while len(buckets) >= self.max_entries:
            buckets.popitem(last=False)


@dataclass(frozen=True)
class Refusal:
    reason: str  # one of REASONS (the metric's label)
    status: int  # the HTTP status for routes that answer with one
    detail: str
    retry_after_secs: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_secs)}


class Admission:
    """The one decision: may this client start a call now?"""

    def __init__(self, runtime: Runtime, clock: Callable[[], float] = time.monotonic):
        self._runtime = runtime
        settings = runtime.settings
        self.max_calls = settings.max_calls
        self.retry_after_secs = settings.retry_after_secs
        limit = settings.rate_limit
        self.buckets = TokenBuckets(limit, clock=clock) if limit is not None else None

    def check(
        self, client: str | None, *, rate_limit: bool = True, capacity: bool = True
    ) -> Refusal | None:
        """None when a call may start; otherwise the refusal, counted.

        `rate_limit=False` for a Twilio media stream (its webhook was the rate-limited request);
        `capacity=False` for requests that start no call themselves (a session token)."""
        refusal = self._decide(client, rate_limit, capacity)
        if refusal is not None:
            CALLS_REFUSED.labels(refusal.reason).inc()
        return refusal

    def _decide(self, client: str | None, rate_limit: bool, capacity: bool) -> Refusal | None:
        if rate_limit and self.buckets is not None:
            wait = self.buckets.take(client or "-")
            if wait > 0:
                return Refusal("rate_limited", 429, "rate limited", max(1, math.ceil(wait)))
        if not capacity:
            return None
        runtime = self._runtime
        if not runtime.accepting_calls:
            reason = "draining" if runtime.draining else "not_ready"
            return Refusal(reason, 503, "not taking calls", self.retry_after_secs)
        if runtime.calls.occupied >= self.max_calls:
            return Refusal("capacity", 503, "at capacity", self.retry_after_secs)
        return None
