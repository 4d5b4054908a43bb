"""Operator pages: Config, Users (+ statement, credit, DID mapping), Costs."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Request, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import NotFoundException
from litestar.response import Redirect, Response, Template

from api import auth
from api.templating import Formatter, render_page
from api.web import flash, form_dict, page_context, rating_field
from ocs import (
    account_search,
    accounts,
    admin_auth,
    ledger,
    money,
    numbers,
    operators,
    rating,
    tariffs,
)
from ocs.models import Account, LedgerEntry
from ocs.models import Tariff as TariffRow
from ocs.settings_store import (
    PARSERS,
    SettingsError,
    load_operator_settings,
    save_operator_settings,
)

PAGE_SIZE = 50
STATEMENT_LIMIT = 200
# The Config form's checkboxes, each with the other fields of its section (fieldset). A
# browser sends no field for an unticked box, so an absent box means "off" only when the
# request carried its section (a browser always sends a section's text fields and selects);
# a partial form (a script posting `currency` alone) leaves the boxes it did not show alone.
_VOICE_FIELDS = ("default_language", "ivr_access_number", "switch_address", "switch_port",
                 "switch_timeout", "timezone", "default_calling_address")
_IVR_FIELDS = ("ivr_warning_seconds", "ivr_warning_mode", "ivr_no_answer_timeout",
               "ivr_lockout_failures", "ivr_lockout_window", "ivr_lockout_duration",
               "ivr_global_failures_per_minute")
BOOL_SECTIONS: dict[str, tuple[str, ...]] = {
    "default_calling_forced": _VOICE_FIELDS,
    "service_log": _VOICE_FIELDS,
    "ivr_one_step_access": _IVR_FIELDS,
    "ivr_caller_pin_required": _IVR_FIELDS,
    "ivr_language_menu": _IVR_FIELDS,
    "ivr_another_call": _IVR_FIELDS,
}
BOOL_SETTINGS = tuple(BOOL_SECTIONS)


def checkbox_values(form: dict[str, str]) -> dict[str, str]:
    """The Config checkboxes a form sets: ticked ones, and unticked ones of the sections
    it carried."""
    out: dict[str, str] = {}
    for name, section in BOOL_SECTIONS.items():
        if form.get(name):
            out[name] = "true"
        elif any(field in form for field in section):
            out[name] = "false"
    return out

# --- Config ---------------------------------------------------------------------------


@get("/config", include_in_schema=False)
async def config_page(request: Request[Any, Any, Any]) -> Template:
    context = await page_context(request, "config")
    context.update({"values": context["ops"].as_json(), "error_field": "", "error": ""})
    return render_page(request, "config.html", context)


@post("/config", include_in_schema=False, status_code=303)
async def config_save(request: Request[Any, Any, Any]) -> Template | Redirect:
    form = await form_dict(request)
    new_password = form.pop("new_password", "")
    confirm = form.pop("confirm_password", "")
    values = {k: v for k, v in form.items() if k in PARSERS and k not in BOOL_SECTIONS}
    values.update(checkbox_values(form))
    error_field = error = ""
    if new_password or confirm:
        if new_password != confirm:
            error_field, error = "new_password", "The two passwords differ."
        else:
            try:
                admin_auth.validate_password(new_password)
            except admin_auth.PasswordError as exc:
                error_field, error = "new_password", str(exc).capitalize() + "."
    before = (await load_operator_settings()).as_json()
    if not error:
        try:
            saved = await save_operator_settings(values)
        except SettingsError as exc:
            error_field, error = exc.field, f"{exc.message.capitalize()}."
    if error:
        context = await page_context(request, "config")
        shown = context["ops"].as_json()
        shown.update(values)
        for name in BOOL_SETTINGS:
            if name in values:
                shown[name] = values[name] == "true"
        context.update({"values": shown, "error_field": error_field, "error": error})
        return render_page(request, "config.html", context, status=422)
    after = saved.as_json()
    changed = {k: v for k, v in after.items() if before.get(k) != v}
    if changed:
        await auth.audit_log(request, "config.update", "config", changed)
    me = auth.current_operator(request)
    if new_password and me is not None:
        # The Config page's "Admin password" is the logged-in admin's own password.
        me = await operators.set_password(me.name, new_password)
        auth.start_session(request, me)
        await auth.audit_log(request, "operator.password", f"operator {me.name}")
        flash(request, "Parameters saved; your password changed.")
    else:
        flash(request, "Parameters saved.")
    return Redirect("/config", status_code=303)


# --- Users ----------------------------------------------------------------------------


def page_number(raw: str | None) -> int:
    """`?page=` as typed: anything that is not a positive whole number means page 1."""
    text = (raw or "").strip()
    return int(text) if numbers.is_ascii_digits(text) and len(text) < 10 and int(text) > 0 \
        else 1


USER_FILTERS = ("q", "caller_id", "did", "status", "sort")


@get("/users", include_in_schema=False)
async def users_page(
    request: Request[Any, Any, Any],
    q: str = "",
    caller_id: str = "",
    did: str = "",
    status: str = "",
    low: str = "",
    sort: str = "number",
    page: str = "1",
) -> Template:
    """The Users list: search (number/name, caller ID, DID; PIN through a POST so it never
    lands in a URL), filters, sorts, CSV of the list. A page past the end shows the last."""
    context = await page_context(request, "users")
    ops = context["ops"]
    query = account_search.UserQuery(q=q, caller_id=caller_id, did=did, status=status,
                                      low=bool(low), sort=sort or "number")
    params = {k: v for k, v in {"q": q, "caller_id": caller_id, "did": did, "status": status,
                                "low": "1" if low else "", "sort": sort}.items()
              if v and not (k == "sort" and v == "number")}
    error = error_field = ""
    wanted = page_number(page)
    try:
        result = await account_search.search(query, low_threshold=ops.low_credit_threshold,
                                             offset=(wanted - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        pages = max(1, -(-result.total // PAGE_SIZE))
        if wanted > pages:  # past the end: show the last page rather than an empty one
            wanted = pages
            result = await account_search.search(
                query, low_threshold=ops.low_credit_threshold,
                offset=(wanted - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    except account_search.SearchError as exc:
        error, error_field = str(exc), exc.field
        result = account_search.UserPage([], 0, 0, PAGE_SIZE)
        pages = 1

    def link(n: int, **change: str) -> str:
        items = {**params, **change}
        if n > 1:
            items["page"] = str(n)
        items = {k: v for k, v in items.items() if v}
        return "/users" + ("?" + urlencode(items) if items else "")

    def sort_link(key: str) -> str:
        current = sort or "number"
        target = f"-{key}" if current == key else key
        return link(1, sort="" if target == "number" else target)

    context.update(
        {
            "q": q, "f": {"caller_id": caller_id, "did": did, "status": status, "low": bool(low),
                          "sort": sort or "number"},
            "rows": result.rows,
            "items": [r.account for r in result.rows],
            "total": result.total,
            "page": wanted,
            "pages": pages,
            "prev_link": link(wanted - 1) if wanted > 1 else "",
            "next_link": link(wanted + 1) if wanted < pages else "",
            "first": result.offset + 1 if result.rows else 0,
            "last": result.offset + len(result.rows),
            "sort_link": sort_link,
            "export_link": "/users/list.csv" + ("?" + urlencode(params) if params else ""),
            "filtered": query.active,
            "error": error,
            "error_field": error_field,
        }
    )
    return render_page(request, "users.html", context, status=422 if error else 200)


def _account_details(form: dict[str, str]) -> dict[str, Any]:
    """What an account form set, for the audit log (the PIN only as 'changed')."""
    out: dict[str, Any] = {k: form[k] for k in ("number", "name", "language", "status")
                           if k in form}
    if "caller_ids" in form:
        out["caller_ids"] = _caller_list(form["caller_ids"])
    if form.get("pin"):
        out["pin"] = "changed"
    return out


def _tariff_details(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in ("", None)}


def _caller_list(text: str) -> list[str]:
    return [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]


@get("/users/new", include_in_schema=False)
async def user_new_page(request: Request[Any, Any, Any]) -> Template:
    context = await page_context(request, "users")
    context.update({"values": {"language": context["ops"].default_language}, "error": "",
                    "error_field": ""})
    return render_page(request, "user_new.html", context)


@post("/users", include_in_schema=False, status_code=303)
async def user_create(request: Request[Any, Any, Any]) -> Template | Redirect:
    form = await form_dict(request)
    try:
        account = await accounts.create_account(
            form.get("number", ""),
            name=form.get("name", ""),
            pin=form.get("pin") or None,
            language=form.get("language", "FR"),
            caller_ids=_caller_list(form.get("caller_ids", "")),
        )
    except accounts.AccountError as exc:
        context = await page_context(request, "users")
        context.update({"values": form, "error": str(exc), "error_field": exc.field})
        return render_page(request, "user_new.html", context, status=422)
    await auth.audit_log(request, "account.create", f"account {account.number}",
                         _account_details(form))
    flash(request, f"User {account.number} created.")
    return Redirect(f"/users/{account.number}", status_code=303)


async def _account(number: str) -> Account:
    try:
        return await accounts.get_account(number)
    except accounts.UnknownAccount:
        raise NotFoundException(f"No user {number}.") from None


@get("/users/{number:str}", include_in_schema=False)
async def user_page(request: Request[Any, Any, Any], number: str, all: bool = False) -> Template:
    account = await _account(number)
    return await _render_user(request, account, {}, "", "", show_all=all)


async def _render_user(
    request: Request[Any, Any, Any],
    account: Account,
    values: dict[str, str],
    error: str,
    error_field: str,
    *,
    show_all: bool = False,
    status: int = 200,
    credit: dict[str, str] | None = None,
    adjust: dict[str, str] | None = None,
) -> Template:
    context = await page_context(request, "users")
    callers = await accounts.caller_ids(account.id)
    entries_q = LedgerEntry.filter(account_id=account.id)
    count = await entries_q.count()
    limit = count if show_all else STATEMENT_LIMIT
    newest = await entries_q.order_by("-id").limit(max(1, limit))
    entries = list(reversed(newest))
    shown = {
        "name": account.name,
        "language": account.language,
        "status": account.status.value,
        "caller_ids": "\n".join(callers),
    }
    shown.update(values)
    context.update(
        {
            "account": account,
            "callers": callers,
            "dids": await accounts.list_dids(account.id),
            "entries": entries,
            "hidden_entries": count - len(entries),
            "opening": (entries[0].balance_after - entries[0].amount) if entries else 0,
            "values": shown,
            "error": error,
            "error_field": error_field,
            # the credit and adjust forms keep what was typed (and the unit) after an error
            "credit": {"amount": "", "unit": "money", "note": "", **(credit or {})},
            "adjust": {"amount": "", "unit": "money", "reason": "", **(adjust or {})},
        }
    )
    return render_page(request, "user.html", context, status=status)


@post("/users/{number:str}", include_in_schema=False, status_code=303)
async def user_update(request: Request[Any, Any, Any], number: str) -> Template | Redirect:
    account = await _account(number)
    form = await form_dict(request)
    try:
        await accounts.update_account(
            account,
            name=form.get("name", ""),
            pin=form.get("pin") or None,
            language=form.get("language", account.language),
            status=form.get("status", account.status.value),
            caller_ids=_caller_list(form.get("caller_ids", "")),
        )
    except accounts.AccountError as exc:
        return await _render_user(request, account, form, str(exc), exc.field, status=422)
    await auth.audit_log(request, "account.update", f"account {account.number}",
                         _account_details(form))
    flash(request, "User saved.")
    return Redirect(f"/users/{account.number}", status_code=303)


def amount_units(raw: str, unit: str, unit_price: Any, *, signed: bool = False) -> int:
    """An amount typed in the UI: money in the currency (the default) or whole units.

    ASCII digits only (`ocs.numbers`: "²" or "١٠" are refused, never handed to int()), and
    at most `numbers.MAX_UNITS` either way; every refusal is a MoneyError."""
    raw = raw.strip()
    if unit == "units":
        if not signed and raw.startswith("-"):
            raise money.MoneyError(f"not a whole number of units: {raw!r}")
        try:
            units = numbers.parse_int(raw)
        except numbers.NumberError:
            raise money.MoneyError(f"not a whole number of units: {raw!r}") from None
    else:
        value = money.parse_money(raw)
        if not signed and value < 0:
            raise money.MoneyError("credit must be positive")
        units = money.money_to_units(value, unit_price)
    try:
        return numbers.check_units(units)
    except numbers.NumberError as exc:
        raise money.MoneyError(str(exc)) from None


def form_count(raw: str, what: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """A whole number typed in a form (ASCII digits, at most 30), or ValueError naming
    `what`. Ranges are the domain function's to check (its message is the clearer one)."""
    try:
        return numbers.parse_int(raw.strip(), lo=lo, hi=hi)
    except numbers.NumberError as exc:
        detail = str(exc) if str(exc).startswith("must") else "must be a whole number"
        raise ValueError(f"{what} {detail}") from None


