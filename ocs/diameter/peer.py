"""Sans-I/O Diameter peer connection: bytes in, events and bytes out (the h11 model).

Why this exists: the base protocol rules (CER/CEA before anything else, DWR/DWA watchdog
with Tw, DPR/DPA, answers matched by hop-by-hop id, error answers for bad requests) are a
state machine that must be tested without sockets. The asyncio server and client only
move bytes and timers: they call `receive_data()` with what the socket gave, act on the
returned events (`Send`, `Close`, `CreditControl`, ...) and call `poll(now)` on a timer.

A broken message gets an error answer when its header could be read; a stream that cannot
be framed any more yields `Close`. Nothing here raises on bad input from the network.
"""

from __future__ import annotations

import enum
import fnmatch
import itertools
import logging
import random
import time
from dataclasses import dataclass, field

from ocs.credit_control import CCAnswer, CCRequest

from . import codec as c
from .cca import AnswerEncoder, decode_cca
from .ccr import CCRFrame, decode_ccr, encode_ccr
from .errors import FramingError, ProtocolError
from .grammar import rules, validate

log = logging.getLogger("ocs.diameter.peer")

PRODUCT_NAME = "open-prepaid-ocs"
FIRMWARE_REVISION = 1
VENDOR_ID = 0  # no IANA enterprise number of our own

SUCCESS = 2001
NO_COMMON_APPLICATION = 5010
UNKNOWN_PEER = 3010
COMMAND_UNSUPPORTED = 3001
APPLICATION_UNSUPPORTED = 3007
INVALID_HDR_BITS = 3008
UNABLE_TO_COMPLY = 5012
UNSUPPORTED_VERSION = 5011
INVALID_MESSAGE_LENGTH = 5015

DISCONNECT_REBOOTING = 0
DISCONNECT_BUSY = 1
DISCONNECT_DO_NOT_WANT_TO_TALK = 2


class PeerState(enum.Enum):
    WAIT_CER = "wait-cer"  # server: connected, no CER yet
    WAIT_CEA = "wait-cea"  # client: CER sent
    OPEN = "open"
    CLOSING = "closing"  # DPR sent or received
    CLOSED = "closed"


# ---- events / actions -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    reason: str


@dataclass(frozen=True, slots=True)
class PeerOpened:
    origin_host: str
    origin_realm: str


@dataclass(frozen=True, slots=True)
class CapabilitiesFailed:
    result_code: int


@dataclass(frozen=True, slots=True)
class CreditControl:
    """Server: a valid CCR to hand to the charging engine, answered with `answer_ccr`."""

    frame: CCRFrame

    @property
    def request(self) -> CCRequest:
        return self.frame.request


@dataclass(frozen=True, slots=True)
class AnswerReceived:
    """An answer to one of our requests (RAA/ASA on the server, CCA on the client)."""

    hbh: int
    command_code: int
    result_code: int
    message: bytes
    answer: CCAnswer | None = None


@dataclass(frozen=True, slots=True)
class ServerRequest:
    """Client: a RAR or ASR from the server; answer with `ClientPeer.answer_request`."""

    command_code: int
    session_id: str
    header: c.Header = field(repr=False)
    session_avp: bytes = field(repr=False)


Event = Send | Close | PeerOpened | CapabilitiesFailed | CreditControl | AnswerReceived | \
    ServerRequest


@dataclass(frozen=True, slots=True)
class LocalIdentity:
    origin_host: str
    origin_realm: str
    host_ip: str = "127.0.0.1"
    product_name: str = PRODUCT_NAME
    origin_state_id: int = field(default_factory=lambda: int(time.time()) & 0xFFFFFFFF)


