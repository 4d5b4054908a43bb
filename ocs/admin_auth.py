"""Password hashing (scrypt) for operators, and the first admin's password.

Operators (`ocs.operators`) each have their own password record made here. Until any
operator exists, the login page offers to create the first admin (and
`ocs admin set-password` sets the password of operator "admin" from a shell).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

SETTING_KEY = "admin_password"  # where versions before migration 0003 kept it
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


# --- the first admin (compatibility with the single-password versions) ---------------------
# The password that used to live in the `setting` table is the operator "admin" now
# (migration 0003 moves it). These keep `ocs admin set-password` and old scripts working.


async def password_record() -> dict[str, Any] | None:
    from ocs.models import Operator
    from ocs.operators import FIRST_ADMIN

    row = await Operator.get_or_none(name=FIRST_ADMIN)
    return row.password if row is not None and isinstance(row.password, dict) else None


async def has_password() -> bool:
    """True once any operator exists (the login page stops offering first-run set-up)."""
    from ocs.operators import any_exist

    return await any_exist()


async def set_password(password: str) -> None:
    """Set the password of operator "admin", creating it (role admin) if missing."""
    from ocs import operators

    validate_password(password)
    try:
        await operators.set_password(operators.FIRST_ADMIN, password)
    except operators.UnknownOperator:
        await operators.create(operators.FIRST_ADMIN, password, "admin")


async def check_password(password: str) -> bool:
    from ocs.operators import FIRST_ADMIN, authenticate

    return await authenticate(FIRST_ADMIN, password) is not None


def password_tag(record: dict[str, Any] | None) -> str:
    """A short, non-secret fingerprint of the current hash: sessions carry it, so changing
    the password logs every other browser out."""
    if record is None:
        return ""
    return hashlib.sha256(str(record.get("hash", "")).encode()).hexdigest()[:16]
