"""REST API v1: accounts, credit, caller IDs, DIDs, tariffs (+CSV), live sessions, settings.

Every path needs an API key (see api.auth). Errors are JSON
``{"error": code, "detail": text, "field": name}``: 400 malformed payload, 401 no/bad key,
404 unknown resource, 409 conflict with existing data, 422 a value that fails validation,
503 a part that is not running. A rejected request writes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.params import JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from api.auth import actor, audit_log
from api.csv_body import csv_text, separator_of
from api.errors import ApiError
from api.live import live_calls
from api.web import ctx_of, rating_field
from ocs import accounts, ledger, money, numbers, rating, tariffs
from ocs.models import Account, CreditSession, LedgerEntry, SessionState
from ocs.models import Tariff as TariffRow
from ocs.settings_store import (
    OperatorSettings,
    SettingsError,
    load_operator_settings,
    save_operator_settings,
)

MAX_CSV_BYTES = 5 * 1024 * 1024


# --- payloads -------------------------------------------------------------------------


class AccountIn(msgspec.Struct, forbid_unknown_fields=True):
    number: str
    name: str = ""
    pin: str | None = None
    language: str | None = None
    caller_ids: list[str] = []


class AccountPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: str | None = None
    pin: str | None = None
    language: str | None = None
    status: str | None = None
    caller_ids: list[str] | None = None


class AccountOut(msgspec.Struct):
    number: str
    name: str
    language: str
    status: str
    pin_set: bool
    balance: int
    reserved: int
    available: int
    balance_money: str
    currency: str
    caller_ids: list[str]
    created_at: datetime


class AccountList(msgspec.Struct):
    items: list[AccountOut]
    total: int
    offset: int
    limit: int


class CreditIn(msgspec.Struct, forbid_unknown_fields=True):
    units: int | None = None
    amount: str | None = None  # money, e.g. "25" or "25.00": exact multiple of the unit price
    note: str = ""


class CreditOut(msgspec.Struct):
    entry_id: int
    units: int
    money: str
    balance: int
    balance_money: str
    currency: str


class LedgerOut(msgspec.Struct):
    id: int
    date: datetime
    operation: str
    dialed: str
    duration: int
    units: int
    money: str
    balance_after: int
    actor: str
    note: str
    reference: str


class Statement(msgspec.Struct):
    account: str
    entries: list[LedgerOut]
    total: int
    total_money: str
    currency: str


class CallerIdsIn(msgspec.Struct, forbid_unknown_fields=True):
    caller_ids: list[str]


class CallerIdIn(msgspec.Struct, forbid_unknown_fields=True):
    number: str


class CallerIdsOut(msgspec.Struct):
    caller_ids: list[str]


class DidIn(msgspec.Struct, forbid_unknown_fields=True):
    did: str
    forward_to: str


class DidOut(msgspec.Struct):
    id: int
    did: str
    forward_to: str


class TariffIn(msgspec.Struct, forbid_unknown_fields=True):
    prefix: str
    h1_rate: int
    h2_begin: int = 0
    h2_end: int = 0
    h2_rate: int = 0
    initial_block: int | None = None
    increment: int | None = None
    connection_charge: int = 0
    barred: bool = False


class TariffOut(msgspec.Struct):
    id: int
    prefix: str
    h1_rate: int
    h1_per_minute: str
    h2_begin: int
    h2_end: int
    h2_rate: int
    h2_per_minute: str
    initial_block: int
    increment: int
    connection_charge: int
    barred: bool
    currency: str


class ImportResult(msgspec.Struct):
    imported: int


class SessionOut(msgspec.Struct):
    session_id: str
    calling: str
    called: str
    status: str
    account: str | None
    balance: int
    reserved: int
    credit: int
    rate: int
    tariff_prefix: str
    started_at: str
    duration: int
    used_seconds: int
    cost: int
    consumption: int
    peer: str


class KillOut(msgspec.Struct):
    session_id: str
    result_code: int


# --- helpers --------------------------------------------------------------------------


def _conflict_or_invalid(exc: accounts.AccountError | tariffs.TariffError) -> ApiError:
    text = str(exc)
    if any(word in text for word in ("already", "another", "conflicts")):
        return ApiError(409, "conflict", text, exc.field)
    return ApiError(422, "invalid", text, exc.field)


async def _account(number: str) -> Account:
    try:
        return await accounts.get_account(number)
    except accounts.UnknownAccount:
        raise ApiError(404, "not_found", f"no account {number}", "number") from None


def _money(units: int, ops: OperatorSettings) -> str:
    return str(money.units_to_money(units, ops.unit_price))


async def _account_out(account: Account, ops: OperatorSettings) -> AccountOut:
    return AccountOut(
        number=account.number,
        name=account.name,
        language=account.language,
        status=account.status.value,
        pin_set=account.pin_index is not None,
        balance=account.balance,
        reserved=account.reserved,
        available=account.available,
        balance_money=_money(account.balance, ops),
        currency=ops.currency,
        caller_ids=await accounts.caller_ids(account.id),
        created_at=account.created_at,
    )


def _tariff_out(row: TariffRow, ops: OperatorSettings) -> TariffOut:
    return TariffOut(
        id=row.id,
        prefix=row.prefix,
        h1_rate=row.h1_rate,
        h1_per_minute=str(money.per_minute(row.h1_rate, ops.unit_price)),
        h2_begin=row.h2_begin,
        h2_end=row.h2_end,
        h2_rate=row.h2_rate,
        h2_per_minute=str(money.per_minute(row.h2_rate, ops.unit_price)),
        initial_block=row.initial_block,
        increment=row.increment,
        connection_charge=row.connection_charge,
        barred=row.barred,
        currency=ops.currency,
    )


def _actor(request: Request[Any, Any, Any]) -> str:
    return actor(request)


def _account_details(values: dict[str, Any]) -> dict[str, Any]:
    """What a request set on an account, for the audit log (the PIN only as 'changed')."""
    out = {k: v for k, v in values.items() if v is not None and k != "pin"}
    if values.get("pin"):
        out["pin"] = "changed"
    return out


# --- accounts -------------------------------------------------------------------------


class AccountController(Controller):
    path = "/api/v1/accounts"
    tags = ["accounts"]

    @get("/")
    async def list_accounts(
        self,
        q: str = "",
        offset: Annotated[int, Parameter(ge=0)] = 0,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    ) -> AccountList:
        """Accounts ordered by number; `q` matches a number prefix or part of the name."""
        ops = await load_operator_settings()
        page = await accounts.list_accounts(q, offset=offset, limit=limit)
        items = [await _account_out(a, ops) for a in page.items]
        return AccountList(items=items, total=page.total, offset=offset, limit=limit)

    @post("/", status_code=HTTP_201_CREATED)
    async def create_account(self, request: Request[Any, Any, Any], data: AccountIn) -> AccountOut:
        ops = await load_operator_settings()
        try:
            account = await accounts.create_account(
                data.number,
                name=data.name,
                pin=data.pin or None,
                language=data.language or ops.default_language,
                caller_ids=data.caller_ids,
            )
        except accounts.AccountError as exc:
            raise _conflict_or_invalid(exc) from None
        await audit_log(request, "account.create", f"account {account.number}",
                        _account_details(msgspec.structs.asdict(data)))
        return await _account_out(account, ops)

    @get("/{number:str}")
    async def get_account(self, number: str) -> AccountOut:
        return await _account_out(await _account(number), await load_operator_settings())

    @patch("/{number:str}")
    async def update_account(self, request: Request[Any, Any, Any], number: str,
                             data: AccountPatch) -> AccountOut:
        account = await _account(number)
        try:
            account = await accounts.update_account(
                account,
                name=data.name,
                pin=data.pin or None,
                language=data.language,
                status=data.status,
                caller_ids=data.caller_ids,
            )
        except accounts.AccountError as exc:
            raise _conflict_or_invalid(exc) from None
        await audit_log(request, "account.update", f"account {account.number}",
                        _account_details(msgspec.structs.asdict(data)))
        return await _account_out(account, await load_operator_settings())

    @delete("/{number:str}", status_code=HTTP_204_NO_CONTENT)
    async def delete_account(self, request: Request[Any, Any, Any], number: str) -> None:
        """Only an account without history can be deleted; block the others instead."""
        account = await _account(number)
        if await LedgerEntry.filter(account_id=account.id).exists():
            raise ApiError(
                409, "conflict",
                "account has ledger history; block it instead (PATCH status=blocked)",
            )
        if await CreditSession.filter(account_id=account.id, state=SessionState.OPEN).exists():
            raise ApiError(409, "conflict", "account has a call in progress")
        await Account.filter(id=account.id).delete()
        await audit_log(request, "account.delete", f"account {account.number}")

    @post("/{number:str}/credit", status_code=HTTP_201_CREATED)
    async def credit(self, request: Request[Any, Any, Any], number: str,
                     data: CreditIn) -> CreditOut:
        """Add credit, given in `units` or as a money `amount` (exactly one of them)."""
        account = await _account(number)
        ops = await load_operator_settings()
        if (data.units is None) == (data.amount is None):
            raise ApiError(422, "invalid", "give exactly one of units or amount", "units")
        if data.amount is not None:
            try:
                units = money.money_to_units(money.parse_money(data.amount), ops.unit_price)
            except money.MoneyError as exc:
                raise ApiError(422, "invalid", str(exc), "amount") from None
            field = "amount"
        else:
            units = int(data.units or 0)
            field = "units"
        if units <= 0:
            raise ApiError(422, "invalid", "credit must be positive", field)
        try:
            numbers.check_units(units)
        except numbers.NumberError as exc:
            raise ApiError(422, "invalid", str(exc), field) from None
        if len(data.note) > 255:
            raise ApiError(422, "invalid", "note is at most 255 characters", "note")
        try:
            posted = await ledger.credit(account.id, units, actor=_actor(request), note=data.note)
        except ledger.InvalidAmount as exc:
            raise ApiError(422, "invalid", str(exc), field) from None
        except ledger.UnknownAccountId:
            raise ApiError(404, "not_found", f"no account {number}", "number") from None
        await audit_log(request, "credit.add", f"account {account.number}",
                        {"units": units, "entry": posted.entry_id, "note": data.note})
        return CreditOut(
            entry_id=posted.entry_id,
            units=units,
            money=_money(units, ops),
            balance=posted.balance_after,
            balance_money=_money(posted.balance_after, ops),
            currency=ops.currency,
        )

    @get("/{number:str}/statement")
    async def statement(
        self,
        number: str,
        limit: Annotated[int, Parameter(ge=1, le=10000)] = 1000,
    ) -> Statement:
        """The account's ledger (latest `limit` entries, oldest first) and its total."""
        account = await _account(number)
        ops = await load_operator_settings()
        rows = await LedgerEntry.filter(account_id=account.id).order_by("-id").limit(limit)
        entries = [
            LedgerOut(
                id=e.id,
                date=e.created_at,
                operation=e.kind.value,
                dialed=e.dialed,
                duration=e.duration,
                units=e.amount,
                money=_money(e.amount, ops),
                balance_after=e.balance_after,
                actor=e.actor,
                note=e.note,
                reference=e.reference,
            )
            for e in reversed(rows)
        ]
        return Statement(
            account=account.number,
            entries=entries,
            total=account.balance,
            total_money=_money(account.balance, ops),
            currency=ops.currency,
        )

    # caller IDs

    @get("/{number:str}/caller-ids")
    async def list_caller_ids(self, number: str) -> CallerIdsOut:
        account = await _account(number)
        return CallerIdsOut(await accounts.caller_ids(account.id))

    @put("/{number:str}/caller-ids")
    async def replace_caller_ids(self, request: Request[Any, Any, Any], number: str,
                                 data: CallerIdsIn) -> CallerIdsOut:
        account = await _account(number)
        try:
            await accounts.update_account(account, caller_ids=data.caller_ids)
        except accounts.AccountError as exc:
            raise _conflict_or_invalid(exc) from None
        listed = await accounts.caller_ids(account.id)
        await audit_log(request, "account.update", f"account {account.number}",
                        {"caller_ids": listed})
        return CallerIdsOut(listed)

    @post("/{number:str}/caller-ids", status_code=HTTP_201_CREATED)
    async def add_caller_id(self, request: Request[Any, Any, Any], number: str,
                            data: CallerIdIn) -> CallerIdsOut:
        account = await _account(number)
        current = await accounts.caller_ids(account.id)
        try:
            normalised = accounts.normalise_phone(data.number)
            if normalised in current:
                raise accounts.AccountError(
                    f"caller ID {normalised} is already on this account", "number"
                )
            await accounts.update_account(account, caller_ids=[*current, normalised])
        except accounts.AccountError as exc:
            raise _conflict_or_invalid(exc) from None
        await audit_log(request, "callerid.add", f"account {account.number}",
                        {"caller_id": normalised})
        return CallerIdsOut(await accounts.caller_ids(account.id))

    @delete("/{number:str}/caller-ids/{caller:str}", status_code=HTTP_204_NO_CONTENT)
    async def delete_caller_id(self, request: Request[Any, Any, Any], number: str,
                               caller: str) -> None:
        account = await _account(number)
        current = await accounts.caller_ids(account.id)
        try:
            normalised = accounts.normalise_phone(caller)
        except accounts.AccountError:
            normalised = caller
        if normalised not in current:
            raise ApiError(404, "not_found", f"caller ID {caller} is not on this account")
        await accounts.update_account(
            account, caller_ids=[c for c in current if c != normalised]
        )
        await audit_log(request, "callerid.delete", f"account {account.number}",
                        {"caller_id": normalised})

    # DIDs

    @get("/{number:str}/dids")
    async def list_dids(self, number: str) -> list[DidOut]:
        account = await _account(number)
        return [DidOut(d.id, d.did, d.forward_to) for d in await accounts.list_dids(account.id)]

    @post("/{number:str}/dids", status_code=HTTP_201_CREATED)
    async def add_did(self, request: Request[Any, Any, Any], number: str, data: DidIn) -> DidOut:
        account = await _account(number)
        try:
            row = await accounts.set_did(account.id, data.did, data.forward_to)
        except accounts.AccountError as exc:
            raise _conflict_or_invalid(exc) from None
        await audit_log(request, "did.set", f"account {account.number}",
                        {"did": row.did, "forward_to": row.forward_to})
        return DidOut(row.id, row.did, row.forward_to)

    @put("/{number:str}/dids/{did_id:int}")
    async def update_did(self, request: Request[Any, Any, Any], number: str, did_id: int,
                         data: DidIn) -> DidOut:
        account = await _account(number)
        try:
            row = await accounts.set_did(account.id, data.did, data.forward_to, did_id=did_id)
        except accounts.AccountError as exc:
            raise _conflict_or_invalid(exc) from None
        except LookupError:
            raise ApiError(404, "not_found", f"no DID mapping {did_id} on this account") from None
        await audit_log(request, "did.set", f"account {account.number}",
                        {"did": row.did, "forward_to": row.forward_to})
        return DidOut(row.id, row.did, row.forward_to)

    @delete("/{number:str}/dids/{did_id:int}", status_code=HTTP_204_NO_CONTENT)
    async def delete_did(self, request: Request[Any, Any, Any], number: str, did_id: int) -> None:
        account = await _account(number)
        if not await accounts.delete_did(account.id, did_id):
            raise ApiError(404, "not_found", f"no DID mapping {did_id} on this account")
        await audit_log(request, "did.delete", f"account {account.number}", {"id": did_id})


