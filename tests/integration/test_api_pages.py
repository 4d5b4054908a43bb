"""Operator pages over HTTP (no browser): login, guards, CSRF, and each screen's forms."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.server import start_web
from ocs import admin_auth, ledger
from ocs.config import Settings
from ocs.events import EventBus
from ocs.models import Account, CreditSession, DidMapping, LedgerEntry, Setting, Tariff
from ocs.runtime import ServeContext
from ocs.settings_store import load_operator_settings

PASSWORD = "correct horse battery"
TOKEN = re.compile(r'name="_csrf_token" value="([^"]+)"')


class RecordingControl:
    def __init__(self) -> None:
        self.killed: list[str] = []

    async def kill(self, session_id: str) -> int:
        self.killed.append(session_id)
        return 2001

    async def reauthorise(self, session_id: str) -> int:
        return 2001


class Browser:
    """An httpx client that keeps cookies and fills in the CSRF token like a form would."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.token = ""

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        r = await self.client.get(path, **kw)
        match = TOKEN.search(r.text)
        if match:
            self.token = match.group(1)
        return r

    async def post(self, path: str, data: dict[str, Any] | None = None,
                   **kw: Any) -> httpx.Response:
        if not self.token:
            await self.get("/login")
        form = {"_csrf_token": self.token, **(data or {})}
        return await self.client.post(path, data=form, **kw)


@pytest.fixture
async def app_ctx(db: Settings) -> ServeContext:
    return ServeContext(settings=db, bus=EventBus(), sessions=RecordingControl())


@pytest.fixture
async def anon(app_ctx: ServeContext) -> AsyncIterator[Browser]:
    app = create_app(app_ctx)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield Browser(c)


@pytest.fixture
async def web(anon: Browser) -> Browser:
    await admin_auth.set_password(PASSWORD)
    r = await anon.post("/login", {"password": PASSWORD, "next": "/users"})
    assert r.status_code == 303 and r.headers["location"] == "/users"
    return anon


def flash_text(html: str) -> str:
    return " ".join(re.findall(r'class="flash [a-z]+"[^>]*>([^<]*)<', html))


# --- login & guards -------------------------------------------------------------------


async def test_pages_redirect_to_login_without_session(anon: Browser) -> None:
    for path in ["/", "/config", "/users", "/users/1001", "/costs", "/supervision",
                 "/supervision/stream", "/costs/export.csv"]:
        r = await anon.client.get(path)
        assert r.status_code in (302, 303), path
        assert r.headers["location"].startswith("/login"), path
    assert (await anon.client.get("/schema")).status_code == 401
    assert (await anon.client.get("/metrics")).status_code == 401
    assert (await anon.client.get("/static/style.css")).status_code == 200
    assert (await anon.client.get("/static/htmx.min.js")).status_code == 200
    assert (await anon.client.get("/login")).status_code == 200
    r = await anon.client.get("/users?q=10")
    assert r.headers["location"] == "/login?next=/users?q=10"


async def test_first_run_sets_the_password(anon: Browser) -> None:
    r = await anon.get("/login")
    assert "set the admin password" in r.text
    r = await anon.post("/login", {"password": "short", "confirm": "short"})
    assert r.status_code == 400 and "at least 8" in r.text
    r = await anon.post("/login", {"password": PASSWORD, "confirm": "other thing"})
    assert r.status_code == 400 and "differ" in r.text
    assert not await admin_auth.has_password()
    r = await anon.post("/login", {"password": PASSWORD, "confirm": PASSWORD})
    assert r.status_code == 303 and r.headers["location"] == "/config"
    assert await admin_auth.check_password(PASSWORD)
    assert (await anon.get("/config")).status_code == 200


