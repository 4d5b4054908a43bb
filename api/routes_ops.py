"""REST API v1 for operator tools: adjustments, call refunds, vouchers, calling-card batches,
accounts CSV import/export, the dashboard figures and the Users search.

Same conventions as `api.routes_api`: API key, JSON errors ``{"error", "detail", "field"}``,
a refused request writes nothing. Each action calls one domain function with the acting
API key as ``actor``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import Parameter
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from api import auth
from api.csv_body import csv_text, separator_of
from api.errors import ApiError
from ocs import (
    account_csv,
    account_search,
    accounts,
    adjustments,
    cards,
    dashboard,
    ledger,
    money,
    numbers,
    vouchers,
)
from ocs.account_bulk import BulkConflict
from ocs.settings_store import OperatorSettings, load_operator_settings

MAX_IMPORT_BYTES = 64 * 1024 * 1024
CSV_MEDIA = "text/csv; charset=utf-8"


# --- payloads -------------------------------------------------------------------------


class AdjustIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: str
    units: int | None = None
    amount: str | None = None  # signed money, exact multiple of the unit price


class RefundIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: str
    units: int | None = None  # default: what is left of the call's cost


class CorrectionOut(msgspec.Struct):
    account: str
    operation: str
    units: int
    money: str
    balance: int
    entry_id: int
    currency: str


class RedeemIn(msgspec.Struct, forbid_unknown_fields=True):
    code: str
    account: str


class RedemptionOut(msgspec.Struct):
    serial: str
    account: str
    units: int
    money: str
    balance: int
    entry_id: int
    currency: str


class VoucherBatchIn(msgspec.Struct, forbid_unknown_fields=True):
    count: int
    units: int | None = None
    amount: str | None = None
    expires_at: datetime | None = None
    label: str = ""


class VoucherBatchOut(msgspec.Struct):
    id: int
    label: str
    count: int
    units: int
    money: str
    expires_at: datetime | None
    voided_at: datetime | None
    created_at: datetime
    created_by: str
    used: int
    unused: int
    expired: int
    voided: int
    state: str


class VoucherCode(msgspec.Struct):
    serial: str
    code: str


class NewVoucherBatchOut(msgspec.Struct):
    batch: VoucherBatchOut
    codes: list[VoucherCode]  # shown once: only hashes are stored


class VoidOut(msgspec.Struct):
    id: int
    voided: int


class CardBatchIn(msgspec.Struct, forbid_unknown_fields=True):
    count: int
    units: int | None = None  # initial credit of each card
    amount: str | None = None
    pin_length: int = 8
    first_number: str | None = None
    language: str | None = None
    label: str = ""


class Card(msgspec.Struct):
    number: str
    pin: str


class CardBatchOut(msgspec.Struct):
    id: int
    label: str
    count: int
    first_number: str
    last_number: str
    initial_credit: int
    pin_length: int
    created_at: datetime
    created_by: str


class NewCardBatchOut(msgspec.Struct):
    batch: CardBatchOut
    cards: list[Card]  # PINs shown once


class ImportOut(msgspec.Struct):
    imported: int


class DayOut(msgspec.Struct):
    day: str
    calls: int
    answered: int
    seconds: int
    revenue: int


class DestinationOut(msgspec.Struct):
    prefix: str
    calls: int
    seconds: int
    revenue: int


class LowOut(msgspec.Struct):
    number: str
    name: str
    balance: int
    available: int


class DashboardOut(msgspec.Struct):
    days: list[DayOut]
    calls: int
    answered: int
    answer_rate: float | None
    average_seconds: int | None
    revenue: int
    top_destinations: list[DestinationOut]
    live_calls: int
    low_balance: list[LowOut]
    low_threshold: int
    currency: str


class UserOut(msgspec.Struct):
    number: str
    name: str
    status: str
    balance: int
    reserved: int
    available: int
    last_call: datetime | None


class UserList(msgspec.Struct):
    items: list[UserOut]
    total: int
    offset: int
    limit: int


# --- helpers --------------------------------------------------------------------------


def units_from(units: int | None, amount: str | None, ops: OperatorSettings, *,
               signed: bool = False) -> int:
    """Exactly one of `units` / money `amount`, as units."""
    if (units is None) == (amount is None):
        raise ApiError(422, "invalid", "give exactly one of units or amount", "units")
    if amount is not None:
        try:
            value = money.money_to_units(money.parse_money(amount), ops.unit_price)
        except money.MoneyError as exc:
            raise ApiError(422, "invalid", str(exc), "amount") from None
        field = "amount"
    else:
        value = int(units or 0)
        field = "units"
    if not signed and value <= 0:
        raise ApiError(422, "invalid", "must be positive", field)
    try:
        return numbers.check_units(value)
    except numbers.NumberError as exc:
        raise ApiError(422, "invalid", str(exc), field) from None


def _money(units: int, ops: OperatorSettings) -> str:
    return str(money.units_to_money(units, ops.unit_price))


def _correction(c: adjustments.Correction, ops: OperatorSettings) -> CorrectionOut:
    return CorrectionOut(c.account, c.kind.value, c.units, _money(c.units, ops),
                         c.balance_after, c.entry_id, ops.currency)


def _batch_out(s: vouchers.BatchSummary, ops: OperatorSettings) -> VoucherBatchOut:
    b = s.batch
    return VoucherBatchOut(
        id=b.id, label=b.label, count=b.count, units=b.value, money=_money(b.value, ops),
        expires_at=b.expires_at, voided_at=b.voided_at, created_at=b.created_at,
        created_by=b.created_by, used=s.used, unused=s.unused, expired=s.expired,
        voided=s.voided, state=s.state,
    )


def _card_batch_out(b: Any) -> CardBatchOut:
    return CardBatchOut(b.id, b.label, b.count, b.first_number, b.last_number,
                        b.initial_credit, b.pin_length, b.created_at, b.created_by)


VOUCHER_STATUS = {
    vouchers.MalformedCode: (422, "invalid", "code"),
    vouchers.UnknownVoucher: (404, "not_found", "code"),
    vouchers.VoucherUsed: (409, "voucher_used", "code"),
    vouchers.VoucherExpired: (410, "voucher_expired", "code"),
    vouchers.VoucherVoided: (410, "voucher_voided", "code"),
}


def voucher_error(exc: vouchers.VoucherError) -> ApiError:
    status, code, field = VOUCHER_STATUS.get(type(exc), (422, "invalid", ""))
    return ApiError(status, code, str(exc), field)


# --- adjustments and refunds ------------------------------------------------------------


class AdjustmentController(Controller):
    path = "/api/v1/accounts/{number:str}/adjustments"
    tags = ["accounts"]

    @post("/", status_code=HTTP_201_CREATED)
    async def adjust(self, request: Request[Any, Any, Any], number: str,
                     data: AdjustIn) -> CorrectionOut:
        """Correct a balance: signed `units` or money `amount` (negative = debit) with a
        mandatory `reason`; an ADJUST ledger entry. A debit cannot take units reserved by
        live calls (422)."""
        ops = await load_operator_settings()
        units = units_from(data.units, data.amount, ops, signed=True)
        try:
            done = await adjustments.adjust(number, units, reason=data.reason,
                                            actor=auth.actor(request))
        except accounts.UnknownAccount:
            raise ApiError(404, "not_found", f"no account {number}", "number") from None
        except adjustments.AdjustmentError as exc:
            raise ApiError(422, "invalid", str(exc), exc.field) from None
        except ledger.InsufficientCredit as exc:
            raise ApiError(422, "insufficient_credit", str(exc), "units") from None
        return _correction(done, ops)


class RefundController(Controller):
    path = "/api/v1/cdrs/{cdr_id:int}/refund"
    tags = ["cdrs"]

    @post("/", status_code=HTTP_201_CREATED)
    async def refund(self, request: Request[Any, Any, Any], cdr_id: int,
                     data: RefundIn) -> CorrectionOut:
        """Refund one call from its CDR: all of its cost (less earlier refunds) or `units`
        of it; a REFUND ledger entry with the `reason`."""
        ops = await load_operator_settings()
        if data.units is not None:
            try:
                numbers.check_units(data.units)
            except numbers.NumberError as exc:
                raise ApiError(422, "invalid", str(exc), "units") from None
        try:
            done = await adjustments.refund_call(cdr_id, reason=data.reason, units=data.units,
                                                 actor=auth.actor(request))
        except LookupError:
            raise ApiError(404, "not_found", f"no call {cdr_id}") from None
        except adjustments.AdjustmentError as exc:
            raise ApiError(422, "invalid", str(exc), exc.field) from None
        return _correction(done, ops)


# --- vouchers ---------------------------------------------------------------------------


class VoucherController(Controller):
    path = "/api/v1/vouchers"
    tags = ["vouchers"]

    @post("/redeem", status_code=HTTP_200_OK)
    async def redeem(self, request: Request[Any, Any, Any], data: RedeemIn) -> RedemptionOut:
        """Credit `account` with the voucher `code` (once ever). 422 malformed code,
        404 unknown code or account, 409 already used, 410 expired or voided."""
        ops = await load_operator_settings()
        try:
            got = await vouchers.redeem(data.code, data.account, actor=auth.actor(request))
        except vouchers.VoucherError as exc:
            raise voucher_error(exc) from None
        except accounts.UnknownAccount:
            raise ApiError(404, "not_found", f"no account {data.account}", "account") from None
        return RedemptionOut(got.serial, got.account, got.units, _money(got.units, ops),
                             got.balance_after, got.entry_id, ops.currency)


class VoucherBatchController(Controller):
    path = "/api/v1/voucher-batches"
    tags = ["vouchers"]

    @get("/")
    async def list_batches(
        self, limit: Annotated[int, Parameter(ge=1, le=1000)] = 200
    ) -> list[VoucherBatchOut]:
        """Batches newest first, with used / unused / expired / voided counts."""
        ops = await load_operator_settings()
        return [_batch_out(s, ops) for s in await vouchers.list_batches(limit)]

    @post("/", status_code=HTTP_201_CREATED)
    async def create_batch(self, request: Request[Any, Any, Any],
                           data: VoucherBatchIn) -> NewVoucherBatchOut:
        """Generate `count` vouchers of `units` (or money `amount`) each. The codes are in
        this answer only: they are stored hashed and cannot be shown again."""
        ops = await load_operator_settings()
        value = units_from(data.units, data.amount, ops)
        try:
            gen = await vouchers.generate_batch(
                data.count, value, actor=auth.actor(request), expires_at=data.expires_at,
                label=data.label,
            )
        except vouchers.BatchError as exc:
            raise ApiError(422, "invalid", str(exc)) from None
        summary = await vouchers.get_batch(gen.batch.id)
        return NewVoucherBatchOut(_batch_out(summary, ops),
                                  [VoucherCode(s, c) for s, c in gen.codes])

    @get("/{batch_id:int}")
    async def get_batch(self, batch_id: int) -> VoucherBatchOut:
        try:
            summary = await vouchers.get_batch(batch_id)
        except LookupError:
            raise ApiError(404, "not_found", f"no voucher batch {batch_id}") from None
        return _batch_out(summary, await load_operator_settings())

    @post("/{batch_id:int}/void", status_code=HTTP_200_OK)
    async def void_batch(self, request: Request[Any, Any, Any], batch_id: int) -> VoidOut:
        """Cancel the batch's unused vouchers (used ones stay used)."""
        try:
            n = await vouchers.void_batch(batch_id, actor=auth.actor(request))
        except LookupError:
            raise ApiError(404, "not_found", f"no voucher batch {batch_id}") from None
        except vouchers.BatchError as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        return VoidOut(batch_id, n)