@post("/users/{number:str}/credit", include_in_schema=False, status_code=303)
async def user_credit(request: Request[Any, Any, Any], number: str) -> Template | Redirect:
    account = await _account(number)
    form = await form_dict(request)
    ops = await load_operator_settings()
    unit = "units" if form.get("unit") == "units" else "money"
    typed = {"amount": form.get("amount", ""), "unit": unit, "note": form.get("note", "")}
    try:
        units = amount_units(typed["amount"], unit, ops.unit_price)  # bounded, ASCII digits
        posted = await ledger.credit(
            account.id, units, actor=auth.actor(request), note=typed["note"].strip()[:255]
        )
    except (money.MoneyError, numbers.NumberError, ledger.LedgerError) as exc:
        # Re-show the form as typed, the error beside the amount (no reset to units).
        return await _render_user(request, account, {}, f"Credit refused: {exc}",
                                  "credit-amount", status=422, credit=typed)
    await auth.audit_log(request, "credit.add", f"account {account.number}",
                         {"units": units, "entry": posted.entry_id,
                          "note": typed["note"].strip()[:255]})
    fmt = Formatter(ops)
    flash(request, f"Added {units} units ({fmt.money(units)}); balance {posted.balance_after}.")
    return Redirect(f"/users/{account.number}", status_code=303)


