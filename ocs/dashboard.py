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
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from tortoise import connections

from ocs.models import Account, CreditSession, SessionState


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


async def daily(days: int, tz: tzinfo, *, now: datetime | None = None) -> list[Day]:
    conn = connections.get("default")
    today = (now or datetime.now(UTC)).astimezone(tz).date()
    sql = _sql(
        conn,
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN duration > 0 THEN 1 ELSE 0 END), 0),"
        " COALESCE(SUM(duration), 0), COALESCE(SUM(cost), 0)"
        " FROM cdr WHERE created_at >= ? AND created_at < ?",
    )
    out = []
    for d, start, end in day_bounds(today, days, tz):
        _, rows = await conn.execute_query(sql, [_param(conn, start), _param(conn, end)])
        calls, answered, seconds, revenue = (int(v) for v in tuple(rows[0]))
        out.append(Day(d, calls, answered, seconds, revenue))
    return out


async def top_destinations(
    since: datetime, until: datetime, *, limit: int = 8
) -> list[Destination]:
    conn = connections.get("default")
    sql = _sql(
        conn,
        "SELECT tariff_prefix, COUNT(*), COALESCE(SUM(duration), 0), COALESCE(SUM(cost), 0)"
        " FROM cdr WHERE created_at >= ? AND created_at < ?"
        " GROUP BY tariff_prefix ORDER BY 4 DESC, 2 DESC LIMIT " + str(int(limit)),
    )
    _, rows = await conn.execute_query(sql, [_param(conn, since), _param(conn, until)])
    return [
        Destination(str(r[0]) or "?", int(r[1]), int(r[2]), int(r[3]))
        for r in (tuple(row) for row in rows)
    ]


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
    series = await daily(days, tz, now=now)
    bounds = day_bounds(series[-1].day, days, tz)
    top = await top_destinations(bounds[0][1], bounds[-1][2])
    return Dashboard(
        days=series,
        top=top,
        live_calls=await live_calls(),
        low_balance=await low_balance(low_threshold),
        low_threshold=low_threshold,
    )
