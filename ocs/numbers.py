"""Strict number parsing for operator input: ASCII digits only, bounded.

Python's `int()` and `Decimal()` accept any Unicode decimal digit ("١٠" is 10) and
`str.isdigit()` is true for "²", which `int()` then refuses with an unhandled ValueError.
Money and unit fields go through these instead.
"""

from __future__ import annotations

from typing import Any

# Largest amount one operation may move: 10**15 units (10**11 money units at 0.0001),
# far below the 64-bit balance column so sums of many credits still fit.
MAX_UNITS = 10**15


class NumberError(ValueError):
    """Not a plain whole number, or out of range."""


def is_ascii_digits(text: str) -> bool:
    return bool(text) and text.isascii() and text.isdigit()


def parse_int(raw: Any, *, lo: int | None = None, hi: int | None = None) -> int:
    """A whole number from an int or a string of ASCII digits with an optional sign."""
    if isinstance(raw, bool):
        raise NumberError("not a whole number")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str):
        text = raw.strip()
        body = text[1:] if text[:1] in "+-" else text
        if not is_ascii_digits(body) or len(body) > 30:
            raise NumberError(f"not a whole number: {raw!r}")
        value = int(text)
    else:
        raise NumberError(f"not a whole number: {raw!r}")
    if lo is not None and value < lo:
        raise NumberError(f"must be at least {lo}")
    if hi is not None and value > hi:
        raise NumberError(f"must be at most {hi}")
    return value


def check_units(units: int) -> int:
    """`units` when it is within what one operation may move, else NumberError."""
    if abs(units) > MAX_UNITS:
        raise NumberError(f"amount too large: at most {MAX_UNITS} units per operation")
    return units
