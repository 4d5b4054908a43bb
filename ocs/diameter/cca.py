"""Credit-Control-Answer: encode from `CCAnswer` (server), decode into `CCAnswer` (client).

Why this exists: answers are built from pre-encoded pieces (Origin-Host/Realm with the
M-bit and Auth-Application-Id are encoded once per server; the request's Session-Id AVP is
echoed byte for byte) plus a few small AVP encoders, instead of python-diameter's generic
object model (~166 µs per CCA).

Where the balance goes (RFC 4006 / TS 32.299):
- `remaining_balance` -> 3GPP Remaining-Balance (2021, V-bit) at CCA top level,
  { Unit-Value { Value-Digits = units, Exponent = unit_price_exponent }, Currency-Code }.
- `cost_units` -> RFC 4006 Cost-Information (423) at CCA top level, same encoding; it is
  the cost of the event (PRICE_ENQUIRY, DIRECT_DEBITING) or of the session so far.
- Tariff-Time-Change goes inside Granted-Service-Unit (RFC 4006 8.17).
- Per-MSCC Result-Code, Validity-Time and Final-Unit-Indication live in the MSCC when the
  request used MSCC; otherwise GSU, Validity-Time and FUI are at the top level.
"""

from __future__ import annotations

from datetime import datetime

from ocs.credit_control import CCAnswer, FinalUnitAction, MsccAnswer, RequestType

from . import codec as c
from .ccr import CCRFrame


class AnswerEncoder:
    """Encodes CCAs and protocol-error answers for one local identity."""

    def __init__(self, origin_host: str, origin_realm: str) -> None:
        self.origin_host = origin_host
        self.origin_realm = origin_realm
        self._identity = c.avp_str(c.K_ORIGIN_HOST, origin_host) + c.avp_str(
            c.K_ORIGIN_REALM, origin_realm
        )
        self._auth_app = c.avp_u32(c.K_AUTH_APPLICATION_ID, c.APP_CREDIT_CONTROL)

    @property
    def identity(self) -> bytes:
        """Origin-Host + Origin-Realm, both with the M-bit."""
        return self._identity

    def cca(self, frame: CCRFrame, ans: CCAnswer) -> bytes:
        return self.cca_for(frame.session_avp, frame.hbh, frame.e2e, frame.flags, ans,
                            proxy_info=frame.proxy_info)

    def cca_for(self, session_avp: bytes, hbh: int, e2e: int, req_flags: int,
                ans: CCAnswer, failed_avp: bytes = b"", *, proxy_info: bytes = b"") -> bytes:
        u32 = c.avp_u32
        rc = int(ans.result_code)
        parts = [
            session_avp,
            u32(c.K_RESULT_CODE, rc),
            self._identity,
            self._auth_app,
            u32(c.K_CC_REQUEST_TYPE, int(ans.request_type)),
            u32(c.K_CC_REQUEST_NUMBER, ans.request_number),
        ]
        if ans.mscc is not None:
            for m in ans.mscc:
                parts.append(_mscc(m))
        else:
            if ans.granted_time is not None:
                parts.append(_gsu(ans.granted_time, ans.tariff_time_change))
            if ans.final_unit_action is not None:
                parts.append(_fui(ans.final_unit_action))
            if ans.validity_time is not None:
                parts.append(u32(c.K_VALIDITY_TIME, ans.validity_time))
        if ans.cost_units is not None:
            parts.append(c.avp_group(c.K_COST_INFORMATION,
                                     _unit_value(ans.cost_units * ans.unit_price_digits,
                                                 ans.unit_price_exponent),
                                     u32(c.K_CURRENCY_CODE, ans.currency_code)))
        if ans.remaining_balance is not None:
            parts.append(c.avp_group(2021,
                                     _unit_value(ans.remaining_balance * ans.unit_price_digits,
                                                 ans.unit_price_exponent),
                                     u32(c.K_CURRENCY_CODE, ans.currency_code),
                                     m=False, vendor=c.VENDOR_3GPP))
        if failed_avp:
            parts.append(c.avp(c.K_FAILED_AVP, failed_avp))
        elif ans.failed_avp_code is not None:
            parts.append(c.avp(c.K_FAILED_AVP, c.example_avp(ans.failed_avp_code)))
        if ans.error_message:
            parts.append(c.avp_str(c.K_ERROR_MESSAGE, ans.error_message, m=False))
        if proxy_info:
            parts.append(proxy_info)
        flags = (req_flags & c.FLAG_P) | (c.FLAG_E if 3000 <= rc < 4000 else 0)
        return c.encode_message(flags, c.CMD_CCR, c.APP_CREDIT_CONTROL, hbh, e2e,
                                b"".join(parts))

    def error_answer(self, header: c.Header, result_code: int, message: str = "",
                     failed_avp: bytes = b"", session_avp: bytes = b"") -> bytes:
        """A generic answer to any request (RFC 6733 7.2 format; E-bit for 3xxx)."""
        parts = []
        if session_avp:
            parts.append(session_avp)
        parts += [c.avp_u32(c.K_RESULT_CODE, result_code), self._identity]
        if message:
            parts.append(c.avp_str(c.K_ERROR_MESSAGE, message, m=False))
        if failed_avp:
            parts.append(c.avp(c.K_FAILED_AVP, failed_avp))
        flags = (header.flags & c.FLAG_P) | (c.FLAG_E if 3000 <= result_code < 4000 else 0)
        return c.encode_message(flags, header.code, header.app_id, header.hbh, header.e2e,
                                b"".join(parts))


