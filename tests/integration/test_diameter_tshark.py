"""Wire check with Wireshark's Diameter dissector.

The messages are produced by the real peer state machines (server and client side), put
in a pcap with Ethernet/IPv4/TCP framing on port 3868 (with a TCP handshake, consistent
sequence numbers and checksums), and `tshark -z expert` must report no malformed frame,
no error and no warning.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

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
    UsedUnits,
)
from ocs.diameter import codec as c
from ocs.diameter.peer import (
    ClientPeer,
    CreditControl,
    LocalIdentity,
    Send,
    ServerPeer,
    ServerRequest,
)
from tests.conftest import unavailable

pytestmark = pytest.mark.tshark

TSHARK = shutil.which("tshark")


@pytest.fixture(autouse=True)
def _need_tshark() -> None:
    if TSHARK is None:
        unavailable("tshark")


# ---- a tiny pcap writer ---------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f">{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class Pcap:
    CLIENT = (bytes([10, 0, 0, 1]), 40000)
    SERVER = (bytes([10, 0, 0, 2]), 3868)

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.seq = {True: 1000, False: 5000}  # True = client -> server
        self.t = 1_764_000_000.0

    def _tcp(self, from_client: bool, flags: int, payload: bytes = b"") -> None:
        (src, sport), (dst, dport) = ((self.CLIENT, self.SERVER) if from_client
                                      else (self.SERVER, self.CLIENT))
        seq = self.seq[from_client]
        ack = self.seq[not from_client] if flags & 0x10 else 0
        tcp = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
        pseudo = src + dst + struct.pack(">BBH", 0, 6, len(tcp) + len(payload))
        csum = _checksum(pseudo + tcp + payload)
        tcp = tcp[:16] + struct.pack(">H", csum) + tcp[18:]
        total = 20 + len(tcp) + len(payload)
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, len(self.frames) & 0xFFFF, 0x4000,
                         64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack(">H", _checksum(ip)) + ip[12:]
        eth = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00"
        if not from_client:
            eth = b"\x02\0\0\0\0\x01" + b"\x02\0\0\0\0\x02" + b"\x08\x00"
        self.frames.append(eth + ip + tcp + payload)
        self.seq[from_client] += len(payload) + (1 if flags & 0x03 else 0)

    def handshake(self) -> None:
        self._tcp(True, 0x02)  # SYN
        self._tcp(False, 0x12)  # SYN-ACK
        self._tcp(True, 0x10)  # ACK

    def send(self, from_client: bool, data: bytes) -> None:
        self._tcp(from_client, 0x18, data)  # PSH|ACK

    def write(self, path: Path) -> None:
        out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
        for i, f in enumerate(self.frames):
            ts = self.t + i * 0.001
            out.append(struct.pack("<IIII", int(ts), int((ts % 1) * 1e6), len(f), len(f)) + f)
        path.write_bytes(b"".join(out))


def only_send(events: Sequence[object]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Send))


def conversation() -> tuple[Pcap, dict[str, int]]:
    """Run a client and the server state machines against each other, recording bytes."""
    pcap = Pcap()
    pcap.handshake()
    server = ServerPeer(LocalIdentity("ocs.test", "test", host_ip="10.0.0.2"), {"*"})
    client = ClientPeer(LocalIdentity("pcscf.test", "test", host_ip="10.0.0.1"), "test")
    counts: dict[str, int] = {}

    def c2s(data: bytes) -> list[object]:
        pcap.send(True, data)
        return list(server.receive_data(data))

    def s2c(data: bytes) -> list[object]:
        pcap.send(False, data)
        return list(client.receive_data(data))

    def count(name: str) -> None:
        counts[name] = counts.get(name, 0) + 1

    # CER / CEA
    s2c(only_send(c2s(client.start())))
    count("CER")
    count("CEA")
    # DWR from client, DWR from server
    s2c(only_send(c2s(client.build_dwr()[1])))
    c2s(only_send(s2c(server.build_dwr()[1])))
    count("DWR")
    count("DWA")
    sub = (SubscriptionId(SubscriptionIdType.END_USER_E164, "+335173"),)
    ttc = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    # CCR-I (Kamailio style) -> CCA with MSCC, FUI, Tariff-Time-Change, Remaining-Balance
    req = CCRequest("pcscf.test;1;1", "pcscf.test", "test", RequestType.INITIAL, 0, sub,
                    called_party="sip:+33141587070@ims.test",
                    calling_party="sip:+335173@ims.test", call_id="icid-1",
                    mscc=(MsccRequest(100, 1000, True, None),),
                    event_timestamp=datetime(2026, 11, 25, 19, 0, tzinfo=UTC),
                    service_context_id="ext.01.001.8.32260@3gpp.org")
    _, data = client.build_ccr(req, vendor_specific_app=True)
    (ev,) = c2s(data)
    assert isinstance(ev, CreditControl)
    s2c(server.answer_ccr(ev.frame, CCAnswer(
        2001, RequestType.INITIAL, 0,
        mscc=(MsccAnswer(2001, 100, 1000, granted_time=40, validity_time=60,
                         final_unit_action=FinalUnitAction.TERMINATE,
                         tariff_time_change=ttc),),
        remaining_balance=187600)))
    count("CCA")
    # CCR-U with used units -> top-level style CCA with FUI and TTC
    upd = CCRequest("pcscf.test;1;1", "pcscf.test", "test", RequestType.UPDATE, 1, sub,
                    requested=True, used=(UsedUnits(41),))
    (ev,) = c2s(client.build_ccr(upd)[1])
    assert isinstance(ev, CreditControl)
    s2c(server.answer_ccr(ev.frame, CCAnswer(
        2001, RequestType.UPDATE, 1, granted_time=12, validity_time=30,
        final_unit_action=FinalUnitAction.TERMINATE, tariff_time_change=ttc,
        remaining_balance=2400)))
    count("CCA")
    # server-initiated RAR and ASR, answered by the client
    for build in (server.build_rar, server.build_asr):
        (sr,) = s2c(build("pcscf.test;1;1")[1])
        assert isinstance(sr, ServerRequest)
        c2s(client.answer_request(sr))
    count("RAR")
    count("ASR")
    # CCR-E price enquiry -> Cost-Information
    ev_req = CCRequest("pcscf.test;2", "pcscf.test", "test", RequestType.EVENT, 0, sub,
                       called_party="3000", requested_action=RequestedAction.PRICE_ENQUIRY,
                       requested=True, requested_time=65)
    (ev,) = c2s(client.build_ccr(ev_req)[1])
    assert isinstance(ev, CreditControl)
    s2c(server.answer_ccr(ev.frame, CCAnswer(2001, RequestType.EVENT, 0, cost_units=13000,
                                             remaining_balance=187600)))
    count("CCA")
    # a CCR with a missing mandatory AVP -> 5005 with Failed-AVP
    h = c.parse_header(client.build_ccr(ev_req)[1])
    bad = client.build_ccr(ev_req)[1]
    avps = c.walk(bad, 20, len(bad))
    ctx = c.find(avps, c.K_SERVICE_CONTEXT_ID)
    assert ctx is not None
    body = bad[20 : ctx[4]] + bad[(ctx[3] + 3) & ~3 :]
    s2c(only_send(c2s(c.encode_message(h.flags, 272, 4, h.hbh + 1000, h.e2e, body))))
    count("CCA")
    # unsupported command -> 3001 with the E-bit
    acr = c.encode_message(c.FLAG_R | c.FLAG_P, 271, 3, 77, 77,
                           c.avp_str(263, "x") + c.avp_str(264, "pcscf.test")
                           + c.avp_str(296, "test"))
    pcap.send(True, acr)
    pcap.send(False, only_send(server.receive_data(acr)))
    # DPR / DPA
    s2c(only_send(c2s(client.build_dpr())))
    return pcap, counts


def tshark(*args: str) -> str:
    assert TSHARK is not None
    return subprocess.run([TSHARK, *args], check=True, capture_output=True, text=True,
                          timeout=60).stdout


def test_wireshark_finds_no_malformed_frames_or_warnings(tmp_path: Path) -> None:
    pcap, counts = conversation()
    path = tmp_path / "gy.pcap"
    pcap.write(path)
    fields = tshark("-r", str(path), "-d", "tcp.port==3868,diameter", "-Y", "diameter",
                    "-T", "fields", "-e", "diameter.cmd.code", "-e", "diameter.flags.request",
                    "-e", "diameter.Result-Code")
    rows = [line.split("\t") for line in fields.splitlines() if line]
    cmds = [(int(r[0]), r[1] in ("1", "True")) for r in rows]
    assert cmds.count((257, False)) == 1  # CEA
    assert cmds.count((280, False)) == 2  # DWA both ways
    assert cmds.count((272, False)) == counts["CCA"]
    assert (258, True) in cmds and (274, True) in cmds  # RAR, ASR
    assert (282, False) in cmds  # DPA
    # no malformed frame, no error, no warning in what the server sends
    # (CEA, DWA, CCA with MSCC/FUI/Tariff-Time-Change/Remaining-Balance/Cost-Information/
    # Failed-AVP, RAR, ASR, DPA, the E-bit error answer)
    server_frames = "ip.src == 10.0.0.2 && diameter"
    assert tshark("-r", str(path), "-Y", f"{server_frames} && _ws.malformed").strip() == ""
    expert = tshark("-r", str(path), "-q", "-Y", server_frames, "-z",
                    f"expert,warn,{server_frames}")
    assert "Errors" not in expert and "Warns" not in expert, expert
    # client side (real-world Kamailio-like requests): the only remarks allowed are
    # Wireshark's notes on an empty Requested-Service-Unit ("server decides the quota")
    # and on an E.164 Subscription-Id-Data written with a leading "+"
    client_warn = tshark("-r", str(path), "-Y",
                         "ip.src == 10.0.0.1 && _ws.expert.severity >= 6291456",
                         "-T", "fields", "-e", "_ws.expert.message")
    remarks = {m for line in client_warn.splitlines() for m in line.split(",") if m}
    assert remarks <= {"Data is empty", "Country Code contains non-decimal digits"}, remarks


def test_wireshark_decodes_grants_tariff_change_and_balance(tmp_path: Path) -> None:
    pcap, _ = conversation()
    path = tmp_path / "gy.pcap"
    pcap.write(path)
    out = tshark("-r", str(path), "-Y", "diameter.cmd.code == 272 && diameter.flags.request == 0",
                 "-V")
    assert "Tariff-Time-Change" in out
    assert "Final-Unit-Action: TERMINATE" in out
    assert "Remaining-Balance" in out and "Cost-Information" in out
    assert "CC-Time: 40" in out
    assert "Failed-AVP" in out