async def test_wrong_password_and_logout(anon: Browser) -> None:
    await admin_auth.set_password(PASSWORD)
    r = await anon.post("/login", {"password": "wrong password"})
    assert r.status_code == 401 and "Wrong password" in r.text
    assert (await anon.client.get("/users")).status_code == 303
    r = await anon.post("/login", {"password": PASSWORD, "next": "https://evil.example/"})
    assert r.headers["location"] == "/users"
    assert (await anon.get("/users")).status_code == 200
    r = await anon.post("/logout")
    assert r.status_code == 303
    assert (await anon.client.get("/users")).status_code == 303


async def test_password_change_elsewhere_ends_sessions(web: Browser) -> None:
    assert (await web.get("/users")).status_code == 200
    await admin_auth.set_password("another password")  # e.g. `ocs admin set-password`
    assert (await web.client.get("/users")).status_code == 303


async def test_forms_need_the_csrf_token(web: Browser) -> None:
    r = await web.client.post("/users", data={"number": "1001"})
    assert r.status_code == 403
    r = await web.client.post("/users", data={"number": "1001", "_csrf_token": "forged"})
    assert r.status_code == 403
    assert await Account.all().count() == 0


# --- config ---------------------------------------------------------------------------


async def test_config_page_shows_and_saves_parameters(web: Browser) -> None:
    r = await web.get("/config")
    for label in ["Web port", "Admin password", "Default media language", "SVI DID",
                  "Switch address", "Switch port", "Time zone", "Default calling address",
                  "Default calling forced", "Service log", "Columns separator", "Currency",
                  "Unit price"]:
        assert label in r.text, label
    assert 'value="6000"' in r.text and 'value="0.0001"' in r.text
    form = {"default_language": "EN", "ivr_access_number": "6001", "switch_address": "10.0.0.2",
            "switch_port": "15750", "switch_timeout": "3", "timezone": "Europe/Paris",
            "default_calling_address": "gw.example:5060", "default_calling_forced": "on",
            "csv_separator": ";", "currency": "Euros", "currency_code": "978",
            "unit_price": "0,0002", "billing_schedule": "none", "default_initial_block": "1",
            "default_increment": "1", "default_grant": "60", "max_grant": "3600",
            "validity_time": "600", "low_credit_threshold": "10000"}
    r = await web.post("/config", form)
    assert r.status_code == 303
    r = await web.get("/config")
    assert "Parameters saved" in flash_text(r.text)
    assert 'value="6001"' in r.text and 'value="0.0002"' in r.text
    ops = await load_operator_settings()
    assert ops.service_log is False and ops.default_calling_forced is True
    assert ops.unit_price == Decimal("0.0002") and ops.csv_separator == ";"


async def test_config_rejects_bad_values_and_saves_nothing(web: Browser) -> None:
    r = await web.post("/config", {"ivr_access_number": "60a0", "currency": "GBP"})
    assert r.status_code == 422 and "digits" in r.text
    assert 'value="GBP"' in r.text  # the operator's input is kept
    assert not await Setting.filter(key="currency").exists()


async def test_config_partial_form_leaves_unshown_checkboxes_alone(web: Browser) -> None:
    """An unticked box is absent from a form: it means "off" only when the request carried
    the box's section; a partial post (a script, a password change) changes no box."""
    r = await web.post("/config", {"currency": "Dollars"})
    assert r.status_code == 303
    ops = await load_operator_settings()
    assert (ops.currency, ops.service_log, ops.ivr_one_step_access, ops.ivr_another_call) == (
        "Dollars", True, True, True)
    r = await web.post("/config", {"ivr_warning_seconds": "10", "service_log": "on"})
    assert r.status_code == 303
    ops = await load_operator_settings()
    assert ops.service_log is True and ops.ivr_warning_seconds == 10
    assert (ops.ivr_one_step_access, ops.ivr_another_call) == (False, False)  # IVR section sent


