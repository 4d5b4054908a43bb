"""The credit ledger: every balance change is an entry; reservations never over-commit.

Invariants (see docs/ARCHITECTURE.md, checked by tests that try to break them):
  I1  account.balance == sum(ledger_entry.amount) for the account
  I2  0 <= account.reserved <= account.balance   (available = balance - reserved >= 0)
  I3  a reservation is only ever taken from available units; a call's debit is at most
      what it had reserved plus what was still available when it settled.

Operations are written sans-I/O: each is a generator that yields SQL statements (with `?`
placeholders) and receives their rows, so the same logic runs on a synchronous sqlite3
connection in a worker thread (one thread hop per *batch*, which is what makes group
commit cheap) and on asyncpg. `LedgerStore.run_batch` executes many operations in one
transaction: nothing is acknowledged before it is durable, and the fsync is shared.

Two concurrency strategies are implemented and benchmarked (`bench/ledger_concurrency.py`):
  conditional  single guarded UPDATEs (`... WHERE balance - reserved >= ?`), re-read and
               retry with a smaller amount only when the guard fails;
  lock         SELECT ... FOR UPDATE, compute, UPDATE (PostgreSQL only; SQLite's
               BEGIN IMMEDIATE already serialises writers).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import queue
import re
import sqlite3
import threading
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from ocs.models import LedgerKind
from ocs.numbers import MAX_UNITS
from ocs.relay import topup_statement

T = TypeVar("T")
Row = Sequence[Any]
Statement = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Many:
    """One statement applied to many rows, in one round trip whatever their number.

    SQLite runs `sql` once per row (executemany: in-process, one prepared statement);
    PostgreSQL runs `pg_sql` once, with one array parameter per column (unnest), so its text
    never changes with the number of rows. The op receives `[(rows_affected,)]`."""

    sql: str
    pg_sql: str
    rows: Sequence[tuple[Any, ...]] = ()
    times: tuple[int, ...] = ()  # the columns holding instants (SQLite stores them as text)

    def of(self, rows: Sequence[tuple[Any, ...]]) -> Many:
        return Many(self.sql, self.pg_sql, rows, self.times)


@dataclass(frozen=True, slots=True)
class Together:
    """Several `Many` statements with nothing to read between them, in one round trip on
    PostgreSQL (data-modifying CTEs of one statement), one after another on SQLite. The op
    receives the rows each affected, `[(n1, n2, ...)]`."""

    stmts: tuple[Many, ...]


@dataclass(frozen=True, slots=True)
class Check:
    """A planned write and what it must affect: `clash` is raised when another count comes
    back (the batch is rolled back)."""

    stmt: Many
    expect: int | None = None
    clash: Exception | None = None


def run_checked(checks: Sequence[Check]) -> Generator[Statement | Many | Together, list[Row], None]:
    """Run planned writes together and raise the first clash."""
    if not checks:
        return
    counts = (yield Together(tuple(c.stmt for c in checks)))[0]
    for check, n in zip(checks, counts, strict=True):
        if check.expect is not None and n != check.expect:
            raise check.clash or StaleRead(f"{n} rows written, {check.expect} expected")


Op = Generator[Statement | Many | Together, list[Row], T]


class Dialect:
    """The few SQL spellings that differ between SQLite and PostgreSQL in batch statements."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.postgres = name == "postgres"
        # SQLite's BEGIN IMMEDIATE already makes the batch the only writer.
        self.for_update = " FOR UPDATE" if self.postgres else ""
        self.skip_locked = " FOR UPDATE SKIP LOCKED" if self.postgres else ""

    def in_list(self, column: str, pg_type: str) -> str:
        """`column` is one of a list given as one parameter (see `list_param`)."""
        if self.postgres:
            return f"{column} = ANY(?::{pg_type}[])"
        return f"{column} IN (SELECT value FROM json_each(?))"

    def list_param(self, values: Sequence[Any]) -> Any:
        return list(values) if self.postgres else json.dumps(list(values))


SQLITE = Dialect("sqlite")
POSTGRES = Dialect("postgres")


class LedgerError(Exception):
    """Base of ledger failures that callers report to users."""