@post("/users/{number:str}/dids", include_in_schema=False, status_code=303)
async def did_add(request: Request[Any, Any, Any], number: str) -> Redirect:
    account = await _account(number)
    form = await form_dict(request)
    try:
        row = await accounts.set_did(account.id, form.get("did", ""), form.get("forward_to", ""))
    except accounts.AccountError as exc:
        flash(request, f"DID not added: {exc}", "error")
    else:
        await auth.audit_log(request, "did.set", f"account {account.number}",
                             {"did": row.did, "forward_to": row.forward_to})
        flash(request, f"DID {row.did} now forwards to {row.forward_to}.")
    return Redirect(f"/users/{account.number}#dids", status_code=303)


@post("/users/{number:str}/dids/{did_id:int}", include_in_schema=False, status_code=303)
async def did_edit(request: Request[Any, Any, Any], number: str, did_id: int) -> Redirect:
    account = await _account(number)
    form = await form_dict(request)
    try:
        row = await accounts.set_did(
            account.id, form.get("did", ""), form.get("forward_to", ""), did_id=did_id
        )
    except accounts.AccountError as exc:
        flash(request, f"DID not saved: {exc}", "error")
    except LookupError:
        raise NotFoundException("No such DID mapping.") from None
    else:
        await auth.audit_log(request, "did.set", f"account {account.number}",
                             {"did": row.did, "forward_to": row.forward_to})
        flash(request, f"DID {row.did} now forwards to {row.forward_to}.")
    return Redirect(f"/users/{account.number}#dids", status_code=303)


