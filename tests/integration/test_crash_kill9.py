"""`kill -9` of a loaded `ocs serve`, over and over, at random points of its batches and of
its Tcc sweep (issue 13): the ledger stays exact, nothing stays reserved once Tcc has run,
every session is closed exactly once, and every answer a client received is true in the
database (nothing is answered before it is durable, every answer is stored before it is
sent)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import sys
from pathlib import Path
from typing import Any

from ocs import accounts, ledger
from ocs.charging.state import answer_from_json
from ocs.credit_control import CCAnswer, RequestType
from ocs.demo import load_demo
from ocs.diameter import GyClient
from ocs.models import Cdr, CreditSession, LedgerEntry, LedgerKind
from ocs.settings_store import save_operator_settings
from tests.calls import ccr

ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("OCS_CRASH_KILLS", "20"))
CALLS = 120  # per life of the server: many are left open by the kill, for the sweep
NUMBERS = ("1001", "1002", "7100")


LISTENING = re.compile(rb"ocs\.serve: Diameter server on [\d.]+:(\d+)")


async def _start(env: dict[str, str]) -> tuple[asyncio.subprocess.Process, int]:
    """`ocs serve --only ocs` on a port it picks (port 0); returns it with its port."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ocs.cli",
        "serve",
        "--only",
        "ocs",
        cwd=ROOT,
        env={**env, "OCS_DIAMETER_PORT": "0"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group: kill -9 takes its workers too
    )
    assert proc.stderr is not None
    while line := await asyncio.wait_for(proc.stderr.readline(), 30):
        if m := LISTENING.search(line):
            # keep reading its log, so that it never blocks on a full pipe
            asyncio.get_running_loop().create_task(_drain(proc.stderr))
            return proc, int(m.group(1))
    raise AssertionError("ocs serve did not start")


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


def _kill9(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


class Load:
    """Calls over one connection until the server dies; remembers every answer received."""

    def __init__(self, port: int, tag: str, rng: random.Random) -> None:
        self.gy = GyClient("127.0.0.1", port, f"crash{tag}.test", "test", timeout=3.0)
        self.tag = tag
        self.rng = rng
        self.answers: list[tuple[str, int, int, CCAnswer]] = []

    async def _ask(self, req: Any) -> CCAnswer:
        answer = await self.gy.request(req)
        self.answers.append((req.session_id, int(req.request_type), req.request_number, answer))
        return answer

    async def call(self, i: int) -> None:
        sid = f"k{self.tag};{i}"
        number = NUMBERS[i % len(NUMBERS)]
        a = await self._ask(ccr(sid, RequestType.INITIAL, 0, sub=number, requested=1, mscc=True))
        if a.result_code != 2001:
            return
        for n in range(1, self.rng.choice([1, 2, 3])):
            await asyncio.sleep(self.rng.random() * 0.3)
            await self._ask(
                ccr(
                    sid,
                    RequestType.UPDATE,
                    n,
                    sub=number,
                    requested=1,
                    used=self.rng.choice([1, 3, 5]),
                    mscc=True,
                )
            )
        if self.rng.random() < 0.3:
            return  # a switch that goes silent: Tcc closes this one
        await self._ask(
            ccr(
                sid,
                RequestType.TERMINATE,
                9,
                sub=number,
                used=self.rng.choice([0, 2, 4]),
                mscc=True,
            )
        )

    async def run(self, calls: int) -> None:
        try:
            await self.gy.connect()
        except Exception:  # noqa: BLE001 -- the server may be mid-kill
            return
        await asyncio.gather(*(self.call(i) for i in range(calls)), return_exceptions=True)
        await self.gy.close()


async def test_kill9_in_a_loop_loses_nothing(db, tmp_path) -> None:
    await load_demo()
    await accounts.create_account("7100")
    initial: dict[str, int] = {}
    for number in NUMBERS:
        acc = await accounts.get_account(number)
        await ledger.adjust(acc.id, 40_000 - acc.balance, actor="test")
        initial[number] = 40_000
    # short grants and validity so that silent sessions are swept during the loop
    await save_operator_settings({"default_grant": 1, "validity_time": 1})
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OCS_DATA_DIR": str(tmp_path),
        "OCS_DATABASE_URL": db.database_url,
        "OCS_DIAMETER_ORIGIN_HOST": "ocs.test",
        "OCS_DIAMETER_REALM": "test",
        "OCS_TCC_GRACE": "0.2",
    }
    rng = random.Random(1309)
    loads: list[Load] = []
    for k in range(KILLS):
        proc, port = await _start(env)
        load = Load(port, f"{k}", rng)
        loads.append(load)
        runner = asyncio.create_task(load.run(CALLS))
        await asyncio.sleep(0.2 + rng.random() * 1.8)
        _kill9(proc)
        await proc.wait()
        await runner

    # one last start: the sweep settles what the dead processes left open
    proc, port = await _start(env)
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while await CreditSession.filter(state="open").count():
            assert asyncio.get_running_loop().time() < deadline, "sessions left open"
            await asyncio.sleep(0.2)
    finally:
        proc.terminate()
        await proc.wait()

    answered = [a for load in loads for a in load.answers]
    assert len(answered) > KILLS * 20, "the load really ran"
    # the ledger is exact and nothing stays reserved
    for number in NUMBERS:
        acc = await accounts.get_account(number)
        assert acc.reserved == 0, number
        assert await ledger.invariant_violations(acc.id) == []
        debits = sum(
            e.amount for e in await LedgerEntry.filter(account_id=acc.id, kind=LedgerKind.CALL)
        )
        assert acc.balance == initial[number] + debits >= 0
    # every session closed exactly once, its CDR matching its one CALL entry
    sessions = {s.session_id: s for s in await CreditSession.all()}
    cdrs: dict[str, list[Cdr]] = {}
    for c in await Cdr.all():
        cdrs.setdefault(c.session_id, []).append(c)
    calls: dict[str, list[int]] = {}
    for e in await LedgerEntry.filter(kind=LedgerKind.CALL):
        calls.setdefault(e.reference, []).append(-e.amount)
    assert all(s.state == "closed" for s in sessions.values())
    assert set(cdrs) == set(sessions)
    for sid, rows in cdrs.items():
        assert len(rows) == 1, sid
        assert calls.get(sid, []) == ([rows[0].cost] if rows[0].duration else []), sid
    assert not set(calls) - set(sessions)
    # every answer a client got is durable and is the stored one
    stored: dict[tuple[str, int, int], CCAnswer] = {}
    store = ledger.store()

    def read() -> Any:
        rows = yield ("SELECT session_id, request_type, request_number, answer FROM cc_answer", ())
        return rows

    for r in await store.run(read()):
        stored[(str(r[0]), int(r[1]), int(r[2]))] = answer_from_json(json.loads(r[3]))
    for sid, kind, number, answer in answered:
        got = stored.get((sid, kind, number))
        assert got is not None, (sid, kind, number)
        assert _wire(got) == _wire(answer), (sid, kind, number)
        if kind == RequestType.TERMINATE and answer.result_code == 2001:
            assert cdrs[sid][0].cost == answer.cost_units


