"""Accounts as CSV: import (all or nothing, line-numbered errors) and streamed export.

Columns (header row required, any order; only ``number`` is mandatory):

  number      account number, digits
  name        display name (default: the number)
  pin         PIN for the IVR, 4-12 digits; stored as its keyed hash only, never exported
  language    FR or EN (default: the operator's default language)
  status      active or blocked (default active)
  caller_ids  caller IDs for one-step access, separated by ``|``
  balance     initial credit in units (a CREDIT ledger entry "import"); ``credit`` is a synonym

The export writes the same columns except ``pin``, so an exported file imports elsewhere.
An import only creates accounts: a number that exists is an error. Every line is checked
(format, duplicates inside the file, numbers / PINs / caller IDs already taken) before
anything is written; the first problem is reported with its line number and nothing is
imported. The write itself is one transaction (`ocs.account_bulk`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from ocs import accounts, pins
from ocs.account_bulk import NewAccount, Progress, insert_accounts
from ocs.models import Account, CallerId
from ocs.numbers import MAX_UNITS, NumberError, parse_int

COLUMNS = ("number", "name", "pin", "language", "status", "caller_ids", "balance")
EXPORT_COLUMNS = ("number", "name", "language", "status", "caller_ids", "balance")
_ALIASES = {"credit": "balance"}
LOOKUP_CHUNK = 500


class AccountCsvError(ValueError):
    def __init__(self, line: int, message: str, column: str = "") -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class ParsedRow:
    line: int
    account: NewAccount


def _split_callers(cell: str) -> list[str]:
    return [p.strip() for p in cell.split("|") if p.strip()]


def parse(
    text: str, separator: str = ",", *, default_language: str = "FR",
    pin_key: bytes | None = None, progress: Progress | None = None,
) -> list[ParsedRow]:
    """Validate a whole file (no database access); raises AccountCsvError on the first bad
    line."""
    key = pin_key if pin_key is not None else accounts.secret_key()
    reader = csv.reader(io.StringIO(text), delimiter=separator)
    try:
        header = next(reader)
    except StopIteration:
        raise AccountCsvError(1, "empty file: a header row is required") from None
    except csv.Error as exc:
        raise AccountCsvError(1, str(exc)) from None
    names = [_ALIASES.get(h.strip().lower(), h.strip().lower()) for h in header]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise AccountCsvError(
            1, f"unknown column(s): {', '.join(unknown)} (known: {', '.join(COLUMNS)})"
        )
    if "number" not in names:
        raise AccountCsvError(1, "missing column 'number'")
    if len(set(names)) != len(names):
        raise AccountCsvError(1, "a column appears twice")
    out: list[ParsedRow] = []
    seen_numbers: dict[str, int] = {}
    seen_pins: dict[str, int] = {}
    seen_callers: dict[str, int] = {}
    if progress is not None:
        progress.phase = "checking"
        progress.total = max(progress.total, text.count("\n"))
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(names):
                raise AccountCsvError(line, f"expected {len(names)} fields, got {len(row)}")
            values = dict(zip(names, row, strict=True))
            try:
                number = accounts.validate_number(values["number"])
                name = accounts.validate_name(values.get("name", "")) or number
                language = accounts.validate_language(values.get("language") or
                                                      default_language)
            except accounts.AccountError as exc:
                raise AccountCsvError(line, str(exc), exc.field) from None
            status = (values.get("status") or "active").strip().lower()
            if status not in ("active", "blocked"):
                raise AccountCsvError(line, "status must be active or blocked", "status")
            pin_index = None
            pin = (values.get("pin") or "").strip()
            if pin:
                try:
                    pin_index = pins.pin_index(key, pin)
                except pins.PinError as exc:
                    raise AccountCsvError(line, str(exc), "pin") from None
            callers: list[str] = []
            for raw in _split_callers(values.get("caller_ids", "")):
                try:
                    callers.append(accounts.normalise_phone(raw, "caller_ids"))
                except accounts.AccountError as exc:
                    raise AccountCsvError(line, str(exc), "caller_ids") from None
            credit_text = (values.get("balance") or "").strip()
            credit = 0
            if credit_text:
                try:  # ASCII digits only: "²" passes isdigit() but not int()
                    credit = parse_int(credit_text, lo=0, hi=MAX_UNITS)
                except NumberError:
                    raise AccountCsvError(
                        line, f"balance must be a whole number of units from 0 to"
                        f" {MAX_UNITS}, got {credit_text!r}", "balance") from None
            if number in seen_numbers:
                raise AccountCsvError(
                    line, f"account {number} repeats line {seen_numbers[number]}", "number")
            seen_numbers[number] = line
            if pin_index is not None:
                if pin_index in seen_pins:
                    raise AccountCsvError(
                        line, f"this PIN repeats line {seen_pins[pin_index]}", "pin")
                seen_pins[pin_index] = line
            for c in dict.fromkeys(callers):
                if c in seen_callers:
                    raise AccountCsvError(
                        line, f"caller ID {c} repeats line {seen_callers[c]}", "caller_ids")
                seen_callers[c] = line
            out.append(ParsedRow(line, NewAccount(
                number=number, name=name, pin_index=pin_index, language=language,
                status=status, caller_ids=tuple(dict.fromkeys(callers)), credit=credit,
            )))
            if progress is not None:
                progress.done = line
    except csv.Error as exc:
        raise AccountCsvError(reader.line_num, str(exc)) from None
    return out


async def check_conflicts(rows: Sequence[ParsedRow]) -> None:
    """Numbers, PINs and caller IDs already in the database: the first is an error."""
    by_number = {r.account.number: r.line for r in rows}
    by_pin = {r.account.pin_index: r.line for r in rows if r.account.pin_index}
    by_caller = {c: r.line for r in rows for c in r.account.caller_ids}
    for keys, query, what, column in (
        (list(by_number), "number", "account {} already exists", "number"),
        (list(by_pin), "pin", "this PIN is already used by account {}", "pin"),
        (list(by_caller), "caller", "caller ID {} belongs to an existing account",
         "caller_ids"),
    ):
        clashes: list[tuple[int, str]] = []
        for start in range(0, len(keys), LOOKUP_CHUNK):
            part = keys[start : start + LOOKUP_CHUNK]
            if query == "number":
                found = await Account.filter(number__in=part).values_list("number", "number")
                clashes += [(by_number[k], v) for k, v in found]
            elif query == "pin":
                found = await Account.filter(pin_index__in=part).values_list("pin_index",
                                                                             "number")
                clashes += [(by_pin[k], v) for k, v in found]
            else:
                found = await CallerId.filter(number__in=part).values_list("number", "number")
                clashes += [(by_caller[k], v) for k, v in found]
        if clashes:
            line, shown = min(clashes)
            raise AccountCsvError(line, what.format(shown), column)


async def import_csv(
    text: str, separator: str = ",", *, actor: str, default_language: str = "FR",
    progress: Progress | None = None,
) -> int:
    """Parse, check and create every account of the file, or none. Returns the count."""
    progress = progress if progress is not None else Progress()
    rows = parse(text, separator, default_language=default_language, progress=progress)
    if not rows:
        raise AccountCsvError(2, "no account in the file")
    progress.phase = "checking database"
    await check_conflicts(rows)
    count = await insert_accounts([r.account for r in rows], actor=actor, note="import",
                                  progress=progress)
    progress.phase, progress.finished, progress.result = "done", True, count
    return count


async def export_csv(separator: str = ",", *, batch: int = 2000) -> AsyncIterator[str]:
    """Every account, in number order of creation (id), as CSV text chunks."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=separator, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    yield buf.getvalue()
    last = 0
    while True:
        rows = await Account.filter(id__gt=last).order_by("id").limit(batch).values_list(
            "id", "number", "name", "language", "status", "balance"
        )
        if not rows:
            return
        ids = [r[0] for r in rows]
        callers: dict[int, list[str]] = {}
        for account_id, number in await CallerId.filter(account_id__in=ids).order_by(
            "number"
        ).values_list("account_id", "number"):
            callers.setdefault(int(account_id), []).append(str(number))
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter=separator, lineterminator="\n")
        for account_id, number, name, language, status, balance in rows:
            writer.writerow([number, name, language, str(status), "|".join(
                callers.get(int(account_id), [])), balance])
        yield buf.getvalue()
        last = int(rows[-1][0])
        if len(rows) < batch:
            return
