"""Call detail records: the row the charging engine writes, operator queries, CSV export.

Columns of the brochure's CDR page, and what each one is here:

  Date          when the call was closed and recorded (`Cdr.created_at`), local time
                (operator time zone), `YYYYMMDD_HHMMSS`. The engine writes the CDR in the
                same transaction as the CALL ledger entry and with the same instant, so a
                CDR's Date equals the date of its CALL line on the statement.
  TimeStamp     call setup, Unix epoch seconds: answer time (`started_at`) minus the
                connect delay.
  ConnectDelay  seconds from setup to answer (empty when the client did not report it).
  Durat.        charged seconds.
  Cost          units debited.
  User          account number.
  Dialed num    dialled (normalised) number.
  CallId        the switch's call id; the Diameter Session-Id when the switch sent none.
  <currency>    Cost as money (unit price × units), see `money_text`.

Queries never load a table: pages use keyset paging on the primary key (newest first) and
the CSV export walks the table in primary-key order in bounded batches.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from tortoise.queryset import QuerySet

from ocs.models import Cdr

CDR_COLUMNS = (
    "Date", "TimeStamp", "ConnectDelay", "Durat.", "Cost", "User", "Dialed num", "CallId",
)
STAMP_FORMAT = "%Y%m%d_%H%M%S"
MAX_PAGE = 500
EXPORT_BATCH = 1000

# Fields read for display/export (values_list: no model instances on the export path).
_FIELDS = (
    "id", "created_at", "started_at", "connect_delay", "duration", "cost",
    "account_number", "dialed", "call_id", "session_id", "calling", "end_reason",
    "tariff_prefix",
)


# --- formatting (pure) --------------------------------------------------------------------


def stamp(at: datetime, tz: tzinfo) -> str:
    """`YYYYMMDD_HHMMSS` in the operator time zone (the brochure's date format)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(tz).strftime(STAMP_FORMAT)


def decimal_separator(csv_separator: str) -> str:
    """The brochure (French, `Euros`) writes money with a decimal comma: `-2,26`. A comma
    cannot be both the column and the decimal separator, so with `,` columns we use `.`."""
    return "." if csv_separator == "," else ","


def money_text(units: int, unit_price: Decimal, decimal_sep: str = ",") -> str:
    """Units as money the way the brochure's statement shows it: exact (no rounding: the
    unit price has at most 9 places), trailing zeros dropped (`25`, `-1,3`, `-2,26`)."""
    value = Decimal(units) * unit_price
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text.replace(".", decimal_sep) if decimal_sep != "." else text


# --- queries ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CdrFilter:
    """Calls answered in [since, until), of one account number, to a dialled prefix."""

    since: datetime | None = None
    until: datetime | None = None
    user: str = ""
    prefix: str = ""
    billing_run: int | None = None

    def apply(self, query: QuerySet[Cdr]) -> QuerySet[Cdr]:
        if self.since is not None:
            query = query.filter(started_at__gte=self.since)
        if self.until is not None:
            query = query.filter(started_at__lt=self.until)
        if self.user:
            query = query.filter(account_number=self.user.strip())
        if self.prefix:
            query = query.filter(dialed__startswith=self.prefix.strip())
        if self.billing_run is not None:
            query = query.filter(billing_run_id=self.billing_run)
        return query


@dataclass(frozen=True, slots=True)
class CdrRecord:
    id: int
    created_at: datetime
    started_at: datetime
    connect_delay: int | None
    duration: int
    cost: int
    account_number: str
    dialed: str
    call_id: str
    session_id: str
    calling: str
    end_reason: str
    tariff_prefix: str

    @property
    def setup_epoch(self) -> int:
        return int((self.started_at - timedelta(seconds=self.connect_delay or 0)).timestamp())

    @property
    def display_call_id(self) -> str:
        return self.call_id or self.session_id


@dataclass(frozen=True, slots=True)
class CdrPage:
    items: list[CdrRecord]
    limit: int
    older: int | None  # cursor: pass as `before` for the next (older) page
    newer: int | None  # cursor: pass as `after` for the previous (newer) page


def _record(values: Sequence[Any]) -> CdrRecord:
    return CdrRecord(*values)


async def list_cdrs(
    flt: CdrFilter = CdrFilter(),
    *,
    limit: int = 50,
    before: int | None = None,
    after: int | None = None,
) -> CdrPage:
    """One page, newest first. `before=id` gives the page older than that id, `after=id`
    the page newer than it. Cost is O(limit) whatever the table size (keyset paging)."""
    limit = max(1, min(int(limit), MAX_PAGE))
    query = flt.apply(Cdr.all())
    if after is not None:
        newer_q = query.filter(id__gt=after).order_by("id").limit(limit + 1)
        rows = await newer_q.values_list(*_FIELDS)
        more_newer = len(rows) > limit
        items = [_record(r) for r in reversed(rows[:limit])]
        older_exists = bool(items) and await query.filter(id__lt=items[-1].id).exists()
        return CdrPage(
            items,
            limit,
            older=items[-1].id if items and older_exists else None,
            newer=items[0].id if items and more_newer else None,
        )
    query_page = query.filter(id__lt=before) if before is not None else query
    rows = await query_page.order_by("-id").limit(limit + 1).values_list(*_FIELDS)
    more_older = len(rows) > limit
    items = [_record(r) for r in rows[:limit]]
    newer_exists = (
        before is not None and bool(items) and await query.filter(id__gt=items[0].id).exists()
    )
    return CdrPage(
        items,
        limit,
        older=items[-1].id if items and more_older else None,
        newer=items[0].id if newer_exists else None,
    )


async def iter_cdrs(
    flt: CdrFilter = CdrFilter(),
    *,
    batch: int = EXPORT_BATCH,
) -> AsyncIterator[list[CdrRecord]]:
    """All matching CDRs, oldest first, in batches of at most `batch` (keyset on id)."""
    query = flt.apply(Cdr.all())
    last = 0
    while True:
        rows = await query.filter(id__gt=last).order_by("id").limit(batch).values_list(*_FIELDS)
        if not rows:
            return
        yield [_record(r) for r in rows]
        last = int(rows[-1][0])
        if len(rows) < batch:
            return


def csv_header(currency: str) -> list[str]:
    return [*CDR_COLUMNS, currency]


def csv_fields(rec: CdrRecord, tz: tzinfo, unit_price: Decimal, decimal_sep: str) -> list[str]:
    return [
        stamp(rec.created_at, tz),
        str(rec.setup_epoch),
        "" if rec.connect_delay is None else str(rec.connect_delay),
        str(rec.duration),
        str(rec.cost),
        rec.account_number,
        rec.dialed,
        rec.display_call_id,
        money_text(rec.cost, unit_price, decimal_sep),
    ]


def csv_text(rows: Iterable[Sequence[str]], separator: str) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=separator, lineterminator="\n")
    writer.writerows(rows)
    return buf.getvalue()


