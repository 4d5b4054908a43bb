"""Numbers, money and durations as sequences of spoken words (French and English).

Each function returns a tuple of *words* in their written form ("vingt-trois", "euros").
Every word maps to one prompt file through `prompt_name()`, and `all_words()` lists every
word these functions can produce, so the prompt generator records exactly that set.

Grammar followed:

* French: "et" in 21, 31 … 71 ("soixante et onze"), none in 81 / 91 ("quatre-vingt-un",
  "quatre-vingt-onze"); "quatre-vingts" and "deux cents" take an "s" only at the end of the
  number or before "millions"; "mille" never varies and is not preceded by "un"; feminine
  "une" for minutes ("vingt et une minutes"). Singular below 2 ("zéro euro", "un euro",
  "un centime"), amounts read as "vingt-trois euros cinquante-huit", "un million d'euros".
* English (British usage): "one hundred and one", "one thousand and one",
  "twenty-three euros and fifty-eight cents", "one euro", "one cent", "zero euros".
"""

from __future__ import annotations

import unicodedata
from decimal import ROUND_DOWN, Decimal

LANGUAGES = ("FR", "EN")
MAX_NUMBER = 999_999_999

_FR_UNITS = [
    "zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix",
    "onze", "douze", "treize", "quatorze", "quinze", "seize",
]  # fmt: skip
_FR_TENS = {2: "vingt", 3: "trente", 4: "quarante", 5: "cinquante", 6: "soixante"}

_EN_UNITS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen",
]  # fmt: skip
_EN_TENS = {
    2: "twenty", 3: "thirty", 4: "forty", 5: "fifty", 6: "sixty", 7: "seventy", 8: "eighty",
    9: "ninety",
}  # fmt: skip

# currency name (operator setting, case-insensitive, trailing "s" ignored) ->
# language -> (major singular, major plural, minor singular, minor plural)
_CURRENCIES: dict[str, dict[str, tuple[str, str, str, str]]] = {
    "euro": {
        "FR": ("euro", "euros", "centime", "centimes"),
        "EN": ("euro", "euros", "cent", "cents"),
    },
    "dollar": {
        "FR": ("dollar", "dollars", "centime", "centimes"),
        "EN": ("dollar", "dollars", "cent", "cents"),
    },
}

# fixed connecting words used in announcements
_CREDIT_LINK = {"FR": "soit environ", "EN": "that is about"}
_MINUTE = {"FR": ("minute", "minutes"), "EN": ("minute", "minutes")}
_SECOND = {"FR": ("seconde", "secondes"), "EN": ("second", "seconds")}


class SpeechError(ValueError):
    pass


def _lang(language: str) -> str:
    lang = language.upper()
    if lang not in LANGUAGES:
        raise SpeechError(f"unsupported language {language!r}")
    return lang


# --------------------------------------------------------------------------- French


def _fr_below_100(n: int, feminine: bool = False, plural_ending: bool = True) -> str:
    """0..99 as one word. `plural_ending`: "quatre-vingts" (else "quatre-vingt", before mille)."""
    if n < 17:
        word = _FR_UNITS[n]
        return "une" if feminine and n == 1 else word
    if n < 20:
        return "dix-" + _FR_UNITS[n - 10]
    tens, unit = divmod(n, 10)
    if tens in (7, 9):
        base = "soixante" if tens == 7 else "quatre-vingt"
        rest = n - (60 if tens == 7 else 80)
        if tens == 7 and rest == 11:
            return "soixante et onze"
        return f"{base}-{_fr_below_100(rest)}"
    if tens == 8:
        if unit == 0:
            return "quatre-vingts" if plural_ending else "quatre-vingt"
        return "quatre-vingt-" + ("une" if feminine and unit == 1 else _FR_UNITS[unit])
    base = _FR_TENS[tens]
    if unit == 0:
        return base
    if unit == 1:
        return f"{base} et {'une' if feminine else 'un'}"
    return f"{base}-{_FR_UNITS[unit]}"


def _fr_below_1000(n: int, feminine: bool, plural_ending: bool) -> list[str]:
    hundreds, rest = divmod(n, 100)
    words: list[str] = []
    if hundreds:
        if hundreds > 1:
            words.append(_FR_UNITS[hundreds])
        words.append("cents" if hundreds > 1 and rest == 0 and plural_ending else "cent")
    if rest or not hundreds:
        words.append(_fr_below_100(rest, feminine, plural_ending))
    return words


def _fr_number(n: int, feminine: bool = False) -> list[str]:
    if n == 0:
        return ["zéro"]
    millions, rest = divmod(n, 1_000_000)
    thousands, units = divmod(rest, 1000)
    words: list[str] = []
    if millions:
        # "deux cents millions", "quatre-vingts millions": million is a noun
        words += _fr_below_1000(millions, False, True)
        words.append("millions" if millions > 1 else "million")
    if thousands:
        if thousands > 1:
            # "deux cent mille", "quatre-vingt mille": mille is not a noun, no "s"
            words += _fr_below_1000(thousands, False, False)
        words.append("mille")
    if units:
        words += _fr_below_1000(units, feminine, True)
    return words


# --------------------------------------------------------------------------- English


def _en_below_100(n: int) -> str:
    if n < 20:
        return _EN_UNITS[n]
    tens, unit = divmod(n, 10)
    return _EN_TENS[tens] if unit == 0 else f"{_EN_TENS[tens]}-{_EN_UNITS[unit]}"


def _en_below_1000(n: int) -> list[str]:
    hundreds, rest = divmod(n, 100)
    words: list[str] = []
    if hundreds:
        words += [_EN_UNITS[hundreds], "hundred"]
        if rest:
            words.append("and")
    if rest or not hundreds:
        words.append(_en_below_100(rest))
    return words


