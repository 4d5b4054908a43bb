"""Calling-card batches (unique PINs) and the accounts CSV import/export."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable

import pytest

from ocs import account_csv, accounts, cards, ledger, pins
from ocs.account_bulk import Progress
from ocs.config import Settings
from ocs.models import Account, CallerId, CardBatch, LedgerEntry, LedgerKind


async def _pin_accounts(n: int, length: int = 4) -> set[str]:
    """n existing accounts holding the PINs 0000, 0001, ... (as keyed hashes)."""
    key = accounts.secret_key()
    rows = [Account(number=f"9{i:05d}", name="x", pin_index=pins.pin_index(key, f"{i:0{length}d}"))
            for i in range(n)]
    await Account.bulk_create(rows, batch_size=500)
    return {r.pin_index for r in rows if r.pin_index}


async def test_card_batch_pins_are_unique_against_existing_pins(db: Settings) -> None:
    existing = await _pin_accounts(900)  # 0000..0899 taken
    gen = await cards.generate_cards(100, initial_credit=50_000, actor="admin", pin_length=4,
                                     first_number="5000")
    numbers = [n for n, _ in gen.cards]
    assert numbers == [str(5000 + i) for i in range(100)]
    key = accounts.secret_key()
    new_indexes = {pins.pin_index(key, pin) for _, pin in gen.cards}
    assert len(new_indexes) == 100 and not new_indexes & existing
    stored = set(await Account.filter(number__in=numbers).values_list("pin_index", flat=True))
    assert stored == new_indexes
    assert await Account.filter(pin_index__not_isnull=True).count() == 1000
    # the PIN finds its card, as the IVR does
    number, pin = gen.cards[0]
    found = await accounts.find_by_pin(pin)
    assert found is not None and found.number == number
    # initial credit as ledger entries
    assert await LedgerEntry.filter(kind=LedgerKind.CREDIT, amount=50_000).count() == 100
    for acc in await Account.filter(number__in=numbers[:5]):
        assert acc.balance == 50_000
        assert await ledger.invariant_violations(acc.id) == []
    batch = await CardBatch.get(id=gen.batch.id)
    assert (batch.first_number, batch.last_number, batch.count) == ("5000", "5099", 100)
    table = list(csv.reader(io.StringIO(gen.csv())))
    assert table[0] == ["number", "pin", "credit"] and len(table) == 101


async def test_draw_retries_on_existing_and_repeated_pins(db: Settings) -> None:
    await _pin_accounts(3)  # 0000, 0001, 0002
    script = iter(["0000", "0001", "0500", "0500", "0002", "0600", "0700"])
    draw: Callable[[int], str] = lambda _length: next(script)  # noqa: E731
    gen = await cards.generate_cards(3, initial_credit=0, actor="a", pin_length=4,
                                     first_number="7000", draw=draw)
    assert sorted(pin for _, pin in gen.cards) == ["0500", "0600", "0700"]


async def test_two_batches_at_once_never_share_a_pin(db: Settings) -> None:
    a, b = await asyncio.gather(
        cards.generate_cards(400, initial_credit=0, actor="a", pin_length=4,
                             first_number="10000"),
        cards.generate_cards(400, initial_credit=0, actor="b", pin_length=4,
                             first_number="20000"),
    )
    key = accounts.secret_key()
    all_pins = [pins.pin_index(key, p) for _, p in a.cards + b.cards]
    assert len(set(all_pins)) == 800


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"count": 0}, "count"), ({"count": 10, "initial_credit": -1}, "credit"),
    ({"count": 10, "pin_length": 3}, "pin_length"),
    ({"count": 1001, "pin_length": 4}, "pin_length"),  # more than 1/10 of 10^4
])
async def test_card_batch_refusals(db: Settings, kwargs: dict, field: str) -> None:
    kwargs.setdefault("initial_credit", 0)
    with pytest.raises(cards.CardError) as err:
        await cards.generate_cards(actor="a", **kwargs)
    assert err.value.field == field
    assert await Account.all().count() == 0


async def test_card_numbers_default_after_the_highest_and_refuse_taken(db: Settings) -> None:
    await accounts.create_account("1001")
    await accounts.create_account("999")
    gen = await cards.generate_cards(2, initial_credit=0, actor="a")
    assert [n for n, _ in gen.cards] == ["1002", "1003"]
    assert all(len(p) == 8 for _, p in gen.cards)
    with pytest.raises(cards.CardError, match=r"already exists in 999\.\.1003"):
        await cards.generate_cards(5, initial_credit=0, actor="a", first_number="999")


CSV_OK = """number;name;pin;language;status;caller_ids;balance
2001;Alice;4321;EN;active;0123456789 | +33 1 41 58 70 70;250000
2002;Bob;;;blocked;;
2003;;98765;FR;;;5
"""


async def test_import_creates_everything_and_export_round_trips(db: Settings) -> None:
    progress = Progress()
    n = await account_csv.import_csv(CSV_OK, ";", actor="admin", progress=progress)
    assert n == 3 and progress.finished and progress.percent == 100
    alice = await Account.get(number="2001")
    assert (alice.name, alice.language, alice.balance) == ("Alice", "EN", 250_000)
    assert sorted(await CallerId.filter(account_id=alice.id).values_list("number", flat=True)) \
        == ["0123456789", "33141587070"]
    assert (await accounts.find_by_pin("98765")).number == "2003"  # type: ignore[union-attr]
    assert (await Account.get(number="2002")).status == "blocked"
    assert (await Account.get(number="2003")).name == "2003"
    entry = await LedgerEntry.get(account_id=alice.id)
    assert (entry.kind, entry.amount, entry.note, entry.actor) == (
        LedgerKind.CREDIT, 250_000, "import", "admin")
    chunks = [c async for c in account_csv.export_csv(";")]
    text = "".join(chunks)
    lines = text.splitlines()
    assert lines[0] == "number;name;language;status;caller_ids;balance"
    assert lines[1] == "2001;Alice;EN;active;0123456789|33141587070;250000"
    # the export imports into an empty system: same accounts, same balances
    await LedgerEntry.all().delete()
    await Account.all().delete()
    assert await account_csv.import_csv(text, ";", actor="admin") == 3
    assert (await Account.get(number="2001")).balance == 250_000


@pytest.mark.parametrize(("text", "line", "message"), [
    ("name\nx\n", 1, "missing column 'number'"),
    ("number,colour\n1,red\n", 1, "unknown column"),
    ("number,pin\n1,1234\n2,12\n", 3, "PIN must be"),
    ("number,pin\n1,1234\n2,1234\n", 3, "repeats line 2"),
    ("number\n1\n\n1\n", 4, "account 1 repeats line 2"),
    ("number,balance\n1,-5\n", 2, "balance must be"),
    ("number,caller_ids\n1,0611\n2,abc\n", 3, "not a phone number"),
    ("number,language\n1,DE\n", 2, "language"),
    ("number,status\n1,gone\n", 2, "status"),
    ("number,name\n1\n", 2, "expected 2 fields"),
    ("number,caller_ids\n1,0611\n2,0611\n", 3, "caller ID 0611 repeats line 2"),
])
async def test_import_errors_have_line_numbers_and_import_nothing(
    db: Settings, text: str, line: int, message: str
) -> None:
    with pytest.raises(account_csv.AccountCsvError, match=message) as err:
        await account_csv.import_csv(text, ",", actor="a")
    assert err.value.line == line
    assert await Account.all().count() == 0


async def test_import_conflicts_with_the_database(db: Settings) -> None:
    await accounts.create_account("1001", pin="4321", caller_ids=["0611223344"])
    before = await Account.all().count()
    for text, line, message in [
        ("number\n5\n1001\n", 3, "account 1001 already exists"),
        ("number,pin\n5,1111\n6,4321\n", 3, "PIN is already used by account 1001"),
        ("number,caller_ids\n5,0611223344\n", 2, "caller ID 0611223344 belongs"),
    ]:
        with pytest.raises(account_csv.AccountCsvError, match=message) as err:
            await account_csv.import_csv(text, ",", actor="a")
        assert err.value.line == line
    assert await Account.all().count() == before
    assert await LedgerEntry.all().count() == 0
