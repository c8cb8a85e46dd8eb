"""Spoken-form normaliser: turns what speech-to-text writes for numbers and emails into written
form, so pattern recognisers can run on it, with an exact span map back to the original.

What it rewrites (everything else is copied byte for byte):

* Number runs: number words, "oh"/"o" (zero inside a run), "double"/"triple", digits and fillers
  ("um", "uh", "er", ...) between them. Inside a run, each spoken piece ("atom": "four", "fifteen",
  "twenty three", "two thousand and five", "double five", "7") becomes digits and the atoms are
  concatenated: "four fifteen" -> "415", "nineteen eighty" -> "1980", "one two three" -> "123".
  Group boundaries: a pause the STT wrote between atoms (",", ".", ";", ":", a spaced dash) and the
  edges of a multi-digit token become ONE space; fillers and attached hyphens vanish. So
  "one two three, four five, six seven eight nine" -> "123 45 6789" and "four one one one, one one
  one one" -> "4111 1111": one number is always digit groups joined by single spaces
  (`\\d+(?: \\d+)*`), the same shape smart-formatted text has.
* When a run is converted: it has a compound atom ("twenty three", "a hundred", "double five"),
  or two atoms with no pause between them and at least one spoken ("one two", "1 2 three"), or at
  least three atoms ("one, two, three"). A lone number word stays as it is ("one of them").
* Ordinals: a compound ordinal becomes digits with a suffix ("forty second" -> "42nd"); a lone
  ordinal stays ("the third time"). In a date - after a month name ("march third", "march the
  third") or before "of <month>" ("the third of march") - the day becomes bare digits, lone
  cardinals 1-31 included: "march third nineteen eighty" -> "march 3 1980". A cardinal day run
  straight into a year is split: "march three nineteen eighty" -> "march 3 1980". For "may" and
  "march" (also verbs) a lone day is converted only after a date word ("on", "born", ...) or when
  a year, a pause or the end follows.
* Emails: `<local> at <domain> dot <tld>` with tld in a known list, where local is words joined by
  "dot"/"period"/"underscore"/"dash"/"hyphen"/"plus" (a word may be followed by spoken digits:
  "john one two" -> "john12") and domain is words joined by "dot"/"dash": "john dot smith at gmail
  dot com" -> "john.smith@gmail.com". A one-word local part that is a common word ("look at
  google dot com", "me", "us") is not an email.

"number" and "#" are left alone; nothing is case-folded in the output.

`Normalized.to_original(start, end)` maps a span of the normalised text to the smallest span of
the original that produced it; converted pieces map as a whole ("123" -> "one two three").
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field

__all__ = ["Normalized", "normalize"]

# A segment: (out_start, out_end, orig_start, orig_end, is_copy). Copies map char by char;
# replacements map every output char to the whole original range.
Segment = tuple[int, int, int, int, bool]


@dataclass(frozen=True)
class Normalized:
    """The original text, its written form, and the map between them."""

    original: str
    text: str
    _segments: tuple[Segment, ...] = field(default=(), repr=False, compare=False)
    _starts: tuple[int, ...] = field(default=(), repr=False, compare=False)

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map a span of `text` to the smallest span of `original` that produced it."""
        if not 0 <= start <= end <= len(self.text):
            raise ValueError(f"span ({start}, {end}) outside text of length {len(self.text)}")
        segs = self._segments
        if not segs:
            return start, end
        if start == len(self.text):
            return len(self.original), len(self.original)
        i = bisect_right(self._starts, start) - 1
        out_s, _, orig_s, orig_e, copy = segs[i]
        if start == end:
            if copy or start == out_s:
                p = orig_s + (start - out_s) if copy else orig_s
                return p, p
            return orig_s, orig_e
        o_start = orig_s + (start - out_s) if copy else orig_s
        j = bisect_right(self._starts, end - 1) - 1
        out_s, _, orig_s, orig_e, copy = segs[j]
        o_end = orig_s + (end - out_s) if copy else orig_e
        return o_start, o_end