def _en_number(n: int) -> list[str]:
    if n == 0:
        return ["zero"]
    millions, rest = divmod(n, 1_000_000)
    thousands, units = divmod(rest, 1000)
    words: list[str] = []
    if millions:
        words += [*_en_below_1000(millions), "million"]
    if thousands:
        words += [*_en_below_1000(thousands), "thousand"]
    if units:
        if (millions or thousands) and units < 100:
            words.append("and")  # "one thousand and one"
        words += _en_below_1000(units)
    return words


# --------------------------------------------------------------------------- public


def say_number(n: int, language: str, *, feminine: bool = False) -> tuple[str, ...]:
    """A whole number 0..999,999,999 as words; `feminine` only matters in French."""
    lang = _lang(language)
    if not 0 <= n <= MAX_NUMBER:
        raise SpeechError(f"number out of range: {n}")
    return tuple(_fr_number(n, feminine) if lang == "FR" else _en_number(n))


def currency_words(currency: str, language: str) -> tuple[str, str, str, str]:
    """(major singular, major plural, minor singular, minor plural) for a currency setting.

    Unknown currency names fall back to euro words (the only prompts recorded are for
    euros and dollars)."""
    key = currency.strip().lower().rstrip("s")
    return _CURRENCIES.get(key, _CURRENCIES["euro"])[_lang(language)]


def say_money(amount: Decimal, language: str, currency: str = "Euros") -> tuple[str, ...]:
    """An amount of money, truncated to the cent (credit is never overstated)."""
    lang = _lang(language)
    if amount < 0:
        raise SpeechError("negative amounts are not announced")
    cents_total = int((amount * 100).to_integral_value(rounding=ROUND_DOWN))
    major, minor = divmod(cents_total, 100)
    if major > MAX_NUMBER:
        raise SpeechError(f"amount out of range: {amount}")
    sing, plur, minor_sing, minor_plur = currency_words(currency, lang)
    if lang == "FR":
        # French: singular below 2 ("zéro euro", "un euro", "un centime")
        if major == 0 and minor:
            return (*say_number(minor, lang), minor_sing if minor < 2 else minor_plur)
        unit = sing if major < 2 else plur
        if major >= 1_000_000 and major % 1_000_000 == 0:
            unit = _fr_de(plur)  # "deux millions d'euros"
        words = [*say_number(major, lang), unit]
        if minor:
            words += say_number(minor, lang)  # "vingt-trois euros cinquante-huit"
        return tuple(words)
    if major == 0 and minor:
        return (*say_number(minor, lang), minor_sing if minor == 1 else minor_plur)
    words = [*say_number(major, lang), sing if major == 1 else plur]
    if minor:
        words += ["and", *say_number(minor, lang), minor_sing if minor == 1 else minor_plur]
    return tuple(words)


def _fr_de(noun: str) -> str:
    """French partitive after million(s): "d'euros", "de dollars"."""
    return f"d'{noun}" if noun[0] in "aeiouyh" else f"de {noun}"


def say_minutes(minutes: int, language: str) -> tuple[str, ...]:
    lang = _lang(language)
    sing, plur = _MINUTE[lang]
    if lang == "FR":
        return (*say_number(minutes, lang, feminine=True), sing if minutes < 2 else plur)
    return (*say_number(minutes, lang), sing if minutes == 1 else plur)


def say_seconds(seconds: int, language: str) -> tuple[str, ...]:
    lang = _lang(language)
    sing, plur = _SECOND[lang]
    if lang == "FR":
        return (*say_number(seconds, lang, feminine=True), sing if seconds < 2 else plur)
    return (*say_number(seconds, lang), sing if seconds == 1 else plur)


def say_time_left(seconds: int, language: str) -> tuple[str, ...]:
    """How long a call can last: whole minutes (rounded down, never overstated), or the
    seconds when it is less than a minute ("13 s affordable" is not "zero minutes")."""
    seconds = max(0, min(seconds, MAX_NUMBER))
    if seconds < 60:
        return say_seconds(seconds, language)
    return say_minutes(seconds // 60, language)


def credit_announcement(
    language: str, money: Decimal, currency: str, minutes: int | None
) -> tuple[str, ...]:
    """ "Your credit is <money>[, that is about <n> minutes]" as prompt words."""
    lang = _lang(language)
    words: list[str] = ["your_credit_is", *say_money(max(money, Decimal(0)), lang, currency)]
    if minutes is not None:
        words += [_CREDIT_LINK[lang], *say_minutes(max(0, min(minutes, MAX_NUMBER)), lang)]
    return tuple(words)


def prompt_name(word: str) -> str:
    """File stem for a word: ASCII, lower case, '_' for spaces and hyphens."""
    text = unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode()
    return "".join(c if c.isalnum() else "_" for c in text.lower())


def all_words(language: str) -> list[str]:
    """Every word `say_*` and `credit_announcement` can produce in `language`."""
    lang = _lang(language)
    words: set[str] = set()
    for n in range(1000):
        words.update(say_number(n, lang))
        words.update(say_number(n, lang, feminine=True))
        words.update(say_number(n * 1000, lang) if n else ())
        words.update(say_number(n * 1_000_000, lang) if n else ())
    for table in _CURRENCIES.values():
        words.update(table[lang])
        if lang == "FR":
            words.add(_fr_de(table[lang][1]))
    words.update(_MINUTE[lang])
    words.update(_SECOND[lang])
    words.add(_CREDIT_LINK[lang])
    return sorted(words)
