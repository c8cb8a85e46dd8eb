"""Labelled PII evaluation set: caller utterances as speech-to-text renders them, with gold spans.

Written independently of the product's normaliser and recognisers, on purpose: the spoken
variations below (digits as words, "oh", "double five", grouped numbers, fillers, restarts,
punctuation-model commas, lowercase names, spoken emails and dates) come from how callers talk and
how STT engines print it, not from what the redactor happens to handle.

    python -m tests.pii_eval.generate --seed 7 --out tests/pii_eval/utterances.jsonl

Same seed, byte-identical file: only `random.Random(seed)` is used, and nothing iterates a set.
Each line: {"id", "text", "form": "formatted"|"spoken"|"mixed", "spans": [{"type","start","end"}]}.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ENTITY_TYPES = (
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
)
FORMS = ("formatted", "spoken", "mixed")
# Utterances whose main entity is each type; secondary entities in some templates add more.
PER_TYPE = 185
NO_PII = 700
FORM_SHARE = {"formatted": 0.40, "spoken": 0.45, "mixed": 0.15}


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass
class Span:
    type: str
    start: int
    end: int
    value: str = ""  # canonical value (digits for numbers); kept in memory, not written


@dataclass
class Utterance:
    id: str
    text: str
    form: str
    spans: list[Span] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "text": self.text,
                "form": self.form,
                "spans": [{"type": s.type, "start": s.start, "end": s.end} for s in self.spans],
            },
            ensure_ascii=False,
        )


# A rendered piece of an utterance: (text, entity type or None, canonical value).
Piece = tuple[str, str | None, str]


# --------------------------------------------------------------------------------------------
# Spoken numbers, the way STT prints them
# --------------------------------------------------------------------------------------------

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
ORDINALS = (
    "",
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
    "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth",
)
_ORD = ["", *ORDINALS[1].split()]
MONTHS = (
    "January February March April May June July August September October November December"
).split()
MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
FILLERS = ("um", "uh", "umm", "uh", "er", "hmm")


def zero_word(rng: random.Random) -> str:
    return rng.choice(("oh", "oh", "zero"))


def digit_word(d: str, rng: random.Random) -> str:
    return zero_word(rng) if d == "0" else ONES[int(d)]


def number_words(n: int) -> list[str]:
    """Cardinal 0..9999 in plain words ("one hundred twenty three")."""
    if n < 20:
        return [ONES[n]]
    if n < 100:
        return [TENS[n // 10]] + ([ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        rest = number_words(n % 100) if n % 100 else []
        return [ONES[n // 100], "hundred", *rest]
    rest = number_words(n % 1000) if n % 1000 else []
    return [*number_words(n // 1000), "thousand", *rest]


def ordinal_words(n: int) -> list[str]:
    """Ordinal 1..31 in words ("twenty third")."""
    if n <= 20:
        return [_ORD[n]]
    tens, ones = divmod(n, 10)
    if ones == 0:
        return ["thirtieth"] if tens == 3 else ["twentieth"]
    return [TENS[tens], _ORD[ones]]


def ordinal_suffix(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }".replace(" ", "")


def say_digits(group: str, rng: random.Random, runs: float = 0.35) -> list[str]:
    """One word per digit, with "double five" / "triple seven" for repeated digits."""
    out: list[str] = []
    i = 0
    while i < len(group):
        d = group[i]
        run = 1
        while i + run < len(group) and group[i + run] == d:
            run += 1
        if run >= 3 and rng.random() < runs:
            out += ["triple", digit_word(d, rng)]
            i += 3
        elif run >= 2 and rng.random() < runs:
            out += ["double", digit_word(d, rng)]
            i += 2
        else:
            out.append(digit_word(d, rng))
            i += 1
    return out


def say_pair(pair: str, rng: random.Random) -> list[str]:
    """Two digits as one number: "23" -> twenty three, "05" -> oh five, "00" -> double oh."""
    if pair == "00":
        return rng.choice((["double", "oh"], ["oh", "oh"], ["zero", "zero"], ["double", "zero"]))
    if pair[0] == "0":
        return [zero_word(rng), ONES[int(pair[1])]]
    return number_words(int(pair))


def say_grouped(group: str, rng: random.Random) -> list[str]:
    """A digit group read as numbers: "415" four fifteen, "1980" nineteen eighty, "800"
    eight hundred, "5500" fifty five hundred, "2000" two thousand."""
    n = len(group)
    if n == 1:
        return [digit_word(group, rng)]
    if n == 2:
        return say_pair(group, rng)
    if n == 3:
        if group[0] == "0":
            return [zero_word(rng), *say_pair(group[1:], rng)]
        if group[1:] == "00":
            return [ONES[int(group[0])], "hundred"]
        if rng.random() < 0.15:
            return number_words(int(group))  # "four hundred fifteen"
        return [ONES[int(group[0])], *say_pair(group[1:], rng)]  # "four fifteen"
    if n == 4:
        if group[0] == "0":
            return [zero_word(rng), *say_grouped(group[1:], rng)]
        if group[1:] == "000":
            return [ONES[int(group[0])], "thousand"]
        if group[2:] == "00":
            return [*say_pair(group[:2], rng), "hundred"]
        return [*say_pair(group[:2], rng), *say_pair(group[2:], rng)]  # "twelve thirty four"
    # Longer groups: cut into pieces of 2-3 ("sixty three, four seventy five") and read each.
    out: list[str] = []
    i = 0
    while i < n:
        left = n - i
        size = left if left <= 3 else (2 if left == 4 else rng.choice((2, 2, 3)))
        out += say_grouped(group[i : i + size], rng)
        i += size
    return out


def split_run(digits: str, rng: random.Random, sizes: tuple[int, ...] = (3, 4)) -> list[str]:
    """Cut an ungrouped digit run (bank account, MRN) the way a caller chunks it."""
    out: list[str] = []
    i = 0
    while i < len(digits):
        left = len(digits) - i
        size = left if left <= max(sizes) + 1 else rng.choice(sizes)
        out.append(digits[i : i + size])
        i += size
    return out


def _joiner(rng: random.Random, style: str) -> str:
    if style == "mixed":
        style = rng.choice(("space", "space", "comma", "period"))
    return {"space": " ", "comma": ", ", "period": ". "}[style]


def speak_number(groups: list[str], rng: random.Random) -> str:
    """A digit string spoken as STT prints it: words, grouped numbers, "oh", double/triple,
    punctuation-model commas and periods, fillers and restarts."""
    mode = rng.choices(("digits", "grouped", "varied"), weights=(50, 20, 30))[0]
    said: list[list[str]] = []
    for g in groups:
        grouped = mode == "grouped" or (mode == "varied" and rng.random() < 0.5)
        said.append(say_grouped(g, rng) if grouped else say_digits(g, rng))
    # A restart: the caller begins a group, stops, says it whole ("five five... five five five").
    if rng.random() < 0.07:
        k = rng.randrange(len(said))
        if len(said[k]) >= 2:
            cut = rng.randrange(1, len(said[k]))
            stop = rng.choice(("...", ",", " -", "..."))
            said[k] = [*said[k][:cut], stop, *said[k]]
    # A filler inside the number.
    if rng.random() < 0.15:
        k = rng.randrange(len(said))
        pos = rng.randrange(len(said[k]) + 1)
        said[k] = [*said[k][:pos], rng.choice(("um", "uh", "umm", "uh,")), *said[k][pos:]]
    # A punctuation-model comma in the middle of a group.
    if rng.random() < 0.08:
        k = rng.randrange(len(said))
        if len(said[k]) >= 2:
            pos = rng.randrange(1, len(said[k]))
            said[k][pos - 1] = said[k][pos - 1] + ","
    style = rng.choices(("space", "comma", "period", "mixed"), weights=(40, 30, 10, 20))[0]
    text = ""
    for i, words in enumerate(said):
        part = " ".join(words).replace(" ...", "...").replace(" ,", ",")
        text += part if i == 0 else _joiner(rng, style) + part
    return _tidy(text)


def mixed_number(groups: list[str], rng: random.Random, seps: tuple[str, ...]) -> str:
    """Digits mixed with words ("1 2 three", "415 five five five 0123")."""
    parts: list[str] = []
    for g in groups:
        how = rng.choice(("digits", "spaced", "words", "per_digit", "per_digit"))
        if how == "digits":
            parts.append(g)
        elif how == "spaced":
            parts.append(" ".join(g))
        elif how == "words":
            parts.append(
                " ".join(say_digits(g, rng) if rng.random() < 0.7 else say_grouped(g, rng))
            )
        else:
            parts.append(" ".join(d if rng.random() < 0.5 else digit_word(d, rng) for d in g))
    text = ""
    sep = rng.choice(seps)
    for i, p in enumerate(parts):
        text += p if i == 0 else sep + p
    has_digit = any(c.isdigit() for c in text)
    has_word = any(c.isalpha() for c in text)
    if not (has_digit and has_word):  # force the mix
        k = rng.randrange(len(groups))
        if has_digit:
            parts[k] = " ".join(say_digits(groups[k], rng))
        else:
            parts[k] = groups[k]
        text = sep.join(parts)
    return _tidy(text)


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = text.replace(",,", ",").replace(", ,", ",").replace(",.", ".").replace(".,", ".")
    return text.strip(" ,.-")


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


def luhn_check_digit(partial: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return number.isdigit() and luhn_check_digit(number[:-1]) == number[-1]


def aba_valid(number: str) -> bool:
    if len(number) != 9 or not number.isdigit():
        return False
    d = [int(c) for c in number]
    total = 3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8])
    return total % 10 == 0


def rand_digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def make_ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"


def make_card(rng: random.Random) -> tuple[str, str]:
    brand = rng.choices(("visa", "mastercard", "amex", "discover"), weights=(40, 30, 15, 15))[0]
    if brand == "visa":
        prefix, length = "4", 16
    elif brand == "mastercard":
        prefix = str(rng.randint(51, 55)) if rng.random() < 0.75 else str(rng.randint(2221, 2720))
        length = 16
    elif brand == "amex":
        prefix, length = rng.choice(("34", "37")), 15
    else:
        prefix, length = rng.choice(("6011", "65", str(rng.randint(644, 649)))), 16
    body = prefix + rand_digits(rng, length - len(prefix) - 1)
    return brand, body + luhn_check_digit(body)


def card_groups(number: str) -> list[str]:
    if len(number) == 15:
        return [number[:4], number[4:10], number[10:]]
    return [number[i : i + 4] for i in range(0, 16, 4)]


def make_phone(rng: random.Random) -> str:
    if rng.random() < 0.1:
        area = rng.choice(("800", "888", "877", "866", "855"))
    else:
        area = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}"
        if area[1:] == "11":
            area = area[0] + "12"
    exchange = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}"
    if exchange[1:] == "11":
        exchange = exchange[0] + "21"
    line = f"{rng.randint(0, 9999):04d}"
    return area + exchange + line


def make_aba(rng: random.Random) -> str:
    first = rng.choice([*range(1, 13), *range(21, 33), *range(61, 73), 80])
    body = f"{first:02d}" + rand_digits(rng, 6)
    d = [int(c) for c in body]
    partial = 3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5])
    return body + str((10 - partial % 10) % 10)


def make_bank(rng: random.Random) -> str:
    length = rng.choice((8, 9, 10, 10, 11, 12, 12, 13, 14, 15, 16, 17))
    return str(rng.randint(1, 9)) + rand_digits(rng, length - 1)


def make_mrn(rng: random.Random) -> str:
    return str(rng.randint(1, 9)) + rand_digits(rng, rng.choice((7, 7, 8, 8, 9, 10)) - 1)


# --------------------------------------------------------------------------------------------
# Names (our own lists: common US names plus a good share of less common and diverse ones)
# --------------------------------------------------------------------------------------------

FIRST_NAMES = """
James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard
Susan Joseph Jessica Thomas Sarah Christopher Karen Charles Lisa Daniel Nancy Matthew Betty
Anthony Sandra Mark Margaret Donald Ashley Steven Kimberly Andrew Emily Paul Donna Joshua Michelle
Kenneth Carol Kevin Amanda Brian Melissa Timothy Deborah Ronald Stephanie Jason Rebecca George
Laura Edward Helen Jeffrey Sharon Ryan Cynthia Jacob Kathleen Gary Amy Nicholas Angela Eric Anna
Jonathan Brenda Larry Emma Justin Olivia Scott Pamela Brandon Nicole Benjamin Samantha Gregory
Katherine Frank Christine Raymond Debra Alexander Rachel Patrick Carolyn Jack Janet Dennis Maria
Tyler Heather Aaron Diane Jose Julie Henry Joyce Adam Victoria Douglas Kelly Nathan Christina
Aaliyah Oluwaseun Siobhan Xiomara Thandiwe Priya Wei Jae-won Mateo Giovanni Yusuf Fatima Anh
Kwame Chidi Ngozi Ravi Ananya Santiago Ximena Bao Hiroshi Keanu Leilani Ayasha Dakota Imani
Deshawn Latoya Tremaine Shaniqua Jamal Ebony Guadalupe Yesenia Esperanza Alejandro Joaquin
Consuelo Nguyet Thuy Minh Huong Sung-min Ji-woo Haruto Sakura Arjun Deepika Lakshmi Venkat
Oksana Dmitri Svetlana Bogdan Agnieszka Wojciech Siddharth Nilufar Farhan Ayodele Chiamaka
Makoa Kalani Tallulah Niamh Saoirse Eoghan Caoimhe Aoife Tadhg Zeynep Emre Mehmet Ingrid Soren
Bjorn Astrid Ignacio Renata Thiago Marisol Kofi Abena Yaw Zainab Omar Layla Khalid Amara Tenzin
Dorje Kiri Tane Ahanu Winona Shoshana Yitzhak Mordecai Anneliese Leopold Ottilie Evander Rosalind
""".split()

LAST_NAMES = """
Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez
Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark
Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams
Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker
Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper
Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James
Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster
Okafor Oyelaran Abernathy Kowalski Papadopoulos O'Brien McAllister Tran Gupta Park Chen Haddad
Yilmaz Ivanova Nakamura Begay Yazzie Kealoha Nwachukwu Adeyemi Mensah Owusu Achterberg Van Dyke
Szczepanski Wojcik Przybylski Grigoryan Petrosyan Hovhannisyan Abdullahi Mohammed Al-Sayed
Rahman Chowdhury Bhattacharya Venkataraman Subramanian Krishnamurthy Raghunathan Takahashi
Watanabe Yamamoto Tanaka Kobayashi Nishimura Pham Vo Huynh Dang Bui Truong Lim Tan Ong Goh
Kaur Singh Dhillon Sandhu Grewal Fitzgerald Gallagher Donnelly Ni Bhriain Featherstonehaugh
Delacroix Beaumont Thibodeaux Boudreaux Fontenot Guidry Landry Hebert Zamora Villanueva Espinoza
Quispe Mamani Huaman Tsosie Etsitty Manuelito Kahananui Akana Mahoe Ferreira Goncalves Esposito
Romano Russo Bianchi Lindqvist Johansson Haugen Eriksen Okonkwo Eze Balogun Osei Boateng
""".split()

# Names that are also ordinary English words: the redactor must use context for them.
WORD_NAMES = ("Will", "May", "Bill", "Rose", "Mark", "Grant", "Hope", "Faith", "June", "Frank")

STREET_NAMES = """
Elm Oak Maple Main Pine Cedar Washington Lincoln Park Lake Hill Sunset Highland Jefferson
Magnolia Peachtree Juniper Willow Creek Chestnut Spruce Walnut Birch Sycamore Cypress Madison
Franklin Jackson Adams Monroe Church River Meadow Forest Valley Ridge Spring Prospect Orchard
Kamehameha Alvarado Guadalupe Chavez Tecumseh Shoshone Wabash Kearny Ocotillo Mesquite Saguaro
Delancey Bleecker Lombard Market Mission Valencia Broadway Dolores Fulton Halsted Ashland
""".split()
MULTIWORD_STREETS = (
    "Martin Luther King Jr",
    "Ocean View",
    "Cherry Blossom",
    "Old Mill",
    "Willow Creek",
    "Saint Charles",
    "Indian Hill",
    "Fox Run",
    "Quail Hollow",
    "Stone Bridge",
)
SUFFIXES = (
    ("Street", "St"),
    ("Avenue", "Ave"),
    ("Road", "Rd"),
    ("Boulevard", "Blvd"),
    ("Lane", "Ln"),
    ("Drive", "Dr"),
    ("Court", "Ct"),
    ("Way", "Way"),
    ("Place", "Pl"),
    ("Terrace", "Ter"),
    ("Circle", "Cir"),
    ("Parkway", "Pkwy"),
    ("Highway", "Hwy"),
    ("Trail", "Trl"),
)
DIRECTIONS = (("North", "N"), ("South", "S"), ("East", "E"), ("West", "W"), ("Northwest", "NW"))
CITIES = (
    ("Springfield", "IL", "Illinois"),
    ("Austin", "TX", "Texas"),
    ("Portland", "OR", "Oregon"),
    ("Columbus", "OH", "Ohio"),
    ("Sacramento", "CA", "California"),
    ("Tucson", "AZ", "Arizona"),
    ("Albany", "NY", "New York"),
    ("Savannah", "GA", "Georgia"),
    ("Boise", "ID", "Idaho"),
    ("Duluth", "MN", "Minnesota"),
    ("Hilo", "HI", "Hawaii"),
    ("Gallup", "NM", "New Mexico"),
    ("Lafayette", "LA", "Louisiana"),
    ("Burlington", "VT", "Vermont"),
    ("Fargo", "ND", "North Dakota"),
    ("Tacoma", "WA", "Washington"),
    ("Dayton", "OH", "Ohio"),
    ("Newark", "NJ", "New Jersey"),
    ("Lexington", "KY", "Kentucky"),
    ("Anchorage", "AK", "Alaska"),
)
EMAIL_DOMAINS = (
    "gmail.com",
    "gmail.com",
    "gmail.com",
    "yahoo.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "icloud.com",
    "aol.com",
    "protonmail.com",
    "comcast.net",
    "att.net",
    "verizon.net",
    "mail.com",
    "umich.edu",
    "acme-corp.com",
    "fastmail.fm",
)


def _name_word(name: str) -> str:
    return name.replace("'", "").replace("-", "").lower()


# --------------------------------------------------------------------------------------------
# Entity renderers: (rng, form) -> list of pieces (text, type or None, value)
# --------------------------------------------------------------------------------------------


def render_ssn(rng: random.Random, form: str) -> list[Piece]:
    v = make_ssn(rng)
    groups = [v[:3], v[3:5], v[5:]]
    if form == "formatted":
        text = rng.choices(
            (f"{groups[0]}-{groups[1]}-{groups[2]}", " ".join(groups), v), weights=(70, 20, 10)
        )[0]
    elif form == "spoken":
        text = speak_number(groups, rng)
    else:
        text = mixed_number(groups, rng, (" ", "-", ", "))
    return [(text, "US_SSN", v)]


def render_card(rng: random.Random, form: str) -> list[Piece]:
    _, v = make_card(rng)
    groups = card_groups(v)
    if form == "formatted":
        text = rng.choices((" ".join(groups), "-".join(groups), v), weights=(60, 25, 15))[0]
    elif form == "spoken":
        text = speak_number(groups, rng)
    else:
        text = mixed_number(groups, rng, (" ", ", ", "-"))
    return [(text, "CREDIT_CARD", v)]


def render_phone(rng: random.Random, form: str) -> list[Piece]:
    v = make_phone(rng)
    a, e, line = v[:3], v[3:6], v[6:]
    lead = rng.random() < 0.15 or (a.startswith("8") and a[1] == a[2] and rng.random() < 0.6)
    if form == "formatted":
        text = rng.choice(
            (
                f"({a}) {e}-{line}",
                f"({a}) {e}-{line}",
                f"{a}-{e}-{line}",
                f"{a}.{e}.{line}",
                f"{a} {e} {line}",
                f"{a}{e}{line}",
            )
        )
        if lead:
            text = rng.choice((f"+1 {a}-{e}-{line}", f"1-{a}-{e}-{line}", f"+1{v}"))
    elif form == "spoken":
        text = speak_number([a, e, line], rng)
        if rng.random() < 0.1:
            text = "area code " + text
        if lead:
            text = rng.choice(("one ", "one, ", "plus one ")) + text
    else:
        text = mixed_number([a, e, line], rng, (" ", "-", ", "))
        if lead:
            text = rng.choice(("1 ", "one ", "+1 ")) + text
    value = ("1" if lead else "") + v
    return [(text, "PHONE_NUMBER", value)]


def _email_parts(rng: random.Random) -> tuple[list[tuple[str, str]], str]:
    """Local part as a list of (kind, text): name, initial, sep, digits."""
    first = _name_word(rng.choice(FIRST_NAMES))
    last = _name_word(rng.choice(LAST_NAMES))
    num = str(rng.choice((rng.randint(1, 99), rng.randint(1950, 2010), rng.randint(100, 999))))
    shape = rng.choice(
        (
            "first.last",
            "first.last",
            "flast",
            "flastNN",
            "first_last",
            "firstNN",
            "first-last",
            "firstlast",
            "last.first",
            "f_lastNN",
            "first.l",
        )
    )
    parts: list[tuple[str, str]] = []
    tokens = re.findall(r"first|last|f|l|NN|[._-]", shape)
    for t in tokens:
        parts.append(
            {
                "first": ("name", first),
                "last": ("name", last),
                "f": ("initial", first[0]),
                "l": ("initial", last[0]),
                "NN": ("digits", num),
                ".": ("sep", "."),
                "_": ("sep", "_"),
                "-": ("sep", "-"),
            }[t]
        )
    return parts, rng.choice(EMAIL_DOMAINS)


SEP_WORDS = {".": ("dot", "dot", "period"), "_": ("underscore",), "-": ("dash", "hyphen")}


def _say_domain(domain: str, rng: random.Random, spoken: bool) -> str:
    if not spoken:
        return domain
    labels = domain.split(".")
    said = []
    for lab in labels:
        if lab == "gmail" and rng.random() < 0.2:
            said.append("g mail")
        elif "-" in lab:
            said.append(lab.replace("-", " dash "))
        else:
            said.append(lab)
    return " dot ".join(said)


def render_email(rng: random.Random, form: str) -> list[Piece]:
    parts, domain = _email_parts(rng)
    value = "".join(t for _, t in parts) + "@" + domain
    if form == "formatted":
        return [(value, "EMAIL_ADDRESS", value)]
    spoken = form == "spoken"
    words: list[str] = []
    for kind, t in parts:
        if kind == "sep":
            words.append(rng.choice(SEP_WORDS[t]) if spoken or rng.random() < 0.5 else t)
        elif kind == "digits":
            if spoken:
                words.append(
                    " ".join(say_grouped(t, rng) if rng.random() < 0.5 else say_digits(t, rng))
                )
            else:
                words.append(t)
        elif kind == "name" and spoken and len(t) <= 6 and rng.random() < 0.12:
            words.append(" ".join(t))  # spelled out: "j o h n"
        else:
            words.append(t)
    local = " ".join(words)
    if not spoken:
        # Mixed: some separators glued, some spoken.
        local = re.sub(r" ?([._-]) ?", r"\1", local) if rng.random() < 0.5 else local
    if spoken and rng.random() < 0.05 and len(parts) > 1:
        local += rng.choice((", all one word,", " all one word"))
    at = " at " if spoken or rng.random() < 0.6 else "@"
    dom = _say_domain(domain, rng, spoken or rng.random() < 0.5)
    text = _tidy(local + at + dom) if at == " at " else local + at + dom
    return [(text, "EMAIL_ADDRESS", value)]


def _spoken_year(year: int, rng: random.Random) -> str:
    if year >= 2000:
        rest = year - 2000
        if rest == 0:
            return "two thousand"
        options = [
            "two thousand " + " ".join(number_words(rest)),
            "two thousand and " + " ".join(number_words(rest)),
        ]
        options.append("twenty " + (" ".join(say_pair(f"{rest:02d}", rng))))
        return rng.choice(options)
    hi, lo = divmod(year, 100)
    if lo == 0:
        return " ".join(number_words(hi)) + " hundred"
    lo_words = " ".join(say_pair(f"{lo:02d}", rng)) if lo >= 10 else zero_word(rng) + " " + ONES[lo]
    return " ".join(number_words(hi)) + " " + lo_words


def render_dob(rng: random.Random, form: str) -> list[Piece]:
    year = rng.randint(1932, 2008)
    month = rng.randint(1, 12)
    day = rng.randint(1, 28 if month == 2 else 30)
    value = f"{year:04d}-{month:02d}-{day:02d}"
    mname = MONTHS[month - 1]
    if form == "formatted":
        text = rng.choice(
            (
                f"{month:02d}/{day:02d}/{year}",
                f"{month}/{day}/{year}",
                f"{month}/{day}/{year % 100:02d}",
                f"{mname} {day}, {year}",
                f"{mname} {day}, {year}",
                f"{mname} {ordinal_suffix(day)}, {year}",
                f"{ordinal_suffix(day)} of {mname} {year}",
                f"{year}-{month:02d}-{day:02d}",
                f"{MONTH_ABBR[month - 1]} {day} {year}",
                f"{month}-{day}-{year}",
            )
        )
    elif form == "spoken":
        m = mname.lower()
        y = _spoken_year(year, rng)
        if rng.random() < 0.25 and year < 2000:
            y = " ".join(say_pair(f"{year % 100:02d}", rng))  # "march third eighty"
        d_ord = " ".join(ordinal_words(day))
        d_card = " ".join(number_words(day))
        choice = rng.choices(range(6), weights=(35, 15, 12, 12, 10, 16))[0]
        if choice == 0:
            text = f"{m} {d_ord} {y}"
        elif choice == 1:
            text = f"{m} {d_ord}, {y}"
        elif choice == 2:
            text = f"the {d_ord} of {m} {y}"
        elif choice == 3:
            text = f"{m} {d_card} {y}"
        elif choice == 4:
            text = f"{d_ord} of {m}, {y}"
        else:
            # numeric date read out: "oh three, oh three, nineteen eighty"
            mm = " ".join(say_pair(f"{month:02d}", rng)) if month < 10 else ONES[month]
            dd = " ".join(say_pair(f"{day:02d}", rng)) if day < 10 else " ".join(number_words(day))
            if rng.random() < 0.4:
                mm, dd = ONES[month] if month < 20 else mm, " ".join(number_words(day))
            sep = rng.choice((" ", ", ", " slash "))
            text = f"{mm}{sep}{dd}{sep}{y}"
    else:
        m = rng.choice((mname, mname.lower()))
        text = rng.choice(
            (
                f"{m} {ordinal_suffix(day)} {year}",
                f"{m} {' '.join(ordinal_words(day))} {year}",
                f"{month}/{day} {_spoken_year(year, rng)}",
                f"{m} {day}, {_spoken_year(year, rng)}",
                f"{m} {day} {year}",
                f"the {ordinal_suffix(day)} of {m} {_spoken_year(year, rng)}",
            )
        )
    return [(text, "DATE_OF_BIRTH", value)]


def _house_number(rng: random.Random) -> str:
    digits = rng.choices((1, 2, 3, 4, 5), weights=(5, 15, 30, 40, 10))[0]
    return str(rng.randint(1 if digits == 1 else 10 ** (digits - 1), 10**digits - 1))


def _say_house(num: str, rng: random.Random) -> str:
    n = len(num)
    if n <= 2:
        return " ".join(number_words(int(num)))
    options = [" ".join(say_grouped(num, rng)), " ".join(say_digits(num, rng, runs=0.1))]
    if n == 3:
        options.append(" ".join(number_words(int(num))))
        options.append(" ".join(number_words(int(num))).replace("hundred ", "hundred and ", 1))
    if n == 5:
        options.append(" ".join([ONES[int(num[0])], *say_grouped(num[1:], rng)]))
    return rng.choices(options, weights=[50, 30] + [10] * (len(options) - 2))[0]


def _street_name(rng: random.Random) -> tuple[str, str]:
    """(formatted, spoken) street name without suffix."""
    r = rng.random()
    if r < 0.12:
        n = rng.randint(1, 125)
        return ordinal_suffix(n), _ordinal_words_any(n)
    if r < 0.25:
        name = rng.choice(MULTIWORD_STREETS)
        return name, name.lower().replace("jr", "junior" if rng.random() < 0.5 else "jr")
    name = rng.choice(STREET_NAMES)
    return name, name.lower()


def _ordinal_words_any(n: int) -> str:
    if n <= 31:
        return " ".join(ordinal_words(n))
    hundreds, rest = divmod(n, 100)
    head = [ONES[hundreds], "hundred"] if hundreds else []
    if rest == 0:
        return " ".join([*head[:-1], "hundredth"])
    if rest <= 20 or rest % 10 == 0:
        tail = _ORD[rest] if rest <= 20 else TENS[rest // 10][:-1] + "ieth"
        return " ".join([*head, tail])
    return " ".join([*head, TENS[rest // 10], _ORD[rest % 10]])


def render_address(rng: random.Random, form: str) -> list[Piece]:
    num = _house_number(rng)
    street_f, street_s = _street_name(rng)
    suffix_full, suffix_abbr = rng.choice(SUFFIXES)
    direction = rng.choice(DIRECTIONS) if rng.random() < 0.15 else None
    unit = None
    if rng.random() < 0.3:
        kind = rng.choice(("Apt", "Apartment", "Unit", "Suite", "#"))
        unit_num = str(rng.randint(1, 40)) + (rng.choice("ABCD") if rng.random() < 0.3 else "")
        if kind == "Suite":
            unit_num = str(rng.randint(1, 9) * 100 + rng.randint(0, 20))
        unit = (kind, unit_num)
    city = rng.choice(CITIES) if rng.random() < 0.35 else None
    zip_code = f"{rng.randint(1000, 99950):05d}"
    if form == "formatted":
        suffix = suffix_full if rng.random() < 0.6 else suffix_abbr + rng.choice(("", "."))
        d = "" if direction is None else rng.choice(direction) + " "
        text = f"{num} {d}{street_f} {suffix}"
        if unit:
            text += (", " if rng.random() < 0.5 else " ") + (
                f"#{unit[1]}" if unit[0] == "#" else f"{unit[0]} {unit[1]}"
            )
        if city:
            text += f", {city[0]}, {city[1]} {zip_code}"
    else:
        spoken = form == "spoken"
        house = _say_house(num, rng) if spoken or rng.random() < 0.5 else num
        suffix = suffix_full.lower() if spoken or rng.random() < 0.7 else suffix_abbr
        d = "" if direction is None else direction[0].lower() + " "
        sname = street_s if spoken else (street_f if rng.random() < 0.5 else street_s)
        text = f"{house} {d}{sname} {suffix}"
        if unit:
            kind = {"#": "number", "Apt": "apartment"}.get(unit[0], unit[0].lower())
            u = unit[1]
            if spoken:
                digits = "".join(c for c in u if c.isdigit())
                letters = "".join(c for c in u if c.isalpha()).lower()
                u = " ".join(say_grouped(digits, rng)) + (f" {letters}" if letters else "")
            text += rng.choice((" ", ", ")) + f"{kind} {u}"
        if city:
            zipped = " ".join(say_digits(zip_code, rng, runs=0.1)) if spoken else zip_code
            state = city[2].lower() if spoken else rng.choice((city[1], city[2]))
            cname = city[0].lower() if spoken else city[0]
            text += rng.choice((" ", ", ")) + f"{cname} {state} {zipped}"
    value = f"{num} {street_f} {suffix_full}"
    return [(text, "STREET_ADDRESS", value)]


def render_bank(rng: random.Random, form: str) -> list[Piece]:
    v = make_bank(rng)
    groups = split_run(v, rng)
    if form == "formatted":
        text = v if rng.random() < 0.8 else rng.choice(("-", " ")).join(groups)
    elif form == "spoken":
        text = speak_number(groups, rng)
    else:
        text = mixed_number(groups, rng, (" ", ", "))
    return [(text, "US_BANK_NUMBER", v)]


def render_aba(rng: random.Random, form: str) -> list[Piece]:
    v = make_aba(rng)
    groups = rng.choice(([v[:3], v[3:6], v[6:]], [v[:4], v[4:8], v[8:]], [v]))
    if form == "formatted":
        text = v if rng.random() < 0.85 else " ".join([v[:3], v[3:6], v[6:]])
    elif form == "spoken":
        text = speak_number(groups if len(groups) > 1 else [v[:3], v[3:6], v[6:]], rng)
    else:
        text = mixed_number([v[:3], v[3:6], v[6:]], rng, (" ", ", "))
    return [(text, "ABA_ROUTING_NUMBER", v)]


def render_mrn(rng: random.Random, form: str) -> list[Piece]:
    v = make_mrn(rng)
    groups = split_run(v, rng)
    if form == "formatted":
        text = rng.choices((f"MRN-{v}", f"MRN{v}", v, "-".join(groups)), weights=(30, 5, 55, 10))[0]
    elif form == "spoken":
        text = speak_number(groups, rng)
    else:
        text = mixed_number(groups, rng, (" ", ", "))
    return [(text, "MEDICAL_RECORD_NUMBER", v)]


def _person_name(rng: random.Random) -> tuple[str, str]:
    first = rng.choice(WORD_NAMES) if rng.random() < 0.05 else rng.choice(FIRST_NAMES)
    return first, rng.choice(LAST_NAMES)


def _case_name(name: str, form: str, rng: random.Random) -> str:
    if form == "formatted":
        return name
    if form == "spoken":
        return name.lower()
    return name if rng.random() < 0.5 else name.lower()


def render_person(rng: random.Random, form: str) -> list[Piece]:
    first, last = _person_name(rng)
    shape = rng.choices(("full", "first", "middle", "last"), weights=(70, 12, 8, 10))[0]
    if shape == "full":
        f, la = _case_name(first, form, rng), _case_name(last, form, rng)
        text = f"{f} {la}"
    elif shape == "first":
        text = _case_name(first, form, rng)
    elif shape == "middle":
        middle = rng.choice("ABCDEFGHJKLMNPRSTW")
        mid = f"{middle}." if form == "formatted" else middle.lower()
        text = f"{_case_name(first, form, rng)} {mid} {_case_name(last, form, rng)}"
    else:
        text = _case_name(last, form, rng)
    return [(text, "PERSON", f"{first} {last}")]


def render_spelled_last(rng: random.Random, form: str) -> list[Piece]:
    """A surname said, then spelled letter by letter: both are the name."""
    last = rng.choice([n for n in LAST_NAMES if n.isalpha() and 4 <= len(n) <= 9])
    said = _case_name(last, form, rng)
    letters = " ".join(last.lower()) if form != "formatted" else "-".join(last.upper())
    glue = rng.choice((", ", ", that's ", " spelled "))
    return [(said, "PERSON", last), (glue, None, ""), (letters, "PERSON", last)]


RENDERERS: dict[str, Callable[[random.Random, str], list[Piece]]] = {
    "US_SSN": render_ssn,
    "CREDIT_CARD": render_card,
    "PHONE_NUMBER": render_phone,
    "EMAIL_ADDRESS": render_email,
    "DATE_OF_BIRTH": render_dob,
    "STREET_ADDRESS": render_address,
    "US_BANK_NUMBER": render_bank,
    "ABA_ROUTING_NUMBER": render_aba,
    "MEDICAL_RECORD_NUMBER": render_mrn,
    "PERSON": render_person,
    "PERSON_SPELLED": render_spelled_last,
}
SLOT_TYPES = {
    "SSN": "US_SSN",
    "CARD": "CREDIT_CARD",
    "PHONE": "PHONE_NUMBER",
    "EMAIL": "EMAIL_ADDRESS",
    "DOB": "DATE_OF_BIRTH",
    "ADDRESS": "STREET_ADDRESS",
    "BANK": "US_BANK_NUMBER",
    "ABA": "ABA_ROUTING_NUMBER",
    "MRN": "MEDICAL_RECORD_NUMBER",
    "NAME": "PERSON",
    "SPELLED": "PERSON_SPELLED",
}


# --------------------------------------------------------------------------------------------
# Carrier sentences. Written lowercase, the way STT prints speech; the formatted form gets
# sentence case and acronyms. {SLOT} marks an entity.
# --------------------------------------------------------------------------------------------

TEMPLATES: dict[str, tuple[str, ...]] = {
    "US_SSN": (
        "my social is {SSN}",
        "my social security number is {SSN}",
        "social security number {SSN}",
        "my ssn is {SSN}",
        "ssn {SSN}",
        "sure, it's {SSN}",
        "the social is {SSN} i think",
        "okay my social security is {SSN}",
        "you need my social? it's {SSN}",
        "last name {NAME}, social {SSN}",
        "{SSN} is my social security number",
        "my husband's social is {SSN}",
        "for verification my ssn is {SSN}, is that enough",
    ),
    "CREDIT_CARD": (
        "my card number is {CARD}",
        "it's a visa, {CARD}",
        "card number {CARD}",
        "charge it to {CARD}",
        "the credit card number is {CARD}",
        "the number on the card is {CARD}",
        "i'll pay with my amex {CARD}",
        "mastercard {CARD} expiring next year",
        "okay the card is {CARD}",
        "use the card ending, actually the whole number is {CARD}",
        "name on the card is {NAME} and the number is {CARD}",
        "my debit card number {CARD}",
        "{CARD} is the card",
    ),
    "PHONE_NUMBER": (
        "you can reach me at {PHONE}",
        "my number is {PHONE}",
        "call me back at {PHONE}",
        "my cell is {PHONE}",
        "phone number {PHONE}",
        "text me at {PHONE} please",
        "the best number is {PHONE}",
        "my work phone is {PHONE}, extension doesn't matter",
        "it's {PHONE}",
        "this is {NAME}, my number is {PHONE}",
        "{PHONE} is my cell",
        "my daughter's number is {PHONE} if you can't reach me",
    ),
    "EMAIL_ADDRESS": (
        "my email is {EMAIL}",
        "email address {EMAIL}",
        "send it to {EMAIL}",
        "you can email me at {EMAIL}",
        "it's {EMAIL}",
        "the email on file should be {EMAIL}",
        "my email address is {EMAIL} thanks",
        "can you send the receipt to {EMAIL}",
        "i'm {NAME}, email {EMAIL}",
        "{EMAIL} is my email",
        "update my email to {EMAIL} please",
    ),
    "DATE_OF_BIRTH": (
        "i was born on {DOB}",
        "my date of birth is {DOB}",
        "date of birth {DOB}",
        "dob {DOB}",
        "born {DOB}",
        "my birthday is {DOB}",
        "my birth date is {DOB}",
        "he was born {DOB}",
        "date of birth, {DOB}",
        "my name is {NAME} and i was born {DOB}",
        "the patient's date of birth is {DOB}",
        "my dob is {DOB}",
        "i was born {DOB} in ohio",
        "birthday {DOB}",
    ),
    "STREET_ADDRESS": (
        "i live at {ADDRESS}",
        "my address is {ADDRESS}",
        "ship it to {ADDRESS}",
        "the billing address is {ADDRESS}",
        "send the card to {ADDRESS}",
        "i just moved to {ADDRESS}",
        "it's {ADDRESS}",
        "mailing address {ADDRESS}",
        "{NAME} at {ADDRESS}",
        "my old address was {ADDRESS}",
        "deliver it to {ADDRESS} please",
        "the house is at {ADDRESS}",
    ),
    "US_BANK_NUMBER": (
        "my account number is {BANK}",
        "account number {BANK}",
        "the checking account number is {BANK}",
        "the account number, {BANK}",
        "savings account number {BANK}",
        "my bank account number is {BANK}",
        "routing {ABA} and the account number is {BANK}",
        "account number is {BANK} at chase",
        "deposit it into account number {BANK}",
        "my account number, um, {BANK}",
    ),
    "ABA_ROUTING_NUMBER": (
        "the routing number is {ABA}",
        "routing number {ABA}",
        "routing {ABA}",
        "aba routing number {ABA}",
        "my bank's routing number is {ABA}",
        "the routing number on my check is {ABA}",
        "routing number {ABA}, account number {BANK}",
        "it's routing {ABA}",
        "for direct deposit the routing is {ABA}",
        "routing and transit number {ABA}",
    ),
    "MEDICAL_RECORD_NUMBER": (
        "my medical record number is {MRN}",
        "medical record number {MRN}",
        "mrn {MRN}",
        "my mrn is {MRN}",
        "patient id {MRN}",
        "the patient id is {MRN}",
        "patient id number {MRN}",
        "her medical record number is {MRN}",
        "the patient is {NAME}, mrn {MRN}",
        "medical record {MRN}",
        "my patient id, {MRN}",
    ),
    "PERSON": (
        "my name is {NAME}",
        "this is {NAME} calling",
        "hi, it's {NAME}",
        "i'm {NAME}",
        "the account is under {NAME}",
        "you can put it under {NAME}",
        "{NAME} speaking",
        "my wife {NAME} handles the bills",
        "can i speak to someone about my father {NAME}",
        "the appointment is for {NAME}",
        "my last name is {SPELLED}",
        "name's {NAME}",
        "i'm calling for my mother, {NAME}",
        "yes, this is {NAME}",
        "it's under my husband's name, {NAME}",
        "please tell {NAME} i called",
    ),
}

# No PII at all, but traps: relative times, non-PII numbers, the bot's own vocabulary, words
# that are also names, street-like phrases without a house number, dates without birth context.
NO_PII_TEMPLATES: tuple[str, ...] = (
    # relative times and dates that are not birth dates
    "can we do it {REL}",
    "call me back {REL}",
    "i'll be watching march madness with my brother",
    "i want to schedule something for {REL}",
    "my appointment is on {DATE} at {TIME}",
    "the payment is due {DATE}",
    "i paid it {REL}",
    "my birthday is {REL} actually",
    "it's my birthday today",
    "we're going away for a week in august",
    "the bill came {REL}",
    "the new card should arrive {REL}",
    "i've been a customer since {YEAR}",
    "i bought the car in {YEAR}",
    "my car is a {YEAR} honda civic",
    "the warranty ends in {YEAR}",
    "the kids are off school {REL}",
    # numbers that are not PII
    "i'd like to order {QTY} pizzas",
    "can i get {QTY} tickets for the {TIME} show",
    "it costs {PRICE}",
    "the total was {PRICE}",
    "my flight is {FLIGHT} at {TIME}",
    "i'm on flight {FLIGHT} tomorrow",
    "table for {QTY} at {TIME}",
    "i need {QTY} boxes by {TIME}",
    "order {QTY} pizzas and {QTY} salads",
    "i was charged {PRICE} twice",
    "the meeting is at {TIME}",
    "we're in room {ROOM}",
    "i called like {QTY} times",
    "my order number is {ORDER}",
    "the confirmation code was {ORDER}",
    "my son is {AGE} years old",
    "it's about {QTY} miles from here",
    "the interest rate is {PCT} percent",
    "i've been waiting {QTY} minutes",
    "set the thermostat to {AGE} degrees",
    "can you split it into {QTY} payments of {PRICE}",
    "i'm calling about invoice {ORDER}",
    # the bot's own vocabulary and "s s n"
    "do you need my s s n",
    "what's an ssn",
    "i went to the social security office {REL}",
    "where do i find my account number",
    "what is a routing number",
    "the routing number on my checks is smudged",
    "my card was declined",
    "i lost my card",
    "i need help with my account",
    "can i speak to an agent",
    "representative",
    "agent please",
    "help",
    "i want to talk to a representative",
    "check my account balance",
    "can you read me my account number",
    "i don't have my card with me",
    "what's my medical record number, i don't know it",
    "do you need my date of birth",
    "should i give you my phone number",
    "i don't want to give my social security number over the phone",
    "how do i reset my password",
    "what's the email for customer service",
    "cancel my card please",
    "the patient id is on the bracelet somewhere",
    # words that are also names
    "will you help me with this",
    "may i ask a question",
    "i need to pay my bill",
    "the rose bushes need water",
    "will that be all",
    "may i speak with someone about my bill",
    "i'll mark it down",
    "can you grant me an extension",
    "i hope so",
    "have a little faith",
    "that's frank of you",
    "i'm going to chase bank later",
    "there's a grace period right",
    "it's a penny short",
    "the sky is clear in june",
    "i'll be frank with you, i'm upset",
    "bill me later",
    "we rose early to catch the flight",
    "the summer sale ends soon",
    "can you jack up the volume",
    # street-like phrases without a house number
    "i live on {STREET}",
    "turn left on {STREET}",
    "it's near {STREET} and {STREET}",
    "i read it in the wall street journal",
    "we walked down the road",
    "is the store on {STREET}",
    "my kids love sesame street",
    "the branch on {STREET} closed",
    "i drove down fifth avenue",
    "it's the building across from the park",
    # assorted
    "yes",
    "no thank you",
    "that's all for today, thanks",
    "can you repeat that",
    "sorry i didn't catch that",
    "okay sounds good",
    "what are your hours on {DAY}",
    "is the office open {REL}",
    "i'm calling about my prescription refill",
    "my internet has been slow since {DAY}",
)

RELATIVE = (
    "next year",
    "next week",
    "in two weeks",
    "in a couple of days",
    "tomorrow",
    "the day after tomorrow",
    "last month",
    "next tuesday",
    "this friday",
    "in twenty minutes",
    "in an hour",
    "last year",
    "two years ago",
    "every other friday",
    "by the end of the month",
    "later today",
    "this weekend",
    "a few days ago",
    "next spring",
    "in three months",
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
AIRLINES = (("UA", "united"), ("DL", "delta"), ("AA", "american"), ("WN", "southwest"))


def _slot_value(slot: str, form: str, rng: random.Random) -> str:
    words = form == "spoken" or (form == "mixed" and rng.random() < 0.4)
    if slot == "REL":
        return rng.choice(RELATIVE)
    if slot == "DAY":
        d = rng.choice(DAYS)
        return d if form == "formatted" else d.lower()
    if slot in ("QTY", "AGE", "PCT", "ROOM"):
        n = {
            "QTY": rng.randint(2, 12),
            "AGE": rng.randint(3, 75),
            "PCT": rng.randint(2, 19),
            "ROOM": rng.randint(101, 950),
        }[slot]
        return " ".join(say_grouped(str(n), rng)) if words else str(n)
    if slot == "PRICE":
        dollars, cents = rng.randint(2, 499), rng.choice((0, 50, 99, rng.randint(1, 98)))
        if not words:
            return f"${dollars}.{cents:02d}" if cents else f"${dollars}"
        d = " ".join(number_words(dollars))
        if not cents:
            return f"{d} dollars"
        c = " ".join(number_words(cents))
        return rng.choice((f"{d} dollars and {c} cents", f"{d} {c}", f"{d} dollars {c}"))
    if slot == "TIME":
        h, m = rng.randint(1, 12), rng.choice((0, 15, 30, 45, rng.randint(1, 59)))
        ampm = rng.choice(("am", "pm", ""))
        if not words:
            return (f"{h}:{m:02d}" + (f" {ampm}" if ampm else "")).strip()
        if m == 0:
            return f"{ONES[h]} o'clock" if not ampm else f"{ONES[h]} {' '.join(ampm)}"
        if m == 15 and rng.random() < 0.5:
            return f"quarter past {ONES[h]}"
        return f"{ONES[h]} {' '.join(say_pair(f'{m:02d}', rng))}"
    if slot == "FLIGHT":
        code, name = rng.choice(AIRLINES)
        n = str(rng.randint(10, 2999))
        if not words:
            return f"{code} {n}" if form == "formatted" else f"{name} {n}"
        return f"{name} {' '.join(say_grouped(n, rng))}"
    if slot == "ORDER":
        n = str(rng.randint(10000, 999999))
        return " ".join(say_digits(n, rng)) if words else n
    if slot == "YEAR":
        y = rng.randint(1995, 2026)
        return _spoken_year(y, rng) if words else str(y)
    if slot == "DATE":
        month, day = rng.randint(1, 12), rng.randint(1, 28)
        if words:
            return f"{MONTHS[month - 1].lower()} {' '.join(ordinal_words(day))}"
        return rng.choice((f"{MONTHS[month - 1]} {ordinal_suffix(day)}", f"{month}/{day}"))
    if slot == "STREET":
        f, s = _street_name(rng)
        suffix = rng.choice(SUFFIXES)[0]
        return f"{f} {suffix}" if form == "formatted" else f"{s} {suffix.lower()}"
    raise KeyError(slot)


# --------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------

_ACRONYMS = (
    (r"\bi\b", "I"),
    (r"\bi'", "I'"),
    (r"\bssn\b", "SSN"),
    (r"\bdob\b", "DOB"),
    (r"\bmrn\b", "MRN"),
    (r"\baba\b", "ABA"),
    (r"\bid\b", "ID"),
    (r"\bvisa\b", "Visa"),
    (r"\bamex\b", "Amex"),
    (r"\bmastercard\b", "Mastercard"),
    (r"\bchase\b", "Chase"),
    (r"\bohio\b", "Ohio"),
    (r"\bwall street journal\b", "Wall Street Journal"),
    (r"\bsesame street\b", "Sesame Street"),
    (r"\bfifth avenue\b", "Fifth Avenue"),
    (r"\bmarch madness\b", "March Madness"),
    (r"\bhonda civic\b", "Honda Civic"),
    (r"\baugust\b", "August"),
    (r"\bjune\b", "June"),
    (r"\bsocial security office\b", "Social Security office"),
    (r"\bs s n\b", "SSN"),
)
_SPOKEN_ACRONYMS = (
    (r"\bssn\b", ("s s n", "ssn", "s.s.n.")),
    (r"\bdob\b", ("d o b", "dob", "d.o.b.")),
    (r"\bmrn\b", ("m r n", "mrn", "m.r.n.")),
    (r"\baba\b", ("a b a", "aba")),
)
_OPENERS = ("um, ", "uh ", "yeah, ", "okay so ", "so ", "um ", "well, ", "yes, ")


def _style_carrier(text: str, form: str, rng: random.Random) -> str:
    if form == "formatted":
        for pattern, repl in _ACRONYMS:
            text = re.sub(pattern, repl, text)
        return text
    for pattern, options in _SPOKEN_ACRONYMS:
        text = re.sub(pattern, lambda _m, o=options: rng.choice(o), text)
    return text


def assemble(template: str, form: str, rng: random.Random, pii: bool) -> tuple[str, list[Span]]:
    """Render a template into text and gold spans (offsets computed while concatenating)."""
    pieces: list[Piece] = []
    for part in re.split(r"(\{[A-Z]+\})", template):
        if not part:
            continue
        if part.startswith("{"):
            slot = part[1:-1]
            if pii:
                pieces += RENDERERS[SLOT_TYPES[slot]](rng, form)
            else:
                pieces.append((_slot_value(slot, form, rng), None, ""))
        else:
            pieces.append((_style_carrier(part, form, rng), None, ""))
    spoken_case = form != "formatted"
    if spoken_case and rng.random() < 0.15:
        pieces.insert(0, (rng.choice(_OPENERS), None, ""))
    sentence_case = form == "formatted" or rng.random() < 0.3
    text = ""
    spans: list[Span] = []
    for i, (chunk, kind, value) in enumerate(pieces):
        if i == 0 and kind is None and sentence_case:
            chunk = chunk[:1].upper() + chunk[1:]
        if kind is not None:
            spans.append(Span(kind, len(text), len(text) + len(chunk), value))
        text += chunk
    if sentence_case and text[-1] not in ".?!":
        end = "?" if re.match(r"(?i)(can|may|will|do|what|where|should|is|how)\b", text) else "."
        text += end
    return text, spans


def _form_list(n: int, rng: random.Random) -> list[str]:
    counts = {f: round(n * FORM_SHARE[f]) for f in ("formatted", "spoken")}
    counts["mixed"] = n - counts["formatted"] - counts["spoken"]
    forms = [f for f in FORMS for _ in range(counts[f])]
    rng.shuffle(forms)
    return forms


def generate(seed: int = 7) -> list[Utterance]:
    """The whole evaluation set for `seed`, in a shuffled but reproducible order."""
    rng = random.Random(seed)
    plans: list[tuple[str, str, bool]] = []
    for etype in ENTITY_TYPES:
        for form in _form_list(PER_TYPE, rng):
            plans.append((rng.choice(TEMPLATES[etype]), form, True))
    for form in _form_list(NO_PII, rng):
        plans.append((rng.choice(NO_PII_TEMPLATES), form, False))
    rng.shuffle(plans)
    out: list[Utterance] = []
    for i, (template, form, pii) in enumerate(plans):
        text, spans = assemble(template, form, rng, pii)
        out.append(Utterance(f"u{i + 1:05d}", text, form, spans))
    return out


def dumps(utterances: list[Utterance]) -> str:
    return "".join(u.to_json() + "\n" for u in utterances)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="tests/pii_eval/utterances.jsonl")
    args = parser.parse_args(argv)
    utterances = generate(args.seed)
    Path(args.out).write_text(dumps(utterances), encoding="utf-8")
    n_pii = sum(1 for u in utterances if u.spans)
    print(f"wrote {len(utterances)} utterances ({n_pii} with PII) to {args.out}")


if __name__ == "__main__":
    main()