@post("/users/{number:str}/dids/{did_id:int}/delete", include_in_schema=False, status_code=303)
async def did_delete(request: Request[Any, Any, Any], number: str, did_id: int) -> Redirect:
    account = await _account(number)
    if await accounts.delete_did(account.id, did_id):
        await auth.audit_log(request, "did.delete", f"account {account.number}", {"id": did_id})
        flash(request, "DID mapping deleted.")
    else:
        flash(request, "That DID mapping no longer exists.", "error")
    return Redirect(f"/users/{account.number}#dids", status_code=303)


# --- Costs ----------------------------------------------------------------------------

TARIFF_FIELDS = tariffs.COLUMNS


async def _costs_context(request: Request[Any, Any, Any]) -> dict[str, Any]:
    context = await page_context(request, "costs")
    ops = context["ops"]
    context.update(
        {
            "rows": await tariffs.list_tariffs(),
            "values": {"initial_block": ops.default_initial_block,
                       "increment": ops.default_increment, "h2_begin": 0, "h2_end": 0,
                       "h2_rate": 0, "connection_charge": 0},
            "error": "",
            "error_field": "",
            "import_error": "",
        }
    )
    return context


@get("/costs", include_in_schema=False)
async def costs_page(request: Request[Any, Any, Any]) -> Template:
    return render_page(request, "costs.html", await _costs_context(request))


