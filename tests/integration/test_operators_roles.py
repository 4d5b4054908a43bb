"""Several operators with roles, API keys with roles, and the audit log (issue 10)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api import permissions
from api.app import create_app
from ocs import apikeys, audit, ledger, operators
from ocs.config import Settings
from ocs.events import EventBus
from ocs.models import Account, AuditEntry, LedgerEntry, OperatorRole, Setting, Tariff
from ocs.runtime import ServeContext
from tests.integration.web_support import Browser, RecordingControl, asgi_client, flash_text

PASSWORD = "a long enough password"
ROLES = ("readonly", "operator", "admin")


@pytest.fixture
async def ctx(db: Settings) -> ServeContext:
    return ServeContext(settings=db, bus=EventBus(), sessions=RecordingControl())


@pytest.fixture
async def team(ctx: ServeContext) -> AsyncIterator[dict[str, Browser]]:
    """A logged-in browser per role: boss (admin), olga (operator), rita (readonly)."""
    names = {"admin": "boss", "operator": "olga", "readonly": "rita"}
    clients = {role: asgi_client(ctx) for role in ROLES}
    browsers: dict[str, Browser] = {}
    for role, name in names.items():
        await operators.create(name, PASSWORD, role)
    await Account.create(number="1001", name="Alice")
    for role, client in clients.items():
        await client.__aenter__()
        browser = Browser(client)
        r = await browser.login(names[role], PASSWORD)
        assert r.status_code == 303, (role, r.status_code, r.text[:300])
        browsers[role] = browser
    try:
        yield browsers
    finally:
        for client in clients.values():
            await client.__aexit__(None, None, None)


@pytest.fixture
async def keys(ctx: ServeContext) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    out: dict[str, httpx.AsyncClient] = {}
    for role in ROLES:
        new = await apikeys.create_key(f"key-{role}", role)
        client = asgi_client(ctx)
        await client.__aenter__()
        client.headers["X-API-Key"] = new.key
        out[role] = client
    if not await Account.filter(number="1001").exists():
        await Account.create(number="1001", name="Alice")
    try:
        yield out
    finally:
        for client in out.values():
            await client.__aexit__(None, None, None)


# --- the whole matrix: every route and method, every role --------------------------------


SAMPLE = {"number": "9999", "did_id": "7", "tariff_id": "7", "run_id": "7", "prefix": "77",
          "session_id": "no-such-session", "filename": "BILLING_20200101_000000.csv",
          "name": "nobody", "caller": "0100000000", "file_path": "style.css"}
SKIP = {"/supervision/stream", "/logout"}  # an endless stream; logging out ends the test


def concrete(path: str) -> str:
    """A request path for a route: an `int` parameter gets a well-formed (unknown) id, so the
    request reaches the role check; "x" would not even match the route (the router's 404,
    the same for every role), and the route's role would go unchecked."""
    return re.sub(r"\{(\w+):(\w+)\}", lambda m: SAMPLE.get(
        m.group(1), "7" if m.group(2) == "int" else "x"), path)


def all_routes(ctx: ServeContext) -> list[tuple[str, str, dict[str, Any], str]]:
    app = create_app(ctx)
    out = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for method in sorted(getattr(handler, "http_methods", [])):
                if method in ("HEAD", "OPTIONS") or route.path in SKIP:
                    continue
                path = concrete(route.path)
                probe = httpx.Request(method, "http://x" + path)
                rule = handler.opt.get("auth") or (
                    "api" if path.startswith("/api/") else
                    "either" if path.startswith("/schema") or path == "/metrics" else "session")
                if rule == "public":
                    continue
                out.append((method, probe.url.path, dict(handler.opt), rule))
    return out


