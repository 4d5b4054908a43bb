"""REST API for operator tools, and the live-credit figure of /api/v1/sessions (defect 1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from ocs import accounts, ledger
from ocs.models import Account, CreditSession, LedgerEntry, LedgerKind
from tests.calls import charged_call
from tests.integration import test_api_rest as rest

client, control = rest.client, rest.control  # the REST tests' fixtures


async def test_live_credit_is_the_balance_less_what_the_calls_consumed(
    client: httpx.AsyncClient,
) -> None:
    """Defect 1: a call's CALL entry is written at its end, so the balance still holds the
    whole amount; the credit left is balance - consumption (and, with two calls on one
    account, less both). It used to add the already-used cost back."""
    acc = await accounts.create_account("1001")
    await ledger.credit(acc.id, 250_000, actor="t")
    now = datetime.now(UTC)
    # 40 s reported by the switch at 200 u/s = 8000 used; 45 s elapsed = 9000 consumed
    await CreditSession.create(session_id="a", account=acc, calling="5173", called="3000",
                               rate=200, started_at=now - timedelta(seconds=45),
                               used_seconds=40, cost=8_000)
    r = await client.get("/api/v1/sessions")
    (call,) = r.json()
    assert call["balance"] == 250_000
    consumed = call["consumption"]
    assert 9_000 <= consumed <= 9_000 + 2 * 200  # a second or two may tick meanwhile
    assert call["credit"] == 250_000 - consumed
    # a second call on the same account spends the same balance
    await CreditSession.create(session_id="b", account=acc, calling="5174", called="3001",
                               rate=100, started_at=now - timedelta(seconds=10), cost=0)
    calls = {c["session_id"]: c for c in (await client.get("/api/v1/sessions")).json()}
    both = calls["a"]["consumption"] + calls["b"]["consumption"]
    assert calls["a"]["credit"] == calls["b"]["credit"] == 250_000 - both


async def test_adjustment_and_refund_endpoints(client: httpx.AsyncClient) -> None:
    acc = await accounts.create_account("1001")
    await ledger.credit(acc.id, 10_000, actor="t")
    r = await client.post("/api/v1/accounts/1001/adjustments",
                          json={"amount": "-0.5", "reason": "wrong credit"})
    assert r.status_code == 201, r.text
    assert r.json() | {"entry_id": 0} == {"account": "1001", "operation": "ADJUST",
                                          "units": -5000, "money": "-0.5000", "balance": 5000,
                                          "entry_id": 0, "currency": "Euros"}
    entry = await LedgerEntry.get(kind=LedgerKind.ADJUST)
    assert entry.actor == "api:tests" and entry.note == "wrong credit"
    for body, field in [({"units": -1, "reason": ""}, "reason"),
                        ({"units": 1, "amount": "1", "reason": "x"}, "units"),
                        ({"units": 0, "reason": "x"}, "units"),
                        ({"units": -6000, "reason": "x"}, "units")]:
        r = await client.post("/api/v1/accounts/1001/adjustments", json=body)
        assert r.status_code == 422 and r.json()["field"] == field, (body, r.text)
    assert (await client.post("/api/v1/accounts/404/adjustments",
                              json={"units": 1, "reason": "x"})).status_code == 404
    call = await charged_call("1001", "0141587070", 3, 600)  # leaves 4400
    r = await client.post(f"/api/v1/cdrs/{call.id}/refund", json={"reason": "echo"})
    assert r.status_code == 201 and r.json()["units"] == 600 and r.json()["balance"] == 5000
    r = await client.post(f"/api/v1/cdrs/{call.id}/refund", json={"reason": "again"})
    assert r.status_code == 422 and "already been refunded" in r.json()["detail"]
    assert (await client.post("/api/v1/cdrs/999999/refund",
                              json={"reason": "x"})).status_code == 404


async def test_voucher_endpoints(client: httpx.AsyncClient) -> None:
    await accounts.create_account("1001")
    r = await client.post("/api/v1/voucher-batches", json={"count": 2, "amount": "5",
                                                           "label": "web shop"})
    assert r.status_code == 201, r.text
    batch, codes = r.json()["batch"], r.json()["codes"]
    assert (batch["count"], batch["units"], batch["unused"], batch["state"]) == (2, 50_000, 2,
                                                                                 "active")
    code = codes[0]["code"]
    r = await client.post("/api/v1/vouchers/redeem", json={"code": code, "account": "1001"})
    assert r.status_code == 200 and r.json()["balance"] == 50_000
    expected = [
        ({"code": code, "account": "1001"}, 409, "voucher_used"),
        ({"code": code[:-1] + str((int(code[-1]) + 1) % 10), "account": "1001"}, 422,
         "invalid"),
        ({"code": codes[1]["code"], "account": "999"}, 404, "not_found"),
    ]
    for body, status, error in expected:
        r = await client.post("/api/v1/vouchers/redeem", json=body)
        assert (r.status_code, r.json()["error"]) == (status, error), r.text
    r = await client.post(f"/api/v1/voucher-batches/{batch['id']}/void")
    assert r.json() == {"id": batch["id"], "voided": 1}
    r = await client.post("/api/v1/vouchers/redeem",
                          json={"code": codes[1]["code"], "account": "1001"})
    assert (r.status_code, r.json()["error"]) == (410, "voucher_voided")
    listed = (await client.get("/api/v1/voucher-batches")).json()
    assert (listed[0]["used"], listed[0]["voided"], listed[0]["state"]) == (1, 1, "voided")
    assert (await client.post(f"/api/v1/voucher-batches/{batch['id']}/void")).status_code == 409


async def test_card_batch_and_accounts_csv_endpoints(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/card-batches", json={"count": 3, "units": 1000,
                                                        "pin_length": 6,
                                                        "first_number": "8000"})
    assert r.status_code == 201, r.text
    cards = r.json()["cards"]
    assert [c["number"] for c in cards] == ["8000", "8001", "8002"]
    assert all(len(c["pin"]) == 6 for c in cards)
    r = await client.post("/api/v1/card-batches", json={"count": 1, "first_number": "8001"})
    assert r.status_code == 409
    r = await client.post("/api/v1/accounts/csv?separator=;",
                          content="number;name;balance\n9001;Zoe;500\n",
                          headers={"Content-Type": "text/csv"})
    assert r.status_code == 201 and r.json() == {"imported": 1}
    r = await client.post("/api/v1/accounts/csv", content="number\n9002\nabc\n",
                          headers={"Content-Type": "text/csv"})
    assert r.status_code == 422 and r.json()["field"] == "line 3"
    assert not await Account.filter(number="9002").exists()
    r = await client.get("/api/v1/accounts/csv?separator=,")
    lines = r.text.splitlines()
    assert lines[0] == "number,name,language,status,caller_ids,balance" and len(lines) == 5


async def test_dashboard_and_users_endpoints(client: httpx.AsyncClient) -> None:
    a = await accounts.create_account("1001", name="Alice", pin="4321")
    await ledger.credit(a.id, 500, actor="t")
    r = await client.get("/api/v1/dashboard?days=7")
    body = r.json()
    assert len(body["days"]) == 7 and body["low_balance"][0]["number"] == "1001"
    r = await client.get("/api/v1/users", params={"pin": "4321"})
    assert [u["number"] for u in r.json()["items"]] == ["1001"]
    r = await client.get("/api/v1/users", params={"sort": "bogus"})
    assert r.status_code == 422 and r.json()["field"] == "sort"
