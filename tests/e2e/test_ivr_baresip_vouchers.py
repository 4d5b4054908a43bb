"""Voucher recharge by phone end to end (issue 11): Debian's baresip calls the IVR bridge of
an in-process OCS (as `ocs serve` wires it, tests/e2e/test_ivr_baresip.py), types a voucher
code by RFC 4733 DTMF, and the platform's one redemption rule (`ocs.vouchers.redeem`)
credits the account. Checked in the ledger, on the voucher, in the lockout store, in the
service log and in what the caller heard.

Pacing as in test_ivr_baresip_features.py: digits are sent once the dialog has finished the
prompt that asks for them, so the recording holds whole prompts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ivr_bridge import dialog as d
from ivr_bridge import speech
from ivr_bridge.service import IvrBridge
from ocs.config import Settings
from ocs.vouchers import luhn_digit
from tests.conftest import unavailable
from tests.e2e.ivr_baresip import BARESIP, Baresip, sound_segments
from tests.e2e.test_ivr_baresip import Platform, prompt_seconds
from tests.e2e.test_ivr_baresip_features import (
    dialog,
    last_recording,
    make_ua,
    operator,
    plays,
    prompt_heard,
    stored_log,
    until,
)

pytestmark = pytest.mark.sip

UNUSED_GATEWAY = "127.0.0.1:9"  # nobody is called in these tests


@pytest.fixture
def bridges(monkeypatch: pytest.MonkeyPatch) -> list[IvrBridge]:
    """Every IvrBridge the platform starts, so tests can wait on the dialog's state."""
    started: list[IvrBridge] = []
    original = IvrBridge.start

    async def start(self: IvrBridge) -> None:
        started.append(self)
        await original(self)

    monkeypatch.setattr(IvrBridge, "start", start)
    return started


@pytest.fixture
async def caller_ua(tmp_path: Path) -> AsyncIterator[Callable[[str], Any]]:
    if BARESIP is None:
        unavailable("baresip")
    made: list[Baresip] = []

    async def factory(user: str) -> Baresip:
        ua = await make_ua(tmp_path, "caller", user)
        made.append(ua)
        return ua

    yield factory
    for ua in made:
        await ua.stop()


def heard(samples: list[int], rate: int, seconds: float) -> bool:
    """One stretch of sound as long as this prompt sequence (word gaps are 50 ms)."""
    return any(abs(s.length - seconds) <= 0.35 for s in sound_segments(samples, rate))


def mistyped(body: str) -> str:
    """16 digits whose check digit is wrong."""
    return body + str((int(luhn_digit(body)) + 1) % 10)


async def star_two(caller: Baresip, bridge: IvrBridge) -> None:
    # A pause first, so the prompt before and "enter your code" are apart in the recording
    # (sound_segments merges sounds less than 0.4 s apart).
    await asyncio.sleep(0.8)
    await caller.send_digits("*2", gap=0.15)
    await prompt_heard(bridge, d.State.VOUCHER)


async def test_voucher_redeemed_by_phone_with_the_ledger_exact(
    settings: Settings, caller_ua: Callable[[str], Any], bridges: list[IvrBridge]
) -> None:
    from ocs import accounts, ledger, vouchers
    from ocs.models import IvrFailure, LedgerEntry, LedgerKind, Voucher, VoucherStatus

    caller = await caller_ua("0699000003")  # not a registered caller ID: PIN access
    async with Platform(settings, UNUSED_GATEWAY) as platform:
        account = await accounts.create_account("1005", pin="5555", language="EN")  # no credit
        ((serial, code),) = (await vouchers.generate_batch(1, 50_000, actor="test")).codes
        bridge = bridges[-1]
        await caller.dial(f"sip:6000@{platform.sip_uri_base}")
        await caller.wait_event("CALL_ESTABLISHED", 10)
        await prompt_heard(bridge, d.State.PIN)
        await caller.send_digits("5555#", gap=0.15)
        # "your credit is zero euro; you have no credit left; to top up press star then two"
        await prompt_heard(bridge, d.State.DESTINATION)
        await star_two(caller, bridge)
        await caller.send_digits(code + "#", gap=0.15)
        await prompt_heard(bridge, d.State.DESTINATION)  # recharged, new credit, dial
        dlg = dialog(bridge)
        assert dlg is not None and dlg.account is not None
        assert dlg.account.available_units == 50_000
        # the same code a second time, by phone: refused as used, and counted
        await star_two(caller, bridge)
        await caller.send_digits(code + "#", gap=0.15)
        await until(lambda: (x := dialog(bridge)) is not None and x.voucher_tries == 1)
        await prompt_heard(bridge, d.State.VOUCHER)
        await caller.hangup()
        await until(lambda: not bridge.calls, what="call finished")

        entries = await LedgerEntry.filter(account_id=account.id).order_by("id")
        balance = await ledger.balance(account.id)
        violations = await ledger.invariant_violations(account.id)
        voucher = await Voucher.get(serial=serial)
        failures = await IvrFailure.filter(caller="0699000003").values_list("kind", flat=True)
        lines = await stored_log()

    # the ledger: exactly one CREDIT of the voucher's value, and nothing for the second try
    assert [(e.kind, e.amount, e.note, e.actor) for e in entries] == [
        (LedgerKind.CREDIT, 50_000, f"voucher {serial}", "ivr:0699000003")
    ]
    assert (balance.balance, balance.reserved) == (50_000, 0)
    assert violations == []
    # the voucher: used, by this account, through this entry
    assert voucher.status == VoucherStatus.USED
    assert voucher.used_by_id == account.id  # type: ignore[attr-defined]
    assert voucher.ledger_entry_id == entries[0].id
    assert voucher.redeemed_by == "ivr:0699000003"
    # the refusal counts toward the lockout like a wrong PIN
    assert list(failures) == ["voucher"]
    # the service log: what was played, and never the code
    assert code not in repr(lines)
    new_credit = speech.credit_announcement("EN", Decimal(5), "Euros", None)
    done = (d.P_VOUCHER_DONE, *new_credit, d.P_ENTER_DEST)
    played = [p for line in lines for p in plays(line)]
    assert done in played
    assert (d.P_VOUCHER_USED, d.P_VOUCHER_ENTER) in played
    redeems = [a for line in lines for a in line["actions"] if a["do"] == "redeem_voucher"]
    assert redeems == [{"do": "redeem_voucher", "code": "*" * 16, "account": "1005"}] * 2
    # and the caller heard them
    samples, rate = last_recording(caller)
    assert heard(samples, rate, prompt_seconds("EN", *done))
    assert heard(samples, rate, prompt_seconds("EN", d.P_VOUCHER_USED, d.P_VOUCHER_ENTER))


