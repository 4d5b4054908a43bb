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
    common = dict(
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


def initial(session_id: str, call: Call) -> CCRequest:
    return CCRequest(
        session_id=session_id,
        origin_host="recorder.test",
        origin_realm="test",
        request_type=RequestType.INITIAL,
        request_number=0,
        subscription_ids=(SubscriptionId(SubscriptionIdType.END_USER_PRIVATE, call.account),),
        called_party=f"tel:{call.dialed}",
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
        self.clock.at = answered
        a = await self.engine.handle(initial(session_id, call))
        if a.result_code != 2001:
            raise AssertionError(f"call {call} refused: {a}")
        self.clock.at = ended
        return await self.engine.handle(terminate(session_id, call))

    async def calls(self, calls: Iterable[Call], *, at: datetime) -> list[CCAnswer]:
        """Many calls at once (one batch of CCR-I, then one of CCR-T), all at `at`."""
        self.clock.at = at
        todo = [(f"recorder;{next(_ids)}", c) for c in calls]
        opened = await asyncio.gather(*(self.engine.handle(initial(s, c)) for s, c in todo))
        refused = [a for a in opened if a.result_code != 2001]
        if refused:
            raise AssertionError(f"{len(refused)} calls refused: {refused[0]}")
        return list(await asyncio.gather(*(self.engine.handle(terminate(s, c)) for s, c in todo)))