class UnknownAccountId(LedgerError):
    def __init__(self, account_id: int) -> None:
        super().__init__(f"unknown account id {account_id}")
        self.account_id = account_id


class InvalidAmount(LedgerError):
    pass


class InsufficientCredit(LedgerError):
    pass


class Strategy(enum.StrEnum):
    CONDITIONAL = "conditional"
    LOCK = "lock"


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Posted:
    entry_id: int
    amount: int
    balance_after: int


@dataclass(frozen=True, slots=True)
class Settled:
    debited: int  # units taken from the balance (<= cost when the account ran dry)
    balance_after: int
    entry_id: int | None


@dataclass(frozen=True, slots=True)
class Reservation:
    taken: int  # units added to the reservation
    available_after: int  # what the account has left to spend afterwards


@dataclass(frozen=True, slots=True)
class Balance:
    balance: int
    reserved: int
    active: bool = True

    @property
    def available(self) -> int:
        return self.balance - self.reserved


# --- operations (pure generators) ----------------------------------------------------

_SELECT = "SELECT balance, reserved, status FROM account WHERE id = ?"


def _insert_entry(
    account_id: int,
    kind: LedgerKind,
    amount: int,
    balance_after: int,
    reference: str,
    actor: str,
    note: str,
    dialed: str,
    duration: int,
    at: datetime,
) -> Statement:
    return (
        "INSERT INTO ledger_entry (account_id, kind, amount, balance_after, reference, actor,"
        " note, dialed, duration, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            account_id,
            kind.value,
            amount,
            balance_after,
            reference,
            actor,
            note,
            dialed,
            duration,
            at,
        ),
    )


def read_balance(account_id: int, lock: bool = False) -> Op[Balance]:
    rows = yield (_SELECT + (" FOR UPDATE" if lock else ""), (account_id,))
    if not rows:
        raise UnknownAccountId(account_id)
    return Balance(int(rows[0][0]), int(rows[0][1]), rows[0][2] == "active")


def post(
    account_id: int,
    amount: int,
    kind: LedgerKind,
    *,
    actor: str = "",
    note: str = "",
    reference: str = "",
    at: datetime | None = None,
) -> Op[Posted]:
    """Add `amount` (signed) to the balance. A negative amount may not dip into reserved
    units: the guard keeps available >= 0 (I2)."""
    if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
        raise InvalidAmount("amount must be a non-zero whole number of units")
    # Every front end checks this too; the ledger refuses on its own so that no caller
    # (script, future route) can overflow the 64-bit balance with one posting.
    if abs(amount) > MAX_UNITS:
        raise InvalidAmount(f"amount too large: at most {MAX_UNITS} units per operation")
    if kind is LedgerKind.CREDIT and amount < 0:
        raise InvalidAmount("a credit must be positive")
    rows = yield (
        "UPDATE account SET balance = balance + ? WHERE id = ? AND balance + ? >= reserved"
        " RETURNING balance",
        (amount, account_id, amount),
    )
    if not rows:
        current = yield from read_balance(account_id)
        raise InsufficientCredit(f"cannot apply {amount} units: only {current.available} available")
    balance_after = int(rows[0][0])
    at = at or now_utc()
    ids = yield _insert_entry(
        account_id, kind, amount, balance_after, reference, actor, note, "", 0, at
    )
    return Posted(int(ids[0][0]), amount, balance_after)


def reserve(
    account_id: int, want: int, minimum: int = 1, strategy: Strategy = Strategy.CONDITIONAL
) -> Op[Reservation | None]:
    """Reserve up to `want` units and at least `minimum` (0 allowed: "more if you can");
    None when fewer than `minimum` are available."""
    minimum = max(0, min(minimum, want))
    if want <= 0:
        current = yield from read_balance(account_id)
        return Reservation(0, current.available)
    if strategy is Strategy.LOCK:
        current = yield from read_balance(account_id, lock=True)
        if not current.active:
            return None  # a blocked account gets no new reservation
        take = min(want, max(0, current.available))
        if take < minimum or (take == 0 and minimum > 0):
            return None
        if take:
            yield ("UPDATE account SET reserved = reserved + ? WHERE id = ?", (take, account_id))
        return Reservation(take, current.available - take)
    take = want
    while True:
        rows = yield (
            "UPDATE account SET reserved = reserved + ? WHERE id = ? AND status = 'active'"
            " AND balance - reserved >= ? RETURNING balance - reserved",
            (take, account_id, take),
        )
        if rows:
            return Reservation(take, int(rows[0][0]))
        current = yield from read_balance(account_id)
        if not current.active:
            return None  # the guard failed on status, not on credit: retrying cannot help
        take = min(want, max(0, current.available))
        if take < minimum or (take == 0 and minimum > 0):
            return None
        if take == 0:
            return Reservation(0, current.available)


