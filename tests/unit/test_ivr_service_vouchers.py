"""Voucher recharge through the bridge over real UDP sockets on loopback (our own UA as the
phone; directory, lockout and recharge are fakes; prompts are short beeps): the controller
hands the code to the `Recharge` back end, feeds its answer to the dialog, records refusals in
the lockout and keeps the code out of the service log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal

import pytest

from ivr_bridge import dialog as d
from ivr_bridge.service import BridgeSettings, IvrBridge, PromptLibrary
from ivr_bridge.speech import all_words, prompt_name
from tests.unit.ivr_fakes import FakeLockout, MemoryLogSink
from tests.unit.test_ivr_service import ACCOUNT, FakeCharging, FakeDirectory, Phone

GOOD = "4929123456789017"
USED = "4929123456789025"


class FakeRecharge:
    """GOOD credits 50000 units once; anything else is refused as used."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.used: set[str] = set()

    async def redeem(self, code: str, account: d.AccountInfo, caller: str) -> d.VoucherRedeemed:
        self.calls.append((code, account.number, caller))
        if code != GOOD or code in self.used:
            return d.VoucherRedeemed(d.VoucherResult.USED)
        self.used.add(code)
        units = account.available_units + 50_000
        return d.VoucherRedeemed(
            d.VoucherResult.OK,
            replace(account, available_units=units, credit_money=Decimal(units) / 10_000),
        )


@pytest.fixture
def prompts(tmp_path) -> PromptLibrary:
    beep = bytes([0x00, 0x80] * 240)  # 60 ms
    for lang in ("fr", "en"):
        folder = tmp_path / lang
        folder.mkdir()
        for name in [*all_words(lang.upper()), *d.ALL_PROMPTS]:
            (folder / f"{prompt_name(name)}.ul").write_bytes(beep)
    return PromptLibrary(tmp_path)


@pytest.fixture
async def phone() -> AsyncIterator[Phone]:
    p = await Phone.create()
    yield p
    p.close()


async def wait_for(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_voucher_by_phone_through_the_bridge(prompts: PromptLibrary, phone: Phone) -> None:
    recharge = FakeRecharge()
    lockout = FakeLockout()
    sink = MemoryLogSink()

    async def settings() -> BridgeSettings:
        return BridgeSettings(d.DialogConfig(first_digit_timeout=2, inter_digit_timeout=1))

    bridge = IvrBridge(
        "127.0.0.1", 0, directory=FakeDirectory(), charging=FakeCharging(), settings=settings,
        prompts=prompts, lockout=lockout, recharge=recharge, log_sink=sink,
    )  # fmt: skip
    await bridge.start()
    try:
        # 5173 is ACCOUNT's caller ID: recognised on the access number, no PIN
        phone.dial(f"sip:6000@127.0.0.1:{bridge.sip_port}", bridge.sip_port)
        await asyncio.wait_for(phone.answered.wait(), 3)
        (controller,) = bridge.calls.values()
        dialog = controller.dialog
        await wait_for(lambda: dialog.state is d.State.DESTINATION)
        phone.leg.send_dtmf("*2")
        await wait_for(lambda: dialog.state is d.State.VOUCHER)
        phone.leg.send_dtmf(GOOD + "#")
        await wait_for(lambda: dialog.state is d.State.DESTINATION)
        assert recharge.calls == [(GOOD, "1001", "5173")]
        assert dialog.account is not None
        assert dialog.account.available_units == ACCOUNT.available_units + 50_000
        # the same code again: refused, recorded in the lockout, asked again
        phone.leg.send_dtmf("*2")
        await wait_for(lambda: dialog.state is d.State.VOUCHER)
        phone.leg.send_dtmf(GOOD + "#")
        await wait_for(lambda: dialog.voucher_tries == 1 and dialog.state is d.State.VOUCHER)
        assert lockout.failures == {"5173": 1}
        phone.call.bye()  # type: ignore[union-attr]
        await asyncio.wait_for(controller.finished.wait(), 5)
    finally:
        await bridge.stop()
    lines = [e.line for e in sink.entries]
    assert GOOD not in repr(lines)
    actions = [a for line in lines for a in line["actions"]]
    assert actions.count({"do": "redeem_voucher", "code": "*" * 16, "account": "1001"}) == 2
    assert {"do": "record_failure", "caller": "5173", "kind": "voucher"} in actions
    played = [tuple(a["prompts"]) for a in actions if a["do"] == "play"]
    assert (d.P_VOUCHER_USED, d.P_VOUCHER_ENTER) in played
    assert any(p[0] == d.P_VOUCHER_DONE and p[-1] == d.P_ENTER_DEST for p in played)
