"""Prepaid vouchers: batches of printed codes that credit an account once.

The redemption rule (shared by the REST API, the operator UI and the IVR's "recharge by
phone") is :func:`redeem`::

    redemption = await vouchers.redeem(code, account_number, actor="ivr")

* ``code`` is what the customer reads or types: 16 digits (spaces and dashes ignored), the
  last one a Luhn check digit, so a mistyped code is refused before any lookup
  (:class:`MalformedCode`).
* The voucher is found by the keyed hash of its code (HMAC-SHA256 with the data directory's
  secret key, like PINs): codes are never stored, so a copy of the database cannot be used
  to redeem the unused ones.
* In **one** ledger transaction the voucher is marked used with a conditional update
  (``... WHERE id = ? AND status = 'unused'``) and the account is credited with a CREDIT
  ledger entry (note ``voucher <serial>``, reference ``voucher:<serial>``). Two processes
  redeeming the same code at the same moment: the database lets exactly one conditional
  update through, the other sees :class:`VoucherUsed` and credits nothing.
* Errors are a small hierarchy, each with a message fit to show or speak:
  :class:`UnknownVoucher`, :class:`VoucherUsed`, :class:`VoucherExpired`,
  :class:`VoucherVoided` (and :class:`MalformedCode`), all :class:`VoucherError`;
  an unknown account number raises ``ocs.accounts.UnknownAccount``.

Codes are 15 random digits from ``secrets`` plus the check digit: 10^15 possibilities, so
with 100,000 unused vouchers in circulation a guess succeeds about once in 10^10 tries.
Digits only, so a phone keypad can enter them.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from ocs import accounts, ledger
from ocs.models import LedgerKind, Voucher, VoucherBatch, VoucherStatus
from ocs.numbers import MAX_UNITS

CODE_DIGITS = 16  # 15 random digits + 1 Luhn check digit
MAX_BATCH = 100_000
_RANDOM_DIGITS = CODE_DIGITS - 1

Statement = tuple[str, tuple[Any, ...]]


# --- errors ------------------------------------------------------------------------------


class VoucherError(Exception):
    """A voucher cannot be redeemed or generated; the message says why, for people."""


class MalformedCode(VoucherError):
    def __init__(self) -> None:
        super().__init__(
            f"this is not a voucher code: a code has {CODE_DIGITS} digits and its last"
            " digit did not check (mistyped?)"
        )


class UnknownVoucher(VoucherError):
    def __init__(self) -> None:
        super().__init__("no voucher has this code")


class VoucherUsed(VoucherError):
    def __init__(self, serial: str, used_at: datetime | None) -> None:
        when = f" on {used_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if used_at else ""
        super().__init__(f"voucher {serial} has already been used{when}")
        self.serial = serial
        self.used_at = used_at


class VoucherExpired(VoucherError):
    def __init__(self, serial: str, expired_at: datetime) -> None:
        super().__init__(
            f"voucher {serial} expired on {expired_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        )
        self.serial = serial
        self.expired_at = expired_at


class VoucherVoided(VoucherError):
    def __init__(self, serial: str) -> None:
        super().__init__(f"voucher {serial} has been cancelled by the operator")
        self.serial = serial


class BatchError(VoucherError):
    """Bad parameters for a new batch, or an operation a batch does not allow."""


# --- codes (pure) ------------------------------------------------------------------------


def luhn_digit(digits: str) -> str:
    """The Luhn check digit to append to ``digits``."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 0:  # doubled: these become the odd positions once the digit is appended
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return str((10 - total % 10) % 10)


def normalise_code(text: str) -> str:
    """The code's digits, or :class:`MalformedCode` if it is not a well-formed code."""
    digits = "".join(ch for ch in text if ch not in " -\t")
    if len(digits) != CODE_DIGITS or not (digits.isascii() and digits.isdigit()):
        raise MalformedCode()
    if luhn_digit(digits[:-1]) != digits[-1]:
        raise MalformedCode()
    return digits


def new_code() -> str:
    body = f"{secrets.randbelow(10**_RANDOM_DIGITS):0{_RANDOM_DIGITS}d}"
    return body + luhn_digit(body)


def format_code(code: str) -> str:
    """For printing: ``1234 5678 9012 3456``."""
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4))


def code_hash(key: bytes, code: str) -> str:
    return hmac.new(key, b"voucher:" + code.encode(), hashlib.sha256).hexdigest()


# --- redemption ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Redemption:
    serial: str
    account: str  # account number credited
    units: int
    balance_after: int
    entry_id: int
    account_id: int


