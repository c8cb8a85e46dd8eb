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
* Restarts: at an ellipsis, words that repeat the first words after it are a false start and
  are dropped ("eight five... eight five oh nine" -> "8509"); at a spaced dash only a whole group
  repeated ("twenty - twenty four" -> "24"; "four one five - five five five" stays "415 555").
  The dropped words map with the number. "slash" between numbers is "/", spoken "dash" a pause,
  a bare "hundred" inside a run is 100, and a lone "oh" said apart is a zero before 8 more digits
  or after 6 or more ("seven five three nine. oh" -> "7539 0").
* Lone numbers that are converted anyway: a year after "<month> (<day>)," ("february twenty
  fifth ninety" -> "february 25 90"), a unit ("apartment nineteen"), and a house number after an
  address cue before a street name ("moved to seven fox run way" -> "moved to 7 fox run way").
* Emails: `<local> at <domain> dot <tld>` (or "@"), tld in a known list. The local part is found
  by walking back from "at" over words, spelled letters and digits, joined by spaces (dropped) or
  "dot"/"period"/"underscore"/"dash"/"hyphen"/"plus"/" . "/" _ ", up to a function or cue word
  ("is", "to", "email", ...): "c kim at umich dot edu" -> "ckim@umich.edu"; spoken numbers in it
  become digits ("julie nineteen fifty seven" -> "julie1957"); ", all one word," before "at" is
  dropped. Domain labels may be said in two words ("g mail"). "look at google dot com" is not an
  email.

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
    DROP,
    SLASH,
) = range(21)

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
        "slash": (SLASH, 0),
        "dash": (PAUSE, 0),
        "hyphen": (PAUSE, 0),
    }
)
_STARTS = frozenset({DIGIT, UNIT, OH, TEEN, TENS, ORD, MULT, A})
_SKIPPABLE = frozenset({WS, PAUSE, JOIN, FILLER, DROP, SLASH})
# Kinds a restart compares ("eight five... eight five oh nine"), and what it looks across.
_RESTART_WORDS = frozenset({DIGIT, UNIT, OH, TEEN, TENS, HUNDRED, MULT})
_RESTART_SKIP = _RESTART_WORDS | {WS, FILLER}
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
_DAY_KINDS = frozenset({ORD, UNIT, TEEN, TENS, DIGIT})
_UNIT_WORDS = frozenset({"apartment", "apt", "unit", "suite", "ste", "flat", "building", "bldg"})
_ADDRESS_CUES = frozenset({"to", "at", "is", "address", "it's", "its", "on", "from", "was"})
_STREET_WORDS = frozenset(
    """street st avenue ave road rd lane ln drive dr way boulevard blvd court ct circle cir
    place pl terrace ter trail trl highway hwy parkway pkwy square sq loop crescent alley plaza
    pike row broadway""".split()
)
_STREET_NUMBER_KINDS = frozenset({UNIT, TEEN, TENS, HUNDRED, ORD, ORD_HUNDRED, AND})
# "oh" said apart at the start of 8 more digits, or at the end of 6 or more, is a zero.
_OH_LEAD_REST = 8
_OH_TAIL_MIN = 6
_ELLIPSES = frozenset({"..", "...", "....", "…"})
_DASHES = frozenset({"-", "--", "–", "—"})

_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*|\s+|.", re.S)

# --- emails -------------------------------------------------------------------------------

