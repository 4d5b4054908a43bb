"""Issue 10 in real headless Chromium: each UI defect reproduced, the 390 px layout, the API
docs offline, and the operator tools (adjust, refund, vouchers, cards, import, dashboard,
Users search). Screenshots go to test-artifacts/screenshots/ (ops-*.png)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from api.server import start_web
from ocs import accounts, ledger
from ocs.config import Settings
from ocs.events import EventBus
from ocs.models import Account, BillingRun, CreditSession, LedgerEntry, LedgerKind, Tariff
from ocs.runtime import ServeContext
from tests.calls import charged_call
from tests.e2e.web_support import CHROMIUM_ARGS, require_chromium, screenshot_path

pytestmark = pytest.mark.browser
PASSWORD = "operator secret"


class RecordingControl:
    async def kill(self, session_id: str) -> int:
        return 2001

    async def reauthorise(self, session_id: str) -> int:
        return 2001


@pytest.fixture
async def served(db: Settings) -> AsyncIterator[tuple[str, ServeContext]]:
    from ocs import admin_auth

    await admin_auth.set_password(PASSWORD)
    ctx = ServeContext(settings=db, bus=EventBus(), sessions=RecordingControl())
    part = await start_web(ctx)
    try:
        yield f"http://127.0.0.1:{part.port}", ctx  # type: ignore[attr-defined]
    finally:
        await part.stop()


async def _browser(pw: Any, width: int, height: int) -> tuple[Any, Any]:
    browser = await pw.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_ARGS)
    context = await browser.new_context(viewport={"width": width, "height": height},
                                        accept_downloads=True)
    return browser, context


async def _login(pg: Any, base: str) -> None:
    await pg.goto(f"{base}/login")
    await pg.fill("input[name=password]", PASSWORD)
    await pg.click("button[type=submit]")
    await pg.wait_for_url(lambda url: "/login" not in url)


@pytest.fixture
async def page(served: tuple[str, ServeContext]) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser, context = await _browser(pw, 1280, 900)
        pg = await context.new_page()
        pg.set_default_timeout(10000)
        try:
            await _login(pg, served[0])
            yield pg
        finally:
            await browser.close()


async def _customer(number: str = "1001", balance: int = 250_000, **kw: Any) -> Account:
    acc = await accounts.create_account(number, **kw)
    if balance:
        await ledger.credit(acc.id, balance, actor="test")
    return await Account.get(id=acc.id)


# --- defect 1: Supervision credit --------------------------------------------------------


async def test_supervision_credit_is_balance_less_consumption(
    page: Any, served: tuple[str, ServeContext]
) -> None:
    from playwright.async_api import expect

    base, ctx = served
    acc = await _customer()
    now = datetime.now(UTC)
    # 40 s reported (8000 units used so far, not yet debited), 45 s elapsed at 200 u/s
    await CreditSession.create(session_id="gw;1", account=acc, calling="5173", called="3000",
                               rate=200, started_at=now - timedelta(seconds=45),
                               used_seconds=40, cost=8_000)
    await page.goto(f"{base}/supervision")
    row = page.locator("#live-rows tr[data-session]")
    await expect(row).to_have_count(1)
    # every tick: credit + consumption == balance (it used to drift up by the cost)
    for _ in range(3):
        credit = int(await row.locator("[data-f=credit]").inner_text())
        consumption = int(await row.locator("[data-f=consumption]").inner_text())
        if credit + consumption == 250_000:
            break
        await asyncio.sleep(0.3)  # a tick landed between the two reads: read again
    assert credit + consumption == 250_000 and consumption >= 9_000
    # the server's refresh (SSE) gives the same figure as the ticking page
    await CreditSession.filter(session_id="gw;1").update(used_seconds=45, cost=9_000)
    ctx.bus.publish("session.update", session_id="gw;1", account="1001")
    await page.wait_for_function(
        "() => { const r = document.querySelector('#live-rows tr[data-session]');"
        " return r && r.dataset.cost === '9000'; }")
    credit = int(await row.locator("[data-f=credit]").inner_text())
    consumption = int(await row.locator("[data-f=consumption]").inner_text())
    assert credit == 250_000 - consumption
    money_text = await row.locator("[data-f=credit-money]").inner_text()
    assert money_text.count(",") == 1 and len(money_text.split(",")[1]) == 2
    await page.screenshot(path=screenshot_path("ops-01-supervision-credit"))


# --- defect 2: crediting trap -------------------------------------------------------------


async def test_credit_defaults_to_money_and_keeps_the_form_after_an_error(
    page: Any, served: tuple[str, ServeContext]
) -> None:
    from playwright.async_api import expect

    base, _ = served
    acc = await _customer(balance=0)
    await page.goto(f"{base}/users/1001")
    await expect(page.locator("#credit select[name=unit]")).to_have_value("money")
    await page.fill("#f-amount", "10")
    await page.click("#credit button[type=submit]")
    await expect(page.locator(".flash.ok")).to_contain_text("Added 100000 units")
    await page.fill("#f-amount", "10,00005")
    await page.click("#credit button[type=submit]")
    amount = page.locator("#f-amount")
    await expect(amount).to_have_value("10,00005")  # not cleared
    await expect(page.locator("#credit select[name=unit]")).to_have_value("money")  # not reset
    await expect(amount).to_have_attribute("aria-invalid", "true")
    described = await amount.get_attribute("aria-describedby")
    await expect(page.locator(f"#{described}")).to_contain_text("not a whole number of units")
    await page.screenshot(path=screenshot_path("ops-02-credit-error"))
    assert (await ledger.balance(acc.id)).balance == 100_000
    # a wrong credit can be reversed: an ADJUST with a reason, on the statement
    await page.fill("#f-adjust-amount", "-10")
    await page.fill("#f-adjust-reason", "typed euros for units")
    await page.click("#adjust button[type=submit]")
    await expect(page.locator("#statement")).to_contain_text("ADJUST")
    await expect(page.locator("#statement")).to_contain_text("typed euros for units")
    assert (await ledger.balance(acc.id)).balance == 0


# --- defect 3: tariffs by money per minute ---------------------------------------------------


async def test_tariff_price_per_minute_with_visible_rounding(
    page: Any, served: tuple[str, ServeContext]
) -> None:
    from playwright.async_api import expect

    base, _ = served
    await page.goto(f"{base}/costs")
    await page.fill("#t-prefix", "33")
    await page.fill("#t-h1_per_minute", "0,05")
    await page.click("#add-tariff button[type=submit]")
    notice = page.locator("#rounding")
    await expect(notice).to_contain_text("8,3333 units/sec")
    await expect(notice).to_contain_text("8 units/sec = 0,0480 Euros/min")
    assert await Tariff.all().count() == 0
    await page.screenshot(path=screenshot_path("ops-03-tariff-rounding"), full_page=True)
    await page.check("input[name=accept_h1]")
    await page.click("#add-tariff button[type=submit]")
    await expect(page.locator(".flash.ok")).to_contain_text("Tariff 33 added")
    assert (await Tariff.get(prefix="33")).h1_rate == 8
    await expect(page.locator("#tariffs")).to_contain_text("0,0480 Euros/min")
    # errors speak the form's language, beside the field
    await page.fill("#t-prefix", "34")
    await page.fill("#t-h1_rate", "10")
    await page.fill("#t-h2_begin", "25")
    await page.click("#add-tariff button[type=submit]")
    error = page.locator("#err-h2_begin")
    await expect(error).to_contain_text("H2 begin hour must be an hour 0..23")
    assert "h2_begin" not in await error.inner_text()


# --- defect 4: API docs offline --------------------------------------------------------------


async def test_api_docs_render_with_no_request_to_another_host(
    page: Any, served: tuple[str, ServeContext]
) -> None:
    from playwright.async_api import expect

    base, _ = served
    server = urlsplit(base).netloc
    hosts: list[str] = []

    async def guard(route: Any) -> None:
        url = route.request.url
        netloc = urlsplit(url).netloc
        hosts.append(netloc or url.split(":", 1)[0])
        if url.startswith(("data:", "blob:")) or netloc == server:
            await route.continue_()
        else:
            await route.abort()  # the machine is offline: nothing else may be needed

    await page.route("**/*", guard)
    await page.goto(f"{base}/users")
    await page.click("footer >> text=API docs")
    await page.wait_for_url(f"{base}/schema/swagger")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text(
        "Open Prepaid OCS admin API")
    await expect(page.locator(".swagger-ui .opblock-tag-section").first).to_be_visible()
    await expect(page.locator(".swagger-ui")).to_contain_text("/api/v1/vouchers/redeem")
    for path in ("/schema", "/swagger"):
        await page.goto(f"{base}{path}")
        await expect(page.locator(".swagger-ui .info .title")).to_be_visible()
    await page.screenshot(path=screenshot_path("ops-04-api-docs-offline"))
    others = sorted({h for h in hosts if h not in (server, "data", "blob")})
    assert others == [], f"requests to other hosts: {others}"


# --- defect 5: phone width ------------------------------------------------------------------

PHONE_PAGES = [
    ("dashboard", "/dashboard"), ("config", "/config"), ("supervision", "/supervision"),
    ("cdrs", "/cdrs"), ("archives", "/cdrs/archives"), ("users", "/users"),
    ("user", "/users/1001"), ("user-new", "/users/new"), ("costs", "/costs"),
    ("tariff", "/costs/{tariff}"), ("vouchers", "/vouchers"), ("cards", "/cards"),
    ("import", "/users/import"), ("refund", "/cdrs/{cdr}/refund"),
]


async def test_every_page_fits_a_390px_phone(served: tuple[str, ServeContext]) -> None:
    from playwright.async_api import async_playwright, expect

    base, _ = served
    acc = await _customer(name="Alice Martin with a rather long name", caller_ids=["0611223344"])
    await accounts.set_did(acc.id, "0561500001", "0141587070")
    tariff = await Tariff.create(prefix="DEFAULT", h1_rate=200, h2_begin=20, h2_end=8,
                                 h2_rate=90, initial_block=30, increment=6,
                                 connection_charge=100)
    await Tariff.create(prefix="3312345678", h1_rate=180)
    now = datetime.now(UTC)
    cdr = await charged_call("1001", "0033141587070", 65,  # rated by the tariffs above
                             session_id="kamailio-session-" + "x" * 60, call_id="c" * 40,
                             termination_cause=6)  # CREDIT_EXHAUSTED
    await CreditSession.create(session_id="gw;7", account=acc, calling="0611223344",
                               called="0141587070", rate=200, started_at=now, used_seconds=5,
                               cost=1000)
    async with async_playwright() as pw:
        browser, context = await _browser(pw, 390, 844)
        pg = await context.new_page()
        pg.set_default_timeout(10000)
        try:
            await _login(pg, base)
            for name, path in PHONE_PAGES:
                await pg.goto(base + path.format(tariff=tariff.id, cdr=cdr.id))
                await pg.wait_for_load_state("networkidle")
                sizes = await pg.evaluate(
                    "() => { const m = document.querySelector('main');"
                    " return {doc: document.documentElement.scrollWidth,"
                    " body: document.body.scrollWidth, main: m.scrollWidth,"
                    " mainClient: m.clientWidth}; }")
                await pg.screenshot(path=screenshot_path(f"ops-05-390-{name}"), full_page=True)
                assert sizes["doc"] <= 390 and sizes["body"] <= 390, (name, sizes)
                assert sizes["main"] <= sizes["mainClient"], (name, sizes)
                # the whole menu is on screen: it wraps instead of falling off
                for link in await pg.locator("nav.nav a, nav.nav button").all():
                    box = await link.bounding_box()
                    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, (
                        name, await link.inner_text(), box)
            # row actions at the far right of wide tables can be reached and used
            await pg.goto(f"{base}/costs")
            edit = pg.locator("#tariffs a", has_text="Edit").first
            await edit.scroll_into_view_if_needed()
            await edit.click()
            await pg.wait_for_url(f"{base}/costs/{tariff.id}")
            await pg.goto(f"{base}/cdrs")
            refund = pg.locator("#cdr-table a", has_text="Refund").first
            await refund.scroll_into_view_if_needed()
            await expect(refund).to_be_visible()
            await pg.goto(f"{base}/users")
            await pg.locator("#user-table a", has_text="Add credit").first.click()
            await pg.wait_for_url(f"{base}/users/1001#credit")
        finally:
            await browser.close()


# --- defect 6: one money format --------------------------------------------------------------


async def test_money_is_shown_one_way(page: Any, served: tuple[str, ServeContext]) -> None:
    from playwright.async_api import expect

    base, _ = served
    acc = await _customer(balance=239_660)
    await ledger.credit(acc.id, 13_340, actor="test")
    await charged_call("1001", "3000", 40, 8_000)  # 253000 - 8000 = 245000 = 24,50
    await page.goto(f"{base}/users/1001")
    statement = page.locator("#statement")
    await expect(statement).to_contain_text("23,97")  # was 23,966
    await expect(statement.locator("tfoot")).to_contain_text("24,50")
    await page.goto(f"{base}/cdrs")
    await expect(page.locator("#cdr-table tbody tr").first).to_contain_text("0,80")  # was 0,8
    await page.goto(f"{base}/users")
    await expect(page.locator("#user-table")).to_contain_text("24,50")


# --- defect 7: the small ones ---------------------------------------------------------------


async def test_small_defects(page: Any, served: tuple[str, ServeContext]) -> None:
    from playwright.async_api import expect

    base, _ = served
    for n in range(3):
        await _customer(f"100{n}", balance=600 if n == 0 else 0)
    await charged_call("1000", "3000", 3, 600)  # spends the 600

    # Start billing asks first: dismissing leaves the period open
    answers = iter([False, True])
    await page.goto(f"{base}/cdrs")
    await page.evaluate("() => { window.submits = []; window.addEventListener('submit',"
                        " e => window.submits.push(e.defaultPrevented)); }")

    async def on_dialog(dialog: Any) -> None:
        assert "billing period" in dialog.message
        await (dialog.accept() if next(answers) else dialog.dismiss())

    page.on("dialog", lambda d: asyncio.ensure_future(on_dialog(d)))
    await page.click("button:has-text('Start billing')")
    # a dismissed confirm cancels the submit (seen by a listener after the app's own)
    await page.wait_for_function("() => window.submits.length > 0")
    assert await page.evaluate("window.submits") == [True]
    assert await BillingRun.all().count() == 0
    await page.click("button:has-text('Start billing')")
    await page.wait_for_url(f"{base}/cdrs/archives")
    assert await BillingRun.all().count() == 1

    # paging past the end and garbage page numbers
    await page.goto(f"{base}/users?page=42")
    await expect(page.locator("#user-table .pager")).to_contain_text("Page 1 / 1")
    response = await page.goto(f"{base}/users?page=abc")
    assert response is not None and response.status == 200

    # a field error sits beside its field and is tied to it
    await page.goto(f"{base}/config")
    await page.fill("#f-switch_port", "99999")
    await page.click("form.config-form button[type=submit]")
    port = page.locator("#f-switch_port")
    await expect(port).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#" + (await port.get_attribute("aria-describedby") or "x"))
                 ).to_contain_text("between")
    # the web port field has a label
    await expect(page.get_by_label("Web port")).to_be_disabled()

    # skip link first, then a visible focus ring on the dark-blue menu
    await page.goto(f"{base}/users")
    await page.keyboard.press("Tab")
    skip = page.locator("a.skip-link")
    await expect(skip).to_be_focused()
    box = await skip.bounding_box()
    assert box is not None and box["y"] >= 0  # on screen once focused
    await page.keyboard.press("Tab")  # brand
    await page.keyboard.press("Tab")  # first menu item
    style = await page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return {tag: document.activeElement.closest('nav') !== null,"
        " width: parseFloat(s.outlineWidth), style: s.outlineStyle, color: s.outlineColor}; }")
    assert style["tag"] and style["style"] != "none" and style["width"] >= 2, style
    assert style["color"] not in ("rgba(0, 0, 0, 0)", "transparent"), style
    await page.screenshot(path=screenshot_path("ops-07-nav-focus"))
    await page.keyboard.press("Shift+Tab")
    await page.keyboard.press("Shift+Tab")
    await page.keyboard.press("Enter")  # follow the skip link
    assert await page.evaluate("document.activeElement.id") == "main"

    # CDRs: connect delay explained when the switch sent none, end reason shown
    await page.goto(f"{base}/cdrs")
    row = page.locator("#cdr-table tbody tr").first
    await expect(row).to_contain_text("n/a")
    await expect(row).to_contain_text("NORMAL")
    await expect(page.locator("#cdr-table thead")).to_contain_text("End reason")
    await expect(page.locator(".notice-note")).to_contain_text("no SIP timestamps")


# --- operator tools ---------------------------------------------------------------------------


async def test_vouchers_cards_import_dashboard_and_search(
    page: Any, served: tuple[str, ServeContext]
) -> None:
    from playwright.async_api import expect

    base, _ = served
    await _customer(balance=5_000, pin="4321", caller_ids=["0611223344"])
    page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))

    # vouchers: generate, download the codes once, redeem one for a customer, void the rest
    await page.goto(f"{base}/vouchers")
    await page.fill("#f-count", "3")
    await page.fill("#f-value", "5")
    await page.click("#generate button[type=submit]")
    async with page.expect_download() as info:
        await page.click("#download-once a")
    download = await info.value
    rows = list(csv.reader(io.StringIO(Path(await download.path()).read_text()),
                           delimiter=":"))
    assert len(rows) == 4
    await page.fill("#f-code", rows[1][1])
    await page.fill("#f-account", "1001")
    await page.click("#redeem button[type=submit]")
    await expect(page.locator(".flash.ok")).to_contain_text("5,00 Euros added to 1001")
    await page.fill("#f-code", rows[1][1])
    await page.fill("#f-account", "1001")
    await page.click("#redeem button[type=submit]")
    await expect(page.locator("#err-redeem-code")).to_contain_text("already been used")
    batch = page.locator("#voucher-batches tbody tr").first
    await expect(batch).to_contain_text("active")
    await batch.locator("button", has_text="Void").click()
    await expect(page.locator("#voucher-batches tbody tr").first).to_contain_text("voided")
    await page.screenshot(path=screenshot_path("ops-08-vouchers"), full_page=True)

    # calling cards
    await page.goto(f"{base}/cards")
    await page.fill("#f-count", "4")
    await page.fill("#f-first_number", "7000")
    await page.fill("#f-credit", "2")
    await page.click("#generate-cards button[type=submit]")
    async with page.expect_download() as info:
        await page.click("#download-once a")
    pins = list(csv.reader(io.StringIO(Path(await (await info.value).path()).read_text()),
                           delimiter=":"))
    assert [p[0] for p in pins[1:]] == ["7000", "7001", "7002", "7003"]
    assert (await accounts.find_by_pin(pins[1][1])).number == "7000"  # type: ignore[union-attr]

    # import with progress
    body = "number:name:balance\n" + "".join(f"{8000 + i}:Import {i}:1000\n" for i in range(200))
    await page.goto(f"{base}/users/import")
    await page.set_input_files("#i-file", files=[{"name": "users.csv", "mimeType": "text/csv",
                                                  "buffer": body.encode()}])
    await page.click("#import-users button[type=submit]")
    await expect(page.locator("#import-status")).to_contain_text("Imported 200 user(s)")
    assert await Account.filter(name__startswith="Import ").count() == 200

    # Users: search by caller ID, PIN lookup, sort, filters
    await page.goto(f"{base}/users")
    await page.fill("input[name=caller_id]", "0611")
    await page.press("input[name=caller_id]", "Enter")
    await expect(page.locator("#user-table tbody tr")).to_have_count(1)
    await page.goto(f"{base}/users")
    await page.fill("#pin-search input[name=pin]", "4321")
    await page.click("#pin-search button")
    await page.wait_for_url(f"{base}/users/1001")
    assert "4321" not in page.url
    await page.goto(f"{base}/users?low=1")  # the 200 imported users hold 1000 units each
    await expect(page.locator("#user-table .pager")).to_contain_text("of 200 users")
    await page.goto(f"{base}/users")
    await page.click("#user-table th a:has-text('Units')")
    await page.click("#user-table th a:has-text('Units')")
    await expect(page.locator("#user-table tbody tr").first).to_contain_text("1001")
    await page.screenshot(path=screenshot_path("ops-09-users-search"), full_page=True)

    # refund one call from the CDR page: a REFUND line on the statement
    now = datetime.now(UTC)
    call = await charged_call("1001", "3000", 13, 2_600, ended=now)
    await page.goto(f"{base}/cdrs")
    await page.locator("#cdr-table a", has_text="Refund").first.click()
    await page.wait_for_url(f"{base}/cdrs/{call.id}/refund")
    await page.fill("#f-reason", "line noise")
    await page.click("#refund button[type=submit]")
    await page.wait_for_url(f"{base}/users/1001#statement")
    await expect(page.locator("#statement")).to_contain_text("REFUND")
    await expect(page.locator("#statement")).to_contain_text("refund of call")

    # dashboard is the landing page
    for i in range(5):  # one a day; the first not answered
        prefix = "DEFAULT" if i % 2 else "38"
        await charged_call("1001", "0141587070" if i % 2 else "38161234567", 60 * i, 1200 * i,
                           ended=now - timedelta(days=i), prefix=prefix)
    await page.goto(base + "/")
    await page.wait_for_url(f"{base}/dashboard")
    await expect(page.locator("svg.chart")).to_have_count(3)
    await expect(page.locator("#calls-total")).to_have_text("6")  # 5 + the refunded call
    await expect(page.locator("#answer-rate")).to_have_text("83.3 %")
    await expect(page.locator("#top-destinations")).to_contain_text("DEFAULT")
    await page.screenshot(path=screenshot_path("ops-10-dashboard"), full_page=True)
    assert await LedgerEntry.filter(kind=LedgerKind.CREDIT).count() >= 200
