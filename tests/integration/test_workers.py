"""`ocs serve --workers N` on PostgreSQL: real OS processes sharing a Diameter port.

* An operator's kill, issued to the primary, reaches the worker process that holds the
  session's connection (ocs.relay), and a top-up made from the CLI re-authorises a session
  on final units in a worker.
* Two `ocs serve` processes with two workers each on one database, load spread over them,
  sessions moving between processes mid-call and retransmissions sent to the other one:
  the ledger stays exact, nothing stays reserved, one CDR per call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest

from ocs import accounts, ledger
from ocs.credit_control import CCAnswer, CCRequest, RequestType, ResultCode
from ocs.demo import load_demo
from ocs.diameter import GyClient
from ocs.models import Cdr, LedgerEntry, LedgerKind
from tests.calls import ccr
from tests.conftest import use_postgres

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]
CALLED = "sip:+33141587070@ims.example"
LISTENING = re.compile(r"\[(\d+)\] ocs\.serve: Diameter server on [\d.]+:(\d+)")
PEER_OPEN = re.compile(r"\[(\d+)\] ocs\.diameter\.server: peer (\S+) ")


class Serve:
    """A running `ocs serve --workers N` and what its processes log."""

    def __init__(self, proc: asyncio.subprocess.Process, data_dir: Path) -> None:
        self.proc = proc
        self.data_dir = data_dir
        self.lines: list[str] = []
        self.port = 0
        self.pids: list[int] = []  # primary first
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            self.lines.append(text)
            if m := LISTENING.search(text):
                self.pids.append(int(m.group(1)))
                self.port = int(m.group(2))

    async def wait_for(self, check: object, what: str, timeout: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not check():  # type: ignore[operator]
            if self.proc.returncode is not None:
                raise AssertionError("ocs serve exited:\n" + "\n".join(self.lines[-30:]))
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}:\n" + "\n".join(self.lines[-30:])
                )
            await asyncio.sleep(0.05)

    def holder(self, peer: str) -> int | None:
        """Pid of the process where `peer` opened its connection."""
        for line in self.lines:
            m = PEER_OPEN.search(line)
            if m and m.group(2) == peer:
                return int(m.group(1))
        return None

    async def cli(self, *args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ocs.cli",
            *args,
            cwd=ROOT,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode()

    env: dict[str, str] = {}


@asynccontextmanager
async def serve(database_url: str, tmp: Path, workers: int = 2) -> AsyncIterator[Serve]:
    data_dir = tmp / f"serve{random.randrange(10**9)}"
    data_dir.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OCS_DATA_DIR": str(data_dir),
        "OCS_DATABASE_URL": database_url,
        "OCS_DIAMETER_PORT": "0",
        "OCS_DIAMETER_ORIGIN_HOST": "ocs.test",
        "OCS_DIAMETER_REALM": "test",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ocs.cli",
        "serve",
        "--only",
        "ocs",
        "--only",
        "control",
        "--workers",
        str(workers),
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    s = Serve(proc, data_dir)
    s.env = env
    try:
        await s.wait_for(lambda: len(s.pids) >= workers, f"{workers} processes listening")
        yield s
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        with suppress(BaseException):
            await asyncio.wait_for(s._reader, 5)
        # the workers go with their primary
        for pid in s.pids[1:]:
            await s.wait_for(lambda pid=pid: not _alive(pid), f"worker {pid} to exit", 15)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def client_on_worker(s: Serve, clients: list[GyClient]) -> GyClient:
    """A connected client whose connection the kernel gave to a worker, not the primary."""
    for i in range(64):
        gy = GyClient("127.0.0.1", s.port, f"w{i}.{random.randrange(10**6)}.test", "test")
        await gy.connect()
        clients.append(gy)
        await s.wait_for(lambda gy=gy: s.holder(gy.origin_host) is not None, "peer log")
        if s.holder(gy.origin_host) != s.pids[0]:
            return gy
    raise AssertionError("64 connections all went to the primary")


@pytest.fixture
async def pg(db, tmp_path):
    if not use_postgres():
        pytest.skip("OCS processes sharing one database: PostgreSQL only")  # not-applicable
    await load_demo()
    return db.database_url, tmp_path


async def test_kill_and_topup_reach_the_worker_holding_the_connection(pg) -> None:
    url, tmp = pg
    clients: list[GyClient] = []
    async with serve(url, tmp) as s:
        try:
            gy = await client_on_worker(s, clients)
            aborted: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            reauth: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            gy.on_asr(lambda sid: aborted.done() or aborted.set_result(sid))
            gy.on_rar(lambda sid: reauth.done() or reauth.set_result(sid))

            # a session on final units: 1002 can pay 30 s of the 60 asked
            acc = await accounts.get_account("1002")
            await ledger.adjust(acc.id, -(250000 - 6000), actor="test")
            low = gy.new_session_id()
            a = await gy.initial(low, "1002", CALLED, 60)
            assert a.mscc and a.mscc[0].granted_time == 30 and a.mscc[0].final_unit_action == 0
            code, out = await s.cli("account", "credit", "1002", "100000")
            assert code == 0, out
            assert await asyncio.wait_for(reauth, 10) == low

            sid = gy.new_session_id()
            assert (await gy.initial(sid, "+5173", CALLED, 60)).result_code == 2001
            code, out = await s.cli("session", "kill", sid)
            assert code == 0 and "2001" in out, out
            assert await asyncio.wait_for(aborted, 10) == sid
            u = await gy.update(sid, 10, 60)
            assert u.result_code == ResultCode.CREDIT_LIMIT_REACHED
            t = await gy.terminate(sid, 0)
            assert t.result_code == 2001 and t.cost_units == 10 * 200
        finally:
            for c in clients:
                await c.close()


async def test_two_serves_with_workers_stay_exact(pg) -> None:
    url, tmp = pg
    rng = random.Random(4)
    numbers = ["1001", "1002", "7001"]
    await accounts.create_account("7001")
    ids = {}
    for n in numbers:
        acc = await accounts.get_account(n)
        await ledger.adjust(acc.id, 60_000 - acc.balance, actor="test")
        ids[n] = acc.id
    initial = {n: 60_000 for n in numbers}
    clients: list[GyClient] = []
    async with serve(url, tmp) as a, serve(url, tmp) as b:
        try:
            for s in (a, b):
                for i in range(4):
                    gy = GyClient("127.0.0.1", s.port, f"c{i}.{s.port}.test", "test")
                    await gy.connect()
                    clients.append(gy)
            await a.wait_for(lambda: len(a.pids) == 2 and len(b.pids) == 2, "both serves")

            async def send(req: CCRequest) -> CCAnswer:
                """To a random process; sometimes its copy (T flag) to another at once."""
                first = rng.choice(clients)
                if rng.random() < 0.3:
                    second = rng.choice([c for c in clients if c is not first])
                    copy = dataclasses.replace(req, retransmission=True)
                    x, y = await asyncio.gather(first.request(req), second.request(copy))
                    assert _same(x, y), (x, y)
                    return x
                return await first.request(req)

            async def call(i: int) -> tuple[str, bool]:
                sid = f"mv;{i}"
                number = numbers[i % len(numbers)]
                opened = await send(
                    ccr(sid, RequestType.INITIAL, 0, sub=number, requested=30, mscc=True)
                )
                if opened.result_code != 2001:
                    return sid, False
                used = 0
                for n in (1, 2):
                    await asyncio.sleep(rng.random() * 0.05)
                    step = rng.choice([10, 30, 45])
                    used += step
                    await send(
                        ccr(
                            sid,
                            RequestType.UPDATE,
                            n,
                            sub=number,
                            requested=30,
                            used=step,
                            mscc=True,
                        )
                    )
                last = rng.choice([0, 5, 40])
                t = await send(ccr(sid, RequestType.TERMINATE, 3, sub=number, used=last, mscc=True))
                assert t.result_code == 2001, t
                return sid, True

            results = await asyncio.gather(*(call(i) for i in range(150)))
        finally:
            for c in clients:
                await c.close()
    opened = {sid for sid, ok in results if ok}
    assert 20 < len(opened) < 150, "the accounts ran dry part-way: contention was real"
    for n in numbers:
        acc = await accounts.get_account(n)
        debits = await LedgerEntry.filter(account_id=ids[n], kind=LedgerKind.CALL)
        assert acc.reserved == 0
        assert acc.balance == initial[n] + sum(e.amount for e in debits) >= 0
        assert await ledger.invariant_violations(acc.id) == []
    cdrs = await Cdr.filter(session_id__startswith="mv;")
    assert sorted(c.session_id for c in cdrs) == sorted(opened)  # one per call, no more
    entries = await LedgerEntry.filter(reference__startswith="mv;", kind=LedgerKind.CALL)
    assert len({e.reference for e in entries}) == len(entries)  # one debit per call
    by_session = {e.reference: -e.amount for e in entries}
    assert all(c.cost == by_session.get(c.session_id, 0) for c in cdrs)


def _same(x: CCAnswer, y: CCAnswer) -> bool:
    """The two copies got the identical answer (`extra` holds per-message wire details)."""
    return dataclasses.replace(x, extra={}) == dataclasses.replace(y, extra={})
