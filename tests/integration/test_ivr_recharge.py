"""The IVR's voucher recharge adapter (`ivr_bridge.backends.OcsRecharge`) on the real database
(SQLite, or PostgreSQL with OCS_TEST_DB=postgres): it goes through the platform's one
redemption rule, `ocs.vouchers.redeem`, and reduces each refusal to what the caller hears."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ivr_bridge import dialog as d
from ivr_bridge.backends import OcsDirectory, OcsRecharge
from ocs import accounts, ledger, vouchers
from ocs.config import Settings
from ocs.models import LedgerEntry, LedgerKind, Voucher, VoucherBatch, VoucherStatus


async def phone_account(number: str = "1001") -> d.AccountInfo:
    await accounts.create_account(number, pin="1234", language="EN")
    info = await OcsDirectory().account_by_pin("1234")
    assert info is not None and info.available_units == 0
    return info


async def test_redeemed_by_phone_credits_once_and_reads_the_new_credit(db: Settings) -> None:
    account = await phone_account()
    gen = await vouchers.generate_batch(1, 50_000, actor="admin")
    ((serial, code),) = gen.codes
    recharge = OcsRecharge(OcsDirectory())

    got = await recharge.redeem(code, account, "0611223344")
    assert got.result is d.VoucherResult.OK
    assert got.account is not None
    assert got.account.available_units == 50_000
    assert str(got.account.credit_money) == "5.0000"  # 0.0001 per unit (default price)
    (entry,) = await LedgerEntry.filter(account_id=account.id)
    assert (entry.kind, entry.amount) == (LedgerKind.CREDIT, 50_000)
    assert entry.note == f"voucher {serial}"
    assert entry.actor == "ivr:0611223344"  # who redeemed it: the caller ID
    row = await Voucher.get(serial=serial)
    assert row.status == VoucherStatus.USED and row.redeemed_by == "ivr:0611223344"

    again = await recharge.redeem(code, account, "0611223344")
    assert again == d.VoucherRedeemed(d.VoucherResult.USED)
    assert (await ledger.balance(account.id)).balance == 50_000
    assert await ledger.invariant_violations(account.id) == []


async def test_each_refusal_is_what_the_caller_is_told_and_writes_nothing(db: Settings) -> None:
    account = await phone_account()
    recharge = OcsRecharge(OcsDirectory())
    gen = await vouchers.generate_batch(3, 1000, actor="admin")
    (_, c1), (_, c2), (_, c3) = gen.codes

    mistyped = c1[:-1] + str((int(c1[-1]) + 1) % 10)
    body = "123456789012345"
    unknown = body + vouchers.luhn_digit(body)
    assert (await recharge.redeem(mistyped, account, "06")).result is d.VoucherResult.INVALID
    assert (await recharge.redeem("1234", account, "06")).result is d.VoucherResult.INVALID
    assert (await recharge.redeem(unknown, account, "06")).result is d.VoucherResult.INVALID

    await VoucherBatch.filter(id=gen.batch.id).update(
        expires_at=datetime.now(UTC) - timedelta(minutes=1)
    )
    assert (await recharge.redeem(c2, account, "06")).result is d.VoucherResult.EXPIRED

    await VoucherBatch.filter(id=gen.batch.id).update(expires_at=None)
    await vouchers.void_batch(gen.batch.id, actor="admin")
    assert (await recharge.redeem(c3, account, "06")).result is d.VoucherResult.INVALID

    assert await LedgerEntry.filter(account_id=account.id).count() == 0


async def test_an_account_gone_is_a_platform_error_not_a_bad_code(db: Settings) -> None:
    account = await phone_account()
    gen = await vouchers.generate_batch(1, 1000, actor="admin")
    ((_, code),) = gen.codes
    gone = d.AccountInfo(999, "9999", "EN", 0, account.credit_money)
    got = await OcsRecharge(OcsDirectory()).redeem(code, gone, "06")
    assert got == d.VoucherRedeemed(d.VoucherResult.ERROR)
    # the voucher is still good for its owner
    assert (await OcsRecharge(OcsDirectory()).redeem(code, account, "06")).result is (
        d.VoucherResult.OK
    )
