"""The written-form PII recognisers (bot/pii/recognizers.py): per-entity positives and
negatives, the check digits, lowercase names with context, tricky sentences without personal
data, and a timing sanity check."""

from __future__ import annotations

import statistics
import time

import pytest

from bot.pii.recognizers import (
    ENTITIES,
    aba_valid,
    build_analyzer,
    luhn_valid,
    nanp_valid,
    ssn_valid,
)

THRESHOLD = 0.4  # the redactor's default


@pytest.fixture(scope="module")
def analyzer():
    return build_analyzer()


def findings(analyzer, text: str) -> list[tuple[str, str]]:
    """(type, text) of what the redactor would keep: strongest, then longest, wins overlaps."""
    results = analyzer.analyze(
        text=text, language="en", entities=ENTITIES, score_threshold=THRESHOLD
    )
    ranked = sorted(results, key=lambda r: (-r.score, -(r.end - r.start), r.start))
    kept = []
    for r in ranked:
        if all(r.end <= k.start or r.start >= k.end for k in kept):
            kept.append(r)
    return [(r.entity_type, text[r.start : r.end]) for r in sorted(kept, key=lambda r: r.start)]


POSITIVES = [
    # US_SSN
    ("US_SSN", "my social is 123-45-6789", "123-45-6789"),
    ("US_SSN", "my social security number is 123456789", "123456789"),
    ("US_SSN", "ssn 123 45 6789 thanks", "123 45 6789"),
    ("US_SSN", "it's 234-56-7890", "234-56-7890"),
    ("US_SSN", "my social is 900 12 3456", "900 12 3456"),  # invalid area, but context
    ("US_SSN", "my social is 123, 45, 6789", "123, 45, 6789"),  # STT pauses
    ("US_SSN", "social security 1 2 3 4 5 6 7 8 9", "1 2 3 4 5 6 7 8 9"),
    # CREDIT_CARD
    ("CREDIT_CARD", "my card is 4111 1111 1111 1111", "4111 1111 1111 1111"),
    ("CREDIT_CARD", "4111-1111-1111-1111 expires 12 25", "4111-1111-1111-1111"),
    ("CREDIT_CARD", "number 5555555555554444 please", "5555555555554444"),
    ("CREDIT_CARD", "amex 3782 822463 10005", "3782 822463 10005"),
    ("CREDIT_CARD", "it's 4242 4242 4242 4242 12 27", "4242 4242 4242 4242"),
    # PHONE_NUMBER
    ("PHONE_NUMBER", "call me at (415) 555-0132", "(415) 555-0132"),
    ("PHONE_NUMBER", "it's 415-555-0132", "415-555-0132"),
    ("PHONE_NUMBER", "reach me on 415.555.0132 tonight", "415.555.0132"),
    ("PHONE_NUMBER", "my number is 4155550132", "4155550132"),
    ("PHONE_NUMBER", "+1 415 555 0132", "+1 415 555 0132"),
    ("PHONE_NUMBER", "+14155550132", "+14155550132"),
    ("PHONE_NUMBER", "1-800-356-9377", "1-800-356-9377"),
    ("PHONE_NUMBER", "my cell is 555-0132", "555-0132"),
    ("PHONE_NUMBER", "call me on 5550132", "5550132"),
    ("PHONE_NUMBER", "call 415 555 0132, 2 times", "415 555 0132"),  # a slice of the run
    # EMAIL_ADDRESS
    ("EMAIL_ADDRESS", "email john.smith@gmail.com please", "john.smith@gmail.com"),
    ("EMAIL_ADDRESS", "it's a_b-c+tag@mail.example.co.uk.", "a_b-c+tag@mail.example.co.uk"),
    ("EMAIL_ADDRESS", "JSMITH42@YAHOO.COM", "JSMITH42@YAHOO.COM"),
    # DATE_OF_BIRTH
    ("DATE_OF_BIRTH", "i was born march 3 1980", "march 3 1980"),
    ("DATE_OF_BIRTH", "my date of birth is 3/3/1980", "3/3/1980"),
    ("DATE_OF_BIRTH", "dob 1980-03-03", "1980-03-03"),
    ("DATE_OF_BIRTH", "born on the 3rd of march 1980", "the 3rd of march 1980"),
    ("DATE_OF_BIRTH", "my birthday is march 3rd, 1980", "march 3rd, 1980"),
    ("DATE_OF_BIRTH", "Date of birth: Sept. 21, 1975", "Sept. 21, 1975"),
    ("DATE_OF_BIRTH", "birth date 12-25-75", "12-25-75"),
    ("DATE_OF_BIRTH", "my birthday is march third", "march third"),
    ("DATE_OF_BIRTH", "03031980 is my date of birth", "03031980"),
    ("DATE_OF_BIRTH", "i was born in march 1980", "march 1980"),
    # STREET_ADDRESS
    ("STREET_ADDRESS", "i live at 123 maple street", "123 maple street"),
    (
        "STREET_ADDRESS",
        "123 maple street apartment 4 springfield illinois 62704",
        "123 maple street apartment 4 springfield illinois 62704",
    ),
    (
        "STREET_ADDRESS",
        "ship it to 42 West 5th Avenue, New York, NY 10011",
        "42 West 5th Avenue, New York, NY 10011",
    ),
    ("STREET_ADDRESS", "it's 7 oak ln apt 2b", "7 oak ln apt 2b"),
    ("STREET_ADDRESS", "my address is 1600 pennsylvania ave nw", "1600 pennsylvania ave nw"),
    ("STREET_ADDRESS", "9876 old mill creek road", "9876 old mill creek road"),
    ("STREET_ADDRESS", "55 elm ct, austin tx 78701", "55 elm ct, austin tx 78701"),
    # US_BANK_NUMBER
    ("US_BANK_NUMBER", "my checking account is 12345678", "12345678"),
    ("US_BANK_NUMBER", "savings account number 000123456789", "000123456789"),
    ("US_BANK_NUMBER", "my account number is 4155550132", "4155550132"),
    # ABA_ROUTING_NUMBER
    ("ABA_ROUTING_NUMBER", "routing number 021000021", "021000021"),
    ("ABA_ROUTING_NUMBER", "the aba is 011000015 and", "011000015"),
    # MEDICAL_RECORD_NUMBER
    ("MEDICAL_RECORD_NUMBER", "my mrn is 1234567", "1234567"),
    ("MEDICAL_RECORD_NUMBER", "MRN-1234567", "MRN-1234567"),
    ("MEDICAL_RECORD_NUMBER", "patient id 00123456", "00123456"),
    ("MEDICAL_RECORD_NUMBER", "medical record number is 98765432", "98765432"),
    # PERSON (lowercase, with context)
    ("PERSON", "my name is john smith", "john smith"),
    ("PERSON", "this is sarah johnson calling", "sarah johnson"),
    ("PERSON", "hi this is mary", "mary"),
    ("PERSON", "mister brown will call you", "brown"),
    ("PERSON", "my name is priya raman and i need help", "priya raman"),
    ("PERSON", "call me bill", "bill"),
    ("PERSON", "i am will smith", "will smith"),
    ("PERSON", "my name's Bob", "Bob"),
    ("PERSON", "Dr. Patel will see you", "Patel"),
    ("PERSON", "this is Grant", "Grant"),
    ("PERSON", "i spoke to john smith yesterday", "john smith"),
    ("PERSON", "John Smith called", "John Smith"),
    ("PERSON", "my name is mary rose o'brien", "mary rose o'brien"),
    ("PERSON", "mrs. jennifer a lopez", "jennifer a lopez"),
    ("PERSON", "my first name is xochitl", "xochitl"),
    ("PERSON", "Kevin speaking, how can I help", "Kevin"),
    ("PERSON", "my son jordan plays soccer", "jordan"),
    # names the en_US lists lack: other Faker locales, unknown words, capitalised pairs
    ("PERSON", "this is ngozi okafor calling", "ngozi okafor"),
    ("PERSON", "hi, it's xanthe quillfeather", "xanthe quillfeather"),
    ("PERSON", "the account is under Oyelaran", "Oyelaran"),
    ("PERSON", "the appointment is for grace x oyelowo", "grace x oyelowo"),
    ("PERSON", "please tell mariam brackley i called", "mariam brackley"),
    ("PERSON", "my husband dilnoza tursunova handles it", "dilnoza tursunova"),
    ("PERSON", "Tomasz Wrzesniewski at 12 Elm Street", "Tomasz Wrzesniewski"),
    ("PERSON", "quillfeather speaking", "quillfeather"),
    ("PERSON", "last name Brackley, social 123-45-6789", "Brackley"),
    ("PERSON", "name on the card is Hollis", "Hollis"),
    ("PERSON", "it's june kowalczyk", "june kowalczyk"),  # a word-name with a surname
    ("PERSON", "my last name is Nowak, N-O-W-A-K", "N-O-W-A-K"),
    ("PERSON", "my last name is nowak spelled n o w a k", "n o w a k"),
    ("PERSON", "this is jae-won park", "jae-won park"),
    # hesitations and "area code" / "plus" said as part of the number
    ("PHONE_NUMBER", "my cell is area code 415 555 0132", "area code 415 555 0132"),
    ("PHONE_NUMBER", "text me at plus 14155550132", "plus 14155550132"),
    ("US_SSN", "my social is um 123 45 6789 uh", "um 123 45 6789 uh"),
    # dates of birth: two-digit years, "slash", month-day-year runs
    ("DATE_OF_BIRTH", "date of birth august 3 54", "august 3 54"),
    ("DATE_OF_BIRTH", "born the 17 of october 48", "the 17 of october 48"),
    ("DATE_OF_BIRTH", "my dob is 09 slash 07 slash 1972", "09 slash 07 slash 1972"),
    ("DATE_OF_BIRTH", "birthday 3/22 1968", "3/22 1968"),
    ("DATE_OF_BIRTH", "i was born 4141971", "4141971"),
    ("DATE_OF_BIRTH", "my birthday party is august 3 54 people", "august 3"),  # not a year
]


