"""Our GyClient against our DiameterServer over real sockets: calls, pipelining, RAR/ASR,
watchdog, DPR, and isolation of a broken connection from the healthy ones."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable

import pytest

from ocs.credit_control import (
    CCAnswer,
    CCRequest,
    FinalUnitAction,
    RequestedAction,
    RequestType,
    ResultCode,
)
from ocs.diameter import (
    CapabilitiesRefused,
    DiameterServer,
    GyClient,
    PeerGone,
    RequestTimeout,
    UnknownSession,
)
from ocs.diameter import codec as c
from ocs.diameter.memory import MemoryHandler
from ocs.diameter.peer import ClientPeer, LocalIdentity


@pytest.fixture
def handler() -> MemoryHandler:
    return MemoryHandler(balances={"5173": 100_000, "1002": 250_000})


@pytest.fixture
async def server(handler: MemoryHandler) -> AsyncIterator[DiameterServer]:
    srv = DiameterServer(handler, host="127.0.0.1", port=0, origin_host="ocs.test",
                         realm="test", allowed_peers=["ivr.test", "sw1.test", "sw2.test"],
                         tw=30.0, answer_timeout=1.0)
    await srv.start()
    yield srv
    await srv.stop(grace=0.2)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition with a generous deadline (no fixed sleeps before asserts)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def client(srv: DiameterServer, name: str = "ivr.test", **kw: object) -> GyClient:
    return GyClient("127.0.0.1", srv.bound_port, name, "test", **kw)  # type: ignore[arg-type]


async def test_a_whole_call_with_mscc(server: DiameterServer, handler: MemoryHandler) -> None:
    async with client(server) as gy:
        sid = gy.new_session_id()
        a = await gy.initial(sid, "5173", "0141587070", requested_time=30)
        assert a.result_code == 2001 and a.mscc is not None
        assert a.mscc[0].granted_time == 30 and a.mscc[0].rating_group == 100
        assert a.remaining_balance == 100_000
        a = await gy.update(sid, used_time=30)
        assert a.request_number == 1 and a.remaining_balance == 94_000
        a = await gy.terminate(sid, used_time=5)
        assert a.request_type is RequestType.TERMINATE and a.remaining_balance == 93_000
        assert a.cost_units == 35 * 200  # the whole session
    reqs = handler.requests
    assert [r.request_number for r in reqs] == [0, 1, 2]
    assert reqs[0].called_party == "0141587070" and reqs[0].subscription_ids[0].data == "5173"


async def test_top_level_units_and_final_unit_indication(server: DiameterServer,
                                                         handler: MemoryHandler) -> None:
    handler.balances["5173"] = 200 * 12  # 12 seconds left
    async with client(server) as gy:
        sid = gy.new_session_id()
        a = await gy.initial(sid, "5173", "0141587070", requested_time=30, mscc=False)
        assert a.mscc is None and a.granted_time == 12
        assert a.final_unit_action is FinalUnitAction.TERMINATE and a.validity_time == 60
        a = await gy.update(sid, used_time=12)
        assert a.result_code == ResultCode.CREDIT_LIMIT_REACHED
        await gy.terminate(sid, used_time=0)


async def test_kamailio_style_client_without_auth_application_id(
        server: DiameterServer, handler: MemoryHandler) -> None:
    async with client(server, vendor_specific_app=True,
                      service_context_id="ext.01.001.8.32260@3gpp.org") as gy:
        a = await gy.initial(gy.new_session_id(), "+335173", "sip:+33141587070@ims.test")
        assert a.result_code == 5030  # "+335173" is not an account in the memory handler
        assert handler.requests[-1].service_context_id == "ext.01.001.8.32260@3gpp.org"


async def test_event_check_balance_and_price_enquiry(server: DiameterServer) -> None:
    async with client(server) as gy:
        a = await gy.event("1002", RequestedAction.CHECK_BALANCE)
        assert (a.result_code, a.remaining_balance, a.currency_code) == (2001, 250_000, 978)
        a = await gy.event("1002", RequestedAction.PRICE_ENQUIRY, called="3000",
                           requested_time=65)
        assert a.cost_units == 13_000 and a.unit_price_exponent == -4


async def test_pipelined_requests_over_one_connection_answer_out_of_order(
        server: DiameterServer, handler: MemoryHandler) -> None:
    order: list[str] = []
    inner = handler.handle
    slow_arrived = asyncio.Event()
    release_slow = asyncio.Event()

    async def slow_first(req: CCRequest) -> CCAnswer:
        if req.session_id.endswith(";slow"):
            slow_arrived.set()
            await release_slow.wait()  # held until the others were answered
        order.append(req.session_id)
        return await inner(req)

    handler.handle = slow_first  # type: ignore[method-assign,assignment]
    handler.default_balance = 10**9
    async with client(server) as gy:
        slow = asyncio.create_task(gy.initial("s;slow", "5173", "1"))
        await asyncio.wait_for(slow_arrived.wait(), 5)
        fast = [gy.initial(f"s;{i}", "5173", "1") for i in range(200)]
        answers = await asyncio.gather(*fast)
        assert not slow.done()  # later requests were answered first
        assert all(a.result_code == 2001 for a in answers)
        release_slow.set()
        assert (await slow).result_code == 2001
    assert order[-1] == "s;slow"


async def test_handler_failure_is_5012_and_connection_survives(
        server: DiameterServer, handler: MemoryHandler) -> None:
    async def broken(req: CCRequest) -> CCAnswer:
        raise RuntimeError("database down")

    good = handler.handle
    handler.handle = broken  # type: ignore[method-assign,assignment]
    async with client(server) as gy:
        a = await gy.initial(gy.new_session_id(), "5173", "1")
        assert a.result_code == ResultCode.UNABLE_TO_COMPLY
        handler.handle = good  # type: ignore[method-assign,assignment]
        a = await gy.initial(gy.new_session_id(), "5173", "1")
        assert a.result_code == 2001


async def test_rar_and_asr_reach_the_client_callbacks(server: DiameterServer) -> None:
    seen: list[tuple[str, str]] = []

    async def on_asr(sid: str) -> None:
        seen.append(("ASR", sid))

    async with client(server) as gy:
        gy.on_rar(lambda sid: seen.append(("RAR", sid)))
        gy.on_asr(on_asr)
        sid = gy.new_session_id()
        await gy.initial(sid, "5173", "1")
        assert await server.send_rar(sid) == 2001
        assert await server.send_asr(sid) == 2001
        await until(lambda: len(seen) == 2)
        assert seen == [("RAR", sid), ("ASR", sid)]
        await gy.terminate(sid, 1)
        with pytest.raises(UnknownSession):
            await server.send_rar(sid)  # session over: nobody to send to


async def test_rar_to_a_vanished_peer_raises_peer_gone(server: DiameterServer) -> None:
    gy = client(server)
    await gy.connect()
    sid = gy.new_session_id()
    await gy.initial(sid, "5173", "1")
    await gy.close()
    await until(lambda: server.open_peers == [])
    with pytest.raises(PeerGone):
        await server.send_asr(sid)


async def test_rar_unanswered_times_out(server: DiameterServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
    peer = ClientPeer(LocalIdentity("sw1.test", "test"), "test")
    writer.write(peer.start())
    peer.receive_data(await reader.read(4096))
    from ocs.credit_control import SubscriptionId, SubscriptionIdType

    _, ccr = peer.build_ccr(CCRequest("raw;1", "sw1.test", "test", RequestType.INITIAL, 0,
                                      (SubscriptionId(SubscriptionIdType.END_USER_E164,
                                                      "5173"),), requested=True))
    writer.write(ccr)
    await reader.read(4096)
    with pytest.raises(RequestTimeout):
        await server.send_rar("raw;1")  # we never answer it
    writer.close()


async def test_unknown_client_is_refused(server: DiameterServer) -> None:
    with pytest.raises(CapabilitiesRefused) as exc:
        await client(server, "intruder.test").connect()
    assert exc.value.result_code == 3010


async def test_dpr_from_client_is_answered_and_closes(server: DiameterServer) -> None:
    gy = client(server)
    await gy.connect()
    assert server.open_peers == ["ivr.test"]
    await gy.close()
    await until(lambda: server.open_peers == [])


async def test_server_stop_sends_dpr(handler: MemoryHandler) -> None:
    srv = DiameterServer(handler, host="127.0.0.1", port=0, origin_host="ocs.test",
                         realm="test")
    await srv.start()
    gy = client(srv)
    await gy.connect()
    await srv.stop(grace=1.0)
    await until(lambda: not gy.is_open)  # the DPR closed it
    with pytest.raises(PeerGone):
        await gy.initial(gy.new_session_id(), "5173", "1")


async def test_watchdog_both_ways_with_short_tw(handler: MemoryHandler) -> None:
    srv = DiameterServer(handler, host="127.0.0.1", port=0, origin_host="ocs.test",
                         realm="test", tw=0.3)
    await srv.start()
    try:
        async with client(srv, tw=0.5) as gy:
            await asyncio.sleep(1.5)  # time passes: several DWR/DWA rounds, no CCR traffic
            assert gy.is_open and srv.open_peers == ["ivr.test"]
            a = await gy.initial(gy.new_session_id(), "5173", "1")
            assert a.result_code == 2001
        # a silent peer that never answers DWR is dropped after ~2 Tw
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.bound_port)
        writer.write(ClientPeer(LocalIdentity("silent.test", "test"), "test").start())
        await reader.read(4096)  # CEA
        assert srv.open_peers == ["silent.test"]
        dwr = await asyncio.wait_for(reader.read(4096), 2)
        assert c.parse_header(dwr).code == 280
        assert await asyncio.wait_for(reader.read(4096), 2) == b""  # closed by the server
        assert srv.open_peers == []
        writer.close()
    finally:
        await srv.stop(grace=0.2)


async def test_cer_timeout_closes_a_mute_connection(handler: MemoryHandler) -> None:
    srv = DiameterServer(handler, host="127.0.0.1", port=0, origin_host="ocs.test",
                         realm="test", tw=0.3)
    await srv.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.bound_port)
        assert await asyncio.wait_for(reader.read(100), 2) == b""
        writer.close()
    finally:
        await srv.stop(grace=0.1)


@pytest.mark.parametrize("garbage", [
    struct.pack(">I", (1 << 24) | 23) + bytes(19),  # unframeable length
    struct.pack(">I", (7 << 24) | 20) + bytes(16),  # bad version
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not Diameter at all
])
async def test_malformed_stream_on_one_connection_does_not_disturb_another(
        server: DiameterServer, garbage: bytes) -> None:
    async with client(server) as healthy:
        sid = healthy.new_session_id()
        await healthy.initial(sid, "5173", "1")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
        bad = ClientPeer(LocalIdentity("sw2.test", "test"), "test")
        writer.write(bad.start())
        await reader.read(4096)
        writer.write(garbage)
        assert await asyncio.wait_for(reader.read(4096), 2) == b""  # that one is closed
        writer.close()
        a = await healthy.update(sid, 10)
        assert a.result_code == 2001
        assert server.open_peers == ["ivr.test"]


async def test_truncated_avp_is_answered_and_the_connection_kept(
        server: DiameterServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
    peer = ClientPeer(LocalIdentity("sw1.test", "test"), "test")
    writer.write(peer.start())
    peer.receive_data(await reader.read(4096))
    _, ccr = peer.build_ccr(CCRequest("raw;2", "sw1.test", "test", RequestType.EVENT, 0,
                                      requested_action=RequestedAction.CHECK_BALANCE))
    bad = bytearray(ccr)
    bad[25:28] = (5000).to_bytes(3, "big")  # Session-Id AVP runs past the end
    writer.write(bytes(bad))
    data = await asyncio.wait_for(reader.read(4096), 2)
    avps = c.walk(data, 20, len(data))
    rc = c.find(avps, c.K_RESULT_CODE)
    assert rc is not None and c.u32(data, rc) == 5014
    writer.write(ccr)  # the same connection still works
    data = await asyncio.wait_for(reader.read(4096), 2)
    rc = c.find(c.walk(data, 20, len(data)), c.K_RESULT_CODE)
    assert rc is not None and c.u32(data, rc) == 5030  # empty Subscription-Id: unknown user
    writer.close()


async def test_many_peers_at_once(server: DiameterServer, handler: MemoryHandler) -> None:
    handler.default_balance = 10**9
    handler.balances.clear()
    srv_any = DiameterServer(handler, host="127.0.0.1", port=0, origin_host="ocs.test",
                             realm="test")
    await srv_any.start()
    try:
        clients = [GyClient("127.0.0.1", srv_any.bound_port, f"sw{i}.test", "test")
                   for i in range(20)]
        await asyncio.gather(*(g.connect() for g in clients))
        assert len(srv_any.open_peers) == 20

        async def call(g: GyClient, n: int) -> int:
            sid = f"{g.origin_host};{n}"
            await g.initial(sid, g.origin_host, "1")
            await g.update(sid, 30)
            return (await g.terminate(sid, 3)).result_code

        codes = await asyncio.gather(*(call(g, n) for g in clients for n in range(10)))
        assert set(codes) == {2001}
        await asyncio.gather(*(g.close() for g in clients))
    finally:
        await srv_any.stop(grace=0.2)


async def test_server_is_the_peer_gateway(server: DiameterServer) -> None:
    from ocs.credit_control import CreditControlHandler, PeerGateway

    gateway: PeerGateway = server  # checked by mypy: the charging engine's view
    handler: CreditControlHandler = MemoryHandler()
    assert gateway is server and handler is not None
    with pytest.raises(UnknownSession):
        await gateway.send_rar("never-seen")


async def test_client_auto_reconnects_after_server_restart(handler: MemoryHandler) -> None:
    srv = DiameterServer(handler, host="127.0.0.1", port=0, origin_host="ocs.test",
                         realm="test")
    await srv.start()
    port = srv.bound_port
    gy = GyClient("127.0.0.1", port, "ivr.test", "test", auto_reconnect=True)
    await gy.connect()
    assert (await gy.event("5173")).result_code == 2001
    await srv.stop(grace=0.5)
    await until(lambda: not gy.is_open)
    with pytest.raises(PeerGone):  # nobody listening
        await gy.event("5173")
    srv2 = DiameterServer(handler, host="127.0.0.1", port=port, origin_host="ocs.test",
                          realm="test")
    await srv2.start()
    try:
        assert (await gy.event("5173")).result_code == 2001
        await gy.close()
    finally:
        await srv2.stop(grace=0.2)


async def test_backpressure_when_the_handler_is_slow(handler: MemoryHandler) -> None:
    """With the handler slower than the client, the server stops reading once
    `max_inflight` CCRs of the connection are in the handler; it reads on when half are
    done. Requests written one at a time (one per read) show the bound exactly."""
    handler.default_balance = 10**9
    inner = handler.handle
    inflight, peak = 0, 0
    gate = asyncio.Event()

    async def slow(req: CCRequest) -> CCAnswer:
        nonlocal inflight, peak
        inflight += 1
        peak = max(peak, inflight)
        try:
            await gate.wait()
            return await inner(req)
        finally:
            inflight -= 1

    handler.handle = slow  # type: ignore[method-assign,assignment]
    srv = DiameterServer(handler, host="127.0.0.1", port=0, origin_host="ocs.test",
                         realm="test", max_inflight=8)
    await srv.start()
    try:
        async with GyClient("127.0.0.1", srv.bound_port, "ivr.test", "test") as gy:
            calls = []
            for i in range(40):  # one CCR per write, each read by the server on its own
                calls.append(asyncio.create_task(gy.event(str(i))))
                await asyncio.sleep(0.002)  # paces the writes (no assert depends on time)
            await until(lambda: inflight == 8)
            for _ in range(50):  # the server stopped reading: nothing more arrives
                await asyncio.sleep(0.002)
                assert inflight == 8
            gate.set()
            answers = await asyncio.gather(*calls)
            assert {a.result_code for a in answers} == {2001}
            assert peak == 8
    finally:
        await srv.stop(grace=0.2)