async def test_every_route_enforces_the_role_matrix(
    ctx: ServeContext, team: dict[str, Browser], keys: dict[str, httpx.AsyncClient]
) -> None:
    routes = all_routes(ctx)
    assert len(routes) > 50
    checked = 0
    for method, path, opt, rule in routes:
        needed = permissions.required_role(method, path, opt)
        for role in ROLES:
            if rule == "session":
                browser = team[role]
                if method == "GET":
                    r = await browser.client.get(path)
                else:
                    r = await browser.post(path, {})
            else:
                r = await keys[role].request(method, path, **({} if method == "GET" else
                                                               {"json": {}}))
            allowed = permissions.allows(role, needed)
            if allowed:
                assert r.status_code != 403, (role, method, path, r.text[:200])
                assert r.status_code < 500, (role, method, path, r.text[:200])
            else:
                assert r.status_code == 403, (role, method, path, r.status_code)
            checked += 1
    assert checked == 3 * len(routes)


def test_the_documented_matrix() -> None:
    need = permissions.required_role
    assert need("GET", "/users") == OperatorRole.READONLY
    assert need("GET", "/audit") == OperatorRole.READONLY
    assert need("GET", "/api/v1/audit") == OperatorRole.READONLY
    assert need("POST", "/users/1001/credit") == OperatorRole.OPERATOR
    assert need("POST", "/api/v1/accounts/1001/credit") == OperatorRole.OPERATOR
    assert need("POST", "/supervision/kill") == OperatorRole.OPERATOR
    assert need("POST", "/billing/run") == OperatorRole.OPERATOR
    assert need("GET", "/config") == OperatorRole.READONLY
    assert need("POST", "/config") == OperatorRole.ADMIN
    assert need("POST", "/costs") == OperatorRole.ADMIN
    assert need("DELETE", "/api/v1/tariffs/38") == OperatorRole.ADMIN
    assert need("PATCH", "/api/v1/settings") == OperatorRole.ADMIN
    assert need("GET", "/operators") == OperatorRole.ADMIN
    assert need("GET", "/apikeys") == OperatorRole.ADMIN
    assert need("POST", "/operators-not-really") == OperatorRole.OPERATOR
    # bulk money out of nothing is admin; single-account money operations are operator
    for path in ["/vouchers/batches", "/vouchers/batches/3/void", "/api/v1/voucher-batches",
                 "/api/v1/voucher-batches/3/void", "/cards", "/api/v1/card-batches",
                 "/users/import", "/api/v1/accounts/csv"]:
        assert need("POST", path) == OperatorRole.ADMIN, path
    for path in ["/vouchers/redeem", "/api/v1/vouchers/redeem", "/users/1001/adjust",
                 "/api/v1/accounts/1001/adjustments", "/cdrs/3/refund", "/api/v1/cdrs/3/refund"]:
        assert need("POST", path) == OperatorRole.OPERATOR, path
    for path in ["/vouchers", "/cards", "/users/import", "/api/v1/voucher-batches",
                 "/api/v1/card-batches", "/api/v1/accounts/csv"]:
        assert need("GET", path) == OperatorRole.READONLY, path
    assert need("POST", "/x", {"role": "readonly"}) == OperatorRole.READONLY
    assert permissions.allows("admin", "operator") and not permissions.allows("readonly",
                                                                              "operator")


# --- what each role can do, end to end --------------------------------------------------------


async def test_readonly_views_but_changes_nothing(team: dict[str, Browser]) -> None:
    rita = team["readonly"]
    for path in ["/users", "/users/1001", "/costs", "/config", "/cdrs", "/supervision",
                 "/audit", "/cdrs/archives", "/account"]:
        assert (await rita.get(path)).status_code == 200, path
    r = await rita.post("/users/1001/credit", {"amount": "100", "unit": "units"})
    assert r.status_code == 403 and "readonly" in r.text
    assert (await rita.post("/users/1001", {"name": "Mallory"})).status_code == 403
    assert (await rita.post("/supervision/kill", {"session_id": "s"})).status_code == 403
    assert (await rita.get("/operators")).status_code == 403
    assert await LedgerEntry.all().count() == 0
    assert (await Account.get(number="1001")).name == "Alice"


