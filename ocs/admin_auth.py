"""The operator's admin password: hashed with scrypt, stored in the `setting` table.

There is one admin account (as in the brochure). Until a password is set, the login page
offers to set one (and `ocs admin set-password` sets it from a shell).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

from ocs.models import Setting

SETTING_KEY = "admin_password"
MIN_LENGTH = 8
MAX_LENGTH = 256
# scrypt cost: ~50 ms and 16 MiB per check on this class of machine.
_N, _R, _P = 2**14, 8, 1


class PasswordError(ValueError):
    """A new password is unacceptable."""


def validate_password(password: str) -> str:
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"password must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise PasswordError(f"password must be at most {MAX_LENGTH} characters")
    return password


def hash_password(password: str, *, salt: bytes | None = None) -> dict[str, Any]:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=64 * 1024 * 1024, dklen=32
    )
    return {
        "algorithm": "scrypt",
        "n": _N,
        "r": _R,
        "p": _P,
        "salt": base64.b64encode(salt).decode(),
        "hash": base64.b64encode(digest).decode(),
    }


def verify_hash(record: dict[str, Any], password: str) -> bool:
    try:
        if record.get("algorithm") != "scrypt":
            return False
        salt = base64.b64decode(record["salt"])
        expected = base64.b64decode(record["hash"])
        digest = hashlib.scrypt(
            password.encode(),
            salt=salt,
            n=int(record["n"]),
            r=int(record["r"]),
            p=int(record["p"]),
            maxmem=64 * 1024 * 1024,
            dklen=len(expected),
        )
    except (KeyError, ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


async def password_record() -> dict[str, Any] | None:
    row = await Setting.get_or_none(key=SETTING_KEY)
    if row is None or not isinstance(row.value, dict):
        return None
    return row.value


async def has_password() -> bool:
    return await password_record() is not None


async def set_password(password: str) -> None:
    record = hash_password(validate_password(password))
    await Setting.update_or_create(key=SETTING_KEY, defaults={"value": record})


async def check_password(password: str) -> bool:
    record = await password_record()
    if record is None:
        return False
    return verify_hash(record, password)


def password_tag(record: dict[str, Any] | None) -> str:
    """A short, non-secret fingerprint of the current hash: sessions carry it, so changing
    the password logs every other browser out."""
    if record is None:
        return ""
    return hashlib.sha256(str(record.get("hash", "")).encode()).hexdigest()[:16]