@pytest.mark.parametrize(("entity", "text", "value"), POSITIVES)
def test_positive(analyzer, entity: str, text: str, value: str):
    assert (entity, value) in findings(analyzer, text)


# (text, entity that must NOT be reported anywhere in it)
NEGATIVES = [
    ("the order number is 123-45-6789X", "US_SSN"),
    ("666-12-3456", "US_SSN"),  # never issued, and no context
    ("000123456", "US_SSN"),
    ("1 2 3 4 5 6 7 8 9", "US_SSN"),  # odd grouping needs context
    ("4111 1111 1111 1112", "CREDIT_CARD"),  # Luhn fails, no card context
    ("1234567890123", "CREDIT_CARD"),
    ("the total was 415", "PHONE_NUMBER"),
    ("555-0132", "PHONE_NUMBER"),  # 7 digits need phone context
    ("0155550132", "PHONE_NUMBER"),  # area code cannot start with 0
    ("123-456-7890 is the wrong shape for", "US_SSN"),
    ("john at gmail", "EMAIL_ADDRESS"),
    ("we meet on march 3 1980 for the concert", "DATE_OF_BIRTH"),
    ("the appointment is on 3/3/2025", "DATE_OF_BIRTH"),
    ("next year on my birthday i want a cake", "DATE_OF_BIRTH"),
    ("born and raised here since last may", "DATE_OF_BIRTH"),
    ("it's a 5 minute drive from the 2 way street", "STREET_ADDRESS"),
    ("we moved in 2019 to a 3 bedroom place", "STREET_ADDRESS"),
    ("i have 3 kids on the way", "STREET_ADDRESS"),
    ("take the 101 freeway", "STREET_ADDRESS"),
    ("i have 1234567 reward points", "US_BANK_NUMBER"),  # 7 digits, not announced
    ("what is my routing number", "ABA_ROUTING_NUMBER"),
    ("the number 123456789 fails the checksum", "ABA_ROUTING_NUMBER"),
    ("my record is 1234567", "MEDICAL_RECORD_NUMBER"),  # no MRN context
    ("i will call you tomorrow", "PERSON"),
    ("may i speak with someone about a bill", "PERSON"),
    ("mark my words, grant me this", "PERSON"),
    ("this is great, i'm calling about my card", "PERSON"),
    ("i'm sorry, this is urgent", "PERSON"),
    ("rose bushes and will power", "PERSON"),
    ("my name is not important", "PERSON"),
    ("call me back at 4155550132", "PERSON"),
    ("i'm going to Chase bank later", "PERSON"),
    ("it's near Adams Boulevard and Church Boulevard", "PERSON"),
    ("yes, ssn 123 45 6789", "PERSON"),
    ("turn left on jefferson lane", "PERSON"),
    ("the claim is under review", "PERSON"),
    ("i'm gonna pay it for medicare", "PERSON"),
]


