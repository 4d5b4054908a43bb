"""Operator-tool pages over HTTP (no browser): forms, errors beside fields, one-time files."""

from __future__ import annotations

import asyncio
import csv
import io
import re

import pytest

from ocs import accounts, ledger
from ocs.models import Account, LedgerEntry, LedgerKind, Tariff, Voucher, VoucherStatus
from tests.calls import charged_call
from tests.integration import test_api_pages as pages
from tests.integration.test_api_pages import Browser, flash_text

# the logged-in browser of the pages tests (fixtures shared by assignment)
app_ctx, anon, web = pages.app_ctx, pages.anon, pages.web

pytestmark = pytest.mark.usefixtures("web")


async def test_home_is_the_dashboard(web: Browser) -> None:
    r = await web.client.get("/")
    assert r.headers["location"] == "/dashboard"
    acc = await accounts.create_account("1001")
    await ledger.credit(acc.id, 18_000, actor="t")
    await charged_call("1001", "0141587070", 65, 13_000, prefix="DEFAULT")  # leaves 5000:
    # under the 10000 threshold
    r = await web.get("/dashboard")
    assert r.status_code == 200
    assert r.text.count('<svg class="chart"') == 3 and "<script src=\"http" not in r.text
    assert re.search(r'id="calls-total">1<', r.text)
    assert re.search(r'id="revenue">1,30<', r.text)
    assert 'href="/users/1001"' in r.text  # low-balance list


async def test_tariff_money_per_minute_is_rounded_only_after_the_operator_accepts(
    web: Browser,
) -> None:
    form = {"prefix": "33", "h1_rate": "", "h1_per_minute": "0.05", "h2_begin": "0",
            "h2_end": "0", "h2_rate": "0", "initial_block": "1", "increment": "1",
            "connection_charge": "0"}
    r = await web.post("/costs", form)
    assert r.status_code == 422  # shown, not saved
    assert "8,3333 units/sec" in r.text and "8 units/sec = 0,0480 Euros/min" in r.text
    assert 'name="accept_h1" value="8"' in r.text
    assert await Tariff.all().count() == 0
    r = await web.post("/costs", {**form, "accept_h1": "8"})
    assert r.status_code == 303
    assert (await Tariff.get(prefix="33")).h1_rate == 8
    # an exact price needs no confirmation
    r = await web.post("/costs", {**form, "prefix": "34", "h1_per_minute": "1,2"})
    assert r.status_code == 303 and (await Tariff.get(prefix="34")).h1_rate == 200


async def test_tariff_errors_use_labels_next_to_the_field(web: Browser) -> None:
    form = {"prefix": "35", "h1_rate": "10", "h2_begin": "25", "h2_end": "0", "h2_rate": "0",
            "initial_block": "1", "increment": "1", "connection_charge": "0"}
    r = await web.post("/costs", form)
    assert r.status_code == 422
    assert "h2_begin" not in re.sub(r'(name|id|for)="[^"]*"|err-[a-z0-9_]+|t-[a-z0-9_]+', "",
                                    r.text.split('id="add-tariff"')[1].split("</form>")[0])
    assert "H2 begin hour" in r.text
    assert re.search(r'id="t-h2_begin"[^>]*aria-invalid="true" aria-describedby="err-h2_begin"',
                     r.text)
    assert 'id="err-h2_begin"' in r.text


async def test_users_page_numbers_are_forgiving(web: Browser) -> None:
    for n in range(3):
        await accounts.create_account(f"10{n:02d}")
    r = await web.get("/users?page=42")
    assert r.status_code == 200 and "Page 1 / 1" in r.text and "1000" in r.text
    r = await web.get("/users?page=abc")
    assert r.status_code == 200 and "Page 1 / 1" in r.text


