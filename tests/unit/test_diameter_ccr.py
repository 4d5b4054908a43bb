"""CCR decode (a Kamailio-like request built with python-diameter), CCA encode checked by
python-diameter's decoder, round trips, and every validation Result-Code."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

import pytest
from diameter.message import Message, MessageHeader
from diameter.message.avp import Avp
from diameter.message.constants import VENDOR_TGPP
from hypothesis import given, settings
from hypothesis import strategies as st

from ocs.credit_control import (
    CCAnswer,
    CCRequest,
    FinalUnitAction,
    MsccAnswer,
    MsccRequest,
    RequestedAction,
    RequestType,
    SubscriptionId,
    SubscriptionIdType,
    TariffChangeUsage,
    UsedUnits,
)
from ocs.diameter import codec as c
from ocs.diameter.cca import AnswerEncoder, decode_cca
from ocs.diameter.ccr import decode_ccr, encode_ccr
from ocs.diameter.errors import ProtocolError

T = VENDOR_TGPP


def A(code: int, value: object = None, vendor: int = 0, **kw: object) -> Avp:
    return Avp.new(code, vendor, value=value, **kw)  # type: ignore[arg-type]


def lib_message(avps: list[Avp], *, code: int = 272, app: int = 4, flags: int = 0xC0) -> bytes:
    hdr = MessageHeader(command_code=code, application_id=app, hop_by_hop_identifier=0x11,
                        end_to_end_identifier=0x22, command_flags=flags)
    return Message(hdr, avps).as_bytes()


def kamailio_avps(request_type: int = 1, number: int = 0) -> list[Avp]:
    """Roughly what Kamailio 5.6 ims_charging puts in a CCR-I (see DESIGN.md)."""
    sub = [A(450, 0), A(444, "+335173")]
    return [
        A(263, "scscf.ims.test;1700000000;42"),
        A(264, b"scscf.ims.test"),
        A(296, b"ims.test"),
        A(283, b"ocs.test"),
        A(260, [A(266, 10415), A(258, 4)]),
        A(461, "ext.01.001.8.32260@3gpp.org"),
        A(416, request_type),
        A(415, number),
        A(480, 2),
        A(485, number),
        A(1, "+335173@ims.test"),
        A(55, datetime(2026, 11, 25, 18, 0, tzinfo=UTC)),
        A(443, sub),
        A(456, [A(437, []), A(439, 1000), A(432, 100)]),
        A(873, [
            A(443, sub),
            A(876, [
                A(823, [A(824, "INVITE", T)], T),
                A(829, 0, T),
                A(862, 0, T),
                A(830, "a84b4c76e66710@pc33.ims.test", T),
                A(831, "sip:+335173@ims.test", T),
                A(832, "sip:+33141587070@ims.test", T),
                A(833, [A(834, datetime(2026, 11, 25, 18, 0, 0), T),
                        A(835, datetime(2026, 11, 25, 18, 0, 4), T)], T),
                A(841, "icid-0042", T),
            ], T),
        ], T),
    ]


def test_kamailio_like_ccr_initial() -> None:
    frame = decode_ccr(lib_message(kamailio_avps()))
    r = frame.request
    assert r.session_id == "scscf.ims.test;1700000000;42"
    assert (r.origin_host, r.origin_realm) == ("scscf.ims.test", "ims.test")
    assert r.request_type is RequestType.INITIAL and r.request_number == 0
    assert r.service_context_id == "ext.01.001.8.32260@3gpp.org"
    # top-level and IMS-Information Subscription-Id are the same one: reported once
    assert r.subscription_ids == (SubscriptionId(SubscriptionIdType.END_USER_E164, "+335173"),)
    assert r.called_party == "sip:+33141587070@ims.test"
    assert r.calling_party == "sip:+335173@ims.test"
    assert r.call_id == "icid-0042"
    assert r.connect_delay == 4
    assert r.user_name == "+335173@ims.test"
    assert r.event_timestamp == datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
    assert r.mscc == (MsccRequest(rating_group=100, service_identifier=1000, requested=True,
                                  requested_time=None),)
    assert not r.requested and r.used == ()
    assert not r.retransmission
    assert (frame.hbh, frame.e2e) == (0x11, 0x22)


def test_ccr_update_with_used_units_and_tariff_change_and_t_flag() -> None:
    avps = kamailio_avps(2, 1)
    avps[13] = A(456, [A(437, [A(420, 30)]), A(446, [A(452, 0), A(420, 25)]),
                       A(446, [A(452, 1), A(420, 16)]), A(439, 1000), A(432, 100)])
    r = decode_ccr(lib_message(avps, flags=0xD0)).request
    assert r.request_type is RequestType.UPDATE and r.retransmission
    m = r.mscc[0] if r.mscc else None
    assert m is not None and m.requested_time == 30
    assert m.used == (UsedUnits(25, TariffChangeUsage.UNIT_BEFORE_TARIFF_CHANGE),
                      UsedUnits(16, TariffChangeUsage.UNIT_AFTER_TARIFF_CHANGE))


def test_call_id_falls_back_to_user_session_id() -> None:
    avps = kamailio_avps()
    ims = avps[14].value[1]
    ims.value = [a for a in ims.value if a.code != 841]
    avps[14].value = [avps[14].value[0], ims]
    assert decode_ccr(lib_message(avps)).request.call_id == "a84b4c76e66710@pc33.ims.test"


subs = st.builds(SubscriptionId, st.sampled_from(list(SubscriptionIdType)),
                 st.text(min_size=1, max_size=20))
used = st.builds(UsedUnits, st.integers(0, 10**6),
                 st.none() | st.sampled_from(list(TariffChangeUsage)))
msccs = st.builds(MsccRequest, st.none() | st.integers(0, 2**32 - 1),
                  st.none() | st.integers(0, 2**32 - 1), st.booleans(),
                  st.none(), st.lists(used, max_size=2).map(tuple))


@st.composite
def requests(draw: st.DrawFn) -> CCRequest:
    mscc = draw(st.none() | st.lists(msccs, min_size=1, max_size=3).map(tuple))
    if mscc is not None:
        mscc = tuple(MsccRequest(m.rating_group, m.service_identifier, m.requested,
                                 draw(st.none() | st.integers(0, 3600)) if m.requested else None,
                                 m.used) for m in mscc)
    requested = draw(st.booleans()) and mscc is None
    return CCRequest(
        session_id=draw(st.text(min_size=1, max_size=60)),
        origin_host=draw(st.from_regex(r"[a-z0-9.]{1,30}", fullmatch=True)),
        origin_realm=draw(st.from_regex(r"[a-z0-9.]{1,30}", fullmatch=True)),
        request_type=draw(st.sampled_from(list(RequestType))),
        request_number=draw(st.integers(0, 2**32 - 1)),
        subscription_ids=tuple(draw(st.lists(subs, max_size=2, unique=True))),
        called_party=draw(st.none() | st.text(min_size=1, max_size=30)),
        calling_party=draw(st.none() | st.text(min_size=1, max_size=30)),
        requested_action=draw(st.none() | st.sampled_from(list(RequestedAction))),
        mscc=mscc,
        requested=requested,
        requested_time=draw(st.none() | st.integers(0, 3600)) if requested else None,
        used=tuple(draw(st.lists(used, max_size=2))) if mscc is None else (),
        event_timestamp=draw(st.none() | st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
            timezones=st.just(UTC)).map(lambda d: d.replace(microsecond=0))),
        user_name=draw(st.none() | st.text(max_size=20)),
        service_context_id=draw(st.sampled_from(["32260@3gpp.org",
                                                 "ext.01.001.8.32260@3gpp.org"])),
        termination_cause=draw(st.none() | st.integers(1, 8)),
        call_id=draw(st.none() | st.text(min_size=1, max_size=20)),
        retransmission=draw(st.booleans()),
    )


@settings(max_examples=200, deadline=None)
@given(requests(), st.booleans())
def test_encode_decode_round_trip(req: CCRequest, vendor_specific: bool) -> None:
    data = encode_ccr(req, hbh=1, e2e=2, destination_realm="ocs",
                      vendor_specific_app=vendor_specific)
    assert decode_ccr(data).request == req
    # and python-diameter agrees on the structure
    lib = Message.from_bytes(data)
    assert lib.session_id == req.session_id
    assert lib.cc_request_number == req.request_number


# ---- CCA ------------------------------------------------------------------------------

ENC = AnswerEncoder("ocs.test", "test")
TTC = datetime(2026, 11, 25, 19, 0, tzinfo=UTC)


def cca_for(ans: CCAnswer, **kw: object) -> bytes:
    frame = decode_ccr(lib_message(kamailio_avps()))
    return ENC.cca(frame, ans)


def find(m: Message, *path: tuple[int, int]) -> list[Avp]:
    return m.find_avps(*path)


def test_cca_mscc_with_fui_and_tariff_time_change_decodes_in_python_diameter() -> None:
    ans = CCAnswer(2001, RequestType.INITIAL, 0, mscc=(MsccAnswer(
        2001, rating_group=100, service_identifier=1000, granted_time=40, validity_time=60,
        final_unit_action=FinalUnitAction.TERMINATE, tariff_time_change=TTC),),
        remaining_balance=187600)
    data = cca_for(ans)
    lib = Message.from_bytes(data)
    assert lib.header.command_code == 272 and not lib.header.is_request
    assert lib.header.application_id == 4 and lib.header.hop_by_hop_identifier == 0x11
    plain = Message.from_bytes(data, plain_msg=True)
    avps = plain.avps
    assert avps[0].code == 263 and avps[0].value == "scscf.ims.test;1700000000;42"
    by_code = {a.code: a for a in avps}
    for code in (264, 296):  # the M-bit python-diameter's own CCA leaves out
        assert by_code[code].is_mandatory
    assert by_code[268].value == 2001 and by_code[258].value == 4
    assert find(plain, (456, 0), (431, 0), (420, 0))[0].value == 40
    ttc = find(plain, (456, 0), (431, 0), (451, 0))[0].value
    assert ttc.replace(tzinfo=UTC) == TTC
    assert find(plain, (456, 0), (430, 0), (449, 0))[0].value == 0
    assert find(plain, (456, 0), (268, 0))[0].value == 2001
    assert find(plain, (456, 0), (448, 0))[0].value == 60
    assert find(plain, (2021, T), (445, 0), (447, 0))[0].value == 187600
    assert find(plain, (2021, T), (445, 0), (429, 0))[0].value == -4
    assert find(plain, (2021, T), (425, 0))[0].value == 978
    assert decode_cca(data) == CCAnswer(
        2001, RequestType.INITIAL, 0, mscc=ans.mscc, remaining_balance=187600,
        extra={"session_id": "scscf.ims.test;1700000000;42", "origin_host": "ocs.test",
               "e_bit": False})


def test_cca_top_level_grant_and_cost_information() -> None:
    ans = CCAnswer(2001, RequestType.EVENT, 0, granted_time=65, validity_time=30,
                   final_unit_action=FinalUnitAction.TERMINATE, tariff_time_change=TTC,
                   cost_units=13000, remaining_balance=187600)
    plain = Message.from_bytes(cca_for(ans), plain_msg=True)
    assert find(plain, (431, 0), (420, 0))[0].value == 65
    assert find(plain, (431, 0), (451, 0))[0].value.replace(tzinfo=UTC) == TTC
    assert find(plain, (430, 0), (449, 0))[0].value == 0
    assert find(plain, (448, 0))[0].value == 30
    assert find(plain, (423, 0), (445, 0), (447, 0))[0].value == 13000
    assert find(plain, (423, 0), (425, 0))[0].value == 978
    back = decode_cca(cca_for(ans))
    assert (back.granted_time, back.cost_units, back.tariff_time_change) == (65, 13000, TTC)


def test_cca_error_with_failed_avp_and_message() -> None:
    ans = CCAnswer(5030, RequestType.INITIAL, 0, failed_avp_code=443,
                   error_message="unknown subscriber")
    plain = Message.from_bytes(cca_for(ans), plain_msg=True)
    assert not plain.header.is_error
    assert find(plain, (279, 0), (443, 0))
    assert find(plain, (281, 0))[0].value == "unknown subscriber"


def test_cca_protocol_error_sets_e_bit() -> None:
    data = cca_for(CCAnswer(3002, RequestType.INITIAL, 0))
    assert c.parse_header(data).flags & c.FLAG_E


# ---- validation -----------------------------------------------------------------------


def without(code: int) -> list[Avp]:
    return [a for a in kamailio_avps() if a.code != code]


@pytest.mark.parametrize("code", [263, 264, 296, 283, 461, 416, 415])
def test_missing_mandatory_avp_is_5005_with_failed_avp(code: int) -> None:
    with pytest.raises(ProtocolError) as exc:
        decode_ccr(lib_message(without(code)))
    assert exc.value.result_code == 5005
    failed = c.walk(exc.value.failed_avp, 0, len(exc.value.failed_avp))
    assert failed[0][0] == code


def test_missing_both_auth_application_id_forms_is_5005() -> None:
    with pytest.raises(ProtocolError) as exc:
        decode_ccr(lib_message(without(260)))
    assert exc.value.result_code == 5005
    assert c.walk(exc.value.failed_avp, 0, len(exc.value.failed_avp))[0][0] == 258


def test_top_level_auth_application_id_is_accepted_too() -> None:
    avps = [*without(260), A(258, 4)]
    assert decode_ccr(lib_message(avps)).request.request_type is RequestType.INITIAL


@pytest.mark.parametrize("patch", [
    lambda avps: [a if a.code != 416 else A(416, 7) for a in avps],  # unknown request type
    lambda avps: [*avps, A(436, 9)],  # unknown Requested-Action
    lambda avps: [*avps, A(443, [A(450, 9), A(444, "x")])],  # unknown Subscription-Id-Type
    lambda avps: [*avps[:-1], A(258, 5)],  # Auth-Application-Id not 4
])
def test_bad_value_is_5004(patch: object) -> None:
    with pytest.raises(ProtocolError) as exc:
        decode_ccr(lib_message(patch(kamailio_avps())))  # type: ignore[operator]
    assert exc.value.result_code == 5004
    assert exc.value.failed_avp


def test_unknown_avp_with_m_bit_is_5001_without_is_ignored() -> None:
    unknown_m = struct.pack(">III", 9999, (0x40 << 24) | 12, 1)
    unknown = struct.pack(">III", 9999, 12, 1)
    base = lib_message(kamailio_avps())
    for extra, rc in ((unknown_m, 5001), (unknown, None)):
        data = bytearray(base + extra)
        data[1:4] = len(data).to_bytes(3, "big")
        if rc is None:
            decode_ccr(bytes(data))
            continue
        with pytest.raises(ProtocolError) as exc:
            decode_ccr(bytes(data))
        assert exc.value.result_code == rc and exc.value.failed_avp == extra


def test_reserved_avp_flag_bits_are_3009() -> None:
    bad = struct.pack(">III", 420, (0x41 << 24) | 12, 1)
    data = bytearray(lib_message(kamailio_avps()) + bad)
    data[1:4] = len(data).to_bytes(3, "big")
    with pytest.raises(ProtocolError) as exc:
        decode_ccr(bytes(data))
    assert exc.value.result_code == 3009


def test_truncated_avp_inside_message_is_5014() -> None:
    data = bytearray(lib_message(kamailio_avps()))
    # make the last AVP claim more bytes than the message holds
    avps = c.walk(bytes(data), 20, len(data))
    last = avps[-1][4]
    data[last + 5 : last + 8] = (len(data) - last + 40).to_bytes(3, "big")
    with pytest.raises(ProtocolError) as exc:
        decode_ccr(bytes(data))
    assert exc.value.result_code == 5014


def test_time_values_after_tariff_change_round_trip() -> None:
    ans = CCAnswer(2001, RequestType.UPDATE, 3, granted_time=10,
                   tariff_time_change=TTC + timedelta(hours=1))
    assert decode_cca(cca_for(ans)).tariff_time_change == TTC + timedelta(hours=1)
