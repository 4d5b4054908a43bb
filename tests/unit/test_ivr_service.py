"""The bridge over real UDP sockets on loopback, with our own UA as caller and callee.

Directory and charging are fakes; prompts are 60 ms beeps so calls run fast. (The same
flows against a foreign user agent, baresip, and the real OCS are in tests/e2e.)
"""

from __future__ import annotations

import asyncio
import socket
from decimal import Decimal

import pytest

from ivr_bridge import dialog as d
from ivr_bridge.media.session import RtpLeg
from ivr_bridge.service import BridgeSettings, IvrBridge, PromptLibrary
from ivr_bridge.sip import sdp
from ivr_bridge.sip.ua import InboundCall, OutboundCall, SipUserAgent
from ivr_bridge.speech import all_words, prompt_name
from tests.unit.ivr_fakes import FakeLockout, MemoryLogSink

ACCOUNT = d.AccountInfo(1, "1001", "EN", 203800, Decimal("20.38"))


class FakeDirectory:
    def __init__(self) -> None:
        self.checked: list[str] = []

    async def account_by_pin(self, pin: str) -> d.AccountInfo | None:
        return ACCOUNT if pin == "1234" else None

    async def account_by_caller(self, number: str) -> d.AccountInfo | None:
        return ACCOUNT if number == "5173" else None

    async def did_target(self, account_id: int, did: str) -> str | None:
        return "0141587070" if did == "0561500001" else None

    async def check_destination(self, account, destination) -> d.DestinationChecked:
        self.checked.append(destination)
        if destination.startswith("0899"):
            return d.DestinationChecked(d.DestinationStatus.BARRED)
        return d.DestinationChecked(d.DestinationStatus.OK, 600)


class FakeSession:
    def __init__(self, log: list, grant: int, final: bool) -> None:
        self.session_id = "s1"
        self.log = log
        self.grant = grant
        self.final = final

    async def start(self, connect_delay: int) -> d.ChargingAnswered:
        self.log.append(("I", connect_delay))
        return d.ChargingAnswered(True, self.grant, self.final)

    async def update(self, used: int) -> d.ChargingAnswered:
        self.log.append(("U", used))
        return d.ChargingAnswered(True, self.grant, self.final)

    async def stop(self, used: int, cause=d.TerminationCause.LOGOUT) -> d.ChargingAnswered:
        self.log.append(("T", used))
        return d.ChargingAnswered(True)


class FakeCharging:
    def __init__(self, grant: int = 60, final: bool = False) -> None:
        self.log: list = []
        self.grant = grant
        self.final = final
        self.opened: list = []

    def open_session(self, account, subscriber, calling, destination, call_id) -> FakeSession:
        self.opened.append((account.number, subscriber, calling, destination))
        return FakeSession(self.log, self.grant, self.final)


@pytest.fixture
def prompts(tmp_path) -> PromptLibrary:
    beep = bytes([0x00, 0x80] * 240)  # 60 ms of loud square wave
    for lang in ("fr", "en"):
        folder = tmp_path / lang
        folder.mkdir()
        for name in [*map(prompt_name, all_words(lang.upper())), *d.ALL_PROMPTS]:
            (folder / f"{prompt_name(name)}.ul").write_bytes(beep)
    return PromptLibrary(tmp_path)


class Phone:
    """A minimal test phone on our own UA: one call, RTP in/out, DTMF."""

    def __init__(self, ua: SipUserAgent, leg: RtpLeg) -> None:
        self.ua = ua
        self.leg = leg
        self.call: OutboundCall | None = None
        self.answered = asyncio.Event()
        self.ended = asyncio.Event()
        self.failure: int | None = None
        self.audio_packets = 0

    @classmethod
    async def create(cls) -> Phone:
        ua = await SipUserAgent.listen("127.0.0.1", 0, lambda call: call.reject(486, "Busy"))
        leg = await RtpLeg.open("127.0.0.1")
        return cls(ua, leg)

    def dial(self, uri: str, port: int, user: str = "5173") -> None:
        body = sdp.build("127.0.0.1", self.leg.local_port, 0, 101)
        self.call = self.ua.call(uri, ("127.0.0.1", port), user, body)

        def answered(answer: sdp.MediaDescription | None) -> None:
            assert answer is not None
            self.leg.configure((answer.address, answer.port), answer.codec, answer.dtmf_pt)
            self.answered.set()

        def failed(status: int, reason: str) -> None:
            self.failure = status
            self.ended.set()

        self.call.on_answer = answered
        self.call.on_failure = failed
        self.call.on_hangup = self.ended.set

    def close(self) -> None:
        self.leg.close()
        self.ua.close()