@pytest.mark.parametrize(("text", "entity"), NEGATIVES)
def test_negative(analyzer, text: str, entity: str):
    assert entity not in [t for t, _ in findings(analyzer, text)]


NO_PII = [
    "next year i want to upgrade my account",
    "i will call you back tomorrow at 3:30",
    "can we do it at 3 30 in the afternoon",
    "it costs $1,250.00 per month",
    "that's about 45 percent of the 2000 dollars",
    "the s s n field is blank",
    "what is my routing number",
    "my card was declined",
    "i need my account number and routing number",
    "may i speak with someone about a bill",
    "it's a 5 minute drive from the 2 way street",
    "i have 3 kids and a dog",
    "in 2024 we had 12 people",
    "I'd like to pay my bill of $45.20 by May 3rd",
    "two weeks ago last monday",
    "the meeting is on march 3 2025 at noon",
    "yesterday around 10 am",
    "I lost 15 pounds in 6 weeks",
    "my social security benefits stopped",
    "what's my date of birth on file",
    "please send the card to my home address",
    "i will be at the court tomorrow",
    "mark it as paid, will you",
    "we stayed 3 nights at a 4 star place",
    "I was born in the eighties",
    "my credit score is 720",
    "there are 365 days in a year",
    "Can I talk to a real person please",
    "What is the status of my claim",
    "ok thanks, bye",
    "call me after 6",
    "i have 2, 3, 4 and 5",
    "the numbers are 12, 15 and 20",
    "i was on hold for 45 minutes",
    "press 1 for english",
    "flight 2045 to denver",
    "my zip code is 90210",
    "version 3.2.1 of the app crashed",
    "i make about 55000 a year",
    "this is my third call",
    "i'm calling for my mother",
    "my husband will call back later",
]


