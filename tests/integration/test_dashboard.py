"""Dashboard figures from real CDRs: per local day, answer rate, top prefixes, low balance."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from ocs import accounts, dashboard, ledger
from ocs.config import Settings
from tests.calls import Call, CallRecorder, charged_call

PARIS = ZoneInfo("Europe/Paris")
DIALED = {"DEFAULT": "0141587070", "38": "38161234567", "42": "42123456"}  # rated by each


def test_day_bounds_follow_the_local_zone_across_dst() -> None:
    bounds = dashboard.day_bounds(date(2026, 3, 29), 2, PARIS)  # spring forward on the 29th
    (d1, s1, e1), (d2, s2, e2) = bounds
    assert (d1, d2) == (date(2026, 3, 28), date(2026, 3, 29))
    assert s1 == datetime(2026, 3, 27, 23, tzinfo=UTC) and e1 == s2
    assert (e2 - s2).total_seconds() == 23 * 3600


async def test_dashboard_figures(db: Settings) -> None:
    a = await accounts.create_account("1001")
    b = await accounts.create_account("1002")
    await ledger.credit(a.id, 250_000, actor="t")
    await ledger.credit(b.id, 3_000, actor="t")
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    async def cdr(day: int, hour: int, duration: int, cost: int, prefix: str) -> None:
        """A call of 1001 ending (its CDR written) at `hour` UTC, rated by `prefix`."""
        at = datetime(2026, 11, day, hour, tzinfo=UTC)
        await charged_call("1001", DIALED[prefix], duration, cost, ended=at, prefix=prefix)

    await cdr(25, 10, 65, 13000, "DEFAULT")
    await cdr(25, 11, 0, 0, "DEFAULT")  # not answered
    await cdr(24, 23, 113, 22600, "38")  # 00:00 on the 25th in Paris
    await cdr(24, 9, 3, 600, "42")
    await cdr(10, 9, 3, 600, "42")  # outside a 7-day window
    async with CallRecorder(ledger.store()) as rec:  # 1002 is in a call holding 2400
        await rec.answer(Call("1002", DIALED["DEFAULT"], 12), at=now, session_id="live")
    got = await dashboard.load(7, PARIS, 10_000, now=now)
    assert [d.day for d in got.days][-1] == date(2026, 11, 25)
    last, before = got.days[-1], got.days[-2]
    assert (last.calls, last.answered, last.seconds, last.revenue) == (3, 2, 178, 35600)
    assert (before.calls, before.seconds, before.revenue) == (1, 3, 600)
    assert got.calls == 4 and got.answered == 3
    assert got.answer_rate == 0.75 and got.average_seconds == round(181 / 3)
    assert [(t.prefix, t.calls, t.revenue) for t in got.top] == [
        ("38", 1, 22600), ("DEFAULT", 2, 13000), ("42", 1, 600)]
    assert got.live_calls == 1
    assert [x.number for x in got.low_balance] == ["1002"]  # 3000 - 2400 available


async def test_finished_days_are_aggregated_once_and_today_live(db: Settings) -> None:
    from ocs.models import DashboardDay

    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    acc = await accounts.create_account("1")
    await ledger.credit(acc.id, 10_000, actor="t")

    async def cdr(day: int, cost: int) -> None:
        at = datetime(2026, 11, day, 9, tzinfo=UTC)
        await charged_call("1", DIALED["38"], 10, cost, ended=at, prefix="38")

    await cdr(23, 100)
    await cdr(25, 200)
    first = await dashboard.load(3, PARIS, 0, now=now)
    assert [d.revenue for d in first.days] == [100, 0, 200]
    # the two finished days are stored (with a total row, even the empty 24th)
    stored = await DashboardDay.filter(tz="Europe/Paris").values_list("day", "tariff_prefix")
    assert sorted(stored) == [("2026-11-23", "*"), ("2026-11-23", "38"), ("2026-11-24", "*")]
    # a finished day is read from the cache, today from the CDRs
    await cdr(23, 5000)  # cannot happen for real (CDRs are recorded when calls end)
    await cdr(25, 30)
    again = await dashboard.load(3, PARIS, 0, now=now)
    assert [d.revenue for d in again.days] == [100, 0, 230]
    assert again.top[0].prefix == "38" and again.top[0].revenue == 330
