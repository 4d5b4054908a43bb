"""Quota arithmetic for one rated service of a call (pure: no I/O, no clock).

A service (the top-level units of a CCR, or one MSCC identified by Rating-Group /
Service-Identifier) accumulates *pieces* of used time: (start, seconds). Reported usage
starts where the last grant started; with Tariff-Change-Usage, the seconds reported as
UNIT_AFTER_TARIFF_CHANGE start at the Tariff-Time-Change instant sent with that grant. For a
call used continuously, the cost equals `rating.cost(tariff, answer, total)` exactly.

Cost of a service that has used T seconds in total:
    conn (primary service only, once anything is billed)
    + raw(pieces)                                   every used second at its band's rate
    + raw(rounding seconds after the last piece)    billed_seconds(T) - T, block/increment

A grant is the longest g <= requested whose cumulative cost fits in the service's
reservation; reservations are asked for in units, possibly partly granted by the ledger.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from ocs import rating
from ocs.credit_control import TariffChangeUsage, UsedUnits

_SECOND = timedelta(seconds=1)


@lru_cache(maxsize=4096)
def _raw(tariff: rating.Tariff) -> rating.Tariff:
    """The same bands and rates, without block, increment or connection charge."""
    return dataclasses.replace(tariff, initial_block=1, increment=1, connection_charge=0)


@dataclass(frozen=True, slots=True)
class ServiceUsage:
    rating_group: int | None = None
    service_identifier: int | None = None
    primary: bool = True  # carries the call's connection charge
    pieces: tuple[tuple[datetime, int], ...] = ()
    used: int = 0  # seconds reported so far
    raw_cost: int = 0  # raw units of the pieces (cached sum)
    reserved: int = 0  # units this service holds in the account's reservation
    granted: int = 0  # seconds of the outstanding grant
    grant_start: datetime | None = None
    tariff_time_change: datetime | None = None

    @property
    def key(self) -> tuple[int | None, int | None]:
        return (self.rating_group, self.service_identifier)


def record_usage(
    tariff: rating.Tariff, usage: ServiceUsage, reports: Iterable[UsedUnits], tz: ZoneInfo
) -> ServiceUsage:
    """Add reported Used-Service-Units to the service's pieces."""
    start = usage.grant_start
    fixed = tariff.constant_rate
    pieces = list(usage.pieces)
    used, raw_cost = usage.used, usage.raw_cost
    cursor = start  # where the next contiguous second of this report begins
    # Seconds before a tariff change come first, whatever order the client listed them in.
    order = {
        TariffChangeUsage.UNIT_BEFORE_TARIFF_CHANGE: 0,
        None: 1,
        TariffChangeUsage.UNIT_INDETERMINATE: 1,
        TariffChangeUsage.UNIT_AFTER_TARIFF_CHANGE: 2,
    }
    for report in sorted(reports, key=lambda r: order[r.tariff_change_usage]):
        seconds = report.cc_time
        if seconds <= 0:
            continue
        if start is None:
            raise ValueError("usage reported for a service that was never granted")
        if (
            report.tariff_change_usage is TariffChangeUsage.UNIT_AFTER_TARIFF_CHANGE
            and usage.tariff_time_change is not None
        ):
            at = max(usage.tariff_time_change, cursor or start)
        else:
            at = cursor or start
        if fixed is not None:
            raw_cost += fixed * seconds
        else:
            raw_cost += rating.rate_seconds(_raw(tariff), at, seconds, tz)
        if pieces and pieces[-1][0] + pieces[-1][1] * _SECOND == at:
            pieces[-1] = (pieces[-1][0], pieces[-1][1] + seconds)
        else:
            pieces.append((at, seconds))
        used += seconds
        cursor = at + seconds * _SECOND
    return ServiceUsage(
        usage.rating_group,
        usage.service_identifier,
        usage.primary,
        tuple(pieces),
        used,
        raw_cost,
        usage.reserved,
        usage.granted,
        usage.grant_start,
        usage.tariff_time_change,
    )


