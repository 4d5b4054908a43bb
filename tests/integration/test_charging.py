"""The charging engine against the real database: grants, debits, refusals, idempotency."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import pytest

from ocs import accounts, ledger, tariffs
from ocs.charging.engine import ChargingEngine
from ocs.credit_control import (
    FinalUnitAction,
    MsccRequest,
    RequestedAction,
    RequestType,
    ResultCode,
    SubscriptionIdType,
    UsedUnits,
)
from ocs.demo import load_demo
from ocs.events import EventBus
from ocs.models import Cdr, CreditSession, LedgerEntry
from tests.calls import Clock, ccr

E164 = SubscriptionIdType.END_USER_E164
PRIVATE = SubscriptionIdType.END_USER_PRIVATE


@pytest.fixture
async def engine(db):
    await load_demo()
    bus = EventBus()
    clock = Clock(datetime(2026, 11, 25, 10, 0, tzinfo=UTC))
    eng = ChargingEngine(ledger.store(), bus, clock=clock, tcc_interval=3600)
    await eng.start()
    eng.test_clock = clock  # type: ignore[attr-defined]
    yield eng
    await eng.stop()


async def available(number: str) -> int:
    acc = await accounts.get_account(number)
    return acc.available


async def test_brochure_call_65_seconds(engine) -> None:
    a = await engine.handle(ccr("s1", RequestType.INITIAL, 0, requested=30))
    assert a.result_code == 2001 and a.granted_time == 30
    assert a.validity_time >= 30 and a.final_unit_action is None
    assert a.remaining_balance == 250000 - 30 * 200
    engine.test_clock.advance(30)
    u = await engine.handle(ccr("s1", RequestType.UPDATE, 1, requested=30, used=30))
    assert u.result_code == 2001 and u.granted_time == 30
    engine.test_clock.advance(30)
    u2 = await engine.handle(ccr("s1", RequestType.UPDATE, 2, requested=30, used=30))
    assert u2.granted_time == 30
    engine.test_clock.advance(5)
    t = await engine.handle(ccr("s1", RequestType.TERMINATE, 3, used=5))
    assert t.result_code == 2001 and t.cost_units == 13000
    acc = await accounts.get_account("1001")
    assert (acc.balance, acc.reserved) == (250000 - 13000, 0)
    cdr = await Cdr.get(session_id="s1")
    assert (cdr.duration, cdr.cost, cdr.dialed, cdr.account_number) == (
        65,
        13000,
        "33141587070",
        "1001",
    )
    entry = await LedgerEntry.get(reference="s1")
    assert (entry.amount, entry.duration, entry.dialed) == (-13000, 65, "33141587070")
    assert await ledger.invariant_violations(acc.id) == []
    session = await CreditSession.get(session_id="s1")
    assert session.state == "closed" and session.end_reason == "NORMAL"


async def test_e164_caller_id_and_mscc(engine) -> None:
    a = await engine.handle(
        ccr("m1", RequestType.INITIAL, 0, sub="+5173", sub_type=E164, requested=60, mscc=True)
    )
    assert a.result_code == 2001 and a.mscc is not None
    (m,) = a.mscc
    assert (m.result_code, m.rating_group, m.service_identifier, m.granted_time) == (
        2001,
        100,
        1000,
        60,
    )
    t = await engine.handle(ccr("m1", RequestType.TERMINATE, 1, used=13, mscc=True))
    assert t.cost_units == 2600


async def test_unknown_subscriber_and_destinations(engine) -> None:
    a = await engine.handle(ccr("u1", RequestType.INITIAL, 0, sub="999999"))
    assert a.result_code == ResultCode.USER_UNKNOWN
    await tariffs.import_tariffs(
        [tariffs.parse_tariff({"prefix": "0899", "h1_rate": 1, "barred": True})]
    )
    await engine.refresh()
    b = await engine.handle(ccr("u2", RequestType.INITIAL, 0, called="tel:0899123456"))
    assert b.result_code == ResultCode.END_USER_SERVICE_DENIED
    c = await engine.handle(ccr("u3", RequestType.INITIAL, 0, called="not a number"))
    assert c.result_code == ResultCode.INVALID_AVP_VALUE and c.failed_avp_code == 832
    d = await engine.handle(ccr("u4", RequestType.INITIAL, 0, called=None))
    assert d.result_code == ResultCode.MISSING_AVP
    # a CCR-T after a refused CCR-I (Kamailio does this) is harmless
    t = await engine.handle(ccr("u1", RequestType.TERMINATE, 1, sub="999999", used=0))
    assert t.result_code == 2001
    assert await available("1001") == 250000


async def test_no_tariff_is_rating_failed(engine) -> None:
    for t in await tariffs.list_tariffs():
        if t.prefix == "DEFAULT":
            await tariffs.delete_tariff(t.id)
    await engine.refresh()
    a = await engine.handle(ccr("r1", RequestType.INITIAL, 0, called="tel:0555"))
    assert a.result_code == ResultCode.RATING_FAILED


async def test_low_balance_gets_final_unit_then_limit(engine) -> None:
    acc = await accounts.get_account("1001")
    await ledger.adjust(acc.id, -(250000 - 9000), actor="test")  # 45 s at 200 u/s
    a = await engine.handle(ccr("f1", RequestType.INITIAL, 0, requested=60))
    assert a.result_code == 2001 and a.granted_time == 45
    assert a.final_unit_action is FinalUnitAction.TERMINATE
    assert a.remaining_balance == 0
    engine.test_clock.advance(45)
    u = await engine.handle(ccr("f1", RequestType.UPDATE, 1, requested=60, used=45))
    assert u.result_code == ResultCode.CREDIT_LIMIT_REACHED
    t = await engine.handle(ccr("f1", RequestType.TERMINATE, 2, used=0))
    assert t.cost_units == 9000
    acc = await accounts.get_account("1001")
    assert (acc.balance, acc.reserved) == (0, 0)
    none = await engine.handle(ccr("f2", RequestType.INITIAL, 0, requested=60))
    assert none.result_code == ResultCode.CREDIT_LIMIT_REACHED


async def test_exact_fit_gets_final_unit(engine) -> None:
    acc = await accounts.get_account("1001")
    await ledger.adjust(acc.id, -(250000 - 12000), actor="test")  # exactly 60 s
    a = await engine.handle(ccr("x1", RequestType.INITIAL, 0, requested=60))
    assert a.granted_time == 60 and a.final_unit_action is FinalUnitAction.TERMINATE


async def test_retransmissions_are_not_charged_twice(engine) -> None:
    i1 = await engine.handle(ccr("d1", RequestType.INITIAL, 0, requested=60))
    i2 = await engine.handle(ccr("d1", RequestType.INITIAL, 0, requested=60))
    assert i1 == i2
    engine.test_clock.advance(60)
    u1, u2 = await asyncio.gather(
        engine.handle(ccr("d1", RequestType.UPDATE, 1, requested=60, used=60)),
        engine.handle(ccr("d1", RequestType.UPDATE, 1, requested=60, used=60)),
    )
    assert u1 == u2
    t1 = await engine.handle(ccr("d1", RequestType.TERMINATE, 2, used=10))
    t2 = await engine.handle(ccr("d1", RequestType.TERMINATE, 2, used=10))
    assert t1 == t2 and t1.cost_units == 70 * 200
    assert await LedgerEntry.filter(reference="d1").count() == 1
    assert await available("1001") == 250000 - 14000


async def test_retransmission_served_from_database_after_restart(engine, db) -> None:
    await engine.handle(ccr("p1", RequestType.INITIAL, 0, requested=60))
    t1 = await engine.handle(ccr("p1", RequestType.TERMINATE, 1, used=3))
    fresh = ChargingEngine(ledger.store(), EventBus(), clock=engine.clock, tcc_interval=3600)
    await fresh.start()
    try:
        t2 = await fresh.handle(ccr("p1", RequestType.TERMINATE, 1, used=3))
    finally:
        await fresh.stop()
    assert t2.result_code == t1.result_code and t2.cost_units == 600
    assert await LedgerEntry.filter(reference="p1").count() == 1


async def test_other_process_continues_a_session(engine) -> None:
    await engine.handle(ccr("o1", RequestType.INITIAL, 0, requested=60))
    other = ChargingEngine(ledger.store(), EventBus(), clock=engine.clock, tcc_interval=3600)
    await other.start()
    try:
        engine.test_clock.advance(60)
        u = await other.handle(ccr("o1", RequestType.UPDATE, 1, requested=60, used=60))
        assert u.result_code == 2001 and u.granted_time == 60
        t = await other.handle(ccr("o1", RequestType.TERMINATE, 2, used=20))
        assert t.cost_units == 80 * 200
    finally:
        await other.stop()


async def test_unanswered_call_releases_everything(engine) -> None:
    await engine.handle(ccr("n1", RequestType.INITIAL, 0, requested=120))
    assert await available("1001") == 250000 - 24000
    t = await engine.handle(ccr("n1", RequestType.TERMINATE, 1, used=0))
    assert t.result_code == 2001 and t.cost_units == 0
    assert await available("1001") == 250000
    assert await LedgerEntry.filter(reference="n1").count() == 0
    assert (await Cdr.get(session_id="n1")).duration == 0


async def test_unknown_session_update(engine) -> None:
    u = await engine.handle(ccr("nope", RequestType.UPDATE, 1, used=5))
    assert u.result_code == ResultCode.UNKNOWN_SESSION_ID


async def test_tariff_time_change_and_usage_split(engine) -> None:
    await tariffs.import_tariffs(
        [
            tariffs.parse_tariff(
                {"prefix": "44", "h1_rate": 100, "h2_begin": 12, "h2_end": 20, "h2_rate": 50}
            )
        ]
    )
    await engine.refresh()
    # 11:59:30 Paris = 10:59:30 UTC; H2 starts at 12:00 local
    engine.test_clock.at = datetime(2026, 11, 25, 10, 59, 30, tzinfo=UTC)
    a = await engine.handle(
        ccr("t1", RequestType.INITIAL, 0, called="tel:+447700900000", requested=60)
    )
    assert a.tariff_time_change == datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
    assert a.granted_time == 60
    engine.test_clock.advance(60)
    t = await engine.handle(ccr("t1", RequestType.TERMINATE, 1, tcu=(30, 30)))
    assert t.cost_units == 30 * 100 + 30 * 50


async def test_events(engine) -> None:
    bal = await engine.handle(
        ccr("e1", RequestType.EVENT, 0, action=RequestedAction.CHECK_BALANCE, called=None)
    )
    assert bal.result_code == 2001 and bal.remaining_balance == 250000
    price = await engine.handle(
        ccr(
            "e2",
            RequestType.EVENT,
            0,
            action=RequestedAction.PRICE_ENQUIRY,
            called="tel:38123",
            requested=60,
        )
    )
    assert price.cost_units == 60 * 180
    debit = await engine.handle(
        ccr(
            "e3",
            RequestType.EVENT,
            0,
            action=RequestedAction.DIRECT_DEBITING,
            called="tel:42123",
            requested=10,
        )
    )
    assert debit.result_code == 2001 and debit.cost_units == 2500
    again = await engine.handle(
        ccr(
            "e3",
            RequestType.EVENT,
            0,
            action=RequestedAction.DIRECT_DEBITING,
            called="tel:42123",
            requested=10,
        )
    )
    assert again == debit
    refund = await engine.handle(
        ccr(
            "e3",
            RequestType.EVENT,
            1,
            action=RequestedAction.REFUND_ACCOUNT,
            called="tel:42123",
            requested=4,
        )
    )
    assert refund.result_code == 2001 and refund.cost_units == 1000
    # never more than the session debited, and nothing for a session that debited nothing
    greedy = await engine.handle(
        ccr(
            "e3",
            RequestType.EVENT,
            2,
            action=RequestedAction.REFUND_ACCOUNT,
            called="tel:42123",
            requested=3600,
        )
    )
    assert greedy.result_code == 2001 and greedy.cost_units == 1500
    empty = await engine.handle(
        ccr(
            "e4",
            RequestType.EVENT,
            0,
            action=RequestedAction.REFUND_ACCOUNT,
            called="tel:42123",
            requested=4,
        )
    )
    assert empty.result_code == ResultCode.INVALID_AVP_VALUE
    assert await available("1001") == 250000
    too_much = await engine.handle(
        ccr("e5", RequestType.EVENT, 0, action=RequestedAction.DIRECT_DEBITING, requested=2000)
    )
    assert too_much.result_code == ResultCode.CREDIT_LIMIT_REACHED
    assert await available("1001") == 250000


async def test_tcc_closes_silent_session(engine) -> None:
    a = await engine.handle(ccr("z1", RequestType.INITIAL, 0, requested=60))
    assert a.validity_time >= 60
    engine.test_clock.advance(a.validity_time + engine.grace + 1)
    closed = await engine.expire_idle()
    assert closed == ["z1"]
    cdr = await Cdr.get(session_id="z1")
    assert (cdr.end_reason, cdr.duration, cdr.cost) == ("TCC_EXPIRED", 60, 12000)
    acc = await accounts.get_account("1001")
    assert (acc.balance, acc.reserved) == (250000 - 12000, 0)
    late = await engine.handle(ccr("z1", RequestType.TERMINATE, 1, used=60))
    assert late.result_code == ResultCode.UNKNOWN_SESSION_ID
    assert await LedgerEntry.filter(reference="z1").count() == 1


async def test_orphaned_session_closed_by_another_engine(engine) -> None:
    await engine.handle(ccr("orph", RequestType.INITIAL, 0, requested=60))
    other = ChargingEngine(ledger.store(), EventBus(), clock=engine.clock, tcc_interval=3600)
    await other.start()
    try:
        engine.test_clock.advance(3600)
        assert await other.expire_idle() == ["orph"]
    finally:
        await other.stop()
    assert (await accounts.get_account("1001")).reserved == 0


async def test_bus_events(engine) -> None:
    with engine.bus.subscribe() as sub:
        await engine.handle(ccr("b1", RequestType.INITIAL, 0, requested=60))
        await engine.handle(ccr("b1", RequestType.TERMINATE, 1, used=3))
        kinds = [(await sub.get(1)).kind for _ in range(3)]
    assert kinds == ["session.start", "session.end", "credit.change"]


async def test_many_concurrent_sessions_one_account(engine) -> None:
    acc = await accounts.get_account("1002")
    await ledger.adjust(acc.id, -(250000 - 100_000), actor="test")  # 500 s of credit

    async def call(i: int) -> int:
        sid = f"c{i}"
        a = await engine.handle(ccr(sid, RequestType.INITIAL, 0, sub="1002", requested=30))
        if a.result_code != 2001:
            return 0
        used = min(a.granted_time, 7 + i % 20)
        t = await engine.handle(ccr(sid, RequestType.TERMINATE, 1, sub="1002", used=used))
        return t.cost_units

    costs = await asyncio.gather(*(call(i) for i in range(200)))
    acc = await accounts.get_account("1002")
    assert acc.reserved == 0
    assert acc.balance == 100_000 - sum(costs)
    assert acc.balance >= 0
    assert await ledger.invariant_violations(acc.id) == []
    assert engine.batches < 400  # requests really were grouped


# --- regressions found in review ---------------------------------------------------------


async def test_blocked_mid_call_does_not_hang(engine) -> None:
    await engine.handle(ccr("k1", RequestType.INITIAL, 0, requested=30))
    acc = await accounts.get_account("1001")
    await accounts.update_account(acc, status="blocked")
    u = await asyncio.wait_for(
        engine.handle(ccr("k1", RequestType.UPDATE, 1, requested=30, used=30)), 5
    )
    assert u.result_code == ResultCode.CREDIT_LIMIT_REACHED
    t = await engine.handle(ccr("k1", RequestType.TERMINATE, 2, used=0))
    assert t.cost_units == 6000


async def test_late_update_after_tcc_close_is_not_charged_again(engine) -> None:
    await engine.handle(ccr("other", RequestType.INITIAL, 0, requested=60))
    a = await engine.handle(ccr("s", RequestType.INITIAL, 0, requested=30))
    engine.test_clock.advance(a.validity_time + engine.grace + 1)
    stale = engine._live["s"]
    assert "s" in await engine.expire_idle()
    engine._live["s"] = stale  # a late CCR-U still holding the old copy
    u = await engine.handle(ccr("s", RequestType.UPDATE, 1, requested=30, used=30))
    assert u.result_code == ResultCode.UNKNOWN_SESSION_ID
    assert await LedgerEntry.filter(reference="s").count() == 1
    engine.test_clock.advance(-(a.validity_time + engine.grace + 1))


async def test_two_engines_never_close_one_session_twice(engine) -> None:
    a = await engine.handle(ccr("s2", RequestType.INITIAL, 0, requested=30))
    await engine.handle(ccr("keep", RequestType.INITIAL, 0, requested=60))
    other = ChargingEngine(ledger.store(), EventBus(), clock=engine.clock, tcc_interval=3600)
    await other.start()
    try:
        engine.test_clock.advance(a.validity_time + engine.grace + 1)
        await engine.handle(ccr("keep", RequestType.UPDATE, 1, requested=60, used=60))
        assert await other.expire_idle() == ["s2"]
        assert await engine.expire_idle() == []
    finally:
        await other.stop()
    assert await LedgerEntry.filter(reference="s2").count() == 1
    t = await engine.handle(ccr("keep", RequestType.TERMINATE, 2, used=10))
    assert t.result_code == 2001 and t.cost_units == 70 * 200
    acc = await accounts.get_account("1001")
    assert acc.reserved == 0 and await ledger.invariant_violations(acc.id) == []


async def test_failover_between_processes_keeps_every_second(engine) -> None:
    await engine.handle(ccr("fo", RequestType.INITIAL, 0, requested=30))
    other = ChargingEngine(ledger.store(), EventBus(), clock=engine.clock, tcc_interval=3600)
    await other.start()
    try:
        await other.handle(ccr("fo", RequestType.UPDATE, 1, requested=30, used=30))
    finally:
        await other.stop()
    await engine.handle(ccr("fo", RequestType.UPDATE, 2, requested=30, used=30))
    t = await engine.handle(ccr("fo", RequestType.TERMINATE, 3, used=10))
    assert t.cost_units == 70 * 200
    assert (await accounts.get_account("1001")).reserved == 0


async def test_duplicate_mscc_keys_are_one_service(engine) -> None:
    both = (MsccRequest(100, 1000, True, 30), MsccRequest(100, 1000, True, 30))
    base = ccr("dm", RequestType.INITIAL, 0, requested=30, mscc=True)
    a = await engine.handle(dataclasses.replace(base, mscc=both))
    assert a.result_code == 2001 and len(a.mscc) == 1
    used = (
        MsccRequest(100, 1000, used=(UsedUnits(30),)),
        MsccRequest(100, 1000, used=(UsedUnits(10),)),
    )
    t = await engine.handle(
        dataclasses.replace(ccr("dm", RequestType.TERMINATE, 1, mscc=True), mscc=used)
    )
    assert t.cost_units == 40 * 200
    assert (await accounts.get_account("1001")).reserved == 0


async def test_terminate_reusing_update_number_is_refused(engine) -> None:
    await engine.handle(ccr("rn", RequestType.INITIAL, 0, requested=30))
    await engine.handle(ccr("rn", RequestType.UPDATE, 1, requested=30, used=30))
    t = await engine.handle(ccr("rn", RequestType.TERMINATE, 1, used=5))
    assert t.result_code == ResultCode.UNABLE_TO_COMPLY
    t = await engine.handle(ccr("rn", RequestType.TERMINATE, 2, used=5))
    assert t.result_code == 2001 and t.cost_units == 35 * 200


async def test_direct_debit_of_zero_seconds_writes_nothing(engine) -> None:
    a = await engine.handle(
        ccr("z0", RequestType.EVENT, 0, action=RequestedAction.DIRECT_DEBITING, requested=0)
    )
    assert a.result_code == 2001 and a.cost_units == 0
    assert await LedgerEntry.filter(reference="z0").count() == 0
