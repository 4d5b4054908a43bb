"""The IVR lockout store on a real database (SQLite, or PostgreSQL with OCS_TEST_DB=postgres):
limits per caller ID and global, persistence across a restart, operator unlock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ivr_bridge import lockout_store
from ivr_bridge.lockout import LockoutPolicy, LockReason
from ocs import db as ocs_db
from ocs.models import IvrFailure
from ocs.settings_store import save_operator_settings

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = LockoutPolicy(max_failures=3, window=600, duration=300, global_per_minute=5)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_caller_locked_after_max_failures_for_duration(db):
    for n in range(2):
        status = await lockout_store.record_failure("0611", "pin", POLICY, now=at(n))
        assert not status.locked
    status = await lockout_store.record_failure("0611", "pin", POLICY, now=at(2))
    assert status.locked and status.reason is LockReason.CALLER
    assert status.until == at(302)
    assert (await lockout_store.status("0611", POLICY, now=at(301))).locked
    assert not (await lockout_store.status("0611", POLICY, now=at(302))).locked
    assert not (await lockout_store.status("0622", POLICY, now=at(10))).locked
    # after the lock ends, the failures that caused it do not lock again at once
    status = await lockout_store.record_failure("0611", "pin", POLICY, now=at(303))
    assert not status.locked


async def test_failures_outside_the_window_do_not_count(db):
    await lockout_store.record_failure("0611", "pin", POLICY, now=at(0))
    await lockout_store.record_failure("0611", "pin", POLICY, now=at(1))
    status = await lockout_store.record_failure("0611", "pin", POLICY, now=at(601))
    assert not status.locked


async def test_global_limit_across_many_caller_ids(db):
    # a spoofer changing the From number each time: no caller reaches 3...
    for n in range(4):
        status = await lockout_store.record_failure(f"06{n:02}", "pin", POLICY, now=at(n))
        assert not status.locked
    # ... but the fifth failure within a minute stops everyone
    status = await lockout_store.record_failure("0699", "pin", POLICY, now=at(5))
    assert status.locked and status.reason is LockReason.GLOBAL
    assert (await lockout_store.status("0123456", POLICY, now=at(10))).reason is LockReason.GLOBAL
    assert not (await lockout_store.status("0123456", POLICY, now=at(61))).locked


async def test_lockout_survives_a_restart(db, settings):
    for n in range(3):
        await lockout_store.record_failure("0611", "pin", POLICY, now=at(n))
    await ocs_db.close_db()
    await ocs_db.init_db(settings)  # a new process: nothing in memory
    assert (await lockout_store.status("0611", POLICY, now=at(60))).locked


async def test_operator_unlock(db):
    for n in range(3):
        await lockout_store.record_failure("0611", "pin", POLICY, now=at(n))
    assert [lock.caller for lock in await lockout_store.locks(now=at(5))] == ["0611"]
    assert await lockout_store.unlock("0611")
    assert not (await lockout_store.status("0611", POLICY, now=at(6))).locked
    assert await lockout_store.locks(now=at(6)) == []
    assert not await lockout_store.unlock("0611")
    # the count starts again from zero
    assert not (await lockout_store.record_failure("0611", "pin", POLICY, now=at(7))).locked


async def test_anonymous_callers_share_one_bucket(db):
    await lockout_store.record_failure("", "pin", POLICY, now=at(0))
    await lockout_store.record_failure(" ", "pin", POLICY, now=at(1))
    assert (await lockout_store.record_failure("", "pin", POLICY, now=at(2))).locked


async def test_old_failures_are_pruned(db):
    await lockout_store.record_failure("0611", "pin", POLICY, now=at(0))
    await lockout_store.record_failure("0622", "pin", POLICY, now=at(10_000))
    assert await IvrFailure.all().count() == 1


async def test_limits_come_from_the_operator_settings(db):
    await save_operator_settings({"ivr_lockout_failures": "2", "ivr_lockout_duration": "60"})
    assert not (await lockout_store.record_failure("0611", "pin")).locked
    status = await lockout_store.record_failure("0611", "pin")
    assert status.locked and status.until is not None
    assert status.until - datetime.now(UTC) <= timedelta(seconds=60)