def release(account_id: int, units: int) -> Op[None]:
    if units <= 0:
        return
    rows = yield (
        "UPDATE account SET reserved = reserved - ? WHERE id = ? AND reserved >= ? RETURNING id",
        (units, account_id, units),
    )
    if not rows:
        raise LedgerError(f"release of {units} units exceeds the reservation of {account_id}")


def settle(
    account_id: int,
    reserved: int,
    cost: int,
    *,
    reference: str,
    dialed: str = "",
    duration: int = 0,
    actor: str = "ocs",
    note: str = "",
    record: bool = True,
    at: datetime | None = None,
    strategy: Strategy = Strategy.CONDITIONAL,
) -> Op[Settled]:
    """End a call: drop its reservation and debit its cost in one statement (I3).

    When the cost is more than the reservation (the client used more than granted) the
    excess is taken from available units if there are any; what the account cannot cover
    is not charged rather than driving the balance negative (documented write-off)."""
    if cost < 0 or reserved < 0:
        raise InvalidAmount("cost and reservation must not be negative")
    debit = cost
    if strategy is Strategy.LOCK:
        current = yield from read_balance(account_id, lock=True)
        if current.reserved < reserved:
            raise LedgerError(f"settle of {reserved} units exceeds the reservation of {account_id}")
        debit = min(cost, current.balance - (current.reserved - reserved))
        rows = yield (
            "UPDATE account SET balance = balance - ?, reserved = reserved - ? WHERE id = ?"
            " RETURNING balance",
            (debit, reserved, account_id),
        )
    else:
        while True:
            rows = yield (
                "UPDATE account SET balance = balance - ?, reserved = reserved - ?"
                " WHERE id = ? AND reserved >= ? AND balance - ? >= reserved - ?"
                " RETURNING balance",
                (debit, reserved, account_id, reserved, debit, reserved),
            )
            if rows:
                break
            current = yield from read_balance(account_id)
            if current.reserved < reserved:
                raise LedgerError(
                    f"settle of {reserved} units exceeds the reservation of {account_id}"
                )
            debit = min(cost, current.balance - (current.reserved - reserved))
    balance_after = int(rows[0][0])
    entry_id: int | None = None
    if record:
        ids = yield _insert_entry(
            account_id,
            LedgerKind.CALL,
            -debit,
            balance_after,
            reference,
            actor,
            note,
            dialed,
            duration,
            at or now_utc(),
        )
        entry_id = int(ids[0][0])
    return Settled(debit, balance_after, entry_id)


# --- set-based statements for a batch (see ocs.charging.book) -------------------------------