async def test_operator_does_daily_work_but_not_config(team: dict[str, Browser]) -> None:
    olga = team["operator"]
    r = await olga.post("/users/1001/credit", {"amount": "100", "unit": "units"})
    assert r.status_code == 303
    assert (await olga.post("/users/1001", {"name": "Alice B", "language": "FR",
                                            "status": "active"})).status_code == 303
    assert (await olga.post("/config", {"currency": "Dollars"})).status_code == 403
    assert (await olga.post("/costs", {"prefix": "33", "h1_rate": "10"})).status_code == 403
    assert (await olga.get("/operators")).status_code == 403
    assert (await olga.get("/apikeys")).status_code == 403
    assert not await Setting.filter(key="currency").exists()
    assert await Tariff.all().count() == 0
    page = await olga.get("/users")
    assert 'href="/operators"' not in page.text and 'href="/audit"' in page.text


async def test_api_keys_act_with_their_role(keys: dict[str, httpx.AsyncClient]) -> None:
    credit = {"units": 100}
    assert (await keys["readonly"].get("/api/v1/accounts")).status_code == 200
    assert (await keys["readonly"].post("/api/v1/accounts/1001/credit",
                                        json=credit)).status_code == 403
    assert (await keys["operator"].post("/api/v1/accounts/1001/credit",
                                        json=credit)).status_code == 201
    r = await keys["operator"].patch("/api/v1/settings", json={"currency": "Dollars"})
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    r = await keys["operator"].post("/api/v1/tariffs", json={"prefix": "33", "h1_rate": 1})
    assert r.status_code == 403
    r = await keys["admin"].post("/api/v1/tariffs", json={"prefix": "33", "h1_rate": 1})
    assert r.status_code == 201
    entry = await LedgerEntry.get()
    assert entry.actor == "api:key-operator"


# --- the credit statement's "by" column and the audit log ------------------------------------


async def test_statement_shows_the_real_operator_and_audit_records_it(
    team: dict[str, Browser],
) -> None:
    olga = team["operator"]
    r = await olga.post("/users/1001/credit", {"amount": "250", "unit": "units",
                                               "note": "top-up at the desk"})
    assert r.status_code == 303
    entry = await LedgerEntry.get()
    assert entry.actor == "olga"
    page = await team["readonly"].get("/users/1001")
    row = re.search(r"<tr[^>]*>(?:(?!</tr>).)*top-up at the desk(?:(?!</tr>).)*</tr>", page.text,
                    re.S)
    assert row is not None and "olga" in row.group(0)
    logged = await AuditEntry.filter(action="credit.add").get()
    assert (logged.actor, logged.target) == ("olga", "account 1001")
    assert logged.details == {"units": 250, "entry": entry.id, "note": "top-up at the desk"}
    assert logged.address == "127.0.0.1"


