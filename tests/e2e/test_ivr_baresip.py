"""End to end: real SIP user agents (Debian's baresip) call the IVR bridge on loopback.

The OCS (database, charging engine, Diameter server) and the bridge run in this process
exactly as `ocs serve` starts them (`ocs.serve.start_ocs`, `ivr_bridge.service.start_part`):
the bridge charges over real Diameter. One baresip is the caller (dials, sends RFC 4733
DTMF, records what it hears), another answers as the destination (auto-answer, plays a
1000 Hz tone so the caller's recording shows when it was connected).
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from ivr_bridge.service import PromptLibrary
from ocs.config import Settings
from tests.conftest import unavailable
from tests.e2e.ivr_baresip import (
    BARESIP,
    Baresip,
    read_wav,
    sound_segments,
    tone_frames,
)

pytestmark = pytest.mark.sip

RATE_DEFAULT = 200  # units/s, the brochure's DEFAULT tariff (demo data)
TONE = 1000  # Hz played by the destination UA


class Platform:
    """OCS + IVR bridge in-process, demo data loaded, gateway = the callee baresip."""

    def __init__(self, settings: Settings, gateway: str) -> None:
        # the test's database (SQLite or PostgreSQL, see OCS_TEST_DB), migrated and empty
        self.settings = dataclasses.replace(
            settings, diameter_port=0, sip_port=0, mqtt_url=None  # bound ports read back
        )
        self.gateway = gateway
        self.parts: list = []

    async def __aenter__(self) -> Platform:
        from ivr_bridge.service import start_part
        from ocs import db, demo
        from ocs.events import default_bus
        from ocs.runtime import ServeContext
        from ocs.serve import start_ocs

        await db.init_db(self.settings)
        await demo.load_demo()
        await set_gateway(self.gateway)
        ctx = ServeContext(settings=self.settings, bus=default_bus())
        self.parts.append(await start_ocs(ctx))
        self.parts.append(await start_part(ctx))
        assert ctx.sip_port is not None
        self.sip_port = ctx.sip_port
        return self

    async def __aexit__(self, *exc: object) -> None:
        from ocs import db

        for part in reversed(self.parts):
            await part.stop()
        await db.close_db()

    @property
    def sip_uri_base(self) -> str:
        return f"127.0.0.1:{self.sip_port}"


async def set_gateway(address: str) -> None:
    from ocs import settings_store

    await settings_store.save_operator_settings({"default_calling_address": address})


async def pin_access_only() -> None:
    """The caller UA is 5173, 1001's registered caller ID: ask the PIN anyway."""
    from ocs import settings_store

    await settings_store.save_operator_settings({"ivr_one_step_access": False})


async def make_account(number: str, pin: str, units: int, language: str = "FR") -> None:
    from ocs import accounts, ledger

    account = await accounts.create_account(number, pin=pin, language=language)
    await ledger.credit(account.id, units, actor="test")


async def account_state(number: str) -> tuple[int, int, list, list]:
    from ocs.models import Account, Cdr, LedgerEntry

    account = await Account.get(number=number)
    cdrs = await Cdr.filter(account_number=number).order_by("id")
    calls = await LedgerEntry.filter(account_id=account.id, kind="CALL").order_by("id")
    return account.balance, account.reserved, cdrs, calls


def prompt_seconds(language: str, *words: str) -> float:
    return len(PromptLibrary().sequence(language, words)) / 8000


@pytest.fixture
async def uas(tmp_path):
    if BARESIP is None:
        unavailable("baresip")
    callee = Baresip(tmp_path / "callee", "0141587070", auto_answer=True, tone_hz=TONE)
    caller = Baresip(tmp_path / "caller", "5173")
    await callee.start()
    await caller.start()
    yield caller, callee
    await caller.stop()
    await callee.stop()


async def wait_closed(ua: Baresip, timeout: float = 60) -> dict:
    return await ua.wait_event("CALL_CLOSED", timeout)


async def settle(timeout: float = 20) -> None:
    """After the BYE: wait until the bridge's CCR-T has closed every session (the CDR and
    the CALL entry are written with it)."""
    from ocs.models import CreditSession

    async with asyncio.timeout(timeout):
        while await CreditSession.filter(state="open").exists():
            await asyncio.sleep(0.05)