class Callee:
    """Auto-answering destination; records the INVITEs it got."""

    def __init__(self) -> None:
        self.invites: list[InboundCall] = []
        self.answer = True
        self.ua: SipUserAgent | None = None
        self.legs: list[RtpLeg] = []
        self.hung_up = asyncio.Event()

    async def start(self) -> None:
        self.ua = await SipUserAgent.listen("127.0.0.1", 0, self._invite)

    def _invite(self, call: InboundCall) -> None:
        self.invites.append(call)
        call.on_hangup = self.hung_up.set
        if self.answer:
            asyncio.get_running_loop().create_task(self._answer(call))
        else:
            call.ringing()

    async def _answer(self, call: InboundCall) -> None:
        leg = await RtpLeg.open("127.0.0.1")
        self.legs.append(leg)
        assert call.offer is not None
        leg.configure((call.offer.address, call.offer.port), call.offer.codec, None)
        call.answer(sdp.build("127.0.0.1", leg.local_port, call.offer.codec, None))
        leg.start_clock()
        leg.play(bytes([0x10, 0x90] * 8000))  # 2 s of tone towards the caller

    def close(self) -> None:
        for leg in self.legs:
            leg.close()
        if self.ua:
            self.ua.close()


@pytest.fixture
async def rig(prompts):
    callee = Callee()
    await callee.start()
    assert callee.ua is not None
    gateway = f"127.0.0.1:{callee.ua.port}"
    directory = FakeDirectory()
    charging = FakeCharging()

    async def settings() -> BridgeSettings:
        return BridgeSettings(
            d.DialogConfig(first_digit_timeout=2, inter_digit_timeout=0.5, one_step_access=False),
            gateway,
        )

    bridge = IvrBridge(
        "127.0.0.1", 0, directory=directory, charging=charging, settings=settings,
        prompts=prompts, lockout=FakeLockout(), log_sink=MemoryLogSink(),
    )  # fmt: skip
    await bridge.start()
    phone = await Phone.create()
    yield bridge, phone, callee, charging, directory
    phone.close()
    await bridge.stop()
    callee.close()


