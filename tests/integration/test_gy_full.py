"""The whole OCS on the wire: Diameter server + charging engine + real database, driven by
our Gy client and by python-diameter's own Node (an independent implementation)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from diameter.message.avp.grouped import ImsInformation, ServiceInformation

from ocs import accounts, ledger
from ocs.charging.engine import ChargingEngine
from ocs.credit_control import (
    CCRequest,
    FinalUnitAction,
    MsccRequest,
    RequestType,
    ResultCode,
    SubscriptionId,
    SubscriptionIdType,
    UsedUnits,
)
from ocs.demo import load_demo
from ocs.diameter import DiameterServer, GyClient
from ocs.events import default_bus
from ocs.models import Cdr, LedgerEntry
from tests.integration.test_diameter_node import NodeClient, in_thread

CALLED = "sip:+33141587070@ims.example"


@pytest.fixture
async def ocs(db):
    await load_demo()
    engine = ChargingEngine(ledger.store(), default_bus(), tcc_interval=3600)
    await engine.start()
    server = DiameterServer(
        engine,
        host="127.0.0.1",
        port=0,
        origin_host="ocs.test",
        realm="test",
        allowed_peers=["*"],
        tw=5.0,
    )
    engine.set_gateway(server)
    await server.start()
    yield engine, server
    await server.stop()
    await engine.stop()


def client(server: DiameterServer, name: str = "pcscf.test") -> GyClient:
    return GyClient("127.0.0.1", server.bound_port, name, "test")


async def balance(number: str) -> tuple[int, int]:
    acc = await accounts.get_account(number)
    return acc.balance, acc.reserved


async def test_brochure_call_over_diameter(ocs) -> None:
    _engine, server = ocs
    async with client(server) as gy:
        sid = gy.new_session_id()
        i = await gy.initial(sid, "+5173", CALLED, 30)
        assert i.result_code == 2001 and i.mscc and i.mscc[0].granted_time == 30
        assert i.mscc[0].validity_time >= 30
        assert i.remaining_balance == 250000 - 6000
        u = await gy.update(sid, 30, 30)
        assert u.mscc and u.mscc[0].granted_time == 30
        u = await gy.update(sid, 30, 30)
        t = await gy.terminate(sid, 5)
        assert t.result_code == 2001
    assert await balance("1001") == (250000 - 13000, 0)
    cdr = await Cdr.get(session_id=sid)
    assert (cdr.duration, cdr.cost, cdr.calling, cdr.dialed) == (65, 13000, "5173", "33141587070")


async def test_refusals_over_diameter(ocs) -> None:
    _engine, server = ocs
    async with client(server) as gy:
        unknown = await gy.initial(gy.new_session_id(), "+999", CALLED, 30)
        assert unknown.result_code == ResultCode.USER_UNKNOWN
        acc = await accounts.get_account("1002")
        await ledger.adjust(acc.id, -250000, actor="test")
        broke = await gy.initial(gy.new_session_id(), "1002", CALLED, 30, mscc=False)
        assert broke.result_code == ResultCode.CREDIT_LIMIT_REACHED


async def test_final_unit_indication_over_diameter(ocs) -> None:
    _engine, server = ocs
    acc = await accounts.get_account("1001")
    await ledger.adjust(acc.id, -(250000 - 4000), actor="test")  # 20 s
    async with client(server) as gy:
        sid = gy.new_session_id()
        a = await gy.initial(sid, "+5173", CALLED, 60)
        assert a.mscc is not None
        m = a.mscc[0]
        assert (m.granted_time, m.final_unit_action) == (20, FinalUnitAction.TERMINATE)
        t = await gy.terminate(sid, 21)  # used slightly more than granted (as Kamailio does)
        assert t.result_code == 2001
    assert await balance("1001") == (0, 0)  # never below zero
    assert await ledger.invariant_violations(acc.id) == []


async def test_retransmission_on_the_wire_is_not_charged_twice(ocs) -> None:
    _engine, server = ocs
    async with client(server) as gy:
        sid = gy.new_session_id()
        await gy.initial(sid, "+5173", CALLED, 60)
        req = CCRequest(
            session_id=sid,
            origin_host="pcscf.test",
            origin_realm="test",
            request_type=RequestType.TERMINATE,
            request_number=1,
            subscription_ids=(SubscriptionId(SubscriptionIdType.END_USER_E164, "+5173"),),
            mscc=(MsccRequest(100, 1000, used=(UsedUnits(10),)),),
        )
        first = await gy.request(req)
        again = await gy.request(dataclasses.replace(req, retransmission=True))
        assert first == again and first.cost_units == 2000
    assert await LedgerEntry.filter(reference=sid).count() == 1
    assert await balance("1001") == (248000, 0)


async def test_two_hundred_sessions_one_account_several_connections(ocs) -> None:
    _engine, server = ocs
    acc = await accounts.get_account("1002")
    await ledger.adjust(acc.id, -(250000 - 150_000), actor="test")  # not enough for all
    clients = [client(server, f"pcscf{n}.test") for n in range(4)]
    for c in clients:
        await c.connect()

    async def call(n: int) -> tuple[int, int]:
        gy = clients[n % 4]
        sid = gy.new_session_id()
        a = await gy.initial(sid, "1002", "tel:0141587070", 20, mscc=n % 2 == 0)
        granted = (a.mscc[0].granted_time if a.mscc else a.granted_time) or 0
        if not granted:
            assert a.result_code == ResultCode.CREDIT_LIMIT_REACHED
            await gy.terminate(sid, 0)
            return 0, -1
        used = min(granted, 5 + n % 50)
        if granted and n % 3 == 0:
            u = await gy.update(sid, used, 30)
            more = (u.mscc[0].granted_time if u.mscc else u.granted_time) or 0
            t = await gy.terminate(sid, min(more, 7))
            return t.cost_units or 0, used + min(more, 7)
        t = await gy.terminate(sid, used)
        return t.cost_units or 0, used

    try:
        results = await asyncio.gather(*(call(n) for n in range(200)))
    finally:
        for c in clients:
            await c.close()
    charged = sum(c for c, _ in results)
    bal, reserved = await balance("1002")
    assert reserved == 0
    assert bal == 150_000 - charged >= 0
    assert await ledger.invariant_violations(acc.id) == []
    granted = [r for r in results if r[1] >= 0]
    assert 0 < len(granted) < 200  # some calls had to be refused: contention was real
    assert await Cdr.filter(account_number="1002").count() == len(granted)
    total_entries = sum(e.amount for e in await LedgerEntry.filter(account_id=acc.id))
    assert total_entries == bal


async def test_operator_kill_sends_asr_and_client_terminates(ocs) -> None:
    engine, server = ocs
    async with client(server) as gy:
        sid = gy.new_session_id()
        await gy.initial(sid, "+5173", CALLED, 60)
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def on_asr(session_id: str) -> None:
            await gy.terminate(session_id, 12, termination_cause=4)  # ADMINISTRATIVE
            ended.set_result(None)

        gy.on_asr(on_asr)
        assert await engine.kill(sid) == 2001
        await asyncio.wait_for(ended, 5)
    cdr = await Cdr.get(session_id=sid)
    assert (cdr.duration, cdr.cost, cdr.end_reason) == (12, 2400, "ADMINISTRATIVE")
    assert engine.live_sessions() == []


async def test_top_up_on_final_units_triggers_rar(ocs) -> None:
    _engine, server = ocs
    acc = await accounts.get_account("1001")
    await ledger.adjust(acc.id, -(250000 - 2000), actor="test")
    async with client(server) as gy:
        sid = gy.new_session_id()
        a = await gy.initial(sid, "+5173", CALLED, 60)
        assert a.mscc and a.mscc[0].final_unit_action is FinalUnitAction.TERMINATE
        rar: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        gy.on_rar(lambda session_id: rar.set_result(session_id))
        await ledger.credit(acc.id, 100_000, actor="test")  # announces credit.change
        assert await asyncio.wait_for(rar, 5) == sid
        u = await gy.update(sid, 10, 60)
        assert u.mscc and u.mscc[0].granted_time == 60 and u.mscc[0].final_unit_action is None
        await gy.terminate(sid, 5)


def node_ccr(cl: NodeClient, sid: str, rtype: int, number: int, **kw: object):
    """python-diameter's own CCR class, with IMS-Information as an IMS node sends it."""
    msg = cl.ccr(sid, rtype, number, **kw)  # type: ignore[arg-type]
    msg.service_information = ServiceInformation(
        ims_information=ImsInformation(called_party_address=CALLED)
    )
    return msg


