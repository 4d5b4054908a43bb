"""Rating engine: tariffs, lookup, time bands, increments, affordability."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ocs.rating import (
    DEFAULT_PREFIX,
    Band,
    BarredDestination,
    NoTariff,
    RatingError,
    Segment,
    Tariff,
    TariffTable,
    affordable,
    band_at,
    billed_seconds,
    breakdown,
    check_allowed,
    cost,
    cost_of_usage_split,
    next_band_change,
    normalise_number,
    rate_seconds,
)

PARIS = ZoneInfo("Europe/Paris")
ZONES = [
    PARIS,
    ZoneInfo("UTC"),
    ZoneInfo("America/New_York"),
    ZoneInfo("Asia/Kolkata"),  # +05:30: local hours are not UTC hours
    ZoneInfo("Australia/Lord_Howe"),  # 30-minute DST shift
]
# 2026 DST days in Europe/Paris: 29 March 02:00 -> 03:00, 25 October 03:00 -> 02:00.
SPRING = datetime(2026, 3, 29, tzinfo=PARIS)
AUTUMN = datetime(2026, 10, 25, tzinfo=PARIS)
WINTER_DAY = datetime(2026, 1, 15, 10, 0, tzinfo=PARIS)

BROCHURE = TariffTable(
    [Tariff(DEFAULT_PREFIX, 200), Tariff("38", 180), Tariff("42", 250)],
)
NIGHT = Tariff("33", h1_rate=100, h2_begin=22, h2_end=6, h2_rate=50)


def paris(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=PARIS)


# ----------------------------------------------------------------- reference (per second)


def ref_in_h2(t: Tariff, hour: int) -> bool:
    if t.h2_begin == t.h2_end:
        return False
    hours = set()
    h = t.h2_begin
    while h != t.h2_end:
        hours.add(h)
        h = (h + 1) % 24
    return hour in hours


def ref_rate_at(t: Tariff, at: datetime, tz: ZoneInfo) -> int:
    return t.h2_rate if ref_in_h2(t, at.astimezone(tz).hour) else t.h1_rate


def ref_billed(t: Tariff, d: int) -> int:
    if d == 0:
        return 0
    n = t.initial_block
    while n < d:
        n += t.increment
    return n


def ref_cost(t: Tariff, start: datetime, d: int, tz: ZoneInfo) -> int:
    billed = ref_billed(t, d)
    if billed == 0:
        return 0
    return t.connection_charge + sum(
        ref_rate_at(t, start + timedelta(seconds=k), tz) for k in range(billed)
    )


# ----------------------------------------------------------------- strategies

hours = st.integers(0, 23)
tariffs = st.builds(
    Tariff,
    prefix=st.just("1"),
    h1_rate=st.integers(0, 300),
    h2_begin=hours,
    h2_end=hours,
    h2_rate=st.integers(0, 300),
    initial_block=st.sampled_from([1, 1, 6, 30, 60, 7]),
    increment=st.sampled_from([1, 1, 6, 60, 13]),
    connection_charge=st.sampled_from([0, 0, 1, 500]),
)
zones = st.sampled_from(ZONES)
# Instants near band edges and DST days are where bugs live: anchor on those.
anchors = st.sampled_from(
    [
        SPRING,
        AUTUMN,
        WINTER_DAY,
        datetime(2026, 4, 5, tzinfo=ZoneInfo("Australia/Lord_Howe")),
        datetime(2026, 10, 4, tzinfo=ZoneInfo("Australia/Lord_Howe")),
        datetime(2026, 3, 8, tzinfo=ZoneInfo("America/New_York")),
        datetime(2026, 11, 1, tzinfo=ZoneInfo("America/New_York")),
    ]
)
starts = st.builds(
    lambda a, s, us: a.astimezone(UTC) + timedelta(seconds=s, microseconds=us),
    anchors,
    st.integers(-6 * 3600, 30 * 3600),
    st.sampled_from([0, 0, 0, 1, 500_000, 999_999]),
)


# ================================================================= Tariff


def test_tariff_defaults() -> None:
    t = Tariff("DEFAULT", 200)
    assert (t.initial_block, t.increment, t.connection_charge, t.barred) == (1, 1, 0, False)
    assert t.is_default and not t.has_h2 and t.constant_rate == 200 and not t.is_free


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prefix": "+33"}, "prefix"),
        ({"prefix": ""}, "prefix"),
        ({"prefix": "default"}, "prefix"),
        ({"prefix": "3 3"}, "prefix"),
        ({"prefix": "٣٣"}, "prefix"),  # Arabic-Indic digits are not ASCII digits
        ({"prefix": "1" * 33}, "prefix"),
        ({"h1_rate": -1}, "h1_rate"),
        ({"h1_rate": 1.5}, "h1_rate"),
        ({"h2_rate": -5}, "h2_rate"),
        ({"h2_begin": 24}, "h2_begin"),
        ({"h2_end": -1}, "h2_end"),
        ({"h2_begin": True}, "h2_begin"),
        ({"initial_block": 0}, "initial_block"),
        ({"increment": 0}, "increment"),
        ({"connection_charge": -1}, "connection_charge"),
        ({"barred": "yes"}, "barred"),
    ],
)
def test_tariff_rejects_bad_values(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"prefix": "33", "h1_rate": 100} | kwargs
    with pytest.raises(RatingError, match=message):
        Tariff(**args)  # type: ignore[arg-type]


def test_validate_is_callable_and_passes_on_good_tariff() -> None:
    NIGHT.validate()
    assert NIGHT.has_h2 and NIGHT.constant_rate is None


def test_tariff_is_frozen() -> None:
    with pytest.raises(AttributeError):
        NIGHT.h1_rate = 1  # type: ignore[misc]


def test_in_h2_windows() -> None:
    day = Tariff("1", 1, h2_begin=8, h2_end=18, h2_rate=2)
    assert [h for h in range(24) if day.in_h2(h)] == list(range(8, 18))
    assert [h for h in range(24) if NIGHT.in_h2(h)] == [0, 1, 2, 3, 4, 5, 22, 23]
    no_h2 = Tariff("1", 1, h2_begin=7, h2_end=7, h2_rate=2)
    assert not any(no_h2.in_h2(h) for h in range(24))
    all_but_one = Tariff("1", 1, h2_begin=5, h2_end=4, h2_rate=2)
    assert [h for h in range(24) if not all_but_one.in_h2(h)] == [4]


def test_free_and_constant_rate() -> None:
    assert Tariff("1", 0).is_free
    assert Tariff("1", 0, 1, 2, 0).is_free
    assert not Tariff("1", 0, 1, 2, 5).is_free
    assert Tariff("1", 0, 3, 3, 5).is_free  # H2 rate unused without an H2 window
    assert Tariff("1", 7, 1, 2, 7).constant_rate == 7


# ================================================================= normalise_number


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("sip:+33141587070@ims.example;user=phone", "33141587070"),
        ("sips:+33141587070@ims.example", "33141587070"),
        ("SIP:+33141587070@ims.example", "33141587070"),
        ("tel:+33-1-41-58-70-70", "33141587070"),
        ("tel:+33-1-41-58-70-70;phone-context=+33", "33141587070"),
        ("0141587070", "0141587070"),
        ("+33 1 41 58 70 70", "33141587070"),
        ("0033141587070", "33141587070"),
        ("00 33 (0)1", "3301"),
        ("(01) 41.58.70.70", "0141587070"),
        ("01/41/58/70/70", "0141587070"),
        ("  6000\t", "6000"),
        ("sip:6000@10.0.0.1:5060", "6000"),
        ('"Alice" <sip:+4212345@example.org>;tag=1', "4212345"),
        ("<tel:5173>", "5173"),
        ("sip:5173?subject=x", "5173"),
        ("0", "0"),
        ("1" * 32, "1" * 32),
    ],
)
def test_normalise_number(raw: str, expected: str) -> None:
    assert normalise_number(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "+",
        "00",
        "sip:@host",
        "sip:alice@example.org",
        "*31#0141587070",
        "0141587070#",
        "12a4",
        "+0141587070",  # no country code starts with 0
        "000331",
        "1" * 33,
        "٠١٢",  # non-ASCII digits
        "<sip:123@host",
        "12+34",
        "sip:user:pw@host",
    ],
)
def test_normalise_number_rejects(raw: str) -> None:
    with pytest.raises(RatingError, match="not a dialable number"):
        normalise_number(raw)


def test_normalise_number_rejects_non_string() -> None:
    with pytest.raises(RatingError):
        normalise_number(33141587070)  # type: ignore[arg-type]


number_text = st.text(alphabet='0123456789+ -.()/#*;@:abcsiptel<>"', max_size=40)


@given(number_text)
def test_normalise_number_is_idempotent(raw: str) -> None:
    try:
        once = normalise_number(raw)
    except RatingError:
        return
    assert once.isdigit() and once.isascii() and 0 < len(once) <= 32
    assert normalise_number(once) == once


@given(st.from_regex(r"[1-9][0-9]{0,13}", fullmatch=True))
def test_international_forms_agree(digits: str) -> None:
    forms = [f"+{digits}", f"00{digits}", f"tel:+{digits}", f"sip:+{digits}@h;user=phone"]
    assert {normalise_number(f) for f in forms} == {digits}


# ================================================================= TariffTable


@pytest.mark.parametrize(
    ("number", "prefix", "rate"),
    [
        ("3812345", "38", 180),
        ("+38 123 45", "38", 180),
        ("sip:+4212345@ims.example", "42", 250),
        ("0042999", "42", 250),
        ("0141587070", DEFAULT_PREFIX, 200),
        ("3", DEFAULT_PREFIX, 200),
        ("5173", DEFAULT_PREFIX, 200),
    ],
)
def test_brochure_prefix_matches(number: str, prefix: str, rate: int) -> None:
    t = BROCHURE.match(number)
    assert (t.prefix, t.h1_rate) == (prefix, rate)


def test_longest_prefix_wins() -> None:
    table = TariffTable([Tariff("3", 1), Tariff("33", 2), Tariff("336", 3), Tariff("3361", 4)])
    assert table.match("3361999").h1_rate == 4
    assert table.match("3369").h1_rate == 3
    assert table.match("3399").h1_rate == 2
    assert table.match("34").h1_rate == 1
    assert table.match("336").h1_rate == 3  # exact length
    with pytest.raises(NoTariff) as err:
        table.match("+44 20")
    assert err.value.number == "4420"


def test_match_rejects_undialable() -> None:
    with pytest.raises(RatingError):
        BROCHURE.match("abc")


def test_table_container_protocol() -> None:
    rows = [Tariff("38", 180), Tariff(DEFAULT_PREFIX, 200), Tariff("42", 250)]
    table = TariffTable(rows)
    assert len(table) == 3
    assert list(table) == rows
    assert "38" in table and DEFAULT_PREFIX in table and "4" not in table and 38 not in table
    assert table.get("42") is rows[2]
    assert table.default is rows[1]
    assert repr(table) == "TariffTable(3 tariffs)"
    assert len(TariffTable([])) == 0


@pytest.mark.parametrize(
    "rows",
    [
        [Tariff("38", 1), Tariff("38", 2)],
        [Tariff(DEFAULT_PREFIX, 1), Tariff(DEFAULT_PREFIX, 2)],
    ],
)
def test_table_rejects_duplicates(rows: list[Tariff]) -> None:
    with pytest.raises(RatingError, match="duplicate"):
        TariffTable(rows)


def test_table_rejects_non_tariff() -> None:
    with pytest.raises(TypeError):
        TariffTable([("38", 1)])  # type: ignore[list-item]


def test_barred_is_matched_then_refused() -> None:
    table = TariffTable(
        [Tariff(DEFAULT_PREFIX, 200), Tariff("0899", 900, barred=True), Tariff("08991", 300)]
    )
    barred = table.match("0899223")
    assert barred.barred and barred.prefix == "0899"
    with pytest.raises(BarredDestination) as err:
        check_allowed(barred, "0899223")
    assert err.value.prefix == "0899" and err.value.number == "0899223"
    with pytest.raises(BarredDestination):
        table.resolve("0899223")
    # the longer, allowed prefix under the barred one wins
    assert table.resolve("089912").prefix == "08991"
    assert table.resolve("0141").prefix == DEFAULT_PREFIX
    assert check_allowed(table.match("0141")).prefix == DEFAULT_PREFIX


def test_barred_default_is_an_allow_list() -> None:
    table = TariffTable([Tariff(DEFAULT_PREFIX, 0, barred=True), Tariff("33", 100)])
    assert table.resolve("+33 1 41").prefix == "33"
    with pytest.raises(BarredDestination):
        table.resolve("+44 20")


def test_error_hierarchy_for_diameter_mapping() -> None:
    # The Diameter layer catches BarredDestination (4010) and NoTariff (5031) first,
    # then RatingError (5031); all are ValueErrors.
    assert issubclass(NoTariff, RatingError) and issubclass(BarredDestination, RatingError)
    assert not issubclass(NoTariff, BarredDestination)
    assert issubclass(RatingError, ValueError)


@settings(max_examples=50)
@given(
    st.sets(st.from_regex(r"[0-9]{1,6}", fullmatch=True), max_size=60),
    st.lists(st.from_regex(r"[1-9][0-9]{0,9}", fullmatch=True), min_size=1, max_size=20),
    st.booleans(),
)
def test_match_equals_linear_longest_prefix(
    prefixes: set[str], numbers: list[str], with_default: bool
) -> None:
    rows = [Tariff(p, i) for i, p in enumerate(sorted(prefixes))]
    if with_default:
        rows.append(Tariff(DEFAULT_PREFIX, 10_000))
    table = TariffTable(rows)
    for number in numbers:
        candidates = [p for p in prefixes if number.startswith(p)]
        if candidates:
            assert table.match(number).prefix == max(candidates, key=len)
        elif with_default:
            assert table.match(number).prefix == DEFAULT_PREFIX
        else:
            with pytest.raises(NoTariff):
                table.match(number)


# ================================================================= band_at


@pytest.mark.parametrize(
    ("local", "band"),
    [
        (paris(2026, 1, 15, 21, 59, 59), Band.H1),
        (paris(2026, 1, 15, 22, 0, 0), Band.H2),
        (paris(2026, 1, 15, 23, 59, 59), Band.H2),
        (paris(2026, 1, 16, 0, 0, 0), Band.H2),
        (paris(2026, 1, 16, 5, 59, 59), Band.H2),
        (paris(2026, 1, 16, 6, 0, 0), Band.H1),
        (paris(2026, 1, 16, 12, 0, 0), Band.H1),
    ],
)
def test_band_at_wrapping_window(local: datetime, band: Band) -> None:
    assert band_at(NIGHT, local, PARIS) is band
    # same instant expressed in UTC: the local time in tz decides
    assert band_at(NIGHT, local.astimezone(UTC), PARIS) is band


def test_band_at_non_wrapping_and_no_h2() -> None:
    day = Tariff("1", 1, h2_begin=8, h2_end=18, h2_rate=2)
    assert band_at(day, paris(2026, 1, 1, 7, 59), PARIS) is Band.H1
    assert band_at(day, paris(2026, 1, 1, 8), PARIS) is Band.H2
    assert band_at(day, paris(2026, 1, 1, 17, 59), PARIS) is Band.H2
    assert band_at(day, paris(2026, 1, 1, 18), PARIS) is Band.H1
    same = Tariff("1", 1, h2_begin=9, h2_end=9, h2_rate=2)
    assert all(
        band_at(same, paris(2026, 1, 1) + timedelta(hours=h), PARIS) is Band.H1 for h in range(24)
    )


def test_band_uses_local_time_zone() -> None:
    at = datetime(2026, 1, 15, 21, 30, tzinfo=UTC)  # 22:30 in Paris, 21:30 in London
    assert band_at(NIGHT, at, PARIS) is Band.H2
    assert band_at(NIGHT, at, ZoneInfo("Europe/London")) is Band.H1


def test_band_at_on_fall_back_repeated_hour() -> None:
    t = Tariff("1", 1, h2_begin=2, h2_end=3, h2_rate=2)
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30+02:00
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30+01:00
    assert first.astimezone(PARIS).hour == second.astimezone(PARIS).hour == 2
    assert band_at(t, first, PARIS) is band_at(t, second, PARIS) is Band.H2


@pytest.mark.parametrize(
    "call",
    [
        lambda: band_at(NIGHT, datetime(2026, 1, 1), PARIS),
        lambda: next_band_change(NIGHT, datetime(2026, 1, 1), PARIS),
        lambda: cost(NIGHT, datetime(2026, 1, 1), 10, PARIS),
        lambda: breakdown(NIGHT, datetime(2026, 1, 1), 10, PARIS),
        lambda: affordable(NIGHT, 100, datetime(2026, 1, 1), PARIS),
        lambda: rate_seconds(NIGHT, datetime(2026, 1, 1), 1, PARIS),
        lambda: cost_of_usage_split(NIGHT, datetime(2026, 1, 1), 1, 1, PARIS),
        lambda: cost(NIGHT, "2026-01-01T00:00:00Z", 10, PARIS),  # type: ignore[arg-type]
    ],
)
def test_naive_datetimes_rejected(call: object) -> None:
    with pytest.raises(RatingError, match=r"timezone-aware|must be a datetime"):
        call()  # type: ignore[operator]


# ================================================================= next_band_change


def test_next_band_change_plain_day() -> None:
    change = next_band_change(NIGHT, paris(2026, 1, 15, 10, 17, 3, 250), PARIS)
    assert change == paris(2026, 1, 15, 22)
    assert change is not None and change.tzinfo is UTC
    assert next_band_change(NIGHT, change, PARIS) == paris(2026, 1, 16, 6)
    # strictly after: at the edge itself the next edge is reported
    assert next_band_change(NIGHT, paris(2026, 1, 16, 6), PARIS) == paris(2026, 1, 16, 22)
    assert next_band_change(NIGHT, paris(2026, 1, 16, 5, 59, 59, 999999), PARIS) == paris(
        2026, 1, 16, 6
    )


def test_next_band_change_none_without_h2() -> None:
    assert next_band_change(Tariff("1", 5), WINTER_DAY, PARIS) is None
    assert next_band_change(Tariff("1", 5, 4, 4, 9), WINTER_DAY, PARIS) is None


def test_next_band_change_reported_even_with_equal_rates() -> None:
    t = Tariff("1", 5, 22, 6, 5)
    assert next_band_change(t, WINTER_DAY, PARIS) == paris(2026, 1, 15, 22)


def test_spring_forward_window_starting_in_skipped_hour() -> None:
    # H2 from 02:00: on 29 March 2026 02:00 does not exist, H2 starts when clocks jump to 03:00
    t = Tariff("1", 10, h2_begin=2, h2_end=7, h2_rate=1)
    change = next_band_change(t, paris(2026, 3, 29, 1, 30), PARIS)
    assert change == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert change is not None and change.astimezone(PARIS).hour == 3
    # and it ends at 07:00 summer time: 5 local hours but only 4 real ones
    end = next_band_change(t, change, PARIS)
    assert end == paris(2026, 3, 29, 7) == datetime(2026, 3, 29, 5, 0, tzinfo=UTC)


def test_spring_forward_window_made_only_of_skipped_hour_does_not_happen() -> None:
    t = Tariff("1", 10, h2_begin=2, h2_end=3, h2_rate=1)
    change = next_band_change(t, paris(2026, 3, 29, 0, 30), PARIS)
    assert change == paris(2026, 3, 30, 2)


def test_spring_forward_window_ending_in_skipped_hour() -> None:
    t = Tariff("1", 10, h2_begin=22, h2_end=2, h2_rate=1)
    change = next_band_change(t, paris(2026, 3, 28, 23), PARIS)
    assert change == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def test_fall_back_repeated_hour_counts_twice() -> None:
    t = Tariff("1", 10, h2_begin=2, h2_end=3, h2_rate=1)
    start = next_band_change(t, paris(2026, 10, 25, 1), PARIS)
    assert start == datetime(2026, 10, 25, 0, 0, tzinfo=UTC)  # 02:00+02:00
    end = next_band_change(t, start, PARIS)
    assert end == datetime(2026, 10, 25, 2, 0, tzinfo=UTC)  # 03:00+01:00: two real hours


def test_night_window_on_dst_days_in_paris() -> None:
    # 22:00 -> 06:00 lasts 7 real hours in spring, 9 in autumn
    spring_start = paris(2026, 3, 28, 22)
    spring_end = next_band_change(NIGHT, spring_start, PARIS)
    assert spring_end == paris(2026, 3, 29, 6)
    assert spring_end - spring_start == timedelta(hours=7)
    autumn_start = paris(2026, 10, 24, 22)
    autumn_end = next_band_change(NIGHT, autumn_start, PARIS)
    assert autumn_end == paris(2026, 10, 25, 6)
    assert autumn_end - autumn_start == timedelta(hours=9)


def test_half_hour_zone() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    t = Tariff("1", 10, h2_begin=20, h2_end=8, h2_rate=1)
    change = next_band_change(t, datetime(2026, 1, 1, 12, 0, tzinfo=UTC), kolkata)
    assert change == datetime(2026, 1, 1, 14, 30, tzinfo=UTC)  # 20:00 IST


def minute_samples(a: datetime, b: datetime) -> list[datetime]:
    out = []
    x = a
    while x < b:
        out.append(x)
        x += timedelta(minutes=1)
    return out


@settings(max_examples=150, deadline=None)
@given(tariffs, starts, zones)
def test_next_band_change_is_next_change(t: Tariff, at: datetime, tz: ZoneInfo) -> None:
    change = next_band_change(t, at, tz)
    if not t.has_h2:
        assert change is None
        return
    assert change is not None and change > at and change.utcoffset() == timedelta(0)
    assert change - at <= timedelta(days=2)
    before = band_at(t, at, tz)
    assert band_at(t, change, tz) is not before
    assert band_at(t, change - timedelta(microseconds=1), tz) is before
    # band in force is constant on [at, change): tz transitions are on minute edges
    for x in minute_samples(at, change):
        assert ref_in_h2(t, x.astimezone(tz).hour) == (before is Band.H2)


# ================================================================= billed_seconds


@pytest.mark.parametrize(
    ("block", "step", "duration", "billed"),
    [
        (1, 1, 0, 0),
        (1, 1, 1, 1),
        (1, 1, 113, 113),
        (60, 60, 1, 60),
        (60, 60, 60, 60),
        (60, 60, 61, 120),
        (60, 60, 0, 0),
        (30, 6, 1, 30),
        (30, 6, 30, 30),
        (30, 6, 31, 36),
        (30, 6, 36, 36),
        (30, 6, 37, 42),
        (1, 60, 2, 61),
    ],
)
def test_billed_seconds(block: int, step: int, duration: int, billed: int) -> None:
    t = Tariff("1", 1, initial_block=block, increment=step)
    assert billed_seconds(t, duration) == billed


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_billed_seconds_rejects_bad_duration(bad: object) -> None:
    with pytest.raises(RatingError, match="duration"):
        billed_seconds(NIGHT, bad)  # type: ignore[arg-type]


@given(st.integers(1, 120), st.integers(1, 120), st.integers(0, 10_000))
def test_billed_seconds_formula(block: int, step: int, d: int) -> None:
    t = Tariff("1", 1, initial_block=block, increment=step)
    b = billed_seconds(t, d)
    assert b == ref_billed(t, d)
    if d:
        assert b >= d and b >= block and (b - block) % step == 0 and b - d < max(step, block)


# ================================================================= cost


@pytest.mark.parametrize(("duration", "units"), [(3, 600), (13, 2600), (113, 22600), (65, 13000)])
def test_brochure_cdr_costs(duration: int, units: int) -> None:
    default = BROCHURE.match("5173")
    for start in (WINTER_DAY, SPRING + timedelta(hours=1, minutes=59), paris(2026, 7, 14, 23, 59)):
        assert cost(default, start, duration, PARIS) == units


def test_brochure_statement_totals() -> None:
    d = BROCHURE.match("5173")
    user_1001 = 203_800 - sum(cost(d, WINTER_DAY, s, PARIS) for s in (3, 13, 65))
    assert user_1001 == 187_600
    assert 250_000 - cost(BROCHURE.match("3000"), WINTER_DAY, 113, PARIS) == 227_400


def test_cost_prefix_rates() -> None:
    assert cost(BROCHURE.match("38123"), WINTER_DAY, 60, PARIS) == 60 * 180
    assert cost(BROCHURE.match("42123"), WINTER_DAY, 60, PARIS) == 60 * 250


def test_cost_zero_duration_is_free_even_with_connection_charge() -> None:
    t = Tariff("1", 100, connection_charge=500, initial_block=60, increment=60)
    assert cost(t, WINTER_DAY, 0, PARIS) == 0
    assert cost(t, WINTER_DAY, 1, PARIS) == 500 + 60 * 100
    assert cost(t, WINTER_DAY, 61, PARIS) == 500 + 120 * 100


def test_cost_30_6_increments() -> None:
    t = Tariff("1", 10, initial_block=30, increment=6)
    assert [cost(t, WINTER_DAY, d, PARIS) for d in (1, 30, 31, 37)] == [300, 300, 360, 420]


def test_cost_across_h1_to_h2() -> None:
    # 21:59:30 + 90 s: 30 s at H1 100 u/s, 60 s at H2 50 u/s
    start = paris(2026, 1, 15, 21, 59, 30)
    assert cost(NIGHT, start, 90, PARIS) == 30 * 100 + 60 * 50
    assert breakdown(NIGHT, start, 90, PARIS) == [
        Segment(Band.H1, start.astimezone(UTC), 30, 100, 3000),
        Segment(Band.H2, paris(2026, 1, 15, 22).astimezone(UTC), 60, 50, 3000),
    ]


def test_cost_across_h2_to_h1_with_block_rounding() -> None:
    # 60/60: a 70 s call at 05:59:00 bills 120 s: 60 s at H2, 60 s at H1 (rounding seconds
    # rated at the band in force when they would have happened)
    t = Tariff("1", 100, 22, 6, 50, initial_block=60, increment=60, connection_charge=7)
    start = paris(2026, 1, 16, 5, 59)
    assert cost(t, start, 70, PARIS) == 7 + 60 * 50 + 60 * 100
    assert cost(t, start, 60, PARIS) == 7 + 60 * 50


def test_cost_with_sub_second_start() -> None:
    # second k starts at start + k: with start at .5, the second starting 21:59:59.5 is H1
    start = paris(2026, 1, 15, 21, 59, 58) + timedelta(microseconds=500_000)
    assert cost(NIGHT, start, 4, PARIS) == 2 * 100 + 2 * 50


def test_cost_over_a_whole_day_and_dst_days() -> None:
    day = 24 * 3600
    assert cost(NIGHT, paris(2026, 1, 15), day, PARIS) == 8 * 3600 * 50 + 16 * 3600 * 100
    # spring: the night window is one hour shorter, the day is 23 h long
    spring = cost(NIGHT, paris(2026, 3, 29), 23 * 3600, PARIS)
    assert spring == 7 * 3600 * 50 + 16 * 3600 * 100
    autumn = cost(NIGHT, paris(2026, 10, 25), 25 * 3600, PARIS)
    assert autumn == 9 * 3600 * 50 + 16 * 3600 * 100


@pytest.mark.parametrize("bad", [-1, 2.0])
def test_cost_rejects_bad_duration(bad: object) -> None:
    with pytest.raises(RatingError):
        cost(NIGHT, WINTER_DAY, bad, PARIS)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(tariffs, starts, zones, st.integers(0, 400))
def test_cost_equals_second_by_second_reference(
    t: Tariff, start: datetime, tz: ZoneInfo, d: int
) -> None:
    assert cost(t, start, d, tz) == ref_cost(t, start, d, tz)


@settings(max_examples=200, deadline=None)
@given(tariffs, starts, zones, st.integers(0, 20_000), st.integers(0, 20_000))
def test_cost_is_monotonic(t: Tariff, start: datetime, tz: ZoneInfo, a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    assert cost(t, start, lo, tz) <= cost(t, start, hi, tz)


@settings(max_examples=200, deadline=None)
@given(tariffs, starts, zones, st.integers(0, 3 * 86_400))
def test_call_across_boundaries_is_sum_of_band_seconds(
    t: Tariff, start: datetime, tz: ZoneInfo, d: int
) -> None:
    """cost = connection + Σ band seconds × band rate, counting seconds per band at edges."""
    billed = billed_seconds(t, d)
    h1 = h2 = 0
    k, at = 0, start
    while k < billed:  # walk band edges (found independently of cost) and count seconds
        band = band_at(t, at, tz)
        change = next_band_change(t, at, tz)
        if change is None:
            n = billed
        else:
            n = min(billed, -(-((change - start) // timedelta(microseconds=1)) // 1_000_000))
        if band is Band.H2:
            h2 += n - k
        else:
            h1 += n - k
        k, at = n, start + timedelta(seconds=n)
    expected = (t.connection_charge if billed else 0) + h1 * t.h1_rate + h2 * t.h2_rate
    assert cost(t, start, d, tz) == expected


# ================================================================= breakdown


def test_breakdown_empty_for_zero() -> None:
    assert breakdown(NIGHT, WINTER_DAY, 0, PARIS) == []


def test_breakdown_no_h2_is_one_segment() -> None:
    t = Tariff("1", 200)
    assert breakdown(t, WINTER_DAY, 113, PARIS) == [
        Segment(Band.H1, WINTER_DAY.astimezone(UTC), 113, 200, 22600)
    ]


def test_breakdown_over_two_nights() -> None:
    segs = breakdown(NIGHT, paris(2026, 1, 15, 12), 2 * 86_400, PARIS)
    assert [s.band for s in segs] == [Band.H1, Band.H2, Band.H1, Band.H2, Band.H1]
    assert [s.seconds for s in segs] == [36000, 28800, 57600, 28800, 21600]
    assert segs[1].start == paris(2026, 1, 15, 22)


@settings(max_examples=200, deadline=None)
@given(tariffs, starts, zones, st.integers(0, 3 * 86_400))
def test_breakdown_sums_to_cost(t: Tariff, start: datetime, tz: ZoneInfo, d: int) -> None:
    segs = breakdown(t, start, d, tz)
    billed = billed_seconds(t, d)
    assert sum(s.seconds for s in segs) == billed
    conn = t.connection_charge if billed else 0
    assert sum(s.units for s in segs) + conn == cost(t, start, d, tz)
    for a, b in itertools.pairwise(segs):
        assert a.band is not b.band
        assert b.start == a.start + timedelta(seconds=a.seconds)
    for s in segs:
        assert s.seconds > 0 and s.units == s.seconds * s.rate == s.seconds * t.rate(s.band)
        assert band_at(t, s.start, tz) is s.band


# ================================================================= affordable


def test_affordable_brochure() -> None:
    d = BROCHURE.match("5173")
    assert affordable(d, 187_600, WINTER_DAY, PARIS) == 938
    assert affordable(d, 600, WINTER_DAY, PARIS) == 3
    assert affordable(d, 799, WINTER_DAY, PARIS) == 3
    assert affordable(d, 199, WINTER_DAY, PARIS) == 0
    assert affordable(d, 0, WINTER_DAY, PARIS) == 0
    assert affordable(d, 187_600, WINTER_DAY, PARIS, limit=300) == 300
    assert affordable(d, 187_600, WINTER_DAY, PARIS, limit=0) == 0


def test_affordable_blocks_and_connection() -> None:
    t = Tariff("1", 10, initial_block=60, increment=60, connection_charge=100)
    assert affordable(t, 99, WINTER_DAY, PARIS) == 0
    assert affordable(t, 699, WINTER_DAY, PARIS) == 0
    assert affordable(t, 700, WINTER_DAY, PARIS) == 60
    assert affordable(t, 1299, WINTER_DAY, PARIS) == 60
    assert affordable(t, 1300, WINTER_DAY, PARIS) == 120
    assert affordable(t, 1300, WINTER_DAY, PARIS, limit=61) == 61  # billed 120: affordable
    assert affordable(t, 1299, WINTER_DAY, PARIS, limit=61) == 60
    assert affordable(t, 1300, WINTER_DAY, PARIS, limit=90) == 90  # billed 120 == affordable


def test_affordable_free_tariff() -> None:
    free = Tariff("1", 0)
    assert affordable(free, 0, WINTER_DAY, PARIS) is None
    assert affordable(free, 0, WINTER_DAY, PARIS, limit=3600) == 3600
    with_conn = Tariff("1", 0, connection_charge=50)
    assert affordable(with_conn, 49, WINTER_DAY, PARIS) == 0
    assert affordable(with_conn, 50, WINTER_DAY, PARIS) is None
    free_h2 = Tariff("1", 0, 22, 6, 0)
    assert affordable(free_h2, 0, WINTER_DAY, PARIS) is None


def test_affordable_free_in_one_band_only() -> None:
    # free by day, 1 u/s at night: 10 000 units last until 22:00 + 10 000 s
    t = Tariff("1", 0, 22, 6, 1)
    start = paris(2026, 1, 15, 10)
    assert affordable(t, 10_000, start, PARIS) == 12 * 3600 + 10_000
    # 8 h of night cost 28 800; with 30 000 the call survives one night and dies the next
    assert affordable(t, 30_000, start, PARIS) == 12 * 3600 + 8 * 3600 + 16 * 3600 + 1200


def test_affordable_across_bands() -> None:
    start = paris(2026, 1, 15, 21, 59, 30)
    assert affordable(NIGHT, 10_000, start, PARIS) == 30 + 140
    assert affordable(NIGHT, 2_999, start, PARIS) == 29


def test_affordable_on_dst_day() -> None:
    # H2 (cheap) starts when clocks jump 02:00 -> 03:00 in Paris
    t = Tariff("1", 10, h2_begin=2, h2_end=7, h2_rate=1)
    start = paris(2026, 3, 29, 1, 59)
    assert affordable(t, 600 + 100, start, PARIS) == 60 + 100


@pytest.mark.parametrize(("units", "limit"), [(-1, None), (10, -1), (1.5, None), (10, 2.0)])
def test_affordable_rejects_bad_arguments(units: object, limit: object) -> None:
    with pytest.raises(RatingError):
        affordable(NIGHT, units, WINTER_DAY, PARIS, limit)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    tariffs,
    starts,
    zones,
    st.integers(0, 2_000_000),
    st.one_of(st.none(), st.integers(0, 100_000)),
)
def test_affordable_is_largest_affordable_duration(
    t: Tariff, start: datetime, tz: ZoneInfo, units: int, limit: int | None
) -> None:
    a = affordable(t, units, start, tz, limit)
    if a is None:
        assert limit is None and t.is_free and t.connection_charge <= units
        assert cost(t, start, 10**6, tz) <= units
        return
    assert a >= 0
    if limit is not None:
        assert a <= limit
    assert cost(t, start, a, tz) <= units
    if limit is None or a < limit:
        assert cost(t, start, a + 1, tz) > units


@settings(max_examples=100, deadline=None)
@given(tariffs, starts, zones, st.integers(0, 5_000))
def test_affordable_matches_linear_search(
    t: Tariff, start: datetime, tz: ZoneInfo, units: int
) -> None:
    assume(not t.is_free)
    limit = 600
    lo, hi = 0, limit  # bisect the reference cost (monotonic): largest d with cost <= units
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ref_cost(t, start, mid, tz) <= units:
            lo = mid
        else:
            hi = mid - 1
    expected = lo
    assert affordable(t, units, start, tz, limit) == expected


# ================================================================= raw rating helpers


def test_rate_seconds_and_usage_split() -> None:
    change = paris(2026, 1, 15, 22)
    assert rate_seconds(NIGHT, change - timedelta(seconds=10), 20, PARIS) == 10 * 100 + 10 * 50
    assert rate_seconds(NIGHT, change, 0, PARIS) == 0
    # Tariff-Change-Usage: 40 s before the change (H1), 25 s after (H2)
    assert cost_of_usage_split(NIGHT, change, 40, 25, PARIS) == 40 * 100 + 25 * 50
    assert cost_of_usage_split(NIGHT, change, 0, 0, PARIS) == 0
    with pytest.raises(RatingError):
        cost_of_usage_split(NIGHT, change, -1, 0, PARIS)
    with pytest.raises(RatingError):
        rate_seconds(NIGHT, change, -1, PARIS)


@settings(max_examples=100, deadline=None)
@given(tariffs, starts, zones, st.integers(0, 5000), st.integers(0, 5000))
def test_usage_split_is_additive(
    t: Tariff, change: datetime, tz: ZoneInfo, before: int, after: int
) -> None:
    begin = change - timedelta(seconds=before)
    assert cost_of_usage_split(t, change, before, after, tz) == rate_seconds(
        t, begin, before + after, tz
    )


def test_money_per_minute_to_units_per_second() -> None:
    from decimal import Decimal

    from ocs.tariffs import humanise, rate_from_per_minute

    p = Decimal("0.0001")
    got = rate_from_per_minute(Decimal("0.05"), p)  # the 8.33 u/s
    assert (got.rate, got.exact, got.applied) == (8, False, Decimal("0.0480"))
    assert round(got.exact_rate, 4) == Decimal("8.3333")
    assert rate_from_per_minute(Decimal("1.2"), p).rate == 200
    assert rate_from_per_minute(Decimal("1.2"), p).exact
    assert rate_from_per_minute(Decimal("0.051"), p).rate == 9  # 8.5 -> 9 (half up)
    assert humanise("tariff 33: h1_rate must be >= 0; h2_begin too") == \
        "tariff 33: H1 units/sec must be >= 0; H2 begin hour too"
