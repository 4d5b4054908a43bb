"""The set-based batch path against the per-operation path (differential test), and the
set-based path's cost: a fixed number of statements per batch, whatever its size.

The same random scripts of CCR-I/U/T/E go through an engine that runs each batch as one
set-based operation and through one that runs every request as its own operation: many
sessions, a few hot accounts with low balances, retransmissions (with and without the T
flag), usage beyond grants, stale and backwards request numbers, Tcc closes, top-ups and
restarts. Ledger, sessions, CDRs, stored answers and every answer must be identical.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocs import accounts, db, ledger
from ocs.charging.engine import ChargingEngine
from ocs.config import load_settings
from ocs.credit_control import (
    CCRequest,
    MsccRequest,
    RequestedAction,
    RequestType,
    SubscriptionId,
    SubscriptionIdType,
    UsedUnits,
)
from ocs.demo import load_demo
from ocs.events import EventBus
from ocs.models import Account
from tests.calls import Clock
from tests.conftest import _pg_truncate, use_postgres

PRIVATE = SubscriptionIdType.END_USER_PRIVATE
E164 = SubscriptionIdType.END_USER_E164
ACCOUNTS = ("1001", "1002", "1003")
START = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


# --- scripts ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Send:
    req: CCRequest


@dataclasses.dataclass(frozen=True)
class Advance:
    seconds: int


@dataclasses.dataclass(frozen=True)
class Sweep:
    pass


@dataclasses.dataclass(frozen=True)
class TopUp:
    account: str
    units: int


@dataclasses.dataclass(frozen=True)
class Restart:
    pass


Step = list[Send] | Advance | Sweep | TopUp | Restart


def _request(
    sid: str,
    kind: RequestType,
    number: int,
    account: str,
    *,
    requested: int | None,
    used: tuple[UsedUnits, ...],
    mscc: bool,
    action: RequestedAction | None = None,
    called: str = "tel:0141587070",
    retransmission: bool = False,
) -> CCRequest:
    subs = (
        (SubscriptionId(E164, "5173"),)
        if account == "5173"
        else (SubscriptionId(PRIVATE, account),)
    )
    wants = kind in (RequestType.INITIAL, RequestType.UPDATE)
    if mscc:
        return CCRequest(
            sid,
            "pcscf.test",
            "test",
            kind,
            number,
            subs,
            called_party=called,
            requested_action=action,
            retransmission=retransmission,
            mscc=(MsccRequest(100, 1000, wants, requested if wants else None, used),),
        )
    return CCRequest(
        sid,
        "pcscf.test",
        "test",
        kind,
        number,
        subs,
        called_party=called,
        requested_action=action,
        retransmission=retransmission,
        requested=wants or requested is not None,
        requested_time=requested,
        used=used,
    )


@st.composite
def scripts(draw: st.DrawFn) -> list[Step]:
    """Scripts that mostly follow valid call flows, with every kind of mistake mixed in."""
    sessions: dict[str, dict[str, Any]] = {}
    events: dict[str, int] = {}
    sent: list[CCRequest] = []
    steps: list[Step] = []
    for _ in range(draw(st.integers(4, 12))):
        kind = draw(st.sampled_from(["send"] * 6 + ["advance", "sweep", "topup", "restart"]))
        if kind == "advance":
            steps.append(Advance(draw(st.sampled_from([5, 30, 61, 90, 400]))))
            continue
        if kind == "sweep":
            steps.append(Sweep())
            continue
        if kind == "topup":
            steps.append(TopUp(draw(st.sampled_from(ACCOUNTS)), draw(st.integers(1, 20_000))))
            continue
        if kind == "restart":
            steps.append(Restart())
            continue
        batch: list[Send] = []
        used_sids: set[str] = set()
        for _ in range(draw(st.integers(1, 8))):
            choice = draw(st.sampled_from(["call"] * 5 + ["event", "again"]))
            if choice == "again" and sent:
                old = draw(st.sampled_from(sent))
                if old.session_id in used_sids:
                    continue
                t = draw(st.booleans())
                batch.append(Send(dataclasses.replace(old, retransmission=t)))
                used_sids.add(old.session_id)
                continue
            if choice == "event":
                sid = f"e{draw(st.integers(0, 2))}"
                if sid in used_sids:
                    continue
                number = events.get(sid, -1) + 1
                number += draw(st.sampled_from([0, 0, 0, -1, 1]))
                events[sid] = max(events.get(sid, -1), number)
                action = draw(st.sampled_from(list(RequestedAction)))
                req = _request(
                    sid,
                    RequestType.EVENT,
                    max(0, number),
                    draw(st.sampled_from(ACCOUNTS)),
                    requested=draw(st.sampled_from([None, 0, 10, 60, 3000])),
                    used=(),
                    mscc=draw(st.booleans()),
                    action=action,
                    called=draw(st.sampled_from(["tel:0141587070", "tel:38123", "tel:42999"])),
                )
            else:
                sid = f"s{draw(st.integers(0, 5))}"
                if sid in used_sids:
                    continue
                s = sessions.setdefault(
                    sid,
                    {
                        "n": -1,
                        "mscc": draw(st.booleans()),
                        "account": draw(st.sampled_from((*ACCOUNTS, "5173"))),
                    },
                )
                if s["n"] < 0:
                    rtype = draw(st.sampled_from([RequestType.INITIAL] * 4 + [RequestType.UPDATE]))
                else:
                    rtype = draw(
                        st.sampled_from(
                            [RequestType.UPDATE] * 3
                            + [RequestType.TERMINATE] * 2
                            + [RequestType.INITIAL]
                        )
                    )
                number = s["n"] + 1 + draw(st.sampled_from([0, 0, 0, 0, -1, -2, 1]))
                s["n"] = max(s["n"], number)
                used = ()
                if rtype is not RequestType.INITIAL and draw(st.booleans()):
                    used = (UsedUnits(draw(st.sampled_from([0, 10, 30, 45, 90, 700]))),)
                req = _request(
                    sid,
                    rtype,
                    max(0, number),
                    s["account"],
                    requested=draw(st.sampled_from([None, 30, 60, 120])),
                    used=used,
                    mscc=s["mscc"],
                    called=draw(st.sampled_from(["tel:0141587070", "tel:38123", "tel:42999"])),
                )
            used_sids.add(req.session_id)
            sent.append(req)
            batch.append(Send(req))
        if batch:
            steps.append(batch)
    return steps


# --- running a script on one path ------------------------------------------------------------


async def _prepare(balances: tuple[int, int, int]) -> None:
    await load_demo()
    if not await Account.filter(number="1003").exists():
        await accounts.create_account("1003", name="1003")
    for number, units in zip(ACCOUNTS, balances, strict=True):
        acc = await accounts.get_account(number)
        delta = units - acc.balance
        if delta:
            await ledger.adjust(acc.id, delta, actor="test", note="setup")


async def run_script(
    steps: list[Step], balances: tuple[int, int, int], per_operation: bool
) -> dict[str, Any]:
    await _prepare(balances)
    clock = Clock(START)

    def engine() -> ChargingEngine:
        return ChargingEngine(
            ledger.store(),
            EventBus(),
            clock=clock,
            tcc_interval=3600,
            refresh_interval=3600,
            per_operation=per_operation,
        )

    eng = engine()
    await eng.start()
    answers: list[Any] = []
    try:
        for step in steps:
            if isinstance(step, Advance):
                clock.advance(step.seconds)
            elif isinstance(step, Sweep):
                answers.append(sorted(await eng.expire_idle()))
            elif isinstance(step, TopUp):
                acc = await accounts.get_account(step.account)
                await ledger.credit(acc.id, step.units, actor="test")
            elif isinstance(step, Restart):
                await eng.stop()
                eng = engine()
                await eng.start()
            else:
                got = await asyncio.gather(*(eng.handle(s.req) for s in step))
                answers.append(got)
    finally:
        await eng.stop()
    return {"answers": answers, "database": await snapshot()}


async def snapshot() -> dict[str, Any]:
    store = ledger.store()

    def q(sql: str) -> Any:
        def op() -> Any:
            rows = yield (sql, ())
            return [tuple(_plain(v) for v in r) for r in rows]

        return store.run(op())

    return {
        "accounts": await q(
            "SELECT number, balance, reserved, status FROM account ORDER BY number"
        ),
        "entries": await q(
            # setup and top-ups are stamped with the wall clock, calls with the engine's
            "SELECT a.number, e.kind, e.amount, e.balance_after, e.reference, e.actor, e.note,"
            " e.dialed, e.duration, CASE WHEN e.actor = 'ocs' THEN e.created_at END"
            " FROM ledger_entry e JOIN account a"
            " ON a.id = e.account_id ORDER BY e.id"
        ),
        "sessions": await q(
            "SELECT s.session_id, a.number, s.state, s.reserved, s.used_seconds, s.cost,"
            " s.last_request_number, s.charging_state, s.expires_at, s.end_reason, s.killed,"
            " s.started_at, s.calling, s.called, s.rate FROM credit_session s"
            " LEFT JOIN account a ON a.id = s.account_id ORDER BY s.session_id"
        ),
        "cdrs": await q(
            "SELECT account_number, session_id, call_id, calling, dialed, started_at,"
            " connect_delay, duration, cost, tariff_prefix, end_reason, created_at FROM cdr"
            " ORDER BY session_id"
        ),
        "answers": await q(
            "SELECT session_id, request_type, request_number, answer FROM cc_answer"
            " ORDER BY session_id, request_type, request_number"
        ),
    }


def _plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(UTC).isoformat()
    if isinstance(v, str) and v[:1] in "{[":
        try:
            return json.loads(v)
        except ValueError:
            return v
    if isinstance(v, dict):
        return v
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, str) and len(v) >= 19 and v[4:5] == "-" and v[10:11] in " T":
        try:
            return datetime.fromisoformat(v).astimezone(UTC).isoformat()
        except ValueError:
            return v
    return v


# --- databases --------------------------------------------------------------------------------


class Fresh:
    """A new empty migrated database for each run of a script."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.n = 0
        if use_postgres():
            self.url = request.getfixturevalue("pg_database_url")
        else:
            self.template = request.getfixturevalue("sqlite_template")

    async def run(self, steps: list[Step], balances: tuple[int, int, int], per_op: bool) -> Any:
        self.n += 1
        folder = self.tmp / f"run{self.n}"
        folder.mkdir()
        if use_postgres():
            url = self.url
            await _pg_truncate(url)
        else:
            shutil.copy(self.template, folder / "ocs.sqlite3")
            url = f"sqlite://{folder / 'ocs.sqlite3'}"
        cfg = load_settings({"OCS_DATA_DIR": str(folder), "OCS_DATABASE_URL": url})
        await db.init_db(cfg)
        try:
            return await run_script(steps, balances, per_op)
        finally:
            await db.close_db()