def _tariff_form(form: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {k: form.get(k, "") for k in TARIFF_FIELDS if k != "barred"}
    values["barred"] = bool(form.get("barred"))
    for band in ("h1", "h2"):
        values[f"{band}_per_minute"] = form.get(f"{band}_per_minute", "")
        values[f"accept_{band}"] = form.get(f"accept_{band}", "")
    return values


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


class RoundingNeeded(Exception):
    def __init__(self, notes: list[dict[str, Any]]) -> None:
        super().__init__("rounding to accept")
        self.notes = notes


def _apply_per_minute(values: dict[str, Any], ops: Any) -> dict[str, Any]:
    """Money-per-minute fields become whole units/second. Exact prices apply as they are;
    others are rounded to the nearest rate, shown, and applied only once accepted."""
    notes: list[dict[str, Any]] = []
    out = dict(values)
    fmt = Formatter(ops)
    for band in ("h1", "h2"):
        text = str(values.get(f"{band}_per_minute") or "").strip()
        if not text:
            continue
        try:
            asked = money.parse_money(text)
        except money.MoneyError:
            raise tariffs.TariffError(f"{band}_per_minute must be an amount like 0.05",
                                      f"{band}_per_minute") from None
        conv = tariffs.rate_from_per_minute(asked, ops.unit_price)
        if conv.exact or str(values.get(f"accept_{band}")) == str(conv.rate):
            out[f"{band}_rate"] = conv.rate
            continue
        places = max(4, fmt.minor_units)
        notes.append({
            "band": band, "label": band.upper(), "rate": conv.rate,
            "asked": money.format_money(asked, max(2, -int(asked.as_tuple().exponent))),
            "exact": money.format_money(conv.exact_rate, 4),
            "applied": money.format_money(conv.applied, places),
        })
    if notes:
        raise RoundingNeeded(notes)
    return out


@post("/costs", include_in_schema=False, status_code=303)
async def tariff_create(request: Request[Any, Any, Any]) -> Template | Redirect:
    values = _tariff_form(await form_dict(request))
    ops = await load_operator_settings()
    try:
        tariff = tariffs.parse_tariff(
            _apply_per_minute(values, ops), default_block=ops.default_initial_block,
            default_increment=ops.default_increment,
        )
        await tariffs.save_tariff(tariff)
    except RoundingNeeded as need:
        context = await _costs_context(request)
        context.update({"values": values, "rounding": need.notes})
        return render_page(request, "costs.html", context, status=422)
    except (tariffs.TariffError, rating.RatingError) as exc:
        context = await _costs_context(request)
        context.update({"values": values, "error": _sentence(tariffs.humanise(str(exc))),
                        "error_field": _tariff_field(exc)})
        return render_page(request, "costs.html", context, status=422)
    await auth.audit_log(request, "tariff.create", f"tariff {tariff.prefix}",
                         _tariff_details(values))
    flash(request, f"Tariff {tariff.prefix} added.")
    return Redirect("/costs", status_code=303)


def _tariff_field(exc: Exception) -> str:
    if isinstance(exc, tariffs.TariffError) and exc.field:
        return exc.field
    return rating_field(exc)


async def _tariff(tariff_id: int) -> TariffRow:
    row = await TariffRow.get_or_none(id=tariff_id)
    if row is None:
        raise NotFoundException("No such tariff.")
    return row


@get("/costs/{tariff_id:int}", include_in_schema=False)
async def tariff_edit_page(request: Request[Any, Any, Any], tariff_id: int) -> Template:
    row = await _tariff(tariff_id)
    context = await page_context(request, "costs")
    context.update(
        {"row": row, "values": {k: getattr(row, k) for k in TARIFF_FIELDS}, "error": "",
         "error_field": ""}
    )
    return render_page(request, "tariff_edit.html", context)


@post("/costs/{tariff_id:int}", include_in_schema=False, status_code=303)
async def tariff_update(request: Request[Any, Any, Any], tariff_id: int) -> Template | Redirect:
    row = await _tariff(tariff_id)
    values = _tariff_form(await form_dict(request))
    ops = await load_operator_settings()
    try:
        tariff = tariffs.parse_tariff(_apply_per_minute(values, ops))
        await tariffs.save_tariff(tariff, tariff_id=row.id)
    except RoundingNeeded as need:
        context = await page_context(request, "costs")
        context.update({"row": row, "values": values, "rounding": need.notes, "error": "",
                        "error_field": ""})
        return render_page(request, "tariff_edit.html", context, status=422)
    except (tariffs.TariffError, rating.RatingError) as exc:
        context = await page_context(request, "costs")
        context.update({"row": row, "values": values,
                        "error": _sentence(tariffs.humanise(str(exc))),
                        "error_field": _tariff_field(exc)})
        return render_page(request, "tariff_edit.html", context, status=422)
    await auth.audit_log(request, "tariff.update", f"tariff {tariff.prefix}",
                         _tariff_details(values))
    flash(request, f"Tariff {tariff.prefix} saved.")
    return Redirect("/costs", status_code=303)


@post("/costs/{tariff_id:int}/delete", include_in_schema=False, status_code=303)
async def tariff_delete(request: Request[Any, Any, Any], tariff_id: int) -> Redirect:
    row = await _tariff(tariff_id)
    await tariffs.delete_tariff(row.id)
    await auth.audit_log(request, "tariff.delete", f"tariff {row.prefix}")
    flash(request, f"Tariff {row.prefix} deleted.")
    return Redirect("/costs", status_code=303)


@get("/costs/export.csv", include_in_schema=False)
async def tariff_export(request: Request[Any, Any, Any]) -> Response[str]:
    ops = await load_operator_settings()
    text = await tariffs.export_csv(ops.csv_separator)
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="tariffs.csv"'},
    )


