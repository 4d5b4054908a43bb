"""The accounts a batch touches, held in memory while the batch is computed (pure: no I/O).

A batch reads (and, on PostgreSQL, locks) the rows of every account its requests touch, then
computes every request one after another against this book: reserve, release, settle and
post change the in-memory balance and reservation exactly as the ledger's single-row
statements would (see `ocs.ledger` for the invariants I1-I3), and record the ledger entries
to insert. The batch then writes each account once, with its summed change, guarded by the
values it read. A request that fails is rolled back in memory with `mark()`/`rollback()`,
so it leaves no trace in the book, as a savepoint would in the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ocs.ledger import (
    Balance,
    InsufficientCredit,
    InvalidAmount,
    LedgerError,
    Reservation,
    Settled,
    UnknownAccountId,
)
from ocs.models import LedgerKind


@dataclass(slots=True)
class AccountRow:
    id: int
    balance: int
    reserved: int
    active: bool
    read_balance: int  # as read from the database: the write is guarded by these
    read_reserved: int

    @property
    def available(self) -> int:
        return self.balance - self.reserved

    @property
    def changed(self) -> bool:
        return self.balance != self.read_balance or self.reserved != self.read_reserved


# ledger_entry columns, in the order of `ocs.ledger.ENTRY_COLUMNS`
EntryRow = tuple[int, str, int, int, str, str, str, str, int, datetime]


class Book:
    def __init__(self, rows: dict[int, AccountRow] | None = None) -> None:
        self.accounts: dict[int, AccountRow] = rows or {}
        self.entries: list[EntryRow] = []
        self._undo: list[tuple[AccountRow, int, int]] = []

    @staticmethod
    def row(account_id: int, balance: int, reserved: int, status: Any) -> AccountRow:
        return AccountRow(
            account_id, int(balance), int(reserved), status == "active", int(balance), int(reserved)
        )

    # --- in-memory savepoints --------------------------------------------------------------

    def mark(self) -> tuple[int, int]:
        return (len(self.entries), len(self._undo))

    def rollback(self, mark: tuple[int, int]) -> None:
        entries, undo = mark
        del self.entries[entries:]
        while len(self._undo) > undo:
            row, balance, reserved = self._undo.pop()
            row.balance, row.reserved = balance, reserved

    def _touch(self, row: AccountRow) -> None:
        self._undo.append((row, row.balance, row.reserved))

    # --- reads -----------------------------------------------------------------------------

    def get(self, account_id: int) -> AccountRow:
        row = self.accounts.get(account_id)
        if row is None:
            raise UnknownAccountId(account_id)
        return row

    def balance(self, account_id: int) -> Balance:
        row = self.get(account_id)
        return Balance(row.balance, row.reserved, row.active)

    # --- the ledger's operations, on the book ----------------------------------------------

    def reserve(self, account_id: int, want: int, minimum: int = 1) -> Reservation | None:
        """Reserve up to `want` units and at least `minimum` (0 allowed: "more if you can");
        None when fewer than `minimum` are available or the account is blocked."""
        row = self.get(account_id)
        minimum = max(0, min(minimum, want))
        if want <= 0:
            return Reservation(0, row.available)
        if not row.active:
            return None  # a blocked account gets no new reservation
        take = want if row.available >= want else max(0, row.available)
        if take < minimum or (take == 0 and minimum > 0):
            return None
        if take:
            self._touch(row)
            row.reserved += take
        return Reservation(take, row.available)

    def release(self, account_id: int, units: int) -> None:
        if units <= 0:
            return
        row = self.get(account_id)
        if row.reserved < units:
            raise LedgerError(f"release of {units} units exceeds the reservation of {account_id}")
        self._touch(row)
        row.reserved -= units

    def settle(
        self,
        account_id: int,
        reserved: int,
        cost: int,
        *,
        reference: str,
        at: datetime,
        dialed: str = "",
        duration: int = 0,
        actor: str = "ocs",
        note: str = "",
        record: bool = True,
    ) -> Settled:
        """End a call: drop its reservation and debit its cost (I3: what the account cannot
        cover beyond the reservation is not charged rather than driving it negative)."""
        if cost < 0 or reserved < 0:
            raise InvalidAmount("cost and reservation must not be negative")
        row = self.get(account_id)
        if row.reserved < reserved:
            raise LedgerError(f"settle of {reserved} units exceeds the reservation of {account_id}")
        debit = min(cost, row.balance - (row.reserved - reserved))
        self._touch(row)
        row.balance -= debit
        row.reserved -= reserved
        if record:
            self.entries.append(
                (
                    account_id,
                    LedgerKind.CALL.value,
                    -debit,
                    row.balance,
                    reference,
                    actor,
                    note,
                    dialed,
                    duration,
                    at,
                )
            )
        return Settled(debit, row.balance, None)

    def post(
        self,
        account_id: int,
        amount: int,
        kind: LedgerKind,
        *,
        at: datetime,
        actor: str = "",
        note: str = "",
        reference: str = "",
    ) -> int:
        """Add `amount` (signed) to the balance; it may not dip into reserved units (I2).
        Returns the balance after."""
        if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
            raise InvalidAmount("amount must be a non-zero whole number of units")
        if kind is LedgerKind.CREDIT and amount < 0:
            raise InvalidAmount("a credit must be positive")
        row = self.get(account_id)
        if row.balance + amount < row.reserved:
            raise InsufficientCredit(f"cannot apply {amount} units: only {row.available} available")
        self._touch(row)
        row.balance += amount
        self.entries.append(
            (account_id, kind.value, amount, row.balance, reference, actor, note, "", 0, at)
        )
        return row.balance
