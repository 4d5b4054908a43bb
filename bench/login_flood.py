"""Diameter CCR latency during a password-guessing flood on the web login (issue 13, item 9).

Why this exists: scrypt used to run on the event loop, so each login attempt froze the
charging server for one hash (the issue measured a CCR p99 of 252 ms during a flood). This
runs the real product (`ocs serve --only ocs --only web`, SQLite, demo data) three ways, in
one run, and measures the CCR latency idle and under the same flood:

* ``on-loop``: scrypt on the event loop (the old code, reproduced by the harness) and no
  login limits: what the flood did before;
* ``executor``: scrypt in the worker pool, login limits lifted: the pool alone;
* ``throttled``: the product as shipped (pool + login limits): a flood from one address is
  refused with 429 after 20 attempts.

    python bench/login_flood.py --duration 8 --out bench/results/login_flood.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.gy_load import free_port, run_load, wait_port

ROOT = Path(__file__).resolve().parent.parent
TOKEN = re.compile(r'name="_csrf_token" value="([^"]+)"')

# Runs `ocs serve` with the variant's patches applied in the server process.
HARNESS = """
import sys
from ocs import admin_auth, login_throttle, operators
mode = sys.argv[1]
if mode in ("on-loop", "executor"):
    login_throttle.default.limits = (login_throttle.Limit("addr", 10**9, 900),
                                     login_throttle.Limit("user", 10**9, 900),
                                     login_throttle.Limit("global", 10**9, 60))
if mode == "on-loop":
    async def verify(record, password):  # the pre-fix behaviour: hash on the loop
        ok = admin_auth.verify_hash(record or operators._dummy(), password)
        return ok and record is not None
    operators.verify = verify
from ocs.cli import main
sys.exit(main(["serve", "--only", "ocs", "--only", "web"]))
"""


def start(mode: str) -> tuple[subprocess.Popen[bytes], int, int]:
    diameter, web = free_port(), free_port()
    env = {**os.environ, "OCS_DATA_DIR": tempfile.mkdtemp(prefix="ocs-loginflood-"),
           "OCS_DIAMETER_PORT": str(diameter), "OCS_WEB_PORT": str(web),
           "OCS_DIAMETER_REALM": "bench", "OCS_DIAMETER_ORIGIN_HOST": "ocs.bench"}
    ocs = [sys.executable, "-m", "ocs.cli"]
    for step in (["migrate"], ["demo"], ["account", "credit", "1001", "1000000000"]):
        subprocess.run(ocs + step, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*ocs, "operator", "add", "admin", "--role", "admin", "--password-stdin"],
                   cwd=ROOT, env=env, check=True, input=b"the real password\n",
                   stdout=subprocess.DEVNULL)
    proc = subprocess.Popen([sys.executable, "-c", HARNESS, mode], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(diameter)
    wait_port(web)
    time.sleep(0.5)
    return proc, diameter, web


async def flood(web: int, clients: int, stop: asyncio.Event) -> dict[str, int]:
    statuses: dict[str, int] = {}

    async def one(i: int) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web}", timeout=30) as c:
            page = await c.get("/login")
            match = TOKEN.search(page.text)
            assert match is not None
            form = {"_csrf_token": match.group(1), "username": f"guess{i}",
                    "password": "not the password"}
            while not stop.is_set():
                r = await c.post("/login", data=form)
                statuses[str(r.status_code)] = statuses.get(str(r.status_code), 0) + 1

    tasks = [asyncio.create_task(one(i)) for i in range(clients)]
    await stop.wait()
    await asyncio.gather(*tasks)
    return statuses


async def measure(mode: str, args: argparse.Namespace) -> dict[str, object]:
    proc, diameter, web = start(mode)
    try:
        load = {"connections": args.connections, "concurrency": args.concurrency,
                "duration": args.duration, "warmup": 1.0, "mscc": True, "realm": "bench"}
        idle = await run_load("127.0.0.1", diameter, **load)  # type: ignore[arg-type]
        stop = asyncio.Event()
        flooding = asyncio.create_task(flood(web, args.clients, stop))
        t0 = time.perf_counter()
        busy = await run_load("127.0.0.1", diameter, **load)  # type: ignore[arg-type]
        stop.set()
        statuses = await flooding
        elapsed = time.perf_counter() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {
        "idle": {k: idle[k] for k in ("ccr_per_s", "p50_ms", "p99_ms", "max_ms", "errors")},
        "flood": {k: busy[k] for k in ("ccr_per_s", "p50_ms", "p99_ms", "max_ms", "errors")},
        "p99_ratio_flood_vs_idle": round(float(busy["p99_ms"]) / max(float(idle["p99_ms"]),
                                                                     1e-9), 2),
        "login_attempts_per_s": round(sum(statuses.values()) / elapsed, 1),
        "login_statuses": statuses,
    }


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    results: dict[str, object] = {}
    for mode in args.modes:
        results[mode] = await measure(mode, args)
        print(mode, json.dumps(results[mode]), file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per phase")
    ap.add_argument("--connections", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=4, help="sessions in flight per conn")
    ap.add_argument("--clients", type=int, default=8, help="concurrent login guessers")
    ap.add_argument("--modes", nargs="+", default=["on-loop", "executor", "throttled"],
                    choices=["on-loop", "executor", "throttled"])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    results = asyncio.run(main_async(args))
    doc = {
        "bench": "login_flood",
        "what": "Diameter CCR latency (ocs serve, SQLite) idle and during a login flood",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "note": "2 shared cores; compare the modes of one run, not across runs",
        "settings": {"duration_s": args.duration, "connections": args.connections,
                     "concurrency_per_connection": args.concurrency,
                     "login_clients": args.clients},
        "results": results,
    }
    text = json.dumps(doc, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