def _capabilities(ident: LocalIdentity) -> bytes:
    """The capability AVPs we advertise in CER and CEA."""
    return b"".join((
        c.avp_address(c.K_HOST_IP_ADDRESS, ident.host_ip),
        c.avp_u32(c.K_VENDOR_ID, VENDOR_ID),
        c.avp_str(c.K_PRODUCT_NAME, ident.product_name, m=False),
        c.avp_u32(c.K_ORIGIN_STATE_ID, ident.origin_state_id),
        c.avp_u32(c.K_SUPPORTED_VENDOR_ID, c.VENDOR_3GPP),
        c.avp_u32(c.K_AUTH_APPLICATION_ID, c.APP_CREDIT_CONTROL),
        c.avp_group(c.K_VENDOR_SPECIFIC_APPLICATION_ID,
                    c.avp_u32(c.K_VENDOR_ID, c.VENDOR_3GPP),
                    c.avp_u32(c.K_AUTH_APPLICATION_ID, c.APP_CREDIT_CONTROL)),
        c.avp_u32(c.K_FIRMWARE_REVISION, FIRMWARE_REVISION, m=False),
    ))


class _Peer:
    """Shared machinery: framing, watchdog, DWR/DWA, DPR/DPA, hop-by-hop ids."""

    def __init__(self, ident: LocalIdentity, *, tw: float = 30.0,
                 now: float | None = None, max_message: int = c.MAX_MESSAGE_LEN) -> None:
        self.ident = ident
        self.tw = tw
        self.enc = AnswerEncoder(ident.origin_host, ident.origin_realm)
        self.max_message = max_message
        self.framer = c.Framer(max_message)
        self.state = PeerState.CLOSED
        self.remote_host: str | None = None
        self.remote_realm: str | None = None
        t = time.monotonic() if now is None else now
        self.last_rx = t
        self.dwr_sent_at: float | None = None
        self._hbh = itertools.count(random.getrandbits(31) + 1)
        self._e2e = itertools.count(((ident.origin_state_id & 0xFFF) << 20)
                                    | random.getrandbits(20))
        self.pending: dict[int, tuple[int, float]] = {}  # hbh -> (command code, sent at)

    # -- ids --
    def next_hbh(self) -> int:
        return next(self._hbh) & 0xFFFFFFFF

    def next_e2e(self) -> int:
        return next(self._e2e) & 0xFFFFFFFF

    def _request(self, code: int, app: int, body: bytes, *, proxiable: bool = False,
                 now: float | None = None) -> tuple[int, bytes]:
        hbh = self.next_hbh()
        flags = c.FLAG_R | (c.FLAG_P if proxiable else 0)
        self.pending[hbh] = (code, time.monotonic() if now is None else now)
        return hbh, c.encode_message(flags, code, app, hbh, self.next_e2e(), body)

    # -- input --
    def receive_data(self, data: bytes, now: float | None = None) -> list[Event]:
        if self.state is PeerState.CLOSED:
            return []
        try:
            messages = self.framer.feed(data)
        except FramingError as exc:
            self.state = PeerState.CLOSED
            return [Close(f"framing error: {exc}")]
        if not messages:
            return []
        self.last_rx = time.monotonic() if now is None else now
        self.dwr_sent_at = None  # any traffic proves the peer alive (RFC 3539)
        events: list[Event] = []
        for msg in messages:
            try:
                self._dispatch(msg, events)
            except ProtocolError as exc:
                events.append(Send(self.enc.error_answer(
                    c.parse_header(msg), exc.result_code, exc.message, exc.failed_avp)))
            except Exception:  # a bug must not take the connection or server down
                log.exception("unexpected error handling a message; answering 5012")
                h = c.parse_header(msg)
                if h.is_request:
                    events.append(Send(self.enc.error_answer(h, UNABLE_TO_COMPLY,
                                                             "internal error")))
            if self.state is PeerState.CLOSED:
                break
        return events

    def _dispatch(self, msg: bytes, events: list[Event]) -> None:
        h = c.parse_header(msg)
        if isinstance(msg, c.Oversized):
            self._on_oversized(h, msg, events)
            return
        if h.flags & c.HEADER_RESERVED or (h.is_request and h.is_error):
            if h.is_request:
                raise ProtocolError(INVALID_HDR_BITS, "invalid header flags")
            return  # a broken answer: drop it
        if h.is_request:
            self._on_request(h, msg, events)
        else:
            self._on_answer(h, msg, events)

    def _on_oversized(self, h: c.Header, msg: c.Oversized, events: list[Event]) -> None:
        """A message longer than `max_message`: its body was dropped unread."""
        log.warning("%d-byte message (command %d) above the %d-byte limit; %s", h.length,
                    h.code, self.max_message, "answered 5015" if h.is_request else "dropped")
        if h.is_request:
            events.append(Send(self.enc.error_answer(
                h, INVALID_MESSAGE_LENGTH, f"message of {h.length} bytes is longer than the "
                f"{self.max_message} bytes accepted", session_avp=_session_avp(msg, h))))
        else:
            self.pending.pop(h.hbh, None)

    def _on_request(self, h: c.Header, msg: bytes, events: list[Event]) -> None:
        code = h.code
        if code == c.CMD_DWR:
            validate(rules("DWR"), msg, _top(msg, h, "DWR"))
            events.append(Send(self._base_answer(h, SUCCESS, state_id=True)))
        elif code == c.CMD_DPR:
            validate(rules("DPR"), msg, _top(msg, h, "DPR"))
            events.append(Send(self._base_answer(h, SUCCESS)))
            # the sender of DPR closes the transport; we close too once the DPA is written
            events.append(Close("DPR received"))
            self.state = PeerState.CLOSED
        else:
            self._on_app_request(h, msg, events)

    def _on_app_request(self, h: c.Header, msg: bytes, events: list[Event]) -> None:
        raise ProtocolError(COMMAND_UNSUPPORTED, f"command {h.code} not supported")

    def _on_answer(self, h: c.Header, msg: bytes, events: list[Event]) -> None:
        sent = self.pending.pop(h.hbh, None)
        if sent is None:
            log.debug("dropping answer with unknown hop-by-hop id %x", h.hbh)
            return
        code = sent[0]
        if code != h.code:
            log.warning("answer command %d does not match request %d", h.code, code)
            return
        avps = c.walk_complete(msg, c.HEADER_LEN, h.length, _ANSWER_MAX_AVPS)
        rc_avp = c.find(avps, c.K_RESULT_CODE)
        try:
            rc = c.u32(msg, rc_avp) if rc_avp else 0
        except ProtocolError:
            rc = 0
        if code == c.CMD_DWR:
            return  # the DWA already reset the watchdog in receive_data
        if code == c.CMD_DPR:
            self.state = PeerState.CLOSED
            events.append(Close("DPA received"))
            return
        self._on_app_answer(h, msg, code, rc, avps, events)

    def _on_app_answer(self, h: c.Header, msg: bytes, code: int, rc: int,
                       avps: list[c.RawAvp], events: list[Event]) -> None:
        events.append(AnswerReceived(h.hbh, code, rc, msg))

    def _base_answer(self, h: c.Header, rc: int, *, state_id: bool = False,
                     extra: bytes = b"", message: str = "") -> bytes:
        body = c.avp_u32(c.K_RESULT_CODE, rc) + self.enc.identity
        if state_id:
            body += c.avp_u32(c.K_ORIGIN_STATE_ID, self.ident.origin_state_id)
        body += extra
        if message:
            body += c.avp_str(c.K_ERROR_MESSAGE, message, m=False)
        flags = c.FLAG_E if 3000 <= rc < 4000 else 0
        return c.encode_message(flags, h.code, h.app_id, h.hbh, h.e2e, body)

    # -- timers --
    def poll(self, now: float | None = None) -> list[Event]:
        """Watchdog (RFC 3539): DWR after Tw of silence, close after another Tw unanswered."""
        t = time.monotonic() if now is None else now
        if self.state is PeerState.OPEN:
            if self.dwr_sent_at is not None:
                if t - self.dwr_sent_at >= self.tw:
                    self.state = PeerState.CLOSED
                    return [Close("watchdog: DWA not received")]
            elif t - self.last_rx >= self.tw:
                self.dwr_sent_at = t
                return [Send(self.build_dwr(now=t)[1])]
        return []

    def next_poll_in(self, now: float | None = None) -> float:
        t = time.monotonic() if now is None else now
        base = self.dwr_sent_at if self.dwr_sent_at is not None else self.last_rx
        return max(0.05, base + self.tw - t)

    # -- outgoing base requests --
    def build_dwr(self, now: float | None = None) -> tuple[int, bytes]:
        body = self.enc.identity + c.avp_u32(c.K_ORIGIN_STATE_ID, self.ident.origin_state_id)
        return self._request(c.CMD_DWR, c.APP_BASE, body, now=now)

    def build_dpr(self, cause: int = DISCONNECT_REBOOTING) -> bytes:
        self.state = PeerState.CLOSING
        body = self.enc.identity + c.avp_u32(c.K_DISCONNECT_CAUSE, cause)
        return self._request(c.CMD_DPR, c.APP_BASE, body)[1]

    def connection_lost(self) -> None:
        self.state = PeerState.CLOSED


