"""PIN handling: PINs are never stored, only a keyed hash that still works as an index.

HMAC-SHA256 with a secret kept in the data directory (not in the database): a stolen
database alone does not let anyone brute-force the short PIN space, while the IVR can look
an account up by PIN alone with one indexed equality query.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

PIN_MIN_DIGITS = 4
PIN_MAX_DIGITS = 12


class PinError(ValueError):
    """A PIN is malformed."""


def validate_pin(pin: str) -> str:
    pin = pin.strip()
    if not (pin.isascii() and pin.isdigit()) or not PIN_MIN_DIGITS <= len(pin) <= PIN_MAX_DIGITS:
        raise PinError(f"PIN must be {PIN_MIN_DIGITS} to {PIN_MAX_DIGITS} digits")
    return pin


def load_or_create_key(path: Path) -> bytes:
    """Read the PIN key, creating it (mode 0600) on first use."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key)
        finally:
            os.close(fd)
        return key
    if len(key) < 16:
        raise PinError(f"secret key file {path} is too short")
    return key


def pin_index(key: bytes, pin: str) -> str:
    return hmac.new(key, b"pin:" + validate_pin(pin).encode(), hashlib.sha256).hexdigest()
