"""Pure parts of the charging core: the request rules and the batch's account book."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocs.charging.book import Book
from ocs.charging.request_rules import (
    SessionRow,
    judge_continuation,
    judge_initial,
    needs_stored_answers,
)
from ocs.credit_control import CCAnswer, CCRequest, RequestType, ResultCode
from ocs.ledger import InsufficientCredit, InvalidAmount, LedgerError
from ocs.models import LedgerKind

AT = datetime(2026, 11, 25, tzinfo=UTC)


def req(kind: RequestType, number: int, *, t_flag: bool = False) -> CCRequest:
    return CCRequest("s", "h", "r", kind, number, retransmission=t_flag)


def row(*, open_: bool = True, last: int = 1, killed: bool = False) -> SessionRow:
    return SessionRow("s", 7, open_, last, killed)


STORED = CCAnswer(result_code=2001, request_type=RequestType.UPDATE, request_number=1)


def never() -> bool:
    raise AssertionError("refused_initial asked although not needed")


# --- request rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "row_", "needed"),
    [
        (req(RequestType.EVENT, 0), None, True),
        (req(RequestType.INITIAL, 0), None, False),
        (req(RequestType.INITIAL, 0, t_flag=True), None, True),
        (req(RequestType.INITIAL, 0), row(), True),
        (req(RequestType.UPDATE, 2), row(last=1), False),
        (req(RequestType.UPDATE, 1), row(last=1), True),
        (req(RequestType.UPDATE, 0), row(last=1), True),
        (req(RequestType.UPDATE, 5), row(open_=False), True),
        (req(RequestType.TERMINATE, 2), None, True),
    ],
)
def test_which_requests_need_stored_answers(request_, row_, needed) -> None:
    assert needs_stored_answers(request_, row_) is needed


def test_initial_rules() -> None:
    fresh = req(RequestType.INITIAL, 0)
    assert judge_initial(fresh, None, None) is None
    assert judge_initial(fresh, row(), STORED) is STORED
    assert judge_initial(fresh, None, STORED) is STORED  # a refused CCR-I's copy
    open_ = judge_initial(fresh, row(), None)
    assert open_ is not None and open_.result_code == ResultCode.UNABLE_TO_COMPLY
    assert open_.error_message == "session already open"
    closed = judge_initial(fresh, row(open_=False), None)
    assert closed is not None and closed.error_message == "session id in use"


@pytest.mark.parametrize(
    ("kind", "number", "row_", "stored", "refused", "code", "message"),
    [
        (RequestType.UPDATE, 2, row(last=1), None, never, None, None),
        (RequestType.TERMINATE, 9, row(last=1), None, never, None, None),
        (RequestType.UPDATE, 1, row(last=1), STORED, never, 2001, None),
        (RequestType.UPDATE, 1, row(open_=False), STORED, never, 2001, None),
        (
            RequestType.TERMINATE,
            1,
            row(last=1),
            None,
            never,
            5012,
            "CC-Request-Number already used",
        ),
        (RequestType.UPDATE, 0, row(last=1), None, never, 5012, "CC-Request-Number went backwards"),
        (RequestType.UPDATE, 3, row(open_=False), None, never, 5002, "session closed"),
        (RequestType.UPDATE, 3, None, None, lambda: False, 5002, "unknown session"),
        (RequestType.TERMINATE, 1, None, None, lambda: True, 2001, None),
    ],
)
def test_continuation_rules(kind, number, row_, stored, refused, code, message) -> None:
    verdict = judge_continuation(req(kind, number), row_, stored, refused)
    if code is None:
        assert verdict is None
        return
    assert verdict is not None
    assert (verdict.result_code, verdict.error_message) == (code, message)
    assert verdict.request_number == (stored.request_number if stored else number)


# --- the book ---------------------------------------------------------------------------------


def book(balance: int, reserved: int = 0, status: str = "active") -> Book:
    return Book({1: Book.row(1, balance, reserved, status)})


def test_reserve_takes_what_is_available_down_to_the_minimum() -> None:
    b = book(1000, 300)
    got = b.reserve(1, 500, 100)
    assert got is not None and (got.taken, got.available_after) == (500, 200)
    got = b.reserve(1, 500, 100)
    assert got is not None and (got.taken, got.available_after) == (200, 0)
    assert b.reserve(1, 500, 1) is None
    assert b.reserve(1, 10, 0) == b.reserve(1, 0) and b.get(1).reserved == 1000


def test_blocked_account_gets_no_reservation() -> None:
    b = book(1000, status="blocked")
    assert b.reserve(1, 10) is None
    assert b.reserve(1, 0) is not None


def test_settle_debits_at_most_reservation_plus_available() -> None:
    b = book(1000, 600)
    settled = b.settle(1, 600, 900, reference="s", at=AT)
    assert (settled.debited, settled.balance_after) == (900, 100)
    b = book(1000, 900)
    settled = b.settle(1, 500, 900, reference="s", at=AT)  # 400 held for another call
    assert settled.debited == 600 and b.get(1).reserved == 400
    with pytest.raises(LedgerError):
        b.settle(1, 401, 0, reference="x", at=AT)


def test_post_never_dips_into_reserved() -> None:
    b = book(1000, 700)
    with pytest.raises(InsufficientCredit):
        b.post(1, -301, LedgerKind.ADJUST, at=AT)
    assert b.post(1, -300, LedgerKind.ADJUST, at=AT) == 700
    with pytest.raises(InvalidAmount):
        b.post(1, -1, LedgerKind.CREDIT, at=AT)
    with pytest.raises(InvalidAmount):
        b.post(1, 0, LedgerKind.ADJUST, at=AT)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["reserve", "release", "settle", "post"]),
            st.integers(-500, 2000),
            st.integers(0, 2000),
        ),
        max_size=30,
    ),
    st.integers(0, 5000),
)
def test_book_keeps_the_invariants_and_rolls_back(ops, start) -> None:
    b = book(start)
    for name, x, y in ops:
        mark = b.mark()
        before = (b.get(1).balance, b.get(1).reserved, len(b.entries))
        try:
            if name == "reserve":
                b.reserve(1, x, y)
            elif name == "release":
                b.release(1, x)
            elif name == "settle":
                b.settle(1, y, max(0, x), reference="s", at=AT)
            else:
                b.post(1, x, LedgerKind.ADJUST, at=AT)
        except (LedgerError, InvalidAmount):
            assert (b.get(1).balance, b.get(1).reserved, len(b.entries)) == before
        row_ = b.get(1)
        assert 0 <= row_.reserved <= row_.balance  # I2
        assert row_.balance == start + sum(e[2] for e in b.entries)  # I1
        if y % 3 == 0:  # sometimes undo the step, as a failed request would
            b.rollback(mark)
            assert (b.get(1).balance, b.get(1).reserved, len(b.entries)) == before
