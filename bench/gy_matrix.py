"""The Gy comparison table in one run: the stock python-diameter Node against `ocs serve` on
SQLite and PostgreSQL, on one hot account and on 2,000 accounts, at 4 x 50 and 4 x 8
sessions in flight (independent load client, I:U:U:T, Session-Ids never reused).

    python bench/gy_matrix.py [--duration 10] [--out bench/results/gy_matrix.json]

Prints a table and writes JSON with every run and its ratio to the Node of the same
concurrency. `ocs serve` runs with its defaults (PostgreSQL: one worker per core).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gy_load import measure_spawned  # noqa: E402

ROWS = [
    ("node", 1, "stock python-diameter Node, fixed CCA, no charging"),
    ("ocs-sqlite", 1, "ocs serve, SQLite, one account"),
    ("ocs-sqlite", 2000, "ocs serve, SQLite, 2,000 accounts"),
    ("ocs-postgres", 1, "ocs serve, PostgreSQL, one account"),
    ("ocs-postgres", 2000, "ocs serve, PostgreSQL, 2,000 accounts"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--concurrency", type=int, action="append",
                    help="sessions in flight per connection (repeatable; default 50 and 8)")
    ap.add_argument("--workers", type=int, default=None, help="ocs serve --workers")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gy_matrix.json")
    args = ap.parse_args()
    levels = args.concurrency or [50, 8]
    runs: list[dict[str, object]] = []
    for concurrency in levels:
        node_rate = 0.0
        for kind, accounts, label in ROWS:
            ns = argparse.Namespace(
                connections=args.connections, concurrency=concurrency,
                duration=args.duration, warmup=args.warmup, no_mscc=False,
                accounts=accounts, workers=args.workers,
            )
            res = measure_spawned(kind, ns)
            rate = float(res["ccr_per_s"])  # type: ignore[arg-type]
            if kind == "node":
                node_rate = rate
            res.update(row=label, kind=kind,
                       ratio_to_node=round(rate / node_rate, 2) if node_rate else None)
            runs.append(res)
            print(f"{label:<44} 4x{concurrency:<3} {rate:>8.0f} CCR/s"
                  f"  p50 {res['p50_ms']:>7.1f} ms  p99 {res['p99_ms']:>7.1f} ms"
                  f"  x{res['ratio_to_node']}  errors {res['errors']}", flush=True)
    report = {
        "benchmark": "gy_matrix",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(),
                    "load_average_at_end": os.getloadavg()},
        "mix": "I:U:U:T, MSCC, fresh Session-Ids",
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
