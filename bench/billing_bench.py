"""Billing run and CDR CSV export on a large SQLite database: time and peak memory.

    python bench/billing_bench.py [--cdrs 100000] [--accounts 1000] [--also 10000]

Setup (not measured) writes the calls through the real charging path (CCR-I then CCR-T
through a `ChargingEngine`, `tests/calls.py`): one CALL entry + one CDR per call, plus one
CREDIT per account. Each
measured phase then runs in a fresh subprocess on a copy of that database, so the peak RSS
(`resource.getrusage(...).ru_maxrss`) is the phase's own; each phase runs twice, once
plain (time, RSS) and once under tracemalloc (peak Python allocations). `--also N` repeats
the whole thing with N calls to show that memory does not grow with the table.
Results: bench/results/billing_bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ocs import billing, cdr, db, ledger, tariffs  # noqa: E402
from ocs.config import Settings  # noqa: E402
from ocs.models import Account  # noqa: E402
from tests.calls import Call, CallRecorder  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "billing_bench.json"


def settings_for(folder: Path) -> Settings:
    return Settings(data_dir=folder, database_url=f"sqlite://{folder / 'ocs.sqlite3'}")


async def setup(folder: Path, n_cdrs: int, n_accounts: int) -> dict[str, Any]:
    settings = settings_for(folder)
    await db.migrate(settings)
    t0 = time.perf_counter()
    async with db.database(settings):
        rows = [Account(number=f"{100000 + i}", name=f"{100000 + i}") for i in range(n_accounts)]
        await Account.bulk_create(rows, batch_size=1000)
        ids = [a.id for a in await Account.all().order_by("id")]
        numbers = {a.id: a.number for a in await Account.all()}
        store = ledger.store()
        from ocs.models import LedgerKind

        await store.run_batch(
            [ledger.post(aid, 10**12, LedgerKind.CREDIT, actor="bench") for aid in ids]
        )
        await tariffs.import_tariffs([tariffs.parse_tariff({"prefix": "DEFAULT", "h1_rate": 200})])
        start = datetime(2026, 1, 1, tzinfo=UTC)
        async with CallRecorder(store) as recorder:
            for first in range(0, n_cdrs, 1000):
                chunk = [
                    Call(numbers[ids[i % len(ids)]], f"33{i % 1000:04d}{i % 97:03d}",
                         1 + i % 300, call_id=f"A{i:017d}", connect_delay=i % 7)
                    for i in range(first, min(n_cdrs, first + 1000))
                ]
                await recorder.calls(chunk, at=start + timedelta(seconds=10 * first))
    return {"setup_seconds": round(time.perf_counter() - t0, 2)}


async def phase(folder: Path, name: str) -> dict[str, Any]:
    settings = settings_for(folder)
    async with db.database(settings):
        t0 = time.perf_counter()
        if name == "billing":
            result = await billing.run_billing(settings)
            out: dict[str, Any] = {
                "accounts": result.accounts, "lines": result.lines,
                "file_bytes": result.path.stat().st_size,
            }
        else:
            target = folder / "cdrs.csv"
            size = rows = 0
            with open(target, "wb") as fh:
                async for chunk in cdr.export_csv_with_settings():
                    fh.write(chunk)
                    size += len(chunk)
                    rows += chunk.count(b"\n")
            out = {"rows": rows - 1, "file_bytes": size}
        out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def run_phase_subprocess(snapshot: Path, name: str, trace: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="billbench-") as tmp:
        work = Path(tmp)
        for f in snapshot.iterdir():
            if f.is_file():
                shutil.copy(f, work / f.name)
        cmd = [sys.executable, __file__, "--phase", name, "--dir", str(work)]
        if trace:
            cmd.append("--trace")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def phase_main(folder: Path, name: str, trace: bool) -> None:
    if trace:
        tracemalloc.start()
    out = asyncio.run(phase(folder, name))
    if trace:
        _, peak = tracemalloc.get_traced_memory()
        out["tracemalloc_peak_mib"] = round(peak / 2**20, 2)
    out["ru_maxrss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out))


def measure(n_cdrs: int, n_accounts: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="billbench-setup-") as tmp:
        snap = Path(tmp)
        info = asyncio.run(setup(snap, n_cdrs, n_accounts))
        info["db_mib"] = round((snap / "ocs.sqlite3").stat().st_size / 2**20, 1)
        # A baseline process that only connects: what Python + the libraries cost.
        base = run_phase_subprocess(snap, "noop", trace=False)
        out: dict[str, Any] = {"cdrs": n_cdrs, "accounts": n_accounts, **info,
                               "baseline_rss_mib": base["ru_maxrss_mib"]}
        for name in ("billing", "export"):
            plain = run_phase_subprocess(snap, name, trace=False)
            traced = run_phase_subprocess(snap, name, trace=True)
            out[name] = {**plain, "tracemalloc_peak_mib": traced["tracemalloc_peak_mib"],
                         "seconds_under_tracemalloc": traced["seconds"]}
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cdrs", type=int, default=100_000)
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--also", type=int, action="append", default=[],
                    help="also measure with this many CDRs (memory should not grow)")
    ap.add_argument("--phase", choices=["billing", "export", "noop"])
    ap.add_argument("--dir")
    ap.add_argument("--trace", action="store_true")
    args = ap.parse_args()
    if args.phase:
        if args.phase == "noop":
            async def noop() -> None:
                async with db.database(settings_for(Path(args.dir))):
                    pass
            asyncio.run(noop())
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(json.dumps({"ru_maxrss_mib": round(rss, 1)}))
            return
        phase_main(Path(args.dir), args.phase, args.trace)
        return
    runs = [measure(n, args.accounts) for n in [*args.also, args.cdrs]]
    report = {
        "benchmark": "billing_bench",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "database": "sqlite (WAL, synchronous=NORMAL)",
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
