"""The money checkers catch each corruption they promise to catch.

Real calls go through the charging engine to build consistent data, then one SQL statement
breaks exactly one promise and the checker must name it. Both checkers are tested: the
ledger's per-account `check_invariants` and the whole-database `ocs.money_check`, which the
after-test fixture in tests/conftest.py runs after every database test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ocs import accounts, ledger
from ocs.charging.engine import ChargingEngine
from ocs.credit_control import (
    CCRequest,
    RequestedAction,
    RequestType,
    SubscriptionId,
    SubscriptionIdType,
    UsedUnits,
)
from ocs.demo import load_demo
from ocs.events import EventBus
from ocs.money_check import check_money

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def req(sid: str, kind: RequestType, number: int, **kw: object) -> CCRequest:
    return CCRequest(
        session_id=sid,
        origin_host="pcscf.test",
        origin_realm="test",
        request_type=kind,
        request_number=number,
        subscription_ids=(SubscriptionId(SubscriptionIdType.END_USER_PRIVATE, "1001"),),
        called_party="tel:0141587070",
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
async def calls(db):
    """Account 1001 after a finished call (13 s = 2600 u), a live call holding 6000 u and a
    direct-debit event (5 s = 1000 u); account 1002 untouched."""
    await load_demo()
    engine = ChargingEngine(ledger.store(), EventBus(), clock=lambda: NOW, tcc_interval=3600)
    await engine.start()
    try:
        assert (await engine.handle(req("done", RequestType.INITIAL, 0, requested=True,
                                        requested_time=30))).result_code == 2001
        t = await engine.handle(req("done", RequestType.TERMINATE, 1, used=(UsedUnits(13),)))
        assert t.cost_units == 2600
        assert (await engine.handle(req("live", RequestType.INITIAL, 0, requested=True,
                                        requested_time=30))).result_code == 2001
        ev = await engine.handle(req("ev", RequestType.EVENT, 0, requested_time=5,
                                     requested_action=RequestedAction.DIRECT_DEBITING))
        assert ev.cost_units == 1000
    finally:
        await engine.stop()
    acc = await accounts.get_account("1001")
    assert (acc.balance, acc.reserved) == (250000 - 3600, 6000)
    return acc.id


async def execute(sql: str, *params: object) -> None:
    def op():  # a one-statement ledger operation
        yield (sql, params)

    await ledger.store().run(op())


async def found() -> list[str]:
    return [f"{v.rule} {v.subject}" for v in await check_money(ledger.store())]


async def test_consistent_data_has_no_violation(calls: int) -> None:
    assert await check_money(ledger.store()) == []
    assert await ledger.invariant_violations(calls) == []


@pytest.mark.corrupts_money
async def test_balance_not_sum_of_entries(calls: int) -> None:
    await execute("UPDATE account SET balance = balance + 1 WHERE id = ?", calls)
    assert await found() == [f"M1 account 1001 (id {calls})"]
    assert await ledger.invariant_violations(calls) == [
        "balance 246401 != sum of entries 246400"
    ]


@pytest.mark.corrupts_money
async def test_entry_without_balance_change(calls: int) -> None:
    await execute(
        "INSERT INTO ledger_entry (account_id, kind, amount, balance_after, reference, actor,"
        " note, dialed, duration, created_at) VALUES (?, 'ADJUST', 5, 0, '', '', '', '', 0, ?)",
        calls, NOW,
    )
    assert await found() == [f"M1 account 1001 (id {calls})"]
    assert await ledger.invariant_violations(calls) == [
        "balance 246400 != sum of entries 246405"
    ]


@pytest.mark.corrupts_money
async def test_negative_reservation(calls: int) -> None:
    await execute("UPDATE account SET reserved = -1 WHERE id = ?", calls)
    rules = await found()
    assert f"M2 account 1001 (id {calls})" in rules
    assert f"M6 account 1001 (id {calls})" in rules  # the live call holds 6000
    assert await ledger.invariant_violations(calls) == ["reserved -1 < 0"]


@pytest.mark.corrupts_money
async def test_reservation_above_balance(calls: int) -> None:
    await execute("UPDATE account SET reserved = balance + 1 WHERE id = ?", calls)
    assert f"M3 account 1001 (id {calls})" in await found()
    assert await ledger.invariant_violations(calls) == ["available -1 < 0"]


@pytest.mark.corrupts_money
async def test_cdr_cost_differs_from_its_call_entry(calls: int) -> None:
    await execute("UPDATE cdr SET cost = cost + 200 WHERE session_id = 'done'")
    (v,) = await check_money(ledger.store())
    assert (v.rule, v.detail) == ("M4", "cost 2800 != CALL entries 2600")
    assert await ledger.invariant_violations(calls) == []  # the ledger alone cannot see it


@pytest.mark.corrupts_money
async def test_cdr_without_its_call_entry(calls: int) -> None:
    # the entry moved to another session: the CDR is unexplained and the entry orphaned
    await execute("UPDATE ledger_entry SET reference = 'elsewhere' WHERE reference = 'done'")
    assert sorted(v.rule for v in await check_money(ledger.store())) == ["M4", "M5"]


@pytest.mark.corrupts_money
async def test_two_cdrs_for_one_session(calls: int) -> None:
    await execute(
        "INSERT INTO cdr (account_id, account_number, session_id, call_id, calling, dialed,"
        " started_at, connect_delay, duration, cost, tariff_prefix, end_reason, created_at)"
        " SELECT account_id, account_number, session_id, call_id, calling, dialed, started_at,"
        " connect_delay, duration, cost, tariff_prefix, end_reason, created_at FROM cdr"
        " WHERE session_id = 'done'"
    )
    assert await found() == ["M4 session done"]  # each CDR matches the entry, but two CDRs


@pytest.mark.corrupts_money
async def test_call_entry_nothing_explains(calls: int) -> None:
    store = ledger.store()
    await store.run(ledger.settle(calls, 0, 100, reference="ghost", duration=1))
    assert await found() == [
        f"M5 ledger_entry {await _last_entry_id()} (account id {calls})"
    ]
    # the event's CALL entry explains itself (reference event:<Session-Id>); the same
    # entry under a bare Session-Id would need a CDR
    await execute("UPDATE ledger_entry SET reference = 'ev' WHERE reference = 'event:ev'")
    assert len([r for r in await found() if r.startswith("M5")]) == 2


async def _last_entry_id() -> int:
    def op():
        rows = yield ("SELECT MAX(id) FROM ledger_entry", ())
        return int(rows[0][0])

    return await ledger.store().run(op())


@pytest.mark.corrupts_money
async def test_reservation_left_behind(calls: int) -> None:
    # the live call is closed but its reservation stays on the account
    await execute("UPDATE credit_session SET state = 'closed', reserved = 0"
                  " WHERE session_id = 'live'")
    (v,) = await check_money(ledger.store())
    assert (v.rule, v.detail) == ("M6", "reserved 6000 != 0 held by its open sessions")
    assert await check_money(ledger.store(), sessions=False) == []


@pytest.mark.corrupts_money
async def test_closed_session_still_holding(calls: int) -> None:
    await execute("UPDATE credit_session SET reserved = 5 WHERE session_id = 'done'")
    (v,) = await check_money(ledger.store())
    assert (v.rule, v.subject) == ("M7", "session done")


def test_the_after_test_fixture_fails_a_test_that_breaks_the_money(tmp_path: Path) -> None:
    """The conftest fixture really fails a test (and the markers really opt out)."""
    tests = tmp_path / "test_breaks.py"
    tests.write_text(textwrap.dedent("""
        import pytest
        from ocs import ledger

        async def corrupt():
            def op():
                yield ("UPDATE account SET balance = balance + 1", ())
            await ledger.store().run(op())

        async def _account():
            from ocs import accounts
            acc = await accounts.create_account("4242")
            await ledger.credit(acc.id, 100, actor="t")
            return acc.id

        async def test_silently_breaks(db):
            await _account()
            await corrupt()

        @pytest.mark.corrupts_money
        async def test_says_it_breaks(db):
            await _account()
            await corrupt()

        async def test_reserves_below_sessions(db):
            aid = await _account()
            await ledger.store().run(ledger.reserve(aid, 10))

        @pytest.mark.ledger_only
        async def test_reserves_below_sessions_and_says_so(db):
            aid = await _account()
            await ledger.store().run(ledger.reserve(aid, 10))
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("COV_CORE_SOURCE", None)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-c", str(ROOT / "pyproject.toml"), str(tests)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    out = run.stdout + run.stderr
    assert "4 passed, 2 errors" in out, out  # an error at teardown follows a pass
    assert "ERROR at teardown of test_silently_breaks" in out
    assert "M1 account 4242" in out
    assert "ERROR at teardown of test_reserves_below_sessions " in out + " "
    assert "M6 account 4242" in out
