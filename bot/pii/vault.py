"""Per-call placeholders for personal data, and the vault that keeps the real values.

With the `placeholder` style the LLM sees `[PERSON_1]` every time the caller says the same name,
so it can still follow the conversation ("[PERSON_1] asked about..."), while the value itself
stays in this process: the vault maps each placeholder back to what was said, for code that
needs it (a tool call that books an appointment), and is dropped with the call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_DIGITS_TYPES = {
    "US_SSN",
    "CREDIT_CARD",
    "PHONE_NUMBER",
    "US_BANK_NUMBER",
    "ABA_ROUTING_NUMBER",
    "MEDICAL_RECORD_NUMBER",
}


def canonical(entity_type: str, value: str) -> str:
    """The form under which two mentions count as the same value (digits only for numbers,
    case and spacing ignored for the rest)."""
    if entity_type in _DIGITS_TYPES:
        digits = re.sub(r"\D", "", value)
        if digits:
            return digits
    return " ".join(value.lower().split())


@dataclass
class PiiVault:
    """Placeholders handed out in one call, and the values behind them. Never logged."""

    _by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    _values: dict[str, str] = field(default_factory=dict, repr=False)
    _counts: dict[str, int] = field(default_factory=dict)

    def placeholder(self, entity_type: str, value: str) -> str:
        """The call's placeholder for this value: the same one every time it is said."""
        key = (entity_type, canonical(entity_type, value))
        found = self._by_value.get(key)
        if found is not None:
            return found
        number = self._counts.get(entity_type, 0) + 1
        self._counts[entity_type] = number
        name = f"[{entity_type}_{number}]"
        self._by_value[key] = name
        self._values[name] = value
        return name

    def reveal(self, placeholder: str) -> str | None:
        """What the caller said for `placeholder` (for in-process tool code only)."""
        return self._values.get(placeholder)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:  # never print the values
        return f"PiiVault({len(self._values)} values)"
