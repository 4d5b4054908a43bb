"""Hostile input to the web app and REST API: a clear 4xx for each, nothing written, and a
real 500 logged with its traceback without leaking anything (issue 13, items 12 and 15)."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from litestar import get, post

from ocs import admin_auth, apikeys, ledger
from ocs.config import Settings
from ocs.events import EventBus
from ocs.models import (
    Account,
    CardBatch,
    Cdr,
    LedgerEntry,
    LedgerKind,
    Setting,
    Tariff,
    VoucherBatch,
)
from ocs.runtime import ServeContext
from tests.integration.web_support import Browser, RecordingControl, asgi_client, flash_text

PASSWORD = "correct horse battery"
LEAKS = ("get_logger", "Traceback", "logging_config", "secret-internal-detail", "sqlite",
         "asyncpg", "tortoise")


@get("/boom", include_in_schema=False)
async def boom_page() -> str:
    raise RuntimeError("secret-internal-detail in a page")


@get("/api/v1/boom", include_in_schema=False)
async def boom_api() -> str:
    raise RuntimeError("secret-internal-detail in the API")


@post("/reports/api/run", include_in_schema=False, status_code=200)
async def page_with_api_in_path() -> str:
    return "ran"


@pytest.fixture
async def ctx(db: Settings) -> ServeContext:
    return ServeContext(settings=db, bus=EventBus(), sessions=RecordingControl())


@pytest.fixture
async def api(ctx: ServeContext) -> AsyncIterator[httpx.AsyncClient]:
    key = await apikeys.create_key("tests")
    async with asgi_client(ctx, extra_routes=[boom_api]) as c:
        c.headers["X-API-Key"] = key.key
        await Account.get_or_create(number="1001")
        yield c


@pytest.fixture
async def web(ctx: ServeContext) -> AsyncIterator[Browser]:
    await admin_auth.set_password(PASSWORD)
    async with asgi_client(ctx, extra_routes=[boom_page, page_with_api_in_path]) as c:
        browser = Browser(c)
        r = await browser.login("admin", PASSWORD)
        assert r.status_code == 303, r.text
        await Account.get_or_create(number="1001")
        yield browser


def assert_clean_4xx(r: httpx.Response, *statuses: int) -> None:
    assert r.status_code in (statuses or (400, 404, 422)), (r.status_code, r.text[:300])
    for word in LEAKS:
        assert word not in r.text, (word, r.text[:300])


# --- item 12: each trigger gets a clear 4xx ----------------------------------------------


@pytest.mark.parametrize("body", [{"units": 2**63}, {"units": 2**63 - 1}, {"units": 10**16},
                                  {"amount": "1" * 25}])
async def test_huge_credit_is_422_and_writes_nothing(api: httpx.AsyncClient,
                                                     body: dict[str, Any]) -> None:
    r = await api.post("/api/v1/accounts/1001/credit", json=body)
    assert_clean_4xx(r, 400, 422)
    assert r.json()["field"] in ("units", "amount")
    assert await LedgerEntry.all().count() == 0


def field_error(html: str, field: str) -> str:
    """The message shown under a form field (api/templates/_fields.html), or ''."""
    match = re.search(rf'id="err-{re.escape(field)}"[^>]*>([^<]*)<', html)
    return match.group(1) if match else ""


# A refused form is shown again with 422, the message under its field and the typed value
# kept (docs/ARCHITECTURE.md, "UI conventions"); nothing is written.


async def test_superscript_digit_in_the_credit_form_is_refused(web: Browser) -> None:
    for raw in ["²", "١٠", "10²", "²" * 40]:
        r = await web.post("/users/1001/credit", {"amount": raw, "unit": "units"})
        assert r.status_code == 422, (raw, r.status_code, r.text[:200])
        assert "Credit refused" in field_error(r.text, "credit-amount"), raw
        assert f'value="{raw}"' in r.text
    assert await LedgerEntry.all().count() == 0


async def test_huge_credit_in_the_form_is_refused(web: Browser) -> None:
    for raw, unit in [("9" * 25, "units"), ("1" * 25, "money"), (str(10**15 + 1), "units"),
                      ("9" * 100_000, "money")]:
        r = await web.post("/users/1001/credit", {"amount": raw, "unit": unit})
        assert r.status_code == 422, (raw[:30], unit, r.status_code)
        assert "Credit refused" in field_error(r.text, "credit-amount")
    assert await LedgerEntry.all().count() == 0
    r = await web.post("/users/1001/credit", {"amount": str(10**15), "unit": "units"})
    assert r.status_code == 303  # the limit itself is allowed
    assert "Added 1000000000000000 units" in flash_text((await web.get("/users/1001")).text)


async def test_adjust_form_refuses_unicode_digits_and_huge_amounts(web: Browser) -> None:
    for raw, unit in [("²", "units"), ("-١٠", "units"), ("+10²", "units"),
                      ("-" + "9" * 16, "units"), ("-1" + "0" * 12, "money")]:
        r = await web.post("/users/1001/adjust", {"amount": raw, "unit": unit, "reason": "x"})
        assert r.status_code == 422, (raw, unit, r.status_code, r.text[:200])
        assert field_error(r.text, "adjust-amount"), raw
    assert await LedgerEntry.all().count() == 0


async def _paid_call(cost: int = 600) -> Cdr:
    """A CDR whose cost was debited like the charging engine does (CALL entry, the
    session id as reference), so the money invariants hold."""
    acc = await Account.get(number="1001")
    await ledger.credit(acc.id, 1000, actor="test")
    await ledger.adjust(acc.id, -cost, actor="test", reference="s", kind=LedgerKind.CALL)
    now = datetime.now(UTC)
    return await Cdr.create(account=acc, account_number="1001", session_id="s",
                            started_at=now, created_at=now, duration=3, cost=cost)


async def test_refund_form_refuses_unicode_digits_and_huge_units(web: Browser) -> None:
    call = await _paid_call()
    for raw in ["²", "١٠", str(10**15 + 1), "9" * 40]:
        r = await web.post(f"/cdrs/{call.id}/refund", {"units": raw, "reason": "x"})
        assert r.status_code == 422, (raw, r.status_code, r.text[:200])
        assert field_error(r.text, "units"), raw
    assert await LedgerEntry.filter(kind=LedgerKind.REFUND).count() == 0


async def test_voucher_and_card_forms_refuse_unicode_digits_and_huge_values(web: Browser) -> None:
    vouchers_form = {"count": "2", "value": "10", "unit": "units", "expires": "", "label": ""}
    for change, field in [({"count": "²"}, "gen-count"), ({"count": "١٠"}, "gen-count"),
                          ({"value": "²"}, "gen-value"),
                          ({"value": str(10**15 + 1)}, "gen-value"),
                          ({"value": "1" * 25, "unit": "money"}, "gen-value")]:
        r = await web.post("/vouchers/batches", {**vouchers_form, **change})
        assert r.status_code == 422, (change, r.status_code, r.text[:200])
        assert field_error(r.text, field), change
    cards_form = {"count": "2", "credit": "10", "unit": "units", "pin_length": "8",
                  "first_number": "5000", "label": ""}
    for change, field in [({"count": "²"}, "count"), ({"pin_length": "٨"}, "pin_length"),
                          ({"pin_length": "9" * 30}, "pin_length"),
                          ({"credit": "١٠"}, "credit"), ({"credit": "9" * 25}, "credit")]:
        r = await web.post("/cards", {**cards_form, **change})
        assert r.status_code == 422, (change, r.status_code, r.text[:200])
        assert field_error(r.text, field), change
    assert await VoucherBatch.all().count() == 0 and await CardBatch.all().count() == 0
    assert await Account.all().count() == 1 and await LedgerEntry.all().count() == 0


async def test_rest_money_fields_are_bounded(api: httpx.AsyncClient) -> None:
    call = await _paid_call()
    huge = 10**15 + 1
    for path, body, field in [
        ("/api/v1/accounts/1001/adjustments", {"units": huge, "reason": "x"}, "units"),
        ("/api/v1/accounts/1001/adjustments", {"units": -huge, "reason": "x"}, "units"),
        ("/api/v1/accounts/1001/adjustments", {"amount": "1" * 25, "reason": "x"}, "amount"),
        ("/api/v1/accounts/1001/adjustments", {"amount": "١٠", "reason": "x"}, "amount"),
        (f"/api/v1/cdrs/{call.id}/refund", {"units": huge, "reason": "x"}, "units"),
        ("/api/v1/voucher-batches", {"count": 1, "units": huge}, "units"),
        ("/api/v1/voucher-batches", {"count": 1, "amount": "9" * 30}, "amount"),
        ("/api/v1/card-batches", {"count": 1, "units": huge}, "units"),
        ("/api/v1/card-batches", {"count": 1, "amount": "²"}, "amount"),
    ]:
        r = await api.post(path, json=body)
        assert_clean_4xx(r, 422)
        assert r.json()["field"] == field, (path, body, r.json())
    assert await LedgerEntry.all().count() == 2  # the call's credit and debit only
    assert await VoucherBatch.all().count() == 0 and await CardBatch.all().count() == 0


async def test_csv_import_balance_is_ascii_digits_and_bounded(api: httpx.AsyncClient) -> None:
    for balance in ["²", "١٠", str(10**15 + 1), "9" * 40]:
        r = await api.post("/api/v1/accounts/csv", content=f"number,balance\n2001,{balance}\n",
                           headers={"Content-Type": "text/csv"}, params={"separator": ","})
        assert_clean_4xx(r, 422)
        assert r.json()["error"] == "invalid_csv" and "balance" in r.json()["detail"]
    assert not await Account.filter(number="2001").exists()
    assert await LedgerEntry.all().count() == 0


async def test_unicode_digits_in_settings_pins_and_paging(api: httpx.AsyncClient,
                                                          web: Browser) -> None:
    for body in [{"default_calling_address": "gw.example:²"},
                 {"default_calling_address": "gw.example:" + "9" * 40},
                 {"ivr_access_number": "٦٠٠٠"}]:
        r = await api.patch("/api/v1/settings", json=body)
        assert_clean_4xx(r, 422)
        assert r.json()["field"] == next(iter(body))
    assert await Setting.all().count() == 0
    r = await web.post("/config", {"default_calling_address": "gw.example:²"})
    assert r.status_code == 422 and field_error(r.text, "default_calling_address")
    r = await api.post("/api/v1/accounts", json={"number": "2002", "pin": "²²²²"})
    assert_clean_4xx(r, 400, 422)
    assert not await Account.filter(number="2002").exists()
    r = await api.get("/api/v1/accounts", params={"limit": "²" * 20})
    assert_clean_4xx(r, 400)
    assert (await web.get("/users", params={"page": "²"})).status_code == 200


async def test_nul_in_a_static_path_is_400(web: Browser) -> None:
    for path in ["/static/%00", "/static/style.css%00", "/users/%00"]:
        assert_clean_4xx(await web.client.get(path), 400, 404)
    assert (await web.client.get("/static/style.css")).status_code == 200


async def test_nul_in_query_form_and_json_is_400(web: Browser, api: httpx.AsyncClient) -> None:
    assert_clean_4xx(await web.client.get("/users", params={"q": "a\x00b"}), 400)
    r = await web.post("/users", {"number": "1002", "name": "a\x00b"})
    assert_clean_4xx(r, 400)
    r = await api.post("/api/v1/accounts", json={"number": "1003", "name": "a\x00b"})
    assert_clean_4xx(r, 400)
    assert await Account.filter(number__in=["1002", "1003"]).count() == 0


@pytest.mark.parametrize("path", ["/api/v1/billing/runs/" + "9" * 30,
                                  "/api/v1/billing/runs/99999999999",
                                  "/api/v1/billing/runs/" + "9" * 30 + "/file",
                                  "/api/v1/accounts/1001/dids/99999999999"])
async def test_over_long_ids_are_4xx(api: httpx.AsyncClient, path: str) -> None:
    method = "DELETE" if "/dids/" in path else "GET"
    assert_clean_4xx(await api.request(method, path), 400, 404)


async def test_over_long_ids_on_pages_are_4xx(web: Browser) -> None:
    assert_clean_4xx(await web.client.get("/costs/" + "9" * 30), 400, 404)
    assert_clean_4xx(await web.post("/costs/99999999999/delete"), 400, 404)
    assert_clean_4xx(await web.client.get("/cdrs", params={"before": "9" * 30}), 400)


async def test_deeply_nested_json_is_400(api: httpx.AsyncClient) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    for method, path in [("PATCH", "/api/v1/settings"), ("POST", "/api/v1/accounts"),
                         ("POST", "/api/v1/accounts/1001/credit")]:
        r = await api.request(method, path, content=deep,
                              headers={"content-type": "application/json"})
        assert_clean_4xx(r, 400)
    deep_obj = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    r = await api.patch("/api/v1/settings", content=deep_obj,
                        headers={"content-type": "application/json"})
    assert_clean_4xx(r, 400)
    assert not await Setting.filter(key="a").exists()


async def test_malformed_json_is_400(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/v1/accounts", content=b'{"number": ',
                       headers={"content-type": "application/json"})
    assert_clean_4xx(r, 400)


async def test_real_500_is_logged_with_traceback_and_leaks_nothing(
    web: Browser, api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    r = await api.get("/api/v1/boom")
    assert r.status_code == 500
    assert r.json() == {"error": "internal", "detail": "internal server error"}
    r = await web.client.get("/boom")
    assert r.status_code == 500 and "Internal error" in r.text
    for word in LEAKS:
        assert word not in r.text
    logged = [rec for rec in caplog.records if rec.exc_info]
    assert len(logged) == 2, [rec.getMessage() for rec in caplog.records]
    texts = [logging.Formatter().format(rec) for rec in logged]
    assert "GET /api/v1/boom" in texts[0] and "secret-internal-detail in the API" in texts[0]
    assert "Traceback" in texts[1] and "secret-internal-detail in a page" in texts[1]


# --- item 15: strict parsing ---------------------------------------------------------------


async def test_string_units_are_400_as_documented(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/v1/accounts/1001/credit", json={"units": "10"})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_payload" and r.json()["field"] == "units"
    r = await api.post("/api/v1/tariffs", json={"prefix": "33", "h1_rate": "200"})
    assert r.status_code == 400 and r.json()["field"] == "h1_rate"
    r = await api.post("/api/v1/accounts/1001/credit", json={"units": True})
    assert r.status_code == 400
    r = await api.post("/api/v1/accounts/1001/credit", json={"units": 10.0})
    assert r.status_code == 400
    assert await LedgerEntry.all().count() == 0
    assert await Tariff.all().count() == 0
    r = await api.post("/api/v1/accounts/1001/credit", json={"units": 10})
    assert r.status_code == 201


async def test_non_ascii_digits_refused_in_money_and_number_fields(
    api: httpx.AsyncClient, web: Browser
) -> None:
    r = await api.post("/api/v1/accounts/1001/credit", json={"amount": "١٠"})
    assert r.status_code == 422 and r.json()["field"] == "amount"
    r = await api.patch("/api/v1/settings", json={"unit_price": "٠.٠٠٠٢"})
    assert r.status_code == 422 and r.json()["field"] == "unit_price"
    r = await api.patch("/api/v1/settings", json={"low_credit_threshold": "١٠٠"})
    assert r.status_code == 422 and r.json()["field"] == "low_credit_threshold"
    r = await web.post("/costs", {"prefix": "33", "h1_rate": "٢٠٠"})
    assert r.status_code == 422
    r = await api.post("/api/v1/tariffs/csv", content="prefix:h1_rate\n33:٢٠٠\n".encode(),
                       headers={"content-type": "text/csv"})
    assert r.status_code == 422
    assert not await Setting.filter(key__in=["unit_price", "low_credit_threshold"]).exists()
    assert await Tariff.all().count() == 0
    assert await LedgerEntry.all().count() == 0


async def test_out_of_range_tariff_is_422_not_a_database_error(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/v1/tariffs", json={"prefix": "33", "h1_rate": 2**40})
    assert_clean_4xx(r, 422)
    assert r.json()["field"] == "h1_rate"


async def test_csrf_is_not_skipped_for_paths_containing_api(web: Browser) -> None:
    r = await web.client.post("/reports/api/run")
    assert r.status_code == 403, r.text
    r = await web.post("/reports/api/run")  # with the token: allowed
    assert r.status_code == 200 and r.text == "ran"


async def test_a_browser_session_cannot_post_to_the_rest_api(web: Browser) -> None:
    r = await web.client.post("/api/v1/accounts", json={"number": "1009"})
    assert r.status_code == 401
    assert not await Account.filter(number="1009").exists()