async def test_every_kind_of_change_is_audited(team: dict[str, Browser],
                                               keys: dict[str, httpx.AsyncClient],
                                               ctx: ServeContext) -> None:
    boss, olga = team["admin"], team["operator"]
    assert (await boss.post("/config", {"currency": "Dollars", "unit_price": "0.0001",
                                         "service_log": "on"})
            ).status_code == 303
    assert (await boss.post("/costs", {"prefix": "38", "h1_rate": "180"})).status_code == 303
    tariff = await Tariff.get(prefix="38")
    assert (await boss.post(f"/costs/{tariff.id}", {"prefix": "38", "h1_rate": "190"})
            ).status_code == 303
    assert (await boss.post(f"/costs/{tariff.id}/delete")).status_code == 303
    assert (await olga.post("/users", {"number": "1002", "pin": "4321"})).status_code == 303
    assert (await olga.post("/users/1002/dids", {"did": "0561500001",
                                                 "forward_to": "0141587070"})).status_code == 303
    assert (await olga.post("/supervision/kill", {"session_id": "call-1"})).status_code == 303
    assert (await olga.post("/billing/run")).status_code == 303
    assert (await boss.post("/operators", {"name": "newbie", "role": "readonly",
                                           "password": PASSWORD, "confirm": PASSWORD})
            ).status_code == 303
    assert (await boss.post("/operators/newbie/role", {"role": "operator"})).status_code == 303
    assert (await boss.post("/operators/newbie/password", {"password": PASSWORD + "!",
                                                           "confirm": PASSWORD + "!"})
            ).status_code == 303
    assert (await boss.post("/operators/newbie/disable")).status_code == 303
    r = await boss.post("/apikeys", {"name": "crm", "role": "operator"})
    assert r.status_code == 201
    prefix = re.search(r"ocs_([0-9a-f]{8})_", r.text).group(1)  # type: ignore[union-attr]
    assert (await boss.post(f"/apikeys/{prefix}/revoke")).status_code == 303
    r = await keys["admin"].patch("/api/v1/settings", json={"csv_separator": ";"})
    assert r.status_code == 200
    r = await keys["operator"].post("/api/v1/accounts", json={"number": "1003", "pin": "9876"})
    assert r.status_code == 201

    rows = [(e.actor, e.action, e.target) for e in await AuditEntry.all().order_by("id")]
    expected = [
        ("boss", "config.update", "config"),
        ("boss", "tariff.create", "tariff 38"),
        ("boss", "tariff.update", "tariff 38"),
        ("boss", "tariff.delete", "tariff 38"),
        ("olga", "account.create", "account 1002"),
        ("olga", "did.set", "account 1002"),
        ("olga", "session.kill", "session call-1"),
        ("boss", "operator.create", "operator newbie"),
        ("boss", "operator.role", "operator newbie"),
        ("boss", "operator.password", "operator newbie"),
        ("boss", "operator.disable", "operator newbie"),
        ("boss", "apikey.create", f"api key {prefix}"),
        ("boss", "apikey.revoke", f"api key {prefix}"),
        ("api:key-admin", "config.update", "config"),
        ("api:key-operator", "account.create", "account 1003"),
    ]
    logged = [r for r in rows if r[1] not in ("auth.login", "billing.run")]
    assert logged == expected
    assert ("olga", "billing.run") in [(a, b) for a, b, _ in rows]
    config = await AuditEntry.filter(action="config.update", actor="boss").get()
    assert config.details == {"currency": "Dollars"}
    for entry in await AuditEntry.filter(action="account.create"):
        assert entry.details is not None and entry.details.get("pin") == "changed"
        assert "4321" not in str(entry.details) and "9876" not in str(entry.details)


# --- operators management --------------------------------------------------------------------


async def test_the_last_admin_cannot_be_disabled_or_demoted(team: dict[str, Browser]) -> None:
    boss = team["admin"]
    r = await boss.post("/operators/boss/role", {"role": "operator"})
    assert r.status_code == 303
    assert "last enabled admin" in flash_text((await boss.get("/operators")).text)
    assert (await operators.get("boss")).role == OperatorRole.ADMIN
    assert (await boss.post("/operators/boss/disable")).status_code == 303
    assert "your own account" in flash_text((await boss.get("/operators")).text)
    with pytest.raises(operators.OperatorError, match="last enabled admin"):
        await operators.set_disabled("boss", True)
    await operators.set_role("olga", "admin")
    await operators.set_disabled("boss", True)  # another admin exists now
    assert (await boss.client.get("/users")).status_code == 303  # boss's session ended