async def test_users_search_sort_and_pin_lookup(web: Browser) -> None:
    await accounts.create_account("1001", name="Alice", pin="4321", caller_ids=["0611223344"])
    await accounts.create_account("1002", name="Bob")
    r = await web.get("/users?caller_id=0611")
    assert "Alice" in r.text and "Bob" not in r.text
    r = await web.get("/users?sort=-number")
    assert r.text.index("/users/1002") < r.text.index("/users/1001")
    assert 'aria-sort="descending"' in r.text
    r = await web.get("/users?caller_id=abc")
    assert r.status_code == 422 and 'id="err-caller_id"' in r.text
    r = await web.post("/users/find-pin", {"pin": "4321"})
    assert r.headers["location"] == "/users/1001"
    r = await web.post("/users/find-pin", {"pin": "9999"})
    assert r.headers["location"] == "/users"
    r = await web.get("/users/list.csv?q=100&sort=-number")
    rows = list(csv.reader(io.StringIO(r.text), delimiter=":"))
    assert [row[0] for row in rows[1:]] == ["1002", "1001"]


async def test_adjust_form(web: Browser) -> None:
    acc = await accounts.create_account("1001")
    await ledger.credit(acc.id, 100_000, actor="t")
    r = await web.post("/users/1001/adjust", {"amount": "-2,5", "unit": "money", "reason": ""})
    assert r.status_code == 422 and 'id="err-adjust-reason"' in r.text
    assert 'value="-2,5"' in r.text
    r = await web.post("/users/1001/adjust", {"amount": "-2,5", "unit": "money",
                                              "reason": "wrong credit"})
    assert r.status_code == 303
    entry = await LedgerEntry.get(kind=LedgerKind.ADJUST)
    assert (entry.amount, entry.note, entry.actor) == (-25_000, "wrong credit", "admin")
    r = await web.get("/users/1001")
    assert "ADJUST" in r.text and "wrong credit" in r.text
    r = await web.post("/users/1001/adjust", {"amount": "-100000", "unit": "units",
                                              "reason": "too much"})
    assert r.status_code == 422 and "75000 available" in r.text


async def test_refund_from_the_cdr_page(web: Browser) -> None:
    acc = await accounts.create_account("1001")
    await ledger.credit(acc.id, 10_000, actor="t")
    call = await charged_call("1001", "0141587070", 13, 2_600)  # leaves 7400
    r = await web.get("/cdrs")
    assert f'href="/cdrs/{call.id}/refund"' in r.text and "NORMAL" in r.text  # end reason
    assert "n/a" in r.text  # no connect delay reported
    r = await web.get(f"/cdrs/{call.id}/refund")
    assert "2600 (all that is left)" in r.text
    r = await web.post(f"/cdrs/{call.id}/refund", {"units": "5000", "reason": "x"})
    assert r.status_code == 422 and 'id="err-units"' in r.text
    r = await web.post(f"/cdrs/{call.id}/refund", {"units": "", "reason": "bad line"})
    assert r.headers["location"] == "/users/1001#statement"
    assert (await ledger.balance(acc.id)).balance == 10_000  # the call's 2600 back


async def test_voucher_pages_generate_download_once_redeem_void(web: Browser) -> None:
    await accounts.create_account("1001")
    r = await web.post("/vouchers/batches", {"count": "3", "value": "5", "unit": "money",
                                             "expires": "", "label": "shop"})
    assert r.status_code == 303
    page = await web.get(r.headers["location"])
    link = re.search(r'href="(/downloads/[^"]+)"', page.text)
    assert link is not None
    got = await web.client.get(link.group(1))
    assert got.status_code == 200 and "attachment" in got.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(got.text), delimiter=":"))
    assert rows[0] == ["serial", "code", "units", "value (Euros)", "expires"] and len(rows) == 4
    assert rows[1][2:4] == ["50000", "5,00"]
    assert (await web.client.get(link.group(1))).status_code == 404  # once only
    r = await web.post("/vouchers/redeem", {"code": rows[1][1], "account": "1001"})
    assert r.status_code == 303
    assert (await Account.get(number="1001")).balance == 50_000
    r = await web.post("/vouchers/redeem", {"code": rows[1][1], "account": "1001"})
    assert r.status_code == 422 and "already been used" in r.text
    assert 'id="err-redeem-code"' in r.text
    batch_id = int(rows[1][0][1:].split("-")[0])
    r = await web.post(f"/vouchers/batches/{batch_id}/void")
    assert "2 unused voucher(s) cancelled" in flash_text((await web.get("/vouchers")).text)
    assert await Voucher.filter(status=VoucherStatus.VOIDED).count() == 2
    r = await web.post("/vouchers/batches", {"count": "x", "value": "5", "unit": "money"})
    assert r.status_code == 422 and 'id="err-gen-count"' in r.text


