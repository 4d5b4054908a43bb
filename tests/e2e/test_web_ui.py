"""The operator UI in real headless Chromium: the brochure's screens, end to end.

Log in (first run sets the password), create a user with PIN and caller ID, add credit,
map a DID, add tariffs, watch a live call appear on Supervision and disappear, cut a call.
Screenshots of every screen go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.server import start_web
from ocs import ledger
from ocs.config import Settings
from ocs.events import EventBus
from ocs.models import Account, CallerId, CreditSession, DidMapping, Tariff
from ocs.runtime import ServeContext
from tests.e2e.web_support import CHROMIUM_ARGS, require_chromium, screenshot_path

pytestmark = pytest.mark.browser
PASSWORD = "operator secret"


class RecordingControl:
    """Stands in for the OCS's SessionControl: records kills (the OCS would send an ASR)."""

    def __init__(self) -> None:
        self.killed: list[str] = []

    async def kill(self, session_id: str) -> int:
        self.killed.append(session_id)
        return 2001

    async def reauthorise(self, session_id: str) -> int:
        return 2001


@pytest.fixture
async def served(db: Settings) -> AsyncIterator[tuple[str, ServeContext]]:
    ctx = ServeContext(settings=db, bus=EventBus(), sessions=RecordingControl())
    part = await start_web(ctx)
    try:
        yield f"http://127.0.0.1:{part.port}", ctx  # type: ignore[attr-defined]
    finally:
        await part.stop()


@pytest.fixture
async def page(served: tuple[str, ServeContext]) -> AsyncIterator[Any]:
    executable = require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = await browser.new_context(viewport={"width": 1360, "height": 900})
        pg = await context.new_page()
        pg.set_default_timeout(10000)
        pg.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
        try:
            yield pg
        finally:
            await browser.close()


async def _login(pg: Any, base: str) -> None:
    await pg.goto(f"{base}/users")
    assert "/login" in pg.url
    await pg.screenshot(path=screenshot_path("01-first-run-login"))
    await pg.fill("input[name=password]", PASSWORD)
    await pg.fill("input[name=confirm]", PASSWORD)
    await pg.click("button[type=submit]")
    await pg.wait_for_url(f"{base}/config")


