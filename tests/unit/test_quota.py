"""Quota arithmetic (pure): usage pieces, cumulative cost, grants, final units."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from ocs import rating
from ocs.charging import quota
from ocs.charging.quota import ServiceUsage
from ocs.credit_control import TariffChangeUsage, UsedUnits

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)  # 19:00 Paris
FLAT = rating.Tariff("DEFAULT", 200)


def _started(at: datetime = T0) -> ServiceUsage:
    return ServiceUsage(grant_start=at)


def test_contiguous_usage_costs_like_one_call() -> None:
    u = _started()
    for chunk in (30, 30, 5):
        u = quota.record_usage(FLAT, u, [UsedUnits(chunk)], PARIS)
        u = dataclasses.replace(u, grant_start=T0 + timedelta(seconds=u.used))
    assert u.used == 65 and len(u.pieces) == 1
    assert quota.used_cost(FLAT, u, PARIS) == 13000


def test_tariff_change_usage_starts_after_seconds_at_the_change() -> None:
    t = rating.Tariff("44", 100, h2_begin=20, h2_end=8, h2_rate=50)
    change = datetime(2026, 11, 25, 19, 0, tzinfo=UTC)  # 20:00 Paris
    start = change - timedelta(seconds=40)
    u = dataclasses.replace(_started(start), tariff_time_change=change)
    # the client paused: 20 s before the change, 30 s after it
    u = quota.record_usage(
        t,
        u,
        [
            UsedUnits(20, TariffChangeUsage.UNIT_BEFORE_TARIFF_CHANGE),
            UsedUnits(30, TariffChangeUsage.UNIT_AFTER_TARIFF_CHANGE),
        ],
        PARIS,
    )
    assert u.pieces == ((start, 20), (change, 30))
    assert quota.used_cost(t, u, PARIS) == 20 * 100 + 30 * 50


def test_plan_and_grant_with_blocks_and_connection_charge() -> None:
    t = rating.Tariff("33", 10, initial_block=30, increment=6, connection_charge=50)
    u = _started()
    plan = quota.plan_reservation(t, u, 60, T0, PARIS)
    assert plan.want == 50 + 60 * 10 and plan.minimum == 50 + 30 * 10
    assert quota.grantable(t, u, 50 + 60 * 10, 60, T0, PARIS) == 60
    assert quota.grantable(t, u, 50 + 47 * 10, 60, T0, PARIS) == 42  # 30 + 2 x 6
    assert quota.grantable(t, u, 50 + 29 * 10, 60, T0, PARIS) == 0


def test_overrun_beyond_grant_must_be_covered_first() -> None:
    u = dataclasses.replace(_started(), reserved=40 * 200, granted=40)
    u = quota.record_usage(FLAT, u, [UsedUnits(41)], PARIS)
    plan = quota.plan_reservation(FLAT, u, 0, T0, PARIS)
    assert plan.want == 200 and plan.minimum == 200  # the 41st second


def test_final_unit_when_nothing_left_after_grant() -> None:
    u = _started()
    assert quota.needs_final_unit(FLAT, u, 60, 60, 12000, 0, T0, PARIS)
    assert not quota.needs_final_unit(FLAT, u, 60, 60, 12000, 200, T0, PARIS)
    assert quota.needs_final_unit(FLAT, u, 45, 60, 9000, 10**6, T0, PARIS)


def test_tariff_change_within_grant() -> None:
    t = rating.Tariff("44", 100, h2_begin=20, h2_end=8, h2_rate=50)
    start = datetime(2026, 11, 25, 18, 59, 30, tzinfo=UTC)
    assert quota.tariff_change_within(t, start, 60, PARIS) == datetime(
        2026, 11, 25, 19, 0, tzinfo=UTC
    )
    assert quota.tariff_change_within(t, start, 30, PARIS) is None
    assert quota.tariff_change_within(FLAT, start, 3600, PARIS) is None


tariffs = st.builds(
    rating.Tariff,
    prefix=st.just("33"),
    h1_rate=st.integers(0, 500),
    h2_begin=st.integers(0, 23),
    h2_end=st.integers(0, 23),
    h2_rate=st.integers(0, 500),
    initial_block=st.sampled_from([1, 6, 30, 60]),
    increment=st.sampled_from([1, 6, 30, 60]),
    connection_charge=st.integers(0, 1000),
)
starts = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(tariffs, starts, st.lists(st.integers(0, 400), min_size=1, max_size=5))
def test_contiguous_reports_match_rating_cost(t, start, chunks) -> None:
    u = _started(start)
    for c in chunks:
        u = quota.record_usage(t, u, [UsedUnits(c)], PARIS)
        u = dataclasses.replace(u, grant_start=start + timedelta(seconds=u.used))
    assert quota.used_cost(t, u, PARIS) == rating.cost(t, start, sum(chunks), PARIS)


@settings(max_examples=300, deadline=None)
@given(tariffs, starts, st.integers(0, 300), st.integers(1, 600), st.integers(0, 200_000))
def test_grant_is_the_longest_that_fits(t, start, used, requested, reserved) -> None:
    u = _started(start)
    if used:
        u = quota.record_usage(t, u, [UsedUnits(used)], PARIS)
    now = start + timedelta(seconds=used)
    g = quota.grantable(t, u, reserved, requested, now, PARIS)
    assert 0 <= g <= requested
    if g:
        assert quota.cost_for_total(t, u, used + g, now, PARIS) <= reserved
    if g < requested:
        # one more second (the next billed step) would not fit
        assert quota.cost_for_total(t, u, used + g + 1, now, PARIS) > reserved


@settings(max_examples=200, deadline=None)
@given(tariffs, starts, st.integers(0, 300), st.integers(1, 600))
def test_full_plan_reservation_grants_everything(t, start, used, requested) -> None:
    u = _started(start)
    if used:
        u = quota.record_usage(t, u, [UsedUnits(used)], PARIS)
    now = start + timedelta(seconds=used)
    plan = quota.plan_reservation(t, u, requested, now, PARIS)
    assert plan.release == 0 and plan.minimum <= plan.want
    assert quota.grantable(t, u, u.reserved + plan.want, requested, now, PARIS) == requested


def test_usage_split_in_any_order() -> None:
    t = rating.Tariff("44", 100, h2_begin=20, h2_end=8, h2_rate=50)
    change = datetime(2026, 11, 25, 19, 0, tzinfo=UTC)
    u = dataclasses.replace(_started(change - timedelta(seconds=30)), tariff_time_change=change)
    reports = [
        UsedUnits(30, TariffChangeUsage.UNIT_AFTER_TARIFF_CHANGE),
        UsedUnits(30, TariffChangeUsage.UNIT_BEFORE_TARIFF_CHANGE),
    ]
    assert quota.used_cost(t, quota.record_usage(t, u, reports, PARIS), PARIS) == 4500
