"""The Diameter server against hostile connections, over real sockets (issue 13).

- item 6: the 16,000 Subscription-Id CCR is answered at once and nobody else waits;
- item 7: connections that never send a CER are bounded in number and in buffered bytes,
  and cannot lock a real peer out;
- item 17: `ocs serve` starts with a peer list that does not name the built-in IVR.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator

import pytest

from ocs.config import Settings
from ocs.credit_control import CCRequest, MsccRequest, RequestType, SubscriptionId
from ocs.credit_control import SubscriptionIdType as T
from ocs.diameter import DiameterServer, GyClient
from ocs.diameter import codec as c
from ocs.diameter.memory import MemoryHandler
from ocs.diameter.peer import ClientPeer, LocalIdentity

DEADLINE = 20.0


async def until(cond: object, what: str, timeout: float = DEADLINE) -> None:
    """Poll `cond()` until true, failing after a generous deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():  # type: ignore[operator]
        if loop.time() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def server() -> AsyncIterator[DiameterServer]:
    srv = DiameterServer(MemoryHandler(balances={"5173": 100_000}), host="127.0.0.1", port=0,
                         origin_host="ocs.test", realm="test", allowed_peers=["sw.test"],
                         max_connections=20, pre_cer_max=4096, max_buffered=40_000)
    await srv.start()
    yield srv
    await srv.stop(grace=0.2)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            data += chunk
    return data


@pytest.mark.parametrize("partial", [100, 3000], ids=["number-bound", "byte-bound"])
async def test_connections_without_cer_are_bounded_in_number_and_bytes(
        server: DiameterServer, partial: int) -> None:
    """60 connections each send the start of a 4 KiB CER and stop. Small pieces: the
    connection bound (20) drops the oldest; large ones: the byte bound (40,000) does first.
    Either way the oldest go, the totals stay bounded, and a real switch still gets in."""
    peak = 0
    conns = []
    for _ in range(60):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
        writer.write(c.encode_header(4096, c.FLAG_R, c.CMD_CER, 0, 1, 1) + bytes(partial))
        await writer.drain()
        conns.append((reader, writer))
        await asyncio.sleep(0.005)
        peak = max(peak, server.buffered)
        assert server.connection_count <= 20
    await until(lambda: server.connection_count <= 20 and server.buffered <= 40_000,
                "the server to settle")
    assert peak <= 40_000
    closed = await asyncio.gather(*(asyncio.wait_for(read_until_closed(r), DEADLINE)
                                    for r, _ in conns[:40]))
    assert closed == [b""] * 40  # the oldest were dropped without a word
    if partial == 100:
        assert server.over_buffer == 0 and server.connection_count == 20
    else:
        assert server.over_buffer > 0 and server.connection_count <= 40_000 // 3020
    # a real switch still gets in: the oldest connection without CER makes room
    async with GyClient("127.0.0.1", server.bound_port, "sw.test", "test") as gy:
        a = await gy.initial(gy.new_session_id(), "5173", "0141587070", requested_time=30)
        assert a.result_code == 2001
        assert server.connection_count <= 20
    for _, w in conns:
        w.close()


async def test_connections_without_cer_cannot_push_an_open_peer_out(
        server: DiameterServer) -> None:
    """The buffer budget is full of half-sent CERs; a real peer's CCR arrives in two
    pieces. The half-sent CERs make room, the peer's connection stays."""
    hostile = []
    for _ in range(13):
        _, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
        writer.write(c.encode_header(4096, c.FLAG_R, c.CMD_CER, 0, 1, 1) + bytes(3000))
        hostile.append(writer)
    await until(lambda: server.buffered == 13 * 3020, "the half-sent CERs to be held")
    async with GyClient("127.0.0.1", server.bound_port, "sw.test", "test") as gy:
        peer = gy._peer
        proto = gy._proto
        assert proto is not None and proto.transport is not None
        req = CCRequest("split;1", "sw.test", "test", RequestType.INITIAL, 0,
                        subscription_ids=(SubscriptionId(T.END_USER_E164, "5173"),),
                        called_party="0141587070", mscc=(MsccRequest(100, 1000, True, 30),))
        hbh, data = peer.build_ccr(req)
        padded = c.encode_message(data[4], 272, 4, hbh, 1,
                                  data[20:] + c.avp(99_999, bytes(4000), m=False))
        fut = asyncio.get_running_loop().create_future()
        gy._waiting[hbh] = fut
        proto.transport.write(padded[:3500])
        await until(lambda: server.buffered <= 40_000 and server.over_buffer > 0,
                    "room to be made")
        proto.transport.write(padded[3500:])
        ev = await asyncio.wait_for(fut, DEADLINE)
        assert ev.answer is not None and ev.answer.result_code == 2001
    for w in hostile:
        w.close()


