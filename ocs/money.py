"""Units ↔ money, exactly. Pure; no floats.

Balances, reservations and prices are integers in *units*; money is only ever derived from
them by multiplying with the configured unit price (a :class:`~decimal.Decimal`, 0.0001 € in
the brochure). Conversions are exact whatever the ambient decimal context: an operation that
would have to round raises instead.

Policies
--------
* :func:`money_to_units` **rejects** an amount that is not a whole number of units (e.g.
  0.00005 € at 0.0001 €/unit) rather than silently rounding a customer's credit.
* :func:`format_money` rounds half away from zero (``ROUND_HALF_UP``) to ``places`` for display
  only, and never prints ``-0,00``.
* :func:`per_minute` shows at least 4 decimal places like the brochure (``1,2000 Euros/min``),
  more if the exact value needs them.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext

__all__ = [
    "MAX_MONEY_DIGITS",
    "MINOR_UNITS",
    "MoneyError",
    "display",
    "format_money",
    "minor_units",
    "money_to_units",
    "parse_money",
    "per_minute",
    "units_to_money",
]

_PER_MINUTE_PLACES = 4
# Digits a typed amount may have: far beyond any real amount (10**15 units is 11 digits of
# money at 0.0001), small enough that parsing and converting it costs nothing.
MAX_MONEY_DIGITS = 40


class MoneyError(ValueError):
    """A money value or conversion that cannot be done exactly."""


def _decimal(value: object, name: str) -> Decimal:
    """``value`` as a finite Decimal; ints accepted, floats (inexact) refused."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"{name} must be a Decimal or int, got {type(value).__name__}")
    dec = Decimal(value)
    if not dec.is_finite():
        raise MoneyError(f"{name} must be finite, got {dec}")
    return dec


def _unit_price(unit_price: object) -> Decimal:
    price = _decimal(unit_price, "unit_price")
    if price <= 0:
        raise MoneyError(f"unit_price must be > 0, got {price}")
    return price


def _digits(value: Decimal) -> int:
    return len(value.as_tuple().digits)


