"""Tariffs in the database: validation, CRUD, CSV import/export, and the rating table.

CSV columns (header required, any order): prefix, h1_rate, h2_begin, h2_end, h2_rate,
initial_block, increment, connection_charge, barred. Only prefix and h1_rate are mandatory;
the rest default (block/increment from the operator settings). An import is all or nothing:
the first bad row aborts it with its line number and nothing is written.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tortoise.transactions import in_transaction

from ocs import rating
from ocs.models import Setting
from ocs.models import Tariff as TariffRow

VERSION_KEY = "tariffs_version"

COLUMNS = (
    "prefix",
    "h1_rate",
    "h2_begin",
    "h2_end",
    "h2_rate",
    "initial_block",
    "increment",
    "connection_charge",
    "barred",
)
_INT_COLUMNS = COLUMNS[1:8]
_TRUE = {"1", "true", "yes", "y", "on", "x"}
_FALSE = {"0", "false", "no", "n", "off", ""}


class TariffError(ValueError):
    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class TariffCsvError(TariffError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


def parse_tariff(
    values: Mapping[str, Any], *, default_block: int = 1, default_increment: int = 1
) -> rating.Tariff:
    """Build and validate a rating.Tariff from loose input (form, JSON, CSV row)."""
    prefix = str(values.get("prefix", "")).strip()
    if prefix.upper() == rating.DEFAULT_PREFIX:
        prefix = rating.DEFAULT_PREFIX
    if not prefix:
        raise TariffError("prefix is required", "prefix")
    ints: dict[str, int] = {}
    defaults = {"initial_block": default_block, "increment": default_increment}
    for name in _INT_COLUMNS:
        raw = values.get(name)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if name == "h1_rate":
                raise TariffError("h1_rate is required", name)
            ints[name] = defaults.get(name, 0)
            continue
        if isinstance(raw, bool):
            raise TariffError(f"{name} must be a whole number", name)
        try:
            ints[name] = int(str(raw).strip())
        except ValueError:
            raise TariffError(f"{name} must be a whole number, got {raw!r}", name) from None
    barred_raw = values.get("barred", False)
    if isinstance(barred_raw, bool):
        barred = barred_raw
    else:
        text = str(barred_raw).strip().lower()
        if text in _TRUE:
            barred = True
        elif text in _FALSE:
            barred = False
        else:
            raise TariffError(f"barred must be yes or no, got {barred_raw!r}", "barred")
    try:
        tariff = rating.Tariff(prefix=prefix, barred=barred, **ints)  # validates itself
    except rating.RatingError as exc:
        raise TariffError(str(exc)) from None
    return tariff


def to_rating(row: TariffRow) -> rating.Tariff:
    return rating.Tariff(
        prefix=row.prefix,
        h1_rate=row.h1_rate,
        h2_begin=row.h2_begin,
        h2_end=row.h2_end,
        h2_rate=row.h2_rate,
        initial_block=row.initial_block,
        increment=row.increment,
        connection_charge=row.connection_charge,
        barred=row.barred,
    )


def _fields(t: rating.Tariff) -> dict[str, Any]:
    return {name: getattr(t, name) for name in COLUMNS if name != "prefix"}


async def _bump_version() -> None:
    """Tell charging processes (which cache the table) that tariffs changed."""
    row = await Setting.get_or_none(key=VERSION_KEY)
    version = int(row.value) + 1 if row is not None else 1
    await Setting.update_or_create(key=VERSION_KEY, defaults={"value": version})


async def table_version() -> int:
    row = await Setting.get_or_none(key=VERSION_KEY)
    return int(row.value) if row is not None else 0


async def load_table() -> rating.TariffTable:
    rows = await TariffRow.all()
    return rating.TariffTable(to_rating(r) for r in rows)


async def list_tariffs() -> list[TariffRow]:
    rows = await TariffRow.all()
    # DEFAULT first, then prefixes in dial order, as the brochure lists them
    return sorted(rows, key=lambda r: (r.prefix != rating.DEFAULT_PREFIX, r.prefix))


async def save_tariff(tariff: rating.Tariff, tariff_id: int | None = None) -> TariffRow:
    clash = TariffRow.filter(prefix=tariff.prefix)
    if tariff_id is not None:
        clash = clash.exclude(id=tariff_id)
    if await clash.exists():
        raise TariffError(f"a tariff for prefix {tariff.prefix} already exists", "prefix")
    async with in_transaction():
        if tariff_id is None:
            row = await TariffRow.create(prefix=tariff.prefix, **_fields(tariff))
        else:
            if not await TariffRow.filter(id=tariff_id).exists():
                raise LookupError(f"no tariff {tariff_id}")
            await TariffRow.filter(id=tariff_id).update(prefix=tariff.prefix, **_fields(tariff))
            row = await TariffRow.get(id=tariff_id)
        await _bump_version()
    return row


async def delete_tariff(tariff_id: int) -> bool:
    async with in_transaction():
        deleted = bool(await TariffRow.filter(id=tariff_id).delete())
        if deleted:
            await _bump_version()
    return deleted


def parse_csv(
    text: str, separator: str = ",", *, default_block: int = 1, default_increment: int = 1
) -> list[rating.Tariff]:
    """Parse a whole CSV document; raises TariffCsvError naming the first bad line."""
    reader = csv.reader(io.StringIO(text), delimiter=separator)
    try:
        header = next(reader)
    except StopIteration:
        raise TariffCsvError(1, "empty file: a header row is required") from None
    except csv.Error as exc:
        raise TariffCsvError(1, str(exc)) from None
    names = [h.strip().lower() for h in header]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise TariffCsvError(1, f"unknown column(s): {', '.join(unknown)}")
    for required in ("prefix", "h1_rate"):
        if required not in names:
            raise TariffCsvError(1, f"missing column {required!r}")
    tariffs: list[rating.Tariff] = []
    seen: dict[str, int] = {}
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(names):
                raise TariffCsvError(line, f"expected {len(names)} fields, got {len(row)}")
            try:
                tariff = parse_tariff(
                    dict(zip(names, row, strict=True)),
                    default_block=default_block,
                    default_increment=default_increment,
                )
            except TariffError as exc:
                raise TariffCsvError(line, str(exc)) from None
            if tariff.prefix in seen:
                raise TariffCsvError(
                    line, f"prefix {tariff.prefix} repeats line {seen[tariff.prefix]}"
                )
            seen[tariff.prefix] = line
            tariffs.append(tariff)
    except csv.Error as exc:
        raise TariffCsvError(reader.line_num, str(exc)) from None
    return tariffs


async def import_tariffs(tariffs: Iterable[rating.Tariff], *, replace: bool = False) -> int:
    """Upsert by prefix in one transaction; `replace` deletes prefixes not in the input."""
    items = list(tariffs)
    async with in_transaction():
        if replace:
            await TariffRow.exclude(prefix__in=[t.prefix for t in items]).delete()
        for t in items:
            await TariffRow.update_or_create(prefix=t.prefix, defaults=_fields(t))
        await _bump_version()
    return len(items)


async def import_csv(
    text: str,
    separator: str = ",",
    *,
    replace: bool = False,
    default_block: int = 1,
    default_increment: int = 1,
) -> int:
    tariffs = parse_csv(
        text, separator, default_block=default_block, default_increment=default_increment
    )
    return await import_tariffs(tariffs, replace=replace)


async def export_csv(separator: str = ",") -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=separator, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in await list_tariffs():
        t = to_rating(row)
        writer.writerow(
            [t.prefix, *(getattr(t, n) for n in _INT_COLUMNS), "yes" if t.barred else "no"]
        )
    return out.getvalue()


# --- money per minute (the Costs form) --------------------------------------------------

LABELS = {
    "prefix": "Destination prefix",
    "h1_rate": "H1 units/sec",
    "h2_begin": "H2 begin hour",
    "h2_end": "H2 end hour",
    "h2_rate": "H2 units/sec",
    "initial_block": "Initial block (sec)",
    "increment": "Increment (sec)",
    "connection_charge": "Connection charge (units)",
    "barred": "Barred",
    "h1_per_minute": "H1 money/min",
    "h2_per_minute": "H2 money/min",
}


def humanise(message: str) -> str:
    """An error message for people: column names replaced by the form's labels."""
    import re

    def label(match: re.Match[str]) -> str:
        return LABELS[match.group(0)]

    return re.sub(r"\b(" + "|".join(sorted(LABELS, key=len, reverse=True)) + r")\b", label,
                  message)


@dataclass(frozen=True, slots=True)
class PerMinute:
    """A price per minute typed by the operator, as the whole units/second the engine rates
    with. Rates are whole units per second (the rating engine's unit); a price that is not a
    whole number of units per second is rounded to the **nearest** whole rate (halves up),
    and the rounding is shown to the operator, who must accept it before it is saved."""

    asked: Decimal  # money per minute as typed
    rate: int  # units per second applied
    exact_rate: Decimal  # asked / 60 / unit price
    applied: Decimal  # money per minute of `rate`

    @property
    def exact(self) -> bool:
        return self.exact_rate == self.rate


def rate_from_per_minute(per_minute: Decimal, unit_price: Decimal) -> PerMinute:
    """``0.05`` €/min at ``0.0001`` €/unit → 8.333… u/s → rate 8 (0.0480 €/min), inexact."""
    from decimal import ROUND_HALF_UP, localcontext

    from ocs import money

    if per_minute < 0:
        raise TariffError("a price per minute cannot be negative")
    with localcontext() as ctx:
        ctx.prec = 40
        exact = per_minute / 60 / unit_price
        rate = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return PerMinute(per_minute, rate, exact, money.per_minute(rate, unit_price))
