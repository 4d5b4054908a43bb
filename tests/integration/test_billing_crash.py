"""Billing runs killed with SIGKILL (issue 13, item 16): a real `ocs` process is killed in
the middle of a run; the next run, or the next start of `ocs serve`, marks the run failed
and deletes its partial file and closing balances, while a run still alive in another
process is left alone. SQLite by default, PostgreSQL with OCS_TEST_DB=postgres."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from ocs import accounts, billing, ledger
from ocs.config import Settings
from ocs.events import EventBus
from ocs.models import BillingRun, StatementBalance
from ocs.runtime import ServeContext

PAUSING_RUN = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from ocs import billing, db
    from ocs.config import load_settings

    async def main():
        settings = load_settings()
        await db.init_db(settings)
        pause_after, marker = int(sys.argv[1]), Path(sys.argv[2])

        async def progress(p):
            if p.accounts == pause_after and not p.finished:
                marker.write_text(str(p.run_id))
                await asyncio.sleep(3600)  # killed here

        await billing.run_billing(settings, progress=progress)

    asyncio.run(main())
""")

PLAIN_RUN = textwrap.dedent("""
    import asyncio
    from ocs import billing, db
    from ocs.config import load_settings

    async def main():
        settings = load_settings()
        await db.init_db(settings)
        await billing.run_billing(settings)

    asyncio.run(main())
""")


def spawn(settings: Settings, script: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OCS_DATA_DIR": str(settings.data_dir),
           "OCS_DATABASE_URL": settings.database_url}
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def wait_for_file(path: Path, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode() if proc.stderr else "exited")
        assert time.monotonic() < deadline, "the billing process never reached the pause"
        await asyncio.sleep(0.05)


async def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    await asyncio.to_thread(proc.wait, 30)
    assert proc.returncode == -signal.SIGKILL


async def seed(n: int) -> list[int]:
    ids = []
    for i in range(n):
        aid = (await accounts.create_account(f"{5000 + i}")).id
        await ledger.credit(aid, 1000 + i, actor="t")
        ids.append(aid)
    return ids


def partials(settings: Settings) -> list[str]:
    folder = billing.billing_dir(settings)
    return sorted(p.name for p in folder.glob(".*.partial")) if folder.is_dir() else []


async def paused_run(settings: Settings, tmp_path: Path, pause_after: int
                     ) -> tuple[subprocess.Popen[bytes], BillingRun]:
    marker = tmp_path / f"paused-{time.monotonic_ns()}"
    proc = spawn(settings, PAUSING_RUN, str(pause_after), str(marker))
    await wait_for_file(marker, proc)
    run = await BillingRun.get(id=int(marker.read_text()))
    assert run.status == billing.RUNNING
    assert partials(settings) == [billing.partial_name(run.filename)]
    return proc, run


async def test_a_killed_run_is_cleaned_up_by_the_next_run(db: Settings, tmp_path: Path) -> None:
    await seed(12)
    proc, killed = await paused_run(db, tmp_path, pause_after=5)
    await kill(proc)
    assert (await BillingRun.get(id=killed.id)).status == billing.RUNNING  # as it was left
    result = await billing.run_billing(db)
    assert (await BillingRun.get(id=killed.id)).status == billing.FAILED
    assert partials(db) == []
    assert not await StatementBalance.filter(run_id=killed.id).exists()
    assert result.first_ledger_id == 0 and result.accounts == 12  # nothing was closed
    assert [r.id for r in await billing.list_runs()] == [result.run_id]


async def test_a_killed_run_is_cleaned_up_when_serve_starts(db: Settings,
                                                            tmp_path: Path) -> None:
    await seed(3)
    proc, killed = await paused_run(db, tmp_path, pause_after=1)
    await kill(proc)
    part = await billing.start_billing_scheduler(ServeContext(settings=db, bus=EventBus()),
                                                 interval=3600)
    try:
        assert (await BillingRun.get(id=killed.id)).status == billing.FAILED
        assert partials(db) == []
    finally:
        await part.stop()


async def test_a_live_run_in_another_process_is_left_alone(db: Settings,
                                                           tmp_path: Path) -> None:
    await seed(3)
    proc, alive = await paused_run(db, tmp_path, pause_after=2)
    try:
        assert await billing.recover_stale_runs(db) == []
        await billing.recover_files(db)
        assert (await BillingRun.get(id=alive.id)).status == billing.RUNNING
        assert partials(db) == [billing.partial_name(alive.filename)]
    finally:
        await kill(proc)
    assert await billing.recover_stale_runs(db) == [alive.id]
    assert partials(db) == []


async def test_repeated_kills_at_random_points_lose_nothing(db: Settings,
                                                            tmp_path: Path) -> None:
    """Kill -9 at random moments (before, during, after the commit) again and again; then
    one clean run must close exactly the open period, with each account's balance."""
    ids = await seed(300)
    rng = random.Random(1313)
    kills = 0
    for _ in range(8):
        if rng.random() < 0.5:
            proc, _run = await paused_run(db, tmp_path, pause_after=rng.randint(1, 299))
        else:
            proc = spawn(db, PLAIN_RUN)
            await asyncio.sleep(rng.uniform(0.5, 4.0))
        if proc.poll() is None:
            await kill(proc)
            kills += 1
        # a credit between runs: every run's period must start where the last done one ended
        await ledger.credit(ids[rng.randrange(len(ids))], 7, actor="t")
    assert kills >= 4
    final = await billing.run_billing(db)
    runs = await BillingRun.all().order_by("id")
    assert all(r.status in (billing.DONE, billing.FAILED) for r in runs)
    assert partials(db) == []
    done = [r for r in runs if r.status == billing.DONE]
    assert done[-1].id == final.run_id
    for prev, run in zip([None, *done[:-1]], done, strict=True):
        path = billing.billing_dir(db) / run.filename
        assert path.is_file(), run.filename
        if prev is not None:
            assert (await billing.statement_path(db, prev.id)) is not None
    for r in runs:
        if r.status == billing.FAILED:
            assert not await StatementBalance.filter(run_id=r.id).exists()
    for aid in ids:
        closing = await StatementBalance.get(run_id=final.run_id, account_id=aid)
        assert closing.total == (await ledger.balance(aid)).balance