EXAMPLES = int(os.environ.get("OCS_DIFFERENTIAL_EXAMPLES", "30"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=scripts(),
    balances=st.tuples(
        st.sampled_from([0, 3000, 9000, 25_000]),
        st.sampled_from([0, 12_000, 250_000]),
        st.sampled_from([500, 40_000]),
    ),
)
def test_set_based_and_per_operation_paths_agree(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, steps, balances
) -> None:
    fresh = Fresh(request, tmp_path_factory.mktemp("diff"))

    async def both() -> tuple[Any, Any]:
        one = await fresh.run(steps, balances, per_op=False)
        other = await fresh.run(steps, balances, per_op=True)
        return one, other

    set_based, per_operation = asyncio.run(both())
    assert set_based["answers"] == per_operation["answers"]
    for table in ("accounts", "entries", "sessions", "cdrs", "answers"):
        assert set_based["database"][table] == per_operation["database"][table], table


# --- a fixed number of statements per batch -----------------------------------------------------


class CountingStore(ledger.LedgerStore):
    """Counts the statements each batch sends to the database."""

    def __init__(self, inner: ledger.LedgerStore) -> None:
        self.inner = inner
        self.dialect = inner.dialect
        self.sql = inner.sql
        self.statements: list[int] = []

    async def run_batch(self, ops: Any) -> list[Any]:
        counted = [self._count(op) for op in ops]
        return await self.inner.run_batch(counted)

    def _count(self, op: ledger.Op[Any]) -> ledger.Op[Any]:
        n = 0
        try:
            stmt = next(op)
            while True:
                n += 1
                rows = yield stmt
                stmt = op.send(rows)
        except StopIteration as stop:
            self.statements.append(n)
            return stop.value

    async def close(self) -> None:
        await self.inner.close()


@pytest.mark.parametrize("calls", [1, 150])
async def test_a_batch_costs_the_same_statements_whatever_its_size(db, calls) -> None:
    await load_demo()
    acc = await accounts.get_account("1001")
    await ledger.credit(acc.id, 10**9, actor="test")
    store = CountingStore(ledger.store())
    clock = Clock(START)
    eng = ChargingEngine(store, EventBus(), clock=clock, tcc_interval=3600, max_batch=1000)
    await eng.start()
    try:
        sids = [f"n{i}" for i in range(calls)]
        kinds = [
            (RequestType.INITIAL, ()),
            (RequestType.UPDATE, (UsedUnits(30),)),
            (RequestType.TERMINATE, (UsedUnits(10),)),
        ]
        per_kind = []
        for number, (kind, used) in enumerate(kinds):
            store.statements.clear()
            got = await asyncio.gather(
                *(
                    eng.handle(
                        _request(s, kind, number, "1001", requested=30, used=used, mscc=True)
                    )
                    for s in sids
                )
            )
            assert all(a.result_code == 2001 for a in got)
            assert len(store.statements) == 1  # all of them in one batch
            per_kind.append(store.statements[0])
    finally:
        await eng.stop()
    # I: read sessions, subscribers, accounts; write (sessions, accounts, answers) together.
    # U and T: read sessions, accounts; write together (on PostgreSQL one statement of
    # data-modifying CTEs, on SQLite one executemany per table).
    assert per_kind == [4, 3, 3]