# --- tariffs --------------------------------------------------------------------------


async def _tariff_row(prefix: str) -> TariffRow:
    prefix = prefix.strip()
    if prefix.upper() == "DEFAULT":
        prefix = "DEFAULT"
    row = await TariffRow.get_or_none(prefix=prefix)
    if row is None:
        raise ApiError(404, "not_found", f"no tariff for prefix {prefix}", "prefix")
    return row


def _parse_tariff(data: TariffIn, ops: OperatorSettings) -> Any:
    values = msgspec.structs.asdict(data)
    try:
        return tariffs.parse_tariff(
            values,
            default_block=ops.default_initial_block,
            default_increment=ops.default_increment,
        )
    except tariffs.TariffError as exc:
        raise ApiError(422, "invalid", str(exc), exc.field) from None
    except rating.RatingError as exc:  # raised by rating.Tariff's own validation
        raise ApiError(422, "invalid", str(exc), rating_field(exc)) from None


class TariffController(Controller):
    path = "/api/v1/tariffs"
    tags = ["tariffs"]

    @get("/")
    async def list_tariffs(self) -> list[TariffOut]:
        """The Costs table: DEFAULT first, then prefixes; money per minute beside rates."""
        ops = await load_operator_settings()
        return [_tariff_out(r, ops) for r in await tariffs.list_tariffs()]

    @post("/", status_code=HTTP_201_CREATED)
    async def create_tariff(self, request: Request[Any, Any, Any], data: TariffIn) -> TariffOut:
        ops = await load_operator_settings()
        tariff = _parse_tariff(data, ops)
        try:
            row = await tariffs.save_tariff(tariff)
        except tariffs.TariffError as exc:
            raise _conflict_or_invalid(exc) from None
        await audit_log(request, "tariff.create", f"tariff {row.prefix}",
                        msgspec.structs.asdict(data))
        return _tariff_out(row, ops)

    @get("/csv", media_type="text/csv")
    async def export_csv(
        self, separator: Annotated[str | None, Parameter(max_length=3)] = None
    ) -> Response[str]:
        """The whole table as CSV (header row; default separator from the settings)."""
        ops = await load_operator_settings()
        text = await tariffs.export_csv(separator_of(separator, ops))
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="tariffs.csv"'},
        )

    @post("/csv", status_code=HTTP_200_OK)
    async def import_csv(
        self,
        request: Request[Any, Any, Any],
        separator: Annotated[str | None, Parameter(max_length=3)] = None,
        replace: bool = False,
    ) -> ImportResult:
        """Import a CSV body (Content-Type text/csv). All or nothing; `replace=true` also
        deletes prefixes absent from the file. A bad line: 422 with its line number."""
        ops = await load_operator_settings()
        sep = separator_of(separator, ops)
        text = await csv_text(request, MAX_CSV_BYTES)
        try:
            count = await tariffs.import_csv(
                text,
                sep,
                replace=replace,
                default_block=ops.default_initial_block,
                default_increment=ops.default_increment,
            )
        except tariffs.TariffCsvError as exc:
            raise ApiError(422, "invalid_csv", str(exc), f"line {exc.line}") from None
        except (tariffs.TariffError, rating.RatingError) as exc:
            raise ApiError(422, "invalid_csv", str(exc)) from None
        await audit_log(request, "tariff.import", "tariffs", {"rows": count, "replace": replace})
        return ImportResult(count)

    @get("/{prefix:str}")
    async def get_tariff(self, prefix: str) -> TariffOut:
        return _tariff_out(await _tariff_row(prefix), await load_operator_settings())

    @put("/{prefix:str}")
    async def replace_tariff(self, request: Request[Any, Any, Any], prefix: str,
                             data: TariffIn) -> TariffOut:
        """Replace a tariff (the body may rename its prefix)."""
        row = await _tariff_row(prefix)
        ops = await load_operator_settings()
        tariff = _parse_tariff(data, ops)
        try:
            saved = await tariffs.save_tariff(tariff, tariff_id=row.id)
        except tariffs.TariffError as exc:
            raise _conflict_or_invalid(exc) from None
        await audit_log(request, "tariff.update", f"tariff {saved.prefix}",
                        msgspec.structs.asdict(data))
        return _tariff_out(saved, ops)

    @delete("/{prefix:str}", status_code=HTTP_204_NO_CONTENT)
    async def delete_tariff(self, request: Request[Any, Any, Any], prefix: str) -> None:
        row = await _tariff_row(prefix)
        await tariffs.delete_tariff(row.id)
        await audit_log(request, "tariff.delete", f"tariff {row.prefix}")


