"""Operators, roles, login session rotation and the audit log in real headless Chromium.

Also watches every page for Content-Security-Policy violations: the policy forbids inline
script and style, and a page that relied on one would silently lose it.
Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from api.server import start_web
from ocs import accounts, audit, operators
from ocs.config import Settings
from ocs.events import EventBus
from ocs.models import AuditEntry, LedgerEntry
from ocs.runtime import ServeContext
from tests.e2e.web_support import CHROMIUM_ARGS, require_chromium, screenshot_path

pytestmark = pytest.mark.browser
ADMIN_PASSWORD = "boss password 1"
OPERATOR_PASSWORD = "olga password 1"
READONLY_PASSWORD = "rita password 1"


class RecordingControl:
    def __init__(self) -> None:
        self.killed: list[str] = []

    async def kill(self, session_id: str) -> int:
        self.killed.append(session_id)
        return 2001

    async def reauthorise(self, session_id: str) -> int:
        return 2001


@pytest.fixture
async def served(db: Settings) -> AsyncIterator[str]:
    await operators.create("boss", ADMIN_PASSWORD, "admin")
    await accounts.create_account("1001", name="Alice")
    part = await start_web(ServeContext(settings=db, bus=EventBus(), sessions=RecordingControl()))
    try:
        yield f"http://127.0.0.1:{part.port}"  # type: ignore[attr-defined]
    finally:
        await part.stop()


class Chromium:
    """One browser; a fresh context (cookie jar) per operator; CSP violations collected."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.csp_violations: list[str] = []

    async def context(self) -> Any:
        ctx = await self.browser.new_context(viewport={"width": 1360, "height": 900})
        return ctx

    async def page(self, ctx: Any) -> Any:
        pg = await ctx.new_page()
        pg.set_default_timeout(10000)
        pg.on("dialog", lambda d: asyncio.ensure_future(d.accept()))

        def on_console(msg: Any) -> None:
            if "Content Security Policy" in msg.text or "Content-Security-Policy" in msg.text:
                self.csp_violations.append(f"{pg.url}: {msg.text}")

        pg.on("console", on_console)
        return pg


@pytest.fixture
async def chromium() -> AsyncIterator[Chromium]:
    executable = require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield Chromium(browser)
        finally:
            await browser.close()


async def login(pg: Any, base: str, name: str, password: str) -> None:
    await pg.goto(f"{base}/login")
    await pg.fill("form[action='/login'] input[name=username]", name)
    await pg.fill("form[action='/login'] input[name=password]", password)
    await pg.click("form[action='/login'] button[type=submit]")
    await pg.wait_for_url(f"{base}/users")


async def session_cookie(ctx: Any) -> str | None:
    for cookie in await ctx.cookies():
        if cookie["name"] == "ocs_session":
            return str(cookie["value"])
    return None


async def test_login_gives_a_new_session_id(served: str, chromium: Chromium) -> None:
    from playwright.async_api import expect

    host = urlsplit(served).hostname
    ctx = await chromium.context()
    planted = "f" * 64
    await ctx.add_cookies([{"name": "ocs_session", "value": planted, "domain": host,
                            "path": "/"}])
    pg = await chromium.page(ctx)
    await pg.goto(f"{served}/users")
    assert "/login" in pg.url
    await pg.screenshot(path=screenshot_path("30-login-with-name"))
    await login(pg, served, "boss", ADMIN_PASSWORD)
    first = await session_cookie(ctx)
    assert first is not None and first != planted
    await expect(pg.locator(".nav .whoami")).to_have_text("boss · admin")
    # Logging in again in the same browser gives yet another id; the old one is dead.
    await login(pg, served, "boss", ADMIN_PASSWORD)
    second = await session_cookie(ctx)
    assert second not in (None, first)
    other = await chromium.context()
    await other.add_cookies([{"name": "ocs_session", "value": first, "domain": host,
                              "path": "/"}])
    thief = await chromium.page(other)
    await thief.goto(f"{served}/users")
    assert "/login" in thief.url
    # Logging out forgets the session on the server too.
    await pg.click("button:has-text('Logout')")
    await pg.wait_for_url(f"{served}/login")
    await other.clear_cookies()
    await other.add_cookies([{"name": "ocs_session", "value": second, "domain": host,
                              "path": "/"}])
    await thief.goto(f"{served}/users")
    assert "/login" in thief.url
    assert chromium.csp_violations == []