# --- calling cards ----------------------------------------------------------------------


class CardBatchController(Controller):
    path = "/api/v1/card-batches"
    tags = ["accounts"]

    @get("/")
    async def list_batches(self) -> list[CardBatchOut]:
        return [_card_batch_out(b) for b in await cards.list_batches()]

    @post("/", status_code=HTTP_201_CREATED)
    async def create_batch(self, request: Request[Any, Any, Any],
                           data: CardBatchIn) -> NewCardBatchOut:
        """Create `count` accounts with random unique PINs and initial credit (`units` or
        money `amount`, 0 allowed). The PINs are in this answer only."""
        ops = await load_operator_settings()
        credit = 0 if data.units is None and data.amount is None else units_from(
            data.units, data.amount, ops, signed=True)
        try:
            gen = await cards.generate_cards(
                data.count, initial_credit=credit, actor=auth.actor(request),
                pin_length=data.pin_length, first_number=data.first_number,
                language=data.language or ops.default_language, label=data.label,
            )
        except cards.CardError as exc:
            status = 409 if "exists" in str(exc) or "meanwhile" in str(exc) else 422
            raise ApiError(status, "conflict" if status == 409 else "invalid", str(exc),
                           exc.field) from None
        except accounts.AccountError as exc:
            raise ApiError(422, "invalid", str(exc), exc.field) from None
        return NewCardBatchOut(_card_batch_out(gen.batch), [Card(n, p) for n, p in gen.cards])


