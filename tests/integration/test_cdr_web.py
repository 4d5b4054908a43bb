"""CDR page, CSV export, Start billing, Archives, and the REST endpoints, through the real
app (session login + CSRF for pages, API key for /api/v1)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest

from api.app import create_app
from ocs import admin_auth, apikeys
from ocs.events import EventBus
from ocs.runtime import ServeContext
from tests.integration.test_billing import GOLDEN_COLON, PARIS, brochure_history
from tests.integration.test_cdr import BROCHURE_CDRS

PASSWORD = "correct horse battery"


@pytest.fixture
async def client(db) -> AsyncIterator[httpx.AsyncClient]:
    await admin_auth.set_password(PASSWORD)
    app = create_app(ServeContext(settings=db, bus=EventBus()))
    # Same event loop as the test (the ORM connection belongs to it): plain httpx over ASGI.
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def csrf(c: httpx.AsyncClient) -> str:
    return str(c.cookies.get("ocs_csrf"))


async def login(c: httpx.AsyncClient) -> None:
    await c.get("/login")
    r = await c.post("/login", data={"password": PASSWORD, "_csrf_token": csrf(c)})
    assert r.status_code in (200, 303), r.text


async def api_key() -> dict[str, str]:
    return {"X-API-Key": (await apikeys.create_key("billing-test")).key}


async def test_pages_need_login(client) -> None:
    r = await client.get("/cdrs", follow_redirects=False)
    assert r.status_code in (302, 303, 401)
    r = await client.get("/api/v1/cdrs")
    assert r.status_code == 401


async def test_cdr_page_filters_and_export(client, db) -> None:
    await brochure_history(db)
    await login(client)
    r = await client.get("/cdrs")
    assert r.status_code == 200
    for cell in ("20120403_152503", "1333459492", "A12040315245291803", "0,06", "Euros"):
        assert cell in r.text
    r = await client.get("/cdrs", params={"user": "1002"})
    assert "A12041210301046701" in r.text and "A12040315245291803" not in r.text
    r = await client.get("/cdrs", params={"from": "bad"})
    assert r.status_code == 200 and "not a date" in r.text
    r = await client.get("/cdrs/export.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    assert r.text == BROCHURE_CDRS
    r = await client.get("/cdrs/export.csv", params={"prefix": "3", "user": "1001"})
    assert r.text.splitlines()[1:] == [BROCHURE_CDRS.splitlines()[4]]


async def test_cdr_page_paging(client, db) -> None:
    await brochure_history(db)
    await login(client)
    import api.routes_cdr as routes

    old = routes.PAGE_SIZE
    routes.PAGE_SIZE = 3
    try:
        r = await client.get("/cdrs")
        older = re.search(r'href="(/cdrs\?before=\d+)"', r.text)
        assert older is not None
        r2 = await client.get(older.group(1).replace("&amp;", "&"))
        assert "A12040315245291803" in r2.text and "A12041210311334803" not in r2.text
        assert "Newer" in r2.text
    finally:
        routes.PAGE_SIZE = old


async def test_start_billing_button_and_archives(client, db) -> None:
    await brochure_history(db)
    await login(client)
    r = await client.post("/billing/run", follow_redirects=False)
    assert r.status_code == 403  # no CSRF token
    r = await client.post("/billing/run", data={"_csrf_token": csrf(client)},
                          follow_redirects=True)
    assert r.status_code == 200
    assert "Archived billing" in r.text and "written: 2 users, 6 lines" in r.text
    names = re.findall(r'href="/billing/files/(BILLING_[0-9_]+\.csv)"', r.text)
    assert len(names) == 2 and names[1] == "BILLING_20120403_151812.csv"
    f = await client.get(f"/billing/files/{names[1]}")
    assert f.status_code == 200 and "attachment" in f.headers["content-disposition"]
    assert f.text.startswith('"User number : 1001"\n')
    assert (await client.get("/billing/files/BILLING_20990101_000000.csv")).status_code == 404
    assert (await client.get("/billing/files/..%2Fsecret.key")).status_code == 404


async def test_rest_cdrs(client, db) -> None:
    await brochure_history(db)
    h = await api_key()
    r = await client.get("/api/v1/cdrs", headers=h, params={"limit": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [i["call_id"] for i in body["items"]] == ["A12041210311334803", "A12041210301046701"]
    assert body["items"][1]["money"] == "2.26" and body["currency"] == "Euros"
    assert body["newer"] is None and body["older"] is not None
    r = await client.get("/api/v1/cdrs", headers=h, params={"limit": 2, "before": body["older"]})
    assert [i["date"] for i in r.json()["items"]] == ["20120412_102901", "20120403_152503"]
    assert r.json()["older"] is None
    r = await client.get("/api/v1/cdrs", headers=h, params={"from": "2012-04-12", "user": "1001"})
    assert len(r.json()["items"]) == 2
    r = await client.get("/api/v1/cdrs", headers=h, params={"from": "nope"})
    assert r.status_code == 422 and r.json()["field"] == "from"
    r = await client.get("/api/v1/cdrs/export.csv", headers=h)
    assert r.status_code == 200 and r.text == BROCHURE_CDRS


async def test_rest_billing_runs(client, db) -> None:
    await brochure_history(db)
    h = await api_key()
    r = await client.get("/api/v1/billing/runs", headers=h)
    assert [run["filename"] for run in r.json()] == ["BILLING_20120403_151812.csv"]
    # The brochure's second statement, through the API's run (time fixed by the fixture's
    # clock is not possible over HTTP: compare everything but the file name).
    before = datetime.now(PARIS).replace(microsecond=0)
    r = await client.post("/api/v1/billing/runs", headers=h)
    after = datetime.now(PARIS)
    assert r.status_code == 201, r.text
    run = r.json()
    # the file is named for the run's start, in the operator's time zone (Paris)
    named = re.fullmatch(r"BILLING_(\d{8}_\d{6})\.csv", run["filename"])
    assert named, run["filename"]
    started = datetime.strptime(named[1], "%Y%m%d_%H%M%S").replace(tzinfo=PARIS)
    assert before <= started <= after, (before, started, after)
    assert (run["status"], run["accounts"], run["lines"]) == ("done", 2, 6)
    f = await client.get(run["download"], headers=h)
    assert f.status_code == 200 and f.text == GOLDEN_COLON
    assert (await client.get(f"/api/v1/billing/runs/{run['id']}", headers=h)).json() == run
    assert (await client.get("/api/v1/billing/runs/999", headers=h)).status_code == 404
    assert (await client.get("/api/v1/billing/runs/999/file", headers=h)).status_code == 404


async def test_openapi_lists_cdr_and_billing(client, db) -> None:
    h = await api_key()
    r = await client.get("/schema/openapi.json", headers=h)
    assert r.status_code == 200, r.text
    paths = r.json()["paths"]
    for path in ("/api/v1/cdrs", "/api/v1/cdrs/export.csv", "/api/v1/billing/runs",
                 "/api/v1/billing/runs/{run_id}", "/api/v1/billing/runs/{run_id}/file"):
        assert path in paths, sorted(paths)
    params = {p["name"] for p in paths["/api/v1/cdrs"]["get"]["parameters"]}
    assert {"from", "to", "user", "prefix", "limit", "before", "after"} <= params
