"""Who may reach what: operator browser sessions for pages, API keys for /api, CSRF for forms.

One app-level guard decides from the path (and a handler's ``opt["auth"]``):
``public`` (login, static), ``api`` (API key only), ``either`` (/schema, /metrics: key or
session) and ``session`` (everything else). Then the caller's role (the operator's, or the
API key's) must be at least what `api.permissions.required_role` asks for this request.

Login checks `ocs.login_throttle` first (429 + Retry-After when a limit is reached), runs
scrypt in a worker thread (`ocs.operators`), and starts a session with a new id.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from litestar import Request, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.response import Redirect, Template

from api import permissions, sessions
from api.templating import render_page
from api.web import flash, form_dict, page_context
from ocs import admin_auth, apikeys, audit, login_throttle, operators
from ocs.models import ApiKey, Operator, OperatorRole

SESSION_MAX_AGE = 12 * 3600
SESSION_STORE = "web_sessions"
OPERATOR_STATE = "operator"  # connection.state attribute: the logged-in Operator row
API_KEY_STATE = "api_key"  # connection.state attribute: the ApiKey row of a REST call


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


async def session_operator(connection: ASGIConnection[Any, Any, Any, Any]) -> Operator | None:
    """The operator this browser session belongs to, if it is still valid: the operator
    exists, is enabled, and has not changed password since (the session's tag)."""
    if "session" not in connection.scope:
        return None
    session = connection.session
    op_id = session.get("op")
    if not isinstance(op_id, int):
        return None
    row = await Operator.get_or_none(id=op_id)
    if row is None or row.disabled:
        return None
    tag = operators.session_tag(row)
    return row if tag and session.get("tag") == tag else None


async def session_ok(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    return await session_operator(connection) is not None


async def auth_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    rule = policy(connection, handler)
    if rule == "public":
        return
    role: OperatorRole | None = None
    if rule in ("api", "either"):
        key = presented_key(connection)
        if key is not None:
            record = await apikeys.verify_key(key)
            if record is None:
                raise NotAuthorizedException("invalid or revoked API key")
            setattr(connection.state, API_KEY_STATE, record)
            role = OperatorRole(record.role)
        elif rule == "api":
            raise NotAuthorizedException("missing API key (X-API-Key or Authorization: Bearer)")
    if role is None:
        operator = await session_operator(connection)
        if operator is None:
            raise NotAuthorizedException("login required")
        setattr(connection.state, OPERATOR_STATE, operator)
        role = OperatorRole(operator.role)
    method = str(connection.scope.get("method", "GET"))  # websockets have none: a read
    needed = permissions.required_role(method, connection.scope["path"], handler.opt)
    if not permissions.allows(role, needed):
        raise PermissionDeniedException(
            f"Your role ({role.value}) may not do this; it needs the {needed.value} role."
        )


# --- who did it (audit, ledger actor) --------------------------------------------------------


def current_operator(request: ASGIConnection[Any, Any, Any, Any]) -> Operator | None:
    row = getattr(request.state, OPERATOR_STATE, None)
    return row if isinstance(row, Operator) else None


def actor(request: ASGIConnection[Any, Any, Any, Any]) -> str:
    """Who is acting, for the audit log and the ledger's `actor` column: the operator's
    name, or ``api:<key name>``."""
    key = getattr(request.state, API_KEY_STATE, None)
    if isinstance(key, ApiKey):
        return f"api:{key.name}"[:64]
    row = current_operator(request)
    return row.name if row is not None else "unknown"


def client_address(request: ASGIConnection[Any, Any, Any, Any]) -> str:
    client = request.client
    return client.host if client is not None else ""


async def audit_log(
    request: ASGIConnection[Any, Any, Any, Any],
    action: str,
    target: str = "",
    details: Mapping[str, Any] | None = None,
) -> None:
    """`ocs.audit.record` with the actor and address taken from the request."""
    await audit.record(actor(request), action, target, details,
                       address=client_address(request))


# --- login / logout --------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    if not target:
        return "/users"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/users"
    return target


def start_session(request: Request[Any, Any, Any], operator: Operator) -> None:
    """Log `operator` in on this browser, under a new session id."""
    sessions.rotate(request)  # an id known before login is worthless after it
    request.clear_session()
    request.set_session({"op": operator.id, "tag": operators.session_tag(operator)})
    setattr(request.state, OPERATOR_STATE, operator)


@get("/login", opt={"auth": "public"}, include_in_schema=False)
async def login_page(request: Request[Any, Any, Any], next: str | None = None) -> Template:
    context = await page_context(request)
    context.update({"setup": not await operators.any_exist(), "next": _safe_next(next),
                    "error": "", "username": ""})
    return render_page(request, "login.html", context)


async def _first_run(request: Request[Any, Any, Any], form: dict[str, str],
                     context: dict[str, Any]) -> Template | Redirect:
    """No operator yet: the login page creates the first admin."""
    context["setup"] = True
    password = form.get("password", "")
    name = form.get("username", "").strip() or operators.FIRST_ADMIN
    if password != form.get("confirm", ""):
        context["error"] = "The two passwords differ."
        return render_page(request, "login.html", context, status=400)
    try:
        operator = await operators.create(name, password, OperatorRole.ADMIN)
    except (admin_auth.PasswordError, operators.OperatorError) as exc:
        context["error"] = str(exc).capitalize() + "."
        return render_page(request, "login.html", context, status=400)
    start_session(request, operator)
    await audit_log(request, "operator.create", f"operator {operator.name}",
                    {"role": operator.role.value, "first_run": True})
    flash(request, f"Admin {operator.name} created. Welcome!")
    return Redirect("/config", status_code=303)


@post("/login", opt={"auth": "public"}, include_in_schema=False, status_code=303)
async def login_submit(request: Request[Any, Any, Any]) -> Template | Redirect:
    form = await form_dict(request)
    target = _safe_next(form.get("next"))
    # Forms of the single-password versions send no name: that was the admin.
    name = form.get("username", "").strip()[:64] or operators.FIRST_ADMIN
    context = await page_context(request)
    context.update({"next": target, "setup": False, "error": "", "username": name})
    if not await operators.any_exist():
        return await _first_run(request, form, context)
    address = client_address(request)
    decision = await login_throttle.default.acquire(name, address)
    if not decision.allowed:
        context["error"] = (f"Too many login attempts; try again in "
                            f"{decision.retry_after} seconds.")
        return render_page(request, "login.html", context, status=429,
                           headers={"Retry-After": str(decision.retry_after)})
    operator = await operators.authenticate(name, form.get("password", ""))
    if operator is None:
        context["error"] = "Wrong password or name."
        return render_page(request, "login.html", context, status=401)
    await login_throttle.default.succeeded(name, address)
    start_session(request, operator)
    await audit_log(request, "auth.login", f"operator {operator.name}")
    return Redirect(target, status_code=303)


@post("/logout", opt={"role": "readonly"}, include_in_schema=False, status_code=303)
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    request.clear_session()
    return Redirect("/login", status_code=303)


ROUTES: list[Any] = [login_page, login_submit, logout]