# --- live sessions --------------------------------------------------------------------


class SessionController(Controller):
    path = "/api/v1/sessions"
    tags = ["sessions"]

    @get("/")
    async def list_sessions(self) -> list[SessionOut]:
        """Calls in progress (open credit-control sessions) with live consumption."""
        return [msgspec.convert(c.as_json(), SessionOut) for c in await live_calls()]

    @post("/{session_id:str}/kill", status_code=HTTP_200_OK)
    async def kill_session(self, request: Request[Any, Any, Any], session_id: str) -> KillOut:
        """Cut a live call: the OCS sends an Abort-Session-Request to the switch."""
        control = ctx_of(request).sessions
        if control is None:
            raise ApiError(503, "unavailable", "call control is not running in this process")
        try:
            code = await control.kill(session_id)
        except LookupError:
            raise ApiError(404, "not_found", f"no live session {session_id}") from None
        await audit_log(request, "session.kill", f"session {session_id}", {"result_code": code})
        return KillOut(session_id, code)


# --- settings -------------------------------------------------------------------------


class SettingsController(Controller):
    path = "/api/v1/settings"
    tags = ["settings"]

    @get("/")
    async def get_settings(self) -> dict[str, Any]:
        """Operator parameters (the Config screen)."""
        return (await load_operator_settings()).as_json()

    @patch("/")
    async def patch_settings(self, request: Request[Any, Any, Any],
                             data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
        """Change some parameters; all are validated before any is stored."""
        before = (await load_operator_settings()).as_json()
        try:
            after = (await save_operator_settings(data)).as_json()
        except SettingsError as exc:
            raise ApiError(422, "invalid", exc.message, exc.field) from None
        changed = {k: v for k, v in after.items() if before.get(k) != v}
        if changed:
            await audit_log(request, "config.update", "config", changed)
        return after


ROUTES: list[Any] = [AccountController, TariffController, SessionController, SettingsController]