# --- accounts CSV -----------------------------------------------------------------------


async def _encoded(chunks: AsyncIterator[str]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield chunk.encode()


class AccountCsvController(Controller):
    path = "/api/v1/accounts/csv"
    tags = ["accounts"]

    @get("/", media_type=CSV_MEDIA)
    async def export_accounts(
        self, separator: Annotated[str | None, Parameter(max_length=3)] = None
    ) -> Stream:
        """Every account as CSV (number, name, language, status, caller_ids, balance),
        streamed. PINs are never exported (only their keyed hash exists)."""
        ops = await load_operator_settings()
        return Stream(
            _encoded(account_csv.export_csv(separator_of(separator, ops))),
            media_type=CSV_MEDIA,
            headers={"Content-Disposition": 'attachment; filename="accounts.csv"'},
        )

    @post("/", status_code=HTTP_201_CREATED)
    async def import_accounts(
        self,
        request: Request[Any, Any, Any],
        separator: Annotated[str | None, Parameter(max_length=3)] = None,
    ) -> ImportOut:
        """Create accounts from a CSV body (text/csv): all or nothing. A bad line: 422 with
        `field` = "line N" and the reason."""
        ops = await load_operator_settings()
        sep = separator_of(separator, ops)
        text = await csv_text(request, MAX_IMPORT_BYTES)
        try:
            count = await account_csv.import_csv(text, sep, actor=auth.actor(request),
                                                 default_language=ops.default_language)
        except account_csv.AccountCsvError as exc:
            raise ApiError(422, "invalid_csv", str(exc), f"line {exc.line}") from None
        except BulkConflict as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        return ImportOut(count)


# --- dashboard and search ---------------------------------------------------------------


async def dashboard_out(days: int) -> DashboardOut:
    ops = await load_operator_settings()
    d = await dashboard.load(days, ops.tz, ops.low_credit_threshold)
    return DashboardOut(
        days=[DayOut(x.day.isoformat(), x.calls, x.answered, x.seconds, x.revenue)
              for x in d.days],
        calls=d.calls, answered=d.answered, answer_rate=d.answer_rate,
        average_seconds=d.average_seconds, revenue=d.revenue,
        top_destinations=[DestinationOut(t.prefix, t.calls, t.seconds, t.revenue)
                          for t in d.top],
        live_calls=d.live_calls,
        low_balance=[LowOut(a.number, a.name, a.balance, a.available) for a in d.low_balance],
        low_threshold=d.low_threshold, currency=ops.currency,
    )


@get("/api/v1/dashboard", tags=["dashboard"])
async def dashboard_api(days: Annotated[int, Parameter(ge=1, le=92)] = 14) -> DashboardOut:
    """The dashboard's figures over the last `days` local days."""
    return await dashboard_out(days)


@get("/api/v1/users", tags=["accounts"])
async def users_api(
    q: str = "",
    caller_id: str = "",
    pin: str = "",
    did: str = "",
    status: str = "",
    low: bool = False,
    sort: str = "number",
    offset: Annotated[int, Parameter(ge=0)] = 0,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
) -> UserList:
    """The Users list: search by number/name `q`, `caller_id`, `pin` (exact), `did`;
    filter by `status` and `low` balance; `sort` number|name|balance|last_call (`-` desc)."""
    ops = await load_operator_settings()
    query = account_search.UserQuery(q, caller_id, pin, did, status, low, sort)
    try:
        page = await account_search.search(query, low_threshold=ops.low_credit_threshold,
                                           offset=offset, limit=limit)
    except account_search.SearchError as exc:
        raise ApiError(422, "invalid", str(exc), exc.field) from None
    return UserList(
        [UserOut(r.account.number, r.account.name, r.account.status.value, r.account.balance,
                 r.account.reserved, r.account.available, r.last_call) for r in page.rows],
        page.total, offset, limit,
    )


ROUTES: list[Any] = [
    AdjustmentController,
    RefundController,
    VoucherController,
    VoucherBatchController,
    CardBatchController,
    AccountCsvController,
    dashboard_api,
    users_api,
]
