"""SIP user agent over UDP (asyncio): the thin I/O edge around `message` and `sdp`.

Scope (what an IVR front end needs, RFC 3261):

* UAS: INVITE (100 Trying, then 200 with SDP retransmitted until ACK, or a final error),
  ACK, BYE, CANCEL (200 + 487), OPTIONS (200), INFO DTMF (application/dtmf-relay and
  application/dtmf), anything else 405; requests for unknown dialogs get 481.
  A retransmitted request is answered with the same last response.
* UAC: INVITE with SDP (Timer A retransmission until a response; Timer B, 32 s on the clock
  from the first send, ends an INVITE nobody answered), provisional responses reported (180,
  183 with early-media SDP), ACK for 2xx (re-sent on every 200 retransmission) and for error
  responses, CANCEL, BYE and INFO (DTMF relay) with Timer E.
* Transport errors fail fast: the socket has IP_RECVERR, so an ICMP port/host unreachable for
  a datagram we sent is read back from the error queue (with the datagram itself, hence its
  Call-ID) and the INVITE fails at once as 503, as RFC 3261 §8.1.3.1 treats a transport
  error, instead of waiting for Timer B.
* Overload: an `admit` hook decides on each new INVITE before anything is allocated; a refused
  INVITE gets a stateless 503 with Retry-After (RFC 3261 §21.5.4), remembered in a bounded
  cache for its retransmissions, so a flood costs a parse and a send per datagram.
* Requests inside a dialog are sent to the address the peer's messages come from
  (symmetric signalling), which is right on loopback and behind NAT alike.

Not in scope: TCP/TLS, authentication challenges, re-INVITE (answered 488 unless it only
refreshes; we reply with our current SDP), PRACK, forking (first 2xx wins).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from ivr_bridge.sip import sdp
from ivr_bridge.sip.message import (
    SipMessage,
    SipParseError,
    header_param,
    name_addr_uri,
    new_branch,
    new_call_id,
    new_tag,
    parse,
    parse_uri,
    response_to,
)

log = logging.getLogger(__name__)

T1 = 0.5
T2 = 4.0
TIMER_B = 32.0  # 64 * T1
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)  # Linux; the constant is missing in Python
REJECTED_CACHE = 4096  # stateless 503s remembered for INVITE retransmissions
RECEIVE_BUFFER = 1 << 20
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"
USER_AGENT = "open-prepaid-ivr/0.1"

Addr = tuple[str, int]
MAX_DATAGRAM = 65535


def _parse_info_digit(msg: SipMessage) -> str | None:
    """DTMF from a SIP INFO body: 'Signal=5' (dtmf-relay) or '5' (application/dtmf)."""
    ctype = (msg.get("Content-Type") or "").lower()
    text = msg.body.decode(errors="replace").strip()
    if "dtmf-relay" in ctype:
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key.strip().lower() == "signal":
                text = value.strip()
                break
        else:
            return None
    elif "application/dtmf" not in ctype:
        return None
    if text == "10":
        return "*"
    if text == "11":
        return "#"
    if len(text) == 1 and text.upper() in "0123456789*#ABCD":
        return text.upper()
    return None


def _quoted_call_id(data: bytes) -> tuple[str, str]:
    """(Call-ID, request method) from the possibly truncated start of a datagram we sent."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.split("\r\n")
    method = lines[0].split(" ", 1)[0] if lines and not lines[0].startswith("SIP/") else ""
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon and name.strip().lower() in ("call-id", "i") and value.strip():
            return value.strip(), method
    return "", method