async def test_roles_in_the_browser(served: str, chromium: Chromium) -> None:
    from playwright.async_api import expect

    # The admin adds two operators from the Operators page.
    boss_ctx = await chromium.context()
    boss = await chromium.page(boss_ctx)
    await login(boss, served, "boss", ADMIN_PASSWORD)
    await boss.click("nav >> text=Operators")
    await boss.wait_for_url(f"{served}/operators")
    for name, role, password in [("olga", "operator", OPERATOR_PASSWORD),
                                 ("rita", "readonly", READONLY_PASSWORD)]:
        form = boss.locator("#add-operator")
        await form.locator("input[name=name]").fill(name)
        await form.locator("select[name=role]").select_option(role)
        await form.locator("input[name=password]").fill(password)
        await form.locator("input[name=confirm]").fill(password)
        await form.locator("button[type=submit]").click()
        await expect(boss.locator(".flash.ok")).to_contain_text(f"Operator {name} ({role})")
    await expect(boss.locator("#operators tbody tr")).to_have_count(3)
    await boss.screenshot(path=screenshot_path("31-operators"), full_page=True)

    # The operator credits a user: the statement says who did it.
    olga_ctx = await chromium.context()
    olga = await chromium.page(olga_ctx)
    await login(olga, served, "olga", OPERATOR_PASSWORD)
    await expect(olga.locator("nav >> text=Operators")).to_have_count(0)
    await expect(olga.locator("nav >> text=Audit")).to_be_visible()
    await olga.goto(f"{served}/users/1001")
    credit = olga.locator("#credit")
    await credit.locator("input[name=amount]").fill("2500")
    units = credit.locator("select[name=unit]")
    if await units.count():
        await units.select_option("units")
    await credit.locator("button[type=submit]").click()
    await expect(olga.locator(".flash.ok")).to_contain_text("Added 2500 units")
    statement_row = olga.locator("table tr", has_text="CREDIT").last
    await expect(statement_row).to_contain_text("olga")
    await olga.goto(f"{served}/costs")
    await expect(olga.locator("#add-tariff")).to_be_hidden()
    await olga.goto(f"{served}/config")
    await expect(olga.locator(".config-form .actions button")).to_be_hidden()
    await olga.goto(f"{served}/operators")
    await expect(olga.locator("main")).to_contain_text("needs the admin role")
    entry = await LedgerEntry.get()
    assert entry.actor == "olga" and entry.amount == 2500

    # The read-only operator sees the same user but no change control at all.
    rita_ctx = await chromium.context()
    rita = await chromium.page(rita_ctx)
    await login(rita, served, "rita", READONLY_PASSWORD)
    await rita.goto(f"{served}/users/1001")
    await expect(rita.locator("main")).to_contain_text("olga")
    await expect(rita.locator("#credit")).to_be_hidden()
    await expect(rita.locator("#profile #f-name")).to_have_value("Alice")  # shown, not editable
    await expect(rita.locator("#profile button[type=submit]")).to_be_hidden()
    await rita.screenshot(path=screenshot_path("32-readonly-user"), full_page=True)
    # Forcing the form anyway: the server refuses it.
    status = await rita.evaluate("""async () => {
        const token = document.querySelector('input[name=_csrf_token]').value;
        const body = new URLSearchParams({_csrf_token: token, amount: '9', unit: 'units'});
        const r = await fetch('/users/1001/credit', {method: 'POST', body});
        return r.status;
    }""")
    assert status == 403
    assert await LedgerEntry.all().count() == 1

    # The admin makes rita an operator: her next page shows the controls.
    row = boss.locator("#operators tr[data-operator=rita]")
    await row.locator("select[name=role]").select_option("operator")
    await row.locator("button:has-text('Save')").click()
    await expect(boss.locator(".flash.ok")).to_contain_text("rita is now operator")
    await rita.reload()
    await expect(rita.locator("#credit")).to_be_visible()

    # Disabling olga ends her session at once.
    row = boss.locator("#operators tr[data-operator=olga]")
    await row.locator("button:has-text('Disable')").click()
    await expect(boss.locator(".flash.ok")).to_contain_text("olga is disabled")
    await olga.goto(f"{served}/users")
    assert "/login" in olga.url
    assert chromium.csp_violations == []


async def test_audit_page_filters_and_pages(served: str, chromium: Chromium) -> None:
    from playwright.async_api import expect

    for i in range(60):
        await audit.record("olga" if i % 3 else "boss", "credit.add" if i % 2 else "did.set",
                           f"account {2000 + i}", {"units": i})
    ctx = await chromium.context()
    pg = await chromium.page(ctx)
    await login(pg, served, "boss", ADMIN_PASSWORD)
    await pg.click("nav >> text=Audit")
    await pg.wait_for_url(f"{served}/audit")
    rows = pg.locator("#audit-table tbody tr")
    await expect(rows).to_have_count(50)
    await expect(rows.first).to_contain_text("auth.login")  # the newest: this very login
    await pg.screenshot(path=screenshot_path("33-audit"), full_page=True)
    await pg.click("text=Older →")
    await expect(rows).to_have_count(11)
    await expect(pg.locator("text=← Newer")).to_be_visible()

    await pg.goto(f"{served}/audit")
    await pg.select_option("select[name=actor]", "olga")
    await pg.select_option("select[name=action]", "credit.add")
    await pg.click("#audit-filter button[type=submit]")
    await pg.wait_for_url("**/audit?*")
    expected = await AuditEntry.filter(actor="olga", action="credit.add").count()
    await expect(rows).to_have_count(expected)
    for text in await rows.locator("td:nth-child(2)").all_inner_texts():
        assert text == "olga"
    await pg.fill("input[name=target]", "account 2005")
    await pg.click("#audit-filter button[type=submit]")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("units=5")
    assert chromium.csp_violations == []