_TLDS = (
    "com|net|org|edu|gov|mil|int|io|co|us|uk|ca|au|de|fr|es|nl|se|ch|jp|br|mx|in|info|biz|me|"
    "tv|ai|app|dev|ly|fm|xyz|online|site|tech|email|mail|name|pro|mobi|ie|nz|cc|gg|live|shop|"
    "store|cloud|blog|life|news|club|world|today"
)
_W = r"(?!(?:at|dot)\b)[^\W_]+"
# A domain label may be spoken in two words: "g mail", "hot mail", "i cloud", "out look".
_DLABEL = rf"(?:[^\W\d_]\s+)?{_W}(?:\s+(?:mail|look|cloud|link))?"
_DSEP = r"\s+(?:dot|period|dash|hyphen)\s+|[.-]"
# "at <domain> dot <tld>" / "@domain.tld": the local part before it is found by walking back.
_EMAIL_TAIL = re.compile(
    rf"(?:\s+at\s+|\s*@\s*)(?P<domain>{_DLABEL}(?:(?:{_DSEP}){_DLABEL})*)"
    rf"(?P<tsep>\s+(?:dot|period)\s+|\.)(?:{_TLDS})(?![\w@])",
    re.I,
)
_EPART = re.compile(
    r"(?P<sep>\s+(?:dot|period|dash|hyphen|at)\s+|\s*@\s*)|(?P<w>[^\W_]+)|(?P<ws>\s+)|.",
    re.I,
)
# "..., all one word, at": an instruction between the local part and "at"; it is dropped.
_ONE_WORD = re.compile(
    r"(?:\s*,)?\s+(?:(?:all|it's|its|that's)\s+)?(?:one\s+word|lower\s*case|no\s+spaces)\s*,?$",
    re.I,
)
_LTOK = re.compile(r"[^\W_]+(?:['’][^\W_]+)*|\s+|.", re.S)
_SEP_OUT = {
    "dot": ".",
    "period": ".",
    "underscore": "_",
    "score": "_",
    "dash": "-",
    "hyphen": "-",
    "plus": "+",
    "at": "@",
}
_LOCAL_SEP_WORDS = frozenset({"dot", "period", "underscore", "dash", "hyphen", "plus"})
_LOCAL_SEP_CHARS = frozenset("._+-")
_LOCAL_NUMBER = frozenset({UNIT, TEEN, TENS, HUNDRED, MULT})
_MAX_LOCAL_WORDS = 24
# Words that end a spoken local part when walking back from "at": function words, the words
# people put around an email, and verbs of "look at google dot com". Single letters are spelled
# letters and always belong to the local part.
_NOT_LOCAL = frozenset(
    """
    me him her us them it you we they he she this that these those is are was were be been am
    my your his our their its it's that's here's there's what's i'm i've you're we're to at on
    in of for from by with as and or but so then the an not no yes yeah yep ok okay well sure
    right please thanks thank just also actually like um umm uh uhh uhm er erm hmm mm
    email e-mail mail address addresses send sent sending update change changed use using try
    write reach contact visit find found call look looking looked see stay staying work
    working works worked meet here there up out online available sign go check apply arrive
    arrived live lives shop buy bought order ordered listed posted job home what should would
    could can will shall may might must do does did have has had get got new old current
    personal account file receipt copy copies via under correct spelled spell say said is
    """.split()
)

Repl = tuple[int, int, str]
_AT_WORD = re.compile(r"\bat\b", re.I)


def _emails(text: str, out: list[Repl], spans: list[tuple[int, int]]) -> None:
    """Add the replacements for spoken emails to `out` and their spans to `spans`."""
    floor = 0
    for m in _EMAIL_TAIL.finditer(text):
        at_start = m.start()
        one_word = _ONE_WORD.search(text, max(floor, at_start - 40), at_start)
        local_end = one_word.start() if one_word else at_start
        local = _local_part(text, floor, local_end)
        if local is None:
            continue
        start, repls = local
        out.extend(repls)
        if one_word:
            out.append((local_end, at_start, ""))
        for p in _EPART.finditer(text, at_start, m.start("tsep")):
            kind = p.lastgroup
            if kind == "sep":
                sym = _SEP_OUT.get(p.group("sep").strip().lower(), "@")
                if p.group() != sym:
                    out.append((p.start(), p.end(), sym))
            elif kind == "ws":
                out.append((p.start(), p.end(), ""))
        ts, te = m.span("tsep")
        if text[ts:te] != ".":
            out.append((ts, te, "."))
        spans.append((start, m.end()))
        floor = m.end()


