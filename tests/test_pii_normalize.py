"""Tests for the spoken-form normaliser (bot/pii/normalize.py): each rewrite rule, byte-for-byte
preservation of everything else, the span map back to the original, and conversions that must
not happen."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from bot.pii.normalize import Normalized, normalize

# (spoken, written)
DIGITS = [
    ("one two three", "123"),
    ("zero one two three four five six seven eight nine", "0123456789"),
    ("ONE TWO THREE", "123"),
    ("One Two Three", "123"),
    ("four four one one", "4411"),
    ("nine one one", "911"),
    ("seven seven seven seven", "7777"),
    ("one-two-three", "123"),
    ("five five five one two one two", "5551212"),
]
OH = [
    ("five oh five", "505"),
    ("one oh one", "101"),
    ("oh two one three nine", "02139"),
    ("zip code o two one three nine", "zip code 02139"),
    ("nineteen oh five", "1905"),
    ("one two oh", "120"),
    ("oh oh seven", "007"),
    ("one two three. Oh, and bring it", "123. Oh, and bring it"),
    ("one two three, oh", "123, oh"),
    ("Oh, one two three", "Oh, 123"),
    ("five oh, five five", "50 55"),
    ("1 oh 2", "102"),
]
DOUBLE = [
    ("double five", "55"),
    ("triple seven", "777"),
    ("double oh seven", "007"),
    ("four double five one", "4551"),
    ("triple 9", "999"),
    ("Double Five", "55"),
    ("one two double three", "1233"),
]
GROUPED = [
    ("twenty three", "23"),
    ("twenty-three", "23"),
    ("four fifteen", "415"),
    ("nineteen eighty", "1980"),
    ("nineteen eighty five", "1985"),
    ("two thousand and five", "2005"),
    ("two thousand five", "2005"),
    ("twenty twenty three", "2023"),
    ("twelve thirty four", "1234"),
    ("a hundred", "100"),
    ("a thousand", "1000"),
    ("one hundred", "100"),
    ("one hundred twenty three", "123"),
    ("one hundred and five", "105"),
    ("nineteen hundred", "1900"),
    ("twenty five hundred", "2500"),
    ("two thousand five hundred and twelve", "2512"),
    ("three million", "3000000"),
    ("one twenty three", "123"),
    ("seven eleven", "711"),
    ("ten four", "104"),
]
GROUPS = [  # pauses the STT wrote become single spaces between digit groups
    ("one two three, four five, six seven eight nine", "123 45 6789"),
    ("four one one one, one one one one", "4111 1111"),
    ("One two three. Four five. Six seven eight nine.", "123 45 6789."),
    ("four one one one, one one one one, one one one one, one one one one", "4111 1111 1111 1111"),
    ("four one five - five five five - one two one two", "415 555 1212"),
    ("one, two, three", "1 2 3"),
    ("one two three; four five", "123 45"),
    # restarts: the false start is dropped (and mapped with the number)
    ("eight five... eight five oh nine", "8509"),
    ("four four seven eight. three one zero... three uh one zero one", "4478 3101"),
    ("six six two three nine eight... nine eight eight six", "66239886"),
    ("twenty twenty… twenty two", "2022"),
    ("two - two oh six zero four", "20604"),
    ("four oh two, twenty - twenty four four six", "402 2446"),
    ("one two - one two six five three", "12653"),
    ("two twenty three, hundred twenty seven", "223 127"),
    ("nineteen hundred one hundred eighty four", "1900184"),
    ("oh one slash twenty three slash two thousand four", "01/23/2004"),
    ("one two three dash four five", "123 45"),
    ("oh, eight zero, three two, nine one six five", "0 80 32 9165"),
    ("zero eight nine three. seven five three nine. oh.", "0893 7539 0."),
    ("five five five, oh, one two", "555, oh, 12"),  # "oh" between short groups stays
]
FILLERS = [
    ("four one um one one", "4111"),
    ("four one one one, um, one one one one", "4111 1111"),
    ("five five five uh one two one two", "5551212"),
    ("uh, my number is, um, five five five, uh, one two one two", "uh, my number is, um, 555 1212"),
    ("twenty um three", "23"),
    ("one two three um", "123 um"),
    ("um one two three", "um 123"),
    ("four er four erm one one", "4411"),
]
MIXED = [
    ("1 2 three", "123"),
    ("4 one one 1", "4111"),
    ("call 415 five five five one two one two", "call 415 5551212"),
    ("123-45-six seven eight nine", "123 45 6789"),
    ("my pin is 2 one", "my pin is 21"),
    ("march 3 nineteen eighty", "march 3 1980"),
]
ORDINALS_DATES = [
    ("march third nineteen eighty", "march 3 1980"),
    ("born march third nineteen eighty", "born march 3 1980"),
    ("March Third, Nineteen Eighty", "March 3, 1980"),
    ("march three nineteen eighty", "march 3 1980"),
    ("march twelve twenty twenty", "march 12 2020"),
    ("june twenty first nineteen ninety nine", "june 21 1999"),
    ("march the third", "march the 3"),
    ("the third of march nineteen eighty", "the 3 of march 1980"),
    ("born on the twenty first of june, two thousand and one", "born on the 21 of june, 2001"),
    ("july fourth", "july 4"),
    ("july four", "july 4"),
    ("december thirty first", "december 31"),
    ("born may fifth", "born may 5"),
    ("it was may fifth", "it was may 5"),
    ("march nineteen eighty", "march 1980"),
    ("june two thousand", "june 2000"),
    ("forty second street", "42nd street"),
    ("july twenty six eighty five", "july 26 85"),
    ("february twenty fifth ninety", "february 25 90"),
    ("november twenty ninth, fifty", "november 29, 50"),
    ("the sixth of february, sixty", "the 6 of february, 60"),
    ("birthday 2/4 nineteen eighty five", "birthday 2/4 1985"),
    ("march twenty twenty", "march 2020"),
    # house and apartment numbers
    ("moved to seven fox run way", "moved to 7 fox run way"),
    ("address is four west willow creek Blvd", "address is 4 west willow creek Blvd"),
    ("send it to five one hundred fourteenth parkway", "send it to 5 114th parkway"),
    ("main street, apartment nineteen", "main street, apartment 19"),
    ("unit four b", "unit 4 b"),
    ("the twenty first century", "the 21st century"),
    ("one hundred and first", "101st"),
    ("the twenty third", "the 23rd"),
    ("the third", "the third"),
]
EMAILS = [
    ("john dot smith at gmail dot com", "john.smith@gmail.com"),
    ("John Dot Smith At Gmail Dot Com", "John.Smith@Gmail.Com"),
    (
        "my email is john dot smith at gmail dot com thanks",
        "my email is john.smith@gmail.com thanks",
    ),
    ("jane underscore doe at yahoo dot com", "jane_doe@yahoo.com"),
    ("jane under score doe at yahoo dot com", "jane_doe@yahoo.com"),
    ("mary dash ann at example dot org", "mary-ann@example.org"),
    ("mary hyphen ann at example dot org", "mary-ann@example.org"),
    ("jane plus news at my dash site dot io", "jane+news@my-site.io"),
    ("bob at bbc dot co dot uk", "bob@bbc.co.uk"),
    ("bob at mail dot stanford dot edu", "bob@mail.stanford.edu"),
    ("john one two three at gmail dot com", "john123@gmail.com"),
    ("j smith eighty at aol dot com", "jsmith80@aol.com"),
    ("john.smith at gmail dot com", "john.smith@gmail.com"),
    ("john@gmail dot com", "john@gmail.com"),
    ("j_smith at example.org", "j_smith@example.org"),
    ("email me at john at gmail dot com. thanks", "email me at john@gmail.com. thanks"),
    ("a at b dot net or c at d dot org", "a@b.net or c@d.org"),
    ("info at acme dot biz", "info@acme.biz"),
    # multi-word and spelled local parts, spoken digits in them, "g mail", "all one word"
    ("email is kelly dot victoria at fastmail dot fm", "email is kelly.victoria@fastmail.fm"),
    ("it's layla period manuelito at g mail dot com", "it's layla.manuelito@gmail.com"),
    ("should be melissa rogers at umich dot edu", "should be melissarogers@umich.edu"),
    ("b r a m o s at yahoo dot com is mine", "bramos@yahoo.com is mine"),
    ("to keanu huaman, all one word, at fastmail dot fm", "to keanuhuaman@fastmail.fm"),
    ("is julie nineteen fifty seven at comcast dot net", "is julie1957@comcast.net"),
    ("email benjamin twenty oh eight at yahoo dot com", "email benjamin2008@yahoo.com"),
    ("email b underscore m e n s a h five one oh at me dot io", "email b_mensah510@me.io"),
    ("to x mensah 933@yahoo.com please", "to xmensah933@yahoo.com please"),
    ("it's begay . farhan at umich dot edu", "it's begay.farhan@umich.edu"),
    ("to shoshana seventeen at att dot net", "to shoshana17@att.net"),
]
KEEP = [  # conversions that must NOT happen
    "I'll be there at one",
    "we'll talk in a second",
    "one of them",
    "dot the i's",
    "meet me at noon",
    "I want one pizza",
    "one or two",
    "one by one",
    "the first time",
    "second place",
    "wait one second",
    "no one, one of them",
    "I have two. Three of them are red.",
    "It's 5. One more thing.",
    "oh my god",
    "Oh, five of them",
    "five. Oh, and bring a coat",
    "oh oh oh",
    "O Henry wrote it",
    "one o'clock",
    "a lot of them",
    "a hundreds of",
    "double check it",
    "I may first want to ask",
    "we march forward",
    "look at google dot com",
    "send it to me at home",
    "I'm at work dot com",
    "meet me at the office dot",
    "number one",
    "# one",
    "4111 1111 1111 1111",
    "my ssn is 123-45-6789",
    "call 555-1212 at 3:30",
    "john.smith@gmail.com",
    "1,000 people and 3.5 percent",
    "the 3rd of March, 1980",
    "the twenty twenties",
    "and and and",
    "hundred",
    "thousand",
    "an hour and a half",
    "",
    "   ",
    "I'm forty",
    "one on one",
    "one-on-one",
    "first-class",
    "it's a two way street",
    "we had five people drive",
    "it's five minutes down the road",
    "to two more people",
    "meet me at the office dot com",
    "I'm at work dot com",
    "the hundred dollar bill",
    "five... five of them",
    "in may, two of us",
]

ALL_CASES = DIGITS + OH + DOUBLE + GROUPED + GROUPS + FILLERS + MIXED + ORDINALS_DATES + EMAILS


def check_map(r: Normalized) -> None:
    """The map is complete, monotone, and copies are byte for byte."""
    segs = r._segments
    if not segs:
        assert r.text == r.original
        return
    assert segs[0][0] == 0 and segs[-1][1] == len(r.text)
    for (_, oe, _, ge, _), (os2, _, gs2, _, _) in itertools.pairwise(segs):
        assert oe == os2 and ge <= gs2
    for os_, oe, gs, ge, copy in segs:
        assert oe > os_ and ge > gs
        if copy:
            assert r.text[os_:oe] == r.original[gs:ge]


@pytest.mark.parametrize(("spoken", "written"), ALL_CASES)
def test_rewrite(spoken: str, written: str) -> None:
    r = normalize(spoken)
    assert r.text == written
    assert r.original == spoken
    check_map(r)
    # The whole text maps back to the whole original.
    assert r.to_original(0, len(r.text)) == (0, len(spoken))


@pytest.mark.parametrize("text", KEEP)
def test_no_false_conversion(text: str) -> None:
    r = normalize(text)
    assert r.text == text
    assert r.to_original(0, len(text)) == (0, len(text))


@pytest.mark.parametrize(("spoken", "written"), [*DIGITS, *GROUPED, *DOUBLE])
def test_rewrite_inside_prose_keeps_the_prose(spoken: str, written: str) -> None:
    before, after = "Well, my  Number is: ", " — OK?  Thanks."
    r = normalize(before + spoken + after)
    assert r.text == before + written + after
    s, e = r.to_original(len(before), len(before) + len(written))
    assert r.original[s:e] == spoken
    assert r.to_original(0, len(before)) == (0, len(before))
    tail = len(r.text) - len(after)
    assert r.original[slice(*r.to_original(tail, len(r.text)))] == after


# (spoken, regex over the written text, original text the first match maps back to)
SPANS = [
    (
        "my social is one two three, four five, six seven eight nine ok",
        r"\d+(?: \d+)*",
        "one two three, four five, six seven eight nine",
    ),
    ("my social is one two three, four five, six seven eight nine ok", r"\d+", "one two three"),
    (
        "my social is one two three, four five, six seven eight nine ok",
        r"6789",
        "six seven eight nine",
    ),
    ("my social is one two three, four five, six seven eight nine ok", r"45", "four five"),
    (
        "card four one um one one, uh, one one one one.",
        r"\d+(?: \d+)*",
        "four one um one one, uh, one one one one",
    ),
    ("card four one um one one, uh, one one one one.", r"4111", "four one um one one"),
    ("born march third nineteen eighty", r"march \d+ \d+", "march third nineteen eighty"),
    ("born march third nineteen eighty", r"\b3\b", "third"),
    ("born march third nineteen eighty", r"1980", "nineteen eighty"),
    ("born march third nineteen eighty", r"19", "nineteen"),
    ("the third of march nineteen eighty", r"3 of march 1980", "third of march nineteen eighty"),
    ("call four fifteen five five five", r"415", "four fifteen"),
    ("call four fifteen five five five", r"5", "fifteen"),
    ("in two thousand and five", r"2005", "two thousand and five"),
    ("in two thousand and five", r"0", "two thousand and five"),
    ("code double five seven", r"55", "double five"),
    ("code double five seven", r"557", "double five seven"),
    ("pin 1 2 three", r"\d+", "1 2 three"),
    ("pin 1 2 three", r"23", "2 three"),
    ("call 415 five five five", r"\d+ \d+", "415 five five five"),
    ("forty second street", r"42nd", "forty second"),
    ("mail john dot smith at gmail dot com now", r"\S+@\S+", "john dot smith at gmail dot com"),
    ("mail john dot smith at gmail dot com now", r"@", " at "),
    ("mail john dot smith at gmail dot com now", r"smith", "smith"),
    ("mail john dot smith at gmail dot com now", r"\.com", " dot com"),
    ("mail john dot smith at gmail dot com now", r"now", "now"),
    ("mail john one two at gmail dot com", r"john12", "john one two"),
    ("mail john one two at gmail dot com", r"12", " one two"),
    # the dropped false start maps with the number; joined local parts map as a whole
    ("card is eight five... eight five oh nine ok", r"\d+", "eight five... eight five oh nine"),
    ("it's four oh two, twenty - twenty four ok", r"\d+ \d+", "four oh two, twenty - twenty four"),
    ("should be c kim at umich dot edu ok", r"\S+@\S+", "c kim at umich dot edu"),
    (
        "to keanu huaman, all one word, at fm dot fm",
        r"\S+@\S+",
        "keanu huaman, all one word, at fm dot fm",
    ),
    ("email julie nineteen fifty seven at aol dot com", r"1957", " nineteen fifty seven"),
    ("it's layla at g mail dot com", r"gmail", "g mail"),
    ("My Name is Ann and my Zip is oh two one three nine.", r"Ann", "Ann"),
    ("My Name is Ann and my Zip is oh two one three nine.", r"\d+", "oh two one three nine"),
    ("My Name is Ann and my Zip is oh two one three nine.", r"\.$", "."),
]


@pytest.mark.parametrize(("spoken", "pattern", "expected"), SPANS)
def test_span_map(spoken: str, pattern: str, expected: str) -> None:
    r = normalize(spoken)
    m = re.search(pattern, r.text)
    assert m is not None, r.text
    s, e = r.to_original(*m.span())
    assert r.original[s:e] == expected


@pytest.mark.parametrize(("spoken", "written"), ALL_CASES)
def test_every_character_maps_inside_the_original(spoken: str, written: str) -> None:
    """Each character of the written text maps to a non-empty original range, ranges follow
    the text's order, and digits map only to number words, digits, or the email they're in."""
    r = normalize(spoken)
    prev = (0, 0)
    for i, ch in enumerate(r.text):
        s, e = r.to_original(i, i + 1)
        assert 0 <= s < e <= len(spoken)
        assert (s, e) >= prev
        prev = (s, e)
        if ch.isdigit():
            assert re.search(r"[0-9]|[a-z]", spoken[s:e], re.I)
        else:
            # A copied character maps to itself.
            if (s, e) == (s, s + 1) and spoken[s] == ch:
                continue
            assert ch in " .@_-+/stndrh"  # separators, symbols, ordinal suffixes


def test_to_original_edges() -> None:
    r = normalize("ab one two cd")
    assert r.text == "ab 12 cd"
    assert r.to_original(0, 0) == (0, 0)
    assert r.to_original(8, 8) == (13, 13)
    assert r.to_original(3, 3) == (3, 3)  # just before "12"
    assert r.to_original(4, 4) == (7, 7)  # between "1" and "2": where "two" starts
    assert r.to_original(3, 4) == (3, 6)
    assert r.to_original(4, 5) == (7, 10)
    assert r.to_original(1, 2) == (1, 2)
    assert r.to_original(6, 8) == (11, 13)
    with pytest.raises(ValueError):
        r.to_original(5, 4)
    with pytest.raises(ValueError):
        r.to_original(0, 9)
    with pytest.raises(ValueError):
        r.to_original(-1, 2)
    same = normalize("nothing to do")
    assert same.text == same.original
    assert same.to_original(3, 7) == (3, 7)


def test_redaction_on_written_text_covers_everything_said() -> None:
    """What a redactor does: find PII in the written form, redact the mapped original spans."""
    said = (
        "hi, um, my social is one two three, four five, six seven eight nine and my card "
        "is four one one one, one one one one, one one one one, one one one one, born "
        "march third nineteen eighty, email john dot smith at gmail dot com"
    )
    r = normalize(said)
    spans = [
        r.to_original(*m.span()) for m in re.finditer(r"\d+(?: \d+)*|march \d+ \d+|\S+@\S+", r.text)
    ]
    redacted = said
    for s, e in sorted(spans, reverse=True):
        redacted = redacted[:s] + "<X>" + redacted[e:]
    assert redacted == ("hi, um, my social is <X> and my card is <X>, born <X>, email <X>")


# Words that are not number words; "a", "and", "oh", "o", "at", "um" and months are in on purpose.
PROSE_WORDS = (
    "the quick brown fox jumps over lazy dog I we you they my your name is John Smith lives on "
    "Main Street and a an oh o at um uh er hello thanks please call me tomorrow next week year "
    "account number card social security March May June July birthday born again yes no okay "
    "sure can't won't it's I'm café naïve Ünïcödé emoji 🙂 hospital doctor appointment phone "
    "email address street avenue road help bank routing pizza office noon evening"
).split()
PUNCT = ["", "", "", ",", ".", "?", "!", ";", ":", " -", "'s", '"', ")"]
SPACES = [" ", " ", " ", "  ", "\t", "\n", " \u00a0"]


def random_prose(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(1, 60)):
        w = rng.choice(PROSE_WORDS)
        w = rng.choice([w, w.lower(), w.upper(), w.capitalize()])
        out.append(w + rng.choice(PUNCT) + rng.choice(SPACES))
    return rng.choice(["", " ", "\n"]) + "".join(out)


def test_random_prose_comes_back_byte_for_byte() -> None:
    rng = random.Random(20240604)
    for _ in range(3000):
        text = random_prose(rng)
        r = normalize(text)
        assert r.text == text, text
        assert r.to_original(0, len(text)) == (0, len(text))


def test_random_prose_around_numbers_is_kept() -> None:
    """Numbers dropped into random prose convert, and the prose around them does not change."""
    rng = random.Random(7)
    for _ in range(1000):
        spoken, written = rng.choice(DIGITS + GROUPED + DOUBLE + FILLERS[:2])
        before, after = random_prose(rng), random_prose(rng)
        # A neutral word at each junction: "oh"/"o" right next to a digit run is a zero, and a
        # month right before it makes a date, both on purpose.
        before = before.rstrip() + " is "
        after = " then " + after.lstrip()
        r = normalize(before + spoken + after)
        assert r.text == before + written + after, (before, spoken, after)
        start = len(before)
        s, e = r.to_original(start, start + len(written))
        assert r.original[s:e] == spoken
