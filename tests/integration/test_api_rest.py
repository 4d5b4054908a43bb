"""REST API v1 against the real app and database: every endpoint, good and bad payloads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from api.app import create_app
from ocs import accounts, apikeys, ledger
from ocs.config import Settings
from ocs.events import EventBus
from ocs.models import Account, CallerId, CreditSession, DidMapping, LedgerEntry, Setting, Tariff
from ocs.runtime import ServeContext


@dataclass
class RecordingControl:
    killed: list[str] = field(default_factory=list)
    live: set[str] = field(default_factory=set)

    async def kill(self, session_id: str) -> int:
        if session_id not in self.live:
            raise LookupError(session_id)
        self.killed.append(session_id)
        return 2001

    async def reauthorise(self, session_id: str) -> int:
        return 2001


@pytest.fixture
async def control() -> RecordingControl:
    return RecordingControl()


@pytest.fixture
async def client(db: Settings, control: RecordingControl) -> AsyncIterator[httpx.AsyncClient]:
    key = await apikeys.create_key("tests")
    ctx = ServeContext(settings=db, bus=EventBus(), sessions=control)
    app = create_app(ctx)
    # Same event loop as the test (the ORM connection belongs to it): plain httpx over ASGI.
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        c.headers["X-API-Key"] = key.key
        yield c


async def make_account(c: httpx.AsyncClient, number: str = "1001", **extra: Any) -> Any:
    r = await c.post("/api/v1/accounts", json={"number": number, **extra})
    assert r.status_code == 201, r.text
    return r.json()


# --- authentication -----------------------------------------------------------------


async def test_missing_api_key_is_401_json(client: httpx.AsyncClient) -> None:
    del client.headers["X-API-Key"]
    for method, path in [
        ("GET", "/api/v1/accounts"),
        ("POST", "/api/v1/accounts"),
        ("GET", "/api/v1/tariffs"),
        ("GET", "/api/v1/sessions"),
        ("PATCH", "/api/v1/settings"),
    ]:
        r = await client.request(method, path, json={})
        assert r.status_code == 401, (method, path)
        assert r.json()["error"] == "unauthorized"
        assert "bearer" in r.headers["www-authenticate"].lower()
    assert await Account.all().count() == 0


async def test_wrong_or_revoked_key_is_401(client: httpx.AsyncClient) -> None:
    first_key = client.headers["X-API-Key"]
    await accounts.create_account("4242", name="listed")
    client.headers["X-API-Key"] = "ocs_deadbeef_not-a-real-key"
    assert (await client.get("/api/v1/accounts")).status_code == 401
    client.headers["X-API-Key"] = "garbage"
    assert (await client.get("/api/v1/accounts")).status_code == 401
    client.headers["X-API-Key"] = first_key
    listed = await client.get("/api/v1/accounts")
    assert listed.status_code == 200
    other = await apikeys.create_key("to revoke")
    client.headers["X-API-Key"] = other.key
    r = await client.get("/api/v1/accounts")
    assert r.status_code == 200 and r.json() == listed.json()  # the same data, not a shell
    assert r.json()["total"] == len(r.json()["items"]) > 0
    assert await apikeys.revoke_key(other.record.prefix)
    r = await client.get("/api/v1/accounts")
    assert r.status_code == 401 and r.json()["detail"] == "invalid or revoked API key"


async def test_bearer_token_works(client: httpx.AsyncClient) -> None:
    key = client.headers.pop("X-API-Key")
    r = await client.get("/api/v1/accounts", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200


async def test_browser_session_cookie_does_not_open_the_api(client: httpx.AsyncClient) -> None:
    del client.headers["X-API-Key"]
    r = await client.get("/api/v1/accounts", cookies={"ocs_session": "whatever"})
    assert r.status_code == 401


async def test_openapi_schema_needs_auth_and_lists_the_api(client: httpx.AsyncClient) -> None:
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for p in ["/api/v1/accounts", "/api/v1/accounts/{number}/credit", "/api/v1/tariffs/csv",
              "/api/v1/sessions/{session_id}/kill", "/api/v1/settings",
              "/api/v1/accounts/{number}/dids/{did_id}"]:
        assert p in paths, p
    del client.headers["X-API-Key"]
    assert (await client.get("/schema/openapi.json")).status_code == 401


# --- accounts -------------------------------------------------------------------------


async def test_account_crud(client: httpx.AsyncClient) -> None:
    created = await make_account(
        client, "1001", name="Alice", pin="4321", language="EN", caller_ids=["+33 1 23 45 67 89"]
    )
    assert created["number"] == "1001"
    assert created["name"] == "Alice"
    assert created["pin_set"] is True
    assert created["caller_ids"] == ["33123456789"]
    assert created["balance"] == 0 and created["currency"] == "Euros"
    assert "pin" not in created

    r = await client.get("/api/v1/accounts/1001")
    assert r.status_code == 200 and r.json()["language"] == "EN"

    r = await client.patch("/api/v1/accounts/1001", json={"name": "Alice B", "status": "blocked"})
    assert r.status_code == 200
    assert r.json()["name"] == "Alice B" and r.json()["status"] == "blocked"

    await make_account(client, "1002", name="Bob")
    r = await client.get("/api/v1/accounts", params={"q": "bob"})
    assert [a["number"] for a in r.json()["items"]] == ["1002"]
    r = await client.get("/api/v1/accounts", params={"limit": 1, "offset": 1})
    body = r.json()
    assert body["total"] == 2 and [a["number"] for a in body["items"]] == ["1002"]

    assert (await client.delete("/api/v1/accounts/1002")).status_code == 204
    assert (await client.get("/api/v1/accounts/1002")).status_code == 404


async def test_account_bad_payloads_write_nothing(client: httpx.AsyncClient) -> None:
    cases: list[tuple[Any, int, str]] = [
        ({"name": "no number"}, 400, "number"),
        ({"number": 1001}, 400, "number"),
        ({"number": "1001", "bogus": 1}, 400, "bogus"),
        ({"number": "12ab"}, 422, "number"),
        ({"number": "1001", "pin": "12"}, 422, "pin"),
        ({"number": "1001", "language": "XX"}, 422, "language"),
        ({"number": "1001", "caller_ids": ["not a number"]}, 422, "caller_ids"),
    ]
    for payload, status, fld in cases:
        r = await client.post("/api/v1/accounts", json=payload)
        assert r.status_code == status, (payload, r.text)
        body = r.json()
        assert body["error"] in ("invalid", "invalid_payload"), body
        assert body.get("field") == fld, (payload, body)
    r = await client.post("/api/v1/accounts", content=b"{not json", headers={
        "Content-Type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()
    assert await Account.all().count() == 0
    assert await CallerId.all().count() == 0


async def test_account_conflicts_are_409(client: httpx.AsyncClient) -> None:
    await make_account(client, "1001", pin="4321", caller_ids=["0123456789"])
    r = await client.post("/api/v1/accounts", json={"number": "1001"})
    assert r.status_code == 409 and r.json()["field"] == "number"
    r = await client.post("/api/v1/accounts", json={"number": "1002", "pin": "4321"})
    assert r.status_code == 409 and r.json()["field"] == "pin"
    r = await client.post("/api/v1/accounts", json={"number": "1002",
                                                    "caller_ids": ["0123456789"]})
    assert r.status_code == 409 and r.json()["field"] == "caller_ids"
    assert await Account.all().count() == 1


async def test_patch_bad_values_change_nothing(client: httpx.AsyncClient) -> None:
    await make_account(client, "1001", name="Alice")
    for payload in ({"status": "gone"}, {"language": "DE"}, {"pin": "1"},
                    {"name": "x", "caller_ids": ["abc"]}):
        r = await client.patch("/api/v1/accounts/1001", json=payload)
        assert r.status_code == 422, payload
    r = await client.patch("/api/v1/accounts/1001", json={"unknown": True})
    assert r.status_code == 400
    account = await Account.get(number="1001")
    assert account.name == "Alice" and account.status.value == "active"
    assert (await client.patch("/api/v1/accounts/9999", json={"name": "x"})).status_code == 404


async def test_delete_account_with_history_is_409(client: httpx.AsyncClient) -> None:
    await make_account(client, "1001")
    assert (await client.post("/api/v1/accounts/1001/credit", json={"units": 5})).status_code == 201
    r = await client.delete("/api/v1/accounts/1001")
    assert r.status_code == 409 and "block" in r.json()["detail"]
    assert await Account.filter(number="1001").exists()
    assert (await client.delete("/api/v1/accounts/4040")).status_code == 404


# --- credit & statement ---------------------------------------------------------------


async def test_credit_in_units_and_money(client: httpx.AsyncClient) -> None:
    await make_account(client, "1002")
    r = await client.post("/api/v1/accounts/1002/credit", json={"amount": "25"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["units"] == 250000 and body["balance"] == 250000
    assert body["money"] == "25.0000" and body["balance_money"] == "25.0000"
    r = await client.post("/api/v1/accounts/1002/credit", json={"units": 100, "note": "gift"})
    assert r.status_code == 201 and r.json()["balance"] == 250100
    assert (await ledger.balance((await Account.get(number="1002")).id)).balance == 250100

    r = await client.get("/api/v1/accounts/1002/statement")
    st = r.json()
    assert [e["operation"] for e in st["entries"]] == ["CREDIT", "CREDIT"]
    assert [e["units"] for e in st["entries"]] == [250000, 100]
    assert st["entries"][1]["note"] == "gift"
    assert st["entries"][0]["actor"] == "api:tests"
    assert st["total"] == 250100 and st["total_money"] == "25.0100"


async def test_bad_credit_writes_nothing(client: httpx.AsyncClient) -> None:
    await make_account(client, "1001")
    cases: list[tuple[Any, int, str]] = [
        ({}, 422, "units"),
        ({"units": 5, "amount": "1"}, 422, "units"),
        ({"units": 0}, 422, "units"),
        ({"units": -5}, 422, "units"),
        ({"units": "ten"}, 400, "units"),
        ({"amount": "0.00005"}, 422, "amount"),
        ({"amount": "abc"}, 422, "amount"),
        ({"amount": "-3"}, 422, "amount"),
        ({"units": 5, "note": "x" * 300}, 422, "note"),
    ]
    for payload, status, fld in cases:
        r = await client.post("/api/v1/accounts/1001/credit", json=payload)
        assert r.status_code == status, (payload, r.text)
        assert r.json().get("field") == fld, (payload, r.json())
    assert (await client.post("/api/v1/accounts/9999/credit", json={"units": 5})).status_code == 404
    assert await LedgerEntry.all().count() == 0
    assert (await Account.get(number="1001")).balance == 0


# --- caller IDs -----------------------------------------------------------------------


async def test_caller_ids(client: httpx.AsyncClient) -> None:
    await make_account(client, "1001", caller_ids=["0123456789"])
    await make_account(client, "1002")
    base = "/api/v1/accounts/1001/caller-ids"
    assert (await client.get(base)).json() == {"caller_ids": ["0123456789"]}
    r = await client.post(base, json={"number": "+33 6 11 22 33 44"})
    assert r.status_code == 201 and r.json()["caller_ids"] == ["0123456789", "33611223344"]
    assert (await client.post(base, json={"number": "0123456789"})).status_code == 409
    assert (await client.post(base, json={"number": "abc"})).status_code == 422
    r = await client.put(base, json={"caller_ids": ["0700000000"]})
    assert r.status_code == 200 and r.json()["caller_ids"] == ["0700000000"]
    r = await client.put("/api/v1/accounts/1002/caller-ids", json={"caller_ids": ["0700000000"]})
    assert r.status_code == 409
    assert (await client.delete(f"{base}/0700000000")).status_code == 204
    assert (await client.delete(f"{base}/0700000000")).status_code == 404
    assert (await client.get(base)).json() == {"caller_ids": []}
    assert (await client.get("/api/v1/accounts/9/caller-ids")).status_code == 404


# --- DIDs -----------------------------------------------------------------------------


async def test_did_mapping_crud(client: httpx.AsyncClient) -> None:
    await make_account(client, "1001")
    base = "/api/v1/accounts/1001/dids"
    r = await client.post(base, json={"did": "0561500001", "forward_to": "0141587070"})
    assert r.status_code == 201
    did_id = r.json()["id"]
    r = await client.post(base, json={"did": "0561500001", "forward_to": "1"})
    assert r.status_code == 409
    assert (await client.post(base, json={"did": "x", "forward_to": "1"})).status_code == 422
    r = await client.post(base, json={"did": "0561500002", "forward_to": "nope"})
    assert r.status_code == 422 and r.json()["field"] == "forward_to"
    assert (await client.post(base, json={"did": "0561500002"})).status_code == 400
    r = await client.put(f"{base}/{did_id}", json={"did": "0561500001", "forward_to": "0141587075"})
    assert r.status_code == 200 and r.json()["forward_to"] == "0141587075"
    r = await client.put(f"{base}/999", json={"did": "1", "forward_to": "2"})
    assert r.status_code == 404
    r = await client.get(base)
    assert r.json() == [{"id": did_id, "did": "0561500001", "forward_to": "0141587075"}]
    assert (await client.delete(f"{base}/{did_id}")).status_code == 204
    assert (await client.delete(f"{base}/{did_id}")).status_code == 404
    assert await DidMapping.all().count() == 0


# --- tariffs --------------------------------------------------------------------------


async def test_tariff_crud_and_money_per_minute(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/tariffs", json={"prefix": "default", "h1_rate": 200})
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["prefix"] == "DEFAULT" and t["h1_per_minute"] == "1.2000"
    r = await client.post("/api/v1/tariffs", json={
        "prefix": "38", "h1_rate": 180, "h2_begin": 20, "h2_end": 8, "h2_rate": 90,
        "initial_block": 30, "increment": 6, "connection_charge": 50})
    assert r.status_code == 201
    assert r.json()["h1_per_minute"] == "1.0800"
    r = await client.get("/api/v1/tariffs")
    assert [x["prefix"] for x in r.json()] == ["DEFAULT", "38"]
    r = await client.put("/api/v1/tariffs/38", json={"prefix": "38", "h1_rate": 190,
                                                     "barred": True})
    assert r.status_code == 200 and r.json()["barred"] is True and r.json()["h1_rate"] == 190
    assert (await client.get("/api/v1/tariffs/38")).json()["h1_rate"] == 190
    assert (await client.get("/api/v1/tariffs/DEFAULT")).status_code == 200
    assert (await client.delete("/api/v1/tariffs/38")).status_code == 204
    assert (await client.get("/api/v1/tariffs/38")).status_code == 404
    assert (await client.delete("/api/v1/tariffs/38")).status_code == 404


async def test_tariff_bad_payloads(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/tariffs", json={"prefix": "42", "h1_rate": 250})
    cases: list[tuple[Any, int]] = [
        ({"prefix": "42", "h1_rate": 1}, 409),
        ({"prefix": "4x", "h1_rate": 1}, 422),
        ({"prefix": "43", "h1_rate": -1}, 422),
        ({"prefix": "43", "h1_rate": 1, "h2_begin": 24}, 422),
        ({"prefix": "43", "h1_rate": 1, "increment": 0}, 422),
        ({"prefix": "43"}, 400),
        ({"prefix": "43", "h1_rate": "lots"}, 400),
    ]
    for payload, status in cases:
        r = await client.post("/api/v1/tariffs", json=payload)
        assert r.status_code == status, (payload, r.text)
        assert "error" in r.json()
    r = await client.put("/api/v1/tariffs/42", json={"prefix": "42", "h1_rate": -5})
    assert r.status_code == 422
    assert (await Tariff.get(prefix="42")).h1_rate == 250
    assert await Tariff.all().count() == 1


async def test_tariff_csv_import_export(client: httpx.AsyncClient) -> None:
    text = "prefix;h1_rate;h2_begin;h2_end;h2_rate\nDEFAULT;200;0;0;0\n38;180;0;0;0\n42;250;0;0;0\n"
    r = await client.post("/api/v1/tariffs/csv", params={"separator": ";"}, content=text,
                          headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json() == {"imported": 3}
    r = await client.get("/api/v1/tariffs/csv", params={"separator": ","})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.splitlines()
    assert lines[0].startswith("prefix,h1_rate")
    assert lines[1].startswith("DEFAULT,200") and len(lines) == 4
    # default separator comes from the settings (":")
    assert (await client.get("/api/v1/tariffs/csv")).text.startswith("prefix:h1_rate")


async def test_bad_csv_imports_nothing(client: httpx.AsyncClient) -> None:
    text = "prefix,h1_rate\n38,180\n42,lots\n"
    r = await client.post("/api/v1/tariffs/csv", params={"separator": ","}, content=text,
                          headers={"Content-Type": "text/csv"})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_csv" and "line 3" in body["detail"]
    assert await Tariff.all().count() == 0
    r = await client.post("/api/v1/tariffs/csv", params={"separator": "ab"}, content="x")
    assert r.status_code in (400, 422)
    r = await client.post("/api/v1/tariffs/csv", content=b"\xff\xfe\x00bad",
                          headers={"Content-Type": "text/csv"})
    assert r.status_code in (400, 422)
    assert await Tariff.all().count() == 0


# --- sessions -------------------------------------------------------------------------


async def test_sessions_list_and_kill(client: httpx.AsyncClient,
                                      control: RecordingControl) -> None:
    await make_account(client, "1002")
    await client.post("/api/v1/accounts/1002/credit", json={"units": 250000})
    account = await Account.get(number="1002")
    await CreditSession.create(
        session_id="gw;1;42", account=account, calling="5172", called="3000", rate=200,
        started_at=datetime.now(UTC), cost=0,
    )
    await CreditSession.create(
        session_id="gw;1;43", account=account, calling="5172", called="3000", rate=200,
        started_at=datetime.now(UTC), state="closed",
    )
    control.live.add("gw;1;42")
    r = await client.get("/api/v1/sessions")
    assert r.status_code == 200
    items = r.json()
    assert [s["session_id"] for s in items] == ["gw;1;42"]
    assert items[0]["account"] == "1002" and items[0]["rate"] == 200
    assert items[0]["balance"] == 250000

    r = await client.post("/api/v1/sessions/gw;1;42/kill")
    assert r.status_code == 200 and r.json() == {"session_id": "gw;1;42", "result_code": 2001}
    assert control.killed == ["gw;1;42"]
    r = await client.post("/api/v1/sessions/nope/kill")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


async def test_kill_without_call_control_is_503(db: Settings) -> None:
    key = await apikeys.create_key("t")
    app = create_app(ServeContext(settings=db, bus=EventBus(), sessions=None))
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        r = await c.post("/api/v1/sessions/x/kill", headers={"X-API-Key": key.key})
        assert r.status_code == 503
        assert r.json()["error"] == "unavailable"


# --- settings -------------------------------------------------------------------------


async def test_settings_get_and_patch(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/settings")
    assert r.status_code == 200
    body = r.json()
    assert body["unit_price"] == "0.0001" and body["currency"] == "Euros"
    assert body["csv_separator"] == ":" and body["ivr_access_number"] == "6000"
    r = await client.patch("/api/v1/settings", json={"currency": "USD", "unit_price": "0.001"})
    assert r.status_code == 200 and r.json()["currency"] == "USD"
    assert (await client.get("/api/v1/settings")).json()["unit_price"] == "0.001"


async def test_settings_patch_is_all_or_nothing(client: httpx.AsyncClient) -> None:
    for payload, fld in [
        ({"currency": "GBP", "timezone": "Mars/Olympus"}, "timezone"),
        ({"currency": "GBP", "nope": 1}, "nope"),
        ({"currency": "GBP", "unit_price": "-1"}, "unit_price"),
    ]:
        r = await client.patch("/api/v1/settings", json=payload)
        assert r.status_code == 422, payload
        assert r.json()["field"] == fld
    assert (await client.patch("/api/v1/settings", json=[1, 2])).status_code == 400
    assert not await Setting.filter(key="currency").exists()


# --- metrics & misc -------------------------------------------------------------------


async def test_metrics_with_api_key(client: httpx.AsyncClient) -> None:
    from ocs import metrics

    metrics.observe_ccr(1, 2001, 0.002)
    metrics.set_live_sessions(3)
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert 'ocs_ccr_total{type="INITIAL",result_code="2001"}' in r.text
    assert "ocs_live_sessions 3" in r.text
    del client.headers["X-API-Key"]
    assert (await client.get("/metrics")).status_code == 401


async def test_unknown_api_path_is_json_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
