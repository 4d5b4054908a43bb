"""Who may reach what: admin browser sessions for pages, API keys for /api, CSRF for forms.

One app-level guard decides from the path (and a handler's ``opt["auth"]``):
``public`` (login, static), ``api`` (API key only), ``either`` (/schema, /metrics: key or
session) and ``session`` (everything else).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from litestar import Request, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.response import Redirect, Template

from api import sessions
from api.templating import render_page
from api.web import flash, form_dict, page_context
from ocs import admin_auth, apikeys

SESSION_MAX_AGE = 12 * 3600
SESSION_STORE = "web_sessions"


def load_secret(data_dir: Path, name: str = "web.key") -> bytes:
    """A 32-byte secret kept in the data dir (mode 0600), created on first use."""
    path = data_dir / name
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data[:32]
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    data = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return data


def session_config(*, secure: bool = False) -> ServerSideSessionConfig:
    """`secure`: the cookie is only sent over HTTPS (set when the server itself speaks TLS)."""
    return sessions.OcsSessionConfig(
        key="ocs_session",
        store=SESSION_STORE,
        max_age=SESSION_MAX_AGE,
        httponly=True,
        samesite="lax",
        secure=secure,
        renew_on_access=True,
    )


def policy(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> str:
    explicit = handler.opt.get("auth")
    if explicit:
        return str(explicit)
    path = connection.scope["path"]
    if path.startswith("/api/") or path == "/api":
        return "api"
    if path.startswith("/schema") or path == "/metrics":
        return "either"
    return "session"


def presented_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    key = connection.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = connection.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


async def session_ok(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    if "session" not in connection.scope:
        return False
    session = connection.session
    if not session.get("admin"):
        return False
    # The password fingerprint at login must still be current: changing the password
    # (web or CLI) ends every other session.
    tag = admin_auth.password_tag(await admin_auth.password_record())
    return bool(tag) and session.get("tag") == tag


async def auth_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    rule = policy(connection, handler)
    if rule == "public":
        return
    if rule in ("api", "either"):
        key = presented_key(connection)
        if key is not None:
            record = await apikeys.verify_key(key)
            if record is None:
                raise NotAuthorizedException("invalid or revoked API key")
            connection.state.api_key = record
            return
        if rule == "api":
            raise NotAuthorizedException("missing API key (X-API-Key or Authorization: Bearer)")
    if not await session_ok(connection):
        raise NotAuthorizedException("login required")


def _safe_next(target: str | None) -> str:
    if not target:
        return "/users"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/users"
    return target


async def _start_session(request: Request[Any, Any, Any]) -> None:
    sessions.rotate(request)  # a new id at login: an id known before it is worthless
    request.clear_session()
    request.set_session(
        {"admin": True, "tag": admin_auth.password_tag(await admin_auth.password_record())}
    )


@get("/login", opt={"auth": "public"}, include_in_schema=False)
async def login_page(request: Request[Any, Any, Any], next: str | None = None) -> Template:
    context = await page_context(request)
    context.update(
        {"setup": not await admin_auth.has_password(), "next": _safe_next(next), "error": ""}
    )
    return render_page(request, "login.html", context)


@post("/login", opt={"auth": "public"}, include_in_schema=False, status_code=303)
async def login_submit(request: Request[Any, Any, Any]) -> Template | Redirect:
    form = await form_dict(request)
    target = _safe_next(form.get("next"))
    password = form.get("password", "")
    context = await page_context(request)
    context.update({"next": target, "setup": False, "error": ""})
    if not await admin_auth.has_password():
        # First run: the login page sets the admin password.
        context["setup"] = True
        if password != form.get("confirm", ""):
            context["error"] = "The two passwords differ."
            return render_page(request, "login.html", context, status=400)
        try:
            await admin_auth.set_password(password)
        except admin_auth.PasswordError as exc:
            context["error"] = str(exc).capitalize() + "."
            return render_page(request, "login.html", context, status=400)
        await _start_session(request)
        flash(request, "Admin password set. Welcome!")
        return Redirect("/config", status_code=303)
    if not await admin_auth.check_password(password):
        await asyncio.sleep(0.5)  # slows guessing
        context["error"] = "Wrong password."
        return render_page(request, "login.html", context, status=401)
    await _start_session(request)
    return Redirect(target, status_code=303)


@post("/logout", include_in_schema=False, status_code=303)
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    request.clear_session()
    return Redirect("/login", status_code=303)


ROUTES: list[Any] = [login_page, login_submit, logout]
