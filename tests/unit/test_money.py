"""Units ↔ money: exact conversions and display."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocs.money import (
    MoneyError,
    format_money,
    money_to_units,
    parse_money,
    per_minute,
    units_to_money,
)

PRICE = Decimal("0.0001")  # the brochure's unit price


# ----------------------------------------------------------------- brochure figures


@pytest.mark.parametrize(
    ("units", "shown"),
    [
        (203_800, "20,38"),
        (-600, "-0,06"),
        (-2_600, "-0,26"),
        (-13_000, "-1,30"),
        (187_600, "18,76"),
        (250_000, "25,00"),
        (-22_600, "-2,26"),
        (227_400, "22,74"),
    ],
)
def test_brochure_statement_amounts(units: int, shown: str) -> None:
    assert format_money(units_to_money(units, PRICE)) == shown


def test_brochure_per_minute() -> None:
    assert per_minute(200, PRICE) == Decimal("1.2000")
    assert str(per_minute(200, PRICE)) == "1.2000"
    assert format_money(per_minute(200, PRICE), 4) == "1,2000"
    assert per_minute(180, PRICE) == Decimal("1.0800")
    assert per_minute(250, PRICE) == Decimal("1.5000")
    assert str(per_minute(0, PRICE)) == "0.0000"


def test_per_minute_keeps_exact_extra_places() -> None:
    assert str(per_minute(1, Decimal("0.000001"))) == "0.000060"
    assert str(per_minute(7, Decimal("0.0000001"))) == "0.0000420"
    assert str(per_minute(3, Decimal("1"))) == "180.0000"


def test_per_minute_rejects_non_int_rate() -> None:
    with pytest.raises(TypeError):
        per_minute(1.5, PRICE)  # type: ignore[arg-type]


# ----------------------------------------------------------------- units_to_money


def test_units_to_money_exact() -> None:
    assert units_to_money(22_600, PRICE) == Decimal("2.26")
    assert str(units_to_money(22_600, PRICE)) == "2.2600"
    assert units_to_money(0, PRICE) == 0
    assert units_to_money(1, PRICE) == Decimal("0.0001")
    assert units_to_money(5, 2) == 10  # an int price is fine


def test_units_to_money_exact_beyond_default_context_precision() -> None:
    huge = 12_345_678_901_234_567_890_123_456_789
    with localcontext() as ctx:
        ctx.prec = 5  # the ambient context must not matter
        value = units_to_money(huge, PRICE)
    assert value == Decimal("1234567890123456789012345.6789")


@pytest.mark.parametrize("price", [Decimal(0), Decimal(-1), Decimal("NaN"), Decimal("Infinity")])
def test_units_to_money_rejects_bad_price(price: Decimal) -> None:
    with pytest.raises(MoneyError):
        units_to_money(1, price)


@pytest.mark.parametrize(("units", "price"), [(1.0, PRICE), (True, PRICE), (1, 0.0001), (1, "1")])
def test_units_to_money_rejects_bad_types(units: object, price: object) -> None:
    with pytest.raises(TypeError):
        units_to_money(units, price)  # type: ignore[arg-type]


# ----------------------------------------------------------------- money_to_units


def test_money_to_units() -> None:
    assert money_to_units(Decimal("25"), PRICE) == 250_000
    assert money_to_units(Decimal("20.38"), PRICE) == 203_800
    assert money_to_units(Decimal("0.0001"), PRICE) == 1
    assert money_to_units(Decimal("-1.3"), PRICE) == -13_000
    assert money_to_units(Decimal("0"), PRICE) == 0
    assert money_to_units(10, Decimal("0.5")) == 20


@pytest.mark.parametrize("amount", [Decimal("0.00005"), Decimal("1.23456"), Decimal("-0.00001")])
def test_money_to_units_rejects_inexact(amount: Decimal) -> None:
    with pytest.raises(MoneyError, match="not a whole number of units"):
        money_to_units(amount, PRICE)


def test_money_to_units_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        money_to_units(Decimal("0.00005"), PRICE)


@pytest.mark.parametrize("amount", [Decimal("NaN"), Decimal("-Infinity")])
def test_money_to_units_rejects_non_finite(amount: Decimal) -> None:
    with pytest.raises(MoneyError):
        money_to_units(amount, PRICE)


def test_money_to_units_rejects_float() -> None:
    with pytest.raises(TypeError):
        money_to_units(0.1, PRICE)  # type: ignore[arg-type]


def test_money_to_units_large_exact() -> None:
    amount = Decimal("123456789012345678901234567890.1234")
    assert money_to_units(amount, PRICE) == 1234567890123456789012345678901234


prices = st.sampled_from(
    [Decimal("0.0001"), Decimal("0.01"), Decimal("1"), Decimal("0.25"), Decimal("0.000001")]
)


@given(st.integers(-(10**30), 10**30), prices)
def test_round_trip_units_money_units(units: int, price: Decimal) -> None:
    assert money_to_units(units_to_money(units, price), price) == units


@given(st.integers(-(10**12), 10**12), st.integers(-(10**12), 10**12), prices)
def test_units_to_money_is_additive(a: int, b: int, price: Decimal) -> None:
    assert units_to_money(a + b, price) == units_to_money(a, price) + units_to_money(b, price)


# ----------------------------------------------------------------- format_money


@pytest.mark.parametrize(
    ("amount", "args", "shown"),
    [
        (Decimal("18.76"), (), "18,76"),
        (Decimal("18.76"), (2, "."), "18.76"),
        (Decimal("1.2"), (4,), "1,2000"),
        (Decimal("0.005"), (), "0,01"),  # half-up
        (Decimal("0.015"), (), "0,02"),
        (Decimal("-0.005"), (), "-0,01"),  # half away from zero
        (Decimal("-0.004"), (), "0,00"),  # never "-0,00"
        (Decimal("-0"), (), "0,00"),
        (Decimal("1234567.891"), (), "1234567,89"),
        (Decimal("7.5"), (0,), "8"),
        (Decimal("1E+3"), (), "1000,00"),
        (Decimal(12), (), "12,00"),
        (3, (), "3,00"),
    ],
)
def test_format_money(amount: Decimal, args: tuple[object, ...], shown: str) -> None:
    assert format_money(amount, *args) == shown  # type: ignore[arg-type]


@pytest.mark.parametrize("places", [-1, 1.5, True])
def test_format_money_rejects_bad_places(places: object) -> None:
    with pytest.raises(ValueError):
        format_money(Decimal(1), places)  # type: ignore[arg-type]


def test_format_money_rejects_float_and_nan() -> None:
    with pytest.raises(TypeError):
        format_money(1.5)  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        format_money(Decimal("NaN"))


@given(st.integers(-(10**20), 10**20))
def test_format_money_of_units_is_exact_at_four_places(units: int) -> None:
    text = format_money(units_to_money(units, PRICE), 4, ".")
    assert Decimal(text) == Decimal(units) / 10_000


# ----------------------------------------------------------------- parse_money


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("25", Decimal("25")),
        ("25,00", Decimal("25.00")),
        ("25.5", Decimal("25.5")),
        (" -1,30 ", Decimal("-1.30")),
        ("+3", Decimal("3")),
        (",5", Decimal("0.5")),
        ("5.", Decimal("5")),
    ],
)
def test_parse_money(text: str, value: Decimal) -> None:
    assert parse_money(text) == value


@pytest.mark.parametrize(
    "text", ["", " ", "-", "1,000.00", "1.2.3", "1e3", "abc", "NaN", "Infinity", "١٢", "--1", ","]
)
def test_parse_money_rejects(text: str) -> None:
    with pytest.raises(MoneyError):
        parse_money(text)


def test_parse_money_bounds_its_length() -> None:
    assert parse_money("1" * 20 + "." + "5" * 20) == Decimal("1" * 20 + "." + "5" * 20)
    for text in ["1" * 41, "0." + "1" * 40, "9" * 100_000]:
        with pytest.raises(MoneyError, match="too long"):
            parse_money(text)


@given(st.integers(-(10**15), 10**15))
def test_parse_format_round_trip(units: int) -> None:
    amount = units_to_money(units, PRICE)
    assert parse_money(format_money(amount, 4)) == amount
    assert money_to_units(parse_money(format_money(amount, 4)), PRICE) == units


def test_display_uses_the_currency_minor_unit() -> None:
    from ocs.money import display, minor_units

    price = Decimal("0.0001")
    assert display(239660, price, 978) == "23,97"  # was "23,966" beside "24,50"
    assert display(245000, price, 978) == "24,50"
    assert display(8000, price, 978) == "0,80"  # was "0,8" in CDRs
    assert display(-600, price, 978) == "-0,06"
    assert display(5, price, 978) == "0,00"
    assert display(12345, Decimal("1"), 392) == "12345"  # JPY: no minor unit
    assert display(12345, Decimal("0.001"), 48) == "12,345"  # BHD: 3 places
    assert minor_units(999_999) == 2
