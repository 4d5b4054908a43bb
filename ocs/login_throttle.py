"""Login rate limits, kept in the database so they survive restarts and bind every process.

Fixed windows, one counter row per (scope, window) in `login_throttle`, bumped by one atomic
upsert (`INSERT ... ON CONFLICT DO UPDATE ... RETURNING`, same SQL on SQLite and
PostgreSQL). An attempt is counted *before* its password is checked, so concurrent guesses
cannot slip past a limit. A successful login clears its name's count and gives its address
back that one attempt (someone with an account of their own must not wipe their failed
guesses at other names by logging in).

Limits (`LIMITS`), checked in this order:

* ``addr``: failed logins from one client address (20 per 15 min);
* ``user``: failed logins for one operator name, whatever the address (5 per 15 min);
* ``global``: logins that reach the password check at all (120 per min in total): bounds
  the scrypt CPU a distributed guessing flood can take from the charging server. The price
  is that such a flood can also delay real operators' logins by up to a minute.

A refused attempt does not reach the password check and is answered 429 with Retry-After
(the seconds until the window that refused it ends). The client address is the TCP peer
(`proxy_headers` is off): behind a reverse proxy every client shares one address.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from ocs.db import connection


@dataclass(frozen=True, slots=True)
class Limit:
    scope: str  # addr, user, global
    attempts: int  # allowed per window
    window: int  # seconds


LIMITS: tuple[Limit, ...] = (
    Limit("addr", 20, 900),
    Limit("user", 5, 900),
    Limit("global", 120, 60),
)
PURGE_PROBABILITY = 0.02


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: int = 0  # seconds, when refused
    scope: str = ""  # which limit refused


# --- pure --------------------------------------------------------------------------------


def window_start(now: float, window: int) -> int:
    return int(now // window) * window


def counter_key(limit: Limit, subject: str, now: float) -> str:
    """Row key: scope, subject (bounded), window start."""
    return f"{limit.scope}:{subject[:120]}@{window_start(now, limit.window)}"


def retry_after(limit: Limit, now: float) -> int:
    return max(1, math.ceil(window_start(now, limit.window) + limit.window - now))


def subjects(name: str, address: str) -> dict[str, str]:
    return {"addr": address or "unknown", "user": name.strip().lower() or "-", "global": "all"}


# --- database ----------------------------------------------------------------------------


def _sql(template: str) -> str:
    """`?` placeholders for SQLite, `$n` for PostgreSQL."""
    if connection().capabilities.dialect != "postgres":
        return template
    parts = template.split("?")
    out = [parts[0]]
    for n, part in enumerate(parts[1:], start=1):
        out.append(f"${n}{part}")
    return "".join(out)


async def _bump(key: str, expires: int) -> int:
    rows = await connection().execute_query_dict(
        _sql('INSERT INTO "login_throttle" ("key", "count", "expires") VALUES (?, 1, ?) '
             'ON CONFLICT ("key") DO UPDATE SET "count" = "login_throttle"."count" + 1 '
             'RETURNING "count"'),
        [key, expires],
    )
    return int(rows[0]["count"])


async def _give_back(key: str) -> None:
    await connection().execute_query(
        _sql('UPDATE "login_throttle" SET "count" = "count" - 1 WHERE "key" = ? AND "count" > 0'),
        [key],
    )


async def _forget(key: str) -> None:
    await connection().execute_query(_sql('DELETE FROM "login_throttle" WHERE "key" = ?'),
                                     [key])


async def purge(now: float | None = None) -> None:
    """Delete the counters of windows that have ended."""
    await connection().execute_query(
        _sql('DELETE FROM "login_throttle" WHERE "expires" < ?'),
        [int(now if now is not None else time.time())],
    )


class LoginThrottle:
    """`acquire` before checking a password, `succeeded` after a good one."""

    def __init__(self, limits: tuple[Limit, ...] = LIMITS,
                 clock: Callable[[], float] = time.time) -> None:
        self.limits = limits
        self.clock = clock

    async def acquire(self, name: str, address: str) -> Decision:
        now = self.clock()
        if random.random() < PURGE_PROBABILITY:
            await purge(now)
        subject = subjects(name, address)
        for limit in self.limits:
            key = counter_key(limit, subject[limit.scope], now)
            expires = window_start(now, limit.window) + limit.window
            if await _bump(key, expires) > limit.attempts:
                return Decision(False, retry_after(limit, now), limit.scope)
        return Decision(True)

    async def succeeded(self, name: str, address: str) -> None:
        """A good password: the name's failures are forgiven (its owner is back); the
        address only gets this attempt back (a guesser with an account of their own must
        not wipe their failed guesses at other names by logging in)."""
        now = self.clock()
        subject = subjects(name, address)
        for limit in self.limits:
            key = counter_key(limit, subject[limit.scope], now)
            if limit.scope == "user":
                await _forget(key)
            elif limit.scope == "addr":
                await _give_back(key)


default = LoginThrottle()