ENTRY_COLUMNS = (
    "account_id, kind, amount, balance_after, reference, actor, note, dialed, duration, created_at"
)
_INSERT_ENTRIES = Many(
    f"INSERT INTO ledger_entry ({ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    f"INSERT INTO ledger_entry ({ENTRY_COLUMNS}) SELECT * FROM unnest($1::int[], $2::text[],"
    " $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int[],"
    " $10::timestamptz[])",
    times=(9,),
)
# Guarded by the values the batch read (and locked): a mismatch means the lock did not hold.
_UPDATE_ACCOUNTS = Many(
    "UPDATE account SET balance = ?, reserved = ? WHERE id = ? AND balance = ? AND reserved = ?",
    "UPDATE account AS a SET balance = v.balance, reserved = v.reserved"
    " FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::bigint[], $5::bigint[])"
    " AS v(balance, reserved, id, read_balance, read_reserved)"
    " WHERE a.id = v.id AND a.balance = v.read_balance AND a.reserved = v.read_reserved",
)


class StaleRead(LedgerError):
    """A row a batch had read changed before the batch wrote it: the batch is rolled back
    and run again."""


def read_accounts(ids: Sequence[int], dialect: Dialect) -> Op[list[Row]]:
    """(id, balance, reserved, status) of the accounts, locked in id order on PostgreSQL
    (one order for every batch of every process: no deadlock between batches)."""
    if not ids:
        return []
    return (
        yield (
            "SELECT id, balance, reserved, status FROM account WHERE "
            + dialect.in_list("id", "int")
            + " ORDER BY id"
            + dialect.for_update,
            (dialect.list_param(sorted(ids)),),
        )
    )


def account_writes(
    changes: Sequence[tuple[int, int, int, int, int]], entries: Sequence[tuple[Any, ...]]
) -> list[Check]:
    """A batch's account changes, (id, balance, reserved, read balance, read reserved) each,
    and its ledger entries: one statement each, whatever their number."""
    out = []
    if changes:
        rows = [(bal, res, aid, rbal, rres) for aid, bal, res, rbal, rres in changes]
        out.append(
            Check(
                _UPDATE_ACCOUNTS.of(rows),
                len(rows),
                StaleRead("an account changed under a batch that had locked it"),
            )
        )
    if entries:
        out.append(Check(_INSERT_ENTRIES.of(entries)))
    return out


def check_invariants(account_id: int) -> Op[list[str]]:
    """The ledger's promises for one account, as a list of violations (empty = fine)."""
    bal = yield from read_balance(account_id)
    rows = yield (
        "SELECT COALESCE(SUM(amount), 0) FROM ledger_entry WHERE account_id = ?",
        (account_id,),
    )
    total = int(rows[0][0])
    problems = []
    if total != bal.balance:
        problems.append(f"balance {bal.balance} != sum of entries {total}")
    if bal.reserved < 0:
        problems.append(f"reserved {bal.reserved} < 0")
    if bal.available < 0:
        problems.append(f"available {bal.available} < 0")
    return problems


# --- executors ---------------------------------------------------------------------------


def drive_sync(cursor: _SqliteCursor, op: Op[T]) -> T:
    try:
        stmt = next(op)
        while True:
            if isinstance(stmt, Many):
                stmt = op.send([(cursor.executemany(stmt),)])
            elif isinstance(stmt, Together):
                stmt = op.send([tuple(cursor.executemany(m) for m in stmt.stmts)])
            else:
                cursor.execute(stmt[0], stmt[1])
                stmt = op.send(cursor.fetchall())
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def _to_pg(sql: str) -> str:
    parts = sql.split("?")
    out = [parts[0]]
    for i, part in enumerate(parts[1:], start=1):
        out.append(f"${i}")
        out.append(part)
    return "".join(out)


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return str(value.astimezone(UTC))
    return value


_PARAM = re.compile(r"\$(\d+)")


def _together(t: Together) -> tuple[str, list[Any]]:
    """PostgreSQL: the statements as data-modifying CTEs of one statement, counting rows."""
    parts: list[str] = []
    args: list[Any] = []
    for i, m in enumerate(t.stmts):
        offset = len(args)

        def renumber(p: re.Match[str], offset: int = offset) -> str:
            return f"${int(p.group(1)) + offset}"

        parts.append(f"w{i} AS ({_PARAM.sub(renumber, m.pg_sql)} RETURNING 1)")
        args.extend(zip(*m.rows, strict=True))
    counts = ", ".join(f"(SELECT count(*) FROM w{i})" for i in range(len(t.stmts)))
    return f"WITH {', '.join(parts)} SELECT {counts}", args


def _sqlite_time(value: datetime) -> str:
    return str(value if value.tzinfo is UTC else value.astimezone(UTC))


def _sqlite_rows(stmt: Many) -> Sequence[Sequence[Any]]:
    """The rows with their instants as text, the way Tortoise stores them in SQLite."""
    if not stmt.times:
        return stmt.rows
    out = []
    texts: dict[datetime, str] = {}  # a batch's rows share few instants (its `now`)
    for row in stmt.rows:
        values = list(row)
        for i in stmt.times:
            at = values[i]
            if at is not None:
                text = texts.get(at)
                if text is None:
                    text = texts[at] = _sqlite_time(at)
                values[i] = text
        out.append(values)
    return out


class LedgerStore:
    """Runs ledger operations, one at a time or many in one transaction (group commit)."""

    dialect: str = ""
    sql: Dialect = SQLITE

    async def run(self, op: Op[T]) -> T:
        results = await self.run_batch([op])
        result = results[0]
        if isinstance(result, BaseException):
            raise result
        return result

    async def run_batch(self, ops: Sequence[Op[Any]]) -> list[Any]:
        """Run `ops` in one transaction. Each result is the op's return value, or the
        LedgerError it raised (that op's statements are rolled back, the others kept)."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class SqliteLedgerStore(LedgerStore):
    """One sqlite3 connection owned by one worker thread; a batch is one thread hop."""

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self._path = path
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[sqlite3.Connection], Any], Future[Any]] | None
        ]
        self._jobs = queue.SimpleQueue()
        self._ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._worker, name="ledger-sqlite", daemon=True)
        self._thread.start()
        self._ready.result()

    def _worker(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException as exc:  # noqa: BLE001 -- handed to the thread that waits for the connection
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        while True:
            job = self._jobs.get()
            if job is None:
                conn.close()
                return
            fn, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(conn))
            except BaseException as exc:  # noqa: BLE001 -- re-raised in the awaiting coroutine
                fut.set_exception(exc)

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        fut: Future[T] = Future()
        self._jobs.put((fn, fut))
        return await asyncio.wrap_future(fut)

    @staticmethod
    def _run_ops(conn: sqlite3.Connection, ops: Sequence[Op[Any]]) -> list[Any]:
        cur = conn.cursor()
        sq = _SqliteCursor(cur)
        results: list[Any] = []
        cur.execute("BEGIN IMMEDIATE")
        try:
            if len(ops) == 1:
                # One operation (a set-based batch): it is the transaction, no savepoint.
                try:
                    results.append(drive_sync(sq, ops[0]))
                except sqlite3.OperationalError:
                    raise
                except Exception as exc:  # noqa: BLE001 -- becomes this operation's answer
                    cur.execute("ROLLBACK")
                    return [exc]
            else:
                for i, op in enumerate(ops):
                    cur.execute(f"SAVEPOINT op{i}")
                    try:
                        results.append(drive_sync(sq, op))
                        cur.execute(f"RELEASE op{i}")
                    except sqlite3.OperationalError:
                        raise  # the database itself is in trouble: fail the whole batch
                    except Exception as exc:  # noqa: BLE001
                        # A refused or faulty operation must not sink the others.
                        cur.execute(f"ROLLBACK TO op{i}")
                        cur.execute(f"RELEASE op{i}")
                        results.append(exc)
            cur.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                cur.execute("ROLLBACK")
            raise
        return results

    async def run_batch(self, ops: Sequence[Op[Any]]) -> list[Any]:
        return await self.call(lambda conn: self._run_ops(conn, ops))

    async def close(self) -> None:
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join, 5)


class _SqliteCursor:
    """Adapts parameters (datetimes) the way Tortoise stores them in SQLite."""

    __slots__ = ("_cur",)

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur

    def execute(self, sql: str, params: tuple[Any, ...]) -> None:
        self._cur.execute(sql, tuple(_sqlite_value(p) for p in params))

    def executemany(self, stmt: Many) -> int:
        self._cur.executemany(stmt.sql, _sqlite_rows(stmt))
        return int(self._cur.rowcount)

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()


class PostgresLedgerStore(LedgerStore):
    dialect = "postgres"
    sql = POSTGRES

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._sql_cache: dict[str, str] = {}

    @classmethod
    async def open(cls, dsn: str, min_size: int = 2, max_size: int = 8) -> PostgresLedgerStore:
        import asyncpg

        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
        return cls(pool)

    def _sql(self, sql: str) -> str:
        cached = self._sql_cache.get(sql)
        if cached is None:
            cached = self._sql_cache[sql] = _to_pg(sql)
        return cached

    async def _drive(self, conn: Any, op: Op[T]) -> T:
        try:
            stmt = next(op)
            while True:
                if isinstance(stmt, Many):
                    status = await conn.execute(stmt.pg_sql, *zip(*stmt.rows, strict=True))
                    stmt = op.send([(int(status.rsplit(" ", 1)[-1]),)])
                elif isinstance(stmt, Together):
                    sql, args = _together(stmt)
                    stmt = op.send([tuple(await conn.fetchrow(sql, *args))])
                else:
                    rows = await conn.fetch(self._sql(stmt[0]), *stmt[1])
                    stmt = op.send(list(rows))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def run_batch(self, ops: Sequence[Op[Any]]) -> list[Any]:
        import asyncpg

        fatal = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError)
        results: list[Any] = []
        async with self._pool.acquire() as conn:
            if len(ops) == 1:
                # One operation (a set-based batch): it is the transaction, no savepoint.
                try:
                    async with conn.transaction():
                        results.append(await self._drive(conn, ops[0]))
                except fatal:
                    raise
                except Exception as exc:  # noqa: BLE001 -- becomes this operation's answer
                    return [exc]
                return results
            async with conn.transaction():
                for op in ops:
                    try:
                        async with conn.transaction():  # savepoint per op
                            results.append(await self._drive(conn, op))
                    except fatal:
                        raise
                    except Exception as exc:  # noqa: BLE001 -- one refused operation, not the batch
                        results.append(exc)
        return results

    async def close(self) -> None:
        await self._pool.close()


def postgres_dsn(database_url: str) -> str:
    """asyncpg's spelling of an OCS_DATABASE_URL."""
    for scheme in ("postgres://", "asyncpg://", "psycopg://"):
        if database_url.startswith(scheme):
            return "postgresql://" + database_url.removeprefix(scheme)
    return database_url


async def open_store(database_url: str) -> LedgerStore:
    if database_url.startswith("sqlite://"):
        path = database_url.split("://", 1)[1].split("?", 1)[0]
        return SqliteLedgerStore(path)
    return await PostgresLedgerStore.open(postgres_dsn(database_url))


# --- module-level convenience for admin paths (API, CLI, billing) -------------------------

_store: LedgerStore | None = None


def set_store(store: LedgerStore | None) -> None:
    global _store
    _store = store


def store() -> LedgerStore:
    if _store is None:
        raise RuntimeError("ledger store not open: use ocs.db.database() or init_db()")
    return _store


async def credit(
    account_id: int, amount: int, *, actor: str, note: str = "", reference: str = ""
) -> Posted:
    """Add credit (positive units). Raises InvalidAmount / UnknownAccountId."""
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise InvalidAmount("credit must be a positive whole number of units")
    posted = await store().run(
        _posting(account_id, amount, LedgerKind.CREDIT, actor=actor, note=note, reference=reference)
    )
    _announce(account_id, posted, LedgerKind.CREDIT, actor)
    return posted


def _posting(account_id: int, amount: int, kind: LedgerKind, **details: Any) -> Op[Posted]:
    """`post`, and on PostgreSQL a top-up tells every OCS process in the same transaction
    (they re-authorise the account's sessions on final units, see ocs.relay)."""
    posted = yield from post(account_id, amount, kind, **details)
    if amount > 0 and store().dialect == "postgres":
        yield topup_statement(account_id)
    return posted


def _announce(account_id: int, posted: Posted, kind: LedgerKind, actor: str) -> None:
    # The charging engine listens for top-ups to re-authorise sessions on final units.
    from ocs.events import default_bus

    default_bus().publish(
        "credit.change",
        account_id=account_id,
        amount=posted.amount,
        entry_kind=kind.value,
        balance=posted.balance_after,
        actor=actor,
    )


async def adjust(
    account_id: int,
    amount: int,
    *,
    actor: str,
    note: str = "",
    reference: str = "",
    kind: LedgerKind = LedgerKind.ADJUST,
) -> Posted:
    """A signed correction (ADJUST) or a refund (REFUND, positive)."""
    posted = await store().run(
        _posting(account_id, amount, kind, actor=actor, note=note, reference=reference)
    )
    _announce(account_id, posted, kind, actor)
    return posted


async def balance(account_id: int) -> Balance:
    return await store().run(read_balance(account_id))


async def invariant_violations(account_id: int) -> list[str]:
    return await store().run(check_invariants(account_id))
