"""Adjustments and call refunds: ledger entries with operator and reason, guarded amounts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from ocs import accounts, adjustments, ledger, tariffs
from ocs.config import Settings
from ocs.models import Account, Cdr, LedgerEntry, LedgerKind
from tests.calls import Call, CallRecorder


async def _account(number: str = "1001", credit: int = 10_000) -> Account:
    acc = await accounts.create_account(number)
    if credit:
        await ledger.credit(acc.id, credit, actor="test")
    return acc


async def _call(acc: Account, cost: int) -> Cdr:
    """A finished call as the engine leaves it: a CALL entry and its CDR."""
    await ledger.adjust(acc.id, -cost, actor="ocs", kind=LedgerKind.CALL, reference="s1")
    now = datetime.now(UTC)
    return await Cdr.create(account=acc, account_number=acc.number, session_id="s1",
                            dialed="0141587070", started_at=now, duration=13, cost=cost)


async def test_adjust_both_ways_with_reason_and_actor(db: Settings) -> None:
    acc = await _account()
    got = await adjustments.adjust("1001", -500, reason="  wrong credit  ", actor="alice")
    assert (got.units, got.balance_after, got.kind) == (-500, 9_500, LedgerKind.ADJUST)
    entry = await LedgerEntry.get(id=got.entry_id)
    assert (entry.kind, entry.amount, entry.actor, entry.note) == (
        LedgerKind.ADJUST, -500, "alice", "wrong credit")
    await adjustments.adjust("1001", 200, reason="goodwill", actor="bob")
    assert (await ledger.balance(acc.id)).balance == 9_700
    assert await ledger.invariant_violations(acc.id) == []


@pytest.mark.parametrize(("units", "reason", "field"), [
    (0, "x", "units"), (-5, "", "reason"), (-5, "   ", "reason"), (5, "x" * 256, "reason"),
])
async def test_adjust_refuses_bad_input(db: Settings, units: int, reason: str,
                                        field: str) -> None:
    await _account()
    with pytest.raises(adjustments.AdjustmentError) as err:
        await adjustments.adjust("1001", units, reason=reason, actor="alice")
    assert err.value.field == field
    assert await LedgerEntry.filter(kind=LedgerKind.ADJUST).count() == 0


async def test_negative_adjust_never_dips_into_reserved_units(db: Settings) -> None:
    acc = await _account(credit=10_000)
    await tariffs.import_tariffs([tariffs.parse_tariff({"prefix": "DEFAULT", "h1_rate": 200})])
    async with CallRecorder(ledger.store()) as rec:  # a live call holds 8000 (40 s at 200/s)
        await rec.answer(Call("1001", "0141587070", 40), at=datetime.now(UTC), session_id="live")
    assert (await ledger.balance(acc.id)).reserved == 8_000
    with pytest.raises(ledger.InsufficientCredit, match="2000 available"):
        await adjustments.adjust("1001", -2_001, reason="too much", actor="alice")
    await adjustments.adjust("1001", -2_000, reason="exactly what is free", actor="alice")
    bal = await ledger.balance(acc.id)
    assert (bal.balance, bal.reserved, bal.available) == (8_000, 8_000, 0)
    assert await ledger.invariant_violations(acc.id) == []


async def test_adjust_unknown_account(db: Settings) -> None:
    with pytest.raises(accounts.UnknownAccount):
        await adjustments.adjust("4040", 5, reason="x", actor="a")


async def test_refund_whole_call_then_nothing_left(db: Settings) -> None:
    acc = await _account()
    call = await _call(acc, 2_600)
    got = await adjustments.refund_call(call.id, reason="bad line", actor="alice")
    assert (got.units, got.balance_after, got.kind, got.account) == (
        2_600, 10_000, LedgerKind.REFUND, "1001")
    entry = await LedgerEntry.get(id=got.entry_id)
    assert entry.reference == f"cdr:{call.id}" and "bad line" in entry.note
    assert await adjustments.refunded(call.id) == 2_600
    with pytest.raises(adjustments.AdjustmentError, match="already been refunded"):
        await adjustments.refund_call(call.id, reason="again", actor="alice")
    assert await ledger.invariant_violations(acc.id) == []


async def test_partial_refunds_are_capped_at_the_cost(db: Settings) -> None:
    acc = await _account()
    call = await _call(acc, 2_600)
    await adjustments.refund_call(call.id, reason="part", actor="a", units=1_000)
    with pytest.raises(adjustments.AdjustmentError, match="1 to 1600"):
        await adjustments.refund_call(call.id, reason="too much", actor="a", units=1_601)
    with pytest.raises(adjustments.AdjustmentError):
        await adjustments.refund_call(call.id, reason="zero", actor="a", units=0)
    rest = await adjustments.refund_call(call.id, reason="rest", actor="a")
    assert rest.units == 1_600
    with pytest.raises(LookupError):
        await adjustments.refund_call(call.id + 1000, reason="x", actor="a")


async def test_concurrent_refunds_of_one_call_give_back_its_cost_once(db: Settings) -> None:
    acc = await _account()
    call = await _call(acc, 2_600)
    results = await asyncio.gather(
        *(adjustments.refund_call(call.id, reason=f"r{i}", actor="a") for i in range(6)),
        return_exceptions=True,
    )
    ok = [r for r in results if isinstance(r, adjustments.Correction)]
    assert len(ok) == 1
    assert all(isinstance(r, adjustments.AdjustmentError) for r in results if r not in ok)
    assert (await ledger.balance(acc.id)).balance == 10_000
