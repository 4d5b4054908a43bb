"""Two OS processes redeem the same vouchers at the same moment: each is credited once.

Runs on the configured test database; on PostgreSQL (OCS_TEST_DB=postgres) it is the real
multi-process case the charging servers have in production.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from ocs import accounts, ledger, vouchers
from ocs.config import Settings
from ocs.models import LedgerEntry, LedgerKind, Voucher, VoucherStatus

WORKER = Path(__file__).with_name("voucher_worker.py")
ROOT = Path(__file__).resolve().parents[2]


async def test_two_processes_redeem_the_same_codes(db: Settings) -> None:
    a = await accounts.create_account("1001")
    b = await accounts.create_account("1002")
    gen = await vouchers.generate_batch(60, 1000, actor="test")
    codes = [c for _, c in gen.codes]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OCS_DATA_DIR": str(db.data_dir),  # same secret key as this process
        "OCS_DATABASE_URL": db.database_url,
    }
    start_at = time.time() + 3.0  # both are connected and waiting by then
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER), str(start_at), number, *codes,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )
        for number in ("1001", "1002")
    ]
    results = []
    for p in procs:
        out, err = await asyncio.wait_for(p.communicate(), timeout=120)
        assert p.returncode == 0, err.decode()
        results.append(json.loads(out))
    won_a, won_b = (set(r["won"]) for r in results)
    assert not won_a & won_b, "a voucher was credited to both accounts"
    assert len(won_a) + len(won_b) == 60
    assert results[0]["lost"] == len(won_b) and results[1]["lost"] == len(won_a)
    # both processes really competed (not one finishing before the other started) is
    # likely but not guaranteed by timing; correctness must not depend on it
    assert (await ledger.balance(a.id)).balance == 1000 * len(won_a)
    assert (await ledger.balance(b.id)).balance == 1000 * len(won_b)
    assert await LedgerEntry.filter(kind=LedgerKind.CREDIT).count() == 60
    assert await Voucher.filter(status=VoucherStatus.USED).count() == 60
    for acc in (a, b):
        assert await ledger.invariant_violations(acc.id) == []
