"""Creating many accounts at once (CSV import, calling-card batches): one transaction.

The rows are validated before (see `ocs.account_csv`, `ocs.cards`); here they are written
as one ledger-store operation, in one transaction: multi-row INSERTs of accounts, caller IDs
and each account's opening CREDIT ledger entry. Any failure (a number or PIN taken meanwhile
by another writer) rolls all of it back: nothing is half-imported.

Opening credit is written set-based rather than through `ledger.post` one account at a time
(two round trips per account made 100,000 accounts take ~55 s on PostgreSQL). It keeps the
ledger's invariants by construction: each account is created in this transaction with
``balance = credit`` and ``reserved = 0`` together with one CREDIT entry of that amount and
``balance_after = credit``, and no other transaction can see or change the account before
commit, so I1 (balance == sum of entries) and I2 (0 <= reserved <= balance) hold at commit.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ocs import ledger
from ocs.models import LedgerKind

CHUNK = 500  # rows per INSERT: 500 x 10 parameters stays far below both databases' limits

Statement = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class NewAccount:
    number: str
    name: str
    pin_index: str | None = None
    language: str = "FR"
    status: str = "active"
    caller_ids: tuple[str, ...] = ()
    credit: int = 0


@dataclass(slots=True)
class Progress:
    """Shared with a reporter (CLI bar, web page): plain attribute writes, read anywhere."""

    phase: str = "checking"
    done: int = 0
    total: int = 0
    finished: bool = False
    error: str = ""
    result: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def percent(self) -> int:
        return 100 if self.finished else int(100 * self.done / self.total) if self.total else 0


class BulkConflict(ValueError):
    """The database refused the rows (a concurrent writer took a number, PIN or caller ID)."""


def _placeholders(columns: int, rows: int) -> str:
    one = "(" + ", ".join("?" for _ in range(columns)) + ")"
    return ", ".join(one for _ in range(rows))


def insert_op(
    rows: Sequence[NewAccount],
    *,
    actor: str,
    note: str,
    progress: Progress | None = None,
    on_chunk: Callable[[], None] | None = None,
) -> Generator[Statement, list[Any], int]:
    """Insert `rows` and their initial credit; returns how many accounts were created."""
    if any(r.credit < 0 for r in rows):
        raise ledger.InvalidAmount("initial credit cannot be negative")
    now = datetime.now(UTC)
    total = len(rows)
    if progress is not None:
        progress.phase, progress.done, progress.total = "writing", 0, total
    for start in range(0, total, CHUNK):
        chunk = rows[start : start + CHUNK]
        params: list[Any] = []
        for r in chunk:
            params += [r.number, r.name, r.pin_index, r.language, r.status, r.credit, 0, now,
                       now]
        yield (
            "INSERT INTO account (number, name, pin_index, language, status, balance, reserved,"
            " created_at, updated_at) VALUES " + _placeholders(9, len(chunk)),
            tuple(params),
        )
        id_rows = yield (
            "SELECT id, number FROM account WHERE number IN ("
            + ", ".join("?" for _ in chunk) + ")",
            tuple(r.number for r in chunk),
        )
        ids = {str(number): int(account_id) for account_id, number in id_rows}
        callers = [(ids[r.number], c) for r in chunk for c in r.caller_ids]
        for c_start in range(0, len(callers), CHUNK):
            part = callers[c_start : c_start + CHUNK]
            yield (
                "INSERT INTO caller_id (account_id, number) VALUES " + _placeholders(2, len(part)),
                tuple(v for pair in part for v in pair),
            )
        credited = [r for r in chunk if r.credit > 0]
        if credited:
            values: list[Any] = []
            for r in credited:
                values += [ids[r.number], LedgerKind.CREDIT.value, r.credit, r.credit, "bulk",
                           actor[:64], note[:255], "", 0, now]
            yield (
                "INSERT INTO ledger_entry (account_id, kind, amount, balance_after, reference,"
                " actor, note, dialed, duration, created_at) VALUES "
                + _placeholders(10, len(credited)),
                tuple(values),
            )
        if progress is not None:
            progress.done = min(total, start + len(chunk))
        if on_chunk is not None:
            on_chunk()
    return total


async def insert_accounts(
    rows: Sequence[NewAccount], *, actor: str, note: str, progress: Progress | None = None
) -> int:
    """Run `insert_op` as one transaction; a database refusal becomes BulkConflict."""
    try:
        return await ledger.store().run(insert_op(rows, actor=actor, note=note,
                                                  progress=progress))
    except ledger.LedgerError:
        raise
    except Exception as exc:  # unique violations from sqlite3 / asyncpg
        name = type(exc).__name__
        if "Integrity" in name or "UniqueViolation" in name:
            raise BulkConflict(
                "another change took one of these numbers, PINs or caller IDs meanwhile;"
                " nothing was written"
            ) from exc
        raise
