"""Operator pages for the prepaid business: dashboard (landing page), balance adjustments,
call refunds, vouchers, calling-card batches, accounts import/export, PIN lookup.

Each action calls one domain function with ``auth.actor(request)``; codes and PINs that are
stored hashed are handed out once through `api.once`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Request, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import NotFoundException
from litestar.response import Redirect, Response, Stream, Template

from api import auth, once
from api.routes_pages import _account, _render_user, amount_units, form_count
from api.templating import Formatter, render_page
from api.web import flash, form_dict, page_context
from ocs import (
    account_csv,
    account_search,
    accounts,
    adjustments,
    cards,
    charts,
    dashboard,
    ledger,
    money,
    numbers,
    vouchers,
)
from ocs.account_bulk import BulkConflict, Progress
from ocs.models import Cdr
from ocs.settings_store import load_operator_settings

CSV_MEDIA = "text/csv; charset=utf-8"
DASHBOARD_DAYS = 14

# --- dashboard ---------------------------------------------------------------------------


@get("/dashboard", include_in_schema=False)
async def dashboard_page(request: Request[Any, Any, Any]) -> Template:
    context = await page_context(request, "dashboard")
    ops = context["ops"]
    fmt: Formatter = context["fmt"]
    d = await dashboard.load(DASHBOARD_DAYS, ops.tz, ops.low_credit_threshold)
    labels = [x.day.strftime("%d/%m") for x in d.days]
    every = 2 if len(labels) > 10 else 1
    context.update(
        {
            "d": d,
            "days": DASHBOARD_DAYS,
            "chart_calls": charts.bar_chart(
                labels, [x.calls for x in d.days], title="Calls per day", every=every,
                tooltips=[f"{x.day}: {x.calls} calls ({x.answered} answered)" for x in d.days]),
            "chart_minutes": charts.bar_chart(
                labels, [x.minutes for x in d.days], title="Minutes per day", every=every,
                tooltips=[f"{x.day}: {x.minutes} min" for x in d.days]),
            "chart_revenue": charts.bar_chart(
                labels, [x.revenue for x in d.days], title=f"Revenue per day ({ops.currency})",
                every=every,
                tooltips=[f"{x.day}: {fmt.money(x.revenue)}" for x in d.days]),
            "answer_rate": "—" if d.answer_rate is None else f"{d.answer_rate * 100:.1f} %",
            "average": "—" if d.average_seconds is None else fmt.duration(d.average_seconds),
        }
    )
    return render_page(request, "dashboard.html", context)


# --- adjustments and refunds ----------------------------------------------------------------


@post("/users/{number:str}/adjust", include_in_schema=False, status_code=303)
async def user_adjust(request: Request[Any, Any, Any], number: str) -> Template | Redirect:
    account = await _account(number)
    form = await form_dict(request)
    ops = await load_operator_settings()
    unit = "units" if form.get("unit") == "units" else "money"
    typed = {"amount": form.get("amount", ""), "unit": unit, "reason": form.get("reason", "")}
    field = "adjust-amount"
    try:
        units = amount_units(typed["amount"], unit, ops.unit_price, signed=True)
        done = await adjustments.adjust(account.number, units, reason=typed["reason"],
                                        actor=auth.actor(request))
    except adjustments.AdjustmentError as exc:
        field = "adjust-reason" if exc.field == "reason" else field
        message = str(exc).capitalize() + "."
    except (money.MoneyError, ledger.LedgerError) as exc:
        message = f"Not adjusted: {exc}"
    else:
        flash(request, f"Adjusted by {done.units:+d} units ({Formatter(ops).money(done.units)});"
                       f" balance {done.balance_after}.")
        return Redirect(f"/users/{account.number}#statement", status_code=303)
    return await _render_user(request, account, {}, message, field, status=422, adjust=typed)


async def _cdr(cdr_id: int) -> Cdr:
    row = await Cdr.get_or_none(id=cdr_id)
    if row is None:
        raise NotFoundException(f"No call {cdr_id}.")
    return row


async def _refund_page(request: Request[Any, Any, Any], row: Cdr, values: dict[str, str],
                       error: str = "", error_field: str = "", status: int = 200) -> Template:
    context = await page_context(request, "cdr")
    done = await adjustments.refunded(row.id)
    context.update({"row": row, "refunded": done, "left": max(0, row.cost - done),
                    "values": values, "error": error, "error_field": error_field})
    return render_page(request, "refund.html", context, status=status)


@get("/cdrs/{cdr_id:int}/refund", include_in_schema=False)
async def refund_page(request: Request[Any, Any, Any], cdr_id: int) -> Template:
    return await _refund_page(request, await _cdr(cdr_id), {"units": "", "reason": ""})


@post("/cdrs/{cdr_id:int}/refund", include_in_schema=False, status_code=303)
async def refund_submit(request: Request[Any, Any, Any], cdr_id: int) -> Template | Redirect:
    row = await _cdr(cdr_id)
    form = await form_dict(request)
    raw = form.get("units", "").strip()
    try:
        try:
            units = form_count(raw, "units", hi=numbers.MAX_UNITS) if raw else None
        except ValueError as exc:
            raise adjustments.AdjustmentError(str(exc), "units") from None
        done = await adjustments.refund_call(
            cdr_id, reason=form.get("reason", ""), units=units, actor=auth.actor(request),
        )
    except adjustments.AdjustmentError as exc:
        return await _refund_page(request, row, form, str(exc).capitalize() + ".",
                                  exc.field or "units", status=422)
    ops = await load_operator_settings()
    flash(request, f"Refunded {done.units} units ({Formatter(ops).money(done.units)}) for call"
                   f" {cdr_id}; balance {done.balance_after}.")
    return Redirect(f"/users/{done.account}#statement", status_code=303)


# --- one-time downloads ------------------------------------------------------------------


@get("/downloads/{token:str}", include_in_schema=False)
async def download_once(token: str) -> Response[bytes]:
    item = once.take(token)
    if item is None:
        raise NotFoundException(
            "This file was already downloaded or has expired: codes and PINs are shown once."
        )
    return Response(item.data, media_type=CSV_MEDIA, headers={
        "Content-Disposition": f'attachment; filename="{item.filename}"',
        "Cache-Control": "no-store",
    })


# --- vouchers ---------------------------------------------------------------------------


async def _vouchers_context(request: Request[Any, Any, Any]) -> dict[str, Any]:
    context = await page_context(request, "vouchers")
    context.update({
        "batches": await vouchers.list_batches(),
        "gen": {"count": "100", "value": "", "unit": "money", "expires": "", "label": ""},
        "redeem": {"code": "", "account": ""},
        "error": "", "error_field": "",
        "ready": None,
    })
    return context


@get("/vouchers", include_in_schema=False)
async def vouchers_page(request: Request[Any, Any, Any], ready: str = "",
                        batch: int | None = None) -> Template:
    context = await _vouchers_context(request)
    if ready and once.pending(ready):
        context["ready"] = {"token": ready, "batch": batch}
    return render_page(request, "vouchers.html", context)


def _expiry(text: str, tz: Any) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise vouchers.BatchError("expiry is a date YYYY-MM-DD") from None
    # valid to the end of that local day
    return (day + timedelta(days=1)).replace(tzinfo=tz).astimezone(UTC)


@post("/vouchers/batches", include_in_schema=False, status_code=303)
async def voucher_generate(request: Request[Any, Any, Any]) -> Template | Redirect:
    form = await form_dict(request)
    ops = await load_operator_settings()
    unit = "units" if form.get("unit") == "units" else "money"
    typed = {"count": form.get("count", ""), "value": form.get("value", ""), "unit": unit,
             "expires": form.get("expires", ""), "label": form.get("label", "")}
    field = "gen-count"
    try:
        try:
            count = form_count(typed["count"], "number of vouchers")
        except ValueError as exc:
            raise vouchers.BatchError(str(exc)) from None
        field = "gen-value"
        value = amount_units(typed["value"], unit, ops.unit_price)
        field = "gen-expires"
        expires = _expiry(typed["expires"], ops.tz)
        field = "gen-count"
        gen = await vouchers.generate_batch(count, value, actor=auth.actor(request),
                                            expires_at=expires, label=typed["label"])
    except (vouchers.BatchError, money.MoneyError) as exc:
        context = await _vouchers_context(request)
        if "value" in str(exc) or isinstance(exc, money.MoneyError):
            field = "gen-value"
        elif "expir" in str(exc):
            field = "gen-expires"
        context.update({"gen": typed, "error": str(exc).capitalize() + ".",
                        "error_field": field})
        return render_page(request, "vouchers.html", context, status=422)
    name = f"VOUCHERS_{gen.batch.id}_{gen.batch.created_at:%Y%m%d_%H%M%S}.csv"
    token = once.put(name, gen.csv(ops.csv_separator, unit_price=ops.unit_price,
                                   currency=ops.currency).encode())
    flash(request, f"Batch {gen.batch.id}: {gen.batch.count} vouchers created. Download the"
                   " codes now: they are stored hashed and can be downloaded only once.")
    return Redirect(f"/vouchers?ready={token}&batch={gen.batch.id}", status_code=303)


@post("/vouchers/batches/{batch_id:int}/void", include_in_schema=False, status_code=303)
async def voucher_void(request: Request[Any, Any, Any], batch_id: int) -> Redirect:
    try:
        n = await vouchers.void_batch(batch_id, actor=auth.actor(request))
    except LookupError:
        raise NotFoundException(f"No voucher batch {batch_id}.") from None
    except vouchers.BatchError as exc:
        flash(request, str(exc).capitalize() + ".", "error")
    else:
        flash(request, f"Batch {batch_id} voided: {n} unused voucher(s) cancelled.")
    return Redirect("/vouchers", status_code=303)


@post("/vouchers/redeem", include_in_schema=False, status_code=303)
async def voucher_redeem(request: Request[Any, Any, Any]) -> Template | Redirect:
    form = await form_dict(request)
    typed = {"code": form.get("code", ""), "account": form.get("account", "")}
    try:
        got = await vouchers.redeem(typed["code"], typed["account"], actor=auth.actor(request))
    except (vouchers.VoucherError, accounts.UnknownAccount) as exc:
        context = await _vouchers_context(request)
        field = "redeem-account" if isinstance(exc, accounts.UnknownAccount) else "redeem-code"
        message = f"No account {typed['account'].strip()}." if isinstance(
            exc, accounts.UnknownAccount) else str(exc).capitalize() + "."
        context.update({"redeem": typed, "error": message, "error_field": field})
        return render_page(request, "vouchers.html", context, status=422)
    ops = await load_operator_settings()
    flash(request, f"Voucher {got.serial} redeemed: {Formatter(ops).money(got.units)} added to"
                   f" {got.account}; balance {got.balance_after}.")
    return Redirect("/vouchers", status_code=303)


# --- calling-card batches ------------------------------------------------------------------


async def _cards_context(request: Request[Any, Any, Any]) -> dict[str, Any]:
    context = await page_context(request, "users")
    context.update({
        "batches": await cards.list_batches(),
        "values": {"count": "100", "credit": "", "unit": "money", "pin_length": "8",
                   "first_number": await cards.next_free_number(), "label": ""},
        "error": "", "error_field": "", "ready": None,
    })
    return context


@get("/cards", include_in_schema=False)
async def cards_page(request: Request[Any, Any, Any], ready: str = "") -> Template:
    context = await _cards_context(request)
    if ready and once.pending(ready):
        context["ready"] = ready
    return render_page(request, "cards.html", context)


@post("/cards", include_in_schema=False, status_code=303)
async def cards_generate(request: Request[Any, Any, Any]) -> Template | Redirect:
    form = await form_dict(request)
    ops = await load_operator_settings()
    unit = "units" if form.get("unit") == "units" else "money"
    typed = {k: form.get(k, "") for k in ("count", "credit", "pin_length", "first_number",
                                          "label")}
    typed["unit"] = unit
    field = "count"
    try:
        try:
            count = form_count(typed["count"], "number of cards")
        except ValueError as exc:
            raise cards.CardError(str(exc), "count") from None
        try:
            pin_length = form_count(typed["pin_length"], "PIN length")
        except ValueError as exc:
            raise cards.CardError(str(exc), "pin_length") from None
        field = "credit"
        credit = amount_units(typed["credit"], unit, ops.unit_price) if \
            typed["credit"].strip() else 0
        gen = await cards.generate_cards(
            count, initial_credit=credit, actor=auth.actor(request),
            pin_length=pin_length, first_number=typed["first_number"] or None,
            language=ops.default_language, label=typed["label"],
        )
    except (cards.CardError, money.MoneyError) as exc:
        context = await _cards_context(request)
        if isinstance(exc, cards.CardError) and exc.field:
            field = exc.field
        context.update({"values": typed, "error": str(exc).capitalize() + ".",
                        "error_field": field})
        return render_page(request, "cards.html", context, status=422)
    name = f"CARDS_{gen.batch.id}_{gen.batch.created_at:%Y%m%d_%H%M%S}.csv"
    token = once.put(name, gen.csv(ops.csv_separator).encode())
    flash(request, f"{gen.batch.count} cards created ({gen.batch.first_number} to"
                   f" {gen.batch.last_number}). Download the PINs now: they can be downloaded"
                   " only once.")
    return Redirect(f"/cards?ready={token}", status_code=303)


# --- accounts import / export --------------------------------------------------------------

_jobs: dict[str, Progress] = {}
_tasks: set[asyncio.Task[None]] = set()


@get("/users/import", include_in_schema=False)
async def import_page(request: Request[Any, Any, Any]) -> Template:
    context = await page_context(request, "users")
    context.update({"error": "", "columns": account_csv.COLUMNS})
    return render_page(request, "users_import.html", context)


async def _run_import(job: Progress, text: str, separator: str, actor: str,
                      language: str) -> None:
    try:
        await account_csv.import_csv(text, separator, actor=actor, default_language=language,
                                     progress=job)
    except (account_csv.AccountCsvError, BulkConflict) as exc:
        job.error = f"Nothing imported: {exc}"
    except Exception as exc:  # noqa: BLE001 -- a background job: a database outage is reported, nothing was committed
        job.error = f"Nothing imported: {type(exc).__name__}: {exc}"
    finally:
        job.finished = True


@post("/users/import", include_in_schema=False, status_code=303)
async def import_submit(request: Request[Any, Any, Any]) -> Template | Redirect:
    form = await request.form()
    upload = form.get("file")
    ops = await load_operator_settings()
    error = ""
    text = ""
    if isinstance(upload, UploadFile):
        data = await upload.read()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            error = "The file is not UTF-8 text."
    if not error and not text.strip():
        error = "Choose a CSV file to import."
    separator = str(form.get("separator") or ops.csv_separator)
    separator = "\t" if separator == "\\t" else separator[:1]
    if error:
        context = await page_context(request, "users")
        context.update({"error": error, "columns": account_csv.COLUMNS})
        return render_page(request, "users_import.html", context, status=422)
    job_id = secrets.token_urlsafe(12)
    job = _jobs[job_id] = Progress(total=max(1, text.count("\n")))
    task = asyncio.get_running_loop().create_task(
        _run_import(job, text, separator, auth.actor(request), ops.default_language))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return Redirect(f"/users/import/{job_id}", status_code=303)


def _job(job_id: str) -> Progress:
    job = _jobs.get(job_id)
    if job is None:
        raise NotFoundException("No such import (the server may have restarted).")
    return job


@get("/users/import/{job_id:str}", include_in_schema=False)
async def import_progress_page(request: Request[Any, Any, Any], job_id: str) -> Template:
    context = await page_context(request, "users")
    context.update({"job": _job(job_id), "job_id": job_id})
    return render_page(request, "users_import_job.html", context)


@get("/users/import/{job_id:str}/status", include_in_schema=False)
async def import_status(request: Request[Any, Any, Any], job_id: str) -> Template:
    return render_page(request, "_import_status.html", {"job": _job(job_id), "job_id": job_id})


async def _encoded(chunks: AsyncIterator[str]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield chunk.encode()


@get("/users/export.csv", include_in_schema=False)
async def accounts_export(request: Request[Any, Any, Any]) -> Stream:
    ops = await load_operator_settings()
    return Stream(_encoded(account_csv.export_csv(ops.csv_separator)), media_type=CSV_MEDIA,
                  headers={"Content-Disposition": 'attachment; filename="accounts.csv"'})


@get("/users/list.csv", include_in_schema=False)
async def users_list_export(
    q: str = "", caller_id: str = "", did: str = "", status: str = "", low: str = "",
    sort: str = "number",
) -> Stream:
    """The Users list as filtered and sorted on screen."""
    ops = await load_operator_settings()
    query = account_search.UserQuery(q=q, caller_id=caller_id, did=did, status=status,
                                      low=bool(low), sort=sort or "number")
    try:
        query = query.cleaned()
        account_search.build(query, ops.low_credit_threshold)
    except account_search.SearchError as exc:
        raise NotFoundException(str(exc)) from None
    return Stream(
        _encoded(account_search.export_csv(query, low_threshold=ops.low_credit_threshold,
                                           separator=ops.csv_separator)),
        media_type=CSV_MEDIA,
        headers={"Content-Disposition": 'attachment; filename="users.csv"'},
    )


@post("/users/find-pin", include_in_schema=False, status_code=303)
async def find_by_pin(request: Request[Any, Any, Any]) -> Redirect:
    """PIN lookup by POST, so that a PIN never appears in a URL, a log or the history."""
    form = await form_dict(request)
    ops = await load_operator_settings()
    try:
        page = await account_search.search(account_search.UserQuery(pin=form.get("pin", "")),
                                           low_threshold=ops.low_credit_threshold, limit=1)
    except account_search.SearchError as exc:
        flash(request, str(exc), "error")
        return Redirect("/users", status_code=303)
    if not page.rows:
        flash(request, "No user has this PIN.", "error")
        return Redirect("/users", status_code=303)
    return Redirect(f"/users/{page.rows[0].account.number}", status_code=303)


ROUTES: list[Any] = [
    dashboard_page,
    user_adjust,
    refund_page,
    refund_submit,
    download_once,
    vouchers_page,
    voucher_generate,
    voucher_void,
    voucher_redeem,
    cards_page,
    cards_generate,
    import_page,
    import_submit,
    import_progress_page,
    import_status,
    accounts_export,
    users_list_export,
    find_by_pin,
]
