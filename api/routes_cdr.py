"""CDR page, CSV export, Start billing and Archives; REST /api/v1/cdrs and /api/v1/billing.

Pages use the admin session (app-level guard) and CSRF (the Start billing form); /api/v1/…
uses API keys. CSV downloads stream: the export never holds the table in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import File, Redirect, Stream, Template
from litestar.status_codes import HTTP_201_CREATED

from api.errors import ApiError
from api.templating import render_page
from api.web import ctx_of, flash, page_context
from ocs import billing, cdr
from ocs.models import BillingRun
from ocs.settings_store import OperatorSettings, load_operator_settings

PAGE_SIZE = 50
CSV_MEDIA = "text/csv; charset=utf-8"


@dataclass(frozen=True, slots=True)
class _Query:
    since: str = ""
    until: str = ""
    user: FromQuery[str] = ""
    prefix: FromQuery[str] = ""

    def filter(self, ops: OperatorSettings) -> cdr.CdrFilter:
        try:
            since = cdr.parse_local_date(self.since, ops.tz) if self.since.strip() else None
        except ValueError as exc:
            raise ApiError(422, "invalid", str(exc), "from") from None
        try:
            until = (
                cdr.parse_local_date(self.until, ops.tz, end=True) if self.until.strip() else None
            )
        except ValueError as exc:
            raise ApiError(422, "invalid", str(exc), "to") from None
        return cdr.CdrFilter(
            since=since, until=until, user=self.user.strip(), prefix=self.prefix.strip()
        )

    def params(self, **extra: Any) -> str:
        items = {"from": self.since, "to": self.until, "user": self.user, "prefix": self.prefix}
        items.update({k: v for k, v in extra.items() if v is not None})
        return urlencode({k: v for k, v in items.items() if v not in ("", None)})


FromParam = Annotated[
    str, QueryParameter(name="from", description="local date/time")
]
ToParam = Annotated[
    str, QueryParameter(name="to", description="local date/time")
]


def _export_stream(flt: cdr.CdrFilter, name: str) -> Stream:
    return Stream(
        cdr.export_csv_with_settings(flt),
        media_type=CSV_MEDIA,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _export_name(ops: OperatorSettings) -> str:
    return f"CDR_{cdr.stamp(datetime.now().astimezone(), ops.tz)}.csv"


# --- pages ----------------------------------------------------------------------------


@get("/cdrs", include_in_schema=False)
async def cdr_page(
    request: Request[Any, Any, Any],
    since: FromParam = "",
    until: ToParam = "",
    user: FromQuery[str] = "",
    prefix: FromQuery[str] = "",
    before: FromQuery[int | None] = None,
    after: FromQuery[int | None] = None,
) -> Template:
    context = await page_context(request, "cdr")
    ops: OperatorSettings = context["ops"]
    query = _Query(since, until, user, prefix)
    error = ""
    try:
        flt = query.filter(ops)
    except ApiError as exc:
        error, flt = exc.detail, cdr.CdrFilter(user=user.strip(), prefix=prefix.strip())
    page = await cdr.list_cdrs(flt, limit=PAGE_SIZE, before=before, after=after)
    fmt = context["fmt"]
    rows = [
        {"rec": r, "date": cdr.stamp(r.created_at, ops.tz), "money": fmt.amount(r.cost)}
        for r in page.items
    ]
    context.update(
        {
            "rows": rows,
            "q": query,
            "error": error,
            "older_link": f"/cdrs?{query.params(before=page.older)}" if page.older else "",
            "newer_link": f"/cdrs?{query.params(after=page.newer)}" if page.newer else "",
            "export_link": f"/cdrs/export.csv?{query.params()}",
        }
    )
    return render_page(request, "cdr.html", context)


@get("/cdrs/export.csv", include_in_schema=False)
async def cdr_export_page(
    since: FromParam = "",
    until: ToParam = "",
    user: FromQuery[str] = "",
    prefix: FromQuery[str] = "",
) -> Stream:
    ops = await load_operator_settings()
    return _export_stream(_Query(since, until, user, prefix).filter(ops), _export_name(ops))


@get("/cdrs/archives", include_in_schema=False)
async def archives_page(request: Request[Any, Any, Any]) -> Template:
    context = await page_context(request, "cdr")
    context["runs"] = await billing.list_runs(200)
    return render_page(request, "archives.html", context)


@post("/billing/run", include_in_schema=False, status_code=303)
async def start_billing(request: Request[Any, Any, Any]) -> Redirect:
    """The Start billing button: close the period and write the statement."""
    settings = ctx_of(request).settings
    try:
        result = await billing.run_billing(settings)
    except billing.BillingError as exc:
        flash(request, f"Billing failed: {exc}", "error")
    else:
        flash(
            request,
            f"Statement {result.filename} written: {result.accounts} users, "
            f"{result.lines} lines.",
        )
    return Redirect("/cdrs/archives", status_code=303)


@get("/billing/files/{filename:str}", include_in_schema=False)
async def download_statement(
    request: Request[Any, Any, Any], filename: FromPath[str]
) -> File:
    path = await billing.statement_path_by_name(ctx_of(request).settings, filename)
    if path is None:
        raise ApiError(404, "not_found", f"no statement {filename}")
    return File(path=path, filename=path.name, media_type=CSV_MEDIA)


# --- REST -----------------------------------------------------------------------------


@dataclass
class CdrOut:
    id: int
    date: str  # YYYYMMDD_HHMMSS, operator time zone: when the call was closed
    ended_at: str
    answered_at: str
    timestamp: int  # call setup, Unix epoch seconds
    connect_delay: int | None
    duration: int
    cost: int
    money: str
    user: str
    calling: str
    dialed: str
    call_id: str
    session_id: str
    tariff_prefix: str
    end_reason: str


@dataclass
class CdrList:
    items: list[CdrOut]
    limit: int
    older: int | None  # pass as `before` for the next (older) page
    newer: int | None  # pass as `after` for the previous (newer) page
    currency: str


@dataclass
class BillingRunOut:
    id: int
    filename: str
    status: str
    started_at: str
    finished_at: str | None
    last_ledger_id: int
    accounts: int
    lines: int
    download: str | None


def _run_out(run: BillingRun) -> BillingRunOut:
    return BillingRunOut(
        id=run.id,
        filename=run.filename,
        status=run.status,
        started_at=run.started_at.isoformat(),
        finished_at=run.finished_at.isoformat() if run.finished_at else None,
        last_ledger_id=run.last_ledger_id,
        accounts=run.accounts,
        lines=run.lines,
        download=f"/api/v1/billing/runs/{run.id}/file" if run.status == billing.DONE else None,
    )


class CdrController(Controller):
    path = "/api/v1/cdrs"
    tags = ["cdrs"]

    @get("/")
    async def list_cdrs(
        self,
        since: FromParam = "",
        until: ToParam = "",
        user: FromQuery[str] = "",
        prefix: FromQuery[str] = "",
        limit: Annotated[int, QueryParameter(ge=1, le=cdr.MAX_PAGE)] = PAGE_SIZE,
        before: FromQuery[int | None] = None,
        after: FromQuery[int | None] = None,
    ) -> CdrList:
        """CDRs newest first, filtered by answer time (`from`/`to`, operator time zone unless
        an offset is given), account number (`user`) and dialled prefix. Keyset paging:
        follow `older` with `before=`, `newer` with `after=`."""
        ops = await load_operator_settings()
        page = await cdr.list_cdrs(
            _Query(since, until, user, prefix).filter(ops), limit=limit, before=before,
            after=after,
        )
        return CdrList(
            items=[CdrOut(**cdr.record_json(r, ops.tz, ops.unit_price)) for r in page.items],
            limit=page.limit,
            older=page.older,
            newer=page.newer,
            currency=ops.currency,
        )

    @get("/export.csv", media_type=CSV_MEDIA)
    async def export_cdrs(
        self,
        since: FromParam = "",
        until: ToParam = "",
        user: FromQuery[str] = "",
        prefix: FromQuery[str] = "",
    ) -> Stream:
        """The CDR CSV (brochure columns + money, configured separator), streamed."""
        ops = await load_operator_settings()
        return _export_stream(_Query(since, until, user, prefix).filter(ops), _export_name(ops))


class BillingController(Controller):
    path = "/api/v1/billing/runs"
    tags = ["billing"]

    @get("/")
    async def list_runs(
        self, limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100
    ) -> list[BillingRunOut]:
        """Billing runs, newest first (finished and in progress)."""
        return [_run_out(r) for r in await billing.list_runs(limit)]

    @post("/", status_code=HTTP_201_CREATED)
    async def start_run(self, request: Request[Any, Any, Any]) -> BillingRunOut:
        """Start billing: close the period and write the statement (synchronous)."""
        try:
            result = await billing.run_billing(ctx_of(request).settings)
        except billing.BillingConflict as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        run = await BillingRun.get(id=result.run_id)
        return _run_out(run)

    @get("/{run_id:int}")
    async def get_run(self, run_id: FromPath[int]) -> BillingRunOut:
        run = await BillingRun.get_or_none(id=run_id)
        if run is None:
            raise ApiError(404, "not_found", f"no billing run {run_id}")
        return _run_out(run)

    @get("/{run_id:int}/file", media_type=CSV_MEDIA)
    async def get_file(self, request: Request[Any, Any, Any], run_id: FromPath[int]) -> File:
        """The statement file `BILLING_YYYYMMDD_HHMMSS.csv` of a finished run."""
        path = await billing.statement_path(ctx_of(request).settings, run_id)
        if path is None:
            raise ApiError(404, "not_found", f"no statement for billing run {run_id}")
        return File(path=path, filename=path.name, media_type=CSV_MEDIA)


ROUTES: list[Any] = [
    cdr_page,
    cdr_export_page,
    archives_page,
    start_billing,
    download_statement,
    CdrController,
    BillingController,
]
