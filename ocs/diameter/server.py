"""The asyncio Diameter Gy/Ro server: moves bytes between sockets and `ServerPeer`s.

Why this exists: protocol rules live in the sans-I/O `peer` module and the charging logic
behind `CreditControlHandler`; this module is only the glue — a listening socket, one
`ServerPeer` per connection, watchdog timers, one task per CCR so handler calls run
concurrently (answers are written as each completes, in any order), and the session ->
connection map that lets the charging engine send RAR/ASR (`PeerGateway`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from ocs.credit_control import (
    CCAnswer,
    CreditControlHandler,
    RequestType,
    ResultCode,
)

from .ccr import CCRFrame
from .errors import PeerGone, RequestTimeout, UnknownSession
from .peer import (
    AnswerReceived,
    Close,
    CreditControl,
    LocalIdentity,
    PeerOpened,
    PeerState,
    Send,
    ServerPeer,
)

log = logging.getLogger("ocs.diameter.server")

__all__ = ["DiameterServer"]


class _Connection(asyncio.Protocol):
    def __init__(self, server: DiameterServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer: ServerPeer | None = None
        self.waiting: dict[int, asyncio.Future[int]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.name = "?"
        self.out: list[bytes] = []
        self.reading_paused = False
        self.writing_paused = False

    # -- asyncio callbacks --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("sockname")
        peername = transport.get_extra_info("peername")
        self.name = f"{peername[0]}:{peername[1]}" if peername else "?"
        host_ip = sock[0] if sock else "127.0.0.1"
        s = self.server
        ident = LocalIdentity(s.origin_host, s.realm, host_ip=host_ip,
                              product_name=s.product_name, origin_state_id=s.origin_state_id)
        self.peer = ServerPeer(ident, s.allowed_peers, tw=s.tw)
        s._connections.add(self)
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or self.closed:
            return
        for ev in peer.receive_data(data):
            self._act(ev)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.peer is not None:
            self.peer.connection_lost()
        if self.timer is not None:
            self.timer.cancel()
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(PeerGone(f"connection to {self.name} lost"))
        self.waiting.clear()
        self.server._forget(self)

    # -- events --
    def _act(self, ev: object) -> None:
        if isinstance(ev, CreditControl):
            task = asyncio.get_running_loop().create_task(self._serve(ev.frame))
            self.tasks.add(task)
            task.add_done_callback(self._task_done)
            if len(self.tasks) >= self.server.max_inflight and not self.reading_paused:
                self._pause_reading()  # backpressure: the handler is not keeping up
        elif isinstance(ev, Send):
            self.write(ev.data)
        elif isinstance(ev, AnswerReceived):
            fut = self.waiting.pop(ev.hbh, None)
            if fut is not None and not fut.done():
                fut.set_result(ev.result_code)
        elif isinstance(ev, Close):
            log.info("closing %s: %s", self.name, ev.reason)
            self.close()
        elif isinstance(ev, PeerOpened):
            log.info("peer %s (%s) open on %s", ev.origin_host, ev.origin_realm, self.name)

    async def _serve(self, frame: CCRFrame) -> None:
        t0 = time.perf_counter()
        req = frame.request
        server = self.server
        if req.request_type is not RequestType.EVENT:
            server._sessions[req.session_id] = self
        try:
            answer = await server.handler.handle(req)
        except Exception:
            log.exception("credit-control handler failed for %s", req.session_id)
            answer = CCAnswer(result_code=ResultCode.UNABLE_TO_COMPLY,
                              request_type=req.request_type,
                              request_number=req.request_number)
        if req.request_type is RequestType.TERMINATE and server._sessions.get(
                req.session_id) is self:
            del server._sessions[req.session_id]
        if self.closed or self.peer is None:
            return
        try:
            data = self.peer.answer_ccr(frame, answer)
        except Exception:
            log.exception("cannot encode CCA for %s", req.session_id)
            data = self.peer.answer_ccr(frame, CCAnswer(
                result_code=ResultCode.UNABLE_TO_COMPLY, request_type=req.request_type,
                request_number=req.request_number))
        self.write(data)
        observe = server.observe
        if observe is not None:
            observe(int(req.request_type), int(answer.result_code), time.perf_counter() - t0)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if self.reading_paused and not self.writing_paused and \
                len(self.tasks) < self.server.max_inflight // 2:
            self._resume_reading()

    def pause_writing(self) -> None:  # the peer does not read its answers
        self.writing_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if len(self.tasks) < self.server.max_inflight:
            self._resume_reading()

    def _pause_reading(self) -> None:
        if self.transport is not None and not self.closed and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.transport is not None and not self.closed and self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    # -- helpers --
    def write(self, data: bytes) -> None:
        """Queue bytes; everything queued in one loop iteration goes out in one send()."""
        if self.transport is None or self.closed:
            return
        if not self.out:
            asyncio.get_running_loop().call_soon(self.flush)
        self.out.append(data)

    def flush(self) -> None:
        if self.out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self.out) if len(self.out) > 1 else self.out[0])
        self.out.clear()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.flush()  # e.g. the CEA 3010 or DPA that precedes the close
            self.closed = True
            self.transport.close()

    def _arm_timer(self) -> None:
        if self.peer is None or self.closed:
            return
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.peer.next_poll_in(), self._on_timer)

    def _on_timer(self) -> None:
        if self.peer is None or self.closed:
            return
        for ev in self.peer.poll():
            self._act(ev)
        self._arm_timer()

    async def request(self, kind: str, session_id: str, timeout: float) -> int:
        peer = self.peer
        if peer is None or self.closed or peer.state is not PeerState.OPEN:
            raise PeerGone(f"connection {self.name} is not open")
        hbh, data = peer.build_rar(session_id) if kind == "RAR" else peer.build_asr(session_id)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiting[hbh] = fut
        self.write(data)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise RequestTimeout(f"no {kind[:2]}A from {peer.remote_host} in {timeout}s") from None
        finally:
            self.waiting.pop(hbh, None)
            peer.pending.pop(hbh, None)


class DiameterServer:
    """Diameter credit-control server; also the `PeerGateway` for RAR/ASR.

    `allowed_peers`: Origin-Host values admitted at CER (case-insensitive); "*" admits any.
    `tw`: watchdog interval (RFC 3539), also the time allowed for a CER after connecting.
    `answer_timeout`: how long send_rar/send_asr wait for the RAA/ASA.
    `max_inflight`: CCRs of one connection being handled at once before the server stops
    reading from it (TCP backpressure instead of unbounded memory).
    `observe(request_type, result_code, seconds)`: optional hook called for every CCA
    written, with the time from decoded CCR to CCA queued (e.g. `ocs.metrics.observe_ccr`
    when the handler does not count CCRs itself; the charging engine does).
    """

    def __init__(
        self,
        handler: CreditControlHandler,
        *,
        host: str = "127.0.0.1",
        port: int = 3868,
        origin_host: str,
        realm: str,
        allowed_peers: Iterable[str] = ("*",),
        tw: float = 30.0,
        answer_timeout: float = 5.0,
        product_name: str = "open-prepaid-ocs",
        observe: Callable[[int, int, float], None] | None = None,
        max_inflight: int = 4096,
        reuse_port: bool = False,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.origin_host = origin_host
        self.realm = realm
        self.allowed_peers = frozenset(allowed_peers)
        self.tw = tw
        self.answer_timeout = answer_timeout
        self.product_name = product_name
        self.observe = observe
        self.max_inflight = max_inflight
        # Several processes listening on one port (`ocs serve --workers N`): the kernel
        # spreads the connections over them (SO_REUSEPORT).
        self.reuse_port = reuse_port
        self.origin_state_id = int(time.time()) & 0xFFFFFFFF
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._sessions: dict[str, _Connection] = {}

    @property
    def bound_port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def open_peers(self) -> list[str]:
        """Origin-Hosts of the peers that completed CER/CEA."""
        return [cn.peer.remote_host or "?" for cn in self._connections
                if cn.peer is not None and cn.peer.state is PeerState.OPEN]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True,
            reuse_port=self.reuse_port or None)
        log.info("Diameter server %s listening on %s:%d", self.origin_host, self.host,
                 self.bound_port)
        if not self.allowed_peers:
            log.warning("Diameter peer list is empty: every CER will be refused (3010)")

    async def stop(self, grace: float = 1.0) -> None:
        """Stop listening, send DPR to every open peer, wait briefly, close everything."""
        if self._server is not None:
            self._server.close()
        for cn in list(self._connections):
            if cn.peer is not None and cn.peer.state is PeerState.OPEN and not cn.closed:
                cn.write(cn.peer.build_dpr())
        deadline = asyncio.get_running_loop().time() + grace
        while self._connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        tasks = [t for cn in self._connections for t in cn.tasks]
        for cn in list(self._connections):
            cn.close()
        for t in tasks:
            t.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    def _forget(self, conn: _Connection) -> None:
        self._connections.discard(conn)
        stale = [sid for sid, cn in self._sessions.items() if cn is conn]
        for sid in stale:
            del self._sessions[sid]

    # -- PeerGateway --
    def holds(self, session_id: str) -> bool:
        """Whether a connection of this server carries the session."""
        conn = self._sessions.get(session_id)
        return conn is not None and not conn.closed

    def _conn_for(self, session_id: str) -> _Connection:
        conn = self._sessions.get(session_id)
        if conn is None:
            raise UnknownSession(f"no live connection for session {session_id!r}")
        return conn

    async def send_rar(self, session_id: str) -> int:
        """Re-Auth-Request to the peer that owns the session; returns the RAA Result-Code.

        Raises UnknownSession / PeerGone (no connection) or RequestTimeout.
        """
        return await self._conn_for(session_id).request("RAR", session_id, self.answer_timeout)

    async def send_asr(self, session_id: str) -> int:
        """Abort-Session-Request; returns the ASA Result-Code (same exceptions as send_rar)."""
        return await self._conn_for(session_id).request("ASR", session_id, self.answer_timeout)

