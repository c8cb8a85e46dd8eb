"""Reading a running server's `/metrics` and call summaries as an operator's tools would."""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        return response.read().decode()


def sample(metrics: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0: no such series)."""
    total = 0.0
    for line in metrics.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line[len(name) : line.rindex("}") + 1]))
        if all(found.get(key) == value for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def added(before: str, after: str, name: str, **labels: str) -> float:
    return sample(after, name, **labels) - sample(before, name, **labels)


def summary_in_log(log: str, call_id: str) -> dict[str, Any] | None:
    """The call's summary from a text-format server log (`call summary {json}`)."""
    marker = "call summary "
    for line in log.splitlines():
        at = line.find(marker + "{")
        if at < 0:
            continue
        record = json.loads(line[at + len(marker) :])
        if record.get("call_id") == call_id:
            return record
    return None
