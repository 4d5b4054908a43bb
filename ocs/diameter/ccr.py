"""Credit-Control-Request: raw decode into `CCRequest`, and encode (for clients and tests).

Why this exists: the CCR decoder is the hottest code of the OCS. It validates the top level
against the CCR grammar, then reads only the AVPs the charging engine uses, straight from
the bytes (no python-diameter objects). It reports what was really on the wire: e.g. a
Kamailio CCR without a top-level Auth-Application-Id is accepted because it carries
Vendor-Specific-Application-Id {10415, Auth 4}, not because a default was filled in.

Every loop is one pass over one level and every count is bounded by the grammars (5009
DIAMETER_AVP_OCCURS_TOO_MANY_TIMES past the bound): the Subscription-Ids of the whole
request (top level, Service-Information, IMS-Information) share one budget, so a hostile
request cannot make the decoder, or the subscriber lookups after it, do more than a fixed
amount of work.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ocs.credit_control import (
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
from .codec import RawAvp
from .errors import ProtocolError
from .grammar import check_counts, group_rules, rules, too_many, validate

DEFAULT_SERVICE_CONTEXT = "32260@3gpp.org"


class CCRFrame:
    """A decoded CCR plus what the answer needs from the request header and body."""

    __slots__ = ("e2e", "flags", "hbh", "proxy_info", "request", "session_avp", "used_mscc")

    def __init__(
        self, request: CCRequest, hbh: int, e2e: int, flags: int, session_avp: bytes,
        proxy_info: bytes = b"",
    ) -> None:
        self.request = request
        self.hbh = hbh
        self.e2e = e2e
        self.flags = flags
        self.session_avp = session_avp  # the Session-Id AVP as received, echoed first in CCA
        self.proxy_info = proxy_info  # Proxy-Info AVPs as received, echoed in order (6.2)
        self.used_mscc = request.mscc is not None


def _children(buf: bytes, a: RawAvp, group: str) -> list[RawAvp]:
    """The AVPs inside grouped AVP `a`, with their counts checked against its grammar."""
    r = group_rules(group)
    avps = c.walk(buf, a[2], a[3], r.max_avps + 1)
    if len(avps) > 1:
        check_counts(r, buf, avps)
    return avps


class _Subscriptions:
    """The request's Subscription-Ids within one count budget: the top-level ones first, then
    those of Service-Information / IMS-Information, without repeats (ordered sets)."""

    __slots__ = ("limit", "nested", "seen", "top")

    def __init__(self) -> None:
        self.limit = rules("CCR").max_occurs[c.K_SUBSCRIPTION_ID]
        self.seen = 0
        self.top: dict[SubscriptionId, None] = {}
        self.nested: dict[SubscriptionId, None] = {}

    def add(self, buf: bytes, a: RawAvp, *, nested: bool = False) -> None:
        self.seen += 1
        if self.seen > self.limit:
            raise too_many(buf, a, f"more than {self.limit} Subscription-Id AVPs in the request")
        sub = _subscription(buf, _children(buf, a, "Subscription-Id"))
        (self.nested if nested else self.top)[sub] = None

    @property
    def ids(self) -> tuple[SubscriptionId, ...]:
        return tuple({**self.top, **self.nested})


def _subscription(buf: bytes, avps: list[RawAvp]) -> SubscriptionId:
    typ: int | None = None
    data: str | None = None
    for a in avps:
        k = a[0]
        if k == c.K_SUBSCRIPTION_ID_TYPE:
            v = c.i32(buf, a)
            if v not in SubscriptionIdType._value2member_map_:
                raise ProtocolError(5004, "unknown Subscription-Id-Type", c.raw_avp(buf, a))
            typ = v
        elif k == c.K_SUBSCRIPTION_ID_DATA:
            data = c.text(buf, a)
    if typ is None:
        raise ProtocolError(5005, "missing Subscription-Id-Type",
                            c.example_avp(c.K_SUBSCRIPTION_ID_TYPE))
    if data is None:
        raise ProtocolError(5005, "missing Subscription-Id-Data",
                            c.example_avp(c.K_SUBSCRIPTION_ID_DATA))
    return SubscriptionId(SubscriptionIdType(typ), data)


def _used(buf: bytes, a: RawAvp) -> UsedUnits:
    cc_time = 0
    tcu: TariffChangeUsage | None = None
    for s in _children(buf, a, "Used-Service-Unit"):
        if s[0] == c.K_CC_TIME:
            cc_time = c.u32(buf, s)
        elif s[0] == c.K_TARIFF_CHANGE_USAGE:
            v = c.i32(buf, s)
            if v not in TariffChangeUsage._value2member_map_:
                raise ProtocolError(5004, "unknown Tariff-Change-Usage", c.raw_avp(buf, s))
            tcu = TariffChangeUsage(v)
    return UsedUnits(cc_time, tcu)


def _requested_time(buf: bytes, a: RawAvp) -> int | None:
    for s in _children(buf, a, "Requested-Service-Unit"):
        if s[0] == c.K_CC_TIME:
            return c.u32(buf, s)
    return None


def _mscc(buf: bytes, a: RawAvp) -> MsccRequest:
    rg: int | None = None
    si: int | None = None
    requested = False
    rtime: int | None = None
    used: list[UsedUnits] = []
    for s in _children(buf, a, "Multiple-Services-Credit-Control"):
        k = s[0]
        if k == c.K_RATING_GROUP:
            rg = c.u32(buf, s)
        elif k == c.K_SERVICE_IDENTIFIER:
            if si is None:
                si = c.u32(buf, s)
        elif k == c.K_REQUESTED_SERVICE_UNIT:
            requested = True
            rtime = _requested_time(buf, s)
        elif k == c.K_USED_SERVICE_UNIT:
            used.append(_used(buf, s))
    return MsccRequest(rg, si, requested, rtime, tuple(used))


class _Ims:
    __slots__ = ("call_id", "called", "calling", "delay", "subs")

    def __init__(self, subs: _Subscriptions) -> None:
        self.called: str | None = None
        self.calling: str | None = None
        self.call_id: str | None = None
        self.delay: int | None = None
        self.subs = subs


def _service_information(buf: bytes, a: RawAvp, out: _Ims) -> None:
    for s in _children(buf, a, "Service-Information"):
        k = s[0]
        if k == c.K_SUBSCRIPTION_ID:
            out.subs.add(buf, s, nested=True)
        elif k == c.K_IMS_INFORMATION:
            icid: str | None = None
            user_session: str | None = None
            requested_party: str | None = None
            for t in _children(buf, s, "IMS-Information"):
                tk = t[0]
                if tk == c.K_CALLED_PARTY_ADDRESS:
                    out.called = c.text(buf, t)
                elif tk == c.K_CALLING_PARTY_ADDRESS:
                    out.calling = c.text(buf, t)
                elif tk == c.K_REQUESTED_PARTY_ADDRESS:
                    requested_party = c.text(buf, t)
                elif tk == c.K_IMS_CHARGING_IDENTIFIER:
                    icid = c.text(buf, t)
                elif tk == c.K_USER_SESSION_ID:
                    user_session = c.text(buf, t)
                elif tk == c.K_SUBSCRIPTION_ID:
                    out.subs.add(buf, t, nested=True)
                elif tk == c.K_TIME_STAMPS:
                    req_ts = resp_ts = None
                    for u in _children(buf, t, "Time-Stamps"):
                        if u[0] == c.K_SIP_REQUEST_TIMESTAMP:
                            req_ts = c.u32(buf, u)
                        elif u[0] == c.K_SIP_RESPONSE_TIMESTAMP:
                            resp_ts = c.u32(buf, u)
                    if req_ts is not None and resp_ts is not None:
                        # modulo 2**32 across the NTP era wrap; a response stamped before
                        # its request (clock step, broken client) gives no delay
                        delay = (resp_ts - req_ts) & 0xFFFFFFFF
                        out.delay = delay if delay < 0x80000000 else None
            if out.called is None and requested_party is not None:
                out.called = requested_party
            out.call_id = icid or user_session or out.call_id


def decode_ccr(msg: bytes, header: c.Header | None = None) -> CCRFrame:
    """Decode a whole CCR message (header included) into a `CCRFrame`.

    Raises ProtocolError (with the Result-Code and Failed-AVP to answer) on any violation.
    """
    h = header or c.parse_header(msg)
    r = rules("CCR")
    avps = c.walk(msg, c.HEADER_LEN, h.length, r.max_avps + 1)
    validate(r, msg, avps)

    session_id = origin_host = origin_realm = ""
    session_avp = b""
    req_type = 0
    req_number = 0
    subs = _Subscriptions()
    msccs: list[MsccRequest] | None = None
    requested = False
    rtime: int | None = None
    used: list[UsedUnits] = []
    action: RequestedAction | None = None
    event_ts: datetime | None = None
    user_name: str | None = None
    context: str | None = None
    term: int | None = None
    ims = _Ims(subs)
    proxy_info: list[bytes] = []
    for a in avps:
        k = a[0]
        if k == c.K_SESSION_ID:
            session_id = c.text(msg, a)
            session_avp = c.raw_avp(msg, a)
        elif k == c.K_ORIGIN_HOST:
            origin_host = c.text(msg, a)
        elif k == c.K_ORIGIN_REALM:
            origin_realm = c.text(msg, a)
        elif k == c.K_CC_REQUEST_TYPE:
            req_type = c.i32(msg, a)
        elif k == c.K_CC_REQUEST_NUMBER:
            req_number = c.u32(msg, a)
        elif k == c.K_SUBSCRIPTION_ID:
            subs.add(msg, a)
        elif k == c.K_MSCC:
            if msccs is None:
                msccs = []
            msccs.append(_mscc(msg, a))
        elif k == c.K_SERVICE_INFORMATION:
            _service_information(msg, a, ims)
        elif k == c.K_SERVICE_CONTEXT_ID:
            context = c.text(msg, a)
        elif k == c.K_REQUESTED_SERVICE_UNIT:
            requested = True
            rtime = _requested_time(msg, a)
        elif k == c.K_USED_SERVICE_UNIT:
            used.append(_used(msg, a))
        elif k == c.K_REQUESTED_ACTION:
            action = RequestedAction(c.i32(msg, a))
        elif k == c.K_EVENT_TIMESTAMP:
            event_ts = c.time_value(msg, a)
        elif k == c.K_USER_NAME:
            user_name = c.text(msg, a)
        elif k == c.K_TERMINATION_CAUSE:
            term = c.i32(msg, a)
        elif k == c.K_AUTH_APPLICATION_ID:
            if c.u32(msg, a) != c.APP_CREDIT_CONTROL:
                raise ProtocolError(5004, "Auth-Application-Id must be 4", c.raw_avp(msg, a))
        elif k == c.K_PROXY_INFO:
            proxy_info.append(c.raw_avp(msg, a))
        elif k == c.K_VENDOR_SPECIFIC_APPLICATION_ID:
            for s in _children(msg, a, "Vendor-Specific-Application-Id"):
                if s[0] == c.K_AUTH_APPLICATION_ID and c.u32(msg, s) != c.APP_CREDIT_CONTROL:
                    raise ProtocolError(5004, "Auth-Application-Id must be 4",
                                        c.raw_avp(msg, a))
    request = CCRequest(
        session_id=session_id,
        origin_host=origin_host,
        origin_realm=origin_realm,
        request_type=RequestType(req_type),
        request_number=req_number,
        subscription_ids=subs.ids,
        called_party=ims.called,
        calling_party=ims.calling,
        requested_action=action,
        mscc=tuple(msccs) if msccs is not None else None,
        requested=requested,
        requested_time=rtime,
        used=tuple(used),
        event_timestamp=event_ts,
        user_name=user_name,
        service_context_id=context,
        termination_cause=term,
        call_id=ims.call_id,
        connect_delay=ims.delay,
        retransmission=bool(h.flags & c.FLAG_T),
    )
    return CCRFrame(request, h.hbh, h.e2e, h.flags, session_avp, b"".join(proxy_info))


# ---- encode (client side) -------------------------------------------------------------


def _units(code: int, cc_time: int | None, tcu: TariffChangeUsage | None = None) -> bytes:
    parts = []
    if tcu is not None:
        parts.append(c.avp_u32(c.K_TARIFF_CHANGE_USAGE, int(tcu)))
    if cc_time is not None:
        parts.append(c.avp_u32(c.K_CC_TIME, cc_time))
    return c.avp_group(code, *parts)


def encode_ccr(
    req: CCRequest,
    *,
    hbh: int,
    e2e: int,
    destination_realm: str,
    vendor_specific_app: bool = False,
    ims_information: bool = True,
) -> bytes:
    """Encode a CCR from a `CCRequest`.

    `vendor_specific_app=True` mimics Kamailio: Vendor-Specific-Application-Id {10415, 4}
    instead of a top-level Auth-Application-Id. Called/Calling-Party-Address and the
    Call-ID go in Service-Information/IMS-Information when `ims_information` is set.
    """
    parts = [
        c.avp_str(c.K_SESSION_ID, req.session_id),
        c.avp_str(c.K_ORIGIN_HOST, req.origin_host),
        c.avp_str(c.K_ORIGIN_REALM, req.origin_realm),
        c.avp_str(c.K_DESTINATION_REALM, destination_realm),
    ]
    if vendor_specific_app:
        parts.append(c.avp_group(c.K_VENDOR_SPECIFIC_APPLICATION_ID,
                                 c.avp_u32(c.K_VENDOR_ID, c.VENDOR_3GPP),
                                 c.avp_u32(c.K_AUTH_APPLICATION_ID, c.APP_CREDIT_CONTROL)))
    else:
        parts.append(c.avp_u32(c.K_AUTH_APPLICATION_ID, c.APP_CREDIT_CONTROL))
    parts += [
        c.avp_str(c.K_SERVICE_CONTEXT_ID, req.service_context_id or DEFAULT_SERVICE_CONTEXT),
        c.avp_u32(c.K_CC_REQUEST_TYPE, int(req.request_type)),
        c.avp_u32(c.K_CC_REQUEST_NUMBER, req.request_number),
    ]
    if req.user_name is not None:
        parts.append(c.avp_str(c.K_USER_NAME, req.user_name))
    if req.event_timestamp is not None:
        parts.append(c.avp_time(c.K_EVENT_TIMESTAMP, req.event_timestamp))
    for s in req.subscription_ids:
        parts.append(c.avp_group(c.K_SUBSCRIPTION_ID,
                                 c.avp_u32(c.K_SUBSCRIPTION_ID_TYPE, int(s.type)),
                                 c.avp_str(c.K_SUBSCRIPTION_ID_DATA, s.data)))
    if req.termination_cause is not None:
        parts.append(c.avp_u32(c.K_TERMINATION_CAUSE, req.termination_cause))
    if req.requested_action is not None:
        parts.append(c.avp_u32(c.K_REQUESTED_ACTION, int(req.requested_action)))
    if req.mscc is not None:
        parts.append(c.avp_u32(c.K_MULTIPLE_SERVICES_INDICATOR, 1))
        for m in req.mscc:
            inner = []
            if m.requested:
                inner.append(_units(c.K_REQUESTED_SERVICE_UNIT, m.requested_time))
            for u in m.used:
                inner.append(_units(c.K_USED_SERVICE_UNIT, u.cc_time, u.tariff_change_usage))
            if m.service_identifier is not None:
                inner.append(c.avp_u32(c.K_SERVICE_IDENTIFIER, m.service_identifier))
            if m.rating_group is not None:
                inner.append(c.avp_u32(c.K_RATING_GROUP, m.rating_group))
            parts.append(c.avp_group(c.K_MSCC, *inner))
    else:
        if req.requested:
            parts.append(_units(c.K_REQUESTED_SERVICE_UNIT, req.requested_time))
        for u in req.used:
            parts.append(_units(c.K_USED_SERVICE_UNIT, u.cc_time, u.tariff_change_usage))
    ims = []
    if ims_information:
        if req.calling_party is not None:
            ims.append(c.avp_str(831, req.calling_party, vendor=c.VENDOR_3GPP))
        if req.called_party is not None:
            ims.append(c.avp_str(832, req.called_party, vendor=c.VENDOR_3GPP))
        if req.call_id is not None:
            ims.append(c.avp_str(841, req.call_id, vendor=c.VENDOR_3GPP))
        if req.connect_delay is not None:
            # TS 32.299 Time-Stamps: INVITE sent / answer received; the OCS takes the
            # difference as the CDR's connect delay.
            answered = req.event_timestamp or datetime.now(UTC)
            ims.append(c.avp_group(
                833,
                c.avp_time(834, answered - timedelta(seconds=req.connect_delay),
                           vendor=c.VENDOR_3GPP),
                c.avp_time(835, answered, vendor=c.VENDOR_3GPP),
                vendor=c.VENDOR_3GPP,
            ))
    if ims:
        parts.append(c.avp_group(873, c.avp_group(876, *ims, vendor=c.VENDOR_3GPP),
                                 vendor=c.VENDOR_3GPP))
    flags = c.FLAG_R | c.FLAG_P | (c.FLAG_T if req.retransmission else 0)
    return c.encode_message(flags, c.CMD_CCR, c.APP_CREDIT_CONTROL, hbh, e2e, b"".join(parts))