async def test_python_diameter_node_against_full_ocs(ocs) -> None:
    _engine, server = ocs
    cl = NodeClient(server.bound_port)
    await in_thread(cl.start)
    try:
        sid = "node.test;full;1"
        i = await in_thread(cl.send, node_ccr(cl, sid, 1, 0))
        assert i.result_code == 2001
        mscc = i.multiple_services_credit_control[0]
        assert mscc.granted_service_unit.cc_time == 30
        u = await in_thread(cl.send, node_ccr(cl, sid, 2, 1, used=30))
        assert u.result_code == 2001
        t1 = await in_thread(cl.send, node_ccr(cl, sid, 3, 2, used=5, requested=False))
        t2 = await in_thread(cl.send, node_ccr(cl, sid, 3, 2, used=5, requested=False))
        assert t1.result_code == t2.result_code == 2001
        unknown = await in_thread(cl.send, node_ccr(cl, "node.test;full;2", 1, 0, subscriber="999"))
        assert unknown.result_code == 5030
        no_destination = await in_thread(cl.send, cl.ccr("node.test;full;3", 1, 0))
        assert no_destination.result_code == 5005
    finally:
        await in_thread(cl.stop)
    assert await LedgerEntry.filter(reference=sid).count() == 1
    assert await balance("1001") == (250000 - 35 * 200, 0)