def _unit_value(digits: int, exponent: int) -> bytes:
    return c.avp_group(c.K_UNIT_VALUE, c.avp_i64(c.K_VALUE_DIGITS, digits),
                       c.avp_i32(c.K_EXPONENT, exponent))


def _gsu(cc_time: int, ttc: datetime | None) -> bytes:
    inner = c.avp_u32(c.K_CC_TIME, cc_time)
    if ttc is not None:
        inner = c.avp_time(c.K_TARIFF_TIME_CHANGE, ttc) + inner
    return c.avp(c.K_GRANTED_SERVICE_UNIT, inner)


def _fui(action: FinalUnitAction) -> bytes:
    return c.avp(c.K_FINAL_UNIT_INDICATION, c.avp_u32(c.K_FINAL_UNIT_ACTION, int(action)))


def _mscc(m: MsccAnswer) -> bytes:
    u32 = c.avp_u32
    inner = []
    if m.granted_time is not None:
        inner.append(_gsu(m.granted_time, m.tariff_time_change))
    if m.service_identifier is not None:
        inner.append(u32(c.K_SERVICE_IDENTIFIER, m.service_identifier))
    if m.rating_group is not None:
        inner.append(u32(c.K_RATING_GROUP, m.rating_group))
    if m.validity_time is not None:
        inner.append(u32(c.K_VALIDITY_TIME, m.validity_time))
    inner.append(u32(c.K_RESULT_CODE, int(m.result_code)))
    if m.final_unit_action is not None:
        inner.append(_fui(m.final_unit_action))
    return c.avp(c.K_MSCC, b"".join(inner))


# ---- decode (client side) -------------------------------------------------------------


def _gsu_decode(buf: bytes, a: c.RawAvp) -> tuple[int | None, datetime | None]:
    t: int | None = None
    ttc: datetime | None = None
    for s in c.walk(buf, a[2], a[3]):
        if s[0] == c.K_CC_TIME:
            t = c.u32(buf, s)
        elif s[0] == c.K_TARIFF_TIME_CHANGE:
            ttc = c.time_value(buf, s)
    return t, ttc


def _fui_decode(buf: bytes, a: c.RawAvp) -> FinalUnitAction | None:
    s = c.find(c.walk(buf, a[2], a[3]), c.K_FINAL_UNIT_ACTION)
    return FinalUnitAction(c.i32(buf, s)) if s is not None else None


