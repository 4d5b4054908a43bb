"""Billing runs ("Start billing"): close a period and write one statement file.

A run covers the ledger entries with `previous run's last_ledger_id < id <= high-water
mark`, the mark being the highest entry id committed when the run starts. Entries written
while a run is in progress get higher ids and fall in the next run: nothing is skipped or
counted twice. (PostgreSQL assigns ids before commit, so the mark is read under a brief
`SHARE` lock on `ledger_entry`: in-flight writers finish first, new ones wait for one
`SELECT max(id)`. SQLite serialises writers, so its max id is always a safe mark.)

The statement `BILLING_YYYYMMDD_HHMMSS.csv` (run start, operator time zone) is laid out as
the brochure's, per account:

    User number : <account number>
    User ID : <account name>                 (names default to the number: `1001`)
    Date:Operation:Called:Duration:Units:<currency>
    <previous run>:REPORT:::<carried units>:<money>     only if the account was on the
                                                          previous statement
    <date>:CREDIT|ADJUST|REFUND:::<units>:<money>
    <date>:CALL:<called>:<seconds>:<-units>:<-money>
    Total::::<units>:<money>
    <blank>
    <blank>

Decisions (see docs): accounts are listed newest first (account id descending: the
brochure lists 1002 before 1001, as its Users page does); an account is on a statement when
it has entries in the period or carries a non-zero balance from the previous statement;
money is exact with trailing zeros dropped and a decimal comma (a point when the column
separator is a comma) — `ocs.cdr.money_text`. Fields holding the separator are quoted
(`"User number : 1001"` with `:`), lines end with `\\n`.

Atomicity: the statement is written to `.<name>.partial` while the run's closing balances
(`StatementBalance`, next run's REPORT) are stored under a `running` BillingRun, which
nothing else reads. One transaction then marks the run `done` (refusing if another run
finished meanwhile) and links the period's CDRs; the file is renamed last. A crash between
commit and rename is repaired by `recover_files`.

A killed run: the running process holds an exclusive `flock` on its partial file from
before the run row exists until after the rename; the kernel drops it when the process
dies, however it dies. At the next run and when `ocs serve` starts (`recover_stale_runs`),
a `running` run whose partial file can be locked has no live owner: it is marked `failed`,
its closing balances and its partial file are deleted. A run whose file is still locked is
in progress in another process and is left alone. (With PostgreSQL and several hosts, each
host cleans the runs whose partial files it holds; a remote dead run is marked `failed` by
the next successful run.)
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import fcntl
import inspect
import logging
import os
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from tortoise.expressions import Q, Subquery
from tortoise.transactions import in_transaction

from ocs.cdr import decimal_separator, money_text, stamp
from ocs.config import Settings
from ocs.db import connection
from ocs.models import Account, BillingRun, Cdr, LedgerEntry, LedgerKind, StatementBalance
from ocs.runtime import Part, ServeContext, SimplePart

log = logging.getLogger(__name__)

RUNNING, DONE, FAILED = "running", "done", "failed"
FILENAME_RE = re.compile(r"^BILLING_\d{8}_\d{6}(?:_\d+)?\.csv$")
ACCOUNT_BATCH = 500
ENTRY_PAGE = 2000
HEADER = ("Date", "Operation", "Called", "Duration", "Units")


class BillingError(Exception):
    """A billing run could not be completed; nothing was closed."""


class BillingConflict(BillingError):
    """Another billing run finished while this one was running."""


# --- statement layout (pure) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatementFormat:
    separator: str = ":"
    currency: str = "Euros"
    unit_price: Decimal = Decimal("0.0001")
    tz: tzinfo = field(default_factory=lambda: ZoneInfo("Europe/Paris"))

    @property
    def decimal_sep(self) -> str:
        return decimal_separator(self.separator)

    def money(self, units: int) -> str:
        return money_text(units, self.unit_price, self.decimal_sep)


@dataclass(frozen=True, slots=True)
class Line:
    """One dated statement line."""

    at: datetime
    operation: str  # REPORT, CREDIT, CALL, ADJUST, REFUND
    units: int
    called: str = ""
    duration: int | None = None


def block_head(number: str, user_id: str, fmt: StatementFormat) -> list[list[str]]:
    return [[f"User number : {number}"], [f"User ID : {user_id}"], [*HEADER, fmt.currency]]


def line_row(line: Line, fmt: StatementFormat) -> list[str]:
    return [
        stamp(line.at, fmt.tz),
        line.operation,
        line.called,
        "" if line.duration is None else str(line.duration),
        str(line.units),
        fmt.money(line.units),
    ]


def block_tail(total: int, fmt: StatementFormat) -> list[list[str]]:
    return [["Total", "", "", "", str(total), fmt.money(total)], [], []]


def entry_line(kind: str, amount: int, at: datetime, dialed: str, duration: int) -> Line:
    if kind == LedgerKind.CALL:
        return Line(at, "CALL", amount, dialed, duration)
    return Line(at, str(kind), amount)


def render_block(
    number: str, user_id: str, lines: Sequence[Line], fmt: StatementFormat
) -> list[list[str]]:
    """One account's rows (pure; the streaming writer emits the same rows). A REPORT line,
    when present, is the first of `lines`."""
    rows = block_head(number, user_id, fmt)
    rows.extend(line_row(line, fmt) for line in lines)
    rows.extend(block_tail(sum(line.units for line in lines), fmt))
    return rows


def statement_filename(at: datetime, tz: tzinfo, n: int = 1) -> str:
    base = f"BILLING_{stamp(at, tz)}"
    return f"{base}.csv" if n <= 1 else f"{base}_{n}.csv"


def billing_dir(settings: Settings) -> Path:
    return settings.data_dir / "billing"


def partial_name(filename: str) -> str:
    return f".{filename}.partial"


# --- progress -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BillingProgress:
    run_id: int
    filename: str
    accounts: int  # account blocks written so far
    lines: int  # dated lines written so far (REPORT/CREDIT/CALL/...)
    finished: bool = False


ProgressCallback = Callable[[BillingProgress], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class BillingResult:
    run_id: int
    filename: str
    path: Path
    first_ledger_id: int  # exclusive
    last_ledger_id: int  # inclusive
    accounts: int
    lines: int
    mismatches: int  # accounts whose total differs from their last entry's balance_after


async def _notify(cb: ProgressCallback | None, progress: BillingProgress) -> None:
    if cb is None:
        return
    result = cb(progress)
    if inspect.isawaitable(result):
        await result


# --- the run ------------------------------------------------------------------------------

_run_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _run_lock() -> asyncio.Lock:
    """One run at a time in this process (per event loop: tests use many loops)."""
    loop = asyncio.get_running_loop()
    lock = _run_locks.get(loop)
    if lock is None:
        lock = _run_locks[loop] = asyncio.Lock()
    return lock


async def high_water_mark() -> int:
    """The highest ledger entry id such that every entry at or below it is committed."""
    conn = connection()
    if conn.capabilities.dialect == "postgres":
        async with in_transaction() as tx:
            await tx.execute_script("LOCK TABLE ledger_entry IN SHARE MODE")
            rows = await tx.execute_query_dict("SELECT COALESCE(MAX(id), 0) AS m FROM ledger_entry")
    else:
        rows = await conn.execute_query_dict("SELECT COALESCE(MAX(id), 0) AS m FROM ledger_entry")
    return int(rows[0]["m"])


async def _account_batches() -> AsyncIterator[list[tuple[int, str, str]]]:
    last: int | None = None
    while True:
        query = Account.all()
        if last is not None:
            query = query.filter(id__lt=last)
        rows = await query.order_by("-id").limit(ACCOUNT_BATCH).values_list("id", "number", "name")
        if not rows:
            return
        yield [(int(r[0]), str(r[1]), str(r[2])) for r in rows]
        last = int(rows[-1][0])
        if len(rows) < ACCOUNT_BATCH:
            return


_Entry = tuple[int, int, str, int, int, str, int, datetime]  # id, acc, kind, amount, after, …


async def _entries(ids: list[int], lo: int, hi: int) -> AsyncIterator[_Entry]:
    """Entries of accounts `ids` in (lo, hi], by account id descending then entry id,
    fetched in keyset pages of ENTRY_PAGE."""
    base = LedgerEntry.filter(account_id__in=ids, id__gt=lo, id__lte=hi)
    cursor: tuple[int, int] | None = None
    while True:
        query = base
        if cursor is not None:
            acc, eid = cursor
            query = query.filter(Q(account_id__lt=acc) | Q(account_id=acc, id__gt=eid))
        rows = await query.order_by("-account_id", "id").limit(ENTRY_PAGE).values_list(
            "id", "account_id", "kind", "amount", "balance_after", "dialed", "duration",
            "created_at",
        )
        for r in rows:
            yield (int(r[0]), int(r[1]), str(r[2]), int(r[3]), int(r[4]), str(r[5]),
                   int(r[6]), r[7])
        if len(rows) < ENTRY_PAGE:
            return
        cursor = (int(rows[-1][1]), int(rows[-1][0]))


class _Peek:
    """An async iterator with one item of look-ahead."""

    _END = object()

    def __init__(self, it: AsyncIterator[_Entry]) -> None:
        self._it = it
        self._head: Any = None
        self._filled = False

    async def head(self) -> _Entry | None:
        if not self._filled:
            try:
                self._head = await anext(self._it)
            except StopAsyncIteration:
                self._head = self._END
            self._filled = True
        return None if self._head is self._END else self._head  # type: ignore[no-any-return]

    def take(self) -> None:
        self._filled = False


def _unique_filename(folder: Path, started: datetime, tz: tzinfo, taken: set[str]) -> str:
    n = 1
    while True:
        name = statement_filename(started, tz, n)
        if name not in taken and not (folder / name).exists():
            return name
        n += 1


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


async def recover_files(settings: Settings) -> None:
    """Finish renames interrupted by a crash after commit; drop partial files of runs that
    never committed."""
    folder = billing_dir(settings)
    if not folder.is_dir():
        return
    for run in await BillingRun.filter(status=DONE).order_by("-id").limit(20):
        final = folder / run.filename
        temp = folder / partial_name(run.filename)
        if not final.exists() and temp.exists():
            with _try_lock(temp) as ours:  # not while its own process is renaming it
                if ours:
                    os.replace(temp, final)
                    log.warning("billing: finished interrupted rename of %s", run.filename)
    await recover_stale_runs(settings)
    for temp in folder.glob(".BILLING_*.partial"):
        name = temp.name[1 : -len(".partial")]
        if await BillingRun.filter(filename=name, status__in=[RUNNING, DONE]).exists():
            continue
        with _try_lock(temp) as ours:  # a live run creates its file before its row
            if ours:
                temp.unlink(missing_ok=True)


@contextlib.contextmanager
def _try_lock(path: Path) -> Iterator[bool]:
    """Hold an exclusive flock on `path` if nobody else does (True), else yield False."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _lock_new_partial(path: Path) -> int:
    """Create `path` and hold an exclusive flock on it for the life of the run (the
    returned fd; closing it, or dying, releases the lock)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


async def recover_stale_runs(settings: Settings) -> list[int]:
    """Mark `failed` the running runs of dead processes and delete what they left (closing
    balances, partial file). Returns their ids."""
    folder = billing_dir(settings)
    failed: list[int] = []
    for run in await BillingRun.filter(status=RUNNING).order_by("id"):
        temp = folder / partial_name(run.filename)
        with _try_lock(temp) as ours:
            if not ours:
                continue  # alive elsewhere (or not this host's run)
            if await BillingRun.filter(id=run.id, status=RUNNING).update(status=FAILED):
                await StatementBalance.filter(run_id=run.id).delete()
                failed.append(run.id)
                log.warning("billing: run %d (%s) was killed; marked failed", run.id,
                            run.filename)
            temp.unlink(missing_ok=True)
    return failed


async def load_format() -> StatementFormat:
    from ocs.settings_store import load_operator_settings

    ops = await load_operator_settings()
    return StatementFormat(
        separator=ops.csv_separator, currency=ops.currency, unit_price=ops.unit_price, tz=ops.tz
    )


async def run_billing(
    settings: Settings,
    *,
    now: datetime | None = None,
    progress: ProgressCallback | None = None,
    fmt: StatementFormat | None = None,
) -> BillingResult:
    """Close the current period and write its statement. One run at a time per process;
    a run racing another process's run fails with BillingConflict and changes nothing."""
    async with _run_lock():
        return await _run(settings, now=now, progress=progress, fmt=fmt)


