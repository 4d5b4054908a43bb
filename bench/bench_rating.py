"""Micro-benchmark of the rating hot path: ``TariffTable.match`` + ``affordable``.

Plain script, prints one JSON object:

    python bench/bench_rating.py [--prefixes 10000] [--calls 200000] [--seed 1]

A table of N distinct random prefixes (2..8 digits, half with an H2 night window, a quarter
with 60/60 or 30/6 increments) plus DEFAULT; each call normalises and matches a random
E.164 number (given as ``+…``), then computes the affordable seconds for a random balance at
a random instant of 2026 in Europe/Paris, once capped by a quota (as a CCR grant does) and
once uncapped.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from ocs.rating import DEFAULT_PREFIX, Tariff, TariffTable, affordable


def build_table(size: int, rng: random.Random) -> TariffTable:
    prefixes: set[str] = set()
    while len(prefixes) < size:
        prefixes.add(
            str(rng.randint(1, 9)) + "".join(rng.choices("0123456789", k=rng.randint(1, 7)))
        )
    rows = [Tariff(DEFAULT_PREFIX, 200)]
    for i, prefix in enumerate(sorted(prefixes)):
        block, step = [(1, 1), (1, 1), (60, 60), (30, 6)][i % 4]
        if i % 2:
            rows.append(
                Tariff(prefix, rng.randint(50, 900), 22, 6, rng.randint(10, 400), block, step)
            )
        else:
            rows.append(Tariff(prefix, rng.randint(50, 900), initial_block=block, increment=step))
    return TariffTable(rows)


def run(prefixes: int, calls: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    tz = ZoneInfo("Europe/Paris")
    t0 = time.perf_counter()
    table = build_table(prefixes, rng)
    build_s = time.perf_counter() - t0
    year = datetime(2026, 1, 1, tzinfo=UTC)
    numbers = ["+" + str(rng.randint(1, 9)) + str(rng.randrange(10**10)) for _ in range(calls)]
    starts = [year + timedelta(seconds=rng.randrange(365 * 86_400)) for _ in range(calls)]
    balances = [rng.randrange(0, 2_000_000) for _ in range(calls)]

    results: dict[str, object] = {}
    for label, limit in (("with_quota_limit_3600s", 3600), ("uncapped", None)):
        checksum = 0
        t0 = time.perf_counter()
        for number, start, units in zip(numbers, starts, balances, strict=True):
            tariff = table.match(number)
            seconds = affordable(tariff, units, start, tz, limit)
            checksum += seconds or 0
        elapsed = time.perf_counter() - t0
        results[label] = {
            "calls_per_second": round(calls / elapsed),
            "microseconds_per_call": round(elapsed / calls * 1e6, 2),
            "checksum": checksum,
        }

    t0 = time.perf_counter()
    for number in numbers:
        table.match(number)
    match_only = time.perf_counter() - t0
    results["match_only"] = {
        "calls_per_second": round(calls / match_only),
        "microseconds_per_call": round(match_only / calls * 1e6, 2),
    }
    return {
        "benchmark": "rating.match+affordable",
        "prefixes": len(table),
        "calls": calls,
        "table_build_seconds": round(build_s, 4),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefixes", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(run(args.prefixes, args.calls, args.seed), indent=2))


if __name__ == "__main__":
    main()
