"""The batch's in-memory book does exactly what the ledger's single-row statements do.

`ocs.ledger.reserve/release/settle/post` are the reference: each is one guarded statement on
the account row (I2, I3). The set-based batch computes the same operations in memory
(`ocs.charging.book.Book`) and writes the result once; this runs random sequences of them
through both and compares every result and the account afterwards."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocs import accounts, ledger
from ocs.charging.book import Book
from ocs.models import LedgerKind

AT = datetime(2026, 11, 25, tzinfo=UTC)
_numbers = itertools.count(100000)
OPS = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "release", "settle", "post"]),
        st.integers(-3000, 3000),
        st.integers(0, 3000),
    ),
    min_size=1,
    max_size=25,
)


async def _through_ledger(account_id: int, ops: list[tuple[str, int, int]]) -> list[Any]:
    store = ledger.store()
    out: list[Any] = []
    for name, x, y in ops:
        if name == "reserve":
            op: Any = ledger.reserve(account_id, x, y)
        elif name == "release":
            op = ledger.release(account_id, x)
        elif name == "settle":
            op = ledger.settle(account_id, y, max(0, x), reference="s", at=AT)
        else:
            op = ledger.post(account_id, x, LedgerKind.ADJUST, at=AT)
        result = (await store.run_batch([op]))[0]
        out.append(_shape(result))
    bal = await store.run(ledger.read_balance(account_id))
    out.append((bal.balance, bal.reserved))
    return out


def _through_book(start: int, ops: list[tuple[str, int, int]]) -> list[Any]:
    b = Book({1: Book.row(1, start, 0, "active")})
    out: list[Any] = []
    for name, x, y in ops:
        mark = b.mark()
        try:
            if name == "reserve":
                result: Any = b.reserve(1, x, y)
            elif name == "release":
                result = b.release(1, x)
            elif name == "settle":
                result = b.settle(1, y, max(0, x), reference="s", at=AT)
            else:
                result = b.post(1, x, LedgerKind.ADJUST, at=AT)
        except Exception as exc:  # noqa: BLE001 -- compared with what the ledger raised
            b.rollback(mark)
            result = exc
        out.append(_shape(result))
    out.append((b.get(1).balance, b.get(1).reserved))
    return out


def _shape(result: Any) -> Any:
    """What both sides can be compared on (entry ids exist only in the database)."""
    if isinstance(result, BaseException):
        return type(result).__name__
    if isinstance(result, ledger.Settled):
        return ("settled", result.debited, result.balance_after)
    if isinstance(result, ledger.Posted):
        return result.balance_after
    return result


@pytest.mark.ledger_only  # drives ocs.ledger below sessions and CDRs
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS, start=st.integers(0, 6000))
async def test_book_and_ledger_statements_agree(db, ops, start) -> None:
    account = await accounts.create_account(str(next(_numbers)))
    if start:
        await ledger.store().run(ledger.post(account.id, start, LedgerKind.CREDIT, at=AT))
    assert await _through_ledger(account.id, ops) == _through_book(start, ops)