async def _run(
    settings: Settings,
    *,
    now: datetime | None,
    progress: ProgressCallback | None,
    fmt: StatementFormat | None,
) -> BillingResult:
    fmt = fmt or await load_format()
    folder = billing_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    await recover_files(settings)

    prev = await BillingRun.filter(status=DONE).order_by("-id").first()
    lo = prev.last_ledger_id if prev else 0
    hi = max(lo, await high_water_mark())
    started = (now or datetime.now(UTC)).astimezone(UTC)
    taken = set(await BillingRun.all().values_list("filename", flat=True))
    filename = _unique_filename(folder, started, fmt.tz, {str(t) for t in taken})
    temp = folder / partial_name(filename)
    lock = _lock_new_partial(temp)  # before the row: a running row always has a locked file
    try:
        run = await BillingRun.create(
            started_at=started, period_end=started, last_ledger_id=hi, filename=filename,
            status=RUNNING,
        )
    except BaseException:
        os.close(lock)
        temp.unlink(missing_ok=True)
        raise
    try:
        try:
            with open(temp, "w", encoding="utf-8", newline="") as fh:
                accounts, lines, mismatches = await _write_statement(
                    fh, run, prev, lo, hi, fmt, progress
                )
                fh.flush()
                os.fsync(fh.fileno())
            await _commit(run, prev, lo, hi, accounts, lines)
        except BaseException:
            with contextlib.suppress(Exception):
                await BillingRun.filter(id=run.id, status=RUNNING).update(status=FAILED)
                await StatementBalance.filter(run_id=run.id).delete()
            temp.unlink(missing_ok=True)
            raise
        os.replace(temp, folder / filename)
        _fsync_dir(folder)
    finally:
        os.close(lock)
    await _notify(progress, BillingProgress(run.id, filename, accounts, lines, finished=True))
    log.info("billing: %s: %d accounts, %d lines, entries (%d, %d]", filename, accounts,
             lines, lo, hi)
    return BillingResult(run.id, filename, folder / filename, lo, hi, accounts, lines,
                         mismatches)