_ANSWER_MAX_AVPS = 512  # answers are only searched for a few AVPs; ignore anything past this


def _top(msg: bytes, h: c.Header, grammar: str) -> list[c.RawAvp]:
    """The top-level AVPs of a request, at most one more than its grammar accepts (the
    validation then answers 5009), so a message of tiny AVPs costs a bounded walk."""
    return c.walk(msg, c.HEADER_LEN, h.length, rules(grammar).max_avps + 1)


def _origin(msg: bytes, avps: list[c.RawAvp]) -> tuple[str, str]:
    host_avp = c.find(avps, c.K_ORIGIN_HOST)
    realm_avp = c.find(avps, c.K_ORIGIN_REALM)
    host = c.text(msg, host_avp) if host_avp else ""
    realm = c.text(msg, realm_avp) if realm_avp else ""
    return host, realm


def _offers_credit_control(msg: bytes, avps: list[c.RawAvp]) -> bool:
    for a in avps:
        if a[0] == c.K_AUTH_APPLICATION_ID and c.u32(msg, a) in (c.APP_CREDIT_CONTROL,
                                                                  c.APP_RELAY):
            return True
        if a[0] == c.K_VENDOR_SPECIFIC_APPLICATION_ID:
            for s in c.walk(msg, a[2], a[3], 8):  # {Vendor-Id, Auth or Acct-Application-Id}
                if s[0] == c.K_AUTH_APPLICATION_ID and c.u32(msg, s) == c.APP_CREDIT_CONTROL:
                    return True
    return False


