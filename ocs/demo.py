"""The brochure's demo data: three tariffs, accounts 1001 and 1002, caller IDs and DIDs."""

from __future__ import annotations

from dataclasses import dataclass

from ocs import accounts, ledger, tariffs
from ocs.models import Account

DEMO_TARIFFS = (
    {"prefix": "DEFAULT", "h1_rate": 200},
    {"prefix": "38", "h1_rate": 180},
    {"prefix": "42", "h1_rate": 250},
)


@dataclass(frozen=True)
class DemoAccount:
    number: str
    pin: str
    caller_ids: tuple[str, ...]
    dids: tuple[tuple[str, str], ...] = ()


DEMO_ACCOUNTS = (
    DemoAccount(
        "1001",
        "1234",
        ("5173", "0123456789"),
        (
            ("0561500001", "0141587070"),
            ("0561500002", "0141587075"),
            ("0561500003", "0141587077"),
            ("0561500004", "0141591190"),
        ),
    ),
    DemoAccount("1002", "5678", ("5172",)),
)
DEMO_CREDIT = 250_000


async def load_demo() -> list[str]:
    """Create what is missing; running it twice changes nothing. Returns what it did."""
    done: list[str] = []
    existing = {t.prefix for t in await tariffs.list_tariffs()}
    new = [tariffs.parse_tariff(t) for t in DEMO_TARIFFS if t["prefix"] not in existing]
    if new:
        await tariffs.import_tariffs(new)
        done.append(f"tariffs: {', '.join(t.prefix for t in new)}")
    for demo in DEMO_ACCOUNTS:
        if await Account.filter(number=demo.number).exists():
            continue
        account = await accounts.create_account(
            demo.number, name=demo.number, pin=demo.pin, caller_ids=demo.caller_ids
        )
        for did, target in demo.dids:
            await accounts.set_did(account.id, did, target)
        await ledger.credit(account.id, DEMO_CREDIT, actor="demo", note="demo credit")
        done.append(
            f"account {demo.number} (PIN {demo.pin}, caller IDs {', '.join(demo.caller_ids)},"
            f" {len(demo.dids)} DIDs, {DEMO_CREDIT} units)"
        )
    return done