async def test_wrong_voucher_codes_count_toward_the_lockout(
    settings: Settings, caller_ua: Callable[[str], Any], bridges: list[IvrBridge]
) -> None:
    from ivr_bridge import lockout_store
    from ocs.models import Account, IvrFailure, LedgerEntry

    caller = await caller_ua("5173")  # 1001's caller ID: recognised without a PIN
    async with Platform(settings, UNUSED_GATEWAY) as platform:
        await operator(ivr_lockout_failures=2)
        account = await Account.get(number="1001")
        entries_before = await LedgerEntry.filter(account_id=account.id).count()
        bridge = bridges[-1]
        await caller.dial(f"sip:6000@{platform.sip_uri_base}")
        await caller.wait_event("CALL_ESTABLISHED", 10)
        await prompt_heard(bridge, d.State.DESTINATION)
        await star_two(caller, bridge)
        await caller.send_digits(mistyped("492912345678901") + "#", gap=0.15)
        await until(lambda: (x := dialog(bridge)) is not None and x.voucher_tries == 1)
        await prompt_heard(bridge, d.State.VOUCHER)
        unknown = "123456789012345"
        await caller.send_digits(unknown + luhn_digit(unknown) + "#", gap=0.15)
        await caller.wait_event("CALL_CLOSED", 30)  # "not valid; access blocked; goodbye"
        await until(lambda: not bridge.calls, what="call finished")
        first_call = await stored_log()
        locked = await lockout_store.status("5173")
        failures = await IvrFailure.filter(caller="5173").values_list("kind", flat=True)
        samples, rate = last_recording(caller)

        # the owner can still call (caller-ID access needs no PIN), but may not try codes
        await caller.dial(f"sip:6000@{platform.sip_uri_base}")
        await caller.wait_event("CALL_ESTABLISHED", 10)
        await prompt_heard(bridge, d.State.DESTINATION)
        await caller.send_digits("*2", gap=0.15)
        await caller.wait_event("CALL_CLOSED", 20)
        await until(lambda: not bridge.calls, what="call finished")
        second_call = (await stored_log(len(first_call)))[len(first_call) :]
        entries_after = await LedgerEntry.filter(account_id=account.id).count()

    assert list(failures) == ["voucher", "voucher"]
    assert locked.locked
    assert entries_after == entries_before  # nothing credited
    language = next(a["language"] for line in first_call for a in line["actions"]
                    if a["do"] == "play")  # fmt: skip
    ending = (d.P_VOUCHER_INVALID, d.P_LOCKED, d.P_GOODBYE)
    assert ending in [p for line in first_call for p in plays(line)]
    assert heard(samples, rate, prompt_seconds(language, *ending))
    check = next(line for line in second_call
                 if {"do": "check_lockout", "caller": "5173"} in line["actions"])  # fmt: skip
    assert check["state"] == "voucher_lockout"
    second_plays = [p for line in second_call for p in plays(line)]
    assert (d.P_LOCKED, d.P_GOODBYE) in second_plays
    assert not [p for p in second_plays if d.P_VOUCHER_ENTER in p]
    assert second_call[-1]["actions"][-1] == {"do": "end", "reason": "locked_out"}