async def test_config_checkbox_sections_match_the_page(web: Browser) -> None:
    from api.routes_pages import BOOL_SECTIONS
    from ocs.settings_store import OperatorSettings

    page = (await web.get("/config")).text
    bools = {k for k, v in OperatorSettings().as_json().items() if isinstance(v, bool)}
    assert set(BOOL_SECTIONS) == bools
    for box, section in BOOL_SECTIONS.items():
        fieldset = page[:page.index(f'name="{box}"')].rsplit("<fieldset", 1)[1]
        fieldset += page[page.index(f'name="{box}"'):].split("</fieldset>", 1)[0]
        for name in section:
            assert f'name="{name}"' in fieldset, (box, name)


async def test_config_changes_the_admin_password(web: Browser) -> None:
    r = await web.post("/config", {"new_password": "new password 1", "confirm_password": "x"})
    assert r.status_code == 422
    r = await web.post("/config", {"new_password": "new password 1",
                                   "confirm_password": "new password 1"})
    assert r.status_code == 303
    assert await admin_auth.check_password("new password 1")
    assert (await web.get("/users")).status_code == 200  # this session stays valid


# --- users ----------------------------------------------------------------------------


async def test_create_user_credit_dids_and_statement(web: Browser) -> None:
    r = await web.post("/users", {"number": "1001", "name": "Alice", "pin": "4321",
                                  "language": "FR", "caller_ids": "0123456789\n+33 6 11 22 33 44"})
    assert r.status_code == 303 and r.headers["location"] == "/users/1001"
    account = await Account.get(number="1001")
    assert account.pin_index

    r = await web.post("/users/1001/credit", {"amount": "25", "unit": "money"})
    assert r.status_code == 303
    r = await web.post("/users/1001/credit", {"amount": "1000", "unit": "units", "note": "promo"})
    r = await web.post("/users/1001/credit", {"amount": "0.00001", "unit": "money"})
    # refused beside the amount field, the form kept as typed (money stays selected)
    assert r.status_code == 422
    assert 'id="err-credit-amount"' in r.text and "Credit refused" in r.text
    assert 'value="0.00001"' in r.text and '<option value="money" selected>' in r.text
    assert (await ledger.balance(account.id)).balance == 251000

    r = await web.post("/users/1001/dids", {"did": "0561500001", "forward_to": "0141587070"})
    assert r.status_code == 303
    did = await DidMapping.get(account_id=account.id)
    r = await web.post(f"/users/1001/dids/{did.id}", {"did": "0561500001",
                                                      "forward_to": "0141587075"})
    assert (await DidMapping.get(id=did.id)).forward_to == "0141587075"
    r = await web.post("/users/1001/dids", {"did": "0561500001", "forward_to": "1"})
    r = await web.get("/users/1001")
    assert "already mapped" in flash_text(r.text)

    page = (await web.get("/users/1001")).text
    assert "0141587075" in page and "33611223344" in page
    assert "CREDIT" in page and "+250000" in page and "25,00" in page
    assert "Total" in page and "+251000" in page and "25,10" in page
    assert "promo" in page

    r = await web.post(f"/users/1001/dids/{did.id}/delete")
    assert r.status_code == 303
    assert await DidMapping.all().count() == 0


async def test_user_form_errors(web: Browser) -> None:
    r = await web.post("/users", {"number": "abc", "name": "X"})
    assert r.status_code == 422 and "1 to 32 digits" in r.text
    await web.post("/users", {"number": "1001", "pin": "4321"})
    r = await web.post("/users", {"number": "1002", "pin": "4321"})
    assert r.status_code == 422 and "PIN is already in use" in r.text
    r = await web.post("/users/1001", {"name": "Alice", "language": "FR", "status": "active",
                                       "caller_ids": "nope"})
    assert r.status_code == 422
    assert await Account.all().count() == 1
    assert (await web.get("/users/9999")).status_code == 404