def _wire(a: CCAnswer) -> tuple[Any, ...]:
    """What the client could see of an answer (money as it went on the wire)."""
    return (
        a.result_code,
        a.request_type,
        a.request_number,
        tuple((m.result_code, m.granted_time, m.final_unit_action) for m in a.mscc or ()),
        a.remaining_balance,
        a.cost_units,
    )


async def test_kill9_during_the_sweep_after_a_restart_leaves_nothing_open(db, tmp_path) -> None:
    """The report's reproduction: 400 calls opened, kill -9, restart, kill -9 while the
    first Tcc sweep after the restart works through them, restart again."""
    await load_demo()
    acc = await accounts.get_account("1001")
    await save_operator_settings({"default_grant": 1, "validity_time": 1})
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OCS_DATA_DIR": str(tmp_path),
        "OCS_DATABASE_URL": db.database_url,
        "OCS_DIAMETER_ORIGIN_HOST": "ocs.test",
        "OCS_DIAMETER_REALM": "test",
        "OCS_TCC_GRACE": "0.2",
    }
    proc, port = await _start(env)
    gy = GyClient("127.0.0.1", port, "opener.test", "test", timeout=10.0)
    await gy.connect()
    opened = await asyncio.gather(
        *(
            gy.request(ccr(f"o;{i}", RequestType.INITIAL, 0, requested=1, mscc=True))
            for i in range(400)
        )
    )
    assert all(a.result_code == 2001 for a in opened)
    await gy.close()
    _kill9(proc)
    await proc.wait()
    for offset in (1.05, 1.15, 1.3, 1.5):  # the sweep runs 1 s after the start
        proc, port = await _start(env)
        await asyncio.sleep(offset)
        _kill9(proc)
        await proc.wait()
    proc, port = await _start(env)
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while await CreditSession.filter(state="open").count():
            assert asyncio.get_running_loop().time() < deadline, "sessions left open"
            await asyncio.sleep(0.2)
    finally:
        proc.terminate()
        await proc.wait()
    acc = await accounts.get_account("1001")
    assert acc.reserved == 0 and await ledger.invariant_violations(acc.id) == []
    assert await Cdr.filter(session_id__startswith="o;").count() == 400
    assert await LedgerEntry.filter(reference__startswith="o;").count() == 400