def certificate_admits(names: tuple[str, ...], origin_host: str) -> bool:
    """Does a certificate issued to `names` (its SAN DNS names, else its subject CN) prove
    the identity `origin_host`? A leading "*." label matches exactly one label (RFC 6125)."""
    host = origin_host.lower().rstrip(".")
    for name in names:
        n = name.lower().rstrip(".")
        if n == host:
            return True
        if n.startswith("*.") and "." in host:
            first, rest = host.split(".", 1)
            if first and rest == n[2:]:
                return True
    return False


class ServerPeer(_Peer):
    """The OCS side of one connection: waits for CER, then serves CCRs, sends RAR/ASR.

    Before the CER only `pre_cer_max` bytes of one message are accepted (a CER is small);
    anything longer closes the connection. After it, a request longer than `max_message` is
    answered 5015 and its body dropped unread.

    `local_peers` are Origin-Hosts admitted only when `is_local` (the connection comes from
    this machine), whatever the peer list says: the built-in IVR bridge's own identity.
    `certificate_names` (TLS connections) are the names of the peer's verified certificate;
    the CER's Origin-Host must be one of them (3010 otherwise).
    """

    def __init__(self, ident: LocalIdentity,
                 allowed_peers: frozenset[str] | set[str] = frozenset({"*"}), *,
                 tw: float = 30.0, now: float | None = None,
                 max_message: int = c.MAX_MESSAGE_LEN, pre_cer_max: int = c.PRE_CER_MAX_LEN,
                 local_peers: frozenset[str] = frozenset(), is_local: bool = False,
                 certificate_names: tuple[str, ...] | None = None) -> None:
        super().__init__(ident, tw=tw, now=now, max_message=max_message)
        self.allowed = frozenset(p.lower() for p in allowed_peers)
        self._patterns = tuple(p for p in self.allowed if "*" in p and p != "*")
        self.local_peers = frozenset(p.lower() for p in local_peers)
        self.is_local = is_local
        self.certificate_names = certificate_names
        self.framer.max_length = min(pre_cer_max, max_message)
        self.state = PeerState.WAIT_CER
        self.created = self.last_rx

    def poll(self, now: float | None = None) -> list[Event]:
        t = time.monotonic() if now is None else now
        if self.state is PeerState.WAIT_CER and t - self.created >= self.tw:
            self.state = PeerState.CLOSED
            return [Close("no CER received")]
        return super().poll(t)

    def _on_request(self, h: c.Header, msg: bytes, events: list[Event]) -> None:
        if h.code == c.CMD_CER:
            self._on_cer(h, msg, events)
            return
        if self.state is PeerState.WAIT_CER:
            # RFC 6733 5.6: nothing but CER before the capabilities exchange
            events.append(Send(self.enc.error_answer(h, UNKNOWN_PEER,
                                                     "capabilities exchange required")))
            events.append(Close("request before CER"))
            self.state = PeerState.CLOSED
            return
        super()._on_request(h, msg, events)

    def _on_oversized(self, h: c.Header, msg: c.Oversized, events: list[Event]) -> None:
        if h.is_request and h.code == c.CMD_CCR and h.app_id == c.APP_CREDIT_CONTROL:
            log.warning("%d-byte CCR above the %d-byte limit; answered 5015", h.length,
                        self.max_message)
            exc = ProtocolError(INVALID_MESSAGE_LENGTH, f"message of {h.length} bytes is "
                                f"longer than the {self.max_message} bytes accepted")
            events.append(Send(self._ccr_error(h, msg, exc)))
            return
        super()._on_oversized(h, msg, events)

    def admits(self, origin_host: str) -> bool:
        """Is this Origin-Host in the peer list? Entries are host names, "*" (anyone) or
        shell-style patterns such as "*.ims.example.net" (any host of that domain)."""
        host = origin_host.lower()
        if "*" in self.allowed or host in self.allowed:
            return True
        if self.is_local and host in self.local_peers:
            return True
        return any(fnmatch.fnmatchcase(host, p) for p in self._patterns)

    def _refuse(self, h: c.Header, events: list[Event], rc: int, why: str,
                extra: bytes = b"") -> None:
        events.append(Send(self._base_answer(h, rc, extra=extra, message=why)))
        events.append(Close(why))
        self.state = PeerState.CLOSED

    def _on_cer(self, h: c.Header, msg: bytes, events: list[Event]) -> None:
        avps = _top(msg, h, "CER")
        host, realm = _origin(msg, avps)
        caps = _capabilities(self.ident)
        if self.state is not PeerState.WAIT_CER:
            events.append(Send(self.enc.error_answer(h, UNABLE_TO_COMPLY, "CER already done")))
            return
        if not self.admits(host):
            self._refuse(h, events, UNKNOWN_PEER, f"unknown peer {host!r}", caps)
            return
        names = self.certificate_names
        if names is not None and not certificate_admits(names, host):
            self._refuse(h, events, UNKNOWN_PEER, f"Origin-Host {host!r} is not the identity "
                         f"of the peer's certificate ({', '.join(names) or 'no name'})", caps)
            return
        try:
            validate(rules("CER"), msg, avps)
        except ProtocolError as exc:  # a CEA with the error, then close (RFC 6733 5.3)
            events.append(Send(self.enc.error_answer(h, exc.result_code, exc.message,
                                                     exc.failed_avp)))
            events.append(Close(f"invalid CER: {exc.message}"))
            self.state = PeerState.CLOSED
            return
        if not _offers_credit_control(msg, avps):
            self._refuse(h, events, NO_COMMON_APPLICATION, "no common application", caps)
            return
        if c.find(avps, c.K_HOST_IP_ADDRESS) is None:
            # RFC 6733 requires it, but Kamailio's cdp omits it when its socket lookup fails;
            # refusing would cost that switch a 30 s reconnect for nothing we need.
            log.warning("CER from %s without Host-IP-Address: accepted", host)
        self.remote_host, self.remote_realm = host, realm
        self.state = PeerState.OPEN
        self.framer.max_length = self.max_message
        self.framer.skip_oversized = True
        events.append(Send(self._base_answer(h, SUCCESS, extra=caps)))
        events.append(PeerOpened(host, realm))

    def _on_app_request(self, h: c.Header, msg: bytes, events: list[Event]) -> None:
        if h.code != c.CMD_CCR:
            raise ProtocolError(COMMAND_UNSUPPORTED, f"command {h.code} not supported")
        if h.app_id != c.APP_CREDIT_CONTROL:
            raise ProtocolError(APPLICATION_UNSUPPORTED, f"application {h.app_id} not supported")
        try:
            frame = decode_ccr(msg, h)
        except ProtocolError as exc:
            events.append(Send(self._ccr_error(h, msg, exc)))
            return
        events.append(CreditControl(frame))

    def _ccr_error(self, h: c.Header, msg: bytes, exc: ProtocolError) -> bytes:
        """A CCA carrying an error Result-Code, with what could be read of the request."""
        if 3000 <= exc.result_code < 4000:
            session = _session_avp(msg, h)
            return self.enc.error_answer(h, exc.result_code, exc.message, exc.failed_avp,
                                         session)
        session_avp = b""
        rtype, rnum = 0, 0
        avps = c.walk_complete(msg, c.HEADER_LEN, h.length, rules("CCR").max_avps)
        for a in avps:
            try:
                if a[0] == c.K_SESSION_ID and not session_avp:
                    session_avp = c.raw_avp(msg, a)
                elif a[0] == c.K_CC_REQUEST_TYPE:
                    rtype = c.i32(msg, a)
                elif a[0] == c.K_CC_REQUEST_NUMBER:
                    rnum = c.u32(msg, a)
            except ProtocolError:
                pass
        if not session_avp or rtype not in (1, 2, 3, 4):
            return self.enc.error_answer(h, exc.result_code, exc.message, exc.failed_avp,
                                         session_avp)
        from ocs.credit_control import RequestType

        ans = CCAnswer(result_code=exc.result_code, request_type=RequestType(rtype),
                       request_number=rnum, error_message=exc.message)
        return self.enc.cca_for(session_avp, h.hbh, h.e2e, h.flags, ans, exc.failed_avp)

    def answer_ccr(self, frame: CCRFrame, answer: CCAnswer) -> bytes:
        return self.enc.cca(frame, answer)

    def build_rar(self, session_id: str) -> tuple[int, bytes]:
        return self._request(c.CMD_RAR, c.APP_CREDIT_CONTROL, b"".join((
            c.avp_str(c.K_SESSION_ID, session_id),
            self.enc.identity,
            c.avp_str(c.K_DESTINATION_REALM, self.remote_realm or ""),
            c.avp_str(c.K_DESTINATION_HOST, self.remote_host or ""),
            c.avp_u32(c.K_AUTH_APPLICATION_ID, c.APP_CREDIT_CONTROL),
            c.avp_u32(c.K_RE_AUTH_REQUEST_TYPE, 0),  # AUTHORIZE_ONLY
        )), proxiable=True)

    def build_asr(self, session_id: str) -> tuple[int, bytes]:
        return self._request(c.CMD_ASR, c.APP_CREDIT_CONTROL, b"".join((
            c.avp_str(c.K_SESSION_ID, session_id),
            self.enc.identity,
            c.avp_str(c.K_DESTINATION_REALM, self.remote_realm or ""),
            c.avp_str(c.K_DESTINATION_HOST, self.remote_host or ""),
            c.avp_u32(c.K_AUTH_APPLICATION_ID, c.APP_CREDIT_CONTROL),
        )), proxiable=True)


