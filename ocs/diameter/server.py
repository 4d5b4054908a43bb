"""The asyncio Diameter Gy/Ro server: moves bytes between sockets and `ServerPeer`s.

Why this exists: protocol rules live in the sans-I/O `peer` module and the charging logic
behind `CreditControlHandler`; this module is only the glue — a listening socket (and a
TLS one, RFC 6733 13), one `ServerPeer` per connection, watchdog timers, one task per CCR
so handler calls run concurrently (answers are written as each completes, in any order),
and the session -> connection map that lets the charging engine send RAR/ASR
(`PeerGateway`).

Resources are bounded for unauthenticated and hostile peers: a small message limit before
CER and a larger one after (in `ServerPeer`), at most `max_connections` connections (when
full, the oldest connection still without CER makes room, else the new one is closed), and
at most `max_buffered` bytes of partial messages across all connections (the connection
that would go past it is closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
import time
from collections.abc import Callable, Iterable

from ocs.credit_control import (
    CCAnswer,
    CreditControlHandler,
    RequestType,
    ResultCode,
)

from . import codec as c
from .ccr import CCRFrame
from .errors import PeerGone, RequestTimeout, UnknownSession
from .grammar import known_keys
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
from .tls import certificate_names

log = logging.getLogger("ocs.diameter.server")

__all__ = ["DiameterServer"]


def _is_local(peername: tuple[str, int] | None, sockname: tuple[str, int] | None) -> bool:
    """Does the connection come from this machine (loopback, or our own address)?"""
    if not peername:
        return False
    try:
        ip = ipaddress.ip_address(peername[0])
    except ValueError:
        return False
    if ip.is_loopback or (sockname is not None and peername[0] == sockname[0]):
        return True
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(mapped is not None and mapped.is_loopback)


class _Connection(asyncio.Protocol):
    def __init__(self, server: DiameterServer, tls: bool = False) -> None:
        self.server = server
        self.tls = tls
        self.buffered = 0  # this connection's share of server.buffered
        self.early: list[bytes] = []
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
        s = self.server
        if not s._admit_connection(self):
            self.closed = True
            transport.abort()
            return
        host_ip = sock[0] if sock else "127.0.0.1"
        ident = LocalIdentity(s.origin_host, s.realm, host_ip=host_ip,
                              product_name=s.product_name, origin_state_id=s.origin_state_id)
        names = certificate_names(transport.get_extra_info("peercert")) if self.tls else None
        self.peer = ServerPeer(ident, s.allowed_peers, tw=s.tw, max_message=s.max_message,
                               pre_cer_max=s.pre_cer_max, local_peers=s.local_peers,
                               is_local=_is_local(peername, sock), certificate_names=names)
        self._arm_timer()
        if self.early:
            data, self.early = b"".join(self.early), []
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None:
            # TLS: the first records can be decrypted just before connection_made is called
            # (the handshake task resumes a loop turn later); keep them, within the pre-CER
            # bound
            if not self.closed and sum(map(len, self.early)) + len(data) <= \
                    self.server.pre_cer_max:
                self.early.append(data)
            return
        if self.closed:
            return
        events = peer.receive_data(data)
        held = peer.framer.buffered
        if held != self.buffered:
            s = self.server
            s.buffered += held - self.buffered
            self.buffered = held
            if s.buffered > s.max_buffered and not s._make_buffer_room(self):
                return  # this connection was closed
        for ev in events:
            self._act(ev)

    def abort(self) -> None:
        """Drop the connection now, without flushing what is queued; it no longer counts
        against the server's connection and buffer bounds."""
        self.server.buffered -= self.buffered
        self.buffered = 0
        self.server._forget(self)
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.buffered -= self.buffered
        self.buffered = 0
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
            self.server._pending.pop(self, None)
            log.info("peer %s (%s) open on %s%s", ev.origin_host, ev.origin_realm, self.name,
                     " (TLS)" if self.tls else "")

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