def _money(buf: bytes, a: c.RawAvp) -> tuple[int | None, int | None, int | None]:
    digits = exponent = currency = None
    for s in c.walk(buf, a[2], a[3]):
        if s[0] == c.K_UNIT_VALUE:
            for u in c.walk(buf, s[2], s[3]):
                if u[0] == c.K_VALUE_DIGITS:
                    digits = c.i64(buf, u)
                elif u[0] == c.K_EXPONENT:
                    exponent = c.i32(buf, u)
        elif s[0] == c.K_CURRENCY_CODE:
            currency = c.u32(buf, s)
    return digits, exponent, currency


def decode_cca(msg: bytes) -> CCAnswer:
    """Decode a CCA into a `CCAnswer` (session id in `extra["session_id"]`)."""
    h = c.parse_header(msg)
    avps = c.walk(msg, c.HEADER_LEN, h.length)
    rc = 0
    rtype = RequestType.INITIAL
    rnum = 0
    msccs: list[MsccAnswer] | None = None
    granted = validity = None
    fua = None
    ttc: datetime | None = None
    remaining = cost = None
    currency = 978
    exponent = -4
    failed: int | None = None
    err: str | None = None
    extra: dict[str, object] = {}
    for a in avps:
        k = a[0]
        if k == c.K_RESULT_CODE:
            rc = c.u32(msg, a)
        elif k == c.K_SESSION_ID:
            extra["session_id"] = c.text(msg, a)
        elif k == c.K_ORIGIN_HOST:
            extra["origin_host"] = c.text(msg, a)
        elif k == c.K_CC_REQUEST_TYPE:
            rtype = RequestType(c.i32(msg, a))
        elif k == c.K_CC_REQUEST_NUMBER:
            rnum = c.u32(msg, a)
        elif k == c.K_MSCC:
            if msccs is None:
                msccs = []
            m_rc = 0
            rg = si = gt = vt = None
            m_fua = None
            m_ttc: datetime | None = None
            for s in c.walk(msg, a[2], a[3]):
                sk = s[0]
                if sk == c.K_RESULT_CODE:
                    m_rc = c.u32(msg, s)
                elif sk == c.K_RATING_GROUP:
                    rg = c.u32(msg, s)
                elif sk == c.K_SERVICE_IDENTIFIER:
                    si = c.u32(msg, s)
                elif sk == c.K_VALIDITY_TIME:
                    vt = c.u32(msg, s)
                elif sk == c.K_GRANTED_SERVICE_UNIT:
                    gt, m_ttc = _gsu_decode(msg, s)
                elif sk == c.K_FINAL_UNIT_INDICATION:
                    m_fua = _fui_decode(msg, s)
            msccs.append(MsccAnswer(m_rc, rg, si, gt, vt, m_fua, m_ttc))
        elif k == c.K_GRANTED_SERVICE_UNIT:
            granted, ttc = _gsu_decode(msg, a)
        elif k == c.K_VALIDITY_TIME:
            validity = c.u32(msg, a)
        elif k == c.K_FINAL_UNIT_INDICATION:
            fua = _fui_decode(msg, a)
        elif k == c.K_COST_INFORMATION:
            cost, e, cur = _money(msg, a)
            exponent = e if e is not None else exponent
            currency = cur if cur is not None else currency
        elif k == c.K_REMAINING_BALANCE:
            remaining, e, cur = _money(msg, a)
            exponent = e if e is not None else exponent
            currency = cur if cur is not None else currency
        elif k == c.K_FAILED_AVP:
            inner = c.walk(msg, a[2], a[3])
            if inner:
                failed = inner[0][0] & 0xFFFFFFFF
        elif k == c.K_ERROR_MESSAGE:
            err = c.text(msg, a)
    extra["e_bit"] = h.is_error
    return CCAnswer(
        result_code=rc,
        request_type=rtype,
        request_number=rnum,
        mscc=tuple(msccs) if msccs is not None else None,
        granted_time=granted,
        validity_time=validity,
        final_unit_action=fua,
        tariff_time_change=ttc,
        remaining_balance=remaining,
        cost_units=cost,
        currency_code=currency,
        unit_price_exponent=exponent,
        failed_avp_code=failed,
        error_message=err,
        extra=extra,
    )