def _session_avp(msg: bytes, h: c.Header) -> bytes:
    """The Session-Id AVP of a request, if it can be read (it should be the first AVP)."""
    s = c.find(c.walk_complete(msg, c.HEADER_LEN, h.length, 64), c.K_SESSION_ID)
    return c.raw_avp(msg, s) if s else b""


class ClientPeer(_Peer):
    """A Gy client side of one connection: CER, CCRs, answers RAR/ASR from the server."""

    def __init__(self, ident: LocalIdentity, destination_realm: str, *, tw: float = 30.0,
                 now: float | None = None) -> None:
        super().__init__(ident, tw=tw, now=now)
        self.destination_realm = destination_realm

    def start(self) -> bytes:
        """The CER that opens the connection."""
        self.state = PeerState.WAIT_CEA
        body = self.enc.identity + _capabilities(self.ident)
        return self._request(c.CMD_CER, c.APP_BASE, body)[1]

    def build_ccr(self, req: CCRequest, *, vendor_specific_app: bool = False) -> tuple[int, bytes]:
        hbh = self.next_hbh()
        data = encode_ccr(req, hbh=hbh, e2e=self.next_e2e(),
                          destination_realm=self.destination_realm,
                          vendor_specific_app=vendor_specific_app)
        self.pending[hbh] = (c.CMD_CCR, time.monotonic())
        return hbh, data

    def _on_app_answer(self, h: c.Header, msg: bytes, code: int, rc: int,
                       avps: list[c.RawAvp], events: list[Event]) -> None:
        if code == c.CMD_CER:
            if rc == SUCCESS:
                self.remote_host, self.remote_realm = _origin(msg, avps)
                self.state = PeerState.OPEN
                events.append(PeerOpened(self.remote_host, self.remote_realm))
            else:
                self.state = PeerState.CLOSED
                events.append(CapabilitiesFailed(rc))
                events.append(Close(f"CEA result {rc}"))
            return
        answer = None
        if code == c.CMD_CCR:
            try:
                answer = decode_cca(msg)
            except (ProtocolError, ValueError) as exc:
                log.warning("undecodable CCA: %s", exc)
        events.append(AnswerReceived(h.hbh, code, rc, msg, answer))

    def _on_app_request(self, h: c.Header, msg: bytes, events: list[Event]) -> None:
        if h.code not in (c.CMD_RAR, c.CMD_ASR):
            raise ProtocolError(COMMAND_UNSUPPORTED, f"command {h.code} not supported")
        grammar = "RAR" if h.code == c.CMD_RAR else "ASR"
        avps = _top(msg, h, grammar)
        validate(rules(grammar), msg, avps)
        s = c.find(avps, c.K_SESSION_ID)
        assert s is not None  # required by the grammar
        events.append(ServerRequest(h.code, c.text(msg, s), h, c.raw_avp(msg, s)))

    def answer_request(self, req: ServerRequest, result_code: int = SUCCESS) -> bytes:
        """RAA / ASA for a server request."""
        h = req.header
        body = req.session_avp + c.avp_u32(c.K_RESULT_CODE, result_code) + self.enc.identity
        flags = (h.flags & c.FLAG_P) | (c.FLAG_E if 3000 <= result_code < 4000 else 0)
        return c.encode_message(flags, h.code, h.app_id, h.hbh, h.e2e, body)
