"""The IVR bridge against the real OCS (charging engine + Diameter server + database):
ASR and RAR in the middle of a call, and the OCS going down mid-call.

Wired as `ocs serve` wires them (ivr_bridge.service.start_part): the bridge is a Gy client
of the Diameter server over loopback, with the OCS directory. Caller and destination are
SIP endpoints on our own UA (ivr_bridge.sip.ua), so no external tool is needed. The call is
a one-step call (caller ID 5173 of account 1001 dials DID 0561500001 -> 0141587070).
Whatever happens, the money must end consistent: nothing left reserved, each call charged
once (and the after-test money check of tests/conftest.py agrees).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from ivr_bridge.backends import CreditControlCharging, OcsDirectory, ReconnectingClient
from ivr_bridge.media.session import RtpLeg
from ivr_bridge.service import IvrBridge
from ivr_bridge.sip import sdp
from ivr_bridge.sip.ua import InboundCall, OutboundCall, SipUserAgent
from ocs import accounts, ledger
from ocs.charging.engine import ChargingEngine
from ocs.config import Settings
from ocs.demo import load_demo
from ocs.diameter import DiameterServer, GyClient
from ocs.events import EventBus
from ocs.models import Cdr, CreditSession, LedgerEntry
from ocs.settings_store import save_operator_settings

DEMO = 250_000
RATE = 200


async def until(condition: Callable[[], object], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def until_async(condition: Callable[[], object], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():  # type: ignore[misc]
            await asyncio.sleep(0.05)


class Phone:
    """The caller: one call from 5173, RTP both ways."""

    def __init__(self, ua: SipUserAgent, leg: RtpLeg) -> None:
        self.ua, self.leg = ua, leg
        self.call: OutboundCall | None = None
        self.answered = asyncio.Event()
        self.ended = asyncio.Event()

    @classmethod
    async def create(cls) -> Phone:
        ua = await SipUserAgent.listen("127.0.0.1", 0, lambda call: call.reject(486, "Busy"))
        return cls(ua, await RtpLeg.open("127.0.0.1"))

    def dial(self, number: str, port: int) -> None:
        body = sdp.build("127.0.0.1", self.leg.local_port, 0, 101)
        self.call = self.ua.call(f"sip:{number}@127.0.0.1:{port}", ("127.0.0.1", port), "5173",
                                 body)

        def answered(answer: sdp.MediaDescription | None) -> None:
            assert answer is not None
            self.leg.configure((answer.address, answer.port), answer.codec, answer.dtmf_pt)
            self.leg.start_clock()
            self.answered.set()

        self.call.on_answer = answered
        self.call.on_failure = lambda status, reason: self.ended.set()
        self.call.on_hangup = self.ended.set

    def close(self) -> None:
        self.leg.close()
        self.ua.close()


@dataclass
class Destination:
    """0141587070: answers every call, plays a tone."""

    ua: SipUserAgent | None = None
    legs: list[RtpLeg] = field(default_factory=list)
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self.ua = await SipUserAgent.listen("127.0.0.1", 0, self._invite)

    def _invite(self, call: InboundCall) -> None:
        call.on_hangup = self.hung_up.set
        asyncio.get_running_loop().create_task(self._answer(call))

    async def _answer(self, call: InboundCall) -> None:
        leg = await RtpLeg.open("127.0.0.1")
        self.legs.append(leg)
        assert call.offer is not None
        leg.configure((call.offer.address, call.offer.port), call.offer.codec, None)
        call.answer(sdp.build("127.0.0.1", leg.local_port, call.offer.codec, None))
        leg.start_clock()
        leg.play(bytes([0x10, 0x90] * 40000))
        self.answered.set()

    def close(self) -> None:
        for leg in self.legs:
            leg.close()
        if self.ua is not None:
            self.ua.close()


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Ocs:
    """The charging engine and its Diameter server: one OCS process."""

    engine: ChargingEngine
    server: DiameterServer

    @classmethod
    async def start(cls, clock: Clock, port: int = 0) -> Ocs:
        engine = ChargingEngine(ledger.store(), EventBus(), clock=clock, tcc_interval=3600)
        await engine.start()
        server = DiameterServer(engine, host="127.0.0.1", port=port, origin_host="ocs.test",
                                realm="test", allowed_peers=["*"])
        engine.set_gateway(server)
        await server.start()
        return cls(engine, server)

    async def stop(self) -> None:
        await self.server.stop(grace=0.2)
        await self.engine.stop()


@dataclass
class Rig:
    ocs: Ocs
    clock: Clock
    bridge: IvrBridge
    gy: GyClient
    phone: Phone
    destination: Destination

    async def connected_call(self) -> str:
        """Dial the DID; returns the Session-Id once the call is bridged and charged."""
        self.phone.dial("0561500001", self.bridge.sip_port)
        await asyncio.wait_for(self.phone.answered.wait(), 20)
        await asyncio.wait_for(self.destination.answered.wait(), 20)
        await until(lambda: self.ocs.engine.live_sessions())
        (session,) = self.ocs.engine.live_sessions()
        return session.session_id


@pytest.fixture
async def rig(db: Settings) -> AsyncIterator[Rig]:
    await load_demo()
    destination = Destination()
    await destination.start()
    assert destination.ua is not None
    # short grants, so the bridge talks to the OCS every few seconds of a call
    await save_operator_settings({"default_calling_address": f"127.0.0.1:{destination.ua.port}",
                                  "default_grant": 6})
    clock = Clock()
    ocs = await Ocs.start(clock)
    gy = GyClient("127.0.0.1", ocs.server.bound_port, "ivr.test", "test")
    await gy.connect()
    charging = CreditControlCharging(ReconnectingClient(gy, min_interval=0.2), gy.origin_host,
                                     gy.realm)
    bridge = IvrBridge("127.0.0.1", 0, directory=OcsDirectory(), charging=charging)
    gy.on_asr(bridge.on_abort)
    gy.on_rar(bridge.on_reauth)
    await bridge.start()
    phone = await Phone.create()
    rig = Rig(ocs, clock, bridge, gy, phone, destination)
    try:
        yield rig
    finally:
        phone.close()
        await bridge.stop()
        with contextlib.suppress(Exception):
            await gy.close()
        await rig.ocs.stop()
        destination.close()


async def money() -> tuple[int, int]:
    acc = await accounts.get_account("1001")
    return acc.balance, acc.reserved


async def closed(session_id: str) -> bool:
    row = await CreditSession.get_or_none(session_id=session_id)
    return row is not None and row.state == "closed"


async def charged_once(session_id: str) -> Cdr:
    (cdr,) = await Cdr.filter(session_id=session_id)
    entries = await LedgerEntry.filter(reference=session_id, kind="CALL")
    assert [e.amount for e in entries] == ([-cdr.cost] if cdr.cost else [])
    assert cdr.cost == cdr.duration * RATE
    assert await money() == (DEMO - cdr.cost, 0)
    return cdr


async def test_asr_mid_call_cuts_both_legs_and_charges_once(rig: Rig) -> None:
    sid = await rig.connected_call()
    assert await rig.ocs.engine.kill(sid) == 2001  # the operator cuts the call
    await asyncio.wait_for(rig.phone.ended.wait(), 20)  # BYE to the caller
    await asyncio.wait_for(rig.destination.hung_up.wait(), 20)  # BYE to the destination
    await until_async(lambda: closed(sid))  # the bridge's CCR-T
    cdr = await charged_once(sid)
    assert cdr.end_reason != "TCC_EXPIRED"
    assert rig.ocs.engine.live_sessions() == []


async def test_rar_mid_call_gets_a_ccr_u_and_the_call_goes_on(rig: Rig) -> None:
    sid = await rig.connected_call()
    row = await CreditSession.get(session_id=sid)
    before = row.last_request_number
    assert await rig.ocs.engine.reauthorise(sid) == 2001
    # the bridge re-authorises at once: a CCR-U reaches the OCS
    await until_async(lambda: _number_above(sid, before))
    assert not rig.phone.ended.is_set() and not rig.destination.hung_up.is_set()
    assert rig.phone.call is not None
    rig.phone.call.bye()  # the caller hangs up
    await asyncio.wait_for(rig.destination.hung_up.wait(), 20)
    await until_async(lambda: closed(sid))
    cdr = await charged_once(sid)
    assert cdr.end_reason == "NORMAL"


async def _number_above(sid: str, number: int) -> bool:
    row = await CreditSession.get(session_id=sid)
    return row.last_request_number > number


async def test_ocs_down_mid_call_leaves_nothing_reserved(rig: Rig) -> None:
    sid = await rig.connected_call()
    assert (await money())[1] > 0  # the grant is reserved
    port = rig.ocs.server.bound_port
    await rig.ocs.stop()  # the OCS process dies mid-call
    # the bridge's next CCR-U cannot be answered: it ends the call on both sides
    await asyncio.wait_for(rig.phone.ended.wait(), 30)
    await asyncio.wait_for(rig.destination.hung_up.wait(), 30)
    assert not await closed(sid)  # its CCR-T could not reach anyone: still reserved
    # The OCS comes back on its port; its Tcc supervision (or the bridge's late CCR-T)
    # settles the orphaned session.
    rig.ocs = await Ocs.start(rig.clock, port)
    rig.clock.offset = timedelta(hours=1)
    await rig.ocs.engine.expire_idle()
    await until_async(lambda: closed(sid))
    await charged_once(sid)
    assert (await money())[1] == 0
