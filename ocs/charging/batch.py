"""A batch of credit-control work as one set-based database operation.

Whatever the number of requests in it, a batch costs a fixed number of statements:

  read    the session rows of its requests (and the silent ones, for a Tcc sweep), locked
          in Session-Id order on PostgreSQL; the subscribers of its CCR-I/E in one lookup;
          the stored answers of the Session-Ids that may be copies of answered requests;
          then its accounts, locked in id order; then what REFUND events may give back
          (after the lock, so that it sees every committed debit and refund).
  compute every request one after another against that in-memory view (`Book`): exactly
          what the same requests executed one by one would do, since nothing else can
          change the locked rows meanwhile. A request that fails is rolled back in memory
          and only its own answer says so.
  write   the new session rows, the moved-on and closed ones (guarded), the CDRs, each
          account once with its summed change (guarded by the values read), the ledger
          entries, and every answer given: one statement each (`ocs.ledger.Many`).

The same function, given one request at a time, is the per-operation path: the engine uses
it as the fallback for a batch that keeps failing, and the differential test runs both.
Locks are always taken in one order (session rows, then accounts by id) by every batch of
every process, so batches never deadlock one another; on SQLite the batch transaction is
the only writer (BEGIN IMMEDIATE).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ocs.charging import calls, one_time, records
from ocs.charging.book import Book
from ocs.charging.outcome import (
    Moved,
    Opened,
    Outcome,
    RatingContext,
    Refusal,
    error_answer,
    priced,
    refused,
)
from ocs.charging.records import SessionRecord, StoredAnswers
from ocs.charging.request_rules import (
    RequestKey,
    judge_continuation,
    judge_initial,
    needs_stored_answers,
    request_key,
)
from ocs.charging.state import LiveSession
from ocs.charging.subscribers import (
    Candidate,
    Subscriber,
    candidates,
    found,
    lookup_statement,
    pick,
)
from ocs.credit_control import CCAnswer, CCRequest, RequestType, ResultCode
from ocs.ledger import Dialect, Op, account_writes, read_accounts, run_checked


@dataclass(frozen=True, slots=True)
class Work:
    """One credit-control request, with the engine's copy of its live session, if any (a
    cache: the session's row decides)."""

    req: CCRequest
    live: LiveSession | None = None


@dataclass(frozen=True, slots=True)
class Sweep:
    """Close up to `limit` sessions silent past their expiry (Tcc), except `busy` ones."""

    limit: int = 100
    busy: frozenset[str] = frozenset()


Item = Work | Sweep
Result = Outcome | list[Outcome] | BaseException