async def test_card_batch_page(web: Browser) -> None:
    r = await web.post("/cards", {"count": "5", "credit": "10", "unit": "money",
                                  "pin_length": "6", "first_number": "5000", "label": "kiosk"})
    assert r.status_code == 303
    page = await web.get(r.headers["location"])
    link = re.search(r'href="(/downloads/[^"]+)"', page.text)
    assert link is not None
    rows = list(csv.reader(io.StringIO((await web.client.get(link.group(1))).text),
                           delimiter=":"))
    assert rows[0] == ["number", "pin", "credit"] and len(rows) == 6
    assert (await accounts.find_by_pin(rows[1][1])).number == "5000"  # type: ignore[union-attr]
    assert (await Account.get(number="5004")).balance == 100_000
    r = await web.post("/cards", {"count": "5", "credit": "", "unit": "money",
                                  "pin_length": "6", "first_number": "5002"})
    assert r.status_code == 422 and 'id="err-first_number"' in r.text


async def test_import_with_progress_then_export(web: Browser) -> None:
    body = "number:name:balance\n" + "".join(f"{3000 + i}:N{i}:100\n" for i in range(50))
    files = {"file": ("u.csv", body.encode(), "text/csv")}
    r = await web.client.post("/users/import", data={"_csrf_token": web.token}, files=files)
    assert r.status_code == 303
    job = r.headers["location"]
    for _ in range(200):
        status = await web.client.get(job + "/status")
        if "Imported" in status.text or "Nothing imported" in status.text:
            break
        await asyncio.sleep(0.05)
    assert "Imported 50 user(s)" in status.text
    assert await Account.all().count() == 50
    bad = "number:name\n4000:a\n4001:b:c\n"
    r = await web.client.post("/users/import", data={"_csrf_token": web.token},
                              files={"file": ("b.csv", bad.encode(), "text/csv")})
    for _ in range(200):
        status = await web.client.get(r.headers["location"] + "/status")
        if "imported" in status.text.lower() and "progress" not in status.text:
            break
        await asyncio.sleep(0.05)
    assert "Nothing imported: line 3" in status.text
    assert await Account.all().count() == 50
    export = await web.client.get("/users/export.csv")
    assert export.text.splitlines()[0] == "number:name:language:status:caller_ids:balance"
    assert len(export.text.splitlines()) == 51


async def test_api_docs_are_served_from_the_package(web: Browser) -> None:
    r = await web.client.get("/swagger")
    assert r.status_code in (301, 302, 303, 307, 308)
    assert r.headers["location"] == "/schema/swagger"
    for path in ("/schema", "/schema/swagger"):
        page = await web.client.get(path)
        assert page.status_code == 200
        assets = re.findall(r'(?:src|href)=["\']([^"\']+)', page.text)
        assert assets and all(a.startswith("/static/") or a == "data:," for a in assets), assets
        for a in assets:
            if a.startswith("/static/"):
                assert (await web.client.get(a)).status_code == 200
    assert 'href="/schema/swagger"' in (await web.get("/users")).text  # linked from the UI
