"""Operator corrections of a balance: signed adjustments and refunds of a call.

Every correction is one ledger entry (ADJUST or REFUND) with the operator (`actor`) and the
mandatory reason (its note), so it shows on the account statement and in the billing file.

* :func:`adjust` adds a signed amount (a debit is negative). A debit may not dip into units
  reserved by live calls: the ledger's guard (available stays >= 0) refuses it with
  ``ledger.InsufficientCredit`` and writes nothing.
* :func:`refund_call` gives back what one call cost, or part of it, from its CDR. Refunds of a
  call never add up to more than the call's cost, also when two operators refund it at the
  same moment: the check and the entry are one ledger transaction, serialised per account
  (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's writer lock does the same).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from ocs import accounts, ledger
from ocs.models import Cdr, LedgerKind

MAX_REASON = 255


class AdjustmentError(ValueError):
    """A correction that cannot be made as asked; `field` names the input at fault."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Correction:
    account: str
    kind: LedgerKind
    units: int
    balance_after: int
    entry_id: int


def _reason(reason: str) -> str:
    text = " ".join(reason.split())
    if not text:
        raise AdjustmentError("a reason is required", "reason")
    if len(text) > MAX_REASON:
        raise AdjustmentError(f"the reason is at most {MAX_REASON} characters", "reason")
    return text


async def adjust(account_number: str, units: int, *, reason: str, actor: str) -> Correction:
    """Add `units` (signed, non-zero) to the account's balance as an ADJUST entry."""
    if isinstance(units, bool) or not isinstance(units, int) or units == 0:
        raise AdjustmentError("the adjustment must be a non-zero whole number of units", "units")
    note = _reason(reason)
    account = await accounts.get_account(account_number)
    posted = await ledger.adjust(
        account.id, units, actor=actor[:64], note=note, reference="adjust",
        kind=LedgerKind.ADJUST,
    )
    return Correction(account.number, LedgerKind.ADJUST, units, posted.balance_after,
                      posted.entry_id)


def refund_reference(cdr_id: int) -> str:
    return f"cdr:{cdr_id}"


def _refund_op(
    account_id: int, cdr_id: int, cost: int, units: int | None, note: str, actor: str,
    lock: bool,
) -> Generator[tuple[str, tuple[Any, ...]], list[Any], ledger.Posted]:
    # Serialise refunds of this account before reading what was already refunded.
    yield from ledger.read_balance(account_id, lock=lock)
    rows = yield (
        "SELECT COALESCE(SUM(amount), 0) FROM ledger_entry WHERE account_id = ?"
        " AND kind = ? AND reference = ?",
        (account_id, LedgerKind.REFUND.value, refund_reference(cdr_id)),
    )
    left = cost - int(rows[0][0])
    amount = left if units is None else units
    if left <= 0:
        raise AdjustmentError(f"call {cdr_id} has already been refunded in full", "units")
    if amount <= 0 or amount > left:
        raise AdjustmentError(
            f"a refund of call {cdr_id} is 1 to {left} units (its cost less earlier refunds)",
            "units",
        )
    posted = yield from ledger.post(
        account_id, amount, LedgerKind.REFUND, actor=actor[:64], note=note,
        reference=refund_reference(cdr_id),
    )
    return posted


async def refund_call(
    cdr_id: int, *, reason: str, actor: str, units: int | None = None
) -> Correction:
    """Refund call `cdr_id`: its whole cost (less earlier refunds), or `units` of it."""
    if units is not None and (isinstance(units, bool) or not isinstance(units, int)):
        raise AdjustmentError("the refund must be a whole number of units", "units")
    note = _reason(reason)
    record = await Cdr.get_or_none(id=cdr_id)
    if record is None:
        raise LookupError(f"no call {cdr_id}")
    if record.account_id is None:  # type: ignore[attr-defined]
        raise AdjustmentError(f"call {cdr_id} belongs to no account any more")
    if record.cost <= 0:
        raise AdjustmentError(f"call {cdr_id} cost nothing: there is nothing to refund")
    store = ledger.store()
    posted = await store.run(
        _refund_op(
            record.account_id,  # type: ignore[attr-defined]
            cdr_id, record.cost, units, f"refund of call {cdr_id}: {note}"[:MAX_REASON],
            actor, lock=store.dialect == "postgres",
        )
    )
    _announce(record.account_id, posted, actor)  # type: ignore[attr-defined]
    return Correction(record.account_number, LedgerKind.REFUND, posted.amount,
                      posted.balance_after, posted.entry_id)


def _announce(account_id: int, posted: ledger.Posted, actor: str) -> None:
    # A refund is a top-up for the charging engine (RAR to sessions on final units).
    from ocs.events import default_bus

    default_bus().publish(
        "credit.change",
        account_id=account_id,
        amount=posted.amount,
        entry_kind=LedgerKind.REFUND.value,
        balance=posted.balance_after,
        actor=actor,
    )


async def refunded(cdr_id: int) -> int:
    """Units already refunded for call `cdr_id`."""
    from ocs.models import LedgerEntry

    amounts = await LedgerEntry.filter(
        kind=LedgerKind.REFUND, reference=refund_reference(cdr_id)
    ).values_list("amount", flat=True)
    return sum(int(str(a)) for a in amounts)
