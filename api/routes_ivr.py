"""IVR operator tools: the Users page's "IVR access" card (ask the PIN even from a registered
caller ID; unlock a caller locked out after failed PINs), the CDR call detail with the
call's service log, and the same over REST (/api/v1/ivr/...).

Kept apart from the Users and CDR page modules: the user page loads the card with htmx
(`/users/{number}/ivr`), and the CDR table links each call to `/cdrs/{id}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, delete, get, post, put
from litestar.exceptions import NotFoundException
from litestar.response import Redirect, Template

from api.errors import ApiError
from api.templating import render_page
from api.web import flash, form_dict, page_context
from ivr_bridge import lockout_store, servicelog_store
from ocs import accounts
from ocs.models import Account, Cdr
from ocs.settings_store import load_operator_settings


async def _account(number: str) -> Account:
    try:
        return await accounts.get_account(number)
    except accounts.UnknownAccount:
        raise NotFoundException(f"No user {number}.") from None


async def _card_context(account: Account) -> dict[str, Any]:
    callers = await accounts.caller_ids(account.id)
    return {
        "account": account,
        "callers": callers,
        "locks": await lockout_store.locks(callers) if callers else [],
    }


# --- Users page card ---------------------------------------------------------------------


@get("/users/{number:str}/ivr", include_in_schema=False)
async def ivr_card(request: Request[Any, Any, Any], number: str) -> Template:
    """The "IVR access" card of a user page (loaded into the page by htmx)."""
    context = await page_context(request, "users")
    context.update(await _card_context(await _account(number)))
    return render_page(request, "_ivr_access.html", context)


@post("/users/{number:str}/ivr", include_in_schema=False, status_code=303)
async def ivr_card_save(request: Request[Any, Any, Any], number: str) -> Redirect:
    account = await _account(number)
    form = await form_dict(request)
    account.ivr_pin_required = bool(form.get("ivr_pin_required"))
    await account.save(update_fields=["ivr_pin_required"])
    state = "asks for the PIN" if account.ivr_pin_required else "recognises the caller ID"
    flash(request, f"IVR access saved: the access number {state} for user {number}.")
    return Redirect(f"/users/{number}#ivr-access", status_code=303)


@post("/users/{number:str}/ivr/unlock", include_in_schema=False, status_code=303)
async def ivr_unlock(request: Request[Any, Any, Any], number: str) -> Redirect:
    await _account(number)
    caller = (await form_dict(request)).get("caller", "").strip()
    if not caller:
        flash(request, "Give the caller number to unlock.", "error")
    elif await lockout_store.unlock(caller):
        flash(request, f"Caller {caller} unlocked: PIN entry allowed again.")
    else:
        flash(request, f"Caller {caller} was not locked out.")
    return Redirect(f"/users/{number}#ivr-access", status_code=303)


# --- CDR call detail ----------------------------------------------------------------------


@get("/cdrs/{cdr_id:int}", include_in_schema=False)
async def cdr_detail(request: Request[Any, Any, Any], cdr_id: int) -> Template:
    """One call: its CDR and the IVR service log of its SIP call (every dialog step)."""
    row = await Cdr.get_or_none(id=cdr_id)
    if row is None:
        raise NotFoundException(f"No CDR {cdr_id}.")
    context = await page_context(request, "cdr")
    lines = await servicelog_store.lines_for_call(row.call_id) if row.call_id else []
    context.update({"cdr": row, "lines": lines})
    return render_page(request, "cdr_detail.html", context)


# --- REST --------------------------------------------------------------------------------


@dataclass
class LockOut:
    caller: str
    locked_until: str
    failures: int


@dataclass
class IvrAccountIn:
    pin_required: bool


@dataclass
class IvrAccountOut:
    number: str
    pin_required: bool


class IvrController(Controller):
    path = "/api/v1/ivr"
    tags = ["ivr"]

    @get("/lockouts")
    async def list_lockouts(self) -> list[LockOut]:
        """Caller IDs currently locked out of PIN / voucher entry."""
        return [
            LockOut(lock.caller, lock.locked_until.isoformat(), lock.failures)
            for lock in await lockout_store.locks()
        ]

    @delete("/lockouts/{caller:str}", status_code=204)
    async def unlock(self, caller: str) -> None:
        """Unlock a caller ID (forget its lock and failed attempts)."""
        if not await lockout_store.unlock(caller):
            raise ApiError(404, "not_found", f"caller {caller} is not locked out", "caller")

    @put("/accounts/{number:str}")
    async def set_account(self, number: str, data: IvrAccountIn) -> IvrAccountOut:
        """`pin_required`: the access number asks this account's PIN even when it
        recognises the caller ID (anti-spoofing)."""
        try:
            account = await accounts.get_account(number)
        except accounts.UnknownAccount:
            raise ApiError(404, "not_found", f"no account {number}", "number") from None
        account.ivr_pin_required = data.pin_required
        await account.save(update_fields=["ivr_pin_required"])
        return IvrAccountOut(account.number, account.ivr_pin_required)

    @get("/calls/{call_id:str}/log")
    async def call_log(self, call_id: str) -> list[dict[str, Any]]:
        """The service log of one SIP call (its Call-ID, as in the CDR), step by step."""
        ops = await load_operator_settings()
        lines = await servicelog_store.lines_for_call(call_id)
        if not lines:
            raise ApiError(404, "not_found", f"no service log for call {call_id}")
        return [{**line, "at": line["at"].astimezone(ops.tz).isoformat()} for line in lines]


ROUTES: list[Any] = [ivr_card, ivr_card_save, ivr_unlock, cdr_detail, IvrController]