async def _write_statement(
    fh: IO[str],
    run: BillingRun,
    prev: BillingRun | None,
    lo: int,
    hi: int,
    fmt: StatementFormat,
    progress: ProgressCallback | None,
) -> tuple[int, int, int]:
    writer = csv.writer(fh, delimiter=fmt.separator, lineterminator="\n")
    accounts = lines = mismatches = 0
    async for batch in _account_batches():
        ids = [a[0] for a in batch]
        carried: dict[int, int] = {}
        if prev is not None:
            carried = {
                int(a): int(t)
                for a, t in await StatementBalance.filter(run_id=prev.id, account_id__in=ids)
                .values_list("account_id", "total")
            }
        stream = _Peek(_entries(ids, lo, hi))
        balances: list[StatementBalance] = []
        for account_id, number, name in batch:
            head = await stream.head()
            has_entries = head is not None and head[1] == account_id
            report = carried.get(account_id)
            if not has_entries and not report:
                continue
            writer.writerows(block_head(number, name or number, fmt))
            total = 0
            if report is not None and prev is not None:
                writer.writerow(line_row(Line(prev.started_at, "REPORT", report), fmt))
                total = report
                lines += 1
            last_after: int | None = None
            while head is not None and head[1] == account_id:
                _eid, _acc, kind, amount, after, dialed, duration, at = head
                writer.writerow(line_row(entry_line(kind, amount, at, dialed, duration), fmt))
                total += amount
                last_after = after
                lines += 1
                stream.take()
                head = await stream.head()
            if last_after is not None and last_after != total:
                mismatches += 1
                log.error("billing: account %s total %d != ledger balance %d", number, total,
                          last_after)
            writer.writerows(block_tail(total, fmt))
            balances.append(StatementBalance(run_id=run.id, account_id=account_id, total=total))
            accounts += 1
            await _notify(progress, BillingProgress(run.id, run.filename, accounts, lines))
        if balances:
            await StatementBalance.bulk_create(balances)
    return accounts, lines, mismatches