def run(
    items: Sequence[Item], ctx: RatingContext, dialect: Dialect, *, every_answer: bool = False
) -> Op[list[Result]]:
    """`every_answer`: read the stored answers of every Session-Id (a batch run again after
    a clash with another process, which may have answered any of its requests)."""
    requests = [it.req for it in items if isinstance(it, Work)]
    sweeps = [it for it in items if isinstance(it, Sweep)]

    # --- read ---------------------------------------------------------------------------
    session_ids = {r.session_id for r in requests if r.request_type is not RequestType.EVENT}
    sessions: dict[str, SessionRecord] = {}
    if session_ids:
        for row in (yield records.read_sessions(list(session_ids), dialect)):
            rec = SessionRecord(row)
            sessions[rec.row.session_id] = rec
    expired: list[SessionRecord] = []
    if sweeps:
        busy = set().union(*(s.busy for s in sweeps)) | session_ids
        limit = max(s.limit for s in sweeps)
        for row in (yield records.read_expired(ctx.now, limit, dialect)):
            rec = SessionRecord(row)
            if rec.row.session_id not in busy:
                expired.append(rec)

    wanted: dict[int, list[Candidate]] = {}
    for i, r in enumerate(requests):
        if r.request_type in (RequestType.INITIAL, RequestType.EVENT):
            wanted[i] = candidates(r)
    known: dict[Candidate, Subscriber] = {}
    lookup = lookup_statement((c for cs in wanted.values() for c in cs), dialect)
    if lookup is not None:
        known = found((yield lookup))

    ask = sorted(
        {
            r.session_id
            for r in requests
            if every_answer
            or needs_stored_answers(
                r, sessions[r.session_id].row if r.session_id in sessions else None
            )
        }
    )
    stored = StoredAnswers((yield records.read_answers(ask, dialect)) if ask else ())

    subscribers = {i: pick(cs, known) for i, cs in wanted.items()}
    account_ids = {s.account_id for s in subscribers.values() if s is not None}
    for rec in list(sessions.values()) + expired:
        if rec.row.open and rec.row.account_id is not None:
            account_ids.add(rec.row.account_id)
    book = Book(
        {
            int(r[0]): Book.row(int(r[0]), r[1], r[2], r[3])
            for r in (yield from read_accounts(sorted(account_ids), dialect))
        }
    )

    # What REFUND events may give back, read only now that their accounts are locked: every
    # CALL/REFUND entry of an event is written holding its account's row, so this sees all
    # committed ones (read earlier, two processes could both refund one debit).
    refunds: dict[tuple[int, str], int] = {}
    refund_refs = sorted(
        {
            one_time.event_reference(r.session_id)
            for i, r in enumerate(requests)
            if r.request_type is RequestType.EVENT and one_time.is_refund(r) and subscribers[i]
        }
    )
    if refund_refs:
        rows = yield (
            "SELECT account_id, reference, COALESCE(SUM(amount), 0) FROM ledger_entry"
            " WHERE kind IN ('CALL', 'REFUND') AND "
            + dialect.in_list("reference", "text")
            + " GROUP BY account_id, reference",
            (dialect.list_param(refund_refs),),
        )
        refunds = {(int(r[0]), str(r[1])): int(r[2]) for r in rows}

    # --- compute ------------------------------------------------------------------------
    opened: list[Opened] = []
    moved: list[Moved] = []
    answers: list[tuple[RequestKey, CCAnswer]] = []
    results: list[Result] = []
    index = -1
    for item in items:
        mark = book.mark()
        written = (len(opened), len(moved), len(answers))
        try:
            if isinstance(item, Work):
                index += 1
                outcome = _request(
                    item, ctx, book, sessions, stored, subscribers.get(index), refunds
                )
                _collect(outcome, opened, moved)
                if not outcome.stored:
                    outcome.answer = priced(outcome.answer, ctx.settings)
                    # (no two requests of one session share a batch: the engine runs a
                    # session's requests one after another)
                    answers.append((request_key(item.req), outcome.answer))
                results.append(outcome)
            else:
                closed = []
                for rec in expired:
                    session = rec.live()
                    if session is None:
                        continue
                    outcome = calls.tcc_close(session, book, ctx, killed=rec.row.killed)
                    _collect(outcome, opened, moved)
                    closed.append(outcome)
                expired = []
                results.append(closed)
        except Exception as exc:  # noqa: BLE001 -- one refused operation becomes its own answer, the batch goes on
            book.rollback(mark)
            del opened[written[0] :], moved[written[1] :], answers[written[2] :]
            results.append(exc)

    # --- write: one round trip on PostgreSQL ----------------------------------------------
    changes = [
        (a.id, a.balance, a.reserved, a.read_balance, a.read_reserved)
        for a in book.accounts.values()
        if a.changed
    ]
    yield from run_checked(
        records.session_writes(opened, moved, ctx.now)
        + account_writes(changes, book.entries)
        + records.answer_writes(answers, ctx.now)
    )
    return results


def _collect(outcome: Outcome, opened: list[Opened], moved: list[Moved]) -> None:
    if isinstance(outcome.write, Opened):
        opened.append(outcome.write)
    elif isinstance(outcome.write, Moved):
        moved.append(outcome.write)


def _request(
    item: Work,
    ctx: RatingContext,
    book: Book,
    sessions: dict[str, SessionRecord],
    stored: StoredAnswers,
    subscriber: Subscriber | None,
    refunds: dict[tuple[int, str], int],
) -> Outcome:
    req = item.req
    key = request_key(req)
    if req.request_type is RequestType.EVENT:
        previous = stored.get(key)
        if previous is not None:
            return Outcome(previous, stored=True)
        refundable = 0
        if subscriber is not None and one_time.is_refund(req):
            refundable = _refundable(subscriber.account_id, req.session_id, book, refunds)
        return one_time.event(req, subscriber, book, ctx, refundable)
    rec = sessions.get(req.session_id)
    row = rec.row if rec is not None else None
    previous = stored.get(key)
    if req.request_type is RequestType.INITIAL:
        verdict = judge_initial(req, row, previous)
        if verdict is not None:
            return Outcome(verdict, stored=previous is not None)
        return calls.initial(req, subscriber, book, ctx)
    verdict = judge_continuation(req, row, previous, lambda: stored.refused_initial(req.session_id))
    if verdict is not None:
        gone = row is None or not row.open
        return Outcome(verdict, closed=gone, stored=previous is not None)
    assert rec is not None and row is not None
    live = item.live
    if live is None or live.last_request_number != row.last_request_number:
        live = rec.live()  # the engine's copy is missing or stale: the row decides
    if live is None:
        return Outcome(
            error_answer(req, ResultCode.UNKNOWN_SESSION_ID, "unknown session"), closed=True
        )
    try:
        if req.request_type is RequestType.UPDATE:
            return calls.update(req, live, book, ctx, killed=row.killed)
        return calls.terminate(req, live, book, ctx)
    except Refusal as exc:  # the usage reported is refused; the session is left as it was
        return Outcome(refused(req, exc))


def _refundable(
    account_id: int, session_id: str, book: Book, refunds: dict[tuple[int, str], int]
) -> int:
    reference = one_time.event_reference(session_id)
    net = refunds.get((account_id, reference), 0)
    # this batch's own entries for the same Session-Id count too
    net += sum(e[2] for e in book.entries if e[0] == account_id and e[4] == reference)
    return -net
