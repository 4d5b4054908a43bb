"""SIP parsing, SDP offer/answer, RTP / RFC 4733 / G.711, routing: the pure parts of the edge."""

from __future__ import annotations

import collections
import random
import struct
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_bridge.media import rtp
from ivr_bridge.routing import NoRoute, route
from ivr_bridge.sip import message as m
from ivr_bridge.sip import sdp

BODY = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)
HEAD = (
    "INVITE sip:6000@127.0.0.1:5070 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5081;branch=z9hG4bKabc;rport\r\n"
    "v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKdef\r\n"
    'f: "Alice" <sip:5173@127.0.0.1:5081>;tag=a1\r\n'
    "t: <sip:6000@127.0.0.1:5070>\r\n"
    "i: call-1@host\r\n"
    "CSeq: 10 INVITE\r\n"
    "m: <sip:5173@127.0.0.1:5081>\r\n"
    "Subject: folded\r\n value\r\n"
    "c: application/sdp\r\n"
)
INVITE = (HEAD + f"l: {len(BODY)}\r\n\r\n" + BODY).encode()


def test_parse_request_with_compact_and_folded_headers():
    msg = m.parse(INVITE)
    assert msg.method == "INVITE"
    assert msg.uri == "sip:6000@127.0.0.1:5070"
    assert msg.call_id == "call-1@host"
    assert msg.cseq == (10, "INVITE")
    assert msg.from_tag == "a1"
    assert msg.to_tag is None
    assert msg.branch == "z9hG4bKabc"
    assert len(msg.get_all("Via")) == 2
    assert msg.get("Subject") == "folded value"
    assert msg.body.startswith(b"v=0")
    assert msg.body == BODY.encode()


def test_round_trip_and_content_length():
    msg = m.parse(INVITE)
    again = m.parse(msg.to_bytes())
    assert again.headers == [h for h in msg.headers if h[0] != "Content-Length"] + [
        ("Content-Length", str(len(msg.body)))
    ]
    assert again.body == msg.body


def test_response_copies_dialog_headers_and_adds_tag():
    msg = m.parse(INVITE)
    resp = m.response_to(msg, 200, "OK", to_tag="b2")
    out = m.parse(resp.to_bytes())
    assert out.status == 200
    assert out.to_tag == "b2"
    assert out.get_all("Via") == msg.get_all("Via")
    assert out.cseq == (10, "INVITE")
    trying = m.response_to(msg, 100, "Trying", to_tag="b2")
    assert trying.get("To") == "<sip:6000@127.0.0.1:5070>"  # no tag on 100


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage\r\n\r\n",
        b"INVITE sip:a@b SIP/3.0\r\n\r\n",
        b"SIP/2.0 999 Nope\r\n\r\n",
        INVITE.replace(b"i: call-1@host\r\n", b""),  # no Call-ID
        INVITE.replace(b"CSeq: 10 INVITE", b"CSeq: ten INVITE"),
        INVITE.replace(f"l: {len(BODY)}".encode(), b"l: 999"),  # body shorter than Content-Length
        INVITE.replace(f"l: {len(BODY)}".encode(), b"l: x"),
        INVITE.replace(f"l: {len(BODY)}".encode(), "l: ²".encode()),  # found by the fuzzer
        INVITE.replace(b"CSeq: 10 INVITE", "CSeq: ① INVITE".encode()),  # found by the fuzzer
        INVITE.replace(b"Subject: folded", b"Bad Header folded"),
        b" folded first\r\nVia: x\r\n\r\n",
        b"\xff\xfe INVITE\r\n\r\n",
    ],
)
def test_malformed_messages_are_rejected(data):
    with pytest.raises(m.SipParseError):
        m.parse(data)


