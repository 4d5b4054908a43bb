"""Calling-card batches: N new accounts with random unique PINs and initial credit.

A2Billing's "generate cards". Accounts get consecutive numbers from ``first_number`` (by
default the one after the highest numeric account number); each gets a PIN of
``pin_length`` random digits (``secrets``) that no other account has, and a CREDIT entry of
``initial_credit`` units. The PINs are returned once, for the printing CSV; only their keyed
hashes are stored.

PIN uniqueness: candidates are drawn, checked against the batch and against every existing
PIN (by keyed hash, in chunks), and redrawn on a clash; the unique index on
``account.pin_index`` is the final guard against a concurrent writer (the whole batch is
then drawn again). PINs identify an account on their own at the IVR, so a batch is refused
when it would fill more than a tenth of the PIN space (guessing a valid PIN must stay hard).
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from tortoise import connections

from ocs import accounts, pins
from ocs.account_bulk import BulkConflict, NewAccount, Progress, insert_accounts
from ocs.models import Account, CardBatch
from ocs.numbers import MAX_UNITS

MAX_CARDS = 100_000
MAX_FILL = 10  # a batch may bring PINs in use to at most 1/MAX_FILL of the PIN space
LOOKUP_CHUNK = 500


class CardError(ValueError):
    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class GeneratedCards:
    batch: CardBatch
    cards: list[tuple[str, str]]  # (account number, PIN): the only time PINs exist in clear

    def csv(self, separator: str = ",") -> str:
        out = io.StringIO()
        writer = csv.writer(out, delimiter=separator, lineterminator="\n")
        writer.writerow(["number", "pin", "credit"])
        for number, pin in self.cards:
            writer.writerow([number, pin, self.batch.initial_credit])
        return out.getvalue()


def random_pin(length: int) -> str:
    return f"{secrets.randbelow(10**length):0{length}d}"


async def next_free_number() -> str:
    """One past the highest all-digit account number (``"1"`` when there is none)."""
    conn = connections.get("default")
    _, rows = await conn.execute_query(
        "SELECT MAX(CAST(number AS NUMERIC)) FROM account"
    )
    top = rows[0][0] if rows else None
    return str(int(top) + 1) if top is not None else "1"


async def _taken_pins(indexes: list[str]) -> set[str]:
    taken: set[str] = set()
    for start in range(0, len(indexes), LOOKUP_CHUNK):
        part = indexes[start : start + LOOKUP_CHUNK]
        found = await Account.filter(pin_index__in=part).values_list("pin_index", flat=True)
        taken.update(str(f) for f in found)
    return taken


async def draw_pins(
    count: int, length: int, *, draw: Callable[[int], str] = random_pin
) -> list[tuple[str, str]]:
    """``count`` PINs (pin, keyed hash) unique among themselves and against the database."""
    key = accounts.secret_key()
    chosen: dict[str, str] = {}  # index -> pin
    while len(chosen) < count:
        fresh: dict[str, str] = {}
        while len(chosen) + len(fresh) < count:
            pin = draw(length)
            index = pins.pin_index(key, pin)
            if index not in chosen and index not in fresh:
                fresh[index] = pin
        for index in await _taken_pins(list(fresh)):
            del fresh[index]  # already someone's PIN: draw another
        chosen.update(fresh)
    return [(pin, index) for index, pin in chosen.items()]


async def generate_cards(
    count: int,
    *,
    initial_credit: int,
    actor: str,
    pin_length: int = 8,
    first_number: str | None = None,
    language: str = "FR",
    label: str = "",
    progress: Progress | None = None,
    draw: Callable[[int], str] = random_pin,
) -> GeneratedCards:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CARDS:
        raise CardError(f"a batch holds 1 to {MAX_CARDS} cards", "count")
    if isinstance(initial_credit, bool) or not isinstance(initial_credit, int) \
            or initial_credit < 0:
        raise CardError("initial credit must be a whole number of units >= 0", "credit")
    if initial_credit > MAX_UNITS:  # written set-based, not through ledger.post's own check
        raise CardError(f"initial credit is at most {MAX_UNITS} units", "credit")
    if not pins.PIN_MIN_DIGITS <= pin_length <= pins.PIN_MAX_DIGITS:
        raise CardError(
            f"PIN length must be {pins.PIN_MIN_DIGITS} to {pins.PIN_MAX_DIGITS} digits",
            "pin_length")
    language = accounts.validate_language(language)
    label = label.strip()[:128]
    in_use = await Account.filter(pin_index__not_isnull=True).count()
    if (in_use + count) * MAX_FILL > 10**pin_length:
        raise CardError(
            f"{count} more {pin_length}-digit PINs would make PINs too easy to guess"
            f" ({in_use} in use, at most {10**pin_length // MAX_FILL}): use longer PINs",
            "pin_length")
    start = first_number.strip() if first_number else await next_free_number()
    try:
        accounts.validate_number(start)
    except accounts.AccountError as exc:
        raise CardError(str(exc), "first_number") from None
    width = len(start)
    numbers = [str(int(start) + i).zfill(width) for i in range(count)]
    if len(numbers[-1]) > 32:
        raise CardError("account numbers would exceed 32 digits", "first_number")
    taken = None
    for i in range(0, count, LOOKUP_CHUNK):
        taken = await Account.filter(number__in=numbers[i : i + LOOKUP_CHUNK]).first()
        if taken is not None:
            break
    if taken is not None:
        raise CardError(
            f"account {taken.number} already exists in {numbers[0]}..{numbers[-1]}",
            "first_number")
    for _attempt in range(3):
        drawn = await draw_pins(count, pin_length, draw=draw)
        rows = [
            NewAccount(number=n, name=n, pin_index=index, language=language,
                       credit=initial_credit)
            for n, (_pin, index) in zip(numbers, drawn, strict=True)
        ]
        try:
            await insert_accounts(rows, actor=actor, note=f"card batch {label}".strip(),
                                  progress=progress)
        except BulkConflict:
            if await Account.filter(number__in=numbers[:1]).exists():
                raise CardError("another change created these account numbers meanwhile",
                                "first_number") from None
            continue  # a PIN was taken meanwhile: draw the whole batch again
        batch = await CardBatch.create(
            label=label, count=count, first_number=numbers[0], last_number=numbers[-1],
            initial_credit=initial_credit, pin_length=pin_length, created_by=actor[:64],
        )
        if progress is not None:
            progress.phase, progress.finished, progress.result = "done", True, count
        return GeneratedCards(batch, [(n, pin) for n, (pin, _i) in zip(numbers, drawn,
                                                                     strict=True)])
    raise CardError("could not draw unique PINs; try again")


async def list_batches(limit: int = 100) -> list[CardBatch]:
    return list(await CardBatch.all().order_by("-id").limit(limit))