def _places(value: Decimal) -> int:
    """Magnitude of the exponent of a finite Decimal (digits to shift it to an integer)."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite values only reach here
    return abs(exponent)


def units_to_money(units: int, unit_price: Decimal | int) -> Decimal:
    """``units × unit_price``, exact (``22600`` at ``0.0001`` → ``Decimal("2.2600")``)."""
    if isinstance(units, bool) or not isinstance(units, int):
        raise TypeError(f"units must be an int, got {type(units).__name__}")
    price = _unit_price(unit_price)
    with localcontext() as ctx:
        ctx.prec = len(str(abs(units))) + _digits(price) + 2
        ctx.traps[InvalidOperation] = True
        return Decimal(units) * price


def money_to_units(amount: Decimal | int, unit_price: Decimal | int) -> int:
    """The whole number of units worth ``amount`` (``Decimal("25")`` → ``250000``).

    Raises :class:`MoneyError` (a ``ValueError``) if ``amount`` is not an exact multiple of the
    unit price. The sign is kept; callers decide whether negative amounts are allowed.
    """
    value = _decimal(amount, "amount")
    price = _unit_price(unit_price)
    with localcontext() as ctx:
        ctx.prec = _digits(value) + _digits(price) + _places(value) + _places(price) + 2
        quotient, remainder = divmod(value, price)
    if remainder != 0:
        raise MoneyError(
            f"{value} is not a whole number of units at {price} per unit "
            f"(nearest below: {units_to_money(int(quotient) - (value < 0), price)})"
        )
    return int(quotient)


def format_money(amount: Decimal | int, places: int = 2, decimal_sep: str = ",") -> str:
    """``amount`` for display: ``places`` decimals (half-up), ``decimal_sep``, no grouping.

    ``format_money(Decimal("18.76"))`` → ``"18,76"``; ``format_money(Decimal("-0.06"))`` →
    ``"-0,06"``; ``format_money(Decimal("1.2"), 4)`` → ``"1,2000"``.
    """
    value = _decimal(amount, "amount")
    if isinstance(places, bool) or not isinstance(places, int) or places < 0:
        raise ValueError(f"places must be an int >= 0, got {places!r}")
    with localcontext() as ctx:
        ctx.prec = max(_digits(value) + places + _places(value), 1) + 2
        rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    if rounded == 0:
        rounded = abs(rounded)  # no "-0,00"
    text = f"{rounded:f}"
    return text.replace(".", decimal_sep) if decimal_sep != "." else text


def per_minute(rate_units_per_s: int, unit_price: Decimal | int) -> Decimal:
    """Money per minute for a rate in units/second: ``per_minute(200, 0.0001)`` → ``1.2000``.

    At least 4 decimal places (padded), more only if the exact value needs them.
    """
    if isinstance(rate_units_per_s, bool) or not isinstance(rate_units_per_s, int):
        raise TypeError(f"rate must be an int, got {type(rate_units_per_s).__name__}")
    exact = units_to_money(rate_units_per_s * 60, unit_price)
    exponent = exact.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent > -_PER_MINUTE_PLACES:
        with localcontext() as ctx:
            ctx.prec = _digits(exact) + _PER_MINUTE_PLACES + max(exponent, 0) + 2
            return exact.quantize(Decimal(1).scaleb(-_PER_MINUTE_PLACES))
    return exact


def parse_money(text: str) -> Decimal:
    """A money amount typed by a person: ``"25"``, ``"25,00"``, ``"-1.30"``.

    One optional sign, ASCII digits (at most ``MAX_MONEY_DIGITS``), and at most one decimal
    separator (``,`` or ``.``); no grouping separators, no exponent. Raises
    :class:`MoneyError` otherwise.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    raw = text.strip()
    body = raw[1:] if raw[:1] in ("+", "-") else raw
    normal = body.replace(",", ".")
    whole, _, frac = normal.partition(".")
    if (
        not (whole or frac)
        or "." in frac
        or not (whole == "" or (whole.isascii() and whole.isdigit()))
        or not (frac == "" or (frac.isascii() and frac.isdigit()))
    ):
        raise MoneyError(f"not a money amount: {text!r}")
    if len(whole) + len(frac) > MAX_MONEY_DIGITS:  # no multi-megabyte Decimal arithmetic
        raise MoneyError(f"amount too long: at most {MAX_MONEY_DIGITS} digits")
    sign = "-" if raw.startswith("-") else ""
    return Decimal(sign + (whole or "0") + ("." + frac if frac else ""))


# ISO 4217 numeric code -> digits after the decimal point of the currency's minor unit. Only
# currencies whose minor unit is not 2 need listing; 2 is the default.
MINOR_UNITS: dict[int, int] = {
    48: 3,  # BHD
    368: 3,  # IQD
    392: 0,  # JPY
    400: 3,  # JOD
    410: 0,  # KRW
    414: 3,  # KWD
    434: 3,  # LYD
    512: 3,  # OMR
    704: 0,  # VND
    788: 3,  # TND
    950: 0,  # XAF
    952: 0,  # XOF
    953: 0,  # XPF
}


def minor_units(currency_code: int) -> int:
    """Decimal places of the currency's minor unit (``978`` EUR → 2, ``392`` JPY → 0)."""
    return MINOR_UNITS.get(int(currency_code), 2)


def display(
    units: int, unit_price: Decimal | int, currency_code: int, decimal_sep: str = ","
) -> str:
    """The one way money is shown to people: units × unit price rounded half-up to the
    currency's minor unit (``239660`` at 0.0001 EUR → ``"23,97"``, ``245000`` → ``"24,50"``).
    Exact amounts stay available in units beside it."""
    return format_money(units_to_money(units, unit_price), minor_units(currency_code),
                        decimal_sep)