def _local_part(text: str, floor: int, end: int) -> tuple[int, list[Repl]] | None:
    """Walk back from `end` over the local part of an email: words, spelled letters and spoken
    digits, joined by spaces (dropped) or by spoken or written separators. Returns its start and
    its replacements, or None when there is no local part."""
    found = _LTOK.finditer(text, max(floor, end - 400), end)
    toks = [(t.start(), t.end(), t.group()) for t in found]
    i = len(toks) - 1
    if i < 0 or not _local_word(toks[i][2]):
        return None
    # (start, end, text): words at even positions, the gaps between them (with their written
    # form) at odd positions; right to left.
    items: list[tuple[int, int, str]] = [toks[i]]
    i -= 1
    while len(items) < 2 * _MAX_LOCAL_WORDS:
        gap = _local_gap(toks, i)
        if gap is None:
            break
        i, g = gap
        if i < 0 or not _local_word(toks[i][2]):
            break
        items += [g, toks[i]]
        i -= 1
    items.reverse()
    return items[0][0], _local_repls(text, items)


def _local_word(t: str) -> bool:
    low = t.lower()
    return t[0].isalnum() and (len(t) == 1 or low not in _NOT_LOCAL) and low not in _SEP_OUT


def _local_gap(toks: list[tuple[int, int, str]], i: int) -> tuple[int, tuple[int, int, str]] | None:
    """The gap ending at token i: (index of the word before it, (start, end, written form))."""
    if i < 1:
        return None
    s, e, t = toks[i]
    if t in _LOCAL_SEP_CHARS:  # attached: "john.smith", "j_smith"
        return (i - 1, (s, e, t)) if toks[i - 1][2][0].isalnum() else None
    if not t.isspace():
        return None
    if i >= 3 and toks[i - 2][2].isspace():
        sep = toks[i - 1][2].lower()
        if sep in _LOCAL_SEP_WORDS or sep in _LOCAL_SEP_CHARS:  # "dot", " . ", " _ "
            return i - 3, (toks[i - 2][0], e, _SEP_OUT.get(sep, sep))
        if sep == "score" and i >= 5 and toks[i - 3][2].lower() == "under":
            if toks[i - 4][2].isspace():
                return i - 5, (toks[i - 4][0], e, "_")
    return i - 1, (s, e, "")


def _local_number(t: str, after_number: bool) -> bool:
    kind = _VOCAB.get(t.lower(), (WORD, 0))[0]
    if kind in _LOCAL_NUMBER or t.isdecimal():
        return True
    return kind == OH and (t.lower() == "oh" or after_number)


def _local_repls(text: str, items: list[tuple[int, int, str]]) -> list[Repl]:
    """Gaps become "" or a separator symbol; a run of spoken digits becomes digits
    ("julie nineteen fifty seven" -> "julie1957")."""
    out: list[Repl] = []
    k, n = 0, len(items)
    while k < n:
        s, e, t = items[k]
        if k % 2:  # a gap
            if text[s:e] != t:
                out.append((s, e, t))
            k += 1
            continue
        j = k
        while j < n and _local_number(items[j][2], j > k) and (j == k or items[j - 1][2] == ""):
            j += 2
        run = [items[x][2] for x in range(k, j, 2)]
        if not any(not w.isdecimal() for w in run):
            k += 1
            continue
        digits = _spoken_digits(text[s : items[j - 2][1]])
        if digits is None:
            k += 1
            continue
        if k and items[k - 1][2] == "":  # the space before the number goes with it
            s = items[k - 1][0]
            if out and out[-1][0] == s:
                out.pop()
        out.append((s, items[j - 2][1], digits))
        k = j - 1
    return out


def _spoken_digits(words: str) -> str | None:
    """All the atoms of a run of number words as digits, or None if some word is not one."""
    nums = _tokens(words, [])
    digits = []
    i, _ = nums.skip(0)
    while i < nums.n:
        atom = nums.atom(i)
        if atom is None:
            return None
        digits.append(atom.digits)
        i, _ = nums.skip(atom.end)
    return "".join(digits)


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
    pause_before: int = 0  # 1 after a pause, 2 after "slash"


