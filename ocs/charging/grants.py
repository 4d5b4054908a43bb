"""Granting time to the services of a request, against a batch's account book.

One service is the top-level units of a CCR, or one MSCC (Rating-Group / Service-
Identifier). For each, the reservation is adjusted to cover what it has used plus the
seconds asked for (`quota.plan_reservation`), and the longest grant that fits is given,
with Final-Unit-Indication when it is the last the account affords and Tariff-Time-Change
when it crosses a band edge. The answers of all services are then combined into one CCA.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ocs import rating
from ocs.charging import quota
from ocs.charging.book import Book
from ocs.charging.outcome import RatingContext, Refusal
from ocs.charging.quota import ServiceUsage
from ocs.credit_control import (
    CCAnswer,
    CCRequest,
    FinalUnitAction,
    MsccAnswer,
    MsccRequest,
    ResultCode,
)
from ocs.settings_store import OperatorSettings

AVP_CALLED_PARTY_ADDRESS = 832


@dataclass(slots=True)
class ServiceResult:
    usage: ServiceUsage
    answer: MsccAnswer


def rate_destination(req: CCRequest, ctx: RatingContext) -> tuple[str, rating.Tariff]:
    if not req.called_party:
        raise Refusal(
            ResultCode.MISSING_AVP,
            "no destination: Called-Party-Address is required",
            AVP_CALLED_PARTY_ADDRESS,
        )
    try:
        called = rating.normalise_number(req.called_party)
    except rating.RatingError as exc:
        raise Refusal(ResultCode.INVALID_AVP_VALUE, str(exc), AVP_CALLED_PARTY_ADDRESS) from None
    try:
        tariff = ctx.table.match(called)
    except rating.NoTariff as exc:
        raise Refusal(ResultCode.RATING_FAILED, str(exc)) from None
    if tariff.barred:
        raise Refusal(ResultCode.END_USER_SERVICE_DENIED, f"destination {called} is barred")
    return called, tariff


def requested_seconds(requested: bool, requested_time: int | None, ops: OperatorSettings) -> int:
    if requested_time is not None and requested_time > 0:
        return min(requested_time, ops.max_grant)
    return ops.default_grant if requested or requested_time is None else 0


def service_requests(req: CCRequest) -> list[MsccRequest]:
    if req.mscc is None:
        return [MsccRequest(None, None, req.requested, req.requested_time, req.used)]
    # Two MSCCs for the same Rating-Group/Service-Identifier are one service: their usage
    # adds up and they get one grant (otherwise a reservation would be counted once).
    merged: dict[tuple[int | None, int | None], MsccRequest] = {}
    for m in req.mscc:
        key = (m.rating_group, m.service_identifier)
        prev = merged.get(key)
        if prev is None:
            merged[key] = m
            continue
        merged[key] = MsccRequest(
            m.rating_group,
            m.service_identifier,
            prev.requested or m.requested,
            max(
                (t for t in (prev.requested_time, m.requested_time) if t is not None),
                default=None,
            ),
            prev.used + m.used,
        )
    return list(merged.values())


def grant_service(
    book: Book,
    account_id: int,
    tariff: rating.Tariff,
    usage: ServiceUsage,
    requested: int,
    ctx: RatingContext,
) -> tuple[ServiceResult, int]:
    """Settle the service's reservation for `requested` more seconds and grant what fits.
    Returns the result and the account's available units afterwards."""
    tz = ctx.settings.tz
    now = ctx.now
    plan = quota.plan_reservation(tariff, usage, requested, now, tz)
    reserved = usage.reserved
    available: int | None = None
    if plan.release:
        book.release(account_id, plan.release)
        reserved -= plan.release
    if plan.want:
        got = book.reserve(account_id, plan.want, plan.minimum)
        if got is not None:
            reserved += got.taken
            available = got.available_after
    if available is None:
        available = book.get(account_id).available
    granted = quota.grantable(tariff, usage, reserved, requested, now, tz)
    if requested and granted == 0:
        code = int(ResultCode.CREDIT_LIMIT_REACHED)
    else:
        code = int(ResultCode.SUCCESS)
    fui = bool(requested) and (
        granted == 0
        or quota.needs_final_unit(tariff, usage, granted, requested, reserved, available, now, tz)
    )
    ttc = quota.tariff_change_within(tariff, now, granted, tz)
    new_usage = ServiceUsage(
        usage.rating_group,
        usage.service_identifier,
        usage.primary,
        usage.pieces,
        usage.used,
        usage.raw_cost,
        reserved,
        granted,
        now,
        ttc,
    )
    validity = max(ctx.settings.validity_time, granted) if granted else None
    answer = MsccAnswer(
        result_code=code,
        rating_group=usage.rating_group,
        service_identifier=usage.service_identifier,
        granted_time=granted if granted else None,
        validity_time=validity,
        final_unit_action=FinalUnitAction.TERMINATE if fui and granted else None,
        tariff_time_change=ttc,
    )
    return ServiceResult(new_usage, answer), available


def combine(
    req: CCRequest,
    results: list[ServiceResult],
    available: int | None,
    uses_mscc: bool,
) -> CCAnswer:
    answers = [r.answer for r in results]
    ok = [a for a in answers if a.result_code == ResultCode.SUCCESS]
    top = int(ResultCode.SUCCESS) if ok or not answers else answers[0].result_code
    if uses_mscc:
        return CCAnswer(
            result_code=top,
            request_type=req.request_type,
            request_number=req.request_number,
            mscc=tuple(answers),
            remaining_balance=available,
        )
    a = answers[0]
    return CCAnswer(
        result_code=a.result_code if not ok else top,
        request_type=req.request_type,
        request_number=req.request_number,
        granted_time=a.granted_time,
        validity_time=a.validity_time,
        final_unit_action=a.final_unit_action,
        tariff_time_change=a.tariff_time_change,
        remaining_balance=available,
    )


def expires(ctx: RatingContext, answer: CCAnswer) -> datetime:
    validities = [answer.validity_time or 0]
    if answer.mscc:
        validities += [m.validity_time or 0 for m in answer.mscc]
    longest = max(validities) or ctx.settings.validity_time
    return ctx.now + timedelta(seconds=longest + ctx.grace)
