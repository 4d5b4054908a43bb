"""Credit-Control-Request: raw decode into `CCRequest`, and encode (for clients and tests).

Why this exists: the CCR decoder is the hottest code of the OCS. It validates the top level
against the CCR grammar, then reads only the AVPs the charging engine uses, straight from
the bytes (no python-diameter objects). It reports what was really on the wire: e.g. a
Kamailio CCR without a top-level Auth-Application-Id is accepted because it carries
Vendor-Specific-Application-Id {10415, Auth 4}, not because a default was filled in.
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
from .grammar import rules, validate

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
    for s in c.walk(buf, a[2], a[3]):
        if s[0] == c.K_CC_TIME:
            cc_time = c.u32(buf, s)
        elif s[0] == c.K_TARIFF_CHANGE_USAGE:
            v = c.i32(buf, s)
            if v not in TariffChangeUsage._value2member_map_:
                raise ProtocolError(5004, "unknown Tariff-Change-Usage", c.raw_avp(buf, s))
            tcu = TariffChangeUsage(v)
    return UsedUnits(cc_time, tcu)


def _requested_time(buf: bytes, a: RawAvp) -> int | None:
    for s in c.walk(buf, a[2], a[3]):
        if s[0] == c.K_CC_TIME:
            return c.u32(buf, s)
    return None


def _mscc(buf: bytes, a: RawAvp) -> MsccRequest:
    rg: int | None = None
    si: int | None = None
    requested = False
    rtime: int | None = None
    used: list[UsedUnits] = []
    for s in c.walk(buf, a[2], a[3]):
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

    def __init__(self) -> None:
        self.called: str | None = None
        self.calling: str | None = None
        self.call_id: str | None = None
        self.delay: int | None = None
        self.subs: list[SubscriptionId] = []


def _service_information(buf: bytes, a: RawAvp, out: _Ims) -> None:
    for s in c.walk(buf, a[2], a[3]):
        k = s[0]
        if k == c.K_SUBSCRIPTION_ID:
            out.subs.append(_subscription(buf, c.walk(buf, s[2], s[3])))
        elif k == c.K_IMS_INFORMATION:
            icid: str | None = None
            user_session: str | None = None
            requested_party: str | None = None
            for t in c.walk(buf, s[2], s[3]):
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
                    out.subs.append(_subscription(buf, c.walk(buf, t[2], t[3])))
                elif tk == c.K_TIME_STAMPS:
                    req_ts = resp_ts = None
                    for u in c.walk(buf, t[2], t[3]):
                        if u[0] == c.K_SIP_REQUEST_TIMESTAMP:
                            req_ts = c.u32(buf, u)
                        elif u[0] == c.K_SIP_RESPONSE_TIMESTAMP:
                            resp_ts = c.u32(buf, u)
                    if req_ts is not None and resp_ts is not None:
                        out.delay = (resp_ts - req_ts) & 0xFFFFFFFF
            if out.called is None and requested_party is not None:
                out.called = requested_party
            out.call_id = icid or user_session or out.call_id


def decode_ccr(msg: bytes, header: c.Header | None = None) -> CCRFrame:
    """Decode a whole CCR message (header included) into a `CCRFrame`.

    Raises ProtocolError (with the Result-Code and Failed-AVP to answer) on any violation.
    """
    h = header or c.parse_header(msg)
    avps = c.walk(msg, c.HEADER_LEN, h.length)
    validate(rules("CCR"), msg, avps)

    session_id = origin_host = origin_realm = ""
    session_avp = b""
    req_type = 0
    req_number = 0
    subs: list[SubscriptionId] = []
    msccs: list[MsccRequest] | None = None
    requested = False
    rtime: int | None = None
    used: list[UsedUnits] = []
    action: RequestedAction | None = None
    event_ts: datetime | None = None
    user_name: str | None = None
    context: str | None = None
    term: int | None = None
    ims = _Ims()
    proxy_info = b""
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
            subs.append(_subscription(msg, c.walk(msg, a[2], a[3])))
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
            proxy_info += c.raw_avp(msg, a)
        elif k == c.K_VENDOR_SPECIFIC_APPLICATION_ID:
            for s in c.walk(msg, a[2], a[3]):
                if s[0] == c.K_AUTH_APPLICATION_ID and c.u32(msg, s) != c.APP_CREDIT_CONTROL:
                    raise ProtocolError(5004, "Auth-Application-Id must be 4",
                                        c.raw_avp(msg, a))
    for sub in ims.subs:
        if sub not in subs:
            subs.append(sub)
    request = CCRequest(
        session_id=session_id,
        origin_host=origin_host,
        origin_realm=origin_realm,
        request_type=RequestType(req_type),
        request_number=req_number,
        subscription_ids=tuple(subs),
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
    return CCRFrame(request, h.hbh, h.e2e, h.flags, session_avp, proxy_info)


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