def _as_datetime(value: Any) -> datetime | None:
    """A timestamp read through the ledger store (asyncpg: datetime; sqlite3: ISO text)."""
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def redeem_op(
    hashed: str, account_number: str, *, actor: str, now: datetime
) -> ledger.Op[Redemption]:
    """The redemption as one ledger-store operation (see ``ocs.ledger``): everything it
    writes commits together or not at all."""
    rows = yield (
        "SELECT v.id, v.serial, v.status, v.used_at, b.value, b.expires_at"
        " FROM voucher v JOIN voucher_batch b ON b.id = v.batch_id WHERE v.code_hash = ?",
        (hashed,),
    )
    if not rows:
        raise UnknownVoucher()
    voucher_id, serial, status, used_at, value, expires_at = rows[0]
    serial = str(serial)
    if status == VoucherStatus.VOIDED.value:
        raise VoucherVoided(serial)
    if status == VoucherStatus.USED.value:
        raise VoucherUsed(serial, _as_datetime(used_at))
    expiry = _as_datetime(expires_at)
    if expiry is not None and expiry <= now:
        raise VoucherExpired(serial, expiry)
    found = yield ("SELECT id FROM account WHERE number = ?", (account_number,))
    if not found:
        raise accounts.UnknownAccount(account_number)
    account_id = int(found[0][0])
    # The guard that makes a voucher single-use across processes: only one conditional
    # update can move it out of 'unused'.
    taken = yield (
        "UPDATE voucher SET status = ?, used_at = ?, used_by_id = ?, redeemed_by = ?"
        " WHERE id = ? AND status = ? RETURNING id",
        (VoucherStatus.USED.value, now, account_id, actor[:64], voucher_id,
         VoucherStatus.UNUSED.value),
    )
    if not taken:
        again = yield ("SELECT status, used_at FROM voucher WHERE id = ?", (voucher_id,))
        if again and again[0][0] == VoucherStatus.VOIDED.value:
            raise VoucherVoided(serial)
        raise VoucherUsed(serial, _as_datetime(again[0][1]) if again else None)
    posted = yield from ledger.post(
        account_id,
        int(value),
        LedgerKind.CREDIT,
        actor=actor[:64],
        note=f"voucher {serial}",
        reference=f"voucher:{serial}",
        at=now,
    )
    yield ("UPDATE voucher SET ledger_entry_id = ? WHERE id = ?", (posted.entry_id, voucher_id))
    return Redemption(serial, account_number, posted.amount, posted.balance_after,
                      posted.entry_id, account_id)


async def redeem(code: str, account_number: str, *, actor: str) -> Redemption:
    """Credit ``account_number`` with the value of the voucher ``code``, at most once ever.

    Raises :class:`MalformedCode`, :class:`UnknownVoucher`, :class:`VoucherUsed`,
    :class:`VoucherExpired`, :class:`VoucherVoided` (all :class:`VoucherError`), or
    ``accounts.UnknownAccount``. Nothing is written when it raises.
    """
    digits = normalise_code(code)
    number = account_number.strip()
    hashed = code_hash(accounts.secret_key(), digits)
    now = datetime.now(UTC)
    result = await ledger.store().run(redeem_op(hashed, number, actor=actor, now=now))
    _announce_credit(result, actor)
    return result


def _announce_credit(result: Redemption, actor: str) -> None:
    # Same event as any top-up: the charging engine re-authorises sessions on final units.
    from ocs.events import default_bus

    default_bus().publish(
        "credit.change",
        account_id=result.account_id,
        amount=result.units,
        entry_kind=LedgerKind.CREDIT.value,
        balance=result.balance_after,
        actor=actor,
    )


# --- batches -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GeneratedBatch:
    """A new batch and its codes: the only moment the codes exist in clear."""

    batch: VoucherBatch
    codes: list[tuple[str, str]]  # (serial, code)

    def csv(self, separator: str = ",", *, unit_price: Any = None, currency: str = "") -> str:
        """The printing file: serial, code (grouped by 4), value, expiry."""
        out = io.StringIO()
        writer = csv.writer(out, delimiter=separator, lineterminator="\n")
        header = ["serial", "code", "units"]
        if unit_price is not None:
            header.append(f"value ({currency})" if currency else "value")
        header.append("expires")
        writer.writerow(header)
        expires = self.batch.expires_at.astimezone(UTC).isoformat() if self.batch.expires_at \
            else ""
        money_text = ""
        if unit_price is not None:
            from ocs import money

            money_text = money.format_money(
                money.units_to_money(self.batch.value, unit_price), 2,
                "." if separator == "," else ",",
            )
        for serial, code in self.codes:
            row = [serial, format_code(code), str(self.batch.value)]
            if unit_price is not None:
                row.append(money_text)
            row.append(expires)
            writer.writerow(row)
        return out.getvalue()


