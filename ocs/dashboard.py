"""The operator dashboard's figures: indexed aggregate queries, no table scans.

* calls, answered calls, minutes and revenue per local day (operator time zone): one
  aggregate per day over ``cdr.created_at`` ranges, answered from the covering index
  ``(created_at, tariff_prefix, duration, cost)`` (migration 0004);
* answer rate and average call length over the period, from the same sums;
* top destinations by tariff prefix over the period (same index);
* live calls now (open credit sessions);
* the low-balance list: accounts whose available credit is under the operator's
  low-credit threshold (index on ``account.balance``).

A CDR is counted on the day it was recorded (the call's end, the CDR page's Date column),
so figures agree with the CDR page and the billing statements.

Finished days are aggregated once: a CDR's ``created_at`` is the instant the call was closed
and recorded, so once a local day has been over for ``FINAL_AFTER`` no CDR can be added to
it. Its per-prefix figures (and a ``*`` total row, also for a day without calls) are kept in
``dashboard_day`` (per time zone), and the page reads them instead of the CDRs; only the
current day is aggregated live (one GROUP BY over its range of the covering index). Two
processes filling the same day insert the same figures: conflicts are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from tortoise import connections

from ocs.models import Account, CreditSession, DashboardDay, SessionState

FINAL_AFTER = timedelta(hours=1)
TOTAL = "*"


@dataclass(frozen=True, slots=True)
class Day:
    day: date
    calls: int
    answered: int
    seconds: int
    revenue: int  # units

    @property
    def minutes(self) -> int:
        return self.seconds // 60


@dataclass(frozen=True, slots=True)
class Destination:
    prefix: str
    calls: int
    seconds: int
    revenue: int


@dataclass(frozen=True, slots=True)
class LowBalance:
    number: str
    name: str
    balance: int
    reserved: int

    @property
    def available(self) -> int:
        return self.balance - self.reserved


@dataclass(frozen=True, slots=True)
class Dashboard:
    days: list[Day]
    top: list[Destination]
    live_calls: int
    low_balance: list[LowBalance]
    low_threshold: int

    @property
    def calls(self) -> int:
        return sum(d.calls for d in self.days)

    @property
    def answered(self) -> int:
        return sum(d.answered for d in self.days)

    @property
    def seconds(self) -> int:
        return sum(d.seconds for d in self.days)

    @property
    def revenue(self) -> int:
        return sum(d.revenue for d in self.days)

    @property
    def answer_rate(self) -> float | None:
        """Share of calls with a charged duration (None without calls)."""
        return self.answered / self.calls if self.calls else None

    @property
    def average_seconds(self) -> int | None:
        """Average length of answered calls, whole seconds."""
        return round(self.seconds / self.answered) if self.answered else None


def day_bounds(today: date, days: int, tz: tzinfo) -> list[tuple[date, datetime, datetime]]:
    """The last `days` local days ending with `today`: (day, start UTC, end UTC). Pure."""
    out = []
    for i in range(days - 1, -1, -1):
        d = today - timedelta(days=i)
        start = datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC)
        n = d + timedelta(days=1)
        end = datetime(n.year, n.month, n.day, tzinfo=tz).astimezone(UTC)
        out.append((d, start, end))
    return out


def _param(conn: Any, at: datetime) -> Any:
    # Tortoise stores SQLite datetimes as text in this exact form; asyncpg takes datetimes.
    if conn.capabilities.dialect == "sqlite":
        return str(at.astimezone(UTC))
    return at


def _sql(conn: Any, sql: str) -> str:
    if conn.capabilities.dialect == "sqlite":
        return sql
    parts = sql.split("?")
    return parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], start=1))


@dataclass(frozen=True, slots=True)
class _Figures:
    calls: int
    answered: int
    seconds: int
    revenue: int


async def _by_prefix(start: datetime, end: datetime) -> dict[str, _Figures]:
    """One day range, per tariff prefix, from the covering index."""
    conn = connections.get("default")
    sql = _sql(
        conn,
        "SELECT tariff_prefix, COUNT(*), COALESCE(SUM(CASE WHEN duration > 0 THEN 1 ELSE 0"
        " END), 0), COALESCE(SUM(duration), 0), COALESCE(SUM(cost), 0)"
        " FROM cdr WHERE created_at >= ? AND created_at < ? GROUP BY tariff_prefix",
    )
    _, rows = await conn.execute_query(sql, [_param(conn, start), _param(conn, end)])
    out = {}
    for row in rows:
        prefix, calls, answered, seconds, revenue = tuple(row)
        out[str(prefix)] = _Figures(int(calls), int(answered), int(seconds), int(revenue))
    return out


def _total(parts: dict[str, _Figures]) -> _Figures:
    return _Figures(
        sum(f.calls for f in parts.values()), sum(f.answered for f in parts.values()),
        sum(f.seconds for f in parts.values()), sum(f.revenue for f in parts.values()),
    )


def vars_of(f: _Figures) -> dict[str, int]:
    return {"calls": f.calls, "answered": f.answered, "seconds": f.seconds,
            "revenue": f.revenue}


async def _finished_day(tz_key: str, d: date, start: datetime, end: datetime
                        ) -> dict[str, _Figures]:
    parts = await _by_prefix(start, end)
    rows = [DashboardDay(tz=tz_key, day=d.isoformat(), tariff_prefix=p, **vars_of(f))
            for p, f in {**parts, TOTAL: _total(parts)}.items()]
    await DashboardDay.bulk_create(rows, ignore_conflicts=True)
    return parts


async def per_day(days: int, tz: tzinfo, *, now: datetime | None = None
                  ) -> list[tuple[date, dict[str, _Figures]]]:
    """Per local day, per prefix: finished days from the cache (filled on first use),
    the rest live."""
    now = now or datetime.now(UTC)
    today = now.astimezone(tz).date()
    bounds = day_bounds(today, days, tz)
    tz_key = str(tz)
    cache: dict[str, dict[str, _Figures]] = {}
    rows = await DashboardDay.filter(
        tz=tz_key, day__in=[d.isoformat() for d, _, _ in bounds]
    ).values_list("day", "tariff_prefix", "calls", "answered", "seconds", "revenue")
    for day, prefix, calls, answered, seconds, revenue in rows:
        cache.setdefault(str(day), {})[str(prefix)] = _Figures(
            int(calls), int(answered), int(seconds), int(revenue))
    out = []
    for d, start, end in bounds:
        cached = cache.get(d.isoformat())
        if end + FINAL_AFTER > now:
            parts = await _by_prefix(start, end)  # not over yet: live
        elif cached is not None and TOTAL in cached:
            parts = {p: f for p, f in cached.items() if p != TOTAL}
        else:
            parts = await _finished_day(tz_key, d, start, end)
        out.append((d, parts))
    return out


async def daily(days: int, tz: tzinfo, *, now: datetime | None = None) -> list[Day]:
    return [Day(d, *vars_of(_total(parts)).values())
            for d, parts in await per_day(days, tz, now=now)]


def top_of(series: list[tuple[date, dict[str, _Figures]]], limit: int = 8
           ) -> list[Destination]:
    acc: dict[str, list[int]] = {}
    for _, parts in series:
        for prefix, f in parts.items():
            row = acc.setdefault(prefix, [0, 0, 0])
            row[0] += f.calls
            row[1] += f.seconds
            row[2] += f.revenue
    ranked = sorted(acc.items(), key=lambda kv: (-kv[1][2], -kv[1][0], kv[0]))
    return [Destination(p or "?", c, s, r) for p, (c, s, r) in ranked[:limit]]


async def low_balance(threshold: int, *, limit: int = 20) -> list[LowBalance]:
    """Active accounts with less than `threshold` units available, poorest first.

    available = balance - reserved. Read through the index on balance (balance < threshold)
    plus the few accounts holding a reservation (those in live calls), never the table."""
    fields = ("number", "name", "balance", "reserved")
    rows = list(
        await Account.filter(balance__lt=threshold, status="active")
        .order_by("balance").limit(limit).values_list(*fields)
    )
    in_calls = await CreditSession.filter(state=SessionState.OPEN).values_list(
        "account_id", flat=True)
    ids = {int(str(i)) for i in in_calls if i is not None}
    if ids:
        rows += await Account.filter(id__in=list(ids), status="active",
                                     balance__gte=threshold).values_list(*fields)
    found = {str(n): LowBalance(str(n), str(m), int(b), int(r)) for n, m, b, r in rows}
    low = [a for a in found.values() if a.available < threshold]
    return sorted(low, key=lambda a: (a.available, a.number))[:limit]


async def live_calls() -> int:
    return await CreditSession.filter(state=SessionState.OPEN).count()


async def load(days: int, tz: tzinfo, low_threshold: int, *,
               now: datetime | None = None) -> Dashboard:
    series = await per_day(days, tz, now=now)
    return Dashboard(
        days=[Day(d, *vars_of(_total(parts)).values()) for d, parts in series],
        top=top_of(series),
        live_calls=await live_calls(),
        low_balance=await low_balance(low_threshold),
        low_threshold=low_threshold,
    )
