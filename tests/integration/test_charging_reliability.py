"""Money defects found by attacking the charging core (issue 13), each reproduced here:
events retransmitted after a later event, late retransmissions answered differently by two
processes, an operator's cut ignored by a switch that never answers ASR, negative
adjustments, internal errors passed off as duplicate Session-Ids, the currency code."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest

from ocs import accounts, ledger
from ocs.charging import calls
from ocs.charging.engine import ChargingEngine
from ocs.credit_control import RequestedAction, RequestType, ResultCode
from ocs.demo import load_demo
from ocs.diameter.errors import RequestTimeout
from ocs.events import EventBus
from ocs.models import Cdr, LedgerEntry, LedgerKind
from ocs.settings_store import save_operator_settings
from tests.calls import Clock, ccr

DEBIT = RequestedAction.DIRECT_DEBITING


def engine_on(clock: Clock) -> ChargingEngine:
    return ChargingEngine(ledger.store(), EventBus(), clock=clock, tcc_interval=3600)


@pytest.fixture
async def two(db):
    """Two engines on one database: two OCS processes, or one before and after a restart."""
    await load_demo()
    clock = Clock(datetime(2026, 11, 25, 10, 0, tzinfo=UTC))
    a, b = engine_on(clock), engine_on(clock)
    await a.start()
    await b.start()
    yield a, b, clock
    await a.stop()
    await b.stop()


async def available(number: str) -> int:
    return (await accounts.get_account(number)).available


async def test_event_retransmitted_after_a_later_event_is_not_debited_again(two) -> None:
    a, b, _ = two
    e0 = await a.handle(ccr("ev", RequestType.EVENT, 0, action=DEBIT, requested=10))
    e1 = await a.handle(ccr("ev", RequestType.EVENT, 1, action=DEBIT, requested=20))
    assert (e0.cost_units, e1.cost_units) == (2000, 4000)
    # E#0 again, T flag set, reaching the other process (or this one after a restart)
    again = await b.handle(
        ccr("ev", RequestType.EVENT, 0, action=DEBIT, requested=10, retransmission=True)
    )
    assert again == e0
    assert await LedgerEntry.filter(reference="ev").count() == 2
    assert await available("1001") == 250000 - 6000


async def test_late_initial_gets_the_same_answer_from_every_process(two) -> None:
    a, b, clock = two
    i = await a.handle(ccr("li", RequestType.INITIAL, 0, requested=60))
    clock.advance(20)
    await a.handle(ccr("li", RequestType.TERMINATE, 1, used=20))
    late_a = await a.handle(ccr("li", RequestType.INITIAL, 0, requested=60))
    late_b = await b.handle(ccr("li", RequestType.INITIAL, 0, requested=60, retransmission=True))
    late_b_plain = await b.handle(ccr("li", RequestType.INITIAL, 0, requested=60))
    assert late_a == late_b == late_b_plain == i
    assert await LedgerEntry.filter(reference="li").count() == 1


async def test_late_update_gets_the_same_answer_from_every_process(two) -> None:
    a, b, clock = two
    await a.handle(ccr("lu", RequestType.INITIAL, 0, requested=30))
    clock.advance(30)
    u = await a.handle(ccr("lu", RequestType.UPDATE, 1, requested=30, used=30))
    clock.advance(10)
    await a.handle(ccr("lu", RequestType.TERMINATE, 2, used=10))
    from_a = await a.handle(ccr("lu", RequestType.UPDATE, 1, requested=30, used=30))
    from_b = await b.handle(ccr("lu", RequestType.UPDATE, 1, requested=30, used=30))
    assert from_a == from_b == u
    assert (await accounts.get_account("1001")).balance == 250000 - 40 * 200


async def test_refused_initial_is_answered_alike_by_another_process(two) -> None:
    a, b, _ = two
    acc = await accounts.get_account("1001")
    await ledger.adjust(acc.id, -250000, actor="test")
    refused = await a.handle(ccr("ri", RequestType.INITIAL, 0, requested=30))
    assert refused.result_code == ResultCode.CREDIT_LIMIT_REACHED
    await ledger.credit(acc.id, 50000, actor="test")
    copy = await b.handle(ccr("ri", RequestType.INITIAL, 0, requested=30, retransmission=True))
    assert copy == refused
    # Kamailio's CCR-T after a refused CCR-I is harmless, from either process
    t = await b.handle(ccr("ri", RequestType.TERMINATE, 1, used=0))
    assert t.result_code == 2001
    assert await available("1001") == 50000


class SwitchIgnoringAsr:
    """Kamailio 5.6 ims_charging: takes the ASR and never answers it."""

    def __init__(self) -> None:
        self.asr: list[str] = []

    async def send_asr(self, session_id: str) -> int:
        self.asr.append(session_id)
        await asyncio.sleep(0.05)
        raise RequestTimeout("no ASA")

    async def send_rar(self, session_id: str) -> int:
        raise RequestTimeout("no RAA")


async def test_killed_call_gets_no_more_credit_when_the_switch_ignores_asr(two) -> None:
    a, b, clock = two
    switch = SwitchIgnoringAsr()
    a.set_gateway(switch)
    await a.handle(ccr("k", RequestType.INITIAL, 0, requested=30, mscc=True))
    with pytest.raises(RequestTimeout):
        await a.kill("k")
    assert switch.asr == ["k"]
    clock.advance(30)
    # the switch carries on and asks for more, here or at the other process
    u = await b.handle(ccr("k", RequestType.UPDATE, 1, requested=30, used=30, mscc=True))
    assert u.result_code == ResultCode.CREDIT_LIMIT_REACHED
    assert u.mscc is not None and u.mscc[0].result_code == ResultCode.CREDIT_LIMIT_REACHED
    assert u.mscc[0].granted_time is None
    # what was used is charged, nothing more is reserved
    acc = await accounts.get_account("1001")
    assert (acc.balance, acc.reserved) == (250000, 30 * 200)
    t = await a.handle(ccr("k", RequestType.TERMINATE, 2, used=0, mscc=True))
    assert t.result_code == 2001 and t.cost_units == 6000
    acc = await accounts.get_account("1001")
    assert (acc.balance, acc.reserved) == (250000 - 6000, 0)
    with pytest.raises(LookupError):
        await a.kill("k")


async def test_killed_call_whose_switch_goes_silent_is_closed_soon(two) -> None:
    a, _, clock = two
    a.set_gateway(SwitchIgnoringAsr())
    first = await a.handle(ccr("ks", RequestType.INITIAL, 0, requested=60))
    assert first.validity_time >= 600  # the next Tcc check would be 10 minutes away
    with pytest.raises(RequestTimeout):
        await a.kill("ks")
    clock.advance(a.grace + 1)
    assert await a.expire_idle() == ["ks"]
    cdr = await Cdr.get(session_id="ks")
    assert cdr.end_reason == calls.KILLED


async def test_negative_adjustment_is_a_ledger_entry_and_never_touches_reservations(db) -> None:
    await load_demo()
    acc = await accounts.get_account("1002")
    clock = Clock(datetime(2026, 11, 25, 10, 0, tzinfo=UTC))
    eng = engine_on(clock)
    await eng.start()
    try:
        await eng.handle(ccr("adj", RequestType.INITIAL, 0, sub="1002", requested=600))
        posted = await ledger.adjust(acc.id, -500, actor="alice", note="wrong credit")
        assert posted.amount == -500 and posted.balance_after == 250000 - 500
        with pytest.raises(ledger.InsufficientCredit):  # would eat the call's reservation
            await ledger.adjust(acc.id, -(250000 - 500 - 120000 + 1), actor="alice")
        after = await accounts.get_account("1002")
        assert (after.balance, after.reserved) == (249500, 120000)
        entries = await LedgerEntry.filter(account_id=acc.id, kind=LedgerKind.ADJUST)
        assert [(e.amount, e.actor, e.note) for e in entries] == [(-500, "alice", "wrong credit")]
        assert await ledger.invariant_violations(acc.id) == []
    finally:
        await eng.stop()


async def test_internal_error_at_initial_is_not_called_a_duplicate(two, monkeypatch, caplog):
    a, _, _ = two

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("rating exploded")

    monkeypatch.setattr(calls, "initial", broken)
    with caplog.at_level(logging.ERROR, logger="ocs.charging"):
        answer = await a.handle(ccr("ie", RequestType.INITIAL, 0, requested=30))
    assert answer.result_code == ResultCode.UNABLE_TO_COMPLY
    assert answer.error_message == "internal error: RuntimeError"
    assert "in use" not in (answer.error_message or "")
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert logged, "the error is logged with its traceback"
    assert await available("1001") == 250000


async def test_answers_carry_the_configured_currency_and_unit_price(two) -> None:
    a, _, _ = two
    await save_operator_settings({"currency_code": 840, "unit_price": "0.0005"})
    await a.refresh()
    i = await a.handle(ccr("cur", RequestType.INITIAL, 0, requested=30))
    assert (i.currency_code, i.unit_price_digits, i.unit_price_exponent) == (840, 5, -4)
    e = await a.handle(
        ccr("cur-e", RequestType.EVENT, 0, action=RequestedAction.PRICE_ENQUIRY, requested=10)
    )
    assert e.currency_code == 840 and e.cost_units == 2000