def serial_of(batch_id: int, n: int) -> str:
    return f"V{batch_id}-{n:06d}"


async def generate_batch(
    count: int,
    value: int,
    *,
    actor: str,
    expires_at: datetime | None = None,
    label: str = "",
) -> GeneratedBatch:
    """Create ``count`` vouchers worth ``value`` units each. The codes are returned once
    (for the CSV) and only their keyed hashes are stored."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BATCH:
        raise BatchError(f"a batch holds 1 to {MAX_BATCH} vouchers")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BatchError("a voucher's value must be a positive whole number of units")
    if value > MAX_UNITS:  # what one credit may move; the ledger would refuse the redemption
        raise BatchError(f"a voucher's value is at most {MAX_UNITS} units")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise BatchError("expiry must carry a time zone")
        if expires_at <= datetime.now(UTC):
            raise BatchError("expiry must be in the future")
    label = label.strip()
    if len(label) > 128:
        raise BatchError("label is at most 128 characters")
    key = accounts.secret_key()
    for _attempt in range(3):
        codes: dict[str, None] = {}
        while len(codes) < count:
            codes[new_code()] = None
        try:
            async with in_transaction():
                batch = await VoucherBatch.create(
                    label=label, value=value, count=count, expires_at=expires_at,
                    created_by=actor[:64],
                )
                pairs = [(serial_of(batch.id, n), c) for n, c in enumerate(codes, start=1)]
                await Voucher.bulk_create(
                    [Voucher(batch_id=batch.id, serial=s, code_hash=code_hash(key, c))
                     for s, c in pairs],
                    batch_size=1000,
                )
        except IntegrityError:
            continue  # a code collided with an existing one (about 1 in 10^10): draw again
        return GeneratedBatch(batch, pairs)
    raise BatchError("could not draw unique codes; try again")


@dataclass(frozen=True, slots=True)
class BatchSummary:
    batch: VoucherBatch
    used: int
    unused: int
    expired: int  # unused but past the batch's expiry
    voided: int

    @property
    def state(self) -> str:
        if self.batch.voided_at is not None:
            return "voided"
        if self.expired:
            return "expired"
        return "active" if self.unused else "used up"


async def _summaries(batches: Sequence[VoucherBatch], now: datetime) -> list[BatchSummary]:
    ids = [b.id for b in batches]
    counts: dict[tuple[int, str], int] = {}
    if ids:
        from tortoise.functions import Count

        rows = await (
            Voucher.filter(batch_id__in=ids)
            .annotate(n=Count("id"))
            .group_by("batch_id", "status")
            .values_list("batch_id", "status", "n")
        )
        for batch_id, status, n in rows:
            counts[(int(batch_id), str(status))] = int(n)
    out = []
    for b in batches:
        unused = counts.get((b.id, VoucherStatus.UNUSED.value), 0)
        expired = unused if b.expires_at is not None and b.expires_at <= now else 0
        out.append(
            BatchSummary(
                batch=b,
                used=counts.get((b.id, VoucherStatus.USED.value), 0),
                unused=unused - expired,
                expired=expired,
                voided=counts.get((b.id, VoucherStatus.VOIDED.value), 0),
            )
        )
    return out


async def list_batches(limit: int = 200) -> list[BatchSummary]:
    """Batches newest first with their used / unused / expired / voided counts."""
    batches = await VoucherBatch.all().order_by("-id").limit(limit)
    return await _summaries(batches, datetime.now(UTC))


async def get_batch(batch_id: int) -> BatchSummary:
    batch = await VoucherBatch.get_or_none(id=batch_id)
    if batch is None:
        raise LookupError(f"no voucher batch {batch_id}")
    return (await _summaries([batch], datetime.now(UTC)))[0]


async def void_batch(batch_id: int, *, actor: str) -> int:
    """Cancel every unused voucher of the batch; returns how many. Used ones stay used."""
    batch = await VoucherBatch.get_or_none(id=batch_id)
    if batch is None:
        raise LookupError(f"no voucher batch {batch_id}")
    if batch.voided_at is not None:
        raise BatchError(f"batch {batch_id} is already void")
    async with in_transaction():
        # Conditional, like redemption: a voucher being redeemed right now is either
        # 'used' (kept) or still 'unused' (voided here and then refused to the redeemer).
        n = await Voucher.filter(batch_id=batch_id, status=VoucherStatus.UNUSED).update(
            status=VoucherStatus.VOIDED
        )
        await VoucherBatch.filter(id=batch_id).update(voided_at=datetime.now(UTC))
    return int(n)
