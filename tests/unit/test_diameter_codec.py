"""Framing, the raw AVP walker and the AVP encoders, checked against python-diameter."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest
from diameter.message.avp import Avp
from diameter.message.constants import AVP_CC_TIME, AVP_SESSION_ID, VENDOR_TGPP
from hypothesis import given
from hypothesis import strategies as st

import diameter_dicts
from ocs.diameter import codec as c
from ocs.diameter.errors import FramingError, ProtocolError


def msg(code: int = 280, body: bytes = b"", flags: int = c.FLAG_R, hbh: int = 7) -> bytes:
    return c.encode_message(flags, code, 0, hbh, 9, body)


# ---- dictionaries ---------------------------------------------------------------------


def test_dictionaries_load_and_cross_check() -> None:
    avps = diameter_dicts.load_avps()
    grammars = diameter_dicts.load_grammars()
    assert set(grammars) == {"CCR", "CCA", "RAR", "RAA", "ASR", "ASA", "CER", "CEA", "DWR",
                             "DWA", "DPR", "DPA"}
    assert avps["Tariff-Time-Change"].code == 451 and avps["Tariff-Time-Change"].type == "Time"
    assert avps["Tariff-Change-Usage"].code == 452
    rb = avps["Remaining-Balance"]
    assert (rb.code, rb.vendor, rb.mandatory) == (2021, 10415, False)
    assert avps["Cost-Information"].code == 423
    assert not avps["Product-Name"].mandatory and not avps["Firmware-Revision"].mandatory
    ccr = grammars["CCR"]
    assert ccr.fixed == ("Session-Id",)
    assert "Auth-Application-Id" not in ccr.required  # Kamailio: Vendor-Specific instead
    assert ("Auth-Application-Id", "Vendor-Specific-Application-Id") in ccr.required_one_of
    groups = diameter_dicts.load_group_grammars()
    assert "Tariff-Time-Change" in groups["Granted-Service-Unit"].optional


# ---- framing --------------------------------------------------------------------------


def test_framer_splits_concatenated_and_partial_messages() -> None:
    a, b = msg(hbh=1, body=c.avp_u32(c.K_ORIGIN_STATE_ID, 1)), msg(hbh=2)
    f = c.Framer()
    stream = a + b + a
    assert f.feed(stream[:5]) == []
    assert f.feed(stream[5 : len(a) + 3]) == [a]
    assert f.feed(stream[len(a) + 3 :]) == [b, a]
    assert f.buffered == 0


@given(st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=6),
       st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_framer_any_chunking(sizes: list[int], cuts: list[int]) -> None:
    messages = [msg(hbh=i, body=c.avp(1, b"x" * n)) for i, n in enumerate(sizes)]
    stream = b"".join(messages)
    f = c.Framer()
    out: list[bytes] = []
    pos = 0
    for cut in cuts * 100:
        if pos >= len(stream):
            break
        out += f.feed(stream[pos : pos + cut])
        pos += cut
    out += f.feed(stream[pos:])
    assert out == messages


@pytest.mark.parametrize("header", [
    struct.pack(">I", (1 << 24) | 19) + bytes(16),  # shorter than a header
    struct.pack(">I", (1 << 24) | 22) + bytes(18),  # not a multiple of 4
    struct.pack(">I", (2 << 24) | 20) + bytes(16),  # version 2
    struct.pack(">I", (1 << 24) | 0xFFFFFC) + bytes(16),  # 16 MiB
])
def test_framer_rejects_unframeable_streams(header: bytes) -> None:
    with pytest.raises(FramingError):
        c.Framer().feed(header)


# ---- walker ---------------------------------------------------------------------------


def test_walker_reads_what_python_diameter_writes() -> None:
    sid = Avp.new(AVP_SESSION_ID, value="a;b;c;odd-len")
    t = Avp.new(AVP_CC_TIME, value=65)
    called = Avp.new(832, VENDOR_TGPP, value="sip:+33141587070@ims")
    buf = sid.as_bytes() + t.as_bytes() + called.as_bytes()
    avps = c.walk(buf, 0, len(buf))
    assert [a[0] for a in avps] == [263, 420, c.K_CALLED_PARTY_ADDRESS]
    assert c.text(buf, avps[0]) == "a;b;c;odd-len"
    assert c.u32(buf, avps[1]) == 65
    assert c.text(buf, avps[2]) == "sip:+33141587070@ims"
    assert avps[2][1] & (c.AVP_V | c.AVP_M) == c.AVP_V | c.AVP_M
    assert c.raw_avp(buf, avps[0]) == sid.as_bytes()


@pytest.mark.parametrize("buf", [
    struct.pack(">II", 263, (0x40 << 24) | 40) + b"short",  # overruns the message
    struct.pack(">II", 263, (0x40 << 24) | 4),  # length below the header size
    struct.pack(">II", 832, (0xC0 << 24) | 10) + b"\0\0\0\0",  # vendor AVP < 12 bytes
    b"\0\0\1\7\x40",  # truncated header
])
def test_walker_reports_bad_lengths_as_5014(buf: bytes) -> None:
    with pytest.raises(ProtocolError) as exc:
        c.walk(buf, 0, len(buf))
    assert exc.value.result_code == 5014


def test_fixed_size_values_are_checked() -> None:
    buf = c.avp(420, b"\0\0\0\0\0")
    with pytest.raises(ProtocolError) as exc:
        c.u32(buf, c.walk(buf, 0, len(buf))[0])
    assert exc.value.result_code == 5014


# ---- encoders -------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=2**32 - 1), st.text(max_size=40),
       st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_encoders_decode_with_python_diameter(n: int, s: str, big: int) -> None:
    a = Avp.from_bytes(c.avp_u32(420, n))
    assert (a.code, a.value, a.is_mandatory) == (420, n, True)
    b = Avp.from_bytes(c.avp_str(263, s))
    assert b.value == s
    d = Avp.from_bytes(c.avp_i64(447, big))
    assert d.value == big
    v = Avp.from_bytes(c.avp_u32(2301, n, m=False, vendor=10415))
    assert (v.vendor_id, v.is_mandatory, v.value) == (10415, False, n)


def test_time_and_address_encoding() -> None:
    when = datetime(2026, 11, 25, 19, 0, tzinfo=UTC)
    a = Avp.from_bytes(c.avp_time(451, when))
    assert a.value == when.replace(tzinfo=None) or a.value == when
    buf = c.avp_time(451, when)
    assert c.time_value(buf, c.walk(buf, 0, len(buf))[0]) == when
    ip = Avp.from_bytes(c.avp_address(257, "127.0.0.1"))
    assert ip.value == (1, "127.0.0.1")


def test_ntp_era_rollover() -> None:
    after_2036 = datetime(2040, 1, 1, tzinfo=UTC)
    assert c.ntp_to_datetime(c.datetime_to_ntp(after_2036)) == after_2036


def test_example_avp_for_failed_avp_has_minimum_zero_value() -> None:
    ex = Avp.from_bytes(c.example_avp(416))
    assert (ex.code, ex.value) == (416, 0)
    assert c.example_avp(263) == struct.pack(">II", 263, (0x40 << 24) | 9) + b"\0" * 4
