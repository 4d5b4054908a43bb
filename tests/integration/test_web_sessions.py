"""Browser sessions, security headers and HTTPS (issue 13, items 10, 13 and 14)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Request, get
from litestar.stores.file import FileStore

from api.security_headers import DOCS_CSP, PAGE_CSP
from api.server import start_web
from ocs import admin_auth
from ocs.config import ConfigError, Settings, load_settings
from ocs.events import EventBus
from ocs.runtime import ServeContext
from tests.conftest import unavailable
from tests.integration.web_support import Browser, RecordingControl, asgi_client

PASSWORD = "correct horse battery"


@pytest.fixture
async def ctx(db: Settings) -> ServeContext:
    return ServeContext(settings=db, bus=EventBus(), sessions=RecordingControl())


@pytest.fixture
async def anon(ctx: ServeContext) -> AsyncIterator[Browser]:
    await admin_auth.set_password(PASSWORD)
    async with asgi_client(ctx) as c:
        yield Browser(c)


def session_files(settings: Settings) -> list[Path]:
    folder = settings.data_dir / "web_sessions"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def set_cookie(r: httpx.Response, name: str) -> str | None:
    for header in r.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return header
    return None


async def wait_for(predicate: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


# --- item 13: no session for anonymous requests, expired ones deleted ---------------------


async def test_anonymous_requests_write_no_session(anon: Browser, ctx: ServeContext) -> None:
    for path in ["/healthz", "/login", "/static/style.css", "/users", "/nowhere", "/schema"]:
        r = await anon.client.get(path)
        assert set_cookie(r, "ocs_session") is None, path
    r = await anon.post("/login", {"username": "admin", "password": "wrong password!"})
    assert r.status_code in (401, 429)
    assert session_files(ctx.settings) == []


async def test_logout_deletes_the_session_file(anon: Browser, ctx: ServeContext) -> None:
    r = await anon.login("admin", PASSWORD)
    assert r.status_code == 303
    assert len(session_files(ctx.settings)) == 1
    r = await anon.post("/logout")
    assert r.status_code == 303
    assert session_files(ctx.settings) == []
    assert (await anon.client.get("/users")).status_code == 303


async def test_expired_session_files_are_deleted(db: Settings) -> None:
    store = FileStore(db.data_dir / "web_sessions", create_directories=True)
    await store.set("expired-session", b"{}", expires_in=-60)
    await store.set("live-session", b"{}", expires_in=3600)
    assert len(session_files(db)) == 2
    part = await start_web(ServeContext(settings=db, bus=EventBus()))
    try:
        await wait_for(lambda: len(session_files(db)) == 1)
        assert await store.exists("live-session")
        assert not await store.exists("expired-session")
    finally:
        await part.stop()


# --- item 10: session fixation ---------------------------------------------------------------


async def test_a_planted_session_id_is_not_adopted_at_login(ctx: ServeContext) -> None:
    await admin_auth.set_password(PASSWORD)
    planted = "a" * 64
    async with asgi_client(ctx) as victim_client, asgi_client(ctx) as attacker_client:
        victim = Browser(victim_client)
        victim_client.cookies.set("ocs_session", planted)
        r = await victim.login("admin", PASSWORD)
        assert r.status_code == 303
        issued = set_cookie(r, "ocs_session")
        assert issued is not None and planted not in issued
        assert (await victim.client.get("/users")).status_code == 200
        attacker_client.cookies.set("ocs_session", planted)
        assert (await attacker_client.get("/users")).status_code == 303  # not logged in


@get("/remember", opt={"auth": "public"}, include_in_schema=False)
async def remember(request: Request[Any, Any, Any]) -> str:
    """A page that keeps something in an anonymous session (as a flash message would)."""
    request.session["seen"] = True
    return "ok"


async def test_an_unknown_session_id_is_never_adopted(ctx: ServeContext) -> None:
    planted = "b" * 64
    async with asgi_client(ctx, extra_routes=[remember]) as c:
        c.cookies.set("ocs_session", planted)
        r = await c.get("/remember")
        issued = set_cookie(r, "ocs_session")
        assert issued is not None and planted not in issued
    store = FileStore(ctx.settings.data_dir / "web_sessions")
    assert not await store.exists(planted)


async def test_login_rotates_an_existing_session_id(anon: Browser, ctx: ServeContext) -> None:
    r = await anon.login("admin", PASSWORD)
    assert r.status_code == 303
    first = anon.client.cookies["ocs_session"]
    r = await anon.login("admin", PASSWORD)  # log in again from a logged-in browser
    assert r.status_code == 303
    second = anon.client.cookies["ocs_session"]
    assert second != first
    assert (await anon.client.get("/users")).status_code == 200
    for cookie, status in [(first, 303), (second, 200)]:  # the old id is dead
        async with asgi_client(ctx) as other:
            other.cookies.set("ocs_session", cookie)
            assert (await other.get("/users")).status_code == status


# --- item 14: headers, cookie flags, HTTPS ---------------------------------------------------


async def test_security_headers_on_pages_errors_and_docs(anon: Browser) -> None:
    for path in ["/login", "/nowhere", "/static/style.css", "/healthz"]:
        r = await anon.client.get(path)
        assert r.headers["content-security-policy"] == PAGE_CSP, path
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
        assert "strict-transport-security" not in r.headers  # plain HTTP
    assert "unsafe-inline" not in PAGE_CSP and "unsafe-eval" not in PAGE_CSP
    assert "frame-ancestors 'none'" in PAGE_CSP
    r = await anon.login("admin", PASSWORD)
    r = await anon.client.get("/schema")
    assert r.headers["content-security-policy"] == DOCS_CSP


async def test_templates_have_no_inline_script_style_or_handlers() -> None:
    """The page CSP forbids them; a template that used one would silently break."""
    import re

    folder = Path(__file__).resolve().parents[2] / "api" / "templates"
    bad = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=|javascript:",
                     re.IGNORECASE)
    offenders = [f"{p.name}: {m.group(0)}" for p in sorted(folder.glob("*.html"))
                 for m in bad.finditer(p.read_text())]
    assert offenders == []


def make_certificate(folder: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        unavailable("openssl")
    cert, key = folder / "web.crt", folder / "web.key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


async def test_https_with_secure_cookies(settings: Settings, tmp_path: Path) -> None:
    from ocs import db as ocs_db

    cert, key = make_certificate(tmp_path)
    tls = load_settings({"OCS_DATA_DIR": str(settings.data_dir),
                         "OCS_DATABASE_URL": settings.database_url, "OCS_WEB_PORT": "0",
                         "OCS_WEB_TLS_CERT": str(cert), "OCS_WEB_TLS_KEY": str(key)})
    assert tls.web_tls
    await ocs_db.init_db(tls)
    try:
        await admin_auth.set_password(PASSWORD)
        part = await start_web(ServeContext(settings=tls, bus=EventBus()))
        base = f"https://127.0.0.1:{part.port}"  # type: ignore[attr-defined]
        try:
            trust = ssl.create_default_context(cafile=str(cert))
            async with httpx.AsyncClient(base_url=base, verify=trust) as c:
                browser = Browser(c)
                r = await browser.get("/login")
                assert r.status_code == 200
                assert r.headers["strict-transport-security"].startswith("max-age=")
                csrf = set_cookie(r, "ocs_csrf")
                assert csrf is not None and "Secure" in csrf
                r = await browser.login("admin", PASSWORD)
                assert r.status_code == 303
                session = set_cookie(r, "ocs_session")
                assert session is not None and "Secure" in session and "HttpOnly" in session
                assert (await c.get("/users")).status_code == 200
            async with httpx.AsyncClient(base_url=base.replace("https", "http")) as plain:
                with pytest.raises(httpx.HTTPError):
                    await plain.get("/login")
        finally:
            await part.stop()
    finally:
        await ocs_db.close_db()


async def test_plain_http_cookies_are_not_secure(anon: Browser) -> None:
    r = await anon.get("/login")
    csrf = set_cookie(r, "ocs_csrf")
    assert csrf is not None and "Secure" not in csrf


def test_tls_settings_are_validated(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    base = {"OCS_DATA_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match="together"):
        load_settings({**base, "OCS_WEB_TLS_CERT": str(cert)})
    with pytest.raises(ConfigError, match="no such file"):
        load_settings({**base, "OCS_WEB_TLS_CERT": str(cert),
                       "OCS_WEB_TLS_KEY": str(tmp_path / "missing.pem")})
    assert not load_settings(base).web_tls
