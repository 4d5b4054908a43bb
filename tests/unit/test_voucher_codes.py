"""Voucher codes: random digits with a Luhn check digit that catches typing mistakes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocs import vouchers


def test_known_luhn_values() -> None:
    # Classic worked example: 7992739871 -> check digit 3.
    assert vouchers.luhn_digit("7992739871") == "3"
    assert vouchers.luhn_digit("000000000000000") == "0"


def test_new_codes_are_well_formed_and_different() -> None:
    codes = {vouchers.new_code() for _ in range(2000)}
    assert len(codes) == 2000
    for code in codes:
        assert len(code) == vouchers.CODE_DIGITS and code.isdigit()
        assert vouchers.normalise_code(code) == code


def test_spaces_and_dashes_are_ignored() -> None:
    code = vouchers.new_code()
    assert vouchers.normalise_code(vouchers.format_code(code)) == code
    assert vouchers.normalise_code("-".join([code[:8], code[8:]])) == code


@given(st.integers(min_value=0, max_value=10**15 - 1), st.integers(0, 15), st.integers(1, 9))
def test_any_single_digit_error_is_refused(body: int, position: int, delta: int) -> None:
    digits = f"{body:015d}"
    code = digits + vouchers.luhn_digit(digits)
    wrong = list(code)
    wrong[position] = str((int(wrong[position]) + delta) % 10)
    with pytest.raises(vouchers.MalformedCode):
        vouchers.normalise_code("".join(wrong))


@given(st.integers(min_value=0, max_value=10**15 - 1), st.integers(0, 14))
def test_adjacent_transpositions_are_refused(body: int, position: int) -> None:
    digits = f"{body:015d}"
    code = list(digits + vouchers.luhn_digit(digits))
    a, b = code[position], code[position + 1]
    # Luhn's known blind spot is 09 <-> 90; every other different pair is caught.
    if a == b or {a, b} == {"0", "9"}:
        return
    code[position], code[position + 1] = b, a
    with pytest.raises(vouchers.MalformedCode):
        vouchers.normalise_code("".join(code))


@pytest.mark.parametrize("text", ["", "123", "12345678901234567", "abcd efgh ijkl mnop"])
def test_malformed_text(text: str) -> None:
    with pytest.raises(vouchers.MalformedCode):
        vouchers.normalise_code(text)
