"""CDR queries, keyset paging and the streaming CSV export, on the brochure's calls."""

from __future__ import annotations

from decimal import Decimal
from zoneinfo import ZoneInfo

from ocs import accounts, cdr, ledger
from ocs.cdr import CdrFilter
from ocs.models import Cdr
from ocs.settings_store import save_operator_settings
from tests.integration.test_billing import brochure_history, call

PARIS = ZoneInfo("Europe/Paris")

BROCHURE_CDRS = (
    "Date:TimeStamp:ConnectDelay:Durat.:Cost:User:Dialed num:CallId:Euros\n"
    "20120403_152503:1333459492:4:3:600:1001:5173:A12040315245291803:0,06\n"
    "20120412_102901:1334219320:5:13:2600:1001:5173:A12041210284043801:0,26\n"
    "20120412_103209:1334219410:1:113:22600:1002:3000:A12041210301046701:2,26\n"
    "20120412_103222:1334219473:1:65:13000:1001:3000:A12041210311334803:1,3\n"
)


async def _export(flt: CdrFilter | None = None, **kw) -> tuple[str, int]:
    chunks = [c async for c in cdr.export_csv_with_settings(flt or CdrFilter(), **kw)]
    return b"".join(chunks).decode(), len(chunks)


async def test_brochure_cdr_export(db) -> None:
    await brochure_history(db)
    text, chunks = await _export()
    assert text == BROCHURE_CDRS
    text, chunks = await _export(batch=1)
    assert text == BROCHURE_CDRS and chunks == 1 + 4  # header + one chunk per batch


async def test_export_uses_configured_separator(db) -> None:
    await brochure_history(db)
    await save_operator_settings({"csv_separator": ";", "currency": "EUR"})
    text, _ = await _export(CdrFilter(user="1002"))
    assert text == (
        "Date;TimeStamp;ConnectDelay;Durat.;Cost;User;Dialed num;CallId;EUR\n"
        "20120412_103209;1334219410;1;113;22600;1002;3000;A12041210301046701;2,26\n"
    )
    await save_operator_settings({"csv_separator": ","})
    text, _ = await _export(CdrFilter(user="1002"))
    assert text.splitlines()[1].endswith(",A12041210301046701,2.26")


async def test_filters(db) -> None:
    await brochure_history(db)

    async def dialed(flt: CdrFilter) -> list[tuple[str, str]]:
        page = await cdr.list_cdrs(flt)
        return [(r.account_number, r.dialed) for r in page.items]

    assert await dialed(CdrFilter()) == [
        ("1001", "3000"), ("1002", "3000"), ("1001", "5173"), ("1001", "5173")
    ]
    assert await dialed(CdrFilter(user="1001", prefix="51")) == [("1001", "5173")] * 2
    assert await dialed(CdrFilter(prefix="3")) == [("1001", "3000"), ("1002", "3000")]
    since = cdr.parse_local_date("2012-04-12", PARIS)
    until = cdr.parse_local_date("20120412_103000", PARIS)
    assert await dialed(CdrFilter(since=since, until=until)) == [("1001", "5173")]
    day = cdr.parse_local_date("20120403", PARIS, end=True)
    assert await dialed(CdrFilter(until=day)) == [("1001", "5173")]
    assert await dialed(CdrFilter(user="9999")) == []


async def test_keyset_paging_walks_everything_once(db) -> None:
    aid = (await accounts.create_account("1001")).id
    await ledger.credit(aid, 10**9, actor="t")
    for i in range(23):
        await call(aid, "1001", f"33{i:02d}", i + 1, 10 * (i + 1), f"20260101_10{i:02d}00")
    seen: list[int] = []
    page = await cdr.list_cdrs(limit=5)
    assert page.newer is None
    pages = [page]
    while page.older is not None:
        page = await cdr.list_cdrs(limit=5, before=page.older)
        pages.append(page)
    for p in pages:
        seen.extend(r.id for r in p.items)
    assert len(pages) == 5 and [len(p.items) for p in pages] == [5, 5, 5, 5, 3]
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == 23
    assert pages[-1].older is None
    # and back again
    back = await cdr.list_cdrs(limit=5, after=pages[2].newer)
    assert [r.id for r in back.items] == [r.id for r in pages[1].items]
    assert back.older == pages[1].older and back.newer == pages[1].newer
    first = await cdr.list_cdrs(limit=5, after=pages[1].newer)
    assert [r.id for r in first.items] == [r.id for r in pages[0].items]
    assert first.newer is None


async def test_cdr_matches_ledger_entry(db) -> None:
    """The engine's helper writes the CALL entry and the CDR in one operation, same instant."""
    a1001, _, _ = await brochure_history(db)
    from ocs.models import LedgerEntry, LedgerKind

    for row in await Cdr.filter(account_id=a1001):
        entry = await LedgerEntry.get(reference=row.session_id, kind=LedgerKind.CALL)
        assert entry.created_at == row.created_at
        assert (-entry.amount, entry.dialed, entry.duration) == (row.cost, row.dialed,
                                                                 row.duration)


async def test_record_json(db) -> None:
    await brochure_history(db)
    page = await cdr.list_cdrs(CdrFilter(user="1002"))
    doc = cdr.record_json(page.items[0], PARIS, Decimal("0.0001"))
    assert doc["date"] == "20120412_103209" and doc["timestamp"] == 1334219410
    assert doc["money"] == "2.26" and doc["call_id"] == "A12041210301046701"
    assert doc["ended_at"] == "2012-04-12T08:32:09+00:00"
