"""Number, money and minute grammar of the prompts, in French and English."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr_bridge.speech import (
    MAX_NUMBER,
    SpeechError,
    all_words,
    credit_announcement,
    prompt_name,
    say_minutes,
    say_money,
    say_number,
)

FR = {
    0: "zéro",
    1: "un",
    7: "sept",
    10: "dix",
    11: "onze",
    16: "seize",
    17: "dix-sept",
    19: "dix-neuf",
    20: "vingt",
    21: "vingt et un",
    22: "vingt-deux",
    30: "trente",
    31: "trente et un",
    41: "quarante et un",
    61: "soixante et un",
    70: "soixante-dix",
    71: "soixante et onze",
    72: "soixante-douze",
    77: "soixante-dix-sept",
    79: "soixante-dix-neuf",
    80: "quatre-vingts",
    81: "quatre-vingt-un",
    89: "quatre-vingt-neuf",
    90: "quatre-vingt-dix",
    91: "quatre-vingt-onze",
    99: "quatre-vingt-dix-neuf",
    100: "cent",
    101: "cent un",
    180: "cent quatre-vingts",
    200: "deux cents",
    201: "deux cent un",
    280: "deux cent quatre-vingts",
    999: "neuf cent quatre-vingt-dix-neuf",
    1000: "mille",
    1001: "mille un",
    1100: "mille cent",
    1200: "mille deux cents",
    2000: "deux mille",
    21000: "vingt et un mille",
    80000: "quatre-vingt mille",
    200000: "deux cent mille",
    1000000: "un million",
    2000000: "deux millions",
    80000000: "quatre-vingts millions",
    200000000: "deux cents millions",
    1001001: "un million mille un",
}

EN = {
    0: "zero",
    1: "one",
    12: "twelve",
    19: "nineteen",
    20: "twenty",
    21: "twenty-one",
    71: "seventy-one",
    80: "eighty",
    81: "eighty-one",
    91: "ninety-one",
    100: "one hundred",
    101: "one hundred and one",
    200: "two hundred",
    999: "nine hundred and ninety-nine",
    1000: "one thousand",
    1001: "one thousand and one",
    1100: "one thousand one hundred",
    1234: "one thousand two hundred and thirty-four",
    21000: "twenty-one thousand",
    1000000: "one million",
    2000005: "two million and five",
}


@pytest.mark.parametrize(("n", "text"), sorted(FR.items()))
def test_french_numbers(n, text):
    assert " ".join(say_number(n, "FR")) == text


@pytest.mark.parametrize(("n", "text"), sorted(EN.items()))
def test_english_numbers(n, text):
    assert " ".join(say_number(n, "en")) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [(1, "une"), (21, "vingt et une"), (31, "trente et une"), (61, "soixante et une"),
     (71, "soixante et onze"), (81, "quatre-vingt-une"), (91, "quatre-vingt-onze"),
     (1001, "mille une"), (2, "deux")],
)  # fmt: skip
def test_french_feminine(n, text):
    assert " ".join(say_number(n, "FR", feminine=True)) == text


@pytest.mark.parametrize(
    ("amount", "fr", "en"),
    [
        ("23.58", "vingt-trois euros cinquante-huit", "twenty-three euros and fifty-eight cents"),
        ("0", "zéro euro", "zero euros"),
        ("1", "un euro", "one euro"),
        ("1.01", "un euro un", "one euro and one cent"),
        ("0.01", "un centime", "one cent"),
        ("0.02", "deux centimes", "two cents"),
        ("2", "deux euros", "two euros"),
        ("20.38", "vingt euros trente-huit", "twenty euros and thirty-eight cents"),
        ("18.76", "dix-huit euros soixante-seize", "eighteen euros and seventy-six cents"),
        ("80", "quatre-vingts euros", "eighty euros"),
        ("200.5", "deux cents euros cinquante", "two hundred euros and fifty cents"),
        ("1000", "mille euros", "one thousand euros"),
        ("1001.71", "mille un euros soixante et onze",
         "one thousand and one euros and seventy-one cents"),
        ("1000000", "un million d'euros", "one million euros"),
        ("2000000.5", "deux millions d'euros cinquante", "two million euros and fifty cents"),
        ("1000001", "un million un euros", "one million and one euros"),
        # truncated, never rounded up: the caller is not told more than they have
        ("22.7499", "vingt-deux euros soixante-quatorze",
         "twenty-two euros and seventy-four cents"),
    ],
)  # fmt: skip
def test_money(amount, fr, en):
    assert " ".join(say_money(Decimal(amount), "FR", "Euros")) == fr
    assert " ".join(say_money(Decimal(amount), "EN", "Euros")) == en


def test_other_currency_and_unknown_fallback():
    assert say_money(Decimal("1.5"), "EN", "Dollars") == (
        "one", "dollar", "and", "fifty", "cents",
    )  # fmt: skip
    assert say_money(Decimal("2"), "FR", "XYZ") == ("deux", "euros")
    assert say_money(Decimal("3000000"), "FR", "Dollars") == ("trois", "millions", "de dollars")


@pytest.mark.parametrize(
    ("n", "fr", "en"),
    [(0, "zéro minute", "zero minutes"), (1, "une minute", "one minute"),
     (2, "deux minutes", "two minutes"), (21, "vingt et une minutes", "twenty-one minutes"),
     (100, "cent minutes", "one hundred minutes")],
)  # fmt: skip
def test_minutes(n, fr, en):
    assert " ".join(say_minutes(n, "FR")) == fr
    assert " ".join(say_minutes(n, "EN")) == en


def test_credit_announcement():
    words = credit_announcement("FR", Decimal("20.38"), "Euros", 16)
    assert words == (
        "your_credit_is", "vingt", "euros", "trente-huit", "soit environ", "seize", "minutes",
    )  # fmt: skip
    assert credit_announcement("EN", Decimal("-1"), "Euros", None) == (
        "your_credit_is", "zero", "euros",
    )  # fmt: skip


def test_errors():
    with pytest.raises(SpeechError):
        say_number(-1, "FR")
    with pytest.raises(SpeechError):
        say_number(MAX_NUMBER + 1, "FR")
    with pytest.raises(SpeechError):
        say_number(1, "DE")
    with pytest.raises(SpeechError):
        say_money(Decimal("-0.01"), "FR")


def test_prompt_names_are_ascii_file_stems():
    assert prompt_name("zéro") == "zero"
    assert prompt_name("vingt et un") == "vingt_et_un"
    assert prompt_name("quatre-vingt-dix") == "quatre_vingt_dix"
    for lang in ("FR", "EN"):
        names = [prompt_name(w) for w in all_words(lang)]
        assert len(names) == len(set(names))
        assert all(n.isascii() and n.replace("_", "").isalnum() for n in names)


@given(st.integers(0, MAX_NUMBER), st.sampled_from(["FR", "EN"]), st.booleans())
def test_every_word_has_a_prompt(n, lang, feminine):
    words = set(all_words(lang))
    assert set(say_number(n, lang, feminine=feminine)) <= words


@given(st.integers(0, 10**8))
def test_every_money_word_has_a_prompt(cents):
    amount = Decimal(cents) / 100
    for lang in ("FR", "EN"):
        assert set(say_money(amount, lang)) <= set(all_words(lang))


def test_french_hyphen_and_et_rules_hold_for_all_below_100():
    for n in range(17, 100):
        (word,) = say_number(n, "FR")
        if n % 10 == 1 and n not in (81, 91):
            assert " et " in word, n
        else:
            assert " et " not in word, n


@pytest.mark.parametrize("lang", ["FR", "EN"])
def test_every_prompt_is_committed_as_8khz_ulaw(lang):
    from ivr_bridge import dialog
    from ivr_bridge.prompts.generate import texts
    from ivr_bridge.service import PROMPTS_DIR

    folder = PROMPTS_DIR / lang.lower()
    wanted = {prompt_name(w) for w in [*all_words(lang), *dialog.ALL_PROMPTS]}
    assert wanted <= set(texts(lang))
    total = 0
    for stem in wanted:
        size = (folder / f"{stem}.ul").stat().st_size
        assert 800 <= size <= 80_000, stem  # 0.1 s .. 10 s of 8 kHz µ-law
        total += size
    assert total < 2_000_000


def test_tones_are_committed_and_resolved_by_the_library():
    from ivr_bridge import dialog
    from ivr_bridge.service import PROMPTS_DIR, PromptLibrary

    library = PromptLibrary()
    for tone in dialog.TONES:
        audio = (PROMPTS_DIR / "tones" / f"{tone}.ul").read_bytes()
        assert library.get("FR", tone) == library.get("EN", tone) == audio
    assert len(library.get("FR", dialog.TONE_RINGBACK)) == 5 * 8000  # 1.5 s on, 3.5 s off
    # "en:name" speaks that prompt in English whatever the call's language
    assert library.get("FR", "en:language_option") == library.get("EN", "language_option")
    assert library.get("FR", "en:language_option") != library.get("FR", "language_option")
