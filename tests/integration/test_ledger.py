"""Ledger operations against the real database (SQLite, or PostgreSQL with OCS_TEST_DB)."""

from __future__ import annotations

import asyncio

import pytest

from ocs import accounts, ledger
from ocs.models import LedgerEntry, LedgerKind


async def _account(number: str = "1001", credit: int = 0) -> int:
    acc = await accounts.create_account(number, pin="1234" + number[-2:])
    if credit:
        await ledger.credit(acc.id, credit, actor="test")
    return acc.id


async def test_credit_writes_entry_and_balance(db) -> None:
    aid = await _account()
    posted = await ledger.credit(aid, 250000, actor="test", note="initial")
    assert posted.balance_after == 250000
    entries = await LedgerEntry.filter(account_id=aid)
    assert [(e.kind, e.amount, e.balance_after) for e in entries] == [
        (LedgerKind.CREDIT, 250000, 250000)
    ]
    assert await ledger.invariant_violations(aid) == []


@pytest.mark.parametrize("amount", [0, -5, True])
async def test_credit_rejects_non_positive(db, amount) -> None:
    aid = await _account()
    with pytest.raises(ledger.InvalidAmount):
        await ledger.credit(aid, amount, actor="test")
    assert await LedgerEntry.filter(account_id=aid).count() == 0


@pytest.mark.parametrize("amount", [10**15 + 1, 2**63, -(10**15) - 1])
async def test_postings_beyond_the_per_operation_bound_are_refused(db, amount) -> None:
    aid = await _account()
    await ledger.credit(aid, 10**15, actor="test")  # the bound itself is accepted
    with pytest.raises(ledger.InvalidAmount, match="too large"):
        if amount > 0:
            await ledger.credit(aid, amount, actor="test")
        else:
            await ledger.adjust(aid, amount, actor="test", note="too much")
    assert await LedgerEntry.filter(account_id=aid).count() == 1
    assert (await ledger.balance(aid)).balance == 10**15


async def test_unknown_account(db) -> None:
    with pytest.raises(ledger.UnknownAccountId):
        await ledger.credit(999, 10, actor="test")
    with pytest.raises(ledger.UnknownAccountId):
        await ledger.balance(999)


@pytest.mark.ledger_only  # reserves and settles below the session layer
@pytest.mark.parametrize("strategy", list(ledger.Strategy))
async def test_reserve_partial_and_settle(db, strategy) -> None:
    store = ledger.store()
    if strategy is ledger.Strategy.LOCK and store.dialect == "sqlite":
        pytest.skip("FOR UPDATE is PostgreSQL only")  # not-applicable
    aid = await _account(credit=1000)
    got = await store.run(ledger.reserve(aid, 700, 1, strategy))
    assert got is not None and got.taken == 700 and got.available_after == 300
    got2 = await store.run(ledger.reserve(aid, 700, 1, strategy))
    assert got2 is not None and got2.taken == 300  # only what was left
    assert await store.run(ledger.reserve(aid, 10, 1, strategy)) is None
    s = await store.run(
        ledger.settle(aid, 700, 650, reference="s1", dialed="5173", duration=3, strategy=strategy)
    )
    assert (s.debited, s.balance_after) == (650, 350)
    # cost above reservation: takes what is available, never below zero
    s2 = await store.run(ledger.settle(aid, 300, 900, reference="s2", strategy=strategy))
    assert (s2.debited, s2.balance_after) == (350, 0)
    bal = await ledger.balance(aid)
    assert (bal.balance, bal.reserved) == (0, 0)
    assert await ledger.invariant_violations(aid) == []


@pytest.mark.ledger_only  # reserves and settles below the session layer
async def test_negative_adjust_cannot_touch_reserved(db) -> None:
    store = ledger.store()
    aid = await _account(credit=1000)
    await store.run(ledger.reserve(aid, 800))
    with pytest.raises(ledger.InsufficientCredit):
        await ledger.adjust(aid, -300, actor="test")
    await ledger.adjust(aid, -200, actor="test")
    bal = await ledger.balance(aid)
    assert (bal.balance, bal.reserved, bal.available) == (800, 800, 0)


@pytest.mark.ledger_only  # reserves and settles below the session layer
async def test_batch_isolates_failing_op(db) -> None:
    store = ledger.store()
    aid = await _account(credit=100)
    results = await store.run_batch(
        [
            ledger.post(aid, 50, LedgerKind.CREDIT),
            ledger.post(aid, -1000, LedgerKind.ADJUST),
            ledger.post(424242, 5, LedgerKind.CREDIT),
            ledger.reserve(aid, 20),
        ]
    )
    assert isinstance(results[0], ledger.Posted)
    assert isinstance(results[1], ledger.InsufficientCredit)
    assert isinstance(results[2], ledger.UnknownAccountId)
    assert results[3].taken == 20
    bal = await ledger.balance(aid)
    assert (bal.balance, bal.reserved) == (150, 20)
    assert await ledger.invariant_violations(aid) == []


@pytest.mark.ledger_only  # reserves and settles below the session layer
async def test_concurrent_reservations_never_overcommit(db) -> None:
    store = ledger.store()
    aid = await _account(credit=10_000)

    async def call(i: int) -> int:
        got = await store.run(ledger.reserve(aid, 300))
        if got is None:
            return 0
        await asyncio.sleep(0)
        cost = min(got.taken, 100 + i)
        await store.run(ledger.settle(aid, got.taken, cost, reference=f"c{i}"))
        return cost

    costs = await asyncio.gather(*(call(i) for i in range(60)))
    bal = await ledger.balance(aid)
    assert bal.reserved == 0
    assert bal.balance == 10_000 - sum(costs)
    assert await ledger.invariant_violations(aid) == []


async def test_operator_settings_round_trip(db) -> None:
    from decimal import Decimal

    from ocs.settings_store import SettingsError, load_operator_settings, save_operator_settings

    saved = await save_operator_settings(
        {"default_calling_address": "127.0.0.1:5082", "unit_price": "0,0002", "csv_separator": ";",
         "default_calling_forced": "on"}
    )
    loaded = await load_operator_settings()
    assert loaded == saved
    assert loaded.default_calling_address == "127.0.0.1:5082"
    assert loaded.unit_price == Decimal("0.0002") and loaded.default_calling_forced
    with pytest.raises(SettingsError) as err:
        await save_operator_settings({"timezone": "Mars/Olympus", "currency": "Dollars"})
    assert err.value.field == "timezone"
    assert (await load_operator_settings()).currency == "Euros"  # nothing half-written


async def test_blocked_account_gets_no_reservation(db) -> None:
    store = ledger.store()
    aid = await _account(credit=1000)
    acc = await accounts.get_account("1001")
    await accounts.update_account(acc, status="blocked")
    assert await asyncio.wait_for(store.run(ledger.reserve(aid, 100)), 5) is None
