"""One-time events (CCR-Event): DIRECT_DEBITING, REFUND_ACCOUNT, CHECK_BALANCE,
PRICE_ENQUIRY, as pure computations against a batch's account book.

DIRECT_DEBITING is all or nothing. REFUND_ACCOUNT gives back at most what the same
Session-Id's events debited and has not yet had refunded, so a client can never create money
with it. Event entries carry the reference `event:<Session-Id>`.
"""

from __future__ import annotations

from ocs import rating
from ocs.charging.book import Book
from ocs.charging.grants import rate_destination, service_requests
from ocs.charging.outcome import EventList, Outcome, RatingContext, Refusal, refused
from ocs.charging.request_rules import EVENT_PREFIX
from ocs.charging.subscribers import Subscriber
from ocs.credit_control import CCAnswer, CCRequest, RequestedAction, ResultCode
from ocs.models import LedgerKind


def event_seconds(req: CCRequest, ctx: RatingContext) -> int:
    for sr in service_requests(req):
        if sr.used:
            return min(sum(u.cc_time for u in sr.used), ctx.settings.max_grant)
        if sr.requested_time is not None:
            return min(sr.requested_time, ctx.settings.max_grant)
    return ctx.settings.default_grant


def event_reference(session_id: str) -> str:
    """Ledger reference of a Session-Id's events: apart from a call's (its Session-Id), so a
    call's CDR always equals its CALL entry even if a client reuses a call's Session-Id."""
    return EVENT_PREFIX + session_id


def is_refund(req: CCRequest) -> bool:
    return req.requested_action is RequestedAction.REFUND_ACCOUNT


def event(
    req: CCRequest,
    subscriber: Subscriber | None,
    book: Book,
    ctx: RatingContext,
    refundable: int = 0,
) -> Outcome:
    """`refundable`: units this Session-Id debited and has not had refunded (REFUND only)."""
    action = req.requested_action
    if action is None:
        action = RequestedAction.DIRECT_DEBITING
    if subscriber is None:
        return Outcome(refused(req, Refusal(ResultCode.USER_UNKNOWN, "unknown subscriber")))
    if not subscriber.active:
        return Outcome(
            refused(req, Refusal(ResultCode.END_USER_SERVICE_DENIED, "account is blocked"))
        )
    aid = subscriber.account_id
    if action is RequestedAction.CHECK_BALANCE:
        return Outcome(
            CCAnswer(
                result_code=int(ResultCode.SUCCESS),
                request_type=req.request_type,
                request_number=req.request_number,
                remaining_balance=book.get(aid).available,
            )
        )
    try:
        called, tariff = rate_destination(req, ctx)
    except Refusal as exc:
        return Outcome(refused(req, exc))
    seconds = event_seconds(req, ctx)
    units = rating.cost(tariff, ctx.now, seconds, ctx.settings.tz)
    if action is RequestedAction.PRICE_ENQUIRY:
        return Outcome(
            CCAnswer(
                result_code=int(ResultCode.SUCCESS),
                request_type=req.request_type,
                request_number=req.request_number,
                cost_units=units,
                remaining_balance=book.get(aid).available,
            )
        )
    if action is RequestedAction.DIRECT_DEBITING:
        got = book.reserve(aid, units, units) if units else None
        if units and got is None:
            return Outcome(
                refused(
                    req,
                    Refusal(ResultCode.CREDIT_LIMIT_REACHED, "not enough credit"),
                    book.get(aid).available,
                )
            )
        settled = book.settle(
            aid,
            units,
            units,
            reference=event_reference(req.session_id),
            dialed=called,
            duration=seconds,
            at=ctx.now,
            record=seconds > 0,
        )
        balance_after, amount, kind = settled.balance_after, -settled.debited, LedgerKind.CALL
    else:  # REFUND_ACCOUNT
        units = min(units, refundable)
        if units <= 0:
            return Outcome(
                refused(
                    req,
                    Refusal(
                        ResultCode.INVALID_AVP_VALUE,
                        "nothing to refund: this Session-Id has no unrefunded debit",
                    ),
                )
            )
        balance_after = book.post(
            aid,
            units,
            LedgerKind.REFUND,
            actor="ocs",
            note=f"refund {called} {seconds}s",
            reference=event_reference(req.session_id),
            at=ctx.now,
        )
        amount, kind = units, LedgerKind.REFUND
    answer = CCAnswer(
        result_code=int(ResultCode.SUCCESS),
        request_type=req.request_type,
        request_number=req.request_number,
        granted_time=seconds if action is RequestedAction.DIRECT_DEBITING else None,
        cost_units=units,
        remaining_balance=book.get(aid).available,
    )
    events: EventList = [
        (
            "credit.change",
            {
                "account": subscriber.number,
                "account_id": aid,
                "amount": amount,
                "entry_kind": kind.value,
                "balance": balance_after,
                "actor": "ocs",
            },
        )
    ]
    return Outcome(answer, events=events)
