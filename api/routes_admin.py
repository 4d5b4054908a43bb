"""Operators, API keys, the audit log (pages + REST) and the operator's own password.

Roles (api.permissions): /operators and /apikeys are admin-only, reading the audit log is
open to every role, and every operator may change their own password on /account.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromQuery, QueryParameter
from litestar.response import Redirect, Template

from api.auth import audit_log, client_address, current_operator, start_session
from api.errors import ApiError
from api.templating import render_page
from api.web import flash, form_dict, page_context
from ocs import admin_auth, apikeys, audit, login_throttle, operators
from ocs.cdr import parse_local_date
from ocs.models import AuditEntry
from ocs.settings_store import OperatorSettings, load_operator_settings

PAGE_SIZE = 50

# --- operators (admin) -------------------------------------------------------------------------


async def _operators_page(request: Request[Any, Any, Any], *, error: str = "",
                          error_field: str = "", values: dict[str, str] | None = None,
                          status: int = 200) -> Template:
    context = await page_context(request, "operators")
    context.update({"operators": await operators.list_operators(), "roles": operators.ROLES,
                    "error": error, "error_field": error_field,
                    "values": values or {"role": "operator"}})
    return render_page(request, "operators.html", context, status=status)


@get("/operators", include_in_schema=False)
async def operators_page(request: Request[Any, Any, Any]) -> Template:
    return await _operators_page(request)


@post("/operators", include_in_schema=False, status_code=303)
async def operator_create(request: Request[Any, Any, Any]) -> Template | Redirect:
    form = await form_dict(request)
    shown = {"name": form.get("name", ""), "role": form.get("role", "")}
    if form.get("password", "") != form.get("confirm", ""):
        return await _operators_page(request, error="The two passwords differ.",
                                     error_field="password", values=shown, status=422)
    try:
        row = await operators.create(form.get("name", ""), form.get("password", ""),
                                     form.get("role", ""))
    except operators.OperatorError as exc:
        return await _operators_page(request, error=str(exc).capitalize() + ".",
                                     error_field=exc.field, values=shown, status=422)
    except admin_auth.PasswordError as exc:
        return await _operators_page(request, error=str(exc).capitalize() + ".",
                                     error_field="password", values=shown, status=422)
    await audit_log(request, "operator.create", f"operator {row.name}", {"role": row.role.value})
    flash(request, f"Operator {row.name} ({row.role.value}) created.")
    return Redirect("/operators", status_code=303)


async def _operator_change(request: Request[Any, Any, Any], name: str, action: str,
                           change: Any, details: dict[str, Any], done: str) -> Redirect:
    try:
        row = await change
    except operators.UnknownOperator:
        raise NotFoundException(f"No operator {name}.") from None
    except (operators.OperatorError, admin_auth.PasswordError) as exc:
        flash(request, f"Not changed: {exc}.", "error")
        return Redirect("/operators", status_code=303)
    await audit_log(request, action, f"operator {row.name}", details)
    me = current_operator(request)
    if me is not None and me.id == row.id and action == "operator.password":
        start_session(request, row)  # keep this browser logged in under the new password
    flash(request, done.format(name=row.name))
    return Redirect("/operators", status_code=303)


@post("/operators/{name:str}/role", include_in_schema=False, status_code=303)
async def operator_role(request: Request[Any, Any, Any], name: str) -> Redirect:
    form = await form_dict(request)
    role = form.get("role", "")
    return await _operator_change(request, name, "operator.role",
                                  operators.set_role(name, role), {"role": role},
                                  f"{{name}} is now {role}.")


@post("/operators/{name:str}/password", include_in_schema=False, status_code=303)
async def operator_password(request: Request[Any, Any, Any], name: str) -> Redirect:
    form = await form_dict(request)
    if form.get("password", "") != form.get("confirm", ""):
        flash(request, "Not changed: the two passwords differ.", "error")
        return Redirect("/operators", status_code=303)
    return await _operator_change(request, name, "operator.password",
                                  operators.set_password(name, form.get("password", "")), {},
                                  "Password of {name} changed; their other sessions ended.")


@post("/operators/{name:str}/disable", include_in_schema=False, status_code=303)
async def operator_disable(request: Request[Any, Any, Any], name: str) -> Redirect:
    me = current_operator(request)
    if me is not None and me.name == name:
        flash(request, "You cannot disable your own account.", "error")
        return Redirect("/operators", status_code=303)
    return await _operator_change(request, name, "operator.disable",
                                  operators.set_disabled(name, True), {},
                                  "{name} is disabled; their sessions ended.")


@post("/operators/{name:str}/enable", include_in_schema=False, status_code=303)
async def operator_enable(request: Request[Any, Any, Any], name: str) -> Redirect:
    return await _operator_change(request, name, "operator.enable",
                                  operators.set_disabled(name, False), {}, "{name} is enabled.")


# --- own password (every role) -------------------------------------------------------------


@get("/account", include_in_schema=False)
async def account_page(request: Request[Any, Any, Any]) -> Template:
    context = await page_context(request, "account")
    context.update({"error": ""})
    return render_page(request, "account.html", context)


@post("/account/password", opt={"role": "readonly"}, include_in_schema=False, status_code=303)
async def account_password(request: Request[Any, Any, Any]) -> Template | Redirect:
    me = current_operator(request)
    if me is None:  # an API key cannot have a password
        raise NotFoundException("No operator session.")
    form = await form_dict(request)
    context = await page_context(request, "account")
    error, status = "", 422
    address = client_address(request)
    decision = await login_throttle.default.acquire(me.name, address)
    if not decision.allowed:
        error, status = (f"Too many attempts; try again in {decision.retry_after} seconds.",
                         429)
    elif await operators.authenticate(me.name, form.get("current", "")) is None:
        error = "The current password is wrong."
    elif form.get("password", "") != form.get("confirm", ""):
        error = "The two new passwords differ."
    else:
        await login_throttle.default.succeeded(me.name, address)
        try:
            row = await operators.set_password(me.name, form.get("password", ""))
        except admin_auth.PasswordError as exc:
            error = str(exc).capitalize() + "."
        else:
            start_session(request, row)  # new id; other browsers of this operator log out
            await audit_log(request, "operator.password", f"operator {row.name}")
            flash(request, "Your password has been changed.")
            return Redirect("/account", status_code=303)
    context["error"] = error
    headers = {"Retry-After": str(decision.retry_after)} if status == 429 else None
    return render_page(request, "account.html", context, status=status, headers=headers)


# --- API keys (admin) --------------------------------------------------------------------------


async def _apikeys_page(request: Request[Any, Any, Any], *, new_key: str = "", error: str = "",
                        status: int = 200) -> Template:
    context = await page_context(request, "apikeys")
    context.update({"keys": await apikeys.list_keys(), "roles": operators.ROLES,
                    "new_key": new_key, "error": error})
    return render_page(request, "apikeys.html", context, status=status)


@get("/apikeys", include_in_schema=False)
async def apikeys_page(request: Request[Any, Any, Any]) -> Template:
    return await _apikeys_page(request)


@post("/apikeys", include_in_schema=False, status_code=201)
async def apikey_create(request: Request[Any, Any, Any]) -> Template:
    """The new key is shown in this response only (never stored in clear, nor in a flash)."""
    form = await form_dict(request)
    try:
        new = await apikeys.create_key(form.get("name", ""), form.get("role", "operator"))
    except apikeys.ApiKeyError as exc:
        return await _apikeys_page(request, error=str(exc).capitalize() + ".", status=422)
    await audit_log(request, "apikey.create", f"api key {new.record.prefix}",
                    {"name": new.record.name, "role": new.record.role.value})
    return await _apikeys_page(request, new_key=new.key, status=201)


@post("/apikeys/{prefix:str}/revoke", include_in_schema=False, status_code=303)
async def apikey_revoke(request: Request[Any, Any, Any], prefix: str) -> Redirect:
    record = await apikeys.revoke(prefix)
    if record is None:
        flash(request, "No active key with that prefix.", "error")
    else:
        await audit_log(request, "apikey.revoke", f"api key {record.prefix}",
                        {"name": record.name})
        flash(request, f"API key {record.prefix} ({record.name}) revoked.")
    return Redirect("/apikeys", status_code=303)


# --- audit log (every role may read) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _AuditQuery:
    actor: str = ""
    action: str = ""
    target: str = ""
    since: str = ""
    until: str = ""

    def filter(self, ops: OperatorSettings) -> audit.AuditFilter:
        try:
            since = parse_local_date(self.since, ops.tz) if self.since.strip() else None
        except ValueError as exc:
            raise ApiError(422, "invalid", str(exc), "from") from None
        try:
            until = (parse_local_date(self.until, ops.tz, end=True) if self.until.strip()
                     else None)
        except ValueError as exc:
            raise ApiError(422, "invalid", str(exc), "to") from None
        return audit.AuditFilter(actor=self.actor.strip(), action=self.action.strip(),
                                 target=self.target.strip(), since=since, until=until)

    def params(self, **extra: Any) -> str:
        items = {"actor": self.actor, "action": self.action, "target": self.target,
                 "from": self.since, "to": self.until}
        items.update({k: v for k, v in extra.items() if v is not None})
        return urlencode({k: v for k, v in items.items() if v not in ("", None)})


FromParam = Annotated[str, QueryParameter(name="from", description="local date/time")]
ToParam = Annotated[str, QueryParameter(name="to", description="local date/time")]


@get("/audit", include_in_schema=False)
async def audit_page(
    request: Request[Any, Any, Any],
    actor: FromQuery[str] = "",
    action: FromQuery[str] = "",
    target: FromQuery[str] = "",
    since: FromParam = "",
    until: ToParam = "",
    before: FromQuery[int | None] = None,
    after: FromQuery[int | None] = None,
) -> Template:
    context = await page_context(request, "audit")
    query = _AuditQuery(actor, action, target, since, until)
    error = ""
    try:
        flt = query.filter(context["ops"])
    except ApiError as exc:
        error = exc.detail
        flt = audit.AuditFilter(actor=actor.strip(), action=action.strip(),
                                target=target.strip())
    page = await audit.query(flt, limit=PAGE_SIZE, before=before, after=after)
    context.update({
        "entries": page.items, "q": query, "error": error,
        "actors": await audit.actors(), "actions": (actions := await audit.actions()),
        "action_groups": sorted({a.split(".")[0] + "." for a in actions if "." in a}),
        "older_link": f"/audit?{query.params(before=page.older)}" if page.older else "",
        "newer_link": f"/audit?{query.params(after=page.newer)}" if page.newer else "",
    })
    return render_page(request, "audit.html", context)


@dataclass
class AuditEntryOut:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any] | None
    address: str


@dataclass
class AuditList:
    items: list[AuditEntryOut]
    limit: int
    older: int | None  # pass as `before` for the next (older) page
    newer: int | None  # pass as `after` for the previous (newer) page


def _entry_out(e: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(e.id, e.at, e.actor, e.action, e.target, e.details, e.address)


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ["audit"]

    @get("/")
    async def list_entries(
        self,
        actor: FromQuery[str] = "",
        action: FromQuery[str] = "",
        target: FromQuery[str] = "",
        since: FromParam = "",
        until: ToParam = "",
        limit: Annotated[int, QueryParameter(ge=1, le=audit.MAX_PAGE)] = PAGE_SIZE,
        before: FromQuery[int | None] = None,
        after: FromQuery[int | None] = None,
    ) -> AuditList:
        """The audit log, newest first: who changed what and when. Filters: `actor` (exact),
        `action` (exact, or a prefix ending in `.` such as `credit.`), `target` (substring),
        `from`/`to` (operator time zone unless an offset is given). Keyset paging: follow
        `older` with `before=`, `newer` with `after=`."""
        ops = await load_operator_settings()
        flt = _AuditQuery(actor, action, target, since, until).filter(ops)
        page = await audit.query(flt, limit=limit, before=before, after=after)
        return AuditList([_entry_out(e) for e in page.items], page.limit, page.older, page.newer)


ROUTES: list[Any] = [
    operators_page, operator_create, operator_role, operator_password, operator_disable,
    operator_enable, account_page, account_password, apikeys_page, apikey_create,
    apikey_revoke, audit_page, AuditController,
]
