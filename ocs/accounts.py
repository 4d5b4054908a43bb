"""Accounts, caller IDs and DID mappings: the subscriber directory.

Everything here is an admin/IVR path (ORM); balances only change through `ocs.ledger`.
Numbers (account numbers, caller IDs, DIDs) are stored normalised so that lookups from
Diameter (E.164 with '+', SIP URIs) and from the IVR (plain digits) meet.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from ocs import pins, rating
from ocs.models import Account, AccountStatus, CallerId, DidMapping

_ACCOUNT_NUMBER = re.compile(r"^[0-9]{1,32}$")
LANGUAGES = ("FR", "EN")

_pin_key: bytes | None = None


class AccountError(ValueError):
    """Bad account data; `field` names the offending input."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class UnknownAccount(LookupError):
    def __init__(self, number: str) -> None:
        super().__init__(f"unknown account {number!r}")
        self.number = number


def set_pin_key(key: bytes) -> None:
    global _pin_key
    _pin_key = key


def _key() -> bytes:
    if _pin_key is None:
        raise RuntimeError("PIN key not configured: call ocs.accounts.set_pin_key() at start-up")
    return _pin_key


def secret_key() -> bytes:
    """The data directory's secret key (keyed hashes of PINs and voucher codes)."""
    return _key()


def normalise_phone(raw: str, field: str = "number") -> str:
    """The same normal form rating uses, so Diameter, IVR and admin input all meet."""
    try:
        return rating.normalise_number(raw)
    except rating.RatingError:
        raise AccountError(f"not a phone number: {raw!r}", field) from None


def validate_number(number: str) -> str:
    number = number.strip()
    if not _ACCOUNT_NUMBER.match(number):
        raise AccountError("account number must be 1 to 32 digits", "number")
    return number


def validate_language(language: str) -> str:
    value = language.strip().upper()
    if value not in LANGUAGES:
        raise AccountError(f"language must be one of {', '.join(LANGUAGES)}", "language")
    return value


def validate_name(name: str) -> str:
    name = name.strip()
    if len(name) > 128:
        raise AccountError("name is at most 128 characters", "name")
    return name


def _pin_index(pin: str) -> str:
    try:
        return pins.pin_index(_key(), pin)
    except pins.PinError as exc:
        raise AccountError(str(exc), "pin") from None


async def _check_pin_free(index: str, account_id: int | None) -> None:
    query = Account.filter(pin_index=index)
    if account_id is not None:
        query = query.exclude(id=account_id)
    if await query.exists():
        # PINs identify the account on their own, so they must be unique.
        raise AccountError("this PIN is already in use by another account", "pin")


async def _check_caller_ids_free(numbers: Iterable[str], account_id: int | None) -> None:
    query = CallerId.filter(number__in=list(numbers))
    if account_id is not None:
        query = query.exclude(account_id=account_id)
    taken = await query.first()
    if taken is not None:
        raise AccountError(f"caller ID {taken.number} belongs to another account", "caller_ids")


async def create_account(
    number: str,
    *,
    name: str = "",
    pin: str | None = None,
    language: str = "FR",
    caller_ids: Sequence[str] = (),
) -> Account:
    number = validate_number(number)
    name = validate_name(name) or number
    language = validate_language(language)
    index = _pin_index(pin) if pin else None
    callers = sorted({normalise_phone(c, "caller_ids") for c in caller_ids if c.strip()})
    if await Account.filter(number=number).exists():
        raise AccountError(f"account {number} already exists", "number")
    if index:
        await _check_pin_free(index, None)
    await _check_caller_ids_free(callers, None)
    try:
        async with in_transaction():
            account = await Account.create(
                number=number, name=name, pin_index=index, language=language
            )
            for caller in callers:
                await CallerId.create(account=account, number=caller)
    except IntegrityError as exc:  # lost a race with another writer
        raise AccountError(f"account {number} conflicts with existing data: {exc}") from None
    return account


