"""Charging engine alone (no Diameter): CCRs/s through the batching engine on SQLite.

Concurrent calls I, U, U, T (the 1:2:1 mix), many accounts. Prints JSON.
    python bench/engine_bench.py [--calls 4000] [--concurrency 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocs import accounts, ledger  # noqa: E402
from ocs.charging.engine import ChargingEngine  # noqa: E402
from ocs.config import load_settings  # noqa: E402
from ocs.credit_control import (  # noqa: E402
    CCRequest,
    RequestType,
    SubscriptionId,
    SubscriptionIdType,
    UsedUnits,
)
from ocs.db import database, migrate  # noqa: E402
from ocs.demo import load_demo  # noqa: E402
from ocs.events import EventBus  # noqa: E402


async def run(calls: int, concurrency: int, accounts_n: int, url: str | None) -> dict:
    tmp = tempfile.mkdtemp()
    env = {"OCS_DATA_DIR": tmp}
    if url:
        env["OCS_DATABASE_URL"] = url
    settings = load_settings(env)
    await migrate(settings)
    async with database(settings):
        await load_demo()
        ids = []
        for i in range(accounts_n):
            acc = await accounts.create_account(str(500000 + i))
            await ledger.credit(acc.id, 10**9, actor="bench")
            ids.append(str(500000 + i))
        engine = ChargingEngine(ledger.store(), EventBus(), tcc_interval=3600)
        await engine.start()
        lat: list[float] = []
        sem = asyncio.Semaphore(concurrency)

        async def one(n: int) -> None:
            sid = f"bench-{n}"
            sub = (SubscriptionId(SubscriptionIdType.END_USER_PRIVATE, ids[n % accounts_n]),)
            async with sem:
                for num, kind in enumerate((RequestType.INITIAL, RequestType.UPDATE,
                                            RequestType.UPDATE, RequestType.TERMINATE)):
                    req = CCRequest(
                        session_id=sid, origin_host="b", origin_realm="b", request_type=kind,
                        request_number=num, subscription_ids=sub,
                        called_party="tel:0141587070", requested=kind != RequestType.TERMINATE,
                        requested_time=60 if kind != RequestType.TERMINATE else None,
                        used=(UsedUnits(30),) if num else (),
                    )
                    t = time.perf_counter()
                    a = await engine.handle(req)
                    lat.append(time.perf_counter() - t)
                    assert a.result_code == 2001, a

        t0 = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(calls)))
        elapsed = time.perf_counter() - t0
        batches, ops = engine.batches, engine.batched_ops
        await engine.stop()
    lat.sort()
    return {
        "benchmark": "charging engine without Diameter",
        "database": "postgres" if url else "sqlite",
        "ccr": len(lat),
        "ccr_per_second": round(len(lat) / elapsed),
        "p50_ms": round(lat[len(lat) // 2] * 1000, 2),
        "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 2),
        "mean_batch": round(ops / max(batches, 1), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--accounts", type=int, default=100)
    ap.add_argument("--database-url")
    a = ap.parse_args()
    print(json.dumps(asyncio.run(run(a.calls, a.concurrency, a.accounts, a.database_url))))


if __name__ == "__main__":
    main()