# Valid messages the fuzzer starts from: an INVITE with SDP, its 200 OK, a BYE.
OK_200 = (
    "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5081;branch=z9hG4bKabc\r\n"
    "From: <sip:5173@127.0.0.1>;tag=a1\r\nTo: <sip:6000@127.0.0.1>;tag=b2\r\n"
    "Call-ID: call-1@host\r\nCSeq: 10 INVITE\r\nContact: <sip:6000@127.0.0.1:5070>\r\n"
    f"Content-Type: application/sdp\r\nContent-Length: {len(BODY)}\r\n\r\n{BODY}"
).encode()
BYE = (
    b"BYE sip:5173@127.0.0.1:5081 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\n"
    b"From: <sip:6000@127.0.0.1>;tag=b2\r\nTo: <sip:5173@127.0.0.1>;tag=a1\r\n"
    b"Call-ID: call-1@host\r\nCSeq: 11 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)
# What mutated header values and SDP tokens are made of: SIP punctuation, digits (also
# non-ASCII ones, which str.isdigit accepts but int() may not), letters, spaces, non-ASCII.
JUNK = "0123456789abcXYZ:;,<>@=/.\"' \t-+#%²٣①é\u00a0"
NUMBERS = ["-1", "0", "3", "99999", "70000", str(10**12), "²", "٣4", "①", "1e3", " 7 "]


def mutate(raw: bytes, rnd: random.Random) -> bytes:
    """A valid SIP message with a few realistic mistakes: headers dropped, repeated, given
    odd values (numbers above all) or odd names, folded, Content-Length wrong, SDP lines and
    numbers broken, body cut."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    sdp_lines = body.decode().split("\r\n") if body else []

    def junk(n: int) -> str:
        return "".join(rnd.choice(JUNK) for _ in range(rnd.randint(0, n)))

    def numeric_header() -> int:
        found = [i for i, x in enumerate(lines) if x.split(":")[0].strip().lower() in
                 {"content-length", "l", "cseq", "max-forwards", "expires"}]
        return rnd.choice(found) if found else rnd.randrange(1, len(lines))

    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(11)
        i = numeric_header() if op == 4 else rnd.randrange(1, len(lines))
        name, _, value = lines[i].partition(":")
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[i])
        elif op == 2:
            lines[i] = f"{name}: {junk(30)}"
        elif op == 3:
            lines[i] = f"{name}:{value}{junk(8)}"
        elif op == 4:  # a number where one belongs, but a strange one
            words = value.split()
            words[0:1] = [rnd.choice([*NUMBERS, str(len(body) + 1)])]
            lines[i] = f"{name}: {' '.join(words)}"
        elif op == 5:
            lines[i] = f"{name.lower() if rnd.random() < 0.5 else name.upper()}:{value}"
        elif op == 6:
            lines.insert(i + 1, " " + junk(12))  # a folded continuation
        elif op == 7:
            lines[i] = f"{junk(6)}{name}:{value}"
        elif op == 8 and sdp_lines:  # an SDP word replaced (the m= line's more often)
            media = [j for j, x in enumerate(sdp_lines) if x.startswith("m=")]
            j = rnd.choice(media) if media and rnd.random() < 0.5 else \
                rnd.randrange(len(sdp_lines))
            words = sdp_lines[j].split(" ")
            words[rnd.randrange(len(words))] = junk(8) if rnd.random() < 0.4 else \
                rnd.choice(NUMBERS)
            sdp_lines[j] = " ".join(words)
        elif op in (9, 10) and sdp_lines:
            del sdp_lines[rnd.randrange(len(sdp_lines))]
    new_body = "\r\n".join(sdp_lines).encode()
    if rnd.random() < 0.15:
        new_body = new_body[: rnd.randrange(len(new_body) + 1)]
    if rnd.random() < 0.5:  # keep Content-Length right, so the body itself gets parsed
        lines = [x for x in lines if not x.lower().startswith(("content-length:", "l:"))]
        lines.append(f"Content-Length: {len(new_body)}")
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + new_body


def check_parse(data: bytes) -> str:
    """Parse as the UA does: a SipParseError, or a message that survives a round trip and
    whose SDP body is either parsed or refused with SdpError. Returns how far it got."""
    try:
        msg = m.parse(data)
    except m.SipParseError:
        return "refused"
    again = m.parse(msg.to_bytes())
    assert again.headers == [h for h in msg.headers if h[0] != "Content-Length"] + [
        ("Content-Length", str(len(msg.body)))
    ]
    assert (again.body, again.method, again.status) == (msg.body, msg.method, msg.status)
    _ = (msg.call_id, msg.cseq, msg.from_tag, msg.to_tag, msg.branch)
    if not msg.body:
        return "parsed"
    try:
        offer = sdp.parse(msg.body)
    except (sdp.SdpError, UnicodeDecodeError):  # what the UA catches around sdp.parse
        return "sdp refused"
    assert 0 <= offer.port <= 65535 and offer.address
    return "sdp parsed"


@settings(max_examples=300)
@given(st.sampled_from([INVITE, OK_200, BYE]), st.randoms(use_true_random=False))
def test_mutated_messages_parse_or_are_refused(raw, rnd):
    check_parse(mutate(raw, rnd))


def test_the_mutations_reach_headers_and_bodies():
    """The fuzzer is only worth something if its inputs get past the start line: a third
    are whole messages, and many carry an SDP body that gets parsed (random bytes: none)."""
    rnd = random.Random(4)
    seen = collections.Counter(check_parse(mutate(raw, rnd)) for raw in (INVITE, OK_200) * 150)
    assert seen["refused"] < 200, seen
    assert seen["sdp parsed"] > 60 and seen["sdp refused"] > 10, seen


def test_uri_and_name_addr_helpers():
    assert m.name_addr_uri('"A" <sip:5173@h:5081>;tag=1') == "sip:5173@h:5081"
    assert m.name_addr_uri("sip:5173@h;tag=1") == "sip:5173@h"
    assert m.header_param('"A;B" <sip:x@h;lr>;tag=9', "tag") == "9"
    assert m.parse_uri("sip:6000@127.0.0.1:5070;transport=udp") == m.SipUri(
        "6000", "127.0.0.1", 5070
    )
    assert m.parse_uri("sip:gw.example").hostport == ("gw.example", 5060)
    assert m.parse_uri("tel:+33141587070").user == "+33141587070"
    assert m.parse_uri("sip:1@[::1]:5062").hostport == ("::1", 5062)
    with pytest.raises(m.SipParseError):
        m.parse_uri("http://x")
    with pytest.raises(m.SipParseError):
        m.parse_uri("sip:1@h:port")
    assert m.split_commas('<sip:a,b@h>, "x,y" <sip:c@h>') == ["<sip:a,b@h>", '"x,y" <sip:c@h>']


# ------------------------------------------------------------------ SDP


def test_sdp_offer_parsed_and_answered():
    offer = sdp.parse(m.parse(INVITE).body)
    assert offer.address == "127.0.0.1"
    assert offer.port == 4000
    assert offer.payload_types == (8, 0, 101)
    assert offer.codec == sdp.PCMA  # the offerer's preference is kept
    assert offer.dtmf_pt == 101
    body, codec, dtmf = sdp.answer(offer, "127.0.0.1", 6000)
    answer = sdp.parse(body)
    assert (codec, dtmf) == (8, 101)
    assert answer.payload_types == (8, 101)
    assert answer.port == 6000


def test_sdp_media_level_connection_and_no_dtmf():
    body = (
        "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 5000 RTP/AVP 18 0\r\nc=IN IP4 10.0.0.2\r\n"
        "a=rtpmap:18 G729/8000\r\n"
    )
    offer = sdp.parse(body)
    assert offer.address == "10.0.0.2"
    assert offer.codec == 0
    assert offer.dtmf_pt is None


@pytest.mark.parametrize(
    "body",
    [
        "v=0\r\nc=IN IP4 1.2.3.4\r\n",  # no audio
        "v=0\r\nm=audio 5000 RTP/AVP 0\r\n",  # no address
        "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n",
        "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 5000 RTP/SAVP 0\r\n",
        "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 5000 RTP/AVP zero\r\n",
        "v=0\r\nc=IN IP6\r\nm=audio 5000 RTP/AVP 0\r\n",
        "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio ² RTP/AVP 0\r\n",  # found by the fuzzer
        "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 99999 RTP/AVP 0\r\n",  # found by the fuzzer
    ],
)
def test_bad_sdp(body):
    with pytest.raises(sdp.SdpError):
        sdp.parse(body)


def test_no_common_codec():
    offer = sdp.parse("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 5000 RTP/AVP 18 9\r\n")
    with pytest.raises(sdp.NoCommonCodec):
        _ = offer.codec


# ------------------------------------------------------------------ RTP, DTMF, G.711


def test_rtp_round_trip_with_csrc_extension_and_padding():
    packet = rtp.RtpPacket(0, 65535, 2**32 - 1, 1234, b"\xff" * 160, marker=True)
    assert rtp.RtpPacket.parse(packet.to_bytes()) == packet
    raw = bytearray(packet.to_bytes())
    raw[0] |= 0x20 | 0x10 | 0x01  # padding, extension, one CSRC
    header, payload = bytes(raw[:12]), bytes(raw[12:])
    data = header + b"CSRC" + b"\x00\x01\x00\x01" + b"EXT!" + payload + b"\x00\x00\x03"
    parsed = rtp.RtpPacket.parse(data)
    assert parsed.payload == b"\xff" * 160


@pytest.mark.parametrize("data", [b"", b"\x80" * 11, b"\x40" + b"\x00" * 11])
def test_bad_rtp(data):
    with pytest.raises(rtp.RtpError):
        rtp.RtpPacket.parse(data)


def test_dtmf_each_event_reported_once_despite_redundancy_and_loss():
    receiver = rtp.DtmfReceiver()
    heard: list[str] = []
    ts = 8000
    seq = 1
    for digit in "1234#":
        packets = rtp.dtmf_packets(digit, ssrc=7, sequence=seq, timestamp=ts, payload_type=101)
        seq += len(packets)
        ts += 800
        for packet in packets[1:]:  # first packet lost
            got = receiver.feed(rtp.RtpPacket.parse(packet.to_bytes()))
            if got:
                heard.append(got)
    assert "".join(heard) == "1234#"
    end = rtp.DtmfEvent.parse(packets[-1].payload)
    assert end.end and end.digit == "#" and end.duration == 800


def test_dtmf_same_digit_twice_is_two_events():
    receiver = rtp.DtmfReceiver()
    a = rtp.dtmf_packets("5", ssrc=1, sequence=1, timestamp=100, payload_type=101)
    b = rtp.dtmf_packets("5", ssrc=1, sequence=20, timestamp=1000, payload_type=101)
    assert [receiver.feed(p) for p in a + b].count("5") == 2


def test_g711_matches_reference_tables():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # the reference; Python 3.13+ gets it from audioop-lts (dev extra)
    for value in range(-32768, 32768, 3):
        raw = struct.pack("<h", value)
        assert rtp.linear_to_ulaw(value) == audioop.lin2ulaw(raw, 2)[0]
        assert rtp.linear_to_alaw(value) == audioop.lin2alaw(raw, 2)[0]
    for byte in range(256):
        assert (
            rtp.ULAW_TO_LINEAR[byte] == struct.unpack("<h", audioop.ulaw2lin(bytes([byte]), 2))[0]
        )
        assert (
            rtp.ALAW_TO_LINEAR[byte] == struct.unpack("<h", audioop.alaw2lin(bytes([byte]), 2))[0]
        )


def test_transcode_round_trip_is_close():
    ulaw = bytes(range(256))
    back = rtp.transcode(rtp.transcode(ulaw, 0, 8), 8, 0)
    for a, b in zip(ulaw, back, strict=True):
        assert abs(rtp.ULAW_TO_LINEAR[a] - rtp.ULAW_TO_LINEAR[b]) <= max(
            64, abs(rtp.ULAW_TO_LINEAR[a]) // 16
        )
    assert rtp.transcode(ulaw, 0, 0) is ulaw
    with pytest.raises(rtp.RtpError):
        rtp.transcode(ulaw, 0, 18)


# ------------------------------------------------------------------ routing


def test_digits_go_to_the_gateway():
    r = route("0141587070", "10.0.0.5:5080", forced=False)
    assert (r.uri, r.host, r.port) == ("sip:0141587070@10.0.0.5:5080", "10.0.0.5", 5080)
    assert route("0141587070", "gw.example", forced=False).port == 5060


def test_sip_uri_goes_to_its_host_unless_forced():
    r = route("sip:bob@192.0.2.7:5062", "10.0.0.5:5080", forced=False)
    assert (r.host, r.port, r.uri) == ("192.0.2.7", 5062, "sip:bob@192.0.2.7:5062")
    r = route("sip:bob@192.0.2.7:5062", "10.0.0.5:5080", forced=True)
    assert (r.host, r.port, r.uri) == ("10.0.0.5", 5080, "sip:bob@10.0.0.5:5080")


def test_no_gateway_no_route():
    with pytest.raises(NoRoute):
        route("0141587070", "", forced=False)
    with pytest.raises(NoRoute):
        route("0141587070", "gw:port", forced=False)
