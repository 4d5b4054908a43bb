"""Our asyncio server against an independent implementation: python-diameter's `Node`
(thread/select based) as the Gy client, on 127.0.0.1 with a random port."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from diameter.message import Message
from diameter.message.avp import Avp
from diameter.message.avp.grouped import (
    MultipleServicesCreditControl,
    RequestedServiceUnit,
    SubscriptionId,
    UsedServiceUnit,
)
from diameter.message.commands import (
    CreditControlRequest,
    ReAuthAnswer,
)
from diameter.message.constants import APP_DIAMETER_CREDIT_CONTROL_APPLICATION
from diameter.node import Node
from diameter.node.application import ApplicationError, SimpleThreadingApplication

from ocs.diameter import DiameterServer
from ocs.diameter.memory import MemoryHandler


class RecordingNode(Node):
    """A Node that remembers the base messages it receives."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.seen: list[tuple[str, int | None]] = []

    def receive_cea(self, conn: Any, message: Any) -> None:
        self.seen.append(("CEA", message.result_code))
        super().receive_cea(conn, message)

    def receive_dwa(self, conn: Any, message: Any) -> None:
        self.seen.append(("DWA", message.result_code))
        super().receive_dwa(conn, message)

    def receive_dwr(self, conn: Any, message: Any) -> None:
        self.seen.append(("DWR", None))
        super().receive_dwr(conn, message)


class NodeClient:
    def __init__(self, port: int, origin_host: str = "node.test",
                 on_request: Callable[[Any, Message], Message | None] | None = None) -> None:
        self.node = RecordingNode(origin_host, "test")
        self.node.wakeup_interval = 1
        self.node.idle_timeout = 1
        self.node.cea_timeout = 2
        self.node.vendor_ids = {10415}
        peer = self.node.add_peer(f"aaa://ocs.test:{port};transport=tcp", "test",
                                  ip_addresses=["127.0.0.1"], is_persistent=True,
                                  is_default=True)
        self.app = SimpleThreadingApplication(APP_DIAMETER_CREDIT_CONTROL_APPLICATION,
                                              is_auth_application=True,
                                              request_handler=on_request)
        self.node.add_application(self.app, [peer])
        self.number = 0

    def start(self, ready: bool = True) -> None:
        self.node.start()
        if ready:
            self.app.wait_for_ready(5)

    def stop(self) -> None:
        self.node.stop(2, force=True)

    def ccr(self, session_id: str, rtype: int, number: int, *, used: int | None = None,
            requested: bool = True, subscriber: str = "5173") -> CreditControlRequest:
        m = CreditControlRequest()
        m.session_id = session_id
        m.origin_host = self.node.origin_host.encode()
        m.origin_realm = b"test"
        m.destination_realm = b"test"
        m.auth_application_id = 4
        m.service_context_id = "32260@3gpp.org"
        m.cc_request_type = rtype
        m.cc_request_number = number
        m.subscription_id = [SubscriptionId(subscription_id_type=0,
                                            subscription_id_data=subscriber)]
        mscc = MultipleServicesCreditControl(rating_group=100, service_identifier=[1000])
        if requested:
            mscc.requested_service_unit = RequestedServiceUnit(cc_time=30)
        if used is not None:
            mscc.used_service_unit = [UsedServiceUnit(cc_time=used)]
        m.multiple_services_credit_control = [mscc]
        return m

    def send(self, msg: Message) -> Any:
        return self.app.send_request(msg, timeout=5)


@pytest.fixture
async def server() -> AsyncIterator[tuple[DiameterServer, MemoryHandler]]:
    handler = MemoryHandler(balances={"5173": 100_000})
    srv = DiameterServer(handler, host="127.0.0.1", port=0, origin_host="ocs.test",
                         realm="test", allowed_peers=["node.test", "other.test"], tw=2.0)
    await srv.start()
    yield srv, handler
    await srv.stop()


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def test_node_cer_ccr_i_u_t_with_mscc(server: tuple[DiameterServer, MemoryHandler]) -> None:
    srv, handler = server
    cl = NodeClient(srv.bound_port)
    await in_thread(cl.start)
    try:
        assert ("CEA", 2001) in cl.node.seen
        assert srv.open_peers == ["node.test"]
        sid = cl.node.session_generator.next_id()
        a = await in_thread(cl.send, cl.ccr(sid, 1, 0))
        assert a.result_code == 2001 and a.cc_request_type == 1
        assert a.session_id == sid and a.origin_host == b"ocs.test"
        m = a.multiple_services_credit_control[0]
        assert (m.granted_service_unit.cc_time, m.rating_group, m.result_code) == (30, 100, 2001)
        assert m.validity_time == 60
        a = await in_thread(cl.send, cl.ccr(sid, 2, 1, used=30))
        assert a.result_code == 2001 and a.cc_request_number == 1
        a = await in_thread(cl.send, cl.ccr(sid, 3, 2, used=10, requested=False))
        assert a.result_code == 2001 and a.cc_request_type == 3
        assert handler.balances["5173"] == 100_000 - 40 * 200
        assert [r.request_type for r in handler.requests] == [1, 2, 3]
    finally:
        await in_thread(cl.stop)


