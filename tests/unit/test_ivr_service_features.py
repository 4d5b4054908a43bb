"""Issue-11 behaviour of the bridge over real UDP sockets on loopback, with our own UA as the
phone and the destination (directory and charging are fakes; prompts are short beeps):
no RTP after BYE, DTMF relay, early media, ICMP fail-fast, Timer B, the service log."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from ivr_bridge import dialog as d
from ivr_bridge.media.session import RtpLeg
from ivr_bridge.service import BridgeSettings, IvrBridge, PromptLibrary
from ivr_bridge.sip import sdp
from ivr_bridge.sip.ua import InboundCall, SipUserAgent
from ivr_bridge.speech import all_words, prompt_name
from tests.unit.ivr_fakes import FakeLockout, MemoryLogSink
from tests.unit.test_ivr_service import FakeCharging, FakeDirectory, Phone

BEEP = bytes([0x00, 0x80] * 240)  # 60 ms of loud square wave


@pytest.fixture
def prompts(tmp_path) -> PromptLibrary:
    for folder_name in ("fr", "en", "tones"):
        folder = tmp_path / folder_name
        folder.mkdir()
        names = [*all_words(folder_name.upper())] if folder_name != "tones" else []
        for name in [*names, *d.ALL_PROMPTS, *d.TONES]:
            (folder / f"{prompt_name(name)}.ul").write_bytes(BEEP)
    return PromptLibrary(tmp_path)


@dataclass
class Destination:
    """A destination UA on our stack: answers (or rings, or sends early media) and records
    the DTMF it receives, as RFC 4733 on its RTP leg or as SIP INFO."""

    telephone_event: bool = True
    answer: bool = True
    early_media: bool = False
    ua: SipUserAgent | None = None
    calls: list[InboundCall] = field(default_factory=list)
    legs: list[RtpLeg] = field(default_factory=list)
    rtp_digits: list[str] = field(default_factory=list)
    info_digits: list[str] = field(default_factory=list)

    async def start(self) -> None:
        self.ua = await SipUserAgent.listen("127.0.0.1", 0, self._invite)

    def _invite(self, call: InboundCall) -> None:
        self.calls.append(call)
        call.on_digit = self.info_digits.append
        asyncio.get_running_loop().create_task(self._handle(call))

    async def _handle(self, call: InboundCall) -> None:
        assert call.offer is not None
        dtmf = call.offer.dtmf_pt if self.telephone_event else None
        leg = await RtpLeg.open("127.0.0.1", on_digit=self.rtp_digits.append)
        self.legs.append(leg)
        leg.configure((call.offer.address, call.offer.port), call.offer.codec, dtmf)
        body = sdp.build("127.0.0.1", leg.local_port, call.offer.codec, dtmf)
        if self.early_media:
            call.session_progress(body)
            leg.play(BEEP * 40)  # 2.4 s of "announcement" before any answer
        elif not self.answer:
            call.ringing()
        if self.answer:
            call.answer(body)
            leg.start_clock()

    def close(self) -> None:
        for leg in self.legs:
            leg.close()
        if self.ua:
            self.ua.close()


async def make_bridge(prompts: PromptLibrary, gateway: str, **config) -> IvrBridge:
    dialog = d.DialogConfig(first_digit_timeout=2, inter_digit_timeout=0.5, **config)

    async def settings() -> BridgeSettings:
        return BridgeSettings(dialog, gateway)

    bridge = IvrBridge(
        "127.0.0.1", 0, directory=FakeDirectory(), charging=FakeCharging(), settings=settings,
        prompts=prompts, lockout=FakeLockout(), log_sink=MemoryLogSink(),
    )  # fmt: skip
    await bridge.start()
    return bridge


@pytest.fixture
async def destination() -> AsyncIterator[Destination]:
    dest = Destination()
    await dest.start()
    yield dest
    dest.close()


@pytest.fixture
async def phone() -> AsyncIterator[Phone]:
    p = await Phone.create()
    yield p
    p.close()


async def wait_for(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def only_controller(bridge: IvrBridge):
    (controller,) = bridge.calls.values()
    return controller


async def one_step_connected(bridge: IvrBridge, phone: Phone, dest: Destination) -> None:
    """Caller 5173 dials DID 0561500001 (-> 0141587070): connected and bridged."""
    phone.dial(f"sip:0561500001@127.0.0.1:{bridge.sip_port}", bridge.sip_port)
    await asyncio.wait_for(phone.answered.wait(), 5)
    controller = only_controller(bridge)
    await wait_for(lambda: controller.dialog.state is d.State.CONNECTED)


# ------------------------------------------------------------------ no RTP after BYE


async def test_no_rtp_reaches_the_caller_after_its_bye(prompts, phone, destination):
    assert destination.ua is not None
    bridge = await make_bridge(prompts, f"127.0.0.1:{destination.ua.port}")
    try:
        await one_step_connected(bridge, phone, destination)
        controller = only_controller(bridge)
        await wait_for(lambda: phone.leg.received_packets > 20)
        phone.call.bye()  # type: ignore[union-attr]
        await wait_for(lambda: controller.dialog.state is d.State.ENDED)
        at_bye = phone.leg.received_packets
        await asyncio.sleep(0.8)  # time passes: a live 20 ms RTP clock would send ~40 frames
        # nothing after the BYE but what was already on the wire (at most a frame)
        assert phone.leg.received_packets - at_bye <= 1
    finally:
        await bridge.stop()


async def test_no_rtp_reaches_the_caller_after_our_bye(prompts, phone, destination):
    assert destination.ua is not None
    bridge = await make_bridge(prompts, f"127.0.0.1:{destination.ua.port}")
    try:
        await one_step_connected(bridge, phone, destination)
        await wait_for(lambda: phone.leg.received_packets > 20)
        destination.calls[0].hangup()  # the destination hangs up: the bridge BYEs the phone
        await asyncio.wait_for(phone.ended.wait(), 3)
        at_bye = phone.leg.received_packets
        await asyncio.sleep(0.8)  # time passes: a live 20 ms RTP clock would send ~40 frames
        assert phone.leg.received_packets - at_bye <= 1
    finally:
        await bridge.stop()


# ------------------------------------------------------------------ DTMF relay


async def test_rfc4733_digits_after_connect_reach_the_destination_as_rfc4733(
    prompts, phone, destination
):
    assert destination.ua is not None
    bridge = await make_bridge(prompts, f"127.0.0.1:{destination.ua.port}")
    try:
        await one_step_connected(bridge, phone, destination)
        for digit in "12#":
            phone.leg.send_dtmf(digit)
            await asyncio.sleep(0.15)
        await wait_for(lambda: destination.rtp_digits == ["1", "2", "#"])
        assert destination.info_digits == []
    finally:
        await bridge.stop()


async def test_sip_info_digits_reach_the_destination_as_rfc4733(prompts, phone, destination):
    assert destination.ua is not None
    bridge = await make_bridge(prompts, f"127.0.0.1:{destination.ua.port}")
    try:
        await one_step_connected(bridge, phone, destination)
        call = phone.call
        assert call is not None
        for n, digit in enumerate("47", start=2):
            info = call._in_dialog("INFO", n, f"{call.invite.header('To')};tag={call.remote_tag}")
            info.add("Content-Type", "application/dtmf-relay")
            info.body = f"Signal={digit}\r\nDuration=160\r\n".encode()
            phone.ua.send(info, ("127.0.0.1", bridge.sip_port))
            await asyncio.sleep(0.15)
        await wait_for(lambda: destination.rtp_digits == ["4", "7"])
    finally:
        await bridge.stop()


async def test_destination_without_telephone_event_gets_sip_info(prompts, phone):
    dest = Destination(telephone_event=False)
    await dest.start()
    assert dest.ua is not None
    bridge = await make_bridge(prompts, f"127.0.0.1:{dest.ua.port}")
    try:
        await one_step_connected(bridge, phone, dest)
        phone.leg.send_dtmf("9")
        await wait_for(lambda: dest.info_digits == ["9"])
        assert dest.rtp_digits == []
    finally:
        await bridge.stop()
        dest.close()


# ------------------------------------------------------------------ progress


async def test_one_step_caller_gets_183_and_the_destinations_early_media(prompts, phone):
    dest = Destination(early_media=True, answer=False)
    await dest.start()
    assert dest.ua is not None
    bridge = await make_bridge(prompts, f"127.0.0.1:{dest.ua.port}")
    progress: list[int] = []
    try:
        phone.dial(f"sip:0561500001@127.0.0.1:{bridge.sip_port}", bridge.sip_port)
        assert phone.call is not None

        def on_progress(status: int, early: sdp.MediaDescription | None) -> None:
            progress.append(status)
            if early is not None:
                phone.leg.configure((early.address, early.port), early.codec, early.dtmf_pt)

        phone.call.on_progress = on_progress
        await wait_for(lambda: 183 in progress)
        await wait_for(lambda: phone.leg.received_packets > 20)  # relayed before any answer
        assert not phone.answered.is_set()
        assert progress[0] == 180  # we said "ringing" at once
    finally:
        await bridge.stop()
        dest.close()


async def test_pin_caller_hears_local_ringback_while_the_destination_rings(prompts, phone):
    dest = Destination(answer=False)
    await dest.start()
    assert dest.ua is not None
    bridge = await make_bridge(prompts, f"127.0.0.1:{dest.ua.port}", one_step_access=False)
    try:
        phone.dial(f"sip:6000@127.0.0.1:{bridge.sip_port}", bridge.sip_port)
        await asyncio.wait_for(phone.answered.wait(), 3)
        phone.leg.send_dtmf("1234#")
        controller = only_controller(bridge)
        await wait_for(lambda: controller.dialog.state is d.State.DESTINATION)
        phone.leg.send_dtmf("0141587070#")
        await wait_for(lambda: bool(dest.calls))
        await wait_for(lambda: controller.dialog._ringback is not None, 5)
        plays = [c for c in controller.history if isinstance(c, d.Play) and c.loop]
        assert plays[0].prompts == (d.TONE_RINGBACK,)
        assert controller.caller_leg.playing  # the tone is on the line, looping
        heard = phone.leg.received_packets
        await wait_for(lambda: phone.leg.received_packets >= heard + 15)  # 0.3 s of it arrives
        assert controller.caller_leg.playing  # and it is still on
    finally:
        await bridge.stop()
        dest.close()


# ------------------------------------------------------------------ failures, timers


async def test_unreachable_gateway_fails_at_once_on_icmp(prompts, phone):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    # nothing listens there now: the kernel answers ICMP port unreachable
    bridge = await make_bridge(prompts, f"127.0.0.1:{closed_port}")
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        phone.dial(f"sip:0561500001@127.0.0.1:{bridge.sip_port}", bridge.sip_port)
        await asyncio.wait_for(phone.ended.wait(), 5)
        assert loop.time() - started < 2.0  # not Timer B's 32 s
        assert phone.failure == 480
    finally:
        await bridge.stop()


async def test_timer_b_is_measured_from_the_first_invite(prompts):
    """A gateway that never answers: the INVITE fails Timer B after the first send, not after
    the sum of the retransmission intervals that happens to pass it (32 -> 35.5 s)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blackhole:
        blackhole.bind(("127.0.0.1", 0))  # receives, never answers, no ICMP either
        ua = await SipUserAgent.listen("127.0.0.1", 0, lambda call: None)
        ua.timer_b = 3.0  # the 0.5/1/2 s retransmissions add up to 3.5 s
        failed: list[float] = []
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            call = ua.call("sip:1@127.0.0.1", blackhole.getsockname(), "5173", b"")
            call.on_failure = lambda status, reason: failed.append(loop.time() - started)
            await wait_for(lambda: bool(failed), 6)
            assert failed[0] == pytest.approx(3.0, abs=0.25)
            assert call.state == "terminated"
        finally:
            ua.close()


