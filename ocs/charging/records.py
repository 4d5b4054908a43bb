"""The one owner of a call's records: every statement on `credit_session`, `cdr` and
`cc_answer` is written here.

Reads serve a batch (the rows its requests need, locked on PostgreSQL in Session-Id order);
writes are set-based (`ocs.ledger.Many`): one statement per kind of write per batch,
whatever the number of rows. Session writes are guarded by state and request number, so a
row that moved on since it was read is never overwritten (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from ocs.charging.outcome import Moved, Opened
from ocs.charging.request_rules import RequestKey, SessionRow
from ocs.charging.state import (
    LiveSession,
    answer_from_json,
    answer_to_json,
    session_from_row,
    session_to_json,
)
from ocs.credit_control import CCAnswer, RequestType
from ocs.ledger import Check, Dialect, LedgerError, Many, Op, Row, Statement

_SESSION_COLUMNS = (
    "session_id, account_id, state, last_request_number, killed, calling, called, started_at,"
    " peer, expires_at, charging_state"
)


class SessionClash(LedgerError):
    """A session row a batch wrote was taken or moved on by another process meanwhile: the
    batch is rolled back and run again, and then sees that process's work."""


def as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


class SessionRecord:
    """A `credit_session` row as a batch read it; the live state is parsed on demand."""

    __slots__ = ("_data", "row")

    def __init__(self, r: Row) -> None:
        self.row = SessionRow(
            session_id=str(r[0]),
            account_id=int(r[1]) if r[1] is not None else None,
            open=r[2] == "open",
            last_request_number=int(r[3]),
            killed=bool(r[4]),
        )
        self._data = r

    def live(self) -> LiveSession | None:
        """The session's state for charging, None for a record that holds none."""
        r = self._data
        data = r[10] if isinstance(r[10], dict) else json.loads(r[10]) if r[10] else {}
        if "services" not in data or r[1] is None:
            return None
        started = as_datetime(r[7])
        return session_from_row(
            session_id=str(r[0]),
            account_id=int(r[1]),
            calling=r[5],
            called=r[6],
            started_at=started,
            peer=r[8],
            last_request_number=int(r[3]),
            expires_at=as_datetime(r[9]) if r[9] is not None else started,
            data=data,
        )


# --- reads ---------------------------------------------------------------------------------


def read_sessions(session_ids: Sequence[str], dialect: Dialect) -> Statement:
    return (
        f"SELECT {_SESSION_COLUMNS} FROM credit_session WHERE "
        + dialect.in_list("session_id", "text")
        + " ORDER BY session_id"
        + dialect.for_update,
        (dialect.list_param(sorted(session_ids)),),
    )


def read_expired(now: datetime, limit: int, dialect: Dialect) -> Statement:
    """Open sessions silent past their expiry, oldest first; on PostgreSQL rows another
    process is working on are skipped (it owns them for now)."""
    return (
        # (a row whose account was deleted holds no money: left out, or 100 of them first in
        # line would stop every Tcc close)
        f"SELECT {_SESSION_COLUMNS} FROM credit_session WHERE state = 'open' AND expires_at < ?"
        " AND account_id IS NOT NULL"
        f" ORDER BY expires_at LIMIT {int(limit)}" + dialect.skip_locked,
        (now,),
    )


def read_answers(session_ids: Sequence[str], dialect: Dialect) -> Statement:
    return (
        "SELECT session_id, request_type, request_number, answer FROM cc_answer WHERE "
        + dialect.in_list("session_id", "text"),
        (dialect.list_param(sorted(session_ids)),),
    )


class StoredAnswers:
    """The stored answers of some Session-Ids, parsed on demand."""

    __slots__ = ("_raw",)

    def __init__(self, rows: Iterable[Row]) -> None:
        self._raw: dict[RequestKey, Any] = {(str(r[0]), int(r[1]), int(r[2])): r[3] for r in rows}

    def get(self, key: RequestKey) -> CCAnswer | None:
        raw = self._raw.get(key) if self._raw else None
        if raw is None:
            return None
        return answer_from_json(raw if isinstance(raw, dict) else json.loads(raw))

    def refused_initial(self, session_id: str) -> bool:
        """A CCR-I of this Session-Id was answered with anything but success."""
        for (sid, kind, _), raw in self._raw.items():
            if sid == session_id and kind == int(RequestType.INITIAL):
                data = raw if isinstance(raw, dict) else json.loads(raw)
                if data.get("result_code") != 2001:
                    return True
        return False