async def test_edit_user(web: Browser) -> None:
    await web.post("/users", {"number": "1001", "name": "Alice"})
    r = await web.post("/users/1001", {"name": "Alice B", "language": "EN",
                                       "status": "blocked", "caller_ids": "0600000000",
                                       "pin": ""})
    assert r.status_code == 303
    account = await Account.get(number="1001")
    assert account.name == "Alice B" and account.language == "EN"
    assert account.status.value == "blocked"


async def test_users_list_search_and_paging(web: Browser) -> None:
    for n in range(120):
        await Account.create(number=f"{2000 + n}", name=f"Customer {n}")
    r = await web.get("/users")
    assert "1–50 of 120 users" in r.text and "Page 1 / 3" in r.text
    r = await web.get("/users?page=3")
    assert "101–120 of 120" in r.text
    r = await web.get("/users?q=2011")
    assert "1–1 of 1 users" in r.text and "Customer 11" in r.text
    r = await web.get("/users?q=zzz")
    assert "No user matches" in r.text


# --- costs ----------------------------------------------------------------------------


async def test_costs_add_edit_delete(web: Browser) -> None:
    r = await web.post("/costs", {"prefix": "DEFAULT", "h1_rate": "200", "h2_begin": "0",
                                  "h2_end": "0", "h2_rate": "0", "initial_block": "1",
                                  "increment": "1", "connection_charge": "0"})
    assert r.status_code == 303
    await web.post("/costs", {"prefix": "38", "h1_rate": "180"})
    r = await web.get("/costs")
    assert "1,2000 Euros/min" in r.text and "1,0800 Euros/min" in r.text
    r = await web.post("/costs", {"prefix": "38", "h1_rate": "1"})
    assert r.status_code == 422 and "already exists" in r.text
    r = await web.post("/costs", {"prefix": "3x", "h1_rate": "1"})
    assert r.status_code == 422
    row = await Tariff.get(prefix="38")
    r = await web.post(f"/costs/{row.id}", {"prefix": "38", "h1_rate": "190", "barred": "on"})
    assert r.status_code == 303
    row = await Tariff.get(prefix="38")
    assert row.h1_rate == 190 and row.barred
    assert (await web.get(f"/costs/{row.id}")).status_code == 200
    r = await web.post(f"/costs/{row.id}/delete")
    assert not await Tariff.filter(prefix="38").exists()


async def test_costs_csv_export_and_import(web: Browser) -> None:
    await web.get("/costs")
    files = {"file": ("t.csv", b"prefix:h1_rate\nDEFAULT:200\n42:250\n", "text/csv")}
    r = await web.client.post("/costs/import", data={"_csrf_token": web.token}, files=files)
    assert r.status_code == 303, r.text
    assert await Tariff.all().count() == 2
    r = await web.get("/costs/export.csv")
    assert r.headers["content-disposition"].startswith("attachment")
    assert r.text.splitlines()[0].startswith("prefix:h1_rate")
    bad = {"file": ("t.csv", b"prefix:h1_rate\n43:1\n44:x\n", "text/csv")}
    r = await web.client.post("/costs/import", data={"_csrf_token": web.token}, files=bad)
    assert r.status_code == 422 and "Nothing imported" in r.text and "line 3" in r.text
    assert not await Tariff.filter(prefix="43").exists()


# --- supervision ----------------------------------------------------------------------


async def _live_call(number: str = "1002") -> CreditSession:
    account = await Account.create(number=number, name=number)
    await ledger.credit(account.id, 250000, actor="test")
    return await CreditSession.create(
        session_id=f"gw;{number};1", account=account, calling="5172", called="3000", rate=200,
        started_at=datetime.now(UTC), used_seconds=10, cost=2000,
    )


async def test_supervision_page_and_kill(web: Browser, app_ctx: ServeContext) -> None:
    r = await web.get("/supervision")
    assert "No call in progress" in r.text
    await _live_call()
    r = await web.get("/supervision")
    assert "5172" in r.text and "3000" in r.text and "Connected" in r.text
    r = await web.post("/supervision/kill", {"session_id": "gw;1002;1"},
                       headers={"HX-Request": "true"})
    assert r.status_code == 200 and "Result-Code 2001" in r.text
    assert isinstance(app_ctx.sessions, RecordingControl)
    assert app_ctx.sessions.killed == ["gw;1002;1"]