async def wait_for(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_pin_call_by_rfc4733_connects_relays_and_charges(rig):
    bridge, phone, callee, charging, directory = rig
    phone.dial(f"sip:6000@127.0.0.1:{bridge.sip_port}", bridge.sip_port)
    await asyncio.wait_for(phone.answered.wait(), 3)
    phone.leg.send_dtmf("1234#")
    await wait_for(
        lambda: (
            bool(bridge.calls)
            and next(iter(bridge.calls.values())).dialog.state is d.State.DESTINATION
        )
    )
    phone.leg.send_dtmf("0899#")  # barred: told and asked again
    await wait_for(lambda: directory.checked == ["0899"])
    phone.leg.send_dtmf("0141587070#")
    await wait_for(lambda: bool(callee.invites) and callee.legs != [], 5)
    assert callee.invites[0].called == "0141587070"
    assert callee.invites[0].calling == "5173"
    await wait_for(lambda: ("I", 0) in charging.log)
    # media relayed from the callee to the caller
    controller = next(iter(bridge.calls.values()))
    # talk until 1.2 s of the callee's audio (60 x 20 ms) has been relayed: at least 1 s
    await wait_for(lambda: controller.caller_leg.relayed_packets > 60, 10)
    phone.call.bye()  # type: ignore[union-attr]
    await asyncio.wait_for(callee.hung_up.wait(), 3)
    await wait_for(lambda: any(entry[0] == "T" for entry in charging.log))
    # the exact-seconds arithmetic is checked with a fake clock in test_ivr_dialog.py
    assert charging.log[0] == ("I", 0) and len(charging.log) == 2
    assert charging.log[1][0] == "T" and charging.log[1][1] >= 1
    assert charging.opened == [("1001", d.SubscriberKind.ACCOUNT, "5173", "0141587070")]


async def test_pin_by_sip_info(rig):
    bridge, phone, *_ = rig
    phone.dial(f"sip:6000@127.0.0.1:{bridge.sip_port}", bridge.sip_port)
    await asyncio.wait_for(phone.answered.wait(), 3)
    call = phone.call
    assert call is not None
    for n, digit in enumerate("1234#", start=2):
        info = call._in_dialog("INFO", n, f"{call.invite.header('To')};tag={call.remote_tag}")
        info.add("Content-Type", "application/dtmf-relay")
        info.body = f"Signal={digit}\r\nDuration=160\r\n".encode()
        phone.ua.send(info, ("127.0.0.1", bridge.sip_port))
        await asyncio.sleep(0.02)
    await wait_for(lambda: next(iter(bridge.calls.values())).dialog.state is d.State.DESTINATION)


async def test_one_step_rings_then_answers_on_far_answer(rig):
    bridge, phone, callee, charging, _ = rig
    phone.dial(f"sip:0561500001@127.0.0.1:{bridge.sip_port}", bridge.sip_port)
    await asyncio.wait_for(phone.answered.wait(), 5)
    assert callee.invites[0].called == "0141587070"
    assert charging.opened[0][1] is d.SubscriberKind.E164
    # callee hangs up -> caller gets BYE, CCR-T sent
    callee.invites[0].hangup()
    await asyncio.wait_for(phone.ended.wait(), 3)
    await wait_for(lambda: any(entry[0] == "T" for entry in charging.log))


async def test_one_step_unknown_did_gets_404(rig):
    bridge, phone, *_ = rig
    phone.dial(f"sip:0561509999@127.0.0.1:{bridge.sip_port}", bridge.sip_port)
    await asyncio.wait_for(phone.ended.wait(), 3)
    assert phone.failure == 404


async def test_caller_cancel_while_far_end_rings_cancels_outgoing_leg(rig):
    bridge, phone, callee, charging, _ = rig
    callee.answer = False
    phone.dial(f"sip:0561500001@127.0.0.1:{bridge.sip_port}", bridge.sip_port)
    await wait_for(lambda: bool(callee.invites))
    await asyncio.sleep(0.1)
    phone.call.release()  # type: ignore[union-attr]  # CANCEL (we got 180)
    await asyncio.wait_for(callee.hung_up.wait(), 3)  # the bridge CANCELled its leg
    await asyncio.wait_for(phone.ended.wait(), 3)
    assert phone.failure is None or phone.failure == 487
    assert charging.log == []


async def test_options_malformed_and_stray_requests(rig):
    bridge, *_ = rig
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2)
    target = ("127.0.0.1", bridge.sip_port)
    try:
        sock.sendto(b"this is not SIP\r\n\r\n", target)
        sock.sendto(b"\r\n\r\n", target)
        base = (
            "{method} sip:6000@127.0.0.1 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{branch}\r\n"
            "From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:6000@127.0.0.1>{to}\r\n"
            "Call-ID: stray-{branch}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(base.format(method="OPTIONS", branch="o1", to="").encode(), target)
        reply = (await asyncio.to_thread(sock.recv, 4096)).decode()
        assert reply.startswith("SIP/2.0 200")
        assert "Allow: INVITE" in reply
        sock.sendto(base.format(method="BYE", branch="b1", to=";tag=zz").encode(), target)
        assert (await asyncio.to_thread(sock.recv, 4096)).decode().startswith("SIP/2.0 481")
        # an INVITE without SDP is refused (no late offer)
        sock.sendto(base.format(method="INVITE", branch="i1", to="").encode(), target)
        replies = [(await asyncio.to_thread(sock.recv, 4096)).decode() for _ in range(2)]
        assert replies[0].startswith("SIP/2.0 100")
        assert replies[1].startswith("SIP/2.0 488")
    finally:
        sock.close()
    assert bridge.ua.parse_errors == 1