# --- writes --------------------------------------------------------------------------------

_INSERT_SESSIONS = Many(
    "INSERT INTO credit_session (session_id, account_id, state, peer, calling, called,"
    " tariff_prefix, rate, reserved, used_seconds, cost, last_request_number, charging_state,"
    " started_at, expires_at, updated_at, end_reason, killed)"
    " VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?, ?, ?, '', 0)"
    " ON CONFLICT (session_id) DO NOTHING",
    "INSERT INTO credit_session (session_id, account_id, state, peer, calling, called,"
    " tariff_prefix, rate, reserved, used_seconds, cost, last_request_number, charging_state,"
    " started_at, expires_at, updated_at, end_reason, killed)"
    " SELECT v.sid, v.aid, 'open', v.peer, v.calling, v.called, v.prefix, v.rate, v.reserved,"
    " 0, 0, v.rn, v.cs::jsonb, v.started, v.expires, v.updated, '', false"
    " FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[],"
    " $7::int[], $8::bigint[], $9::bigint[], $10::text[], $11::timestamptz[],"
    " $12::timestamptz[], $13::timestamptz[])"
    " AS v(sid, aid, peer, calling, called, prefix, rate, reserved, rn, cs, started, expires,"
    " updated)"
    " ON CONFLICT (session_id) DO NOTHING",
    times=(10, 11, 12),
)
_MOVE_SESSIONS = Many(
    "UPDATE credit_session SET state = ?, reserved = ?, used_seconds = ?, cost = ?,"
    " last_request_number = ?, charging_state = ?, expires_at = ?, updated_at = ?,"
    " end_reason = ? WHERE session_id = ? AND state = 'open' AND last_request_number = ?",
    "UPDATE credit_session AS s SET state = v.state, reserved = v.reserved,"
    " used_seconds = v.used, cost = v.cost, last_request_number = v.rn,"
    " charging_state = v.cs::jsonb, expires_at = v.expires, updated_at = v.updated,"
    " end_reason = v.reason"
    " FROM unnest($1::text[], $2::bigint[], $3::int[], $4::bigint[], $5::bigint[], $6::text[],"
    " $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[], $11::bigint[])"
    " AS v(state, reserved, used, cost, rn, cs, expires, updated, reason, sid, read_rn)"
    " WHERE s.session_id = v.sid AND s.state = 'open' AND s.last_request_number = v.read_rn",
    times=(6, 7),
)
_CDR_COLUMNS = (
    "account_id, account_number, session_id, call_id, calling, dialed, started_at,"
    " connect_delay, duration, cost, tariff_prefix, end_reason, created_at"
)
_INSERT_CDRS = Many(
    f"INSERT INTO cdr ({_CDR_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    f"INSERT INTO cdr ({_CDR_COLUMNS}) SELECT * FROM unnest($1::int[], $2::text[], $3::text[],"
    " $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::int[], $9::int[],"
    " $10::bigint[], $11::text[], $12::text[], $13::timestamptz[])",
    times=(6, 12),
)
_INSERT_ANSWERS = Many(
    "INSERT INTO cc_answer (session_id, request_type, request_number, answer, created_at)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (session_id, request_type, request_number) DO NOTHING",
    "INSERT INTO cc_answer (session_id, request_type, request_number, answer, created_at)"
    " SELECT * FROM unnest($1::text[], $2::smallint[], $3::bigint[], $4::text[],"
    " $5::timestamptz[])"
    " ON CONFLICT (session_id, request_type, request_number) DO NOTHING",
    times=(4,),
)


def _state_json(session: LiveSession) -> str:
    return session_to_json(session)


def session_writes(opened: Sequence[Opened], moved: Sequence[Moved], now: datetime) -> list[Check]:
    """Insert the new sessions, move the others on (guarded), write the CDRs of the closed
    ones. A row that does not take the write was taken by another process meanwhile: the
    batch must run again (SessionClash)."""
    out: list[Check] = []
    if opened:
        rows = sorted(
            (
                s.session_id,
                s.account_id,
                s.peer,
                s.calling,
                s.called,
                s.tariff.prefix,
                o.rate,
                s.reserved,
                s.last_request_number,
                _state_json(s),
                s.started_at,
                s.expires_at,
                now,
            )
            for o in opened
            for s in (o.session,)
        )
        out.append(
            Check(
                _INSERT_SESSIONS.of(rows),
                len(rows),
                SessionClash("a new Session-Id was opened by another process meanwhile"),
            )
        )
    if moved:
        moves: list[tuple[Any, ...]] = [
            (
                "closed" if m.closed else "open",
                0 if m.closed else s.reserved,
                s.used,
                m.cost,
                s.last_request_number,
                # a closed call is never carried on: its copies are answered from cc_answer
                None if m.closed else _state_json(s),
                None if m.closed else s.expires_at,
                now,
                m.end_reason,
                s.session_id,
                m.read_number,
            )
            for m in moved
            for s in (m.session,)
        ]
        out.append(
            Check(
                _MOVE_SESSIONS.of(moves),
                len(moves),
                SessionClash("a session moved on in another process meanwhile"),
            )
        )
        cdrs = [
            (
                s.account_id,
                s.account_number,
                s.session_id,
                s.call_id or s.session_id,
                s.calling,
                s.called,
                s.started_at,
                m.connect_delay,
                s.used,
                m.cost,
                s.tariff.prefix,
                m.end_reason,
                now,
            )
            for m in moved
            if m.closed
            for s in (m.session,)
        ]
        if cdrs:
            out.append(Check(_INSERT_CDRS.of(cdrs)))
    return out


def answer_writes(answers: Sequence[tuple[RequestKey, CCAnswer]], now: datetime) -> list[Check]:
    """Store every answer given. The first answer to a request is the one that stays: if
    another process stored one for the same request meanwhile (two copies of a request
    computed at once), this batch must not send its own (SessionClash: it runs again and
    then finds the stored one)."""
    if not answers:
        return []
    rows = sorted(
        (sid, kind, number, json.dumps(answer_to_json(a), separators=(",", ":")), now)
        for (sid, kind, number), a in answers
    )
    return [
        Check(
            _INSERT_ANSWERS.of(rows),
            len(rows),
            SessionClash("another process answered one of these requests meanwhile"),
        )
    ]


# --- operator actions and housekeeping --------------------------------------------------------


def mark_killed(session_id: str, now: datetime, grace: float) -> Op[str | None]:
    """Flag an open session as cut by the operator: its next request gets no more credit,
    and if its switch goes silent the Tcc sweep closes it `grace` seconds from now. Returns
    the session's peer (Origin-Host), None when no such open session exists."""
    rows = yield (
        "UPDATE credit_session SET killed = ?, updated_at = ?,"
        " expires_at = CASE WHEN expires_at < ? THEN expires_at ELSE ? END"
        " WHERE session_id = ? AND state = 'open' RETURNING peer",
        (True, now, now + timedelta(seconds=grace), now + timedelta(seconds=grace), session_id),
    )
    return str(rows[0][0]) if rows else None


def open_session_peer(session_id: str) -> Op[str | None]:
    rows = yield (
        "SELECT peer FROM credit_session WHERE session_id = ? AND state = 'open'",
        (session_id,),
    )
    return str(rows[0][0]) if rows else None


def purge_answers(before: datetime, limit: int = 5000) -> Op[int]:
    """Forget answers older than the retention, looking at the `limit` oldest rows only
    (ids grow with time: bounded work per call, and no index on created_at to maintain)."""
    rows = yield (
        "DELETE FROM cc_answer WHERE id IN (SELECT id FROM (SELECT id, created_at FROM"
        f" cc_answer ORDER BY id LIMIT {int(limit)}) AS oldest WHERE created_at < ?)"
        " RETURNING id",
        (before,),
    )
    return len(rows)
