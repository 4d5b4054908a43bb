"""Which requests are new work, which are copies of answered ones, and which are refused
for their Session-Id or CC-Request-Number (pure: decided from what the batch read).

Identity of a request: (Session-Id, CC-Request-Type, CC-Request-Number). Every answer given
is stored under it (`cc_answer`), so a copy of a request, a retransmission with or without
the T flag, arriving at any OCS process at any later time, gets the identical answer and
is never charged twice. Otherwise:

  CCR-I  on a Session-Id already in use                         5012
  CCR-I  on a Session-Id in the events' reference space         5004 (see below)
  CCR-U/T on a Session-Id never opened                          5002, except after a refused
                                                                CCR-I: 2001 (Kamailio sends
                                                                CCR-T, 0 used, after a 4012)
  CCR-U/T on a closed session                                   5002
  CCR-U/T reusing the last number (another request type)        5012
  CCR-U/T with a number below the last                          5012
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ocs.charging.outcome import error_answer
from ocs.credit_control import CCAnswer, CCRequest, RequestType, ResultCode

RequestKey = tuple[str, int, int]  # (session id, request type, request number)


def request_key(req: CCRequest) -> RequestKey:
    return (req.session_id, int(req.request_type), req.request_number)


@dataclass(frozen=True, slots=True)
class SessionRow:
    """What a batch reads of a session's row to judge a request against it."""

    session_id: str
    account_id: int | None
    open: bool
    last_request_number: int
    killed: bool


# Events' ledger entries are referenced "event:<Session-Id>", a call's by its Session-Id; a
# call may not take a Session-Id of that form, or a refund event on Session-Id X could give
# back what call "event:X" was charged. No conformant Session-Id starts so: it begins with
# the sender's DiameterIdentity, an FQDN, which holds no colon (RFC 6733 8.8).
EVENT_PREFIX = "event:"


def reserved_session_id(session_id: str) -> bool:
    return session_id.startswith(EVENT_PREFIX)


def needs_stored_answers(req: CCRequest, row: SessionRow | None) -> bool:
    """Whether judging `req` needs the stored answers of its Session-Id."""
    if req.request_type is RequestType.EVENT:
        return True
    if req.request_type is RequestType.INITIAL:
        # A refused CCR-I leaves no session row: its copies carry the T flag when they
        # reach another process (RFC 6733 §3); in this process the memory answers them.
        return row is not None or req.retransmission
    return row is None or not row.open or req.request_number <= row.last_request_number


def judge_initial(
    req: CCRequest, row: SessionRow | None, stored: CCAnswer | None
) -> CCAnswer | None:
    """None: open a new session. Otherwise the answer to give."""
    if stored is not None:
        return stored
    if row is None:
        if reserved_session_id(req.session_id):
            return error_answer(
                req, ResultCode.INVALID_AVP_VALUE, f"Session-Id may not begin with {EVENT_PREFIX!r}"
            )
        return None
    message = "session already open" if row.open else "session id in use"
    return error_answer(req, ResultCode.UNABLE_TO_COMPLY, message)


def judge_continuation(
    req: CCRequest,
    row: SessionRow | None,
    stored: CCAnswer | None,
    refused_initial: Callable[[], bool],
) -> CCAnswer | None:
    """None: charge the CCR-U/T against the open session. Otherwise the answer to give.
    `refused_initial()`: whether the Session-Id's CCR-I was refused (asked only if needed)."""
    if stored is not None:
        return stored
    if row is None:
        if refused_initial():
            return CCAnswer(
                result_code=int(ResultCode.SUCCESS),
                request_type=req.request_type,
                request_number=req.request_number,
            )
        return error_answer(req, ResultCode.UNKNOWN_SESSION_ID, "unknown session")
    if not row.open:
        return error_answer(req, ResultCode.UNKNOWN_SESSION_ID, "session closed")
    if req.request_number == row.last_request_number:
        return error_answer(req, ResultCode.UNABLE_TO_COMPLY, "CC-Request-Number already used")
    if req.request_number < row.last_request_number:
        return error_answer(req, ResultCode.UNABLE_TO_COMPLY, "CC-Request-Number went backwards")
    return None
