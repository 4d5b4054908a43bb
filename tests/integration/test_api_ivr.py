"""IVR operator tools over HTTP: the user page's IVR card (anti-spoofing flag, unlock), the
CDR call detail with the service log, the IVR settings on the Config page, and the REST API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from api.app import create_app
from ivr_bridge import lockout_store
from ivr_bridge.lockout import LockoutPolicy
from ivr_bridge.servicelog_store import DbLogSink, LogEntry
from ocs import accounts, apikeys, ledger
from ocs.config import Settings
from ocs.events import EventBus
from ocs.models import Account
from ocs.runtime import ServeContext
from ocs.settings_store import load_operator_settings
from tests.calls import charged_call
from tests.integration.test_api_pages import Browser, RecordingControl, anon, app_ctx, web

__all__ = ["anon", "app_ctx", "web"]  # fixtures shared with the page tests

POLICY = LockoutPolicy(max_failures=2)


async def lock(caller: str) -> None:
    for _ in range(2):
        await lockout_store.record_failure(caller, "pin", POLICY)


@pytest.fixture
async def user(db: Settings) -> Account:
    return await accounts.create_account("1001", pin="1234", caller_ids=["5173"])


async def test_user_page_loads_the_ivr_card_and_unlocks_a_locked_caller(web: Browser, user):
    await lock("5173")
    page = await web.get("/users/1001")
    assert 'hx-get="/users/1001/ivr"' in page.text
    card = await web.get("/users/1001/ivr")
    assert card.status_code == 200
    assert "5173" in card.text and "Unlock" in card.text
    r = await web.post("/users/1001/ivr/unlock", {"caller": "5173"})
    assert r.status_code == 303
    assert not (await lockout_store.status("5173", POLICY)).locked
    page = await web.get(r.headers["location"].split("#")[0])
    assert "Caller 5173 unlocked" in page.text
    card = await web.get("/users/1001/ivr")
    assert "None of this user's caller IDs is locked out" in card.text


async def test_unlock_any_number_from_the_card(web: Browser, user):
    await lock("0699887766")
    r = await web.post("/users/1001/ivr/unlock", {"caller": "0699887766"})
    assert r.status_code == 303
    assert await lockout_store.locks() == []


async def test_card_sets_the_anti_spoofing_flag(web: Browser, user):
    r = await web.post("/users/1001/ivr", {"ivr_pin_required": "on"})
    assert r.status_code == 303
    assert (await Account.get(number="1001")).ivr_pin_required is True
    await web.post("/users/1001/ivr", {})
    assert (await Account.get(number="1001")).ivr_pin_required is False


async def test_unlock_needs_the_csrf_token(web: Browser, user):
    r = await web.client.post("/users/1001/ivr/unlock", data={"caller": "5173"})
    assert r.status_code == 403


async def test_cdr_detail_shows_the_service_log(web: Browser, user):
    await ledger.credit(user.id, 6000, actor="test")
    row = await charged_call(
        "1001", "0141587070", 30, 6000, session_id="s-1", call_id="call-abc", calling="5173",
        termination_cause=6,  # DIAMETER_AUTH_EXPIRED: the IVR cut the call, out of credit
    )  # fmt: skip
    now = datetime.now(UTC)
    await DbLogSink().store([
        LogEntry("call-abc", 1, now, {"step": 1, "event": {"type": "offered"},
                                      "actions": [{"do": "lookup_pin", "pin": "****"}],
                                      "state": "lookup_pin"}),
        LogEntry("call-abc", 2, now, {"step": 2, "event": {"type": "timer", "name": "cutoff"},
                                      "actions": [{"do": "ccr_terminate", "used": 30,
                                                   "termination_cause": 6}],
                                      "state": "closing"}),
    ])  # fmt: skip
    listing = await web.get("/cdrs")
    assert f'href="/cdrs/{row.id}"' in listing.text
    page = await web.get(f"/cdrs/{row.id}")
    assert page.status_code == 200
    assert "CREDIT_EXHAUSTED" in page.text
    assert "lookup_pin" in page.text and "****" in page.text
    assert "termination_cause=</span>6" in page.text
    assert (await web.get("/cdrs/999999")).status_code == 404


async def test_config_page_edits_the_ivr_settings(web: Browser):
    page = await web.get("/config")
    assert 'id="ivr-settings"' in page.text
    ops = (await load_operator_settings()).as_json()
    form = {k: ("on" if v is True else v) for k, v in ops.items() if v is not False}
    form.update({"ivr_warning_seconds": "15", "ivr_warning_mode": "tone",
                 "ivr_no_answer_timeout": "20"})  # fmt: skip
    form.pop("ivr_one_step_access")  # unticked
    r = await web.post("/config", form)
    assert r.status_code == 303, r.text
    ops2 = await load_operator_settings()
    assert (ops2.ivr_warning_seconds, ops2.ivr_warning_mode) == (15, "tone")
    assert ops2.ivr_no_answer_timeout == 20
    assert ops2.ivr_one_step_access is False
    form["ivr_warning_mode"] = "loud"
    r = await web.post("/config", form)
    assert r.status_code == 422 and "must be one of tone, prompt, both" in r.text.lower()


@pytest.fixture
async def api(db: Settings) -> AsyncIterator[httpx.AsyncClient]:
    key = await apikeys.create_key("tests")
    app = create_app(ServeContext(settings=db, bus=EventBus(), sessions=RecordingControl()))
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        c.headers["X-API-Key"] = key.key
        yield c


async def test_rest_lockouts_unlock_and_account_flag(api: httpx.AsyncClient, user):
    await lock("5173")
    r = await api.get("/api/v1/ivr/lockouts")
    assert r.status_code == 200
    assert [x["caller"] for x in r.json()] == ["5173"]
    assert (await api.delete("/api/v1/ivr/lockouts/5173")).status_code == 204
    assert (await api.delete("/api/v1/ivr/lockouts/5173")).status_code == 404
    assert (await api.get("/api/v1/ivr/lockouts")).json() == []
    r = await api.put("/api/v1/ivr/accounts/1001", json={"pin_required": True})
    assert r.json() == {"number": "1001", "pin_required": True}
    assert (await api.put("/api/v1/ivr/accounts/9", json={"pin_required": True})).status_code == 404
    assert (await api.put("/api/v1/ivr/accounts/1001", json={})).status_code == 400


async def test_rest_call_log(api: httpx.AsyncClient):
    await DbLogSink().store(
        [LogEntry("c-1", 1, datetime.now(UTC), {"step": 1, "event": {"type": "offered"},
                                                "actions": [], "state": "access_caller"})]
    )  # fmt: skip
    r = await api.get("/api/v1/ivr/calls/c-1/log")
    assert r.status_code == 200
    assert r.json()[0]["event"] == {"type": "offered"}
    assert (await api.get("/api/v1/ivr/calls/nope/log")).status_code == 404