@post("/costs/import", include_in_schema=False, status_code=303)
async def tariff_import(request: Request[Any, Any, Any]) -> Template | Redirect:
    form = await request.form()
    upload = form.get("file")
    text = ""
    if isinstance(upload, UploadFile):
        data = await upload.read()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = ""
            error = "The file is not UTF-8 text."
        else:
            error = ""
    else:
        error = ""
    if not text.strip() and not error:
        text = str(form.get("text") or "")
    ops = await load_operator_settings()
    separator = str(form.get("separator") or ops.csv_separator)
    if separator == "\\t":
        separator = "\t"
    if not error and not text.strip():
        error = "Choose a CSV file (or paste CSV text) to import."
    if not error:
        try:
            count = await tariffs.import_csv(
                text,
                separator[:1],
                replace=bool(form.get("replace")),
                default_block=ops.default_initial_block,
                default_increment=ops.default_increment,
            )
        except (tariffs.TariffError, rating.RatingError) as exc:
            error = f"Nothing imported: {exc}"
        else:
            await auth.audit_log(request, "tariff.import", "tariffs",
                                 {"rows": count, "replace": bool(form.get("replace"))})
            flash(request, f"Imported {count} tariff(s).")
            return Redirect("/costs", status_code=303)
    context = await _costs_context(request)
    context["import_error"] = error
    return render_page(request, "costs.html", context, status=422)


ROUTES: list[Any] = [
    config_page,
    config_save,
    users_page,
    user_new_page,
    user_create,
    user_page,
    user_update,
    user_credit,
    did_add,
    did_edit,
    did_delete,
    costs_page,
    tariff_create,
    tariff_edit_page,
    tariff_update,
    tariff_delete,
    tariff_export,
    tariff_import,
]
