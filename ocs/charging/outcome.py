"""What computing one credit-control request yields, and what it is computed with.

A request is computed against a batch's in-memory view (`ocs.charging.batch`); the result is
an `Outcome`: the answer, the session's live state afterwards, the events to publish, and
the session record to write. The batch writes every outcome's record at once; the engine
applies outcomes to its memory only after the batch has committed.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from ocs import rating
from ocs.charging.state import LiveSession
from ocs.credit_control import CCAnswer, CCRequest, ResultCode
from ocs.settings_store import OperatorSettings

# An event's data, or a function building it: session events are only built when someone
# listens (see ChargingEngine._apply).
EventList = list[tuple[str, dict[str, Any] | Callable[[], dict[str, Any]]]]


@dataclass(frozen=True, slots=True)
class RatingContext:
    table: rating.TariffTable
    settings: OperatorSettings
    now: datetime
    grace: float = 10.0


@dataclass(frozen=True, slots=True)
class Opened:
    """A new session row (CCR-I granted)."""

    session: LiveSession
    rate: int  # units/second in force at the start (Supervision)


@dataclass(frozen=True, slots=True)
class Moved:
    """A session row moving on (CCR-U) or closing (CCR-T, Tcc): guarded by the request
    number it was read at."""

    session: LiveSession  # state after the request
    read_number: int  # last_request_number the row must still hold
    cost: int  # units: cost of the usage so far (open) or debited (closed)
    closed: bool = False
    end_reason: str = ""
    connect_delay: int | None = None  # CDR, when closed


@dataclass
class Outcome:
    answer: CCAnswer
    session: LiveSession | None = None  # live state after the request (None: not live)
    closed: bool = False
    events: EventList = field(default_factory=list)
    write: Opened | Moved | None = None
    stored: bool = False  # the answer came from the answer store: nothing to write


class Refusal(Exception):
    """Refuse the whole request with a Result-Code."""

    def __init__(self, code: int, message: str, failed_avp: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.failed_avp = failed_avp


@functools.lru_cache(maxsize=64)
def _price(unit_price: Decimal) -> tuple[int, int]:
    sign, digits, exponent = unit_price.normalize().as_tuple()
    assert isinstance(exponent, int) and sign == 0
    return int("".join(map(str, digits)) or "0"), exponent


def priced(answer: CCAnswer, settings: OperatorSettings) -> CCAnswer:
    """The answer with the operator's currency and unit price (how money goes on the wire)."""
    mantissa, exponent = _price(settings.unit_price)
    if (answer.currency_code, answer.unit_price_digits, answer.unit_price_exponent) == (
        settings.currency_code,
        mantissa,
        exponent,
    ):
        return answer
    return dataclasses.replace(
        answer,
        currency_code=settings.currency_code,
        unit_price_digits=mantissa,
        unit_price_exponent=exponent,
    )


def error_answer(req: CCRequest, code: ResultCode, message: str) -> CCAnswer:
    return CCAnswer(
        result_code=int(code),
        request_type=req.request_type,
        request_number=req.request_number,
        error_message=message,
    )


def refused(req: CCRequest, exc: Refusal, remaining: int | None = None) -> CCAnswer:
    return CCAnswer(
        result_code=exc.code,
        request_type=req.request_type,
        request_number=req.request_number,
        failed_avp_code=exc.failed_avp,
        error_message=str(exc),
        remaining_balance=remaining,
    )
