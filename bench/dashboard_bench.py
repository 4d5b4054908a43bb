"""The dashboard page on 1,000,000 CDRs, SQLite and PostgreSQL side by side.

    python bench/dashboard_bench.py [--cdrs 1000000] [--accounts 1000] [--no-postgres]

Two layouts of the same number of CDRs:
  spread  over 90 days (~11,000 calls a day): the 14-day dashboard reads ~155,000 of them;
  dense   all within the dashboard's 14 days: the worst case, every CDR is aggregated.
CDR rows are bulk-loaded (sqlite3 executemany / PostgreSQL COPY) into a migrated database:
the dashboard only reads them, so the ledger path is not needed to create them. PostgreSQL
gets VACUUM ANALYZE after the load (what autovacuum does on a live system) so index-only
scans apply. Measured: GET /dashboard through the real app (logged-in session, template
rendering included) and the queries alone (`ocs.dashboard.load`), 15 runs each after 2
warm-ups; median and p95. `first_page_ms` is the very first load, which aggregates the 13
finished days once into `dashboard_day` (later loads read those and aggregate only the
current day). Goal: the page under 300 ms. Results:
bench/results/dashboard_bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from api.app import create_app  # noqa: E402
from ocs import admin_auth, dashboard, db  # noqa: E402
from ocs.config import Settings  # noqa: E402
from ocs.events import EventBus  # noqa: E402
from ocs.runtime import ServeContext  # noqa: E402
from ocs.settings_store import load_operator_settings  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "dashboard_bench.json"
PG_ADMIN = os.environ.get("OCS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
PREFIXES = ["DEFAULT", "38", "42", "33", "44", "49", "1", "212", "221", "225"]
RUNS = 15
PASSWORD = "bench password"


def cdr_rows(n: int, accounts: int, days: int, now: datetime) -> list[tuple[Any, ...]]:
    rng = random.Random(7)
    span = days * 86400
    rows = []
    for i in range(n):
        at = now - timedelta(seconds=rng.randrange(span))
        duration = 0 if rng.random() < 0.12 else rng.randrange(1, 900)
        prefix = PREFIXES[min(int(rng.expovariate(0.5)), len(PREFIXES) - 1)]
        acc = 1 + i % accounts
        rows.append((acc, str(100000 + acc), f"s{i}", "", "", "0141587070", at, None,
                     duration, duration * 200, prefix, "CCR-T", at))
    return rows


COLUMNS = ("account_id", "account_number", "session_id", "call_id", "calling", "dialed",
           "started_at", "connect_delay", "duration", "cost", "tariff_prefix", "end_reason",
           "created_at")


def load_sqlite(path: Path, rows: list[tuple[Any, ...]], accounts: int) -> None:
    conn = sqlite3.connect(path)
    now = str(datetime.now(UTC))
    conn.executemany(
        "INSERT INTO account (number, name, language, status, balance, reserved, created_at,"
        " updated_at) VALUES (?, ?, 'FR', 'active', ?, 0, ?, ?)",
        [(str(100000 + a), f"N{a}", (a * 7919) % 500_000, now, now)
         for a in range(1, accounts + 1)],
    )
    conn.executemany(
        f"INSERT INTO cdr ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})",
        [tuple(str(v) if isinstance(v, datetime) else v for v in r) for r in rows],
    )
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


async def load_postgres(dsn: str, rows: list[tuple[Any, ...]], accounts: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        now = datetime.now(UTC)
        await conn.copy_records_to_table(
            "account", columns=["number", "name", "language", "status", "balance", "reserved",
                                "created_at", "updated_at"],
            records=[(str(100000 + a), f"N{a}", "FR", "active", (a * 7919) % 500_000, 0, now,
                      now) for a in range(1, accounts + 1)])
        await conn.copy_records_to_table("cdr", columns=list(COLUMNS), records=rows)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_ms": round(statistics.median(ordered) * 1000, 1),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 1),
            "min_ms": round(ordered[0] * 1000, 1)}


async def measure(settings: Settings) -> dict[str, Any]:
    async with db.database(settings):
        await admin_auth.set_password(PASSWORD)
        ops = await load_operator_settings()
        app = create_app(ServeContext(settings=settings, bus=EventBus()))
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:
            page = await c.get("/login")
            token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
            assert token is not None
            r = await c.post("/login", data={"_csrf_token": token.group(1),
                                             "password": PASSWORD, "next": "/dashboard"})
            assert r.status_code == 303, r.text
            page_times = []
            first_ms = 0.0
            for i in range(RUNS + 2):
                t0 = time.perf_counter()
                r = await c.get("/dashboard")
                elapsed = time.perf_counter() - t0
                assert r.status_code == 200 and 'id="calls-total"' in r.text
                if i == 0:
                    first_ms = round(elapsed * 1000, 1)  # fills the finished-day cache
                if i >= 2:
                    page_times.append(elapsed)
            calls = re.search(r'id="calls-total">(\d+)<', r.text)
        query_times = []
        for i in range(RUNS + 2):
            t0 = time.perf_counter()
            d = await dashboard.load(14, ops.tz, ops.low_credit_threshold)
            if i >= 2:
                query_times.append(time.perf_counter() - t0)
        return {"first_page_ms": first_ms, "page": stats(page_times),
                "queries": stats(query_times),
                "calls_in_window": int(calls.group(1)) if calls else None,
                "low_balance_rows": len(d.low_balance)}


async def run_one(layout: str, database: str, n: int, accounts: int) -> dict[str, Any]:
    """One layout on one database (its own process: Tortoise keeps one backend per process)."""
    days = {"spread": 90, "dense": 14}[layout]
    rows = cdr_rows(n, accounts, days, datetime.now(UTC))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if database == "sqlite":
            settings = Settings(data_dir=folder, database_url=f"sqlite://{folder / 'o.sqlite3'}")
            await db.migrate(settings)
            t0 = time.perf_counter()
            load_sqlite(folder / "o.sqlite3", rows, accounts)
            loaded = time.perf_counter() - t0
            return {"load_seconds": round(loaded, 1), **await measure(settings)}
        import asyncpg

        dbname = f"ocs_bench_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'CREATE DATABASE "{dbname}"')
        await admin.close()
        base = PG_ADMIN.rsplit("/", 1)[0]
        try:
            pg = Settings(data_dir=folder,
                          database_url=f"{base.replace('postgresql://', 'postgres://')}/{dbname}")
            await db.migrate(pg)
            t0 = time.perf_counter()
            await load_postgres(f"{base}/{dbname}", rows, accounts)
            loaded = time.perf_counter() - t0
            return {"load_seconds": round(loaded, 1), **await measure(pg)}
        finally:
            admin = await asyncpg.connect(PG_ADMIN)
            await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cdrs", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--layouts", default="spread,dense")
    parser.add_argument("--worker", nargs=2, metavar=("LAYOUT", "DATABASE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        layout, database = args.worker
        print(json.dumps(await run_one(layout, database, args.cdrs, args.accounts)))
        return
    result: dict[str, Any] = {
        "bench": "dashboard", "cdrs": args.cdrs, "accounts": args.accounts,
        "dashboard_days": 14, "goal_page_ms": 300, "runs": RUNS,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "note": "shared 2-core machine: absolute times are noisy; both databases in one run",
        "layouts": {},
    }
    databases = ["sqlite"] if args.no_postgres else ["sqlite", "postgres"]
    for layout in args.layouts.split(","):
        result["layouts"][layout] = {"days_of_cdrs": {"spread": 90, "dense": 14}[layout]}
        for database in databases:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--cdrs", str(args.cdrs), "--accounts",
                str(args.accounts), "--worker", layout, database,
                stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"{layout}/{database} failed")
            result["layouts"][layout][database] = json.loads(out.decode().splitlines()[-1])
            print(layout, database, result["layouts"][layout][database], flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {RESULTS}")


if __name__ == "__main__":
    asyncio.run(main())