async def update_account(
    account: Account,
    *,
    name: str | None = None,
    pin: str | None = None,
    language: str | None = None,
    status: str | None = None,
    caller_ids: Sequence[str] | None = None,
) -> Account:
    fields: dict[str, object] = {}
    if name is not None:
        fields["name"] = validate_name(name) or account.number
    if language is not None:
        fields["language"] = validate_language(language)
    if status is not None:
        try:
            fields["status"] = AccountStatus(status)
        except ValueError:
            raise AccountError("status must be active or blocked", "status") from None
    if pin:
        index = _pin_index(pin)
        await _check_pin_free(index, account.id)
        fields["pin_index"] = index
    callers: list[str] | None = None
    if caller_ids is not None:
        callers = sorted({normalise_phone(c, "caller_ids") for c in caller_ids if c.strip()})
        await _check_caller_ids_free(callers, account.id)
    async with in_transaction():
        if fields:
            # Only the named columns: balance/reserved belong to the ledger.
            await Account.filter(id=account.id).update(**fields)
        if callers is not None:
            await CallerId.filter(account_id=account.id).delete()
            for caller in callers:
                await CallerId.create(account_id=account.id, number=caller)
    return await Account.get(id=account.id)


async def get_account(number: str) -> Account:
    account = await Account.get_or_none(number=number.strip())
    if account is None:
        raise UnknownAccount(number)
    return account


async def find_by_pin(pin: str) -> Account | None:
    try:
        index = pins.pin_index(_key(), pin)
    except pins.PinError:
        return None
    return await Account.get_or_none(pin_index=index, status=AccountStatus.ACTIVE)


async def check_pin(account: Account, pin: str) -> bool:
    try:
        return account.pin_index == pins.pin_index(_key(), pin)
    except pins.PinError:
        return False


async def find_by_caller_id(number: str) -> Account | None:
    try:
        normalised = normalise_phone(number)
    except AccountError:
        return None
    caller = await CallerId.get_or_none(number=normalised).prefetch_related("account")
    if caller is None or caller.account.status != AccountStatus.ACTIVE:
        return None
    return caller.account


async def caller_ids(account_id: int) -> list[str]:
    rows = await CallerId.filter(account_id=account_id).order_by("number")
    return [row.number for row in rows]


async def find_did(account_id: int, did: str) -> str | None:
    try:
        normalised = normalise_phone(did)
    except AccountError:
        return None
    row = await DidMapping.get_or_none(account_id=account_id, did=normalised)
    return row.forward_to if row else None


async def list_dids(account_id: int) -> list[DidMapping]:
    return await DidMapping.filter(account_id=account_id).order_by("did")


async def set_did(
    account_id: int, did: str, forward_to: str, did_id: int | None = None
) -> DidMapping:
    """Add a DID mapping, or change one (`did_id`). DIDs are unique per account."""
    did_n = normalise_phone(did, "did")
    target = normalise_phone(forward_to, "forward_to")
    clash = DidMapping.filter(account_id=account_id, did=did_n)
    if did_id is not None:
        clash = clash.exclude(id=did_id)
    if await clash.exists():
        raise AccountError(f"DID {did_n} is already mapped for this account", "did")
    if did_id is None:
        return await DidMapping.create(account_id=account_id, did=did_n, forward_to=target)
    row = await DidMapping.get_or_none(id=did_id, account_id=account_id)
    if row is None:
        raise LookupError(f"no DID mapping {did_id} on this account")
    row.did = did_n
    row.forward_to = target
    await row.save()
    return row


async def delete_did(account_id: int, did_id: int) -> bool:
    deleted = await DidMapping.filter(id=did_id, account_id=account_id).delete()
    return bool(deleted)


@dataclass(frozen=True, slots=True)
class AccountPage:
    items: list[Account]
    total: int
    offset: int
    limit: int


async def list_accounts(search: str = "", offset: int = 0, limit: int = 50) -> AccountPage:
    query = Account.all()
    text = search.strip()
    if text:
        query = query.filter(Q(number__startswith=text) | Q(name__icontains=text))
    total = await query.count()
    items = await query.order_by("number").offset(max(0, offset)).limit(max(1, min(limit, 500)))
    return AccountPage(items=list(items), total=total, offset=offset, limit=limit)