# --- vocabulary -----------------------------------------------------------------------------

(
    WS,
    PAUSE,
    JOIN,
    FILLER,
    DIGIT,
    UNIT,
    OH,
    TEEN,
    TENS,
    HUNDRED,
    SCALE,
    ORD,
    ORD_HUNDRED,
    ORD_SCALE,
    MULT,
    A,
    AND,
    WORD,
    OTHER,
) = range(19)

_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_TEENS = [
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORD_SMALL = [
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
]
_ORD_TENS = [
    "twentieth",
    "thirtieth",
    "fortieth",
    "fiftieth",
    "sixtieth",
    "seventieth",
    "eightieth",
    "ninetieth",
]
_FILLERS = ["um", "umm", "uh", "uhh", "uhm", "er", "erm", "hmm", "mm"]

_VOCAB: dict[str, tuple[int, int]] = {}
_VOCAB.update({w: (UNIT, v) for v, w in enumerate(_UNITS)})
_VOCAB.update({w: (TEEN, v + 10) for v, w in enumerate(_TEENS)})
_VOCAB.update({w: (TENS, v * 10 + 20) for v, w in enumerate(_TENS)})
_VOCAB.update({w: (ORD, v + 1) for v, w in enumerate(_ORD_SMALL)})
_VOCAB.update({w: (ORD, v * 10 + 20) for v, w in enumerate(_ORD_TENS)})
_VOCAB.update({w: (FILLER, 0) for w in _FILLERS})
_VOCAB.update(
    {
        "oh": (OH, 0),
        "o": (OH, 0),
        "hundred": (HUNDRED, 100),
        "hundredth": (ORD_HUNDRED, 100),
        "thousand": (SCALE, 1000),
        "million": (SCALE, 1_000_000),
        "thousandth": (ORD_SCALE, 1000),
        "millionth": (ORD_SCALE, 1_000_000),
        "double": (MULT, 2),
        "triple": (MULT, 3),
        "a": (A, 1),
        "and": (AND, 0),
    }
)
_STARTS = frozenset({DIGIT, UNIT, OH, TEEN, TENS, ORD, MULT, A})
_SKIPPABLE = frozenset({WS, PAUSE, JOIN, FILLER})
_WORDS = frozenset({UNIT, OH, TEEN, TENS, HUNDRED, SCALE, ORD, ORD_HUNDRED, ORD_SCALE, MULT, A})

_MONTHS = frozenset(
    {
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "jan",
        "feb",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
    }
)
_AMBIGUOUS_MONTHS = frozenset({"may", "march"})
_DATE_LEAD = frozenset(
    {
        "on",
        "born",
        "of",
        "since",
        "until",
        "from",
        "by",
        "birthday",
        "dob",
        "date",
        "birth",
        "is",
        "was",
    }
)
_PAUSE_CHARS = frozenset(",.;:…–—-")

_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*|\s+|.", re.S)

# --- emails -------------------------------------------------------------------------------

_TLDS = (
    "com|net|org|edu|gov|mil|int|io|co|us|uk|ca|au|de|fr|in|info|biz|me|tv|ai|app|dev|ly|"
    "fm|xyz|online|site|tech|email|mail|us|name|pro|mobi|ie|nz"
)
_DW = "zero|oh|o|one|two|three|four|five|six|seven|eight|nine"
_W = r"(?!(?:at|dot)\b)[^\W_]+"
_ELEM = rf"{_W}(?:\s+(?:{_DW})\b)*"
_LSEP = r"\s+(?:dot|period|underscore|under\s?score|dash|hyphen|plus)\s+|[._+-]"
_DSEP = r"\s+(?:dot|period|dash|hyphen)\s+|[.-]"
_EMAIL = re.compile(
    rf"(?<![\w.'’@+-])(?P<local>{_ELEM}(?:(?:{_LSEP}){_ELEM})*)(?:\s+at\s+|\s*@\s*)"
    rf"(?P<domain>{_W}(?:(?:{_DSEP}){_W})*)(?P<tsep>\s+(?:dot|period)\s+|\.)(?:{_TLDS})"
    r"(?![\w@])",
    re.I,
)
_EPART = re.compile(
    r"(?P<sep>\s+(?:dot|period|underscore|under\s?score|dash|hyphen|plus|at)\s+|\s*@\s*)"
    r"|(?P<w>[^\W_]+)|(?P<ws>\s+)|.",
    re.I,
)
_SEP_OUT = {
    "dot": ".",
    "period": ".",
    "underscore": "_",
    "dash": "-",
    "hyphen": "-",
    "plus": "+",
    "at": "@",
}
_DIGIT_WORDS = {w: str(v) for v, w in enumerate(_UNITS)} | {"oh": "0", "o": "0"}
_NOT_LOCAL = frozenset(
    {
        "me",
        "him",
        "her",
        "us",
        "them",
        "it",
        "you",
        "i",
        "we",
        "they",
        "he",
        "she",
        "this",
        "that",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "am",
        "look",
        "looking",
        "looked",
        "see",
        "stay",
        "staying",
        "work",
        "working",
        "works",
        "worked",
        "meet",
        "here",
        "there",
        "up",
        "out",
        "in",
        "online",
        "available",
        "find",
        "found",
        "call",
        "reach",
        "contact",
        "visit",
        "sign",
        "go",
        "check",
        "apply",
        "arrive",
        "arrived",
        "live",
        "lives",
        "shop",
        "buy",
        "bought",
        "order",
        "ordered",
        "listed",
        "posted",
        "job",
        "email",
        "mail",
        "write",
        "home",
        "what",
    }
)

Repl = tuple[int, int, str]
_AT_WORD = re.compile(r"\bat\b", re.I)


def _emails(text: str, out: list[Repl], spans: list[tuple[int, int]]) -> None:
    """Add the replacements for spoken emails to `out` and their spans to `spans`."""
    pos = 0
    while True:
        m = _EMAIL.search(text, pos)
        if m is None:
            return
        local = m.group("local")
        if local.lower() in _NOT_LOCAL:
            pos = m.start() + 1
            continue
        ls = m.start("local")
        _local_parts(local, ls, out)
        for p in _EPART.finditer(text, m.end("local"), m.start("tsep")):
            if p.lastgroup == "sep":
                word = p.group("sep").strip().lower()
                out.append((p.start(), p.end(), _SEP_OUT.get(word, "@")))
        ts, te = m.span("tsep")
        if text[ts:te] != ".":
            out.append((ts, te, "."))
        spans.append(m.span())
        pos = m.end()


def _local_parts(local: str, base: int, out: list[Repl]) -> None:
    """Separators of the local part become symbols; spoken digits after a word become digits."""
    elem: list[re.Match[str]] = []
    parts = list(_EPART.finditer(local))
    parts.append(None)  # type: ignore[arg-type]
    for p in parts:
        if p is not None and p.lastgroup in ("w", "ws"):
            if p.lastgroup == "w":
                elem.append(p)
            continue
        words = elem
        if len(words) > 1:
            first = 0 if words[0].group().lower() in _DIGIT_WORDS else 1
            if first == 0:
                out.append(
                    (
                        base + words[0].start(),
                        base + words[0].end(),
                        _DIGIT_WORDS[words[0].group().lower()],
                    )
                )
            for k in range(1, len(words)):
                digit = _DIGIT_WORDS[words[k].group().lower()]
                out.append((base + words[k - 1].end(), base + words[k].end(), digit))
        elem = []
        if p is not None and p.lastgroup == "sep":
            word = p.group("sep").strip().lower().replace(" ", "")
            out.append((base + p.start(), base + p.end(), _SEP_OUT.get(word, "@")))


# --- numbers ------------------------------------------------------------------------------


def _ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


@dataclass(slots=True)
class _Atom:
    digits: str
    start: int  # first token
    end: int  # token after the last
    words: int
    value: int = 0
    ordinal: bool = False
    multi: bool = False  # a written multi-digit token
    oh: bool = False
    pause_before: bool = False


class _Numbers:
    """Finds number runs in a token list and turns them into replacements."""

    def __init__(
        self, toks: list[str], kinds: list[int], vals: list[int], starts: list[int]
    ) -> None:
        self.toks, self.kinds, self.vals, self.starts = toks, kinds, vals, starts
        self.n = len(toks)

    def skip(self, i: int) -> tuple[int, bool]:
        kinds, n = self.kinds, self.n
        paused = False
        while i < n and kinds[i] in _SKIPPABLE:
            if kinds[i] == PAUSE:
                paused = True
            i += 1
        return i, paused

    def sub100(self, i: int) -> tuple[int, int, int, bool] | None:
        k, v = self.kinds[i], self.vals[i]
        if k in (UNIT, TEEN):
            return v, i + 1, 1, False
        if k == ORD:
            return v, i + 1, 1, True
        if k == TENS:
            j, p = self.skip(i + 1)
            if not p and j < self.n:
                kj, vj = self.kinds[j], self.vals[j]
                if kj == UNIT and vj > 0:
                    return v + vj, j + 1, 2, False
                if kj == ORD and 1 <= vj <= 9:
                    return v + vj, j + 1, 2, True
            return v, i + 1, 1, False
        return None

    def below_thousand(self, i: int) -> tuple[int, int, int, bool] | None:
        kinds = self.kinds
        if kinds[i] == A:
            j, p = self.skip(i + 1)
            if p or j >= self.n or kinds[j] not in (HUNDRED, ORD_HUNDRED, SCALE, ORD_SCALE):
                return None
            base: tuple[int, int, int, bool] | None = (1, i + 1, 1, False)
        else:
            base = self.sub100(i)
        if base is None or base[3]:
            return base
        v, e, w, _ = base
        j, p = self.skip(e)
        if p or j >= self.n:
            return base
        if kinds[j] == ORD_HUNDRED:
            return v * 100, j + 1, w + 1, True
        if kinds[j] != HUNDRED:
            return base
        v, e, w = v * 100, j + 1, w + 1
        j, p = self.skip(e)
        if p or j >= self.n:
            return v, e, w, False
        extra = 0
        if kinds[j] == AND:
            j, p = self.skip(j + 1)
            extra = 1
            if p or j >= self.n:
                return v, e, w, False
        rest = self.sub100(j)
        if rest is None:
            return v, e, w, False
        return v + rest[0], rest[1], w + rest[2] + extra, rest[3]

    def cardinal(self, i: int) -> tuple[int, int, int, bool] | None:
        first = self.below_thousand(i)
        if first is None or first[3]:
            return first
        v, e, w, o = first
        kinds, vals = self.kinds, self.vals
        total, last_scale = 0, 0
        while True:
            j, p = self.skip(e)
            if p or j >= self.n or kinds[j] not in (SCALE, ORD_SCALE):
                break
            scale = vals[j]
            if last_scale and scale >= last_scale:
                break
            total += v * scale
            v, e, w, last_scale = 0, j + 1, w + 1, scale
            if kinds[j] == ORD_SCALE:
                o = True
                break
            j, p = self.skip(e)
            if p or j >= self.n:
                break
            extra = 0
            if kinds[j] == AND:
                j, p = self.skip(j + 1)
                extra = 1
                if p or j >= self.n:
                    break
            if kinds[j] == A:
                break
            nxt = self.below_thousand(j)
            if nxt is None:
                break
            v, e, o = nxt[0], nxt[1], nxt[3]
            w += nxt[2] + extra
            if o:
                break
        return total + v, e, w, o

    def atom(self, i: int) -> _Atom | None:
        k = self.kinds[i]
        if k == DIGIT:
            t = self.toks[i]
            return _Atom(t, i, i + 1, 0, int(t) if len(t) < 6 else 0, multi=len(t) > 1)
        if k == OH:
            return _Atom("0", i, i + 1, 1, oh=True)
        if k == MULT:
            j, p = self.skip(i + 1)
            if p or j >= self.n:
                return None
            kj = self.kinds[j]
            if kj in (UNIT, OH):
                d = str(self.vals[j])
            elif kj == DIGIT and len(self.toks[j]) == 1:
                d = self.toks[j]
            else:
                return None
            return _Atom(d * self.vals[i], i, j + 1, 2)
        c = self.cardinal(i)
        if c is None:
            return None
        v, e, w, o = c
        return _Atom(str(v), i, e, w, v, ordinal=o)

    def run(self, i: int) -> list[_Atom]:
        atoms: list[_Atom] = []
        paused = False
        while i < self.n:
            a = self.atom(i)
            if a is None or (a.ordinal and atoms):
                break
            a.pause_before = paused
            atoms.append(a)
            if a.ordinal:
                break
            i, paused = self.skip(a.end)
        return atoms

    def prev_word(self, i: int) -> int:
        """Index of the significant token before token i (skipping spaces), or -1."""
        i -= 1
        while i >= 0 and self.kinds[i] == WS:
            i -= 1
        return i

    def next_word(self, i: int) -> int:
        while i < self.n and self.kinds[i] == WS:
            i += 1
        return i

    def month_before(self, i: int) -> int:
        """Index of a month word just before token i ("march third", "march the third")."""
        j = self.prev_word(i)
        if j >= 0 and self.toks[j].lower() == "the":
            j = self.prev_word(j)
        if j >= 0 and self.toks[j].lower() in _MONTHS:
            return j
        return -1

    def month_after(self, i: int) -> bool:
        """ "of <month>" right after token i (exclusive)."""
        j = self.next_word(i)
        if j >= self.n or self.toks[j].lower() != "of":
            return False
        j = self.next_word(j + 1)
        return j < self.n and self.toks[j].lower() in _MONTHS

    def lone_day_ok(self, month: int, atom: _Atom) -> bool:
        if self.toks[month].lower() not in _AMBIGUOUS_MONTHS:
            return True
        j = self.prev_word(month)
        if j >= 0 and self.toks[j].lower() in _DATE_LEAD:
            return True
        j = self.next_word(atom.end)
        return j >= self.n or self.kinds[j] not in (WORD, A, AND, FILLER)

    def convert(self, repls: list[Repl]) -> None:
        kinds, starts, n = self.kinds, self.starts, self.n
        i = 0
        while i < n:
            if kinds[i] not in _STARTS:
                i += 1
                continue
            atoms = self.run(i)
            if not atoms:
                i += 1
                continue
            # "oh" is zero only inside a run of digits.
            if atoms[0].oh and (len(atoms) < 3 or atoms[1].pause_before):
                i = atoms[0].end
                continue
            for k in range(1, len(atoms)):
                a = atoms[k]
                if a.oh and a.pause_before and (k + 1 >= len(atoms) or atoms[k + 1].pause_before):
                    atoms = atoms[:k]
                    break
            out = self.render(atoms)
            if out is None:
                i = atoms[0].end
                continue
            for a_s, a_e, text in out:
                repls.append((starts[a_s], starts[a_e], text))
            i = atoms[-1].end

    def render(self, atoms: list[_Atom]) -> list[tuple[int, int, str]] | None:
        """Replacements (token ranges) for a run, or None when it stays as it is."""
        first = atoms[0]
        spoken = any(a.words for a in atoms) and not all(a.oh for a in atoms)
        if not spoken:  # only written digits, or only "oh"s ("oh oh oh")
            return None
        compound = any(a.words >= 2 for a in atoms)
        adjacent = any(
            not atoms[k].pause_before and (atoms[k].words or atoms[k - 1].words)
            for k in range(1, len(atoms))
        )
        convert = compound or adjacent or len(atoms) >= 3
        month = self.month_before(first.start)
        date = month >= 0 or (first.ordinal and self.month_after(first.end))
        if not convert and len(atoms) == 1 and date and 1 <= first.value <= 31:
            convert = month < 0 or self.lone_day_ok(month, first)
        if not convert:
            return None
        split = -1
        if month >= 0 and len(atoms) > 1 and 1 <= first.value <= 31:
            rest = atoms[1:]
            if not any(a.pause_before or a.multi for a in rest):
                year = "".join(a.digits for a in rest)
                if len(year) == 4:
                    split = 1
        out: list[tuple[int, int, str]] = []
        prev: _Atom | None = None
        for k, a in enumerate(atoms):
            if prev is not None:
                gap = " " if (a.pause_before or a.multi or prev.multi or k == split) else ""
                if gap or prev.end != a.start:
                    out.append((prev.end, a.start, gap))
            digits = a.digits
            if a.ordinal and not date:
                digits = _ordinal(a.value)
            if a.words:
                out.append((a.start, a.end, digits))
            prev = a
        return out


def _tokens(text: str, emails: list[tuple[int, int]]) -> _Numbers:
    toks = _TOKEN.findall(text)
    n = len(toks)
    kinds = [OTHER] * n
    vals = [0] * n
    starts = [0] * (n + 1)
    pos = 0
    vocab = _VOCAB
    for i, t in enumerate(toks):
        starts[i] = pos
        pos += len(t)
        c = t[0]
        if c.isspace():
            kinds[i] = WS
        elif c.isalnum() or len(t) > 1:
            if t.isdecimal() and t.isascii():
                kinds[i] = DIGIT
            else:
                kv = vocab.get(t.lower())
                if kv is None:
                    kinds[i] = WORD
                else:
                    kinds[i], vals[i] = kv
        elif c in _PAUSE_CHARS:
            kinds[i] = PAUSE
    starts[n] = pos
    # A hyphen between two words joins them; "," or "." inside "1,000" / "3.5" is not a pause.
    for i in range(1, n - 1):
        if kinds[i] == PAUSE and kinds[i - 1] > FILLER and kinds[i + 1] > FILLER:
            kinds[i] = JOIN if toks[i] == "-" else OTHER
    for lo, hi in emails:
        for i in range(n):
            if starts[i] < hi and starts[i + 1] > lo:
                kinds[i] = OTHER
    return _Numbers(toks, kinds, vals, starts)


def _build(original: str, repls: list[Repl]) -> Normalized:
    if not repls:
        return Normalized(original, original)
    repls.sort()
    pieces: list[str] = []
    segs: list[Segment] = []
    out_pos = 0
    orig_pos = 0
    for s, e, new in repls:
        if s > orig_pos:
            pieces.append(original[orig_pos:s])
            segs.append((out_pos, out_pos + s - orig_pos, orig_pos, s, True))
            out_pos += s - orig_pos
        if new:
            pieces.append(new)
            segs.append((out_pos, out_pos + len(new), s, e, False))
            out_pos += len(new)
        orig_pos = e
    if orig_pos < len(original):
        pieces.append(original[orig_pos:])
        segs.append((out_pos, out_pos + len(original) - orig_pos, orig_pos, len(original), True))
    return Normalized(original, "".join(pieces), tuple(segs), tuple(s[0] for s in segs))


def normalize(text: str) -> Normalized:
    """Rewrite spoken numbers and emails in `text` into written form (see the module docstring)."""
    repls: list[Repl] = []
    spans: list[tuple[int, int]] = []
    if "@" in text or _AT_WORD.search(text):
        _emails(text, repls, spans)
    _tokens(text, spans).convert(repls)
    return _build(text, repls)
