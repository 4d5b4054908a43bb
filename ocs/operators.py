"""Operators of the web UI: names, roles, passwords (scrypt, `ocs.admin_auth`), disabling.

Roles, lowest to highest: ``readonly`` (views everything an operator sees), ``operator``
(day-to-day account and credit work), ``admin`` (also configuration, tariffs, operators and
API keys). The matrix is written down in docs/API.md and enforced in `api.permissions`.

Rules kept here, whoever calls (web page, CLI): names are lower-case ``[a-z0-9._-]``, 1-32
characters; there is always at least one enabled admin (the last one cannot be disabled or
demoted); hashing runs in a worker thread so a login flood never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from tortoise.transactions import in_transaction

from ocs import admin_auth
from ocs.models import Operator, OperatorRole

FIRST_ADMIN = "admin"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
ROLES = tuple(r.value for r in OperatorRole)
RANK = {OperatorRole.READONLY: 0, OperatorRole.OPERATOR: 1, OperatorRole.ADMIN: 2}

# One scrypt computation at a time per process (~16 MiB, ~50 ms of one core): a flood
# queues here instead of taking the cores of the charging server (the global login cap,
# 120 per minute, is far below what one thread hashes).
_HASHERS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scrypt")


@functools.cache
def _dummy() -> dict[str, Any]:
    """Checked when the name is unknown, so a wrong name costs what a wrong password does
    (made on first use: importing this module must not cost a hash)."""
    return admin_auth.hash_password("no such operator: timing equaliser")


class OperatorError(ValueError):
    """A refused operator change; `field` names the form field at fault."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class UnknownOperator(OperatorError):
    pass


def normalise_name(name: str) -> str:
    value = name.strip().lower()
    if not NAME_RE.match(value):
        raise OperatorError(
            "operator name must be 1-32 characters: a-z, 0-9, '.', '_' or '-'", "name"
        )
    return value


def parse_role(role: str | OperatorRole) -> OperatorRole:
    try:
        return OperatorRole(str(role).strip().lower())
    except ValueError:
        raise OperatorError(f"role must be one of {', '.join(ROLES)}", "role") from None


def at_least(role: OperatorRole | str, needed: OperatorRole | str) -> bool:
    return RANK[OperatorRole(role)] >= RANK[OperatorRole(needed)]


async def hash_password(password: str) -> dict[str, Any]:
    admin_auth.validate_password(password)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_HASHERS, admin_auth.hash_password, password)


async def verify(record: dict[str, Any] | None, password: str) -> bool:
    """scrypt check in the hashing pool (never on the event loop)."""
    loop = asyncio.get_running_loop()
    ok = await loop.run_in_executor(_HASHERS, _check, record, password)
    return ok and record is not None


def _check(record: dict[str, Any] | None, password: str) -> bool:
    """In the hashing thread (the dummy record too is made there, on first use)."""
    return admin_auth.verify_hash(record or _dummy(), password)


async def get(name: str) -> Operator:
    row = await Operator.get_or_none(name=name.strip().lower())
    if row is None:
        raise UnknownOperator(f"no operator {name!r}", "name")
    return row


async def list_operators() -> list[Operator]:
    return list(await Operator.all().order_by("name"))


async def any_exist() -> bool:
    return await Operator.exists()


async def create(name: str, password: str, role: str | OperatorRole) -> Operator:
    name = normalise_name(name)
    role = parse_role(role)
    record = await hash_password(password)
    async with in_transaction():
        if await Operator.filter(name=name).exists():
            raise OperatorError(f"operator {name} already exists", "name")
        return await Operator.create(name=name, role=role, password=record)


async def authenticate(name: str, password: str) -> Operator | None:
    """The enabled operator with this name and password, or None (same cost either way)."""
    try:
        key = normalise_name(name)
    except OperatorError:
        key = ""
    row = await Operator.get_or_none(name=key) if key else None
    ok = await verify(row.password if row is not None else None, password)
    if row is None or not ok or row.disabled:
        return None
    row.last_login_at = datetime.now(UTC)
    await Operator.filter(id=row.id).update(last_login_at=row.last_login_at)
    return row


async def set_password(name: str, password: str) -> Operator:
    row = await get(name)
    row.password = await hash_password(password)
    await Operator.filter(id=row.id).update(password=row.password)
    return row


async def _other_enabled_admins(row: Operator) -> int:
    """Enabled admins besides `row`, their rows locked (PostgreSQL) so that two admins
    demoting each other at once cannot both succeed."""
    ids = await Operator.filter(role=OperatorRole.ADMIN, disabled=False).select_for_update(
        ).values_list("id", flat=True)
    return len([i for i in ids if i != row.id])


async def set_role(name: str, role: str | OperatorRole) -> Operator:
    new = parse_role(role)
    async with in_transaction():
        row = await get(name)
        if (row.role == OperatorRole.ADMIN and new != OperatorRole.ADMIN and not row.disabled
                and not await _other_enabled_admins(row)):
            raise OperatorError("the last enabled admin cannot lose the admin role", "role")
        row.role = new
        await Operator.filter(id=row.id).update(role=new)
    return row


async def set_disabled(name: str, disabled: bool) -> Operator:
    async with in_transaction():
        row = await get(name)
        if (disabled and row.role == OperatorRole.ADMIN and not row.disabled
                and not await _other_enabled_admins(row)):
            raise OperatorError("the last enabled admin cannot be disabled", "name")
        row.disabled = disabled
        if disabled:  # its sessions end for good, even if it is enabled again later
            row.password = {**row.password, "epoch": int(row.password.get("epoch", 0)) + 1}
        await Operator.filter(id=row.id).update(disabled=disabled, password=row.password)
    return row


def session_tag(row: Operator) -> str:
    """Sessions carry it: a password change or a disable ends the operator's sessions."""
    if row.disabled:
        return ""
    record = row.password if isinstance(row.password, dict) else {}
    epoch = str(record.get("epoch", 0))
    return hashlib.sha256(f"{record.get('hash', '')}/{epoch}".encode()).hexdigest()[:16]