async def test_disable_and_password_reset_end_sessions(team: dict[str, Browser]) -> None:
    boss, olga, rita = team["admin"], team["operator"], team["readonly"]
    assert (await boss.post("/operators/olga/disable")).status_code == 303
    assert (await olga.client.get("/users")).status_code == 303
    assert (await boss.post("/operators/olga/enable")).status_code == 303
    assert (await olga.client.get("/users")).status_code == 303  # stays ended
    assert (await olga.login("olga", PASSWORD)).status_code == 303
    assert (await olga.client.get("/users")).status_code == 200
    r = await boss.post("/operators/rita/password", {"password": "another password",
                                                     "confirm": "another password"})
    assert r.status_code == 303
    assert (await rita.client.get("/users")).status_code == 303
    assert (await rita.login("rita", PASSWORD)).status_code == 401
    assert (await rita.login("rita", "another password")).status_code == 303


async def test_role_change_applies_at_the_next_request(team: dict[str, Browser]) -> None:
    rita = team["readonly"]
    assert (await rita.post("/users/1001/credit", {"amount": "1"})).status_code == 403
    assert (await team["admin"].post("/operators/rita/role", {"role": "operator"})
            ).status_code == 303
    assert (await rita.post("/users/1001/credit", {"amount": "1", "unit": "units"})
            ).status_code == 303


async def test_operator_form_errors(team: dict[str, Browser]) -> None:
    boss = team["admin"]
    r = await boss.post("/operators", {"name": "Bad Name", "role": "operator",
                                       "password": PASSWORD, "confirm": PASSWORD})
    assert r.status_code == 422 and "a-z" in r.text and 'aria-invalid="true"' in r.text
    r = await boss.post("/operators", {"name": "olga", "role": "operator",
                                       "password": PASSWORD, "confirm": PASSWORD})
    assert r.status_code == 422 and "already exists" in r.text
    r = await boss.post("/operators", {"name": "x", "role": "king", "password": PASSWORD,
                                       "confirm": PASSWORD})
    assert r.status_code == 422 and "Role must be" in r.text
    r = await boss.post("/operators", {"name": "x", "role": "operator", "password": "short",
                                       "confirm": "short"})
    assert r.status_code == 422 and "at least 8" in r.text
    assert (await boss.post("/operators/ghost/disable")).status_code == 404


async def test_own_password_change(team: dict[str, Browser]) -> None:
    rita = team["readonly"]
    r = await rita.post("/account/password", {"current": "wrong one", "password": "new pass 123",
                                              "confirm": "new pass 123"})
    assert r.status_code == 422 and "current password is wrong" in r.text
    before = rita.client.cookies["ocs_session"]
    r = await rita.post("/account/password", {"current": PASSWORD, "password": "new pass 123",
                                              "confirm": "new pass 123"})
    assert r.status_code == 303
    assert rita.client.cookies["ocs_session"] != before  # a new session id
    assert (await rita.get("/users")).status_code == 200
    assert await operators.authenticate("rita", "new pass 123") is not None
    entry = await AuditEntry.filter(action="operator.password").get()
    assert (entry.actor, entry.target) == ("rita", "operator rita")


async def test_first_run_creates_a_named_admin(ctx: ServeContext) -> None:
    async with asgi_client(ctx) as c:
        browser = Browser(c)
        r = await browser.get("/login")
        assert 'name="username"' in r.text and 'value="admin"' in r.text
        r = await browser.post("/login", {"username": "chief", "password": PASSWORD,
                                          "confirm": PASSWORD})
        assert r.status_code == 303
        chief = await operators.get("chief")
        assert chief.role == OperatorRole.ADMIN
        assert (await browser.get("/operators")).status_code == 200
        r = await browser.post("/login", {"username": "other", "password": PASSWORD,
                                          "confirm": PASSWORD})
        assert r.status_code == 401  # no second first-run
        assert not await operators.Operator.filter(name="other").exists()


# --- audit page and REST endpoint ------------------------------------------------------------


async def _seed_audit() -> list[AuditEntry]:
    entries = []
    for i in range(7):
        entries.append(await audit.record("olga" if i % 2 else "boss",
                                          "credit.add" if i < 4 else "tariff.update",
                                          f"account 10{i:02d}", {"units": i}))
    return entries