async def _commit(
    run: BillingRun, prev: BillingRun | None, lo: int, hi: int, accounts: int, lines: int
) -> None:
    prev_id = prev.id if prev else 0
    async with in_transaction() as tx:
        if tx.capabilities.dialect == "postgres":
            await tx.execute_script("LOCK TABLE billing_run IN SHARE ROW EXCLUSIVE MODE")
        updated = await BillingRun.filter(id=run.id, status=RUNNING).using_db(tx).update(
            status=DONE, finished_at=datetime.now(UTC), accounts=accounts, lines=lines
        )
        newer = (
            await BillingRun.filter(status=DONE, id__gt=prev_id)
            .exclude(id=run.id)
            .using_db(tx)
            .exists()
        )
        if not updated or newer:
            raise BillingConflict("another billing run closed this period first")
        calls = LedgerEntry.filter(kind=LedgerKind.CALL, id__gt=lo, id__lte=hi).values("reference")
        await Cdr.filter(billing_run_id=None, session_id__in=Subquery(calls)).using_db(tx).update(
            billing_run_id=run.id
        )
        # Older runs still marked running can never commit now.
        await BillingRun.filter(status=RUNNING, id__lt=run.id).using_db(tx).update(status=FAILED)


# --- archives -----------------------------------------------------------------------------