class _TlsAcceptor(asyncio.Protocol):
    """A TCP connection to the TLS port: the server runs the handshake itself (`start_tls`),
    so a refused certificate costs one counted warning, not asyncio's traceback, and
    handshakes in progress are bounded like connections."""

    def __init__(self, server: DiameterServer) -> None:
        self.server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # nothing is read until TLS takes the transport over
        self.server._start_handshake(transport)


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
    `max_message` / `pre_cer_max`: the longest message accepted after / before CER.
    `max_connections`, `max_buffered`: the global bounds described in the module docstring.
    `local_peers`: Origin-Hosts admitted on connections from this machine whatever
    `allowed_peers` says (the built-in IVR bridge).
    `tls`: a server `ssl.SSLContext` (see `ocs.diameter.tls.server_context`) to also listen
    for TLS/TCP on `tls_port` (RFC 6733 13); the CER's Origin-Host must then be a name of
    the peer's certificate.
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
        max_message: int = c.MAX_MESSAGE_LEN,
        pre_cer_max: int = c.PRE_CER_MAX_LEN,
        max_connections: int = 512,
        max_buffered: int = 16 * 1024 * 1024,
        local_peers: Iterable[str] = (),
        tls: ssl.SSLContext | None = None,
        tls_port: int = 5658,
        tls_handshake_timeout: float = 10.0,
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
        self.max_message = max_message
        self.pre_cer_max = pre_cer_max
        self.max_connections = max_connections
        self.max_buffered = max_buffered
        self.local_peers = frozenset(local_peers)
        self.tls = tls
        self.tls_port = tls_port
        self.tls_handshake_timeout = tls_handshake_timeout
        # Several processes listening on one port (`ocs serve --workers N`): the kernel
        # spreads the connections over them (SO_REUSEPORT).
        self.reuse_port = reuse_port
        self.origin_state_id = int(time.time()) & 0xFFFFFFFF
        self.buffered = 0  # bytes of partial messages held by all connections
        self.refused = 0  # connections closed at once because the server was full
        self.over_buffer = 0  # connections closed for going past max_buffered
        self.tls_refused = 0  # TLS handshakes that failed (bad or no certificate, timeout)
        self._handshakes: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._tls_server: asyncio.Server | None = None
        self._connections: dict[_Connection, None] = {}  # oldest first
        self._pending: dict[_Connection, None] = {}  # still without CER, oldest first
        self._sessions: dict[str, _Connection] = {}
        self._warned: dict[str, float] = {}

    def _warn(self, what: str, message: str) -> None:
        """A warning at most every 10 s per kind: a flood must not flood the log too."""
        now = time.monotonic()
        if now - self._warned.get(what, -1e9) >= 10:
            self._warned[what] = now
            log.warning("%s", message)

    @property
    def bound_port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def bound_tls_port(self) -> int:
        if self._tls_server is None or not self._tls_server.sockets:
            raise RuntimeError("TLS listener not started")
        return int(self._tls_server.sockets[0].getsockname()[1])

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def _make_buffer_room(self, conn: _Connection) -> bool:
        """Over `max_buffered`: drop connections still without CER that hold bytes, oldest
        first, until the total fits; if that is not enough, drop `conn`, whose data went
        past the bound. Returns whether `conn` is still open."""
        for other in list(self._pending):
            if self.buffered <= self.max_buffered:
                break
            if other.buffered:
                self.over_buffer += 1
                other.abort()
        if self.buffered > self.max_buffered and not conn.closed:
            self.over_buffer += 1
            conn.abort()
        self._warn("buffer", "closing connections: partial messages held across all "
                   f"connections above OCS_DIAMETER_MAX_BUFFERED ({self.max_buffered} "
                   f"bytes); {self.over_buffer} closed so far")
        return not conn.closed

    def _start_handshake(self, transport: asyncio.Transport) -> None:
        if len(self._handshakes) >= self.max_connections:
            self.tls_refused += 1
            self._warn("tls-full", "refusing TLS connections: too many handshakes at once "
                       f"({self.tls_refused} TLS connections refused so far)")
            transport.abort()
            return
        task = asyncio.get_running_loop().create_task(self._tls_handshake(transport))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _tls_handshake(self, transport: asyncio.Transport) -> None:
        assert self.tls is not None
        peer = transport.get_extra_info("peername")
        conn = _Connection(self, tls=True)
        try:
            app = await asyncio.get_running_loop().start_tls(
                transport, conn, self.tls, server_side=True,
                ssl_handshake_timeout=self.tls_handshake_timeout)
        except OSError as exc:  # ssl.SSLError, resets and timeouts are all OSErrors
            self.tls_refused += 1
            self._warn("tls", f"TLS handshake from {peer[0] if peer else '?'} failed: {exc} "
                       f"({self.tls_refused} so far)")
            transport.abort()
            return
        if app is None:  # the peer went away as the handshake ended
            transport.abort()
            return
        conn.connection_made(app)

    def _admit_connection(self, conn: _Connection) -> bool:
        """Make room for a new connection, or refuse it when every slot holds a peer that
        completed CER (hostile connections cannot lock real switches out)."""
        if len(self._connections) >= self.max_connections:
            if self._pending:
                oldest = next(iter(self._pending))
                log.debug("connection limit reached: dropping %s (no CER yet)", oldest.name)
                oldest.abort()
            else:
                self.refused += 1
                self._warn("full", f"refusing connections: {len(self._connections)} open, "
                           f"OCS_DIAMETER_MAX_CONNECTIONS reached ({self.refused} refused "
                           "so far)")
                return False
        self._connections[conn] = None
        self._pending[conn] = None
        return True

    @property
    def open_peers(self) -> list[str]:
        """Origin-Hosts of the peers that completed CER/CEA."""
        return [cn.peer.remote_host or "?" for cn in self._connections
                if cn.peer is not None and cn.peer.state is PeerState.OPEN]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # The AVP dictionary takes a fraction of a second to load: not on the first CCR.
        known_keys()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True,
            reuse_port=self.reuse_port or None)
        log.info("Diameter server %s listening on %s:%d", self.origin_host, self.host,
                 self.bound_port)
        if self.tls is not None:
            try:
                self._tls_server = await loop.create_server(
                    lambda: _TlsAcceptor(self), self.host, self.tls_port,
                    reuse_address=True, reuse_port=self.reuse_port or None)
            except BaseException:
                self._server.close()
                raise
            log.info("Diameter over TLS on %s:%d (client certificates required)", self.host,
                     self.bound_tls_port)
        if not self.allowed_peers:
            log.warning("Diameter peer list is empty: every CER will be refused (3010)")

    async def stop(self, grace: float = 1.0) -> None:
        """Stop listening, send DPR to every open peer, wait briefly, close everything."""
        if self._server is not None:
            self._server.close()
        if self._tls_server is not None:
            self._tls_server.close()
        for cn in list(self._connections):
            if cn.peer is not None and cn.peer.state is PeerState.OPEN and not cn.closed:
                cn.write(cn.peer.build_dpr())
        deadline = asyncio.get_running_loop().time() + grace
        while self._connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        for handshake in list(self._handshakes):
            handshake.cancel()
        tasks = [t for cn in self._connections for t in cn.tasks]
        for cn in list(self._connections):
            cn.close()
        for t in tasks:
            t.cancel()
        for srv in (self._server, self._tls_server):
            if srv is not None:
                with contextlib.suppress(Exception):
                    await srv.wait_closed()
        self._server = self._tls_server = None

    def _forget(self, conn: _Connection) -> None:
        self._connections.pop(conn, None)
        self._pending.pop(conn, None)
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