async def test_audit_rest_filters_and_pages(keys: dict[str, httpx.AsyncClient]) -> None:
    seeded = await _seed_audit()
    api = keys["readonly"]
    r = await api.get("/api/v1/audit", params={"limit": 3})
    body = r.json()
    assert r.status_code == 200
    assert [e["id"] for e in body["items"]] == [seeded[6].id, seeded[5].id, seeded[4].id]
    assert body["newer"] is None and body["older"] == seeded[4].id
    r = await api.get("/api/v1/audit", params={"limit": 3, "before": body["older"]})
    page2 = r.json()
    assert [e["id"] for e in page2["items"]] == [seeded[3].id, seeded[2].id, seeded[1].id]
    assert page2["newer"] == seeded[3].id
    r = await api.get("/api/v1/audit", params={"limit": 3, "after": page2["newer"]})
    assert [e["id"] for e in r.json()["items"]] == [seeded[6].id, seeded[5].id, seeded[4].id]
    r = await api.get("/api/v1/audit", params={"actor": "olga"})
    assert {e["actor"] for e in r.json()["items"]} == {"olga"} and len(r.json()["items"]) == 3
    r = await api.get("/api/v1/audit", params={"action": "credit."})
    assert len(r.json()["items"]) == 4
    r = await api.get("/api/v1/audit", params={"action": "tariff.update", "actor": "boss"})
    assert [e["target"] for e in r.json()["items"]] == ["account 1006", "account 1004"]
    r = await api.get("/api/v1/audit", params={"target": "1003"})
    assert [e["details"] for e in r.json()["items"]] == [{"units": 3}]
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%d")
    r = await api.get("/api/v1/audit", params={"from": tomorrow})
    assert r.json()["items"] == []
    r = await api.get("/api/v1/audit", params={"to": tomorrow})
    assert len(r.json()["items"]) == 7
    r = await api.get("/api/v1/audit", params={"from": "yesterday"})
    assert r.status_code == 422 and r.json()["field"] == "from"


async def test_audit_page_filters(team: dict[str, Browser]) -> None:
    await _seed_audit()
    rita = team["readonly"]
    r = await rita.get("/audit", params={"actor": "olga"})
    assert r.status_code == 200
    table = r.text.split('id="audit-table"')[1]
    assert table.count("account 10") == 3  # olga's three seeded entries
    assert table.count("auth.login") == 1  # and her login
    assert "boss" not in table
    r = await rita.get("/audit", params={"action": "tariff."})
    assert r.text.split('id="audit-table"')[1].count("tariff.update") == 3
    r = await rita.get("/audit", params={"from": "not a date"})
    assert r.status_code == 200 and "flash error" in r.text


async def test_audit_record_is_small_and_stable(db: Settings) -> None:
    """The contract other modules rely on (docs/ARCHITECTURE.md)."""
    entry = await audit.record("cli:root", "voucher.batch_create", "batch 12",
                               {"count": 100, "value": 50000}, address="10.0.0.9")
    stored = await AuditEntry.get(id=entry.id)
    assert (stored.actor, stored.action, stored.target, stored.details, stored.address) == (
        "cli:root", "voucher.batch_create", "batch 12", {"count": 100, "value": 50000},
        "10.0.0.9")
    assert (await audit.record("ocs", "x" * 100, "t" * 300)).action == "x" * 64


async def test_ledger_actor_is_the_operator_name_for_every_path(
    team: dict[str, Browser], keys: dict[str, httpx.AsyncClient]
) -> None:
    account = await Account.get(number="1001")
    await team["admin"].post("/users/1001/credit", {"amount": "5", "unit": "units"})
    await keys["operator"].post("/api/v1/accounts/1001/credit", json={"units": 5})
    await ledger.credit(account.id, 5, actor=audit.cli_actor())
    actors = [e.actor for e in await LedgerEntry.all().order_by("id")]
    assert actors[0] == "boss" and actors[1] == "api:key-operator"
    assert actors[2].startswith("cli:")

