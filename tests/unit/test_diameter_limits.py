"""Bounded decoding (issue 13 item 6) and message-size limits (item 7), sans-I/O.

A hostile peer controls every count in a message. These tests build the worst messages the
size limit lets through and check that the answer is the RFC 6733 one (5009
DIAMETER_AVP_OCCURS_TOO_MANY_TIMES with the first extra AVP in Failed-AVP, 5015
DIAMETER_INVALID_MESSAGE_LENGTH) and that the work done is bounded by counting it, not by
timing it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from ocs.credit_control import (
    CCRequest,
    MsccRequest,
    RequestType,
    SubscriptionId,
    SubscriptionIdType,
    UsedUnits,
)
from ocs.diameter import ccr as ccr_module
from ocs.diameter import codec as c
from ocs.diameter import peer as peer_module
from ocs.diameter.errors import FramingError
from ocs.diameter.peer import (
    ClientPeer,
    Close,
    CreditControl,
    LocalIdentity,
    PeerOpened,
    PeerState,
    Send,
    ServerPeer,
    certificate_admits,
)

SERVER = LocalIdentity("ocs.test", "test", host_ip="127.0.0.1", origin_state_id=7)
CLIENT = LocalIdentity("pcscf.test", "test", host_ip="127.0.0.1", origin_state_id=9)
T = c.VENDOR_3GPP


def opened_pair(**kw: object) -> tuple[ServerPeer, ClientPeer]:
    s = ServerPeer(SERVER, {"pcscf.test"}, now=0.0, **kw)  # type: ignore[arg-type]
    cl = ClientPeer(CLIENT, "test", now=0.0)
    cea = [e.data for e in s.receive_data(cl.start(), now=0.0) if isinstance(e, Send)]
    assert any(isinstance(e, PeerOpened) for e in cl.receive_data(cea[0], now=0.0))
    return s, cl


def sent(events: Sequence[object]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, Send)]


def avp_of(data: bytes, k: int) -> c.RawAvp:
    a = c.find(c.walk(data, 20, len(data)), k)
    assert a is not None, f"no AVP {k}"
    return a


def result_code(data: bytes) -> int:
    return c.u32(data, avp_of(data, c.K_RESULT_CODE))


def failed_avp(data: bytes) -> bytes:
    """The content of Failed-AVP: the offending AVP as encoded."""
    a = avp_of(data, c.K_FAILED_AVP)
    return data[a[2] : a[3]]


def base_ccr(cl: ClientPeer, n: int = 0, sid: str = "sess-1") -> bytes:
    """A CCR-I with one top-level Subscription-Id and no Service-Information."""
    req = CCRequest(sid, "pcscf.test", "test", RequestType.INITIAL, n,
                    subscription_ids=(SubscriptionId(SubscriptionIdType.END_USER_E164, "5173"),),
                    mscc=(MsccRequest(100, 1000, True, 30),))
    return cl.build_ccr(req)[1]


def with_body(msg: bytes, extra: bytes, *, replace_body: bytes | None = None) -> bytes:
    h = c.parse_header(msg)
    body = msg[20:] if replace_body is None else replace_body
    return c.encode_message(h.flags, h.code, h.app_id, h.hbh, h.e2e, body + extra)


def sub_avp(i: int) -> bytes:
    return c.avp_group(c.K_SUBSCRIPTION_ID, c.avp_u32(c.K_SUBSCRIPTION_ID_TYPE, 0),
                       c.avp_str(c.K_SUBSCRIPTION_ID_DATA, f"+33{i:09d}"))


def ims_with(*children: bytes) -> bytes:
    return c.avp_group(873, c.avp_group(876, *children, vendor=T), vendor=T)


class Counter:
    def __init__(self, fn: object) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, *a: object, **kw: object) -> object:
        self.calls += 1
        return self.fn(*a, **kw)  # type: ignore[operator]


def feed_in_chunks(s: ServerPeer, data: bytes, chunk: int = 65536) -> list[object]:
    events: list[object] = []
    for i in range(0, len(data), chunk):
        events += s.receive_data(data[i : i + chunk])
    return events


# ---- item 6: the 16,000 Subscription-Id CCR -------------------------------------------


def test_the_16000_subscription_id_ccr_is_answered_without_being_decoded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """It froze the event loop for 18 s (quadratic de-duplication). Now it is longer than
    any message we accept: its body is dropped unread and the CCR answered 5015."""
    s, cl = opened_pair()
    decode = Counter(ccr_module.decode_ccr)
    monkeypatch.setattr(peer_module, "decode_ccr", decode)
    big = with_body(base_ccr(cl), ims_with(*(sub_avp(i) for i in range(16_000))))
    assert len(big) > 600_000
    events = feed_in_chunks(s, big)
    assert decode.calls == 0
    (cca,) = sent(events)
    assert not any(isinstance(e, (Close, CreditControl)) for e in events)
    assert result_code(cca) == 5015
    assert c.text(cca, avp_of(cca, c.K_SESSION_ID)) == "sess-1"
    assert c.u32(cca, avp_of(cca, c.K_CC_REQUEST_TYPE)) == 1
    # the stream is still in step: the next CCR is decoded normally
    (ev,) = s.receive_data(base_ccr(cl, sid="sess-2"))
    assert isinstance(ev, CreditControl) and ev.request.session_id == "sess-2"
    assert s.framer.buffered == 0


def test_as_many_subscription_ids_as_fit_in_the_size_limit_cost_no_lookup(
        monkeypatch: pytest.MonkeyPatch) -> None:
    s, cl = opened_pair()
    subs = Counter(ccr_module._subscription)
    monkeypatch.setattr(ccr_module, "_subscription", subs)
    head = base_ccr(cl)
    n = (c.MAX_MESSAGE_LEN - len(head) - 64) // len(sub_avp(0))
    msg = with_body(head, ims_with(*(sub_avp(i) for i in range(n))))
    assert c.MAX_MESSAGE_LEN - 100 < len(msg) <= c.MAX_MESSAGE_LEN and n > 1500
    (cca,) = sent(s.receive_data(msg))
    assert result_code(cca) == 5009
    assert failed_avp(cca) == sub_avp(128)  # the first child past IMS-Information's 128
    assert subs.calls == 1  # the top-level one; none of the 1,500 nested ones


def test_subscription_ids_share_one_budget_across_the_request(
        monkeypatch: pytest.MonkeyPatch) -> None:
    s, cl = opened_pair()
    subs = Counter(ccr_module._subscription)
    monkeypatch.setattr(ccr_module, "_subscription", subs)
    head = base_ccr(cl)  # already one top-level Subscription-Id
    top = b"".join(sub_avp(i) for i in range(1, 4))
    nested = c.avp_group(873, sub_avp(4), sub_avp(5),
                         c.avp_group(876, sub_avp(6), sub_avp(7), sub_avp(8), vendor=T),
                         vendor=T)
    (cca,) = sent(s.receive_data(with_body(head, top + nested)))
    assert result_code(cca) == 5009
    assert failed_avp(cca) == sub_avp(8)  # the ninth of the request
    assert subs.calls == 8


def test_the_same_subscriber_in_ims_information_is_kept_once_top_level_first() -> None:
    s, cl = opened_pair()
    sip = c.avp_group(c.K_SUBSCRIPTION_ID, c.avp_u32(c.K_SUBSCRIPTION_ID_TYPE, 2),
                      c.avp_str(c.K_SUBSCRIPTION_ID_DATA, "sip:5173@test"))
    e164 = c.avp_group(c.K_SUBSCRIPTION_ID, c.avp_u32(c.K_SUBSCRIPTION_ID_TYPE, 0),
                       c.avp_str(c.K_SUBSCRIPTION_ID_DATA, "5173"))
    msg = with_body(base_ccr(cl), ims_with(sip, e164, sip))
    (ev,) = s.receive_data(msg)
    assert isinstance(ev, CreditControl)
    assert ev.request.subscription_ids == (
        SubscriptionId(SubscriptionIdType.END_USER_E164, "5173"),
        SubscriptionId(SubscriptionIdType.END_USER_SIP_URI, "sip:5173@test"),
    )


# ---- item 6: grammar counts -----------------------------------------------------------


def test_an_avp_the_grammar_allows_once_is_5009_the_second_time() -> None:
    s, cl = opened_pair()
    second = c.avp_u32(c.K_CC_REQUEST_NUMBER, 5)
    (cca,) = sent(s.receive_data(with_body(base_ccr(cl), second)))
    assert result_code(cca) == 5009 and failed_avp(cca) == second


def test_too_many_top_level_avps_is_5009_and_the_walk_stops_there(
        monkeypatch: pytest.MonkeyPatch) -> None:
    s, cl = opened_pair()
    walked: list[int] = []
    real_walk = c.walk

    def counting_walk(buf: bytes, start: int, end: int, limit: int = 1 << 30) -> list[c.RawAvp]:
        out = real_walk(buf, start, end, limit)
        walked.append(len(out))
        return out

    monkeypatch.setattr(c, "walk", counting_walk)
    head = base_ccr(cl)
    junk = [c.avp(99_000 + i, b"", m=False) for i in range(7000)]  # unknown, no M-bit
    msg = with_body(head, b"".join(junk))
    assert len(msg) < c.MAX_MESSAGE_LEN
    (cca,) = sent(s.receive_data(msg))
    assert result_code(cca) == 5009
    top = len(c.walk_complete(head, 20, len(head)))
    assert failed_avp(cca) == junk[128 - top]
    assert max(walked) == 129  # not 7000+


def test_mscc_and_used_service_unit_counts_are_bounded() -> None:
    s, cl = opened_pair()
    req = CCRequest("s", "pcscf.test", "test", RequestType.UPDATE, 1,
                    mscc=tuple(MsccRequest(100 + i, 1000, True, 30) for i in range(17)))
    (cca,) = sent(s.receive_data(cl.build_ccr(req)[1]))
    assert result_code(cca) == 5009
    assert c.walk(failed_avp(cca), 0, len(failed_avp(cca)))[0][0] == c.K_MSCC

    used = tuple(UsedUnits(1) for _ in range(9))
    req = CCRequest("s", "pcscf.test", "test", RequestType.UPDATE, 1,
                    mscc=(MsccRequest(100, 1000, True, 30, used),))
    (cca,) = sent(s.receive_data(cl.build_ccr(req)[1]))
    assert result_code(cca) == 5009
    assert failed_avp(cca) == c.avp_group(c.K_USED_SERVICE_UNIT, c.avp_u32(c.K_CC_TIME, 1))


def test_two_rating_groups_in_one_mscc_is_5009() -> None:
    s, cl = opened_pair()
    mscc = c.avp_group(c.K_MSCC, c.avp_u32(c.K_RATING_GROUP, 100),
                       c.avp_u32(c.K_RATING_GROUP, 200))
    h = c.parse_header(base_ccr(cl))
    body = b"".join(c.raw_avp(base_ccr(cl), a) for a in c.walk(base_ccr(cl), 20, h.length)
                    if a[0] != c.K_MSCC)
    (cca,) = sent(s.receive_data(with_body(base_ccr(cl), mscc, replace_body=body)))
    assert result_code(cca) == 5009
    assert failed_avp(cca) == c.avp_u32(c.K_RATING_GROUP, 200)


def test_proxy_info_is_echoed_up_to_its_bound() -> None:
    s, cl = opened_pair()
    proxies = [c.avp_group(284, c.avp_str(280, f"dra{i}.test"), c.avp(33, b"st"))
               for i in range(17)]
    (ev,) = s.receive_data(with_body(base_ccr(cl), b"".join(proxies[:16])))
    assert isinstance(ev, CreditControl) and ev.frame.proxy_info == b"".join(proxies[:16])
    (cca,) = sent(s.receive_data(with_body(base_ccr(cl), b"".join(proxies))))
    assert result_code(cca) == 5009 and failed_avp(cca) == proxies[16]


# ---- item 7: framing limits -----------------------------------------------------------


def test_framer_skips_an_oversized_message_across_chunks() -> None:
    f = c.Framer(1024, skip_oversized=True, keep=40)
    big = c.encode_message(c.FLAG_R, 272, 4, 1, 1, c.avp_str(263, "s;1") + bytes(5000))
    small = c.encode_message(c.FLAG_R, 280, 0, 2, 2, c.avp_str(264, "x"))
    stream = big + small + big
    out: list[bytes] = []
    for i in range(0, len(stream), 333):
        out += f.feed(stream[i : i + 333])
        assert f.buffered < 1024
    assert [type(m) for m in out] == [c.Oversized, bytes, c.Oversized]
    assert out[1] == small
    head = out[0]
    assert isinstance(head, c.Oversized)
    assert head.declared_length == len(big) and head == big[:60]


def test_framer_holds_one_byte_at_a_time_without_recopying() -> None:
    """The buffer is appended to in place (a bytearray), so a message trickled one byte per
    read is copied once, not once per byte (that was quadratic)."""
    f = c.Framer()
    msg = c.encode_message(c.FLAG_R, 280, 0, 2, 2, c.avp(1, bytes(30_000)))
    held = f._buf
    for i in range(len(msg) - 1):
        assert f.feed(msg[i : i + 1]) == []
    assert f._buf is held and f.buffered == len(msg) - 1
    assert f.feed(msg[-1:]) == [msg]


def test_framer_without_skip_refuses_oversized() -> None:
    f = c.Framer(1024)
    with pytest.raises(FramingError):
        f.feed(c.encode_message(c.FLAG_R, 257, 0, 1, 1, bytes(2000)))


def test_before_cer_a_long_message_closes_at_once() -> None:
    s = ServerPeer(SERVER, {"pcscf.test"}, now=0.0)
    header = c.encode_header(c.PRE_CER_MAX_LEN + 4, c.FLAG_R, 257, 0, 1, 1)
    evs = s.receive_data(header)
    assert isinstance(evs[-1], Close) and s.state is PeerState.CLOSED
    assert s.framer.buffered <= len(header)


def test_before_cer_a_partial_message_is_held_only_up_to_the_small_limit() -> None:
    s = ServerPeer(SERVER, {"pcscf.test"}, now=0.0, pre_cer_max=4096)
    header = c.encode_header(4096, c.FLAG_R, 257, 0, 1, 1)
    assert s.receive_data(header + bytes(3000)) == []
    assert s.framer.buffered == 3020 and s.state is PeerState.WAIT_CER
    header = c.encode_header(4100, c.FLAG_R, 257, 0, 1, 1)
    s = ServerPeer(SERVER, {"pcscf.test"}, now=0.0, pre_cer_max=4096)
    assert isinstance(s.receive_data(header)[-1], Close)


def test_after_cer_a_long_request_is_answered_5015_and_the_peer_stays() -> None:
    s, _ = opened_pair(max_message=16 * 1024)
    dwr = c.encode_message(c.FLAG_R, 280, 0, 5, 5,
                           c.avp_str(264, "pcscf.test") + c.avp_str(296, "test")
                           + c.avp(99_999, bytes(20_000), m=False))
    evs = s.receive_data(dwr)
    (answer,) = sent(evs)
    assert result_code(answer) == 5015 and c.parse_header(answer).hbh == 5
    assert s.state is PeerState.OPEN and not any(isinstance(e, Close) for e in evs)


# ---- item 18: CER without Host-IP-Address ---------------------------------------------


def kamailio_cer(with_host_ip: bool) -> bytes:
    body = [c.avp_str(264, "pcscf.test"), c.avp_str(296, "test")]
    if with_host_ip:
        body.append(c.avp_address(257, "127.0.0.1"))
    body += [c.avp_u32(266, 10415), c.avp_str(269, "Kamailio", m=False),
             c.avp_group(260, c.avp_u32(266, 10415), c.avp_u32(258, 4))]
    return c.encode_message(c.FLAG_R, 257, 0, 1, 1, b"".join(body))


def test_cer_without_host_ip_address_is_accepted_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    s = ServerPeer(SERVER, {"pcscf.test"}, now=0.0)
    with caplog.at_level(logging.WARNING, "ocs.diameter.peer"):
        evs = s.receive_data(kamailio_cer(with_host_ip=False))
    (cea,) = sent(evs)
    assert result_code(cea) == 2001 and s.state is PeerState.OPEN
    assert PeerOpened("pcscf.test", "test") in evs
    assert any("Host-IP-Address" in r.getMessage() for r in caplog.records)


def test_cer_with_host_ip_address_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    s = ServerPeer(SERVER, {"pcscf.test"}, now=0.0)
    with caplog.at_level(logging.WARNING, "ocs.diameter.peer"):
        (cea,) = sent(s.receive_data(kamailio_cer(with_host_ip=True)))
    assert result_code(cea) == 2001 and not caplog.records


# ---- item 17: the built-in IVR's own identity; TLS identities -------------------------


def test_local_identity_is_admitted_only_from_this_machine() -> None:
    def cer_result(is_local: bool) -> int:
        s = ServerPeer(SERVER, {"kamailio.test"}, now=0.0, local_peers=frozenset({"ivr.test"}),
                       is_local=is_local)
        ivr = ClientPeer(LocalIdentity("ivr.test", "test"), "test", now=0.0)
        return result_code(sent(s.receive_data(ivr.start()))[0])

    assert cer_result(is_local=True) == 2001
    assert cer_result(is_local=False) == 3010


@pytest.mark.parametrize(("names", "host", "ok"), [
    (("pcscf.test",), "pcscf.test", True),
    (("PCSCF.Test.",), "pcscf.test", True),
    (("*.ims.test",), "pcscf.ims.test", True),
    (("*.ims.test",), "a.pcscf.ims.test", False),
    (("*.ims.test",), "ims.test", False),
    (("other.test", "pcscf.test"), "pcscf.test", True),
    (("other.test",), "pcscf.test", False),
    ((), "pcscf.test", False),
])
def test_certificate_names_prove_an_origin_host(names: tuple[str, ...], host: str,
                                                ok: bool) -> None:
    assert certificate_admits(names, host) is ok


def test_tls_peer_whose_origin_host_is_not_its_certificate_is_refused() -> None:
    cl = ClientPeer(CLIENT, "test", now=0.0)
    s = ServerPeer(SERVER, {"*"}, now=0.0, certificate_names=("other.test",))
    evs = s.receive_data(cl.start())
    assert result_code(sent(evs)[0]) == 3010 and isinstance(evs[-1], Close)
    s = ServerPeer(SERVER, {"*"}, now=0.0, certificate_names=("pcscf.test",))
    assert result_code(sent(s.receive_data(cl.start()))[0]) == 2001


def test_kamailio_repeats_origin_host_and_realm_identically_and_is_served() -> None:
    """Kamailio 5.6.3 (cdp) sends Origin-Host and Origin-Realm twice in every CCR, as
    identical copies: tolerated. A second, different Origin-Host is still 5009."""
    s, cl = opened_pair()
    head = base_ccr(cl)
    copies = c.avp_str(264, "pcscf.test") + c.avp_str(296, "test")
    (ev,) = s.receive_data(with_body(head, copies))
    assert isinstance(ev, CreditControl) and ev.request.origin_host == "pcscf.test"
    other = c.avp_str(264, "other.test")
    (cca,) = sent(s.receive_data(with_body(head, other)))
    assert result_code(cca) == 5009 and failed_avp(cca) == other