async def export_csv(
    flt: CdrFilter = CdrFilter(),
    *,
    separator: str,
    tz: tzinfo,
    unit_price: Decimal,
    currency: str,
    batch: int = EXPORT_BATCH,
) -> AsyncIterator[bytes]:
    """The CDR CSV (header + one line per call), as UTF-8 chunks of one batch each."""
    dec = decimal_separator(separator)
    yield csv_text([csv_header(currency)], separator).encode()
    async for records in iter_cdrs(flt, batch=batch):
        yield csv_text((csv_fields(r, tz, unit_price, dec) for r in records), separator).encode()


async def export_csv_with_settings(
    flt: CdrFilter = CdrFilter(),
    *,
    batch: int = EXPORT_BATCH,
) -> AsyncIterator[bytes]:
    """`export_csv` with the operator's separator, time zone, unit price and currency."""
    from ocs.settings_store import load_operator_settings

    ops = await load_operator_settings()
    async for chunk in export_csv(
        flt,
        separator=ops.csv_separator,
        tz=ops.tz,
        unit_price=ops.unit_price,
        currency=ops.currency,
        batch=batch,
    ):
        yield chunk


def record_json(rec: CdrRecord, tz: tzinfo, unit_price: Decimal) -> dict[str, Any]:
    """The REST representation of one CDR."""
    return {
        "id": rec.id,
        "date": stamp(rec.created_at, tz),
        "ended_at": rec.created_at.astimezone(UTC).isoformat(),
        "answered_at": rec.started_at.astimezone(UTC).isoformat(),
        "timestamp": rec.setup_epoch,
        "connect_delay": rec.connect_delay,
        "duration": rec.duration,
        "cost": rec.cost,
        "money": money_text(rec.cost, unit_price, "."),
        "user": rec.account_number,
        "calling": rec.calling,
        "dialed": rec.dialed,
        "call_id": rec.display_call_id,
        "session_id": rec.session_id,
        "tariff_prefix": rec.tariff_prefix,
        "end_reason": rec.end_reason,
    }


def parse_local_date(text: str, tz: tzinfo, *, end: bool = False) -> datetime:
    """Operator input for filters: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]`, `YYYYMMDD` or
    `YYYYMMDD_HHMMSS`, in the operator time zone unless it carries an offset. A bare date
    used as an upper bound (`end=True`) means the end of that day."""
    raw = text.strip()
    if not raw:
        raise ValueError("empty date")
    for fmt in ("%Y%m%d_%H%M%S", "%Y%m%d"):
        try:
            parsed = datetime.strptime(raw, fmt)
            break
        except ValueError:
            continue
    else:
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"not a date: {text!r}") from None
    date_only = len(raw) in (8, 10) and ":" not in raw
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    if date_only and end:
        parsed = parsed + timedelta(days=1)
    return parsed.astimezone(UTC)