async def test_a_header_longer_than_the_pre_cer_limit_closes_at_once(
        server: DiameterServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
    writer.write(c.encode_header(1 << 20, c.FLAG_R, c.CMD_CER, 0, 1, 1))
    await writer.drain()
    assert await asyncio.wait_for(read_until_closed(reader), DEADLINE) == b""
    await until(lambda: server.connection_count == 0, "the connection to be forgotten")
    assert server.buffered == 0
    writer.close()


async def test_when_every_slot_holds_an_open_peer_new_connections_are_refused() -> None:
    srv = DiameterServer(MemoryHandler(), host="127.0.0.1", port=0, origin_host="ocs.test",
                         realm="test", allowed_peers=["*"], max_connections=3)
    await srv.start()
    clients = [GyClient("127.0.0.1", srv.bound_port, f"sw{i}.test", "test") for i in range(3)]
    try:
        for gy in clients:
            await gy.connect()
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.bound_port)
        assert await asyncio.wait_for(read_until_closed(reader), DEADLINE) == b""
        writer.close()
        assert srv.refused >= 1 and len(srv.open_peers) == 3
    finally:
        for gy in clients:
            await gy.close()
        await srv.stop(grace=0.2)


def sixteen_thousand_ids_ccr(peer: ClientPeer) -> bytes:
    req = CCRequest("hostile;1", "sw.test", "test", RequestType.INITIAL, 0,
                    subscription_ids=(SubscriptionId(T.END_USER_E164, "5173"),),
                    mscc=(MsccRequest(100, 1000, True, 30),))
    _, head = peer.build_ccr(req)
    subs = b"".join(c.avp_group(c.K_SUBSCRIPTION_ID, c.avp_u32(c.K_SUBSCRIPTION_ID_TYPE, 0),
                                c.avp_str(c.K_SUBSCRIPTION_ID_DATA, f"+33{i:09d}"))
                    for i in range(16_000))
    ims = c.avp_group(873, c.avp_group(876, subs, vendor=c.VENDOR_3GPP), vendor=c.VENDOR_3GPP)
    h = c.parse_header(head)
    return c.encode_message(h.flags, h.code, h.app_id, h.hbh, h.e2e, head[20:] + ims)


async def test_the_16000_id_ccr_is_answered_and_the_others_are_served(
        server: DiameterServer) -> None:
    """Once this froze the event loop for 18 s. Now it gets 5015 on its own connection,
    which stays open, while another switch's calls go on."""
    handler = server.handler
    assert isinstance(handler, MemoryHandler)
    peer = ClientPeer(LocalIdentity("sw.test", "test"), "test")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
    writer.write(peer.start())
    framer = c.Framer()

    async def next_message() -> bytes:
        while True:
            got = framer.feed(await asyncio.wait_for(reader.read(65536), DEADLINE))
            if got:
                assert len(got) == 1
                return got[0]

    cea = await next_message()
    assert c.u32(cea, c.find(c.walk(cea, 20, len(cea)), c.K_RESULT_CODE)) == 2001  # type: ignore[arg-type]
    big = sixteen_thousand_ids_ccr(peer)
    async with GyClient("127.0.0.1", server.bound_port, "sw.test", "test") as other:
        writer.write(big)
        calls = [other.initial(f"other;{i}", "5173", "0141587070", requested_time=30)
                 for i in range(20)]
        answers, cca = await asyncio.gather(asyncio.gather(*calls), next_message())
    assert all(a.result_code == 2001 for a in answers)
    avps = c.walk(cca, 20, len(cca))
    assert c.u32(cca, c.find(avps, c.K_RESULT_CODE)) == 5015  # type: ignore[arg-type]
    assert c.text(cca, c.find(avps, c.K_SESSION_ID)) == "hostile;1"  # type: ignore[arg-type]
    assert "hostile;1" not in {r.session_id for r in handler.requests}  # never decoded
    # the same connection is still usable
    writer.write(c.encode_message(c.FLAG_R, c.CMD_DWR, 0, 9, 9, peer.enc.identity))
    dwa = await next_message()
    assert c.parse_header(dwa).code == c.CMD_DWR
    assert struct.unpack_from(">I", dwa, 12)[0] == 9
    writer.close()


# ---- item 17 --------------------------------------------------------------------------


async def test_ocs_serve_starts_when_the_peer_list_does_not_name_the_ivr(
        settings: Settings) -> None:
    """`OCS_DIAMETER_PEERS=kamailio.test`: the built-in IVR (ivr.<realm>) still connects,
    because it comes from this machine as the bridge's own identity."""
    from dataclasses import replace

    from ocs import serve as serve_module

    s = replace(settings, diameter_peers=("kamailio.test",), diameter_port=0)
    assert s.ivr_origin_host not in s.diameter_peers
    ready = asyncio.Event()
    task = asyncio.create_task(serve_module.serve(s, only={"ocs", "ivr"}, ready=ready))
    try:
        waiter = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait({task, waiter}, timeout=60,
                                     return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            pytest.fail(f"ocs serve exited: {task.exception()!r}")
        assert waiter in done, "ocs serve did not become ready"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, SystemExit):
            await task
