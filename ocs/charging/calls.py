"""Session-based credit control (CCR-Initial, -Update, -Terminate, and the Tcc close) as
pure computations against a batch's account book.

Each function returns an `Outcome` whose `write` describes the session record to store; it
never touches the database or the engine's memory (see `ocs.charging.batch`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ocs import rating
from ocs.charging import quota
from ocs.charging.book import Book
from ocs.charging.grants import (
    ServiceResult,
    combine,
    expires,
    grant_service,
    rate_destination,
    requested_seconds,
    service_requests,
)
from ocs.charging.outcome import EventList, Moved, Opened, Outcome, RatingContext, Refusal, refused
from ocs.charging.quota import ServiceUsage
from ocs.charging.state import LiveSession, ServiceKey
from ocs.charging.subscribers import Subscriber, calling_number
from ocs.credit_control import CCAnswer, CCRequest, MsccRequest, RequestType, ResultCode, UsedUnits
from ocs.models import LedgerKind

# RFC 6733 Termination-Cause values, as CDR end reasons
TERMINATION_CAUSES = {
    1: "NORMAL",
    2: "SERVICE_NOT_PROVIDED",
    3: "BAD_ANSWER",
    4: "ADMINISTRATIVE",
    5: "LINK_BROKEN",
    # DIAMETER_AUTH_EXPIRED: "its authorized session time has expired". The time an OCS
    # authorises is what the credit paid for: the client ran out of credit (the IVR sends it
    # for a cut on final units or after a 4012).
    6: "CREDIT_EXHAUSTED",
    7: "USER_MOVED",
    8: "SESSION_TIMEOUT",
}
# Longest a session may report using (about 68 years): what every database's columns hold.
MAX_SESSION_SECONDS = 2**31 - 1
CC_TIME = 420  # AVP code, named in Failed-AVP
KILLED = "KILLED"  # end reason of a call an operator cut whose switch then went silent
TCC_EXPIRED = "TCC_EXPIRED"


def rate_now(tariff: rating.Tariff, ctx: RatingContext) -> int:
    fixed = tariff.constant_rate
    if fixed is not None:
        return fixed
    return tariff.rate(rating.band_at(tariff, ctx.now, ctx.settings.tz))


def call_cost(session: LiveSession, ctx: RatingContext) -> int:
    tz = ctx.settings.tz
    return sum(quota.used_cost(session.tariff, s, tz) for s in session.services.values())


def session_event(
    session: LiveSession, ctx: RatingContext, available: int | None, cost: int
) -> dict[str, Any]:
    return {
        "session_id": session.session_id,
        "account": session.account_number,
        "account_id": session.account_id,
        "calling": session.calling,
        "called": session.called,
        "tariff": session.tariff.prefix,
        "rate": rate_now(session.tariff, ctx),
        "started_at": session.started_at.isoformat(),
        "used": session.used,
        "cost": cost,
        "granted": sum(s.granted for s in session.services.values()),
        "reserved": session.reserved,
        "available": available,
        "final_units": session.final_units,
        "peer": session.peer,
    }


def _low_credit(events: EventList, number: str, available: int | None, ctx: RatingContext) -> None:
    threshold = ctx.settings.low_credit_threshold
    if available is not None and available < threshold:
        events.append(
            ("credit.low", {"account": number, "available": available, "threshold": threshold})
        )


# --- CCR-Initial ----------------------------------------------------------------------------


def initial(
    req: CCRequest, subscriber: Subscriber | None, book: Book, ctx: RatingContext
) -> Outcome:
    if subscriber is None:
        return Outcome(refused(req, Refusal(ResultCode.USER_UNKNOWN, "unknown subscriber")))
    if not subscriber.active:
        return Outcome(
            refused(req, Refusal(ResultCode.END_USER_SERVICE_DENIED, "account is blocked"))
        )
    try:
        called, tariff = rate_destination(req, ctx)
    except Refusal as exc:
        return Outcome(refused(req, exc))
    uses_mscc = req.mscc is not None
    results: list[ServiceResult] = []
    available: int | None = None
    for i, sr in enumerate(service_requests(req)):
        usage = ServiceUsage(sr.rating_group, sr.service_identifier, primary=(i == 0))
        requested = requested_seconds(sr.requested, sr.requested_time, ctx.settings)
        if not uses_mscc:
            requested = requested or ctx.settings.default_grant
        result, available = grant_service(
            book, subscriber.account_id, tariff, usage, requested, ctx
        )
        results.append(result)
    answer = combine(req, results, available, uses_mscc)
    if answer.result_code != ResultCode.SUCCESS:
        # Nothing granted: hand back whatever was reserved for the refused services.
        for r in results:
            if r.usage.reserved:
                book.release(subscriber.account_id, r.usage.reserved)
        if available is not None:
            available += sum(r.usage.reserved for r in results)
        return Outcome(dataclasses.replace(answer, remaining_balance=available))
    session = LiveSession(
        session_id=req.session_id,
        account_id=subscriber.account_id,
        account_number=subscriber.number,
        calling=calling_number(req),
        called=called,
        tariff=tariff,
        started_at=ctx.now,
        peer=req.origin_host,
        services={r.usage.key: r.usage for r in results},
        last_request_number=req.request_number,
        expires_at=expires(ctx, answer),
        call_id=req.call_id or "",
        connect_delay=req.connect_delay,
        final_units=any(r.answer.final_unit_action is not None for r in results),
        uses_mscc=uses_mscc,
    )
    events: EventList = [("session.start", lambda: session_event(session, ctx, available, 0))]
    _low_credit(events, session.account_number, available, ctx)
    return Outcome(answer, session, events=events, write=Opened(session, rate_now(tariff, ctx)))


# --- CCR-Update / CCR-Terminate ---------------------------------------------------------------


def _apply_usage(session: LiveSession, sr: MsccRequest, ctx: RatingContext) -> ServiceUsage:
    key: ServiceKey = (sr.rating_group, sr.service_identifier)
    before = session.services.get(key)
    usage = before
    if usage is None:
        usage = ServiceUsage(sr.rating_group, sr.service_identifier, primary=not session.services)
    if sr.used:
        if usage.grant_start is None:
            usage = dataclasses.replace(usage, grant_start=session.started_at)
        usage = quota.record_usage(session.tariff, usage, sr.used, ctx.settings.tz)
        total = session.used - (before.used if before is not None else 0) + usage.used
        if total > MAX_SESSION_SECONDS:
            # CC-Time is an Unsigned32: a broken or hostile client could report more time
            # than a session (and its CDR) can hold; refused, the session waits for Tcc.
            raise Refusal(
                ResultCode.INVALID_AVP_VALUE,
                f"reported usage beyond {MAX_SESSION_SECONDS} s for one session",
                failed_avp=CC_TIME,
            )
    return usage


def update(
    req: CCRequest, session: LiveSession, book: Book, ctx: RatingContext, *, killed: bool = False
) -> Outcome:
    """CCR-Update: charge the reported usage into the session and grant again. A session an
    operator killed is granted nothing more (Result-Code 4012), as an account without credit
    would be: the switch ends the call even if it ignored the ASR."""
    services = dict(session.services)
    results: list[ServiceResult] = []
    available: int | None = None
    for sr in service_requests(req):
        usage = _apply_usage(session, sr, ctx)
        requested = requested_seconds(sr.requested, sr.requested_time, ctx.settings)
        if not session.uses_mscc and req.mscc is None and not requested:
            requested = ctx.settings.default_grant
        if killed and requested:
            requested, forced = 0, True
        else:
            forced = False
        result, available = grant_service(
            book, session.account_id, session.tariff, usage, requested, ctx
        )
        if forced:
            result.answer = dataclasses.replace(
                result.answer, result_code=int(ResultCode.CREDIT_LIMIT_REACHED)
            )
        services[usage.key] = result.usage
        results.append(result)
    answer = combine(req, results, available, req.mscc is not None)
    if killed:
        answer = dataclasses.replace(answer, error_message="the call was cut by the operator")
    new = session.moved_on(
        services,
        req.request_number,
        expires(ctx, answer),
        # recomputed each time: a top-up followed by a full grant lifts the final-unit state
        any(r.answer.final_unit_action is not None for r in results),
    )
    cost = call_cost(new, ctx)
    events: EventList = [("session.update", lambda: session_event(new, ctx, available, cost))]
    _low_credit(events, new.account_number, available, ctx)
    return Outcome(answer, new, events=events, write=Moved(new, session.last_request_number, cost))


def close(
    session: LiveSession,
    book: Book,
    ctx: RatingContext,
    *,
    used: list[MsccRequest],
    end_reason: str,
    request: CCRequest | None = None,
    charge_outstanding_grants: bool = False,
) -> Outcome:
    """Settle and close a session: debit the used time, release the rest, write the CDR.

    `charge_outstanding_grants` is the Tcc policy for a silent client (see ARCHITECTURE.md):
    the last granted time is taken as used, since the switch was allowed to use it."""
    services = dict(session.services)
    for sr in used:
        usage = _apply_usage(session, sr, ctx)
        services[usage.key] = usage
    if charge_outstanding_grants:
        for key, usage in list(services.items()):
            if usage.granted:
                services[key] = quota.record_usage(
                    session.tariff, usage, [UsedUnits(usage.granted)], ctx.settings.tz
                )
    tz = ctx.settings.tz
    cost = sum(quota.used_cost(session.tariff, s, tz) for s in services.values())
    used_total = sum(s.used for s in services.values())
    reserved = sum(s.reserved for s in services.values())
    settled = book.settle(
        session.account_id,
        reserved,
        cost,
        reference=session.session_id,
        dialed=session.called,
        duration=used_total,
        record=used_total > 0,
        at=ctx.now,
    )
    request_number = request.request_number if request else session.last_request_number
    available = book.get(session.account_id).available
    answer = CCAnswer(
        result_code=int(ResultCode.SUCCESS),
        request_type=request.request_type if request else RequestType.TERMINATE,
        request_number=request_number,
        remaining_balance=available,
        cost_units=settled.debited,
    )
    closed = dataclasses.replace(session, services=services, last_request_number=request_number)
    def ended() -> dict[str, Any]:
        event = session_event(closed, ctx, available, cost)
        event.update(duration=used_total, cost=settled.debited, reason=end_reason)
        return event

    events: EventList = [("session.end", ended)]
    if settled.debited:
        events.append(
            (
                "credit.change",
                {
                    "account": session.account_number,
                    "account_id": session.account_id,
                    "amount": -settled.debited,
                    "entry_kind": LedgerKind.CALL.value,
                    "balance": settled.balance_after,
                    "actor": "ocs",
                },
            )
        )
    connect_delay = (
        request.connect_delay
        if request and request.connect_delay is not None
        else session.connect_delay
    )
    write = Moved(
        closed,
        session.last_request_number,
        settled.debited,
        closed=True,
        end_reason=end_reason,
        connect_delay=connect_delay,
    )
    return Outcome(answer, None, closed=True, events=events, write=write)


def terminate(req: CCRequest, session: LiveSession, book: Book, ctx: RatingContext) -> Outcome:
    cause = req.termination_cause or 1
    reason = TERMINATION_CAUSES.get(cause, f"CAUSE_{cause}")
    return close(session, book, ctx, used=service_requests(req), end_reason=reason, request=req)


def tcc_close(
    session: LiveSession, book: Book, ctx: RatingContext, *, killed: bool = False
) -> Outcome:
    reason = KILLED if killed else TCC_EXPIRED
    return close(session, book, ctx, used=[], end_reason=reason, charge_outstanding_grants=True)