@pytest.mark.parametrize("text", NO_PII)
def test_no_false_alarms(analyzer, text: str):
    assert findings(analyzer, text) == []


def test_several_entities_in_one_utterance(analyzer):
    text = (
        "my name is john smith, my social is 123-45-6789, call me at 415 555 0132, "
        "i was born march 3 1980 and my card is 4111 1111 1111 1111"
    )
    assert findings(analyzer, text) == [
        ("PERSON", "john smith"),
        ("US_SSN", "123-45-6789"),
        ("PHONE_NUMBER", "415 555 0132"),
        ("DATE_OF_BIRTH", "march 3 1980"),
        ("CREDIT_CARD", "4111 1111 1111 1111"),
    ]


def test_nearest_context_decides_the_type(analyzer):
    text = "my routing number is 021000021 and my social is 219099999"
    assert findings(analyzer, text) == [
        ("ABA_ROUTING_NUMBER", "021000021"),
        ("US_SSN", "219099999"),
    ]


def test_luhn():
    assert luhn_valid("4111111111111111")
    assert luhn_valid("378282246310005")
    assert luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("79927398710")
    assert not luhn_valid("")


def test_aba_checksum():
    assert aba_valid("021000021")  # JPMorgan Chase
    assert aba_valid("011000015")  # Federal Reserve Boston
    assert aba_valid("121000358")
    assert not aba_valid("021000022")
    assert not aba_valid("123456789")
    assert not aba_valid("02100002")
    # checksum right but the Federal Reserve prefix is not (50)
    assert sum(int(d) * w for d, w in zip("500000005", (3, 7, 1) * 3, strict=True)) % 10 == 0
    assert not aba_valid("500000005")


def test_ssn_and_phone_rules():
    assert ssn_valid("123456789")
    for never_issued in ("000123456", "666123456", "912345678", "123004567", "123450000"):
        assert not ssn_valid(never_issued)
    assert not ssn_valid("111111111")
    assert nanp_valid("4155550132")
    assert not nanp_valid("1155550132")
    assert not nanp_valid("4150550132")


def test_routing_number_without_context_stays_low(analyzer):
    results = analyzer.analyze(text="021000021", language="en", entities=ENTITIES)
    scores = {r.entity_type: r.score for r in results}
    assert scores["ABA_ROUTING_NUMBER"] < 0.5
    with_context = analyzer.analyze(text="routing 021000021", language="en", entities=ENTITIES)
    assert max(r.score for r in with_context if r.entity_type == "ABA_ROUTING_NUMBER") > 0.9


def test_only_requested_entities(analyzer):
    results = analyzer.analyze(
        text="my social is 123-45-6789 and my name is john smith",
        language="en",
        entities=["PERSON"],
    )
    assert {r.entity_type for r in results} == {"PERSON"}


def test_supported_entities(analyzer):
    assert set(ENTITIES) <= set(analyzer.get_supported_entities("en"))
    assert "DATE_TIME" not in analyzer.get_supported_entities("en")


def test_timing_sanity(analyzer):
    sentences = [
        "hi there my name is john smith and i'm calling about my account because the card "
        "was declined yesterday at the grocery store on main street and i need help with it "
        "before the weekend because i am travelling to see my mother who lives far away",
        "my social is 123-45-6789 my card number is 4111 1111 1111 1111 call me at "
        "(415) 555-0132 i was born march 3 1980 and i live at 123 maple street apartment 4 "
        "springfield illinois 62704 routing 021000021 account 123456789012",
        "ok",
        "next year i want to upgrade my account",
    ]
    for text in sentences:
        analyzer.analyze(text=text, language="en", entities=ENTITIES)
    timings = []
    for _ in range(25):
        for text in sentences:
            started = time.perf_counter()
            analyzer.analyze(text=text, language="en", entities=ENTITIES)
            timings.append((time.perf_counter() - started) * 1000)
    assert statistics.median(timings) < 20


def test_spacy_ner_option_adds_capitalised_names():
    analyzer = build_analyzer(use_ner=True)
    text = "I talked to Priya Xu about it"
    assert ("PERSON", "Priya Xu") in findings(analyzer, text)
    # the rules alone find her too: a capitalised pair of words no dictionary lists
    assert ("PERSON", "Priya Xu") in findings(build_analyzer(), text)
    # NER's other labels (DATE, ORG, GPE ...) are not reported
    assert findings(analyzer, "Next year I want to visit Chicago with the SSN team") == []
