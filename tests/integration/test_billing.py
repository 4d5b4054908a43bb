"""Billing runs against the real ledger: the brochure's statement, consecutive runs,
entries written during a run, atomicity. SQLite by default, PostgreSQL with OCS_TEST_DB."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from ocs import accounts, billing, ledger, tariffs
from ocs.models import BillingRun, Cdr, LedgerEntry, LedgerKind, StatementBalance
from ocs.settings_store import save_operator_settings
from tests.calls import Call, CallRecorder

PARIS = ZoneInfo("Europe/Paris")


def local(text: str) -> datetime:
    """`YYYYMMDD_HHMMSS` in Paris time (the brochure's dates)."""
    return datetime.strptime(text, "%Y%m%d_%H%M%S").replace(tzinfo=PARIS)


async def credit_at(account_id: int, units: int, at: str) -> None:
    await ledger.store().run(
        ledger.post(account_id, units, LedgerKind.CREDIT, actor="admin", at=local(at))
    )


async def call(
    account_id: int, number: str, dialed: str, duration: int, cost: int, ended: str,
    *, setup_epoch: int | None = None, delay: int | None = None, call_id: str = "",
) -> None:
    """A finished call, recorded through the charging engine (CCR-I at the answer time,
    CCR-T at `ended`), rated by a tariff for `dialed` at cost/duration units per second."""
    assert cost % duration == 0
    rate = {"prefix": dialed, "h1_rate": cost // duration}
    await tariffs.import_tariffs([tariffs.parse_tariff(rate)])
    ended_at = local(ended)
    answered = (
        datetime.fromtimestamp(setup_epoch + (delay or 0), tz=PARIS)
        if setup_epoch is not None else ended_at
    )
    async with CallRecorder(ledger.store()) as recorder:
        answer = await recorder.call(
            Call(number, dialed, duration, call_id=call_id, connect_delay=delay),
            answered=answered, ended=ended_at, session_id=f"ocs;{number};{ended};{dialed}",
        )
    assert answer.cost_units == cost


async def brochure_history(settings) -> tuple[int, int, billing.BillingResult]:
    """1001 (created first) and 1002; a first statement on 2012-04-03 at 15:18:12, then
    the calls and credit of the brochure's CDR page."""
    a1001 = (await accounts.create_account("1001", pin="100101")).id
    a1002 = (await accounts.create_account("1002", pin="100202")).id
    await credit_at(a1001, 203800, "20120403_150000")
    first = await billing.run_billing(settings, now=local("20120403_151812"))
    await call(a1001, "1001", "5173", 3, 600, "20120403_152503",
               setup_epoch=1333459492, delay=4, call_id="A12040315245291803")
    await credit_at(a1002, 250000, "20120412_102253")
    await call(a1001, "1001", "5173", 13, 2600, "20120412_102901",
               setup_epoch=1334219320, delay=5, call_id="A12041210284043801")
    await call(a1002, "1002", "3000", 113, 22600, "20120412_103209",
               setup_epoch=1334219410, delay=1, call_id="A12041210301046701")
    await call(a1001, "1001", "3000", 65, 13000, "20120412_103222",
               setup_epoch=1334219473, delay=1, call_id="A12041210311334803")
    return a1001, a1002, first


GOLDEN_COLON = (
    '"User number : 1002"\n'
    '"User ID : 1002"\n'
    "Date:Operation:Called:Duration:Units:Euros\n"
    "20120412_102253:CREDIT:::250000:25\n"
    "20120412_103209:CALL:3000:113:-22600:-2,26\n"
    "Total::::227400:22,74\n"
    "\n"
    "\n"
    '"User number : 1001"\n'
    '"User ID : 1001"\n'
    "Date:Operation:Called:Duration:Units:Euros\n"
    "20120403_151812:REPORT:::203800:20,38\n"
    "20120403_152503:CALL:5173:3:-600:-0,06\n"
    "20120412_102901:CALL:5173:13:-2600:-0,26\n"
    "20120412_103222:CALL:3000:65:-13000:-1,3\n"
    "Total::::187600:18,76\n"
    "\n"
    "\n"
)

GOLDEN_SEMICOLON = (
    "User number : 1002\n"
    "User ID : 1002\n"
    "Date;Operation;Called;Duration;Units;Euros\n"
    "20120412_102253;CREDIT;;;250000;25\n"
    "20120412_103209;CALL;3000;113;-22600;-2,26\n"
    "Total;;;;227400;22,74\n"
    "\n"
    "\n"
    "User number : 1001\n"
    "User ID : 1001\n"
    "Date;Operation;Called;Duration;Units;Euros\n"
    "20120403_151812;REPORT;;;203800;20,38\n"
    "20120403_152503;CALL;5173;3;-600;-0,06\n"
    "20120412_102901;CALL;5173;13;-2600;-0,26\n"
    "20120412_103222;CALL;3000;65;-13000;-1,3\n"
    "Total;;;;187600;18,76\n"
    "\n"
    "\n"
)


@pytest.mark.parametrize(("separator", "golden"), [(":", GOLDEN_COLON), (";", GOLDEN_SEMICOLON)])
async def test_brochure_statement(db, separator, golden) -> None:
    if separator != ":":
        await save_operator_settings({"csv_separator": separator})
    a1001, a1002, first = await brochure_history(db)
    assert first.filename == "BILLING_20120403_151812.csv"
    q = '"' if separator == ":" else ""
    assert first.path.read_text() == (
        f"{q}User number : 1001{q}\n{q}User ID : 1001{q}\n"
        + separator.join(["Date", "Operation", "Called", "Duration", "Units", "Euros"]) + "\n"
        + separator.join(["20120403_150000", "CREDIT", "", "", "203800", "20,38"]) + "\n"
        + separator.join(["Total", "", "", "", "203800", "20,38"]) + "\n\n\n"
    )

    result = await billing.run_billing(db, now=local("20120412_103343"))

    assert result.filename == "BILLING_20120412_103343.csv"
    assert result.path == db.data_dir / "billing" / "BILLING_20120412_103343.csv"
    assert result.path.read_bytes().decode() == golden
    assert (result.accounts, result.lines, result.mismatches) == (2, 6, 0)
    run = await BillingRun.get(id=result.run_id)
    assert (run.status, run.accounts, run.lines, run.filename) == ("done", 2, 6, result.filename)
    totals = dict(await StatementBalance.filter(run_id=run.id).values_list("account_id", "total"))
    assert totals == {a1001: 187600, a1002: 227400}
    # the totals are the ledger balances
    assert (await ledger.balance(a1001)).balance == 187600
    assert (await ledger.balance(a1002)).balance == 227400
    # the period's CDRs are linked to the run; the earlier ones too (none before run 1)
    assert await Cdr.filter(billing_run_id=run.id).count() == 4
    # no temporary file left behind
    assert sorted(p.name for p in (db.data_dir / "billing").iterdir()) == [
        "BILLING_20120403_151812.csv", "BILLING_20120412_103343.csv",
    ]


async def test_second_run_reports_first_total(db) -> None:
    _, a1002, _ = await brochure_history(db)
    r2 = await billing.run_billing(db, now=local("20120412_103343"))
    await call(a1002, "1002", "3000", 10, 2000, "20120413_090000")
    r3 = await billing.run_billing(db, now=local("20120414_000000"))
    assert r3.first_ledger_id == r2.last_ledger_id
    text = r3.path.read_text()
    assert text == (
        '"User number : 1002"\n"User ID : 1002"\n'
        "Date:Operation:Called:Duration:Units:Euros\n"
        "20120412_103343:REPORT:::227400:22,74\n"
        "20120413_090000:CALL:3000:10:-2000:-0,2\n"
        "Total::::225400:22,54\n\n\n"
        '"User number : 1001"\n"User ID : 1001"\n'
        "Date:Operation:Called:Duration:Units:Euros\n"
        "20120412_103343:REPORT:::187600:18,76\n"
        "Total::::187600:18,76\n\n\n"
    )
    # a run with nothing new still carries non-zero balances forward
    r4 = await billing.run_billing(db, now=local("20120415_000000"))
    assert r4.lines == 2 and r4.first_ledger_id == r4.last_ledger_id == r3.last_ledger_id


async def test_entries_written_during_a_run_go_to_the_next_run(db) -> None:
    ids = []
    for i in range(12):
        acc = await accounts.create_account(f"20{i:02d}")
        ids.append(acc.id)
        await ledger.credit(acc.id, 1000 + i, actor="test")
    written: list[int] = []

    async def meddle(p: billing.BillingProgress) -> None:
        # While the statement is being written: credit accounts already written, not yet
        # written, and settle a call, all through the real ledger.
        if not p.finished and p.accounts in (1, 6):
            for aid in (ids[0], ids[-1], ids[5]):
                posted = await ledger.credit(aid, 7, actor="during-run")
                written.append(posted.entry_id)
            got = await ledger.store().run(ledger.reserve(ids[3], 100))
            assert got is not None
            settled = await ledger.store().run(
                ledger.settle(ids[3], 100, 100, reference=f"during-{p.accounts}", dialed="33")
            )
            assert settled.entry_id is not None
            written.append(settled.entry_id)

    # Small account batches so the run spans several queries while entries are written.
    r1 = await _run_with_small_batches(db, meddle)
    assert len(written) == 8
    assert all(e > r1.last_ledger_id for e in written)
    assert r1.lines == 12
    r2 = await billing.run_billing(db)
    assert r2.first_ledger_id == r1.last_ledger_id
    assert r2.lines == 12 + 8  # a REPORT for each of the 12 accounts + the 8 new entries
    # Every entry in exactly one statement; totals are the balances.
    covered = await LedgerEntry.filter(id__lte=r2.last_ledger_id).count()
    assert covered == await LedgerEntry.all().count() == 12 + 8
    assert r1.lines + (r2.lines - 12) == covered
    for aid in ids:
        sb = await StatementBalance.filter(account_id=aid).order_by("-run_id").first()
        assert sb is not None
        assert sb.total == (await ledger.balance(aid)).balance


async def _run_with_small_batches(settings, progress) -> billing.BillingResult:
    old = billing.ACCOUNT_BATCH, billing.ENTRY_PAGE
    billing.ACCOUNT_BATCH, billing.ENTRY_PAGE = 4, 3
    try:
        return await billing.run_billing(settings, progress=progress)
    finally:
        billing.ACCOUNT_BATCH, billing.ENTRY_PAGE = old


async def test_concurrent_writers_during_runs_nothing_lost_or_doubled(db) -> None:
    """A writer task posts entries continuously while several runs happen."""
    ids = [(await accounts.create_account(f"30{i}")).id for i in range(5)]
    stop = asyncio.Event()

    async def writer() -> int:
        n = 0
        while not stop.is_set():
            await ledger.credit(ids[n % 5], 1 + n, actor="w")
            n += 1
            await asyncio.sleep(0)
        return n

    task = asyncio.create_task(writer())
    results = []
    for _ in range(4):
        await asyncio.sleep(0.02)
        results.append(await billing.run_billing(db))
    stop.set()
    n = await task
    results.append(await billing.run_billing(db))
    # Periods are contiguous and disjoint.
    assert results[0].first_ledger_id == 0
    for a, b in itertools.pairwise(results):
        assert b.first_ledger_id == a.last_ledger_id
    assert results[-1].last_ledger_id == await LedgerEntry.all().count() == n
    # Each credit has a distinct amount (1..n): every one is on exactly one statement.
    credited = [
        int(line.split(":")[4])
        for r in results
        for line in r.path.read_text().splitlines()
        if line.split(":")[1:2] == ["CREDIT"]
    ]
    assert sorted(credited) == list(range(1, n + 1))
    assert n > 10
    for aid in ids:
        sb = await StatementBalance.filter(account_id=aid).order_by("-run_id").first()
        assert sb is not None and sb.total == (await ledger.balance(aid)).balance


async def test_failed_run_closes_nothing(db, monkeypatch) -> None:
    aid = (await accounts.create_account("4001")).id
    await ledger.credit(aid, 5000, actor="t")

    def boom(p: billing.BillingProgress) -> None:
        if not p.finished:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        await billing.run_billing(db, progress=boom)
    assert await BillingRun.filter(status="done").count() == 0
    assert await StatementBalance.all().count() == 0
    assert list((db.data_dir / "billing").iterdir()) == []
    ok = await billing.run_billing(db)
    assert ok.first_ledger_id == 0 and ok.lines == 1
    assert [r.status for r in await billing.list_runs(include_failed=True)] == ["done", "failed"]
    assert [r.id for r in await billing.list_runs()] == [ok.run_id]


async def test_commit_refuses_when_another_run_finished(db, monkeypatch) -> None:
    aid = (await accounts.create_account("5001")).id
    await ledger.credit(aid, 5000, actor="t")
    real_commit = billing._commit

    async def racing_commit(run, prev, lo, hi, accounts_, lines) -> None:
        # Another process finishes a run for the same period just before we commit.
        other = await BillingRun.create(
            started_at=run.started_at, last_ledger_id=hi, filename="BILLING_x.csv",
            status="done",
        )
        assert other.id > run.id
        await real_commit(run, prev, lo, hi, accounts_, lines)

    monkeypatch.setattr(billing, "_commit", racing_commit)
    with pytest.raises(billing.BillingConflict):
        await billing.run_billing(db)
    assert await StatementBalance.all().count() == 0
    assert not any((db.data_dir / "billing").iterdir())


async def test_crash_between_commit_and_rename_is_repaired(db) -> None:
    aid = (await accounts.create_account("6001")).id
    await ledger.credit(aid, 5000, actor="t")
    r = await billing.run_billing(db, now=local("20260101_000000"))
    folder = db.data_dir / "billing"
    r.path.rename(folder / billing.partial_name(r.filename))  # as if the rename never ran
    assert await billing.statement_path(db, r.run_id) is None
    await billing.recover_files(db)
    assert await billing.statement_path(db, r.run_id) == r.path


async def test_same_second_runs_get_distinct_files(db) -> None:
    aid = (await accounts.create_account("7001")).id
    await ledger.credit(aid, 5000, actor="t")
    now = local("20260101_000000")
    a = await billing.run_billing(db, now=now)
    b = await billing.run_billing(db, now=now)
    assert (a.filename, b.filename) == ("BILLING_20260101_000000.csv",
                                        "BILLING_20260101_000000_2.csv")
    assert await billing.statement_path_by_name(db, b.filename) == b.path
    assert await billing.statement_path_by_name(db, "../etc/passwd") is None


async def test_adjust_and_refund_lines(db) -> None:
    aid = (await accounts.create_account("8001", name="ACME; \"Ltd\"")).id
    await ledger.credit(aid, 5000, actor="t")
    await ledger.adjust(aid, -1000, actor="t", note="fix")
    await ledger.adjust(aid, 250, actor="t", kind=LedgerKind.REFUND)
    r = await billing.run_billing(db)
    lines = r.path.read_text().splitlines()
    assert lines[1] == '"User ID : ACME; ""Ltd"""'  # CSV quoting: holds ':' and quotes
    assert [line.split(":")[1] for line in lines[3:6]] == ["CREDIT", "ADJUST", "REFUND"]
    assert lines[4].split(":")[4:] == ["-1000", "-0,1"]
    assert lines[6] == "Total::::4250:0,425"


async def test_scheduler_tick(db) -> None:
    aid = (await accounts.create_account("9001")).id
    await ledger.credit(aid, 5000, actor="t")
    since = local("20260105_120000")  # a Monday
    assert await billing.scheduler_tick(db, since, now=local("20260106_120000")) is None
    await save_operator_settings({"billing_schedule": "daily"})
    assert await billing.scheduler_tick(db, since, now=local("20260105_230000")) is None
    r = await billing.scheduler_tick(db, since, now=local("20260106_000100"))
    assert r is not None and r.filename == "BILLING_20260106_000100.csv"
    assert await billing.scheduler_tick(db, since, now=local("20260106_230000")) is None
    assert await billing.scheduler_tick(db, since, now=local("20260107_000000")) is not None


async def test_high_water_mark_waits_for_inflight_postgres_writers(db) -> None:
    """PostgreSQL hands out ids before commit: an entry with a lower id may commit after
    one with a higher id. The mark must not pass an uncommitted id."""
    if ledger.store().dialect != "postgres":
        pytest.skip("SQLite serialises writers: ids commit in order")
    import asyncpg

    aid = (await accounts.create_account("9901")).id
    dsn = db.database_url.replace("postgres://", "postgresql://", 1)
    slow = await asyncpg.connect(dsn)
    try:
        tx = slow.transaction()
        await tx.start()
        await slow.execute("UPDATE account SET balance = balance + 5 WHERE id = $1", aid)
        low = await slow.fetchval(
            "INSERT INTO ledger_entry (account_id, kind, amount, balance_after, reference,"
            " actor, note, dialed, duration, created_at) VALUES ($1, 'CREDIT', 5, 5, '', 't',"
            " '', '', 0, now()) RETURNING id",
            aid,
        )
        other = (await accounts.create_account("9902")).id
        high = (await ledger.credit(other, 9, actor="t")).entry_id
        assert high > low
        mark = asyncio.create_task(billing.high_water_mark())
        await asyncio.sleep(0.3)
        assert not mark.done()  # waiting for the in-flight writer
        await tx.commit()
        assert await asyncio.wait_for(mark, 5) >= high
    finally:
        await slow.close()
    r = await billing.run_billing(db)
    assert r.lines == 2


async def test_scheduler_part_starts_and_stops(db) -> None:
    from ocs.events import EventBus
    from ocs.runtime import ServeContext

    part = await billing.start_billing_scheduler(ServeContext(settings=db, bus=EventBus()),
                                                 interval=0.01)
    assert part.name == "billing-scheduler"
    await asyncio.sleep(0.05)  # schedule "none": ticks do nothing
    await part.stop()
    assert await BillingRun.all().count() == 0


async def test_concurrent_start_billing_in_one_process_runs_one_after_the_other(db) -> None:
    aid = (await accounts.create_account("9501")).id
    await ledger.credit(aid, 100, actor="t")
    a, b = await asyncio.gather(billing.run_billing(db), billing.run_billing(db))
    first, second = sorted((a, b), key=lambda r: r.run_id)
    assert (first.first_ledger_id, first.last_ledger_id) == (0, 1)
    assert (second.first_ledger_id, second.last_ledger_id) == (1, 1)
    assert second.lines == 1  # only the REPORT