# ------------------------------------------------------------------ service log


async def test_every_step_of_a_call_is_in_the_service_log_with_the_pin_masked(prompts, phone):
    bridge = await make_bridge(prompts, "127.0.0.1:9", one_step_access=False)
    sink = bridge.log_sink
    assert isinstance(sink, MemoryLogSink)
    try:
        phone.dial(f"sip:6000@127.0.0.1:{bridge.sip_port}", bridge.sip_port)
        await asyncio.wait_for(phone.answered.wait(), 3)
        phone.leg.send_dtmf("1234#")
        controller = only_controller(bridge)
        await wait_for(lambda: controller.dialog.state is d.State.DESTINATION)
        phone.call.bye()  # type: ignore[union-attr]
        await asyncio.wait_for(controller.finished.wait(), 5)
    finally:
        await bridge.stop()
    lines = [e.line for e in sink.entries]
    assert {e.call_id for e in sink.entries} == {controller.inbound.call_id}
    assert "1234" not in repr(lines)
    actions = [a for line in lines for a in line["actions"]]
    assert {"do": "lookup_pin", "pin": "****"} in actions
    assert any(a["do"] == "play" and d.P_ENTER_PIN in a["prompts"] for a in actions)
    assert actions[-1] == {"do": "end", "reason": "caller_hangup"}
    assert [line["step"] for line in lines] == sorted(line["step"] for line in lines)
