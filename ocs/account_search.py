"""The Users list: search by number / name, caller ID, PIN (exact), DID; filters; sorting.

* ``q``: account number prefix or part of the name;
* ``caller_id``: a caller ID (normalised like Diameter and the IVR do), prefix match;
* ``pin``: exact, through the keyed hash (the PIN is never stored, so never a prefix);
* ``did``: a DID mapped on the account (normalised), prefix match;
* ``status``: active / blocked; ``low``: available credit under the low-credit threshold;
* ``sort``: number, name, balance or last_call, ``-`` in front for descending.

"last call" is the account's newest CDR, read through the index ``cdr(account_id,
created_at)``; sorting by it uses the newest CDR id (ids grow with time, and it orders the
same way on SQLite and PostgreSQL, accounts without calls last).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime

from tortoise.expressions import F, Q, RawSQL, Subquery
from tortoise.functions import Max
from tortoise.queryset import QuerySet

from ocs import accounts, pins
from ocs.models import Account, CallerId, Cdr, DidMapping

SORTS = ("number", "name", "balance", "last_call")
STATUSES = ("active", "blocked")
_LAST_CALL_KEY = "(SELECT COALESCE(MAX(c.id), 0) FROM cdr c WHERE c.account_id = account.id)"


class SearchError(ValueError):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class UserQuery:
    q: str = ""
    caller_id: str = ""
    pin: str = ""
    did: str = ""
    status: str = ""
    low: bool = False
    sort: str = "number"

    def cleaned(self) -> UserQuery:
        sort = self.sort.strip() or "number"
        if sort.lstrip("-") not in SORTS:
            raise SearchError(f"sort by one of {', '.join(SORTS)}", "sort")
        status = self.status.strip().lower()
        if status and status not in STATUSES:
            raise SearchError("status is active or blocked", "status")
        return replace(self, q=self.q.strip(), caller_id=self.caller_id.strip(),
                       pin=self.pin.strip(), did=self.did.strip(), status=status, sort=sort)

    @property
    def active(self) -> bool:
        return bool(self.q or self.caller_id or self.pin or self.did or self.status or self.low)


@dataclass(frozen=True, slots=True)
class UserRow:
    account: Account
    last_call: datetime | None


@dataclass(frozen=True, slots=True)
class UserPage:
    rows: list[UserRow]
    total: int
    offset: int
    limit: int


def _digits(raw: str, field: str) -> str:
    try:
        return accounts.normalise_phone(raw, field)
    except accounts.AccountError as exc:
        raise SearchError(str(exc), field) from None


def build(query: UserQuery, low_threshold: int) -> QuerySet[Account]:
    """The filtered, sorted query (no I/O until awaited)."""
    qs = Account.all()
    if query.q:
        qs = qs.filter(Q(number__startswith=query.q) | Q(name__icontains=query.q))
    if query.caller_id:
        number = _digits(query.caller_id, "caller_id")
        qs = qs.filter(id__in=Subquery(
            CallerId.filter(number__startswith=number).values("account_id")))
    if query.did:
        did = _digits(query.did, "did")
        qs = qs.filter(id__in=Subquery(
            DidMapping.filter(did__startswith=did).values("account_id")))
    if query.pin:
        try:
            index = pins.pin_index(accounts.secret_key(), query.pin)
        except pins.PinError as exc:
            raise SearchError(str(exc), "pin") from None
        qs = qs.filter(pin_index=index)
    if query.status:
        qs = qs.filter(status=query.status)
    if query.low:
        qs = qs.annotate(spendable=F("balance") - F("reserved")).filter(
            spendable__lt=low_threshold
        )
    key = query.sort.lstrip("-")
    desc = query.sort.startswith("-")
    if key == "last_call":
        qs = qs.annotate(last_call_key=RawSQL(_LAST_CALL_KEY))
        key = "last_call_key"
    order = ("-" if desc else "") + key
    return qs.order_by(order, "number" if key != "number" else "id")


async def _last_calls(ids: list[int]) -> dict[int, datetime]:
    if not ids:
        return {}
    rows = await (
        Cdr.filter(account_id__in=ids)
        .annotate(last=Max("created_at"))
        .group_by("account_id")
        .values_list("account_id", "last")
    )
    out: dict[int, datetime] = {}
    for account_id, last in rows:
        if isinstance(last, str):
            last = datetime.fromisoformat(last)
        if isinstance(last, datetime):
            out[int(account_id)] = last
    return out


async def search(
    query: UserQuery, *, low_threshold: int, offset: int = 0, limit: int = 50
) -> UserPage:
    query = query.cleaned()
    qs = build(query, low_threshold)
    total = await qs.count()
    items = list(await qs.offset(max(0, offset)).limit(max(1, min(limit, 500))))
    last = await _last_calls([a.id for a in items])
    return UserPage([UserRow(a, last.get(a.id)) for a in items], total, offset, limit)


EXPORT_COLUMNS = ("number", "name", "language", "status", "balance", "reserved",
                  "available", "caller_ids", "last_call")


async def export_csv(
    query: UserQuery, *, low_threshold: int, separator: str = ",", batch: int = 2000
) -> AsyncIterator[str]:
    """The list as shown (same filters and order), as CSV chunks."""
    query = query.cleaned()
    qs = build(query, low_threshold)
    buf = io.StringIO()
    csv.writer(buf, delimiter=separator, lineterminator="\n").writerow(EXPORT_COLUMNS)
    yield buf.getvalue()
    offset = 0
    while True:
        items = list(await qs.offset(offset).limit(batch))
        if not items:
            return
        ids = [a.id for a in items]
        last = await _last_calls(ids)
        callers: dict[int, list[str]] = {}
        for account_id, number in await CallerId.filter(account_id__in=ids).order_by(
            "number"
        ).values_list("account_id", "number"):
            callers.setdefault(int(account_id), []).append(str(number))
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter=separator, lineterminator="\n")
        for a in items:
            when = last.get(a.id)
            writer.writerow([a.number, a.name, a.language, a.status.value, a.balance,
                             a.reserved, a.available, "|".join(callers.get(a.id, [])),
                             when.isoformat() if when else ""])
        yield buf.getvalue()
        offset += len(items)
        if len(items) < batch:
            return
