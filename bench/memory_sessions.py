"""Memory of `ocs serve` holding many open sessions, and CCR-U latency at that size.

    python bench/memory_sessions.py [--sessions 100000] [--database sqlite|postgres]

Opens `--sessions` credit-control sessions (CCR-I, never terminated) over 4 connections,
then reports the resident memory of the whole server (every process of it) and the latency
of CCR-Us on a sample of the open sessions, at 4 x 50 in flight. Result JSON in
bench/results/memory_sessions.json (one entry per database). The budget: < 1 GB for 100,000.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gy_load import RUN_ID, _drop_postgres, free_port, percentile, spawn_ocs  # noqa: E402
from ocs.credit_control import (  # noqa: E402
    CCRequest,
    MsccRequest,
    RequestType,
    SubscriptionId,
    SubscriptionIdType,
    UsedUnits,
)
from ocs.diameter import codec as c  # noqa: E402
from ocs.diameter.ccr import encode_ccr  # noqa: E402
from ocs.diameter.peer import ClientPeer, LocalIdentity, PeerOpened  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "memory_sessions.json"
SUBSCRIBER = (SubscriptionId(SubscriptionIdType.END_USER_E164, "5173"),)


class Pipe(asyncio.Protocol):
    """One Diameter connection sending CCRs with at most `window` in flight."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.peer = ClientPeer(LocalIdentity(name, "bench"), "bench")
        self.framer = c.Framer()
        self.opened = asyncio.get_running_loop().create_future()
        self.waiting: dict[int, tuple[float, asyncio.Future[float]]] = {}
        self.hbh = 0
        self.codes: dict[int, int] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.peer.start())

    def data_received(self, data: bytes) -> None:
        if not self.opened.done():
            for ev in self.peer.receive_data(data):
                if isinstance(ev, PeerOpened):
                    self.opened.set_result(None)
            return
        now = time.perf_counter()
        for msg in self.framer.feed(data):
            h = c.parse_header(msg)
            if h.is_request:
                self.transport.write(c.encode_message(
                    0, h.code, h.app_id, h.hbh, h.e2e,
                    c.avp_u32(268, 2001) + self.peer.enc.identity))
                continue
            entry = self.waiting.pop(h.hbh, None)
            if entry is None:
                continue
            rc_avp = c.find(c.walk(msg, 20, h.length), c.K_RESULT_CODE)
            rc = c.u32(msg, rc_avp) if rc_avp else 0
            self.codes[rc] = self.codes.get(rc, 0) + 1
            entry[1].set_result(now - entry[0])

    def send(self, req: CCRequest) -> asyncio.Future[float]:
        self.hbh += 1
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[self.hbh] = (time.perf_counter(), fut)
        self.transport.write(encode_ccr(req, hbh=self.hbh, e2e=self.hbh,
                                        destination_realm="bench"))
        return fut


def ccr(sid: str, kind: RequestType, number: int, used: int | None) -> CCRequest:
    units = (UsedUnits(used),) if used else ()
    return CCRequest(sid, "x", "bench", kind, number, SUBSCRIBER, called_party="0141587070",
                     mscc=(MsccRequest(100, 1000, True, 30, units),))


async def drive(pipes: list[Pipe], requests: list[CCRequest], window: int) -> list[float]:
    sem = asyncio.Semaphore(window * len(pipes))
    out: list[float] = []

    async def one(i: int, req: CCRequest) -> None:
        async with sem:
            out.append(await pipes[i % len(pipes)].send(req))

    await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
    return out


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return round(total / 1024, 1)


def server_pids(root: int) -> list[int]:
    """The server and the worker processes it started."""
    pids = [root]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == root:
                pids.append(int(entry.name))
    return pids


async def measure(port: int, pid: int, sessions: int, sample: int) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    pipes = []
    for i in range(4):
        _, p = await loop.create_connection(lambda i=i: Pipe(f"load{i}.bench"), "127.0.0.1", port)
        pipes.append(p)
    await asyncio.gather(*(p.opened for p in pipes))
    pids = server_pids(pid)
    idle = rss_mib(pids)
    sids = [f"mem;{RUN_ID};{i}" for i in range(sessions)]
    t0 = time.perf_counter()
    await drive(pipes, [ccr(s, RequestType.INITIAL, 0, None) for s in sids], 50)
    opening = time.perf_counter() - t0
    await asyncio.sleep(2)
    held = rss_mib(pids)
    chosen = random.Random(1).sample(sids, min(sample, len(sids)))
    lat = sorted(await drive(pipes, [ccr(s, RequestType.UPDATE, 1, 30) for s in chosen], 50))
    codes: dict[int, int] = {}
    for p in pipes:
        for k, v in p.codes.items():
            codes[k] = codes.get(k, 0) + v
        p.transport.close()
    return {
        "sessions_open": sessions,
        "server_processes": len(pids),
        "rss_idle_mib": idle,
        "rss_with_sessions_mib": held,
        "bytes_per_session": round((held - idle) * 2**20 / sessions),
        "opening_ccr_per_s": round(sessions / opening),
        "ccr_u_sample": len(chosen),
        "ccr_u_p50_ms": round(percentile(lat, 50) * 1000, 2),
        "ccr_u_p99_ms": round(percentile(lat, 99) * 1000, 2),
        "result_codes": {str(k): v for k, v in sorted(codes.items())},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=100_000)
    ap.add_argument("--sample", type=int, default=5000)
    ap.add_argument("--database", action="append", choices=["sqlite", "postgres"])
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    runs: dict[str, object] = {}
    for database in args.database or ["sqlite", "postgres"]:
        port = free_port()
        proc, env = spawn_ocs(database, port)
        try:
            runs[database] = asyncio.run(measure(port, proc.pid, args.sessions, args.sample))
        finally:
            proc.terminate()
            proc.wait(30)
            if "OCS_BENCH_PG_NAME" in env:
                _drop_postgres(env["OCS_BENCH_PG_NAME"])
        print(database, json.dumps(runs[database]), flush=True)
    report = {
        "benchmark": "memory_sessions",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