async def test_pin_access_announces_credit_connects_and_charges(tmp_path, uas, settings):
    caller, callee = uas
    async with Platform(settings, f"127.0.0.1:{callee.sip_port}") as platform:
        await pin_access_only()
        greeting = prompt_seconds("FR", "welcome", "enter_pin")
        # 250000 units = 25 € (the minutes it buys are told once the number is dialled)
        credit = prompt_seconds("FR", "your_credit_is", "vingt-cinq", "euros", "enter_destination")
        await caller.dial(f"sip:6000@{platform.sip_uri_base}")
        await caller.wait_event("CALL_ESTABLISHED", 10)
        await asyncio.sleep(greeting + 0.5)
        await caller.send_digits("1234#")
        await asyncio.sleep(credit + 0.8)
        await caller.send_digits("0141587070#")
        await callee.wait_event("CALL_ESTABLISHED", 15)
        talk = 5.0
        await asyncio.sleep(talk)
        await caller.hangup()
        await wait_closed(callee, 10)
        await settle()
        balance, reserved, cdrs, calls = await account_state("1001")

    # what the caller heard
    (recording,) = caller.recordings()
    samples, rate = read_wav(recording)
    segments = sound_segments(samples, rate)
    assert len(segments) >= 3, segments
    assert segments[0].length == pytest.approx(greeting, abs=0.35)
    assert segments[1].length == pytest.approx(credit, abs=0.35)
    tone = tone_frames(samples, rate, TONE)
    tone_seconds = sum(tone) * 0.02
    assert tone_seconds == pytest.approx(talk, abs=0.8)

    # what was charged: one CDR, one CALL entry, balance = credit - cost, nothing reserved
    assert len(cdrs) == 1
    cdr = cdrs[0]
    assert cdr.dialed.endswith("141587070")
    assert abs(cdr.duration - talk) <= 1
    assert cdr.cost == cdr.duration * RATE_DEFAULT
    assert [c.amount for c in calls] == [-cdr.cost]
    assert balance == 250_000 - cdr.cost
    assert reserved == 0
    # The bridge puts the connect delay (INVITE -> 200 OK of the far end) in its CCR-I/T as
    # TS 32.299 Time-Stamps; it reaches the CDR.
    assert cdr.connect_delay is not None and 0 <= cdr.connect_delay <= 1


async def test_low_credit_is_cut_after_affordable_time_with_announcement(tmp_path, uas, settings):
    caller, callee = uas
    async with Platform(settings, f"127.0.0.1:{callee.sip_port}") as platform:
        await pin_access_only()
        await make_account("1003", "4321", 2000, language="EN")  # 10 s at 200 u/s
        greeting = prompt_seconds("FR", "welcome", "enter_pin")
        credit = prompt_seconds("EN", "your_credit_is", "twenty", "cents", "enter_destination")
        await caller.dial(f"sip:6000@{platform.sip_uri_base}")
        await caller.wait_event("CALL_ESTABLISHED", 10)
        await asyncio.sleep(greeting + 0.5)
        await caller.send_digits("4321#")
        await asyncio.sleep(credit + 0.8)
        await caller.send_digits("0141587070#")
        await callee.wait_event("CALL_ESTABLISHED", 15)
        closed = await wait_closed(caller, 40)
        await settle()
        balance, reserved, cdrs, calls = await account_state("1003")

    assert closed["type"] == "CALL_CLOSED"
    (recording,) = caller.recordings()
    samples, rate = read_wav(recording)
    tone = tone_frames(samples, rate, TONE)
    assert sum(tone) * 0.02 == pytest.approx(10, abs=0.8)
    last_tone = len(tone) - 1 - tone[::-1].index(True)
    segments = sound_segments(samples, rate)
    final = segments[-1]
    exhausted = prompt_seconds("EN", "credit_exhausted", "goodbye")
    # the recording ends with the announcement, right after the tone stopped
    assert final.end == pytest.approx(len(samples) / rate, abs=0.8)
    assert final.end - (last_tone + 1) * 0.02 == pytest.approx(exhausted, abs=0.6)

    assert len(cdrs) == 1
    assert cdrs[0].duration == 10
    assert cdrs[0].cost == 2000
    assert [c.amount for c in calls] == [-2000]
    assert balance == 0
    assert reserved == 0


async def test_one_step_did_connects_without_prompt_and_charges(tmp_path, uas, settings):
    caller, callee = uas
    async with Platform(settings, f"127.0.0.1:{callee.sip_port}") as platform:
        # caller 5173 is a registered caller ID of account 1001; DID 0561500001 -> 0141587070
        await caller.dial(f"sip:0561500001@{platform.sip_uri_base}")
        await callee.wait_event("CALL_ESTABLISHED", 10)
        await caller.wait_event("CALL_ESTABLISHED", 10)
        talk = 3.0
        await asyncio.sleep(talk)
        await caller.hangup()
        await wait_closed(callee, 10)
        await settle()
        balance, reserved, cdrs, calls = await account_state("1001")

    (recording,) = caller.recordings()
    samples, rate = read_wav(recording)
    segments = sound_segments(samples, rate)
    tone = tone_frames(samples, rate, TONE)
    # no prompt: everything heard is the destination's tone
    assert sum(tone) * 0.02 == pytest.approx(talk, abs=0.8)
    assert sum(s.length for s in segments) == pytest.approx(sum(tone) * 0.02, abs=0.5)
    assert len(cdrs) == 1
    assert abs(cdrs[0].duration - talk) <= 1
    assert cdrs[0].cost == cdrs[0].duration * RATE_DEFAULT
    assert balance == 250_000 - cdrs[0].cost
    assert [c.amount for c in calls] == [-cdrs[0].cost]
    assert reserved == 0


async def test_one_step_unknown_did_is_refused(tmp_path, uas, settings):
    caller, callee = uas
    async with Platform(settings, f"127.0.0.1:{callee.sip_port}") as platform:
        await caller.dial(f"sip:0561509999@{platform.sip_uri_base}")
        closed = await wait_closed(caller, 10)
        _, _, cdrs, _ = await account_state("1001")
    assert "404" in closed.get("param", "")
    assert cdrs == []
    assert not [e for e in callee.event_log if e.get("type") == "CALL_ESTABLISHED"]