def cost_for_total(
    tariff: rating.Tariff, usage: ServiceUsage, total: int, next_start: datetime, tz: ZoneInfo
) -> int:
    """Cost of the service once it has used `total` >= usage.used seconds, the seconds
    beyond those already used starting at `next_start`."""
    billed = rating.billed_seconds(tariff, total)
    if billed == 0:
        return 0
    extra = billed - usage.used
    conn = tariff.connection_charge if usage.primary else 0
    fixed = tariff.constant_rate
    if fixed is not None:  # the usual tariff: every second at one rate, wherever it falls
        return conn + usage.raw_cost + fixed * extra
    if usage.pieces and total == usage.used:
        # rounding seconds follow the last piece
        last_start, last_len = usage.pieces[-1]
        next_start = last_start + last_len * _SECOND
    return conn + usage.raw_cost + rating.rate_seconds(_raw(tariff), next_start, extra, tz)


def used_cost(tariff: rating.Tariff, usage: ServiceUsage, tz: ZoneInfo) -> int:
    if usage.used == 0:
        return 0
    last_start, last_len = usage.pieces[-1]
    return cost_for_total(tariff, usage, usage.used, last_start + last_len * _SECOND, tz)


@dataclass(frozen=True, slots=True)
class ReservationPlan:
    want: int  # extra units to ask the ledger for (0 = none)
    minimum: int  # fewest extra units that still allow any grant
    release: int  # units to hand back (the reservation is above what is needed)


def plan_reservation(
    tariff: rating.Tariff, usage: ServiceUsage, requested: int, now: datetime, tz: ZoneInfo
) -> ReservationPlan:
    """What to reserve so the service can be granted `requested` more seconds from `now`
    on top of what it has used (and to cover usage beyond earlier grants)."""
    full = cost_for_total(tariff, usage, usage.used + requested, now, tz) if requested else 0
    covered = used_cost(tariff, usage, tz)
    needed = max(full, covered)
    if usage.reserved >= needed:
        return ReservationPlan(0, 0, usage.reserved - needed)
    least = cost_for_total(tariff, usage, usage.used + 1, now, tz) if requested else covered
    least = max(least, covered)
    return ReservationPlan(needed - usage.reserved, max(0, least - usage.reserved), 0)


def grantable(
    tariff: rating.Tariff,
    usage: ServiceUsage,
    reserved: int,
    requested: int,
    now: datetime,
    tz: ZoneInfo,
) -> int:
    """Longest g <= requested with cost_for_total(used + g) <= reserved."""
    if requested <= 0:
        return 0
    conn = tariff.connection_charge if usage.primary else 0
    budget = reserved - conn - usage.raw_cost
    if budget < 0:
        return 0
    raw_seconds = rating.affordable(_raw(tariff), budget, now, tz)
    # Billed seconds after the used ones may not exceed raw_seconds.
    limit = usage.used + (
        requested + tariff.initial_block + tariff.increment if raw_seconds is None else raw_seconds
    )
    block, step = tariff.initial_block, tariff.increment
    if limit < block:
        return 0
    total = block + (limit - block) // step * step
    return max(0, min(requested, total - usage.used))


def needs_final_unit(
    tariff: rating.Tariff,
    usage: ServiceUsage,
    granted: int,
    requested: int,
    reserved: int,
    available_after: int,
    now: datetime,
    tz: ZoneInfo,
) -> bool:
    """True when this grant is the last the account affords: the next billed second after
    it could not be paid from the reservation's slack plus what is still available."""
    if granted < requested:
        return True
    total = usage.used + granted
    at_end = cost_for_total(tariff, usage, total, now, tz)
    after = cost_for_total(tariff, usage, total + 1, now, tz)
    return (reserved - at_end) + available_after < after - at_end


def tariff_change_within(
    tariff: rating.Tariff, start: datetime, seconds: int, tz: ZoneInfo
) -> datetime | None:
    """The Tariff-Time-Change to announce when a grant [start, start+seconds) crosses a
    band boundary, else None."""
    if seconds <= 0 or not tariff.has_h2:
        return None
    change = rating.next_band_change(tariff, start, tz)
    if change is not None and change < start + seconds * _SECOND:
        return change
    return None