async def list_runs(limit: int = 100, *, include_failed: bool = False) -> list[BillingRun]:
    query = BillingRun.all() if include_failed else BillingRun.exclude(status=FAILED)
    return list(await query.order_by("-id").limit(max(1, min(limit, 1000))))


async def statement_path(settings: Settings, run_id: int) -> Path | None:
    """The file of a finished run, or None (unknown run, not finished, file missing)."""
    run = await BillingRun.get_or_none(id=run_id, status=DONE)
    if run is None or not FILENAME_RE.match(run.filename):
        return None
    path = billing_dir(settings) / run.filename
    return path if path.is_file() else None


async def statement_path_by_name(settings: Settings, filename: str) -> Path | None:
    if not FILENAME_RE.match(filename):
        return None
    run = await BillingRun.get_or_none(filename=filename, status=DONE)
    return None if run is None else await statement_path(settings, run.id)


# --- schedule -----------------------------------------------------------------------------


def latest_boundary(schedule: str, now_local: datetime) -> datetime | None:
    """The most recent period start at or before `now_local` (local midnight; Monday for
    weekly; the 1st for monthly), or None when there is no schedule."""
    midnight = now_local.replace(hour=0, minute=0, second=0, microsecond=0)
    if schedule == "daily":
        return midnight
    if schedule == "weekly":
        return midnight - timedelta(days=midnight.weekday())
    if schedule == "monthly":
        return midnight.replace(day=1)
    return None


def is_due(schedule: str, now: datetime, last_run: datetime | None, since: datetime,
           tz: tzinfo) -> bool:
    """A scheduled run is due when a period boundary has passed since the last run (or,
    with no run yet, since `since`: the scheduler never fires at once on first start)."""
    boundary = latest_boundary(schedule, now.astimezone(tz))
    if boundary is None:
        return False
    reference = last_run if last_run is not None else since
    return boundary.astimezone(UTC) > reference.astimezone(UTC)


async def scheduler_tick(settings: Settings, since: datetime, now: datetime | None = None
                         ) -> BillingResult | None:
    """Run billing if the operator's schedule says a run is due."""
    from ocs.settings_store import load_operator_settings

    ops = await load_operator_settings()
    if ops.billing_schedule == "none":
        return None
    now = now or datetime.now(UTC)
    last = await BillingRun.filter(status=DONE).order_by("-id").first()
    if not is_due(ops.billing_schedule, now, last.started_at if last else None, since, ops.tz):
        return None
    return await run_billing(settings, now=now)


async def start_billing_scheduler(ctx: ServeContext, *, interval: float = 60.0) -> Part:
    """The `billing-scheduler` part of `ocs serve`: checks every `interval` seconds. At start,
    runs killed with an earlier process are cleaned up (`recover_stale_runs`)."""
    since = datetime.now(UTC)
    try:
        await recover_files(ctx.settings)
    except OSError as exc:  # the billing folder is unreadable: say so, keep serving
        log.error("billing: could not clean up interrupted runs: %s", exc)

    async def loop() -> None:
        while True:
            try:
                result = await scheduler_tick(ctx.settings, since)
                if result is not None:
                    log.info("billing: scheduled run wrote %s", result.filename)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("billing: scheduled run failed")
            await asyncio.sleep(interval)

    task = asyncio.create_task(loop(), name="billing-scheduler")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return SimplePart("billing-scheduler", stop)
