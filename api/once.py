"""One-time downloads: a file (voucher codes, card PINs) that can be fetched exactly once.

Secrets that are stored only hashed (voucher codes, PINs) exist in clear in exactly one
place: this in-memory slot, until the operator downloads the CSV or it expires. Nothing is
written to disk or to the session store.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

TTL_SECONDS = 30 * 60


@dataclass(frozen=True, slots=True)
class Download:
    filename: str
    data: bytes
    expires: float


_slots: dict[str, Download] = {}


def put(filename: str, data: bytes, *, ttl: float = TTL_SECONDS) -> str:
    _expire()
    token = secrets.token_urlsafe(24)
    _slots[token] = Download(filename, data, time.monotonic() + ttl)
    return token


def take(token: str) -> Download | None:
    """The download, removed: a second call returns None."""
    _expire()
    return _slots.pop(token, None)


def pending(token: str) -> bool:
    _expire()
    return token in _slots


def _expire() -> None:
    now = time.monotonic()
    for token in [t for t, d in _slots.items() if d.expires < now]:
        del _slots[token]
