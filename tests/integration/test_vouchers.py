"""Voucher batches and the shared redemption rule, on the real database (SQLite or PG)."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from ocs import accounts, ledger, vouchers
from ocs.config import Settings
from ocs.models import LedgerEntry, LedgerKind, Voucher, VoucherBatch, VoucherStatus


async def test_generate_stores_only_hashes_and_csv_has_every_code(db: Settings) -> None:
    gen = await vouchers.generate_batch(50, 100_000, actor="admin", label="Xmas")
    assert len(gen.codes) == 50 and len({c for _, c in gen.codes}) == 50
    rows = await Voucher.filter(batch_id=gen.batch.id).values_list("serial", "code_hash")
    assert len(rows) == 50
    stored = {h for _, h in rows}
    for serial, code in gen.codes:
        assert code not in stored  # never in clear
        assert vouchers.code_hash(accounts.secret_key(), code) in stored
        assert serial.startswith(f"V{gen.batch.id}-")
    table = list(csv.reader(io.StringIO(gen.csv(";")), delimiter=";"))
    assert table[0] == ["serial", "code", "units", "expires"]
    assert len(table) == 51
    assert vouchers.normalise_code(table[1][1]) == gen.codes[0][1]


async def test_redeem_credits_once_with_a_ledger_entry(db: Settings) -> None:
    acc = await accounts.create_account("1001")
    gen = await vouchers.generate_batch(2, 50_000, actor="admin")
    serial, code = gen.codes[0]
    got = await vouchers.redeem(vouchers.format_code(code), "1001", actor="api:shop")
    assert (got.serial, got.account, got.units, got.balance_after) == (serial, "1001", 50_000,
                                                                       50_000)
    entry = await LedgerEntry.get(id=got.entry_id)
    assert entry.kind == LedgerKind.CREDIT and entry.amount == 50_000
    assert entry.note == f"voucher {serial}" and entry.actor == "api:shop"
    row = await Voucher.get(serial=serial)
    assert row.status == VoucherStatus.USED and row.used_by_id == acc.id  # type: ignore[attr-defined]
    assert row.ledger_entry_id == got.entry_id
    with pytest.raises(vouchers.VoucherUsed, match="already been used"):
        await vouchers.redeem(code, "1001", actor="api:shop")
    assert (await ledger.balance(acc.id)).balance == 50_000
    assert await ledger.invariant_violations(acc.id) == []


async def test_refusals_write_nothing(db: Settings) -> None:
    acc = await accounts.create_account("1001")
    gen = await vouchers.generate_batch(3, 1000, actor="admin")
    (_, c1), (_, c2), (_, c3) = gen.codes
    with pytest.raises(vouchers.MalformedCode):
        await vouchers.redeem(c1[:-1] + str((int(c1[-1]) + 1) % 10), "1001", actor="t")
    body = "123456789012345"
    with pytest.raises(vouchers.UnknownVoucher, match="no voucher"):
        await vouchers.redeem(body + vouchers.luhn_digit(body), "1001", actor="t")
    with pytest.raises(accounts.UnknownAccount):
        await vouchers.redeem(c1, "9999", actor="t")
    # expired
    await VoucherBatch.filter(id=gen.batch.id).update(
        expires_at=datetime.now(UTC) - timedelta(minutes=1)
    )
    with pytest.raises(vouchers.VoucherExpired, match="expired"):
        await vouchers.redeem(c2, "1001", actor="t")
    summary = await vouchers.get_batch(gen.batch.id)
    assert (summary.used, summary.unused, summary.expired) == (0, 0, 3)
    # voided
    await VoucherBatch.filter(id=gen.batch.id).update(expires_at=None)
    assert await vouchers.void_batch(gen.batch.id, actor="admin") == 3
    with pytest.raises(vouchers.VoucherVoided, match="cancelled"):
        await vouchers.redeem(c3, "1001", actor="t")
    with pytest.raises(vouchers.BatchError):
        await vouchers.void_batch(gen.batch.id, actor="admin")
    assert await LedgerEntry.filter(account_id=acc.id).count() == 0
    assert await Voucher.filter(status=VoucherStatus.USED).count() == 0


async def test_batch_list_counts_used_unused_expired(db: Settings) -> None:
    await accounts.create_account("1001")
    old = await vouchers.generate_batch(4, 1000, actor="admin",
                                        expires_at=datetime.now(UTC) + timedelta(days=1))
    new = await vouchers.generate_batch(3, 2000, actor="admin")
    await vouchers.redeem(old.codes[0][1], "1001", actor="t")
    await VoucherBatch.filter(id=old.batch.id).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    await vouchers.redeem(new.codes[0][1], "1001", actor="t")
    await vouchers.redeem(new.codes[1][1], "1001", actor="t")
    listed = await vouchers.list_batches()
    assert [s.batch.id for s in listed] == [new.batch.id, old.batch.id]
    assert (listed[0].used, listed[0].unused, listed[0].expired, listed[0].state) == (
        2, 1, 0, "active")
    assert (listed[1].used, listed[1].unused, listed[1].expired, listed[1].state) == (
        1, 0, 3, "expired")


@pytest.mark.parametrize(
    ("count", "value", "message"),
    [(0, 100, "1 to"), (100_001, 100, "1 to"), (5, 0, "positive"), (5, -3, "positive")],
)
async def test_bad_batch_parameters(db: Settings, count: int, value: int, message: str) -> None:
    with pytest.raises(vouchers.BatchError, match=message):
        await vouchers.generate_batch(count, value, actor="admin")
    with pytest.raises(vouchers.BatchError, match="future"):
        await vouchers.generate_batch(1, 1, actor="a",
                                      expires_at=datetime.now(UTC) - timedelta(days=1))
    assert await VoucherBatch.all().count() == 0


async def test_same_code_redeemed_concurrently_in_one_process(db: Settings) -> None:
    a = await accounts.create_account("1001")
    b = await accounts.create_account("1002")
    gen = await vouchers.generate_batch(1, 7000, actor="admin")
    code = gen.codes[0][1]
    results = await asyncio.gather(
        *(vouchers.redeem(code, n, actor="t") for n in ["1001", "1002"] * 5),
        return_exceptions=True,
    )
    ok = [r for r in results if isinstance(r, vouchers.Redemption)]
    assert len(ok) == 1
    assert all(isinstance(r, vouchers.VoucherUsed) for r in results if r not in ok)
    total = (await ledger.balance(a.id)).balance + (await ledger.balance(b.id)).balance
    assert total == 7000
