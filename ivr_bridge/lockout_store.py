"""IVR PIN / voucher lockout, stored in the database (`ivr_failure`, `ivr_lock`): the I/O
edge of `ivr_bridge.lockout`.

Stored, not held in memory, so a lockout survives a restart and every process (several
`ocs serve` on one PostgreSQL) sees the same counts. The rule itself is pure
(`LockoutPolicy`); this module counts rows and writes locks.

A race between two processes recording failures for one caller at the same instant can at
worst lock a little early (both count each other's row): never late, never twice over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ivr_bridge.lockout import GLOBAL_WINDOW, LockoutPolicy, LockReason, caller_key
from ocs.models import IvrFailure, IvrLock
from ocs.settings_store import OperatorSettings, load_operator_settings


@dataclass(frozen=True, slots=True)
class LockStatus:
    locked: bool
    reason: LockReason | None = None
    until: datetime | None = None  # caller lock end (None for the global limit)


@dataclass(frozen=True, slots=True)
class LockInfo:
    caller: str
    locked_until: datetime
    failures: int


def policy_of(settings: OperatorSettings) -> LockoutPolicy:
    return LockoutPolicy(
        max_failures=settings.ivr_lockout_failures,
        window=float(settings.ivr_lockout_window),
        duration=float(settings.ivr_lockout_duration),
        global_per_minute=settings.ivr_global_failures_per_minute,
    )


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


async def _global_count(policy: LockoutPolicy, now: datetime) -> int:
    return await IvrFailure.filter(created_at__gt=now - timedelta(seconds=GLOBAL_WINDOW)).count()


async def status(
    caller: str, policy: LockoutPolicy | None = None, *, now: datetime | None = None
) -> LockStatus:
    """May this caller try a PIN now?"""
    policy = policy or policy_of(await load_operator_settings())
    now = _now(now)
    lock = await IvrLock.get_or_none(caller=caller_key(caller))
    if lock is not None and lock.locked_until > now:
        return LockStatus(True, LockReason.CALLER, lock.locked_until)
    if policy.global_locked(await _global_count(policy, now)):
        return LockStatus(True, LockReason.GLOBAL)
    return LockStatus(False)


async def record_failure(
    caller: str,
    kind: str = "pin",
    policy: LockoutPolicy | None = None,
    *,
    now: datetime | None = None,
) -> LockStatus:
    """Store one failed attempt; lock the caller when it reaches the limit."""
    policy = policy or policy_of(await load_operator_settings())
    now = _now(now)
    key = caller_key(caller)
    horizon = max(policy.window, GLOBAL_WINDOW)
    # Keep the table small: rows older than any window are dead weight.
    await IvrFailure.filter(created_at__lt=now - timedelta(seconds=horizon)).delete()
    await IvrFailure.create(caller=key, kind=kind[:16], created_at=now)
    since = now - timedelta(seconds=policy.window)
    lock = await IvrLock.get_or_none(caller=key)
    if lock is not None and lock.locked_until <= now:
        # An expired lock: failures before it ended do not count again.
        since = max(since, lock.locked_until)
    mine = await IvrFailure.filter(caller=key, created_at__gt=since).count()
    reason = policy.decide(mine, await _global_count(policy, now))
    if reason is LockReason.CALLER:
        until = now + timedelta(seconds=policy.duration)
        await IvrLock.update_or_create(
            caller=key, defaults={"locked_until": until, "failures": mine, "created_at": now}
        )
        return LockStatus(True, reason, until)
    if reason is LockReason.GLOBAL:
        return LockStatus(True, reason)
    return LockStatus(False)


async def unlock(caller: str) -> bool:
    """Operator unlock: forget the caller's lock and failures. True if anything was held."""
    key = caller_key(caller)
    locks = await IvrLock.filter(caller=key).delete()
    failures = await IvrFailure.filter(caller=key).delete()
    return bool(locks or failures)


async def locks(
    callers: list[str] | None = None, *, now: datetime | None = None
) -> list[LockInfo]:
    """Active locks (of `callers` when given), soonest-ending last."""
    query = IvrLock.filter(locked_until__gt=_now(now))
    if callers is not None:
        query = query.filter(caller__in=[caller_key(c) for c in callers])
    rows = await query.order_by("-locked_until")
    return [LockInfo(r.caller, r.locked_until, r.failures) for r in rows]


async def recent_failures(
    caller: str, policy: LockoutPolicy, *, now: datetime | None = None
) -> int:
    since = _now(now) - timedelta(seconds=policy.window)
    return await IvrFailure.filter(caller=caller_key(caller), created_at__gt=since).count()