class _Numbers:
    """Finds number runs in a token list and turns them into replacements."""

    def __init__(
        self, toks: list[str], kinds: list[int], vals: list[int], starts: list[int]
    ) -> None:
        self.toks, self.kinds, self.vals, self.starts = toks, kinds, vals, starts
        self.n = len(toks)

    def skip(self, i: int) -> tuple[int, int]:
        kinds, n = self.kinds, self.n
        paused = 0
        while i < n and kinds[i] in _SKIPPABLE:
            if kinds[i] == PAUSE:
                paused = paused or 1
            elif kinds[i] == SLASH:
                paused = 2
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
        if kinds[i] == HUNDRED:  # "..., hundred twenty seven": only inside a run
            return self.after_hundred(100, i + 1, 1)
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
        return self.after_hundred(v * 100, j + 1, w + 1)

    def after_hundred(self, v: int, e: int, w: int) -> tuple[int, int, int, bool]:
        """ "<n> hundred" ends at token e; add "(and) twenty three" if it follows."""
        kinds = self.kinds
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
        if rest[2] == 1 and not rest[3]:
            # "nineteen hundred one hundred eighty four": "one" starts the next hundred.
            k, p = self.skip(rest[1])
            if not p and k < self.n and kinds[k] in (HUNDRED, ORD_HUNDRED):
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
            # A digit of a written date ("2/4") is a group of its own, like "24".
            multi = len(t) > 1 or (i > 0 and self.toks[i - 1] == "/")
            return _Atom(t, i, i + 1, 0, int(t) if len(t) < 6 else 0, multi=multi)
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
        paused = 0
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

    def mark_restarts(self) -> None:
        """Drop the false start of a restart: "eight five... eight five oh nine" reads as
        "eight five oh nine". At an ellipsis the words just before it must repeat the first
        words after it; at a spaced dash the whole group before it must ("twenty - twenty
        four"), so that "four one five - five five five" stays as it is."""
        toks, kinds, n = self.toks, self.kinds, self.n
        i = 0
        while i < n:
            if kinds[i] != PAUSE:
                i += 1
                continue
            j = i
            while j < n and kinds[j] == PAUSE:
                j += 1
            stop = "".join(toks[i:j])
            if stop in _ELLIPSES:
                self.restart(i, j, True)
            elif stop in _DASHES and (kinds[i - 1] == WS if i else True):
                self.restart(i, j, False)
            i = j

    def restart_key(self, k: int) -> str:
        return str(self.vals[k]) if self.kinds[k] in (UNIT, OH) else self.toks[k].lower()

    def restart(self, i: int, j: int, ellipsis: bool) -> None:
        kinds = self.kinds
        before: list[int] = []
        k = i - 1
        while k >= 0 and kinds[k] in _RESTART_SKIP:
            if kinds[k] in _RESTART_WORDS:
                before.append(k)
            k -= 1
        after: list[int] = []
        k = j
        while k < self.n and kinds[k] in _RESTART_SKIP and len(after) <= len(before):
            if kinds[k] in _RESTART_WORDS:
                after.append(k)
            k += 1
        if not before or not after:
            return
        before.reverse()
        bkeys = [self.restart_key(x) for x in before]
        akeys = [self.restart_key(x) for x in after]
        m = 0
        if ellipsis:
            for size in range(min(len(bkeys), len(akeys) - 1), 0, -1):
                if bkeys[-size:] == akeys[:size]:
                    m = size
                    break
        elif len(bkeys) < len(akeys) and bkeys == akeys[: len(bkeys)]:
            m = len(bkeys)
        if m:
            for x in range(before[-m], after[0]):
                kinds[x] = DROP

    def drop_start(self, i: int) -> int:
        """Index of the first dropped token right before token i, or -1."""
        first = -1
        i -= 1
        while i >= 0 and self.kinds[i] in (WS, FILLER, DROP):
            if self.kinds[i] == DROP:
                first = i
            i -= 1
        return first

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

    def year_after_date(self, i: int) -> bool:
        """Token i follows "<month>", "<month> <day>" or "<day> of <month>", commas allowed:
        a lone number there is a year ("february twenty fifth ninety")."""
        j = self.prev_word(i)
        while j >= 0 and self.toks[j] == ",":
            j = self.prev_word(j)
        if j < 0:
            return False
        if self.toks[j].lower() in _MONTHS:
            return True
        if self.kinds[j] not in _DAY_KINDS:
            return False
        while j >= 0 and (self.kinds[j] in _DAY_KINDS or self.kinds[j] == WS):
            j -= 1
        return self.month_before(j + 1) >= 0

    def unit_before(self, i: int) -> bool:
        """ "apartment nineteen", "unit four"."""
        j = self.prev_word(i)
        return j >= 0 and self.toks[j].lower() in _UNIT_WORDS

    def house_number(self, atom: _Atom) -> bool:
        """ "(moved) to seven fox run way": a lone number after an address cue and before a
        street name that ends in a street word."""
        j = self.prev_word(atom.start)
        if j < 0 or self.toks[j].lower() not in _ADDRESS_CUES:
            return False
        names = 0
        j = self.next_word(atom.end)
        while j < self.n and names <= 4:
            t = self.toks[j].lower()
            if t in _STREET_WORDS:
                return names > 0
            k = self.kinds[j]
            if k == WORD and t.isalpha() and t not in _NOT_LOCAL:
                names += 1
            elif k in _STREET_NUMBER_KINDS:  # "five one hundred fourteenth parkway"
                names += k in (ORD, ORD_HUNDRED)
            else:
                return False
            j = self.next_word(j + 1)
        return False

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
        self.mark_restarts()
        i = 0
        while i < n:
            if kinds[i] not in _STARTS:
                i += 1
                continue
            atoms = self.run(i)
            if not atoms:
                i += 1
                continue
            # "oh" is zero only inside a run of digits, or said apart at the edge of a long one
            # ("oh, eight zero, three two, nine one six five"; "seven five three nine, oh").
            if atoms[0].oh and (len(atoms) < 3 or atoms[1].pause_before):
                if sum(len(a.digits) for a in atoms[1:]) != _OH_LEAD_REST:
                    i = atoms[0].end
                    continue
            for k in range(1, len(atoms)):
                a = atoms[k]
                if a.oh and a.pause_before and (k + 1 >= len(atoms) or atoms[k + 1].pause_before):
                    last = k + 1 >= len(atoms)
                    if not last or sum(len(b.digits) for b in atoms[:k]) < _OH_TAIL_MIN:
                        atoms = atoms[:k]
                    break
            out = self.render(atoms)
            if out is None:
                i = atoms[0].end
                continue
            ds = self.drop_start(atoms[0].start)
            if ds >= 0:  # the false start goes with the number
                a0 = atoms[0]
                for x, (a_s, a_e, text) in enumerate(out):
                    if a_s == a0.start:
                        out[x] = (ds, a_e, text)
                        break
                else:
                    out.insert(0, (ds, a0.end, a0.digits))
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
        if not convert and len(atoms) == 1 and not first.ordinal and first.words:
            convert = (
                (first.value >= 10 and self.year_after_date(first.start))
                or self.unit_before(first.start)
                or self.house_number(first)
            )
        if not convert:
            return None
        split = -1
        if month >= 0 and len(atoms) > 1 and 1 <= first.value <= 31:
            rest = atoms[1:]
            if not any(a.pause_before or a.multi for a in rest):
                year = "".join(a.digits for a in rest)
                # "march twelve twenty twenty", "july twenty six eighty five"
                two = len(rest) == 1 and rest[0].value >= 10 and first.value not in (19, 20)
                if len(year) == 4 or two:
                    split = 1
        out: list[tuple[int, int, str]] = []
        prev: _Atom | None = None
        for k, a in enumerate(atoms):
            if prev is not None:
                gap = " " if (a.pause_before or a.multi or prev.multi or k == split) else ""
                if a.pause_before == 2:
                    gap = "/"
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
