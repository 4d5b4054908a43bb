"""Gy load generator: pipelined CCR-I/U/U/T sessions over N connections.

Why this exists: the performance budget (DESIGN.md) asks for >= 2,000 CCR/s with p99 < 50 ms
from the full server; this measures CCR/s and latency percentiles against any Gy server,
and can spawn our server (in-memory handler) and the stock python-diameter `Node`
baseline to compare both in one run.

    python bench/gy_load.py --host 127.0.0.1 --port 3868 --duration 10 --out bench/results/x.json
    python bench/gy_load.py --spawn both --duration 10 --out bench/results/protocol.json
    python bench/gy_load.py --spawn full --concurrency 8 --out bench/results/gy_full.json

`--spawn full` runs the real product (`ocs serve --only ocs`, demo data) on SQLite, then on a
fresh PostgreSQL database, then the stock python-diameter Node baseline, in one run.
`--accounts N` spreads the sessions over N accounts (created with plenty of credit; 1 = the
demo's account 1001, found by its caller ID); `--workers N` is `ocs serve --workers N`.
`bench/gy_matrix.py` runs the whole comparison table in one go.

Every session is I (request 30 s) -> U (used 30) -> U (used 30) -> T (used 10), so the mix is
I:U:T = 1:2:1; `--concurrency` sessions are in flight per connection (requests pipelined
on the connection), a finished session is replaced at once (closed loop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ocs.credit_control import (
    CCRequest,
    MsccRequest,
    RequestType,
    SubscriptionId,
    SubscriptionIdType,
    UsedUnits,
)
from ocs.diameter import codec as c
from ocs.diameter.ccr import encode_ccr
from ocs.diameter.peer import ClientPeer, LocalIdentity, PeerOpened

RUN_ID = f"{int(time.time())}-{os.getpid()}"  # Session-Ids never repeat across runs
STEPS = (
    (RequestType.INITIAL, None),
    (RequestType.UPDATE, 30),
    (RequestType.UPDATE, 30),
    (RequestType.TERMINATE, 10),
)


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    done: int = 0
    errors: int = 0
    codes: dict[int, int] = field(default_factory=dict)
    recording: bool = False


BENCH_ACCOUNT_BASE = 300000  # --accounts N: numbers 300000 .. 300000+N-1


class LoadConnection(asyncio.Protocol):
    def __init__(self, name: str, concurrency: int, stats: Stats, mscc: bool,
                 realm: str, accounts: int = 1) -> None:
        self.name = name
        self.accounts = accounts
        self.concurrency = concurrency
        self.stats = stats
        self.mscc = mscc
        self.peer = ClientPeer(LocalIdentity(name, "bench"), realm)
        self.framer = c.Framer()
        self.transport: asyncio.Transport | None = None
        self.opened = asyncio.get_running_loop().create_future()
        self.inflight: dict[int, tuple[float, str, int]] = {}  # hbh -> (t0, session, step)
        self.sessions = 0
        self.hbh = 1
        self.running = False
        self.realm = realm

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
        st = self.stats
        for msg in self.framer.feed(data):
            h = c.parse_header(msg)
            if h.is_request:  # DWR from the server
                assert self.transport is not None
                self.transport.write(c.encode_message(
                    0, h.code, h.app_id, h.hbh, h.e2e,
                    c.avp_u32(268, 2001) + self.peer.enc.identity))
                continue
            entry = self.inflight.pop(h.hbh, None)
            if entry is None:
                continue
            t0, sid, step = entry
            rc_avp = c.find(c.walk(msg, 20, h.length), c.K_RESULT_CODE)
            rc = c.u32(msg, rc_avp) if rc_avp else 0
            if st.recording:
                st.latencies.append(now - t0)
                st.done += 1
                st.codes[rc] = st.codes.get(rc, 0) + 1
                if rc != 2001:
                    st.errors += 1
            if not self.running:
                continue
            if step + 1 < len(STEPS):
                self.send(sid, step + 1)
            else:
                self.new_session()

    def new_session(self) -> None:
        self.sessions += 1
        self.send(f"{self.name};{RUN_ID};{self.sessions}", 0)

    def subscriber(self, sid: str) -> SubscriptionId:
        if self.accounts <= 1:
            return SubscriptionId(SubscriptionIdType.END_USER_E164, "5173")
        n = int(sid.rsplit(";", 1)[1]) * 7919 + hash(self.name)
        number = str(BENCH_ACCOUNT_BASE + n % self.accounts)
        return SubscriptionId(SubscriptionIdType.END_USER_PRIVATE, number)

    def send(self, sid: str, step: int) -> None:
        rtype, used = STEPS[step]
        units = (UsedUnits(used),) if used is not None else ()
        requested = rtype is not RequestType.TERMINATE
        req = CCRequest(
            sid, self.name, "bench", rtype, step,
            (self.subscriber(sid),),
            called_party="0141587070",
            mscc=(MsccRequest(100, 1000, requested, 30 if requested else None, units),)
            if self.mscc else None,
            requested=requested and not self.mscc, requested_time=30 if requested else None,
            used=units if not self.mscc else ())
        self.hbh += 1
        hbh = self.hbh
        data = encode_ccr(req, hbh=hbh, e2e=hbh, destination_realm=self.realm)
        self.inflight[hbh] = (time.perf_counter(), sid, step)
        assert self.transport is not None
        self.transport.write(data)

    def start(self) -> None:
        self.running = True
        for _ in range(self.concurrency):
            self.new_session()


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, round(p / 100 * (len(sorted_values) - 1)))
    return sorted_values[k]


async def run_load(host: str, port: int, *, connections: int, concurrency: int,
                   duration: float, warmup: float, mscc: bool, realm: str,
                   accounts: int = 1) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    stats = Stats()
    conns: list[LoadConnection] = []
    for i in range(connections):
        name = f"load{i}.bench"

        def factory(name: str = name) -> LoadConnection:
            return LoadConnection(name, concurrency, stats, mscc, realm, accounts)

        _, proto = await loop.create_connection(factory, host, port)
        conns.append(proto)
    await asyncio.wait_for(asyncio.gather(*(cn.opened for cn in conns)), 10)
    for cn in conns:
        cn.start()
    await asyncio.sleep(warmup)
    stats.recording = True
    t0 = time.perf_counter()
    await asyncio.sleep(duration)
    stats.recording = False
    elapsed = time.perf_counter() - t0
    for cn in conns:
        cn.running = False
    await asyncio.sleep(0.5)
    for cn in conns:
        if cn.transport is not None:
            cn.transport.close()
    lat = sorted(stats.latencies)
    return {
        "ccr_per_s": round(stats.done / elapsed, 1),
        "requests": stats.done,
        "errors": stats.errors,
        "result_codes": {str(k): v for k, v in sorted(stats.codes.items())},
        "p50_ms": round(percentile(lat, 50) * 1000, 3),
        "p99_ms": round(percentile(lat, 99) * 1000, 3),
        "max_ms": round((lat[-1] if lat else 0) * 1000, 3),
        "elapsed_s": round(elapsed, 2),
        "connections": connections,
        "concurrency_per_connection": concurrency,
        "accounts": accounts,
        "mscc": mscc,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start")


PG_DSN = os.environ.get("OCS_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _fresh_postgres() -> tuple[str, str]:
    """A new PostgreSQL database for one run: (URL for ocs, database name)."""
    import uuid

    import asyncpg

    name = f"ocs_gybench_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await asyncpg.connect(PG_DSN)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()

    asyncio.run(create())
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgres://")
    return f"{base}/{name}", name


def _drop_postgres(name: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(PG_DSN)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    asyncio.run(drop())


async def _bench_accounts(database_url: str, data_dir: str, n: int) -> None:
    """Accounts BENCH_ACCOUNT_BASE.. with credit that never runs dry (not measured)."""
    from ocs import db, ledger
    from ocs.config import Settings
    from ocs.models import Account, LedgerKind

    settings = Settings(data_dir=Path(data_dir), database_url=database_url)
    async with db.database(settings):
        numbers = [str(BENCH_ACCOUNT_BASE + i) for i in range(n)]
        await Account.bulk_create([Account(number=x, name=x) for x in numbers], batch_size=1000)
        ids = [a.id for a in await Account.filter(number__in=numbers)]
        for first in range(0, len(ids), 500):
            await ledger.store().run_batch(
                [ledger.post(i, 10**12, LedgerKind.CREDIT, actor="bench")
                 for i in ids[first:first + 500]])


def spawn_ocs(database: str, port: int, accounts: int = 1,
              workers: int | None = None) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """The real product (`ocs serve --only ocs`: charging engine + Diameter) with demo data
    and enough credit on 1001 (or on `accounts` accounts) that the run never runs dry."""
    import tempfile

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "OCS_DATA_DIR": tempfile.mkdtemp(prefix="ocs-gybench-"),
           "OCS_DIAMETER_PORT": str(port), "OCS_DIAMETER_REALM": "bench",
           "OCS_DIAMETER_ORIGIN_HOST": "ocs.bench"}
    if database == "postgres":
        env["OCS_DATABASE_URL"], env["OCS_BENCH_PG_NAME"] = _fresh_postgres()
    ocs = [sys.executable, "-m", "ocs.cli"]
    for step in (["migrate"], ["demo"], ["account", "credit", "1001", "1000000000"]):
        subprocess.run(ocs + step, cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)
    if accounts > 1:
        # in its own process: Tortoise keeps per-process state of the database it first met
        url = env.get("OCS_DATABASE_URL") or f"sqlite://{env['OCS_DATA_DIR']}/ocs.sqlite3"
        subprocess.run([sys.executable, __file__, "--make-accounts", str(accounts),
                        "--database-url", url, "--data-dir", env["OCS_DATA_DIR"]],
                       cwd=root, check=True)
    serve = [*ocs, "serve", "--only", "ocs"]
    if workers is not None:
        serve += ["--workers", str(workers)]
    # OCS_BENCH_SERVE_LOG=path keeps what the server logs (batch sizes at its stop)
    log_path = os.environ.get("OCS_BENCH_SERVE_LOG")
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(serve, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    wait_port(port)
    time.sleep(0.5)
    return proc, env


def spawn(kind: str, port: int, connections: int) -> subprocess.Popen[bytes]:
    root = Path(__file__).resolve().parent.parent
    if kind == "memory":
        cmd = [sys.executable, "-m", "ocs.diameter.memory", "--port", str(port),
               "--origin-host", "ocs.bench", "--realm", "bench"]
    else:
        peers = ",".join(f"load{i}.bench" for i in range(connections))
        cmd = [sys.executable, str(root / "bench" / "node_baseline.py"), "--port", str(port),
               "--peers", peers]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port)
    time.sleep(0.3 if kind == "memory" else 1.0)
    return proc


def measure_spawned(kind: str, args: argparse.Namespace) -> dict[str, object]:
    port = free_port()
    env: dict[str, str] = {}
    if kind.startswith("ocs-"):
        proc, env = spawn_ocs(kind.removeprefix("ocs-"), port, args.accounts, args.workers)
    else:
        proc = spawn(kind, port, args.connections)
    try:
        res = asyncio.run(run_load("127.0.0.1", port, connections=args.connections,
                                   concurrency=args.concurrency, duration=args.duration,
                                   warmup=args.warmup, mscc=not args.no_mscc,
                                   realm="bench", accounts=args.accounts))
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        if "OCS_BENCH_PG_NAME" in env:
            _drop_postgres(env["OCS_BENCH_PG_NAME"])
    res["server"] = {
        "memory": "ocs.diameter (in-memory handler)",
        "node": "python-diameter Node, fixed CCA",
        "ocs-sqlite": "ocs serve (charging engine + Diameter), SQLite",
        "ocs-postgres": "ocs serve (charging engine + Diameter), PostgreSQL",
    }[kind]
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=3868)
    ap.add_argument("--realm", default="bench", help="Destination-Realm to send")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=32, help="sessions in flight per conn")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--no-mscc", action="store_true", help="top-level RSU/USU instead of MSCC")
    ap.add_argument("--accounts", type=int, default=1,
                    help="spread sessions over N accounts (spawned servers create them)")
    ap.add_argument("--workers", type=int, default=None,
                    help="ocs serve --workers N for spawned servers (default: its own)")
    ap.add_argument("--make-accounts", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--database-url", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", help=argparse.SUPPRESS)
    ap.add_argument("--spawn", choices=["memory", "node", "both", "full", "ocs-sqlite",
                                        "ocs-postgres"],
                    help="start the server(s) locally instead of targeting host:port")
    ap.add_argument("--out", type=Path, help="write the JSON result here")
    args = ap.parse_args(argv)
    if args.make_accounts:
        asyncio.run(_bench_accounts(args.database_url, args.data_dir, args.make_accounts))
        return 0

    result: dict[str, object] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "mix": "I:U:T = 1:2:1",
    }
    if args.spawn:
        kinds = {
            "both": ["memory", "node"],
            "full": ["ocs-sqlite", "ocs-postgres", "node"],
        }.get(args.spawn, [args.spawn])
        runs = {k: measure_spawned(k, args) for k in kinds}
        result["runs"] = runs
        node = runs.get("node", {}).get("ccr_per_s")
        for k, r in runs.items():
            if k != "node" and isinstance(node, float) and node:
                result[f"ratio_{k}_over_node"] = round(float(r["ccr_per_s"]) / node, 2)
    else:
        result["target"] = f"{args.host}:{args.port}"
        result["run"] = asyncio.run(run_load(
            args.host, args.port, connections=args.connections, concurrency=args.concurrency,
            duration=args.duration, warmup=args.warmup, mscc=not args.no_mscc,
            realm=args.realm, accounts=args.accounts))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
