"""Finished calls recorded through the real charging path (CCR-I then CCR-T through a
`ChargingEngine` with a set clock), for tests and benchmarks that need CDRs and CALL
entries exactly as the product writes them."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from ocs import ledger, tariffs
from ocs.charging.engine import ChargingEngine
from ocs.credit_control import (
    CCAnswer,
    CCRequest,
    MsccRequest,
    RequestedAction,
    RequestType,
    SubscriptionId,
    SubscriptionIdType,
    TariffChangeUsage,
    UsedUnits,
)
from ocs.events import EventBus
from ocs.ledger import LedgerStore
from ocs.models import Cdr, Tariff

_ids = itertools.count()


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


PRIVATE = SubscriptionIdType.END_USER_PRIVATE
E164 = SubscriptionIdType.END_USER_E164


def ccr(
    sid: str,
    kind: RequestType,
    number: int,
    *,
    sub: str = "1001",
    sub_type: SubscriptionIdType = PRIVATE,
    called: str | None = "sip:+33141587070@ims.example",
    requested: int | None = None,
    used: int | None = None,
    mscc: bool = False,
    action: RequestedAction | None = None,
    tcu: tuple[int, int] | None = None,
    retransmission: bool = False,
) -> CCRequest:
    used_units: tuple[UsedUnits, ...] = ()
    if tcu is not None:
        used_units = (
            UsedUnits(tcu[0], TariffChangeUsage.UNIT_BEFORE_TARIFF_CHANGE),
            UsedUnits(tcu[1], TariffChangeUsage.UNIT_AFTER_TARIFF_CHANGE),
        )
    elif used is not None:
        used_units = (UsedUnits(used),)
    wants = requested is not None or kind in (RequestType.INITIAL, RequestType.UPDATE)
    common: dict[str, Any] = dict(
        session_id=sid,
        origin_host="pcscf.test",
        origin_realm="test",
        request_type=kind,
        request_number=number,
        subscription_ids=(SubscriptionId(sub_type, sub),),
        called_party=called,
        requested_action=action,
        retransmission=retransmission,
    )
    if kind is RequestType.TERMINATE:
        wants = False
    if mscc:
        return CCRequest(
            **common,
            mscc=(MsccRequest(100, 1000, wants, requested, used_units),),
        )
    return CCRequest(**common, requested=wants, requested_time=requested, used=used_units)


@dataclass(frozen=True, slots=True)
class Call:
    account: str
    dialed: str
    duration: int
    call_id: str = ""
    connect_delay: int | None = None
    calling: str = ""  # Calling-Party-Address, the CDR's caller
    termination_cause: int | None = None  # in the CCR-T: the CDR's end reason (1 = NORMAL)


def initial(session_id: str, call: Call) -> CCRequest:
    return CCRequest(
        session_id=session_id,
        origin_host="recorder.test",
        origin_realm="test",
        request_type=RequestType.INITIAL,
        request_number=0,
        subscription_ids=(SubscriptionId(SubscriptionIdType.END_USER_PRIVATE, call.account),),
        called_party=f"tel:{call.dialed}",
        calling_party=f"tel:{call.calling}" if call.calling else None,
        requested=True,
        requested_time=max(1, call.duration),
        call_id=call.call_id or None,
        connect_delay=call.connect_delay,
    )


def terminate(session_id: str, call: Call) -> CCRequest:
    return CCRequest(
        session_id=session_id,
        origin_host="recorder.test",
        origin_realm="test",
        request_type=RequestType.TERMINATE,
        request_number=1,
        subscription_ids=(SubscriptionId(SubscriptionIdType.END_USER_PRIVATE, call.account),),
        used=(UsedUnits(call.duration),),
        termination_cause=call.termination_cause,
    )


class CallRecorder:
    """`async with CallRecorder(store) as rec: await rec.call(...)`"""

    def __init__(self, store: LedgerStore, bus: EventBus | None = None) -> None:
        self.clock = Clock(datetime(2026, 1, 1, tzinfo=UTC))
        self.engine = ChargingEngine(
            store, bus or EventBus(), clock=self.clock, tcc_interval=3600, refresh_interval=3600
        )

    async def __aenter__(self) -> CallRecorder:
        await self.engine.start()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.engine.stop()

    async def call(
        self, call: Call, *, answered: datetime, ended: datetime, session_id: str = ""
    ) -> CCAnswer:
        """One call answered at `answered` and reported at `ended`; returns the CCA-T."""
        session_id = session_id or f"recorder;{next(_ids)}"
        await self.answer(call, at=answered, session_id=session_id)
        self.clock.at = ended
        return await self.engine.handle(terminate(session_id, call))

    async def answer(self, call: Call, *, at: datetime, session_id: str) -> CCAnswer:
        """The CCR-I of a call answered at `at`, left live (it holds its reservation);
        returns the CCA-I."""
        self.clock.at = at
        a = await self.engine.handle(initial(session_id, call))
        if a.result_code != 2001:
            raise AssertionError(f"call {call} refused: {a}")
        return a

    async def calls(self, calls: Iterable[Call], *, at: datetime) -> list[CCAnswer]:
        """Many calls at once (one batch of CCR-I, then one of CCR-T), all at `at`."""
        self.clock.at = at
        todo = [(f"recorder;{next(_ids)}", c) for c in calls]
        opened = await asyncio.gather(*(self.engine.handle(initial(s, c)) for s, c in todo))
        refused = [a for a in opened if a.result_code != 2001]
        if refused:
            raise AssertionError(f"{len(refused)} calls refused: {refused[0]}")
        return list(await asyncio.gather(*(self.engine.handle(terminate(s, c)) for s, c in todo)))


async def charged_call(
    account: str,
    dialed: str,
    duration: int,
    cost: int | None = None,
    *,
    ended: datetime | None = None,
    prefix: str | None = None,
    session_id: str = "",
    call_id: str = "",
    calling: str = "",
    connect_delay: int | None = None,
    termination_cause: int | None = None,
) -> Cdr:
    """One finished call of `account` to `dialed`, `duration` seconds ending at `ended`
    (default now), recorded through the real charging path (CCR-I, CCR-T); returns the CDR
    the engine wrote, with its CALL entry in the ledger.

    With `cost`, the tariff of `prefix` (default `dialed` itself) is first set to
    cost/duration units per second so that the call costs exactly `cost`; without, the
    tariffs already in the database rate it. The account must hold enough credit."""
    tariff = prefix or dialed
    if cost is not None:
        if duration:
            assert cost % duration == 0, "cost must be a whole number of units per second"
            rate = {"prefix": tariff, "h1_rate": cost // duration}
            await tariffs.import_tariffs([tariffs.parse_tariff(rate)])
        else:
            assert cost == 0, "an unanswered call costs nothing"
            if not await Tariff.filter(prefix=tariff).exists():
                rate = {"prefix": tariff, "h1_rate": 1}
                await tariffs.import_tariffs([tariffs.parse_tariff(rate)])
    ended = ended or datetime.now(UTC)
    session_id = session_id or f"charged;{account};{next(_ids)}"
    call = Call(account, dialed, duration, call_id=call_id, connect_delay=connect_delay,
                calling=calling, termination_cause=termination_cause)
    async with CallRecorder(ledger.store()) as recorder:
        answer = await recorder.call(
            call, answered=ended - timedelta(seconds=duration), ended=ended,
            session_id=session_id,
        )
    if cost is not None:
        assert answer.cost_units == cost, (answer.cost_units, cost)
    return await Cdr.get(session_id=session_id)
