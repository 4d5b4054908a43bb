"""Ledger concurrency strategies on PostgreSQL, side by side in one run.

N OS processes x S sessions reserve/settle on ONE account (the worst case: every
operation contends for the same row), with each strategy in turn, alternating twice.
Writes bench/results/ledger_concurrency.json: ops/s per strategy and their ratio.

    python bench/ledger_concurrency.py [--dsn postgresql://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "integration" / "ledger_worker.py"
sys.path.insert(0, str(ROOT))

from ocs.config import Settings  # noqa: E402
from ocs.db import migrate  # noqa: E402


async def setup(dsn: str) -> tuple[str, str]:
    name = f"ocs_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = dsn.rsplit("/", 1)[0].replace("postgresql://", "postgres://") + "/" + name
    await migrate(Settings(data_dir=Path("/tmp"), database_url=url))
    return name, url


async def reset_account(url: str) -> int:
    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://"))
    await conn.execute("TRUNCATE ledger_entry, account RESTART IDENTITY CASCADE")
    aid = await conn.fetchval(
        "INSERT INTO account (number, name, language, status, balance, reserved, created_at,"
        " updated_at) VALUES ('1', '1', 'FR', 'active', 1000000000, 0, now(), now()) RETURNING id"
    )
    await conn.execute(
        "INSERT INTO ledger_entry (account_id, kind, amount, balance_after, reference, actor,"
        " note, dialed, duration, created_at) VALUES ($1, 'CREDIT', 1000000000, 1000000000,"
        " '', 'bench', '', '', 0, now())",
        aid,
    )
    await conn.close()
    return int(aid)


def run_workers(url: str, aid: int, procs: int, sessions: int, rounds: int, strategy: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                url,
                str(aid),
                str(sessions),
                str(rounds),
                strategy,
                f"b{n}",
            ],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        for n in range(procs)
    ]
    outs = [json.loads(c.communicate()[0]) for c in children]
    ops = sum(o["ops"] for o in outs)
    return ops / max(o["seconds"] for o in outs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--sessions", type=int, default=25)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ledger_concurrency.json"))
    args = ap.parse_args()
    name, url = asyncio.run(setup(args.dsn))
    results: dict[str, list[float]] = {"conditional": [], "lock": []}
    try:
        for _ in range(2):
            for strategy in ("conditional", "lock"):
                aid = asyncio.run(reset_account(url))
                results[strategy].append(
                    run_workers(url, aid, args.procs, args.sessions, args.rounds, strategy)
                )
    finally:

        async def drop() -> None:
            conn = await asyncpg.connect(args.dsn)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()

        asyncio.run(drop())
    best = {k: max(v) for k, v in results.items()}
    report = {
        "benchmark": "ledger reserve+settle, one contended account, PostgreSQL",
        "processes": args.procs,
        "sessions_per_process": args.sessions,
        "ops_per_second": results,
        "best_ops_per_second": best,
        "conditional_over_lock": round(best["conditional"] / best["lock"], 3),
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
