"""Money paths the other charging tests do not reach, and the engine defects the state
machine (test_engine_model.py) found, each as a small reproduction.

Every test here also ends with the after-test money check (tests/conftest.py): balances are
their entries, nothing over-reserved or left reserved, each CDR is its CALL entries.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ocs import accounts, ledger
from ocs.charging import quota
from ocs.charging.engine import ChargingEngine
from ocs.credit_control import (
    CCAnswer,
    CCRequest,
    RequestedAction,
    RequestType,
    ResultCode,
    SubscriptionId,
    SubscriptionIdType,
    UsedUnits,
)
from ocs.demo import load_demo
from ocs.events import EventBus
from ocs.models import Cdr, CreditSession, LedgerEntry
from ocs.money_check import check_money

ROOT = Path(__file__).resolve().parents[2]
DEMO = 250_000  # demo credit of 1001 and 1002; DEFAULT tariff 200 u/s


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at


def ccr(sid: str, kind: RequestType, number: int, *, account: str = "1001",
        requested: int | None = None, used: int | None = None,
        action: RequestedAction | None = None) -> CCRequest:
    return CCRequest(
        session_id=sid, origin_host="pcscf.test", origin_realm="test", request_type=kind,
        request_number=number,
        subscription_ids=(SubscriptionId(SubscriptionIdType.END_USER_PRIVATE, account),),
        called_party="tel:0141587070", requested_action=action,
        requested=kind in (RequestType.INITIAL, RequestType.UPDATE),
        requested_time=requested, used=(UsedUnits(used),) if used is not None else (),
    )


@pytest.fixture
async def clock() -> Clock:
    return Clock()


@pytest.fixture
async def engines(db, clock: Clock) -> AsyncIterator[list[ChargingEngine]]:
    """Two engines (two OCS processes) on the demo database."""
    await load_demo()
    made = [ChargingEngine(ledger.store(), EventBus(), clock=clock, tcc_interval=3600)
            for _ in range(2)]
    for e in made:
        await e.start()
    yield made
    for e in made:
        await e.stop()


async def money(number: str = "1001") -> tuple[int, int]:
    acc = await accounts.get_account(number)
    return acc.balance, acc.reserved


async def set_balance(number: str, units: int) -> None:
    acc = await accounts.get_account(number)
    await ledger.adjust(acc.id, units - acc.balance, actor="test")


# ---- ocs.ledger.release ---------------------------------------------------------------------


@pytest.mark.ledger_only  # reserves below the session layer
async def test_ledger_release(db) -> None:
    acc = await accounts.create_account("7001")
    await ledger.credit(acc.id, 1000, actor="test")
    store = ledger.store()
    assert (await store.run(ledger.reserve(acc.id, 600))).taken == 600
    await store.run(ledger.release(acc.id, 0))  # nothing to do
    await store.run(ledger.release(acc.id, 250))
    assert (await ledger.balance(acc.id)).reserved == 350
    with pytest.raises(ledger.LedgerError, match="exceeds the reservation"):
        await store.run(ledger.release(acc.id, 351))
    bal = await ledger.balance(acc.id)
    assert (bal.balance, bal.reserved) == (1000, 350)  # the refused release changed nothing
    await store.run(ledger.release(acc.id, 350))
    assert (await ledger.balance(acc.id)).reserved == 0


# ---- reservations handed back ---------------------------------------------------------------


async def test_over_reservation_is_released_when_the_client_asks_for_less(
        engines: list[ChargingEngine], clock: Clock) -> None:
    a, _ = engines
    await a.handle(ccr("over", RequestType.INITIAL, 0, requested=90))
    assert await money() == (DEMO, 90 * 200)
    clock.at += timedelta(seconds=10)
    u = await a.handle(ccr("over", RequestType.UPDATE, 1, requested=10, used=10))
    assert u.granted_time == 10
    # used 10 s + the next 10 s are all it needs to hold now; the rest is back
    assert await money() == (DEMO, 20 * 200)
    assert (await CreditSession.get(session_id="over")).reserved == 20 * 200
    assert u.remaining_balance == DEMO - 20 * 200
    t = await a.handle(ccr("over", RequestType.TERMINATE, 2, used=4))
    assert t.cost_units == 14 * 200
    assert await money() == (DEMO - 14 * 200, 0)


async def test_reservation_released_when_no_service_is_granted(
        engines: list[ChargingEngine], monkeypatch: pytest.MonkeyPatch) -> None:
    """A CCR-I whose reservation succeeded but whose grant came out as nothing: every unit
    it reserved goes back. (The quota arithmetic never does this today, so the grant is
    forced to zero to reach the defensive path.)"""
    a, _ = engines
    monkeypatch.setattr(quota, "grantable", lambda *args, **kw: 0)
    answer = await a.handle(ccr("none", RequestType.INITIAL, 0, requested=60))
    assert answer.result_code == ResultCode.CREDIT_LIMIT_REACHED
    assert answer.remaining_balance == DEMO
    assert await money() == (DEMO, 0)
    assert await CreditSession.filter(session_id="none").count() == 0


# ---- blocked accounts -------------------------------------------------------------------------


async def test_blocked_account_at_ccr_i_and_on_events(engines: list[ChargingEngine]) -> None:
    a, _ = engines
    acc = await accounts.get_account("1001")
    await accounts.update_account(acc, status="blocked")
    i = await a.handle(ccr("blk", RequestType.INITIAL, 0, requested=60))
    assert i.result_code == ResultCode.END_USER_SERVICE_DENIED and i.granted_time is None
    for action in (RequestedAction.DIRECT_DEBITING, RequestedAction.REFUND_ACCOUNT,
                   RequestedAction.CHECK_BALANCE):
        e = await a.handle(ccr(f"blk-{action.name}", RequestType.EVENT, 0, requested=10,
                               action=action))
        assert e.result_code == ResultCode.END_USER_SERVICE_DENIED, action
        assert e.cost_units is None
    assert await money() == (DEMO, 0)
    assert await LedgerEntry.filter(kind="CALL").count() == 0
    await accounts.update_account(acc, status="active")
    ok = await a.handle(ccr("blk2", RequestType.INITIAL, 0, requested=60))
    assert ok.result_code == 2001


# ---- a failed database batch ------------------------------------------------------------------


class DyingStore(ledger.LedgerStore):
    """The real store, except that when armed the next batch's transaction dies in the
    database after its operations ran (SQLite: an OperationalError; PostgreSQL: the server
    ends the connection). Everything in that batch must be rolled back."""

    def __init__(self, real: ledger.LedgerStore) -> None:
        self.real = real
        self.dialect = real.dialect
        self.sql = real.sql
        self.armed = False

    async def run_batch(self, ops: Sequence[ledger.Op[Any]]) -> list[Any]:
        if not self.armed:
            return await self.real.run_batch(ops)
        self.armed = False
        results = await self.real.run_batch([*ops, self._die()])
        raise AssertionError(f"the batch was meant to fail, got {results}")

    def _die(self) -> ledger.Op[None]:
        if self.dialect == "sqlite":
            yield ("SELECT * FROM a_table_that_is_gone", ())
        else:
            yield ("SELECT pg_terminate_backend(pg_backend_pid())", ())

    async def close(self) -> None:
        pass


async def test_failed_database_batch_moves_no_money_and_says_so(db, clock: Clock) -> None:
    await load_demo()
    store = DyingStore(ledger.store())
    eng = ChargingEngine(store, EventBus(), clock=clock, tcc_interval=3600)
    await eng.start()
    try:
        i = await eng.handle(ccr("dead", RequestType.INITIAL, 0, requested=30))
        assert i.result_code == 2001
        before = await money()
        clock.at += timedelta(seconds=30)
        for request in (ccr("dead", RequestType.UPDATE, 1, requested=30, used=30),
                        ccr("dead", RequestType.TERMINATE, 1, used=30)):
            store.armed = True
            failed = await eng.handle(request)
            assert failed.result_code == ResultCode.UNABLE_TO_COMPLY
            assert failed.error_message and failed.granted_time is None
            assert await money() == before
            row = await CreditSession.get(session_id="dead")
            assert (row.state, row.last_request_number) == ("open", 0)
            assert await Cdr.filter(session_id="dead").count() == 0
        # the client repeats its CCR-T: now it goes through, charged once
        t = await eng.handle(ccr("dead", RequestType.TERMINATE, 1, used=30))
        assert t.result_code == 2001 and t.cost_units == 30 * 200
        assert await money() == (DEMO - 6000, 0)
        assert await LedgerEntry.filter(reference="dead").count() == 1
    finally:
        await eng.stop()


# ---- retransmissions and request numbers --------------------------------------------------------


async def test_ccr_i_retransmission_answered_by_another_process_from_the_database(
        engines: list[ChargingEngine]) -> None:
    a, b = engines
    first = await a.handle(ccr("rt", RequestType.INITIAL, 0, requested=60))
    again = await b.handle(ccr("rt", RequestType.INITIAL, 0, requested=60))
    assert again == first
    assert await money() == (DEMO, 60 * 200)  # reserved once
    t = await b.handle(ccr("rt", RequestType.TERMINATE, 1, used=20))
    assert t.cost_units == 4000
    assert await money() == (DEMO - 4000, 0)


async def test_request_numbers_going_backwards(engines: list[ChargingEngine],
                                               clock: Clock) -> None:
    a, b = engines
    await a.handle(ccr("back", RequestType.INITIAL, 0, requested=30))
    clock.at += timedelta(seconds=30)
    u1 = await a.handle(ccr("back", RequestType.UPDATE, 1, requested=30, used=30))
    await a.handle(ccr("back", RequestType.UPDATE, 2, requested=30, used=30))
    held = await money()
    for eng in (a, b):  # the process holding the session, and one reading the database
        for kind, number in ((RequestType.UPDATE, 0), (RequestType.TERMINATE, 1)):
            old = await eng.handle(ccr("back", kind, number, requested=30, used=25))
            assert old.result_code == ResultCode.UNABLE_TO_COMPLY, (kind, number)
            assert old.error_message and "backwards" in old.error_message
            assert await money() == held
    # the same number and type again is a retransmission: its first answer, nothing charged
    assert await a.handle(ccr("back", RequestType.UPDATE, 1, requested=30, used=25)) == u1
    other = await b.handle(ccr("back", RequestType.UPDATE, 1, requested=30, used=25))
    assert other == u1  # every process answers a copy alike (issue 13: stored answers)
    assert await money() == held
    t = await b.handle(ccr("back", RequestType.TERMINATE, 3, used=10))
    assert t.cost_units == 70 * 200
    for eng in (a, b):  # after the end, a new number finds no session
        late = await eng.handle(ccr("back", RequestType.UPDATE, 4, requested=30, used=30))
        assert late.result_code == ResultCode.UNKNOWN_SESSION_ID
    assert await money() == (DEMO - 14000, 0)


# ---- ocs session kill -------------------------------------------------------------------------


async def test_ocs_session_kill_through_the_control_socket(db) -> None:
    """`ocs session kill` (a separate process) reaches the serving process through its
    control socket; the ASR makes the client end the call, which is charged once."""
    from ocs.control import start_control
    from ocs.diameter import DiameterServer, GyClient
    from ocs.runtime import ServeContext

    await load_demo()
    bus = EventBus()
    engine = ChargingEngine(ledger.store(), bus, tcc_interval=3600)
    await engine.start()
    server = DiameterServer(engine, host="127.0.0.1", port=0, origin_host="ocs.test",
                            realm="test", allowed_peers=["*"])
    engine.set_gateway(server)
    await server.start()
    control = await start_control(ServeContext(settings=db, bus=bus, engine=engine,
                                               sessions=engine))
    try:
        async with GyClient("127.0.0.1", server.bound_port, "pcscf.test", "test") as gy:
            sid = gy.new_session_id()
            await gy.initial(sid, "1001", "tel:0141587070", 60)
            ended: asyncio.Future[CCAnswer] = asyncio.get_running_loop().create_future()

            async def on_asr(session_id: str) -> None:
                ended.set_result(await gy.terminate(session_id, 9, termination_cause=4))

            gy.on_asr(on_asr)
            env = {**os.environ, "OCS_DATA_DIR": str(db.data_dir),
                   "OCS_DATABASE_URL": db.database_url}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ocs.cli", "session", "kill", sid, env=env, cwd=ROOT,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
            assert "2001" in out.decode()
            t = await asyncio.wait_for(ended, 30)
            assert t.result_code == 2001 and t.cost_units == 1800
            # an unknown session is a clear error, exit status 1
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ocs.cli", "session", "kill", "no-such", env=env,
                cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 1 and "no-such" in (out + err).decode()
    finally:
        await control.stop()
        await server.stop()
        await engine.stop()
    cdr = await Cdr.get(session_id=sid)
    assert (cdr.duration, cdr.cost, cdr.end_reason) == (9, 1800, "ADMINISTRATIVE")
    assert await money() == (DEMO - 1800, 0)


# ---- defects the state machine found in the per-operation engine (fixed since) ---------------


async def test_b1_retransmitted_ccr_t_to_a_process_holding_a_stale_copy(
        engines: list[ChargingEngine]) -> None:
    a, b = engines
    await a.handle(ccr("b1", RequestType.INITIAL, 0, requested=30))
    t = await b.handle(ccr("b1", RequestType.TERMINATE, 1, used=9))  # B reads the database
    again = await a.handle(ccr("b1", RequestType.TERMINATE, 1, used=9))  # A's copy is stale
    assert again == t  # was 5012 "internal error: LedgerError"


async def test_b1_tcc_pass_with_a_copy_another_process_closed(
        engines: list[ChargingEngine], clock: Clock) -> None:
    a, b = engines
    i = await a.handle(ccr("b1t", RequestType.INITIAL, 0, requested=30))
    clock.at += timedelta(seconds=i.validity_time + a.grace + 1)
    assert await b.expire_idle() == ["b1t"]  # an orphan to B: closed and charged
    assert await a.expire_idle() == []  # was LedgerError, on every pass
    assert [s.session_id for s in a.live_sessions()] == []


async def test_b2_ccr_i_retransmission_elsewhere_when_the_account_is_now_empty(
        engines: list[ChargingEngine]) -> None:
    a, b = engines
    await set_balance("1001", 30 * 200)
    first = await a.handle(ccr("b2", RequestType.INITIAL, 0, requested=30))
    assert first.granted_time == 30 and first.remaining_balance == 0
    again = await b.handle(ccr("b2", RequestType.INITIAL, 0, requested=30))
    assert again == first  # was 4012, while the session holds its 30 s


async def test_b3_earlier_event_repeated_to_another_process_is_charged_again(
        engines: list[ChargingEngine]) -> None:
    a, b = engines
    debit = ccr("b3", RequestType.EVENT, 0, requested=10,
                action=RequestedAction.DIRECT_DEBITING)
    first = await a.handle(debit)
    await a.handle(ccr("b3", RequestType.EVENT, 1, requested=2,
                       action=RequestedAction.REFUND_ACCOUNT))
    held = await money()
    again = await b.handle(debit)
    assert await money() == held  # was debited a second time
    assert again == first


async def test_b4_event_carrying_a_live_calls_session_id(engines: list[ChargingEngine]) -> None:
    a, _ = engines
    await a.handle(ccr("b4", RequestType.INITIAL, 0, requested=30))
    await a.handle(ccr("b4", RequestType.EVENT, 5, requested=10,
                       action=RequestedAction.DIRECT_DEBITING))
    await a.handle(ccr("b4", RequestType.TERMINATE, 1, used=10))
    assert await check_money(ledger.store()) == []  # was M4: the CDR was not its entries
