"""Pure parts of billing and CDRs: money text, dates, the statement block, the schedule."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from ocs import billing, cdr

PARIS = ZoneInfo("Europe/Paris")
P = Decimal("0.0001")


@pytest.mark.parametrize(
    ("units", "text"),
    [
        (250000, "25"), (-22600, "-2,26"), (227400, "22,74"), (-13000, "-1,3"),
        (203800, "20,38"), (-600, "-0,06"), (0, "0"), (1, "0,0001"), (-1, "-0,0001"),
        (10**15, "100000000000"), (-250000, "-25"),
    ],
)
def test_money_text_brochure_style(units: int, text: str) -> None:
    assert cdr.money_text(units, P, ",") == text
    assert cdr.money_text(units, P, ".") == text.replace(",", ".")


def test_money_other_unit_prices() -> None:
    assert cdr.money_text(3, Decimal("0.333"), ",") == "0,999"
    assert cdr.money_text(7, Decimal("1"), ",") == "7"
    assert cdr.money_text(12, Decimal("0.000000001"), ".") == "0.000000012"


def test_decimal_separator_follows_column_separator() -> None:
    assert [cdr.decimal_separator(s) for s in (":", ";", "\t", ",")] == [",", ",", ",", "."]


def test_stamp_local_time_and_dst() -> None:
    assert cdr.stamp(datetime(2012, 4, 12, 8, 33, 43, tzinfo=UTC), PARIS) == "20120412_103343"
    assert cdr.stamp(datetime(2012, 1, 12, 8, 33, 43, tzinfo=UTC), PARIS) == "20120112_093343"
    assert cdr.stamp(datetime(2012, 1, 12, 8, 33, 43), PARIS) == "20120112_093343"  # naive=UTC


def test_render_block_matches_brochure() -> None:
    fmt = billing.StatementFormat(separator=":", currency="Euros", unit_price=P, tz=PARIS)
    at = lambda s: datetime.strptime(s, "%Y%m%d_%H%M%S").replace(tzinfo=PARIS)  # noqa: E731
    lines = [
        billing.Line(at("20120403_151812"), "REPORT", 203800),
        billing.entry_line("CALL", -600, at("20120403_152503"), "5173", 3),
        billing.entry_line("CALL", -2600, at("20120412_102901"), "5173", 13),
        billing.entry_line("CALL", -13000, at("20120412_103222"), "3000", 65),
    ]
    rows = billing.render_block("1001", "1001", lines, fmt)
    assert cdr.csv_text(rows, ":") == (
        '"User number : 1001"\n"User ID : 1001"\n'
        "Date:Operation:Called:Duration:Units:Euros\n"
        "20120403_151812:REPORT:::203800:20,38\n"
        "20120403_152503:CALL:5173:3:-600:-0,06\n"
        "20120412_102901:CALL:5173:13:-2600:-0,26\n"
        "20120412_103222:CALL:3000:65:-13000:-1,3\n"
        "Total::::187600:18,76\n\n\n"
    )
    credit = billing.entry_line("CREDIT", 250000, at("20120412_102253"), "", 0)
    assert billing.line_row(credit, fmt) == ["20120412_102253", "CREDIT", "", "", "250000", "25"]


def test_statement_filename() -> None:
    at = datetime(2012, 4, 12, 8, 33, 43, tzinfo=UTC)
    assert billing.statement_filename(at, PARIS) == "BILLING_20120412_103343.csv"
    assert billing.statement_filename(at, PARIS, 2) == "BILLING_20120412_103343_2.csv"
    assert billing.FILENAME_RE.match("BILLING_20120412_103343_2.csv")
    assert not billing.FILENAME_RE.match("../BILLING_20120412_103343.csv")


def _l(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%d_%H%M").replace(tzinfo=PARIS)


def test_latest_boundary() -> None:
    now = _l("20260115_1030")  # a Thursday
    assert billing.latest_boundary("daily", now) == _l("20260115_0000")
    assert billing.latest_boundary("weekly", now) == _l("20260112_0000")
    assert billing.latest_boundary("monthly", now) == _l("20260101_0000")
    assert billing.latest_boundary("none", now) is None


@pytest.mark.parametrize(
    ("schedule", "last", "now", "due"),
    [
        ("daily", "20260114_0001", "20260114_2359", False),
        ("daily", "20260114_0001", "20260115_0000", True),
        ("weekly", "20260112_0005", "20260118_2359", False),
        ("weekly", "20260112_0005", "20260119_0000", True),
        ("monthly", "20260101_0005", "20260131_2359", False),
        ("monthly", "20260101_0005", "20260201_0001", True),
        ("none", "20200101_0000", "20260201_0001", False),
    ],
)
def test_is_due(schedule: str, last: str, now: str, due: bool) -> None:
    assert billing.is_due(schedule, _l(now), _l(last), _l("20000101_0000"), PARIS) is due


def test_is_due_without_previous_run_waits_for_a_boundary() -> None:
    since = _l("20260114_1200")
    assert not billing.is_due("daily", _l("20260114_1300"), None, since, PARIS)
    assert billing.is_due("daily", _l("20260115_0000"), None, since, PARIS)


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("2012-04-12", False, "2012-04-11T22:00:00+00:00"),
        ("2012-04-12", True, "2012-04-12T22:00:00+00:00"),
        ("20120412", True, "2012-04-12T22:00:00+00:00"),
        ("20120412_103343", False, "2012-04-12T08:33:43+00:00"),
        ("2012-04-12T10:33", True, "2012-04-12T08:33:00+00:00"),
        ("2012-04-12T10:33:00+00:00", False, "2012-04-12T10:33:00+00:00"),
    ],
)
def test_parse_local_date(text: str, end: bool, expected: str) -> None:
    assert cdr.parse_local_date(text, PARIS, end=end).isoformat() == expected


@pytest.mark.parametrize("text", ["", "yesterday", "2012-13-01"])
def test_parse_local_date_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        cdr.parse_local_date(text, PARIS)