async def test_operator_journey(page: Any, served: tuple[str, ServeContext]) -> None:
    from playwright.async_api import expect

    base, ctx = served
    pg = page
    await _login(pg, base)

    # Config: every brochure parameter, validated, saved
    await expect(pg.locator("#f-ivr_access_number")).to_have_value("6000")
    await pg.screenshot(path=screenshot_path("02-config"), full_page=True)
    await pg.fill("#f-ivr_access_number", "60x0")
    await pg.click("form.config-form button[type=submit]")
    await expect(pg.locator("#err-ivr_access_number")).to_contain_text("digits")
    await pg.fill("#f-ivr_access_number", "6000")
    await pg.click("form.config-form button[type=submit]")
    await expect(pg.locator(".flash.ok")).to_contain_text("Parameters saved")

    # Costs: the brochure's table
    await pg.click("nav >> text=Costs")
    for prefix, rate in [("DEFAULT", "200"), ("38", "180"), ("42", "250")]:
        await pg.fill("#t-prefix", prefix)
        await pg.fill("#t-h1_rate", rate)
        await pg.click("#add-tariff button[type=submit]")
        await expect(pg.locator(".flash.ok")).to_contain_text(f"Tariff {prefix} added")
    await pg.fill("#t-prefix", "33")
    await pg.fill("#t-h1_rate", "150")
    await pg.fill("#t-h2_begin", "20")
    await pg.fill("#t-h2_end", "8")
    await pg.fill("#t-h2_rate", "90")
    await pg.fill("#t-initial_block", "30")
    await pg.fill("#t-increment", "6")
    await pg.click("#add-tariff button[type=submit]")
    await expect(pg.locator("#tariffs")).to_contain_text("1,2000 Euros/min")
    await expect(pg.locator("#tariffs")).to_contain_text("1,5000 Euros/min")
    assert await Tariff.all().count() == 4
    await pg.screenshot(path=screenshot_path("03-costs"), full_page=True)

    # Users: create with PIN and caller ID
    await pg.click("nav >> text=Users")
    await pg.click("text=+ Add user")
    await pg.fill("#f-number", "1001")
    await pg.fill("#f-name", "Alice Martin")
    await pg.fill("#f-pin", "4321")
    await pg.fill("#f-caller_ids", "0123456789")
    await pg.click("button:has-text('Create user')")
    await pg.wait_for_url(f"{base}/users/1001")
    await expect(pg.locator(".flash.ok")).to_contain_text("User 1001 created")
    account = await Account.get(number="1001")
    assert account.pin_index and await CallerId.filter(account_id=account.id).count() == 1

    # add credit in money, then in units
    await pg.fill("#f-amount", "25")
    await pg.select_option("#credit select[name=unit]", "money")
    await pg.click("#credit button[type=submit]")
    await expect(pg.locator(".flash.ok")).to_contain_text("Added 250000 units")
    await pg.fill("#f-amount", "3000")
    await pg.select_option("#credit select[name=unit]", "units")  # money is the default
    await pg.click("#credit button[type=submit]")
    await expect(pg.locator("#balance-units")).to_have_text("253000")

    # DID mapping: add two, edit one, delete one
    for did, target in [("0561500001", "0141587070"), ("0561500002", "0141587075")]:
        await pg.fill("input[aria-label='New DID']", did)
        await pg.fill("input[aria-label='New forwarded number']", target)
        await pg.click("#dids tr.did-row-new button, #dids td.new button")
        await expect(pg.locator(".flash.ok")).to_contain_text(f"DID {did} now forwards")
    row = pg.locator("#dids form.did-form").nth(1)
    await row.locator("input[name=forward_to]").fill("0141587077")
    await row.locator("button").click()
    await expect(pg.locator(".flash.ok")).to_contain_text("0141587077")
    assert {d.forward_to for d in await DidMapping.all()} == {"0141587070", "0141587077"}
    await pg.locator("button[aria-label='Delete DID 0561500002']").click()
    await expect(pg.locator(".flash.ok")).to_contain_text("DID mapping deleted")
    await pg.fill("input[aria-label='New DID']", "0561500002")
    await pg.fill("input[aria-label='New forwarded number']", "0141587075")
    await pg.click("#dids td.new button")
    await expect(pg.locator("#statement")).to_contain_text("CREDIT")
    await expect(pg.locator("#statement tfoot")).to_contain_text("+253000")
    await expect(pg.locator("#statement tfoot")).to_contain_text("25,30")

    # a second customer and some history for a realistic list + statement
    bob = await Account.create(number="1002", name="Bob Durand")
    await ledger.credit(bob.id, 250000, actor="admin")
    await ledger.adjust(account.id, -600, actor="ocs", note="call 5173")
    await pg.reload()
    await pg.screenshot(path=screenshot_path("04-user-1001"), full_page=True)
    await pg.click("nav >> text=Users")
    await expect(pg.locator("#user-table")).to_contain_text("Bob Durand")
    await pg.fill("#user-search", "bob")
    await expect(pg.locator("#user-table tbody tr")).to_have_count(1)
    await pg.fill("#user-search", "")
    await expect(pg.locator("#user-table tbody tr")).to_have_count(2)
    await pg.screenshot(path=screenshot_path("05-users"), full_page=True)

    # Supervision: a call appears without reload, ticks, can be cut, disappears
    await pg.click("nav >> text=Supervision")
    await expect(pg.locator("#live-state")).to_have_attribute("data-state", "live")
    await expect(pg.locator("#live-rows")).to_contain_text("No call in progress")
    marker = await pg.evaluate("window.__marker = 1")  # survives only without a reload
    assert marker == 1
    now = datetime.now(UTC)
    await CreditSession.create(
        session_id="gw;5172;1", account=bob, calling="5172", called="3000", rate=200,
        started_at=now - timedelta(seconds=108), used_seconds=100, cost=0,
    )
    ctx.bus.publish("session.start", session_id="gw;5172;1", account="1002")
    await CreditSession.create(
        session_id="gw;5173;2", account=account, calling="5173", called="3000", rate=200,
        started_at=now - timedelta(seconds=45), used_seconds=40, cost=0,
    )
    ctx.bus.publish("session.start", session_id="gw;5173;2", account="1001")
    rows = pg.locator("#live-rows tr[data-session]")
    await expect(rows).to_have_count(2)
    first = rows.nth(0)
    await expect(first).to_contain_text("5172")
    await expect(first).to_contain_text("Connected")
    await expect(first).to_contain_text("1002")
    duration = first.locator("[data-f=duration]")
    seconds = int(await duration.inner_text())
    assert seconds >= 108
    await pg.wait_for_function(
        "s => parseInt(document.querySelector('#live-rows tr [data-f=duration]').textContent)"
        " > s", arg=seconds, timeout=5000,
    )
    consumption = int(await first.locator("[data-f=consumption]").inner_text())
    assert consumption >= 108 * 200
    assert await pg.evaluate("window.__marker") == 1
    await pg.screenshot(path=screenshot_path("06-supervision"), full_page=True)

    await first.locator("button:has-text('Cut')").click()
    await expect(pg.locator("#notice")).to_contain_text("Result-Code 2001")
    control = ctx.sessions
    assert isinstance(control, RecordingControl)
    assert control.killed == ["gw;5172;1"]
    # the OCS ends the session after the ASA: the row goes away by itself
    await CreditSession.filter(session_id="gw;5172;1").update(state="closed")
    ctx.bus.publish("session.end", session_id="gw;5172;1", account="1002", reason="killed")
    await expect(rows).to_have_count(1)
    await CreditSession.filter(session_id="gw;5173;2").update(state="closed")
    ctx.bus.publish("session.end", session_id="gw;5173;2", account="1001")
    await expect(pg.locator("#live-rows")).to_contain_text("No call in progress")
    assert await pg.evaluate("window.__marker") == 1

    # Logout
    await pg.click("nav button:has-text('Logout')")
    await pg.wait_for_url(f"{base}/login")
    await pg.goto(f"{base}/users")
    assert "/login" in pg.url