async def test_node_and_server_exchange_watchdogs(
        server: tuple[DiameterServer, MemoryHandler]) -> None:
    srv, _ = server
    cl = NodeClient(srv.bound_port)
    cl.node.idle_timeout = 1  # node sends DWR after 1 s idle; server Tw is 2 s
    await in_thread(cl.start)
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and ("DWA", 2001) not in cl.node.seen:
            await asyncio.sleep(0.2)
        assert ("DWA", 2001) in cl.node.seen
        assert srv.open_peers == ["node.test"]  # the connection stays up
    finally:
        await in_thread(cl.stop)


async def test_server_sends_dwr_when_idle(server: tuple[DiameterServer, MemoryHandler]) -> None:
    srv, _ = server
    cl = NodeClient(srv.bound_port)
    cl.node.idle_timeout = 60  # the node stays quiet; our Tw (2 s) fires first
    await in_thread(cl.start)
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and ("DWR", None) not in cl.node.seen:
            await asyncio.sleep(0.2)
        assert ("DWR", None) in cl.node.seen
        await asyncio.sleep(2.5)  # time passes: another Tw without an unanswered DWR
        assert srv.open_peers == ["node.test"]  # the node answered: still open
    finally:
        await in_thread(cl.stop)


async def test_node_error_answers(server: tuple[DiameterServer, MemoryHandler]) -> None:
    srv, _ = server
    cl = NodeClient(srv.bound_port)
    await in_thread(cl.start)
    try:
        sid = cl.node.session_generator.next_id()
        a = await in_thread(cl.send, cl.ccr(sid, 1, 0, subscriber="0000"))
        assert a.result_code == 5030  # from the handler: unknown subscriber
        bad = cl.ccr(cl.node.session_generator.next_id(), 1, 0)
        bad.append_avp(Avp(9999, 0, b"\0\0\0\1", flags=0x40))
        a = await in_thread(cl.send, bad)
        assert a.result_code == 5001
        assert a.failed_avp and a.find_avps((279, 0), (9999, 0))
        bad = cl.ccr(cl.node.session_generator.next_id(), 1, 0)
        bad.service_context_id = None
        a = await in_thread(cl.send, bad)
        assert a.result_code == 5005 and a.find_avps((279, 0), (461, 0))
        bad = cl.ccr(cl.node.session_generator.next_id(), 9, 0)
        a = await in_thread(cl.send, bad)
        assert a.result_code == 5004
        # still usable afterwards
        a = await in_thread(cl.send, cl.ccr(cl.node.session_generator.next_id(), 1, 0))
        assert a.result_code == 2001
    finally:
        await in_thread(cl.stop)


async def test_rar_and_asr_reach_a_node_client(
        server: tuple[DiameterServer, MemoryHandler]) -> None:
    srv, _ = server
    got: list[tuple[int, str]] = []
    done = threading.Event()

    def on_request(app: Any, msg: Message) -> Message:
        got.append((msg.header.command_code, msg.session_id))
        ans = app.generate_answer(msg)
        ans.result_code = 2001
        if isinstance(ans, ReAuthAnswer):
            ans.origin_host = app.node.origin_host.encode()
        done.set()
        return ans

    cl = NodeClient(srv.bound_port, on_request=on_request)
    await in_thread(cl.start)
    try:
        sid = cl.node.session_generator.next_id()
        await in_thread(cl.send, cl.ccr(sid, 1, 0))
        assert await srv.send_rar(sid) == 2001
        assert await srv.send_asr(sid) == 2001
        assert [g[0] for g in got] == [258, 274] and got[0][1] == sid
    finally:
        await in_thread(cl.stop)


# the Node's own select loop trips over the socket we close after the 3010 CEA
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_unknown_node_is_refused_with_3010(
        server: tuple[DiameterServer, MemoryHandler]) -> None:
    srv, _ = server
    cl = NodeClient(srv.bound_port, origin_host="stranger.test")
    await in_thread(cl.start, False)
    try:
        with pytest.raises(ApplicationError):
            await in_thread(cl.app.wait_for_ready, 2)
        assert ("CEA", 3010) in cl.node.seen
        assert srv.open_peers == []
    finally:
        await in_thread(cl.stop)
