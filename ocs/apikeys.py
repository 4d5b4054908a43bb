"""API keys for the REST API: shown once at creation, stored as a SHA-256 hash.

A key looks like `ocs_<prefix>_<secret>`; the prefix (8 hex digits) is stored in clear so
operators can tell keys apart and revoke one; the whole key is hashed. Keys are 160+ bits of
randomness, so a fast hash is adequate (no password stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from ocs.models import ApiKey, OperatorRole

KEY_PREFIX = "ocs_"


class ApiKeyError(ValueError):
    """Bad API key request (e.g. an empty name)."""


@dataclass(frozen=True, slots=True)
class NewKey:
    record: ApiKey
    key: str  # the only time the clear key exists


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _split(key: str) -> str | None:
    """The prefix part of a well-formed key, or None."""
    if not key.startswith(KEY_PREFIX):
        return None
    parts = key[len(KEY_PREFIX) :].split("_", 1)
    if len(parts) != 2 or len(parts[0]) != 8:
        return None
    return parts[0]


async def create_key(name: str, role: str | OperatorRole = OperatorRole.ADMIN) -> NewKey:
    """A new key with `role` (admin by default, as keys had full access before roles)."""
    name = name.strip()
    if not name or len(name) > 64:
        raise ApiKeyError("key name must be 1 to 64 characters")
    try:
        role = OperatorRole(str(role).strip().lower())
    except ValueError:
        raise ApiKeyError(
            f"role must be one of {', '.join(r.value for r in OperatorRole)}") from None
    while True:
        prefix = secrets.token_hex(4)
        if not await ApiKey.filter(prefix=prefix).exists():
            break
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(24)}"
    record = await ApiKey.create(name=name, prefix=prefix, key_hash=_hash(key), role=role)
    return NewKey(record, key)


async def verify_key(key: str) -> ApiKey | None:
    prefix = _split(key.strip())
    if prefix is None:
        return None
    record = await ApiKey.get_or_none(prefix=prefix, revoked=False)
    if record is None or not hmac.compare_digest(record.key_hash, _hash(key.strip())):
        return None
    return record


async def list_keys() -> list[ApiKey]:
    return list(await ApiKey.all().order_by("id"))


async def revoke_key(ident: str) -> bool:
    """Revoke by prefix or numeric id. Returns False when no active key matches."""
    return await revoke(ident) is not None


async def revoke(ident: str) -> ApiKey | None:
    """Revoke by prefix or numeric id; the revoked key, or None when no active key matches."""
    ident = ident.strip()
    query = ApiKey.filter(prefix=ident, revoked=False)
    if ident.isascii() and ident.isdigit() and not await query.exists():
        query = ApiKey.filter(id=int(ident), revoked=False) if len(ident) < 10 else query
    record = await query.first()
    if record is None or not await ApiKey.filter(id=record.id, revoked=False).update(
            revoked=True):
        return None
    return record
