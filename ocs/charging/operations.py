"""Credit-control requests as ledger operations (sans-I/O generators, see ocs.ledger).

Each `*_op` yields SQL statements and returns an `Outcome`: the answer, the session's new
state and the events to publish. Nothing here touches the engine's memory: the engine
applies an Outcome only after the batch holding its statements has committed, so an answer
is never sent for a change that was not made durable.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ocs import ledger, rating
from ocs.charging import quota
from ocs.charging.quota import ServiceUsage
from ocs.charging.state import LiveSession, ServiceKey, session_from_row, session_to_json
from ocs.credit_control import (
    CCAnswer,
    CCRequest,
    FinalUnitAction,
    MsccAnswer,
    MsccRequest,
    RequestedAction,
    RequestType,
    ResultCode,
    SubscriptionIdType,
    UsedUnits,
)
from ocs.ledger import Op
from ocs.models import LedgerKind
from ocs.settings_store import OperatorSettings

# RFC 4006 Termination-Cause values, as CDR end reasons
TERMINATION_CAUSES = {
    1: "NORMAL",
    2: "SERVICE_NOT_PROVIDED",
    3: "BAD_ANSWER",
    4: "ADMINISTRATIVE",
    5: "LINK_BROKEN",
    6: "AUTH_EXPIRED",
    7: "USER_MOVED",
    8: "SESSION_TIMEOUT",
}


@dataclass(frozen=True, slots=True)
class RatingContext:
    table: rating.TariffTable
    settings: OperatorSettings
    now: datetime
    grace: float = 10.0
    strategy: ledger.Strategy = ledger.Strategy.CONDITIONAL


@dataclass
class Outcome:
    answer: CCAnswer
    session: LiveSession | None = None  # live state after the request (None: not live)
    closed: bool = False
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Subscriber:
    account_id: int
    number: str
    active: bool


class SessionConflict(Exception):
    """The session's row moved on (closed, or served by another process) since this copy
    was read: the operation is rolled back and the engine retries from the database."""


class Refusal(Exception):
    """Refuse the whole request with a Result-Code."""

    def __init__(self, code: int, message: str, failed_avp: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.failed_avp = failed_avp


AVP_CALLED_PARTY_ADDRESS = 832
AVP_SUBSCRIPTION_ID = 443
AVP_REQUESTED_ACTION = 436


def _digits(raw: str) -> str | None:
    try:
        return rating.normalise_number(raw)
    except rating.RatingError:
        return None


def subscriber_candidates(req: CCRequest) -> list[tuple[str, str]]:
    """(table, key) lookups in order of preference: account number or caller ID."""
    out: list[tuple[str, str]] = []
    for sub in req.subscription_ids:
        data = sub.data.strip()
        if sub.type is SubscriptionIdType.END_USER_PRIVATE:
            out.append(("account", data))
        elif sub.type in (SubscriptionIdType.END_USER_E164, SubscriptionIdType.END_USER_SIP_URI):
            digits = _digits(data)
            if digits:
                out += [("caller", digits), ("account", digits)]
            elif sub.type is SubscriptionIdType.END_USER_SIP_URI:
                user = data.split(":", 1)[-1].split("@", 1)[0]
                out.append(("account", user))
        elif sub.type is SubscriptionIdType.END_USER_NAI:
            user = data.split("@", 1)[0]
            out.append(("account", user))
            digits = _digits(user)
            if digits:
                out.append(("caller", digits))
        else:
            out.append(("account", data))
    if not out and req.calling_party:
        digits = _digits(req.calling_party)
        if digits:
            out.append(("caller", digits))
    seen: set[tuple[str, str]] = set()
    return [c for c in out if not (c in seen or seen.add(c))]  # type: ignore[func-returns-value]


def resolve_subscriber(req: CCRequest) -> Op[Subscriber | None]:
    for table, key in subscriber_candidates(req):
        if table == "account":
            rows = yield ("SELECT id, number, status FROM account WHERE number = ?", (key,))
        else:
            rows = yield (
                "SELECT a.id, a.number, a.status FROM caller_id c"
                " JOIN account a ON a.id = c.account_id WHERE c.number = ?",
                (key,),
            )
        if rows:
            return Subscriber(int(rows[0][0]), str(rows[0][1]), rows[0][2] == "active")
    return None


def _rate_destination(req: CCRequest, ctx: RatingContext) -> tuple[str, rating.Tariff]:
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


def _requested_seconds(requested: bool, requested_time: int | None, ops: OperatorSettings) -> int:
    if requested_time is not None and requested_time > 0:
        return min(requested_time, ops.max_grant)
    return ops.default_grant if requested or requested_time is None else 0


def _refused(req: CCRequest, exc: Refusal, remaining: int | None = None) -> CCAnswer:
    return CCAnswer(
        result_code=exc.code,
        request_type=req.request_type,
        request_number=req.request_number,
        failed_avp_code=exc.failed_avp,
        error_message=str(exc),
        remaining_balance=remaining,
    )


@dataclass
class _ServiceResult:
    usage: ServiceUsage
    answer: MsccAnswer


def _grant_service(
    account_id: int,
    tariff: rating.Tariff,
    usage: ServiceUsage,
    requested: int,
    ctx: RatingContext,
) -> Op[tuple[_ServiceResult, int | None]]:
    """Settle the service's reservation for `requested` more seconds and grant what fits.
    Returns the result and the account's available units afterwards (if read)."""
    tz = ctx.settings.tz
    now = ctx.now
    plan = quota.plan_reservation(tariff, usage, requested, now, tz)
    reserved = usage.reserved
    available: int | None = None
    if plan.release:
        yield from ledger.release(account_id, plan.release)
        reserved -= plan.release
    if plan.want:
        got = yield from ledger.reserve(account_id, plan.want, plan.minimum, ctx.strategy)
        if got is not None:
            reserved += got.taken
            available = got.available_after
    if available is None:
        available = (yield from ledger.read_balance(account_id)).available
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
    new_usage = dataclasses.replace(
        usage, reserved=reserved, granted=granted, grant_start=now, tariff_time_change=ttc
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
    return _ServiceResult(new_usage, answer), available


def _service_requests(req: CCRequest) -> list[MsccRequest]:
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


def _combine(
    req: CCRequest,
    results: list[_ServiceResult],
    available: int | None,
    uses_mscc: bool,
    cost_units: int | None = None,
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
            cost_units=cost_units,
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
        cost_units=cost_units,
    )


def _session_event(
    session: LiveSession, ctx: RatingContext, available: int | None
) -> dict[str, Any]:
    cost = sum(
        quota.used_cost(session.tariff, s, ctx.settings.tz) for s in session.services.values()
    )
    return {
        "session_id": session.session_id,
        "account": session.account_number,
        "account_id": session.account_id,
        "calling": session.calling,
        "called": session.called,
        "tariff": session.tariff.prefix,
        "rate": _rate_now(session.tariff, ctx),
        "started_at": session.started_at.isoformat(),
        "used": session.used,
        "cost": cost,
        "granted": sum(s.granted for s in session.services.values()),
        "reserved": session.reserved,
        "available": available,
        "final_units": session.final_units,
        "peer": session.peer,
    }


def _rate_now(tariff: rating.Tariff, ctx: RatingContext) -> int:
    return tariff.rate(rating.band_at(tariff, ctx.now, ctx.settings.tz))


def _expires(ctx: RatingContext, answer: CCAnswer) -> datetime:
    validities = [answer.validity_time or 0]
    if answer.mscc:
        validities += [m.validity_time or 0 for m in answer.mscc]
    longest = max(validities) or ctx.settings.validity_time
    return ctx.now + timedelta(seconds=longest + ctx.grace)


def _low_credit(
    events: list[tuple[str, dict[str, Any]]], number: str, available: int | None, ctx: RatingContext
) -> None:
    threshold = ctx.settings.low_credit_threshold
    if available is not None and available < threshold:
        events.append(
            ("credit.low", {"account": number, "available": available, "threshold": threshold})
        )


# --- CCR-Initial ----------------------------------------------------------------------------


def initial_op(req: CCRequest, ctx: RatingContext) -> Op[Outcome]:
    subscriber = yield from resolve_subscriber(req)
    if subscriber is None:
        return Outcome(_refused(req, Refusal(ResultCode.USER_UNKNOWN, "unknown subscriber")))
    if not subscriber.active:
        return Outcome(
            _refused(req, Refusal(ResultCode.END_USER_SERVICE_DENIED, "account is blocked"))
        )
    try:
        called, tariff = _rate_destination(req, ctx)
    except Refusal as exc:
        return Outcome(_refused(req, exc))
    uses_mscc = req.mscc is not None
    results: list[_ServiceResult] = []
    available: int | None = None
    for i, sr in enumerate(_service_requests(req)):
        usage = ServiceUsage(sr.rating_group, sr.service_identifier, primary=(i == 0))
        requested = _requested_seconds(sr.requested, sr.requested_time, ctx.settings)
        if not uses_mscc:
            requested = requested or ctx.settings.default_grant
        result, available = yield from _grant_service(
            subscriber.account_id, tariff, usage, requested, ctx
        )
        results.append(result)
    answer = _combine(req, results, available, uses_mscc)
    if answer.result_code != ResultCode.SUCCESS:
        # Nothing granted: hand back whatever was reserved for the refused services.
        for r in results:
            if r.usage.reserved:
                yield from ledger.release(subscriber.account_id, r.usage.reserved)
        if available is not None:
            available += sum(r.usage.reserved for r in results)
        answer = dataclasses.replace(answer, remaining_balance=available)
        return Outcome(answer)
    calling = _digits(req.calling_party or "") or next(
        (
            d
            for s in req.subscription_ids
            if s.type in (SubscriptionIdType.END_USER_E164, SubscriptionIdType.END_USER_SIP_URI)
            and (d := _digits(s.data))
        ),
        "",
    )
    session = LiveSession(
        session_id=req.session_id,
        account_id=subscriber.account_id,
        account_number=subscriber.number,
        calling=calling,
        called=called,
        tariff=tariff,
        started_at=ctx.now,
        peer=req.origin_host,
        services={r.usage.key: r.usage for r in results},
        last_request_number=req.request_number,
        last_answer=answer,
        expires_at=_expires(ctx, answer),
        call_id=req.call_id or "",
        connect_delay=req.connect_delay,
        final_units=any(r.answer.final_unit_action is not None for r in results),
        uses_mscc=uses_mscc,
    )
    yield (
        "INSERT INTO credit_session (session_id, account_id, state, peer, calling, called,"
        " tariff_prefix, rate, reserved, used_seconds, cost, last_request_number, last_answer,"
        " started_at, expires_at, updated_at, end_reason)"
        " VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?, ?, ?, '')",
        (
            session.session_id,
            session.account_id,
            session.peer,
            session.calling,
            called,
            tariff.prefix,
            _rate_now(tariff, ctx),
            session.reserved,
            req.request_number,
            json.dumps(session_to_json(session)),
            ctx.now,
            session.expires_at,
            ctx.now,
        ),
    )
    events = [("session.start", _session_event(session, ctx, available))]
    _low_credit(events, session.account_number, available, ctx)
    return Outcome(answer, session, events=events)


# --- loading a session this process does not hold ------------------------------------------


def load_session(session_id: str) -> Op[tuple[str, LiveSession | None]]:
    """('open'|'closed'|'missing', session). Closed sessions come back for their answer."""
    rows = yield (
        "SELECT account_id, calling, called, started_at, peer, last_request_number,"
        " expires_at, last_answer, state FROM credit_session WHERE session_id = ?",
        (session_id,),
    )
    if not rows:
        return "missing", None
    r = rows[0]
    data = r[7] if isinstance(r[7], dict) else json.loads(r[7])
    if "services" not in data:  # an event's record: only the answer is kept
        return str(r[8]), None
    session = session_from_row(
        session_id=session_id,
        account_id=int(r[0]),
        calling=r[1],
        called=r[2],
        started_at=_as_dt(r[3]),
        peer=r[4],
        last_request_number=int(r[5]),
        expires_at=_as_dt(r[6]) if r[6] is not None else _as_dt(r[3]),  # NULL: claimed
        data=data,
    )
    return str(r[8]), session


def _as_dt(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


# --- CCR-Update / CCR-Terminate ---------------------------------------------------------------


def _apply_usage(session: LiveSession, sr: MsccRequest, ctx: RatingContext) -> ServiceUsage:
    key: ServiceKey = (sr.rating_group, sr.service_identifier)
    usage = session.services.get(key)
    if usage is None:
        usage = ServiceUsage(sr.rating_group, sr.service_identifier, primary=not session.services)
    if sr.used:
        if usage.grant_start is None:
            usage = dataclasses.replace(usage, grant_start=session.started_at)
        usage = quota.record_usage(session.tariff, usage, sr.used, ctx.settings.tz)
    return usage


def update_op(req: CCRequest, session: LiveSession, ctx: RatingContext) -> Op[Outcome]:
    services = dict(session.services)
    results: list[_ServiceResult] = []
    available: int | None = None
    requests = _service_requests(req)
    for sr in requests:
        usage = _apply_usage(session, sr, ctx)
        requested = _requested_seconds(sr.requested, sr.requested_time, ctx.settings)
        if not session.uses_mscc and req.mscc is None and not requested:
            requested = ctx.settings.default_grant
        result, available = yield from _grant_service(
            session.account_id, session.tariff, usage, requested, ctx
        )
        services[usage.key] = result.usage
        results.append(result)
    answer = _combine(req, results, available, req.mscc is not None)
    new = dataclasses.replace(
        session,
        services=services,
        last_request_number=req.request_number,
        last_answer=answer,
        expires_at=_expires(ctx, answer),
        # recomputed each time: a top-up followed by a full grant lifts the final-unit state
        final_units=any(r.answer.final_unit_action is not None for r in results),
    )
    cost = sum(quota.used_cost(new.tariff, s, ctx.settings.tz) for s in services.values())
    guarded = yield (
        "UPDATE credit_session SET reserved = ?, used_seconds = ?, cost = ?,"
        " last_request_number = ?, last_answer = ?, expires_at = ?, updated_at = ?"
        " WHERE session_id = ? AND state = 'open' AND last_request_number = ?"
        " RETURNING session_id",
        (
            new.reserved,
            new.used,
            cost,
            req.request_number,
            json.dumps(session_to_json(new)),
            new.expires_at,
            ctx.now,
            new.session_id,
            session.last_request_number,
        ),
    )
    if not guarded:
        raise SessionConflict(new.session_id)
    events = [("session.update", _session_event(new, ctx, available))]
    _low_credit(events, new.account_number, available, ctx)
    return Outcome(answer, new, events=events)


def close_op(
    session: LiveSession,
    ctx: RatingContext,
    *,
    used: list[MsccRequest],
    end_reason: str,
    request: CCRequest | None = None,
    charge_outstanding_grants: bool = False,
) -> Op[Outcome]:
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
    settled = yield from ledger.settle(
        session.account_id,
        reserved,
        cost,
        reference=session.session_id,
        dialed=session.called,
        duration=used_total,
        record=used_total > 0,
        at=ctx.now,
        strategy=ctx.strategy,
    )
    request_number = request.request_number if request else session.last_request_number
    answer = CCAnswer(
        result_code=int(ResultCode.SUCCESS),
        request_type=request.request_type if request else RequestType.TERMINATE,
        request_number=request_number,
        remaining_balance=None,
        cost_units=settled.debited,
    )
    available = (yield from ledger.read_balance(session.account_id)).available
    answer = dataclasses.replace(answer, remaining_balance=available)
    closed = dataclasses.replace(
        session, services=services, last_request_number=request_number, last_answer=answer
    )
    guarded = yield (
        "UPDATE credit_session SET state = 'closed', reserved = 0, used_seconds = ?, cost = ?,"
        " last_request_number = ?, last_answer = ?, updated_at = ?, end_reason = ?"
        " WHERE session_id = ? AND state = 'open' AND last_request_number = ?"
        " RETURNING session_id",
        (
            used_total,
            settled.debited,
            request_number,
            json.dumps(session_to_json(closed)),
            ctx.now,
            end_reason,
            session.session_id,
            session.last_request_number,
        ),
    )
    if not guarded:
        raise SessionConflict(session.session_id)
    yield (
        "INSERT INTO cdr (account_id, account_number, session_id, call_id, calling, dialed,"
        " started_at, connect_delay, duration, cost, tariff_prefix, end_reason, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            session.account_id,
            session.account_number,
            session.session_id,
            session.call_id or session.session_id,
            session.calling,
            session.called,
            session.started_at,
            request.connect_delay
            if request and request.connect_delay is not None
            else session.connect_delay,
            used_total,
            settled.debited,
            session.tariff.prefix,
            end_reason,
            ctx.now,
        ),
    )
    event = _session_event(closed, ctx, available)
    event.update(duration=used_total, cost=settled.debited, reason=end_reason)
    events: list[tuple[str, dict[str, Any]]] = [("session.end", event)]
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
    return Outcome(answer, None, closed=True, events=events)


def terminate_op(req: CCRequest, session: LiveSession, ctx: RatingContext) -> Op[Outcome]:
    reason = TERMINATION_CAUSES.get(req.termination_cause or 1, f"CAUSE_{req.termination_cause}")
    return (
        yield from close_op(
            session, ctx, used=_service_requests(req), end_reason=reason, request=req
        )
    )


# --- CCR-Event ------------------------------------------------------------------------------------


def _event_seconds(req: CCRequest, ctx: RatingContext) -> int:
    for sr in _service_requests(req):
        if sr.used:
            return min(sum(u.cc_time for u in sr.used), ctx.settings.max_grant)
        if sr.requested_time is not None:
            return min(sr.requested_time, ctx.settings.max_grant)
    return ctx.settings.default_grant


def _record_event(
    req: CCRequest, account_id: int | None, answer: CCAnswer, ctx: RatingContext
) -> Op[None]:
    """Keep the answer so a retransmitted event is answered identically, not re-charged."""
    from ocs.charging.state import answer_to_json

    yield (
        "INSERT INTO credit_session (session_id, account_id, state, peer, calling, called,"
        " tariff_prefix, rate, reserved, used_seconds, cost, last_request_number, last_answer,"
        " started_at, expires_at, updated_at, end_reason)"
        " VALUES (?, ?, 'closed', ?, '', '', '', 0, 0, 0, ?, ?, ?, ?, NULL, ?, 'EVENT')"
        # several events may share a Session-Id (e.g. a debit then its refund)
        " ON CONFLICT (session_id) DO UPDATE SET cost = excluded.cost,"
        " last_request_number = excluded.last_request_number,"
        " last_answer = excluded.last_answer, updated_at = excluded.updated_at"
        " WHERE credit_session.end_reason = 'EVENT'",
        (
            req.session_id,
            account_id,
            req.origin_host,
            answer.cost_units or 0,
            req.request_number,
            json.dumps({"answer": answer_to_json(answer)}),
            ctx.now,
            ctx.now,
        ),
    )


def event_op(req: CCRequest, ctx: RatingContext) -> Op[Outcome]:
    action = req.requested_action
    if action is None:
        action = RequestedAction.DIRECT_DEBITING
    subscriber = yield from resolve_subscriber(req)
    if subscriber is None:
        return Outcome(_refused(req, Refusal(ResultCode.USER_UNKNOWN, "unknown subscriber")))
    if not subscriber.active:
        return Outcome(
            _refused(req, Refusal(ResultCode.END_USER_SERVICE_DENIED, "account is blocked"))
        )
    aid = subscriber.account_id
    if action is RequestedAction.CHECK_BALANCE:
        bal = yield from ledger.read_balance(aid)
        answer = CCAnswer(
            result_code=int(ResultCode.SUCCESS),
            request_type=req.request_type,
            request_number=req.request_number,
            remaining_balance=bal.available,
        )
        return Outcome(answer)
    try:
        called, tariff = _rate_destination(req, ctx)
    except Refusal as exc:
        return Outcome(_refused(req, exc))
    seconds = _event_seconds(req, ctx)
    tz = ctx.settings.tz
    units = rating.cost(tariff, ctx.now, seconds, tz)
    if action is RequestedAction.PRICE_ENQUIRY:
        bal = yield from ledger.read_balance(aid)
        answer = CCAnswer(
            result_code=int(ResultCode.SUCCESS),
            request_type=req.request_type,
            request_number=req.request_number,
            cost_units=units,
            remaining_balance=bal.available,
        )
        return Outcome(answer)
    events: list[tuple[str, dict[str, Any]]] = []
    if action is RequestedAction.DIRECT_DEBITING:
        got = (yield from ledger.reserve(aid, units, units, ctx.strategy)) if units else None
        if units and got is None:
            bal = yield from ledger.read_balance(aid)
            return Outcome(
                _refused(
                    req,
                    Refusal(ResultCode.CREDIT_LIMIT_REACHED, "not enough credit"),
                    bal.available,
                )
            )
        settled = yield from ledger.settle(
            aid,
            units,
            units,
            reference=req.session_id,
            dialed=called,
            duration=seconds,
            at=ctx.now,
            record=seconds > 0,
            strategy=ctx.strategy,
        )
        balance_after, amount = settled.balance_after, -settled.debited
        kind = LedgerKind.CALL
    else:  # REFUND_ACCOUNT
        # A refund gives back at most what this Session-Id debited and has not yet refunded,
        # so a client can never create money with it.
        net = yield (
            "SELECT COALESCE(SUM(amount), 0) FROM ledger_entry"
            " WHERE account_id = ? AND reference = ? AND kind IN ('CALL', 'REFUND')",
            (aid, req.session_id),
        )
        units = min(units, -int(net[0][0]))
        if units <= 0:
            return Outcome(
                _refused(
                    req,
                    Refusal(
                        ResultCode.INVALID_AVP_VALUE,
                        "nothing to refund: this Session-Id has no unrefunded debit",
                    ),
                )
            )
        posted = yield from ledger.post(
            aid,
            units,
            LedgerKind.REFUND,
            actor="ocs",
            note=f"refund {called} {seconds}s",
            reference=req.session_id,
            at=ctx.now,
        )
        balance_after, amount = posted.balance_after, units
        kind = LedgerKind.REFUND
    bal = yield from ledger.read_balance(aid)
    answer = CCAnswer(
        result_code=int(ResultCode.SUCCESS),
        request_type=req.request_type,
        request_number=req.request_number,
        granted_time=seconds if action is RequestedAction.DIRECT_DEBITING else None,
        cost_units=units,
        remaining_balance=bal.available,
    )
    yield from _record_event(req, aid, answer, ctx)
    events.append(
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
    )
    return Outcome(answer, events=events)


def event_answer_op(
    session_id: str, request_number: int, request_type: RequestType | None = None
) -> Op[CCAnswer | None]:
    """A stored answer for (session, request number[, type]), if that request was served."""
    from ocs.charging.state import answer_from_json

    rows = yield (
        "SELECT last_request_number, last_answer FROM credit_session WHERE session_id = ?",
        (session_id,),
    )
    if not rows or int(rows[0][0]) != request_number:
        return None
    data = rows[0][1] if isinstance(rows[0][1], dict) else json.loads(rows[0][1])
    answer = answer_from_json(data["answer"])
    if request_type is not None and answer.request_type is not request_type:
        return None
    return answer
