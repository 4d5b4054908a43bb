"""Several OS processes reserving and settling on one account in one PostgreSQL database:
never over-reserved, balance == sum of entries, no unit lost or created."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path

import asyncpg
import pytest

from ocs import accounts, ledger
from tests.conftest import use_postgres

WORKER = Path(__file__).with_name("ledger_worker.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
@pytest.mark.ledger_only  # worker processes settle below the session layer
@pytest.mark.parametrize("strategy", ["conditional", "lock"])
async def test_two_processes_fifty_sessions_one_account(db, strategy: str) -> None:
    if not use_postgres():
        pytest.skip("runs on PostgreSQL (OCS_TEST_DB=postgres)")  # not-applicable
    url = db.database_url
    acc = await accounts.create_account("7000")
    initial = 100_000  # runs out part-way: refusals and partial reservations happen
    await ledger.credit(acc.id, initial, actor="test")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            url,
            str(acc.id),
            "25",
            "20",
            strategy,
            f"p{n}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        for n in range(2)
    ]
    # Watch the row while they run: available must never go below zero.
    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://"))
    lowest = initial
    try:
        while any(p.returncode is None for p in procs):
            row = await conn.fetchrow("SELECT balance, reserved FROM account WHERE id = $1", acc.id)
            assert row["reserved"] >= 0
            lowest = min(lowest, row["balance"] - row["reserved"])
            assert lowest >= 0, f"over-reserved: {dict(row)}"
            await asyncio.sleep(0.002)
            for p in procs:
                if p.returncode is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(p.wait(), 0.001)
    finally:
        await conn.close()
    results = []
    for p in procs:
        out, err = await p.communicate()
        assert p.returncode == 0, err.decode()
        results.append(json.loads(out))
    debited = sum(r["debited"] for r in results)
    assert sum(r["refused"] for r in results) > 0  # credit really ran out under contention
    bal = await ledger.balance(acc.id)
    assert bal.reserved == 0
    assert bal.balance == initial - debited >= 0
    assert await ledger.invariant_violations(acc.id) == []
