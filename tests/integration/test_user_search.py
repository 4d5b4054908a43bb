"""Users search: caller ID, PIN (exact, keyed hash), DID, name; filters; sorts; CSV."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ocs import accounts, ledger
from ocs.account_search import SearchError, UserQuery, export_csv, search
from ocs.config import Settings
from ocs.models import Account, Cdr


@pytest.fixture
async def people(db: Settings) -> dict[str, Account]:
    a = await accounts.create_account("1001", name="Alice Martin", pin="4321",
                                      caller_ids=["0611223344"])
    b = await accounts.create_account("1002", name="Bob Durand", pin="5678",
                                      caller_ids=["+33 7 00 00 00 01"])
    c = await accounts.create_account("2001", name="Carla Bruni")
    await accounts.update_account(c, status="blocked")
    await accounts.set_did(b.id, "0561500001", "0141587070")
    await ledger.credit(a.id, 250_000, actor="t")
    await ledger.credit(b.id, 5_000, actor="t")
    await ledger.credit(c.id, 90_000, actor="t")
    now = datetime.now(UTC)
    # Carla called most recently, then Alice; Bob never called.
    await Cdr.create(account=a, account_number="1001", session_id="s1", started_at=now,
                     created_at=now - timedelta(hours=2))
    await Cdr.create(account=c, account_number="2001", session_id="s2", started_at=now,
                     created_at=now - timedelta(minutes=5))
    return {"a": a, "b": b, "c": c}


async def _numbers(query: UserQuery) -> list[str]:
    page = await search(query, low_threshold=10_000)
    return [r.account.number for r in page.rows]


async def test_each_search_field(people: dict[str, Account]) -> None:
    assert await _numbers(UserQuery(q="10")) == ["1001", "1002"]
    assert await _numbers(UserQuery(q="durand")) == ["1002"]
    assert await _numbers(UserQuery(caller_id="06 11 22")) == ["1001"]
    assert await _numbers(UserQuery(caller_id="+33700000001")) == ["1002"]
    assert await _numbers(UserQuery(pin="5678")) == ["1002"]
    assert await _numbers(UserQuery(pin="56789")) == []  # exact only: not a prefix search
    assert await _numbers(UserQuery(did="0561500001")) == ["1002"]
    assert await _numbers(UserQuery(status="blocked")) == ["2001"]
    assert await _numbers(UserQuery(low=True)) == ["1002"]
    assert await _numbers(UserQuery(q="1", status="active", low=True)) == ["1002"]


async def test_sorts(people: dict[str, Account]) -> None:
    assert await _numbers(UserQuery(sort="-number")) == ["2001", "1002", "1001"]
    assert await _numbers(UserQuery(sort="name")) == ["1001", "1002", "2001"]
    assert await _numbers(UserQuery(sort="balance")) == ["1002", "2001", "1001"]
    assert await _numbers(UserQuery(sort="-balance")) == ["1001", "2001", "1002"]
    assert await _numbers(UserQuery(sort="-last_call")) == ["2001", "1001", "1002"]
    page = await search(UserQuery(sort="-last_call"), low_threshold=0)
    assert page.rows[0].last_call is not None and page.rows[2].last_call is None


async def test_bad_queries(people: dict[str, Account]) -> None:
    for query, field in [(UserQuery(sort="colour"), "sort"), (UserQuery(status="x"), "status"),
                         (UserQuery(pin="12"), "pin"), (UserQuery(caller_id="abc"), "caller_id")]:
        with pytest.raises(SearchError) as err:
            await search(query, low_threshold=0)
        assert err.value.field == field


async def test_csv_export_of_the_filtered_list(people: dict[str, Account]) -> None:
    text = "".join([c async for c in export_csv(UserQuery(q="10", sort="-balance"),
                                                low_threshold=0, separator=";")])
    lines = text.splitlines()
    assert lines[0].startswith("number;name;language;status;balance")
    assert [ln.split(";")[0] for ln in lines[1:]] == ["1001", "1002"]
    assert lines[1].split(";")[7] == "0611223344"
