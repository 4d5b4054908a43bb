"""An asyncio Gy/Ro credit-control client (the switch side of RFC 4006).

Why this exists: the `ocs client` CLI, the IVR bridge (which is a credit-control client of
the OCS like any switch) and the tests/benchmarks all need to place calls against the
server. Protocol rules come from the sans-I/O `ClientPeer`; this class adds the socket,
futures per hop-by-hop id (requests may be pipelined), per-session CC-Request-Number
bookkeeping, and callbacks for server-initiated RAR/ASR (always answered 2001).

    async with GyClient("127.0.0.1", 3868, "ivr.local", "local") as gy:
        a = await gy.initial("s1", "5173", "0141587070", requested_time=30)
        a = await gy.update("s1", used_time=30)
        a = await gy.terminate("s1", used_time=12)
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import os
import ssl as ssl_module
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from ocs.credit_control import (
    CCAnswer,
    CCRequest,
    MsccRequest,
    RequestedAction,
    RequestType,
    SubscriptionId,
    SubscriptionIdType,
    TariffChangeUsage,
    UsedUnits,
)

from . import codec as c
from .errors import CapabilitiesRefused, PeerGone, RequestTimeout
from .peer import (
    AnswerReceived,
    CapabilitiesFailed,
    ClientPeer,
    Close,
    LocalIdentity,
    PeerOpened,
    PeerState,
    Send,
    ServerRequest,
)

log = logging.getLogger("ocs.diameter.client")

__all__ = ["GyClient", "ServerRequestCallback", "subscription_of"]

ServerRequestCallback = Callable[[str], Awaitable[None] | None]

DEFAULT_RATING_GROUP = 100
DEFAULT_SERVICE_IDENTIFIER = 1000


def subscription_of(value: str | SubscriptionId) -> SubscriptionId:
    """Guess the Subscription-Id type of a string: sip:/tel: URI, E.164 digits, or NAI."""
    if isinstance(value, SubscriptionId):
        return value
    if value.startswith(("sip:", "sips:")):
        return SubscriptionId(SubscriptionIdType.END_USER_SIP_URI, value)
    digits = value.removeprefix("tel:").removeprefix("+")
    if digits.isdigit():
        return SubscriptionId(SubscriptionIdType.END_USER_E164, value.removeprefix("tel:"))
    if "@" in value:
        return SubscriptionId(SubscriptionIdType.END_USER_NAI, value)
    return SubscriptionId(SubscriptionIdType.END_USER_PRIVATE, value)


@dataclass(slots=True)
class _Session:
    subscription: tuple[SubscriptionId, ...]
    called: str | None
    calling: str | None
    mscc: bool
    next_number: int = 0
    rating_group: int | None = DEFAULT_RATING_GROUP
    service_identifier: int | None = DEFAULT_SERVICE_IDENTIFIER


class _Protocol(asyncio.Protocol):
    def __init__(self, client: GyClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for ev in self.client._peer.receive_data(data):
            self.client._act(ev)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._on_lost(exc)
        if not self.lost.done():
            self.lost.set_result(None)


class GyClient:
    """Diameter credit-control client over one TCP connection."""

    def __init__(
        self,
        host: str,
        port: int,
        origin_host: str,
        realm: str,
        *,
        destination_realm: str | None = None,
        tw: float = 30.0,
        timeout: float = 5.0,
        vendor_specific_app: bool = False,
        service_context_id: str = "32260@3gpp.org",
        auto_reconnect: bool = False,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.origin_host = origin_host
        self.realm = realm
        self.destination_realm = destination_realm or realm
        self.tw = tw
        self.timeout = timeout
        self.vendor_specific_app = vendor_specific_app
        self.service_context_id = service_context_id
        self.auto_reconnect = auto_reconnect
        # Diameter over TLS (RFC 6733 13): TLS from the first byte, e.g. to port 5658.
        # `server_hostname` is the name the server's certificate must carry (its identity).
        self.ssl = ssl
        self.server_hostname = server_hostname
        self._peer = ClientPeer(LocalIdentity(origin_host, realm), self.destination_realm, tw=tw)
        self._proto: _Protocol | None = None
        self._waiting: dict[int, asyncio.Future[AnswerReceived]] = {}
        self._opened: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._sessions: dict[str, _Session] = {}
        self._ids = itertools.count(1)
        self._rar_cb: list[ServerRequestCallback] = []
        self._asr_cb: list[ServerRequestCallback] = []
        self._bg: set[asyncio.Task[None]] = set()
        self.server_host: str | None = None

    # -- lifecycle --
    async def connect(self) -> None:
        """Open TCP and run CER/CEA. Raises CapabilitiesRefused or OSError/TimeoutError."""
        loop = asyncio.get_running_loop()
        self._opened = loop.create_future()
        self._peer = ClientPeer(LocalIdentity(self.origin_host, self.realm),
                                self.destination_realm, tw=self.tw)
        hostname = (self.server_hostname or self.host) if self.ssl is not None else None
        _, proto = await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(self), self.host, self.port,
                                   ssl=self.ssl, server_hostname=hostname), self.timeout)
        self._proto = proto
        sock = proto.transport.get_extra_info("sockname") if proto.transport else None
        if sock:
            self._peer.ident = replace(self._peer.ident, host_ip=sock[0])
        self._write(self._peer.start())
        try:
            await asyncio.wait_for(asyncio.shield(self._opened), self.timeout)
        except TimeoutError:
            self._close_transport()
            raise RequestTimeout("no CEA received") from None
        self._arm_timer()

    async def close(self) -> None:
        """DPR, wait for the DPA (or the server closing), then close the socket."""
        proto = self._proto
        if proto is None or proto.transport is None:
            return
        if self._peer.state is PeerState.OPEN:
            self._write(self._peer.build_dpr())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proto.lost), self.timeout)
        self._close_transport()
        if self._timer is not None:
            self._timer.cancel()

    async def __aenter__(self) -> GyClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def is_open(self) -> bool:
        return self._peer.state is PeerState.OPEN

    # -- server-initiated requests --
    def on_rar(self, callback: ServerRequestCallback) -> None:
        """Call `callback(session_id)` for every RAR (answered 2001 regardless)."""
        self._rar_cb.append(callback)

    def on_asr(self, callback: ServerRequestCallback) -> None:
        """Call `callback(session_id)` for every ASR (answered 2001 regardless)."""
        self._asr_cb.append(callback)

    # -- requests --
    def new_session_id(self) -> str:
        return f"{self.origin_host};{int(time.time())};{os.getpid()};{next(self._ids)}"

    async def request(self, req: CCRequest) -> CCAnswer:
        """Send any CCR and wait for its CCA (decoded into a `CCAnswer`).

        Raises PeerGone (not connected / connection lost) or RequestTimeout. With
        `auto_reconnect`, a lost connection is re-opened (CER) before sending.
        """
        if self._peer.state is not PeerState.OPEN or self._proto is None:
            if not self.auto_reconnect:
                raise PeerGone("not connected")
            try:
                await self.connect()
            except (OSError, TimeoutError, CapabilitiesRefused, RequestTimeout) as exc:
                raise PeerGone(f"cannot reconnect to {self.host}:{self.port}: {exc}") from exc
        hbh, data = self._peer.build_ccr(req, vendor_specific_app=self.vendor_specific_app)
        fut: asyncio.Future[AnswerReceived] = asyncio.get_running_loop().create_future()
        self._waiting[hbh] = fut
        self._write(data)
        try:
            ev = await asyncio.wait_for(fut, self.timeout)
        except TimeoutError:
            raise RequestTimeout(f"no CCA for {req.session_id} #{req.request_number}") from None
        finally:
            self._waiting.pop(hbh, None)
            self._peer.pending.pop(hbh, None)
        if ev.answer is None:
            raise PeerGone("undecodable CCA")
        return ev.answer

    def _base(self, session_id: str, rtype: RequestType, number: int, s: _Session,
              **kw: object) -> CCRequest:
        return CCRequest(
            session_id=session_id, origin_host=self.origin_host, origin_realm=self.realm,
            request_type=rtype, request_number=number, subscription_ids=s.subscription,
            called_party=s.called, calling_party=s.calling,
            service_context_id=self.service_context_id,
            event_timestamp=datetime.now(UTC), **kw)  # type: ignore[arg-type]

    def _units(self, s: _Session, requested: bool, requested_time: int | None,
               used: tuple[UsedUnits, ...]) -> dict[str, object]:
        if s.mscc:
            return {"mscc": (MsccRequest(s.rating_group, s.service_identifier, requested,
                                         requested_time, used),)}
        return {"requested": requested, "requested_time": requested_time, "used": used}

    async def initial(
        self,
        session_id: str,
        subscription: str | SubscriptionId,
        called: str | None,
        requested_time: int | None = None,
        *,
        mscc: bool = True,
        calling: str | None = None,
        rating_group: int | None = DEFAULT_RATING_GROUP,
        service_identifier: int | None = DEFAULT_SERVICE_IDENTIFIER,
    ) -> CCAnswer:
        """CCR-Initial: opens the session (request number 0) and asks for a grant."""
        sub = subscription_of(subscription)
        s = _Session((sub,), called, calling if calling is not None else sub.data, mscc,
                     rating_group=rating_group, service_identifier=service_identifier)
        self._sessions[session_id] = s
        s.next_number = 1
        req = self._base(session_id, RequestType.INITIAL, 0, s,
                         **self._units(s, True, requested_time, ()))
        return await self.request(req)

    async def update(
        self,
        session_id: str,
        used_time: int,
        requested_time: int | None = None,
        *,
        tariff_change: tuple[int, int] | None = None,
    ) -> CCAnswer:
        """CCR-Update: reports `used_time` seconds and asks for more.

        `tariff_change=(before, after)` reports the use split around a Tariff-Time-Change.
        """
        s = self._sessions[session_id]
        number = s.next_number
        s.next_number += 1
        req = self._base(session_id, RequestType.UPDATE, number, s,
                         **self._units(s, True, requested_time, _used(used_time, tariff_change)))
        return await self.request(req)

    async def terminate(
        self,
        session_id: str,
        used_time: int,
        *,
        tariff_change: tuple[int, int] | None = None,
        termination_cause: int = 1,  # DIAMETER_LOGOUT
    ) -> CCAnswer:
        """CCR-Terminate: reports the last `used_time` seconds and ends the session."""
        s = self._sessions.pop(session_id)
        req = self._base(session_id, RequestType.TERMINATE, s.next_number, s,
                         termination_cause=termination_cause,
                         **self._units(s, False, None, _used(used_time, tariff_change)))
        return await self.request(req)

    async def event(
        self,
        subscription: str | SubscriptionId,
        action: RequestedAction = RequestedAction.CHECK_BALANCE,
        *,
        called: str | None = None,
        requested_time: int | None = None,
        session_id: str | None = None,
    ) -> CCAnswer:
        """CCR-Event (one-shot): CHECK_BALANCE, PRICE_ENQUIRY, DIRECT_DEBITING, REFUND."""
        sub = subscription_of(subscription)
        s = _Session((sub,), called, None, False)
        req = self._base(session_id or self.new_session_id(), RequestType.EVENT, 0, s,
                         requested_action=action,
                         **self._units(s, requested_time is not None, requested_time, ()))
        return await self.request(req)

    # -- plumbing --
    def _write(self, data: bytes) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.write(data)

    def _close_transport(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()

    def _act(self, ev: object) -> None:
        if isinstance(ev, AnswerReceived):
            fut = self._waiting.get(ev.hbh)
            if fut is not None and not fut.done():
                fut.set_result(ev)
        elif isinstance(ev, Send):
            self._write(ev.data)
        elif isinstance(ev, ServerRequest):
            self._write(self._peer.answer_request(ev, 2001))
            callbacks = self._rar_cb if ev.command_code == c.CMD_RAR else self._asr_cb
            for cb in callbacks:
                self._run_callback(cb, ev.session_id)
        elif isinstance(ev, PeerOpened):
            self.server_host = ev.origin_host
            if self._opened is not None and not self._opened.done():
                self._opened.set_result(None)
        elif isinstance(ev, CapabilitiesFailed):
            if self._opened is not None and not self._opened.done():
                self._opened.set_exception(CapabilitiesRefused(ev.result_code))
        elif isinstance(ev, Close):
            log.info("closing connection to %s:%d: %s", self.host, self.port, ev.reason)
            self._close_transport()

    def _run_callback(self, cb: ServerRequestCallback, session_id: str) -> None:
        try:
            res = cb(session_id)
        except Exception:
            log.exception("RAR/ASR callback failed")
            return
        if inspect.isawaitable(res):
            async def _wait(aw: Awaitable[None]) -> None:
                try:
                    await aw
                except Exception:
                    log.exception("RAR/ASR callback failed")

            t = asyncio.get_running_loop().create_task(_wait(res))
            self._bg.add(t)
            t.add_done_callback(self._bg.discard)

    def _on_lost(self, exc: Exception | None) -> None:
        self._peer.connection_lost()
        if self._timer is not None:
            self._timer.cancel()
        err = PeerGone(f"connection to {self.host}:{self.port} lost")
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(err)
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(err)

    def _arm_timer(self) -> None:
        if self._peer.state is PeerState.OPEN:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._peer.next_poll_in(), self._on_timer)

    def _on_timer(self) -> None:
        for ev in self._peer.poll():
            self._act(ev)
        self._arm_timer()


def _used(seconds: int, split: tuple[int, int] | None) -> tuple[UsedUnits, ...]:
    if split is None:
        return (UsedUnits(seconds),)
    before, after = split
    return (UsedUnits(before, TariffChangeUsage.UNIT_BEFORE_TARIFF_CHANGE),
            UsedUnits(after, TariffChangeUsage.UNIT_AFTER_TARIFF_CHANGE))