async def test_supervision_kill_without_control(db: Settings) -> None:
    await admin_auth.set_password(PASSWORD)
    app = create_app(ServeContext(settings=db, bus=EventBus(), sessions=None))
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        b = Browser(c)
        await b.post("/login", {"password": PASSWORD})
        r = await b.get("/supervision")
        assert "cannot be cut" in r.text
        r = await b.post("/supervision/kill", {"session_id": "x"})
        r = await b.get("/supervision")
        assert "not available" in flash_text(r.text)


async def test_supervision_rows_fragment(web: Browser) -> None:
    await _live_call()
    r = await web.get("/supervision/rows")
    assert 'data-session="gw;1002;1"' in r.text and 'data-rate="200"' in r.text


async def test_metrics_with_session(web: Browser) -> None:
    r = await web.get("/metrics")
    assert r.status_code == 200 and "ocs_live_sessions" in r.text


async def test_ledger_statement_matches_total(web: Browser) -> None:
    await web.post("/users", {"number": "1001"})
    account = await Account.get(number="1001")
    await ledger.credit(account.id, 203800, actor="test")
    await ledger.adjust(account.id, -600, actor="test", note="call")
    r = await web.get("/users/1001")
    assert "+203200" in r.text and "20,32" in r.text
    assert await LedgerEntry.filter(account_id=account.id).count() == 2


async def test_served_by_uvicorn_sse_pushes_rows_on_events(app_ctx: ServeContext) -> None:
    """start_web() on a real socket; the SSE stream sends rows now and on each bus event."""
    await admin_auth.set_password(PASSWORD)
    part = await start_web(app_ctx)
    try:
        base = f"http://127.0.0.1:{part.port}"  # type: ignore[attr-defined]
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            assert (await c.get("/healthz")).text == "ok"
            b = Browser(c)
            r = await b.post("/login", {"password": PASSWORD})
            assert r.status_code == 303
            async with c.stream("GET", "/supervision/stream") as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                lines = r.aiter_lines()

                async def next_event() -> str:
                    data: list[str] = []
                    async for line in lines:
                        if line.startswith("data: "):
                            data.append(line[6:])
                        elif line == "" and data:
                            return "\n".join(data)
                    return ""

                first = await asyncio.wait_for(next_event(), 5)
                assert "No call in progress" in first
                await _live_call()
                app_ctx.bus.publish("session.start", session_id="gw;1002;1", account="1002")
                second = await asyncio.wait_for(next_event(), 5)
                assert 'data-session="gw;1002;1"' in second
                await CreditSession.filter(session_id="gw;1002;1").update(state="closed")
                app_ctx.bus.publish("session.end", session_id="gw;1002;1", account="1002")
                third = await asyncio.wait_for(next_event(), 5)
                assert "No call in progress" in third
                # a call held by another OCS process publishes nothing on this bus: the
                # stream still shows it, and its end, within a poll (well before a resync)
                other = await _live_call("1003")
                await CreditSession.filter(id=other.id).update(
                    expires_at=datetime.now(UTC) + timedelta(seconds=60))
                fourth = await asyncio.wait_for(next_event(), 3)
                assert 'data-session="gw;1003;1"' in fourth
                await CreditSession.filter(id=other.id).update(state="closed", expires_at=None)
                fifth = await asyncio.wait_for(next_event(), 3)
                assert "No call in progress" in fifth
                # stopping the server with this stream still open ends it promptly
                started = asyncio.get_running_loop().time()
                await asyncio.wait_for(part.stop(), 10)
                assert asyncio.get_running_loop().time() - started < 5
    finally:
        await asyncio.wait_for(part.stop(), 10)