class _Retransmitter:
    """Re-sends a datagram with RFC 3261 back-off until stopped or `limit` seconds."""

    def __init__(
        self, send: Callable[[], None], *, cap: float = T2, limit: float = TIMER_B,
        on_timeout: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        self._task = asyncio.get_running_loop().create_task(self._run(send, cap, limit))
        self._on_timeout = on_timeout

    async def _run(self, send: Callable[[], None], cap: float, limit: float) -> None:
        # `limit` bounds the retransmissions only; the transaction's own timeout (Timer B
        # for INVITE) is a separate absolute timer, so back-off rounding cannot stretch it.
        interval = T1
        elapsed = 0.0
        while elapsed < limit:
            await asyncio.sleep(interval)
            elapsed += interval
            send()
            interval = min(interval * 2, cap)
        if self._on_timeout is not None:
            self._on_timeout()

    def stop(self) -> None:
        self._task.cancel()


# --------------------------------------------------------------------------- calls


class InboundCall:
    """The caller's leg (we are the UAS)."""

    def __init__(self, ua: SipUserAgent, invite: SipMessage, source: Addr) -> None:
        self.ua = ua
        self.invite = invite
        self.source = source
        self.call_id = invite.call_id
        self.local_tag = new_tag()
        self.remote_tag = invite.from_tag or ""
        self.state = "early"  # early | confirmed | terminated
        self._cseq = 1
        self._final: SipMessage | None = None
        self._retransmit: _Retransmitter | None = None
        self.on_hangup: Callable[[], None] | None = None
        self.on_digit: Callable[[str], None] | None = None
        self.offer: sdp.MediaDescription | None = None
        self.answer_body: bytes = b""

    @property
    def calling(self) -> str:
        uri = name_addr_uri(self.invite.header("From"))
        try:
            return parse_uri(uri).user
        except SipParseError:
            return ""

    @property
    def called(self) -> str:
        try:
            return parse_uri(self.invite.uri or "").user
        except SipParseError:
            return ""

    def _respond(self, status: int, reason: str, body: bytes = b"") -> SipMessage:
        resp = response_to(self.invite, status, reason, to_tag=self.local_tag)
        resp.add("Contact", self.ua.contact)
        resp.add("Server", USER_AGENT)
        if body:
            resp.add("Allow", ALLOW)
            resp.add("Content-Type", "application/sdp")
            resp.body = body
        return resp

    def ringing(self) -> None:
        if self.state == "early":
            self.ua.send(self._respond(180, "Ringing"), self.source)

    def session_progress(self, body: bytes) -> None:
        """183 with our SDP: the caller hears the destination's early media through us."""
        if self.state == "early":
            self.answer_body = body
            self.ua.send(self._respond(183, "Session Progress", body), self.source)

    def answer(self, body: bytes) -> None:
        if self.state != "early":
            return
        self.answer_body = body
        resp = self._respond(200, "OK", body)
        self._final = resp
        self.state = "confirmed"
        data = resp.to_bytes()
        self.ua.send_bytes(data, self.source)
        self._retransmit = _Retransmitter(
            lambda: self.ua.send_bytes(data, self.source), on_timeout=self._no_ack
        )
        self.ua.remember_response(self.invite, resp)

    def _no_ack(self) -> None:
        log.warning("call %s: no ACK for 200 OK, hanging up", self.call_id)
        self.hangup()

    def reject(self, status: int, reason: str) -> None:
        if self.state != "early":
            return
        resp = self._respond(status, reason)
        self._final = resp
        self.state = "terminated"
        self.ua.send(resp, self.source)
        self.ua.remember_response(self.invite, resp)
        # the ACK for an error is absorbed by the endpoint; the call is forgotten later
        self.ua.forget_later(self.call_id)

    def hangup(self) -> None:
        """BYE when confirmed, 480 when still early."""
        if self.state == "early":
            self.reject(480, "Temporarily Unavailable")
            return
        if self.state != "confirmed":
            return
        self.state = "terminated"
        if self._retransmit is not None:
            self._retransmit.stop()
        self._cseq += 1
        peer = self.invite.get("Contact") or self.invite.header("From")
        bye = SipMessage(method="BYE", uri=name_addr_uri(peer))
        bye.add("Via", self.ua.via())
        bye.add("Max-Forwards", "70")
        to = self.invite.header("To")
        bye.add("From", f"{to};tag={self.local_tag}" if header_param(to, "tag") is None else to)
        bye.add("To", self.invite.header("From"))
        bye.add("Call-ID", self.call_id)
        bye.add("CSeq", f"{self._cseq} BYE")
        bye.add("User-Agent", USER_AGENT)
        self.ua.send_request(bye, self.source)
        self.ua.forget_later(self.call_id)

    # -- requests from the peer in this dialog

    def handle(self, msg: SipMessage, source: Addr) -> None:
        method = msg.method
        if method == "ACK":
            if self._retransmit is not None:
                self._retransmit.stop()
                self._retransmit = None
            return
        if method == "BYE":
            self.ua.send(response_to(msg, 200, "OK", to_tag=self.local_tag), source)
            if self.state != "terminated":
                self.state = "terminated"
                if self._retransmit is not None:
                    self._retransmit.stop()
                self.ua.forget_later(self.call_id)
                if self.on_hangup:
                    self.on_hangup()
            return
        if method == "CANCEL":
            self.ua.send(response_to(msg, 200, "OK", to_tag=self.local_tag), source)
            if self.state == "early":
                self.reject(487, "Request Terminated")
                if self.on_hangup:
                    self.on_hangup()
            return
        if method == "INFO":
            digit = _parse_info_digit(msg)
            self.ua.send(response_to(msg, 200, "OK", to_tag=self.local_tag), source)
            if digit and self.on_digit:
                self.on_digit(digit)
            return
        if method == "INVITE":  # re-INVITE: keep our media as is
            resp = response_to(msg, 200, "OK", to_tag=self.local_tag)
            resp.add("Contact", self.ua.contact)
            resp.add("Content-Type", "application/sdp")
            resp.body = self.answer_body
            self.ua.send(resp, source)
            return
        if method == "OPTIONS":
            self.ua.send(self.ua.options_response(msg), source)
            return
        self.ua.send(response_to(msg, 405, "Method Not Allowed", to_tag=self.local_tag), source)


class OutboundCall:
    """The far end's leg (we are the UAC)."""

    def __init__(
        self, ua: SipUserAgent, target: str, destination: Addr, from_user: str, body: bytes
    ) -> None:
        self.ua = ua
        self.target = target
        self.destination = destination
        self.call_id = new_call_id(ua.host)
        self.local_tag = new_tag()
        self.remote_tag: str | None = None
        self.state = "calling"  # calling | proceeding | confirmed | terminated
        self.on_answer: Callable[[sdp.MediaDescription | None], None] | None = None
        self.on_progress: Callable[[int, sdp.MediaDescription | None], None] | None = None
        self.on_failure: Callable[[int, str], None] | None = None
        self.on_hangup: Callable[[], None] | None = None
        self.remote_contact: str = target
        self.remote_addr: Addr = destination
        self._cseq = 1
        self._timer_b: asyncio.TimerHandle | None = None
        self._ack: bytes | None = None
        self._cancel_wanted = False
        invite = SipMessage(method="INVITE", uri=target)
        self.branch = new_branch()
        invite.add("Via", ua.via(self.branch))
        invite.add("Max-Forwards", "70")
        invite.add("From", f"<sip:{from_user}@{ua.host}:{ua.port}>;tag={self.local_tag}")
        invite.add("To", f"<{target}>")
        invite.add("Call-ID", self.call_id)
        invite.add("CSeq", "1 INVITE")
        invite.add("Contact", ua.contact)
        invite.add("Allow", ALLOW)
        invite.add("User-Agent", USER_AGENT)
        invite.add("Content-Type", "application/sdp")
        invite.body = body
        self.invite = invite
        self._invite_bytes = invite.to_bytes()
        self._retransmit: _Retransmitter | None = None

    def start(self) -> None:
        self.ua.send_bytes(self._invite_bytes, self.destination)
        # Timer A: retransmit with doubling intervals; Timer B: give up 64*T1 after the
        # first send, measured on the loop clock (not a sum of sleeps).
        self._retransmit = _Retransmitter(
            lambda: self.ua.send_bytes(self._invite_bytes, self.destination),
            cap=self.ua.timer_b, limit=self.ua.timer_b,
        )  # fmt: skip
        self._timer_b = asyncio.get_running_loop().call_later(self.ua.timer_b, self._timeout)

    def _timeout(self) -> None:
        self._timer_b = None
        if self.state == "calling":
            self._fail(408, "Request Timeout")

    def _fail(self, status: int, reason: str) -> None:
        self._stop_retransmit()
        self.state = "terminated"
        self.ua.forget_later(self.call_id)
        if self.on_failure:
            self.on_failure(status, reason)

    def transport_failed(self, error: str) -> None:
        """An ICMP error came back for this call's INVITE: fail now (RFC 3261 §8.1.3.1)."""
        if self.state == "calling":
            self._fail(503, f"Service Unavailable ({error})")

    def _stop_retransmit(self) -> None:
        if self._retransmit is not None:
            self._retransmit.stop()
            self._retransmit = None
        if self._timer_b is not None:
            self._timer_b.cancel()
            self._timer_b = None

    def handle_response(self, resp: SipMessage, source: Addr) -> None:
        status = resp.status or 0
        _, method = resp.cseq
        if method != "INVITE":
            return  # responses to BYE / CANCEL need no action
        if status < 200:
            if self.state == "calling":
                self.state = "proceeding"
                # Proceeding: no more retransmissions and no Timer B (RFC 3261 §17.1.1.2);
                # how long it may ring is the application's no-answer timer.
                self._stop_retransmit()
                if self._cancel_wanted:
                    self._send_cancel()
            if status > 100 and self.state == "proceeding" and not self._cancel_wanted:
                early: sdp.MediaDescription | None = None
                with contextlib.suppress(sdp.SdpError, UnicodeDecodeError):
                    early = sdp.parse(resp.body) if resp.body else None
                if self.on_progress:
                    self.on_progress(status, early)
            return
        self._stop_retransmit()
        if 200 <= status < 300:
            if self._ack is not None:  # 200 retransmission: ACK again
                self.ua.send_bytes(self._ack, source)
                return
            self.remote_tag = resp.to_tag
            self.remote_addr = source
            contact = resp.get("Contact")
            if contact:
                self.remote_contact = name_addr_uri(contact)
            ack = self._in_dialog("ACK", 1, resp.header("To"))
            self._ack = ack.to_bytes()
            self.ua.send_bytes(self._ack, source)
            if self.state == "terminated" or self._cancel_wanted:
                self.state = "confirmed"
                self.bye()  # 200 crossed our CANCEL
                return
            self.state = "confirmed"
            offer: sdp.MediaDescription | None = None
            with contextlib.suppress(sdp.SdpError, UnicodeDecodeError):
                offer = sdp.parse(resp.body) if resp.body else None
            if self.on_answer:
                self.on_answer(offer)
            return
        # error response: ACK in the INVITE transaction (same branch)
        ack = SipMessage(method="ACK", uri=self.target)
        ack.add("Via", self.ua.via(self.branch))
        ack.add("Max-Forwards", "70")
        ack.add("From", self.invite.header("From"))
        ack.add("To", resp.header("To"))
        ack.add("Call-ID", self.call_id)
        ack.add("CSeq", "1 ACK")
        self.ua.send(ack, source)
        if self.state != "terminated":
            self.state = "terminated"
            self.ua.forget_later(self.call_id)
            if self.on_failure:
                self.on_failure(status, resp.reason)

    def _in_dialog(self, method: str, cseq: int, to_header: str) -> SipMessage:
        msg = SipMessage(method=method, uri=self.remote_contact)
        msg.add("Via", self.ua.via())
        msg.add("Max-Forwards", "70")
        msg.add("From", self.invite.header("From"))
        msg.add("To", to_header)
        msg.add("Call-ID", self.call_id)
        msg.add("CSeq", f"{cseq} {method}")
        msg.add("User-Agent", USER_AGENT)
        return msg

    def _send_cancel(self) -> None:
        cancel = SipMessage(method="CANCEL", uri=self.target)
        cancel.add("Via", self.ua.via(self.branch))
        cancel.add("Max-Forwards", "70")
        cancel.add("From", self.invite.header("From"))
        cancel.add("To", self.invite.header("To"))
        cancel.add("Call-ID", self.call_id)
        cancel.add("CSeq", "1 CANCEL")
        self.ua.send_request(cancel, self.destination)

    def release(self) -> None:
        """CANCEL while ringing, BYE once answered."""
        if self.state == "confirmed":
            self.bye()
        elif self.state == "proceeding" and not self._cancel_wanted:
            self._cancel_wanted = True
            self._send_cancel()
        elif self.state == "calling":
            # CANCEL only after a provisional response (RFC 3261 §9.1)
            self._cancel_wanted = True

    def _remote_to(self) -> str:
        to = self.invite.header("To")
        return f"{to};tag={self.remote_tag}" if self.remote_tag else to

    def bye(self) -> None:
        if self.state != "confirmed":
            return
        self.state = "terminated"
        self._cseq += 1
        bye = self._in_dialog("BYE", self._cseq, self._remote_to())
        self.ua.send_request(bye, self.destination)
        self.ua.forget_later(self.call_id)

    def send_info_digit(self, digit: str, duration_ms: int = 100) -> None:
        """DTMF as SIP INFO (application/dtmf-relay), for a destination without
        telephone-event in its SDP."""
        if self.state != "confirmed":
            return
        self._cseq += 1
        info = self._in_dialog("INFO", self._cseq, self._remote_to())
        info.add("Content-Type", "application/dtmf-relay")
        info.body = f"Signal={digit}\r\nDuration={duration_ms}\r\n".encode()
        self.ua.send_request(info, self.remote_addr)

    def handle_request(self, msg: SipMessage, source: Addr) -> None:
        if msg.method == "BYE":
            self.ua.send(response_to(msg, 200, "OK"), source)
            if self.state != "terminated":
                self.state = "terminated"
                self.ua.forget_later(self.call_id)
                if self.on_hangup:
                    self.on_hangup()
            return
        if msg.method == "ACK":
            return
        if msg.method == "OPTIONS":
            self.ua.send(self.ua.options_response(msg), source)
            return
        self.ua.send(response_to(msg, 405, "Method Not Allowed"), source)


# --------------------------------------------------------------------------- endpoint


@dataclass(slots=True)
class _Sent:
    retransmitter: _Retransmitter


class SipUserAgent(asyncio.DatagramProtocol):
    """The UDP endpoint: parses datagrams, routes them to calls, answers stateless requests."""

    def __init__(self, host: str, port: int, on_invite: Callable[[InboundCall], None]) -> None:
        self.host = host
        self.port = port
        self.on_invite = on_invite
        self.transport: asyncio.DatagramTransport | None = None
        self.inbound: dict[str, InboundCall] = {}
        self.outbound: dict[str, OutboundCall] = {}
        self._responses: dict[tuple[str, str, str], bytes] = {}  # (call-id, branch, method)
        self._pending: dict[tuple[str, str, str], _Retransmitter] = {}  # our non-INVITE requests
        self._rejected: OrderedDict[tuple[str, str], bytes] = OrderedDict()  # overload 503s
        self.parse_errors = 0
        self.rejected_invites = 0
        self.timer_b = TIMER_B
        # Called for each new INVITE before any state is created: None admits it, a number
        # refuses it with 503 and that Retry-After (seconds).
        self.admit: Callable[[], int | None] | None = None
        self._sock: socket.socket | None = None

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    async def listen(
        cls, host: str, port: int, on_invite: Callable[[InboundCall], None]
    ) -> SipUserAgent:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET:
                # ICMP errors for datagrams we send come back on the error queue.
                sock.setsockopt(socket.SOL_IP, IP_RECVERR, 1)
            # Room for a burst while the loop is busy (the kernel caps it at rmem_max): a
            # flood is refused by admission control rather than dropped with everyone's
            # retransmissions and OPTIONS probes.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.bind((host, port))
            sock.setblocking(False)
            _, protocol = await loop.create_datagram_endpoint(
                lambda: cls(host, port, on_invite), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        protocol._sock = sock
        protocol.port = int(sock.getsockname()[1])
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def error_received(self, exc: Exception) -> None:
        """An ICMP error (IP_RECVERR): read each queued error with the datagram it concerns
        and fail the outgoing call that sent it."""
        sock = self._sock
        if sock is None:
            return
        for _ in range(64):  # bounded: the queue is drained, or the rest waits
            try:
                data, _anc, _flags, addr = sock.recvmsg(MAX_DATAGRAM, 512, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                log.debug("SIP socket error queue: %s", err)
                return
            self._transport_error(data, addr, exc)

    def _transport_error(self, data: bytes, addr: Addr, exc: Exception) -> None:
        # The ICMP error quotes only the start of our datagram (about 500 bytes): enough for
        # the request line and our headers, not for a full parse of an INVITE with SDP.
        call_id, method = _quoted_call_id(data)
        if not call_id:
            return
        log.info("SIP to %s:%s failed: %s (call %s)", addr[0], addr[1], exc, call_id)
        for key in [k for k in self._pending if k[0] == call_id]:
            self._pending.pop(key).stop()
        call = self.outbound.get(call_id)
        if call is not None and method == "INVITE":
            call.transport_failed(type(exc).__name__)

    def close(self) -> None:
        for r in self._pending.values():
            r.stop()
        self._pending.clear()
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    # ---------------------------------------------------------------- helpers

    @property
    def contact(self) -> str:
        return f"<sip:ivr@{self.host}:{self.port}>"

    def via(self, branch: str | None = None) -> str:
        return f"SIP/2.0/UDP {self.host}:{self.port};branch={branch or new_branch()};rport"

    def send_bytes(self, data: bytes, addr: Addr) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)

    def send(self, msg: SipMessage, addr: Addr) -> None:
        self.send_bytes(msg.to_bytes(), addr)

    def send_request(self, msg: SipMessage, addr: Addr) -> None:
        """A non-INVITE request, retransmitted (Timer E) until any response."""
        data = msg.to_bytes()
        self.send_bytes(data, addr)
        key = (msg.call_id, msg.branch or "", msg.cseq[1])
        old = self._pending.pop(key, None)
        if old is not None:
            old.stop()
        self._pending[key] = _Retransmitter(
            lambda: self.send_bytes(data, addr), limit=TIMER_B,
            on_timeout=lambda: self._forget_pending(key),
        )  # fmt: skip

    def _forget_pending(self, key: tuple[str, str, str]) -> None:
        self._pending.pop(key, None)

    def remember_response(self, request: SipMessage, response: SipMessage) -> None:
        key = (request.call_id, request.branch or "", request.method or "")
        self._responses[key] = response.to_bytes()

    def forget_later(self, call_id: str, delay: float = TIMER_B) -> None:
        def forget() -> None:
            self.inbound.pop(call_id, None)
            self.outbound.pop(call_id, None)
            for key in [k for k in self._responses if k[0] == call_id]:
                del self._responses[key]

        asyncio.get_running_loop().call_later(delay, forget)

    def options_response(self, msg: SipMessage) -> SipMessage:
        resp = response_to(msg, 200, "OK", to_tag=new_tag())
        resp.add("Allow", ALLOW)
        resp.add("Accept", "application/sdp")
        resp.add("Server", USER_AGENT)
        return resp

    def call(self, target: str, destination: Addr, from_user: str, body: bytes) -> OutboundCall:
        call = OutboundCall(self, target, destination, from_user, body)
        self.outbound[call.call_id] = call
        call.start()
        return call

    # ---------------------------------------------------------------- receive

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        if not data.strip():
            return  # keep-alive CRLF
        try:
            msg = parse(data)
        except SipParseError as exc:
            self.parse_errors += 1
            log.debug("dropping malformed SIP from %s: %s", addr, exc)
            return
        try:
            if msg.is_request:
                self._request(msg, addr)
            else:
                self._response(msg, addr)
        except SipParseError as exc:
            self.parse_errors += 1
            log.debug("dropping bad SIP from %s: %s", addr, exc)
        except Exception:  # a bug in one call must not stop the endpoint
            log.exception("error handling SIP message from %s", addr)

    def _response(self, msg: SipMessage, addr: Addr) -> None:
        pending = self._pending.pop((msg.call_id, msg.branch or "", msg.cseq[1]), None)
        if pending is not None:
            pending.stop()
        call = self.outbound.get(msg.call_id)
        if call is not None:
            call.handle_response(msg, addr)

    def _request(self, msg: SipMessage, addr: Addr) -> None:
        key = (msg.call_id, msg.branch or "", msg.method or "")
        if msg.method != "ACK" and key in self._responses:
            self.send_bytes(self._responses[key], addr)  # retransmitted request
            return
        if msg.method == "INVITE" and (key[0], key[1]) in self._rejected:
            self.send_bytes(self._rejected[(key[0], key[1])], addr)  # refused while overloaded
            return
        call_id = msg.call_id
        if call_id in self.inbound:
            inbound = self.inbound[call_id]
            if msg.method == "INVITE" and msg.to_tag is None:
                # retransmission of the initial INVITE before a final answer
                self.send(response_to(msg, 100, "Trying"), addr)
                return
            inbound.handle(msg, addr)
            return
        if call_id in self.outbound:
            self.outbound[call_id].handle_request(msg, addr)
            return
        if msg.method == "INVITE" and msg.to_tag is None:
            self._new_invite(msg, addr)
        elif msg.method == "OPTIONS":
            self.send(self.options_response(msg), addr)
        elif msg.method == "ACK":
            return
        else:
            resp = response_to(msg, 481, "Call/Transaction Does Not Exist", to_tag=new_tag())
            self.send(resp, addr)

    def _refuse_overload(self, msg: SipMessage, addr: Addr, retry_after: int) -> None:
        resp = response_to(msg, 503, "Service Unavailable", to_tag=new_tag())
        resp.add("Retry-After", str(max(1, retry_after)))
        resp.add("Server", USER_AGENT)
        data = resp.to_bytes()
        self.send_bytes(data, addr)
        self.rejected_invites += 1
        self._rejected[(msg.call_id, msg.branch or "")] = data
        while len(self._rejected) > REJECTED_CACHE:
            self._rejected.popitem(last=False)

    def _new_invite(self, msg: SipMessage, addr: Addr) -> None:
        if self.admit is not None:
            retry_after = self.admit()
            if retry_after is not None:
                self._refuse_overload(msg, addr, retry_after)
                return
        # reply to the top Via's rport/received when present (symmetric response routing)
        self.send(response_to(msg, 100, "Trying"), addr)
        call = InboundCall(self, msg, addr)
        if msg.body:
            try:
                call.offer = sdp.parse(msg.body)
                _ = call.offer.codec
            except (sdp.SdpError, UnicodeDecodeError):
                call.reject(488, "Not Acceptable Here")
                self.inbound[call.call_id] = call
                return
        else:
            call.reject(488, "Not Acceptable Here")  # no late offer support
            self.inbound[call.call_id] = call
            return
        self.inbound[call.call_id] = call
        self.on_invite(call)
