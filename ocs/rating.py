"""Pure rating: tariff lookup, time bands, billing increments. No I/O.

Units and time
==============
* Every amount is an integer number of *units* (1 unit = the configured unit price, 0.0001 €
  in the brochure); every rate is integer units per second. No floats anywhere.
* Datetimes must be timezone-aware (a naive one raises :class:`RatingError`). The band in force
  is decided by the *local* wall-clock hour in the configured zone (``tz``), so DST days are
  handled: on the spring-forward day of Europe/Paris the hour 02:00 does not exist, on the
  fall-back day the hour 02:00 happens twice (both are rated as hour 2).

How a call is rated
===================
1. ``billed_seconds`` rounds the duration up to the tariff's initial block and increment
   (``0`` stays ``0``; ``60/60``, ``30/6``, ``1/1`` …).
2. The billed seconds are laid out contiguously from the answer time, as if the call had
   lasted the billed duration, and each second ``k`` (``0 <= k < billed``) is rated at the rate of
   the band in force at the instant ``start + k`` seconds (its beginning). A call that crosses
   an H1/H2 boundary therefore costs exactly the sum of its seconds at each band's rate; the
   rounding seconds added by the block/increment are rated at the band in force when they
   would have happened.
3. The connection charge is added once when the billed duration is positive.

Everything is integer arithmetic, so ``cost`` is exact and monotonic non-decreasing in the
duration (rates are >= 0 and the billed duration is monotonic).

Lookup policy
=============
``TariffTable.match`` normalises the dialled number (:func:`normalise_number`), then takes the
longest tariff prefix that starts it, else the ``DEFAULT`` row, else raises :class:`NoTariff`.
A *barred* tariff is returned like any other (longest prefix wins, so a longer non-barred
prefix under a barred one is allowed, and a barred ``DEFAULT`` turns the table into a list of
allowed prefixes); :func:`check_allowed` raises :class:`BarredDestination` for it, and
``TariffTable.resolve`` does both. The Diameter layer maps :class:`BarredDestination` to 4010
DIAMETER_END_USER_SERVICE_DENIED and :class:`NoTariff` (and any other :class:`RatingError`
about the destination) to 5031 DIAMETER_RATING_FAILED; catch the subclasses first.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "DEFAULT_PREFIX",
    "MAX_NUMBER_LENGTH",
    "Band",
    "BarredDestination",
    "NoTariff",
    "RatingError",
    "Segment",
    "Tariff",
    "TariffTable",
    "affordable",
    "band_at",
    "billed_seconds",
    "breakdown",
    "check_allowed",
    "cost",
    "cost_of_usage_split",
    "next_band_change",
    "normalise_number",
    "rate_seconds",
]

DEFAULT_PREFIX = "DEFAULT"
MAX_NUMBER_LENGTH = 32  # digits; the same bound as tariff prefixes and account numbers

_HOUR = timedelta(hours=1)
_SECOND = timedelta(seconds=1)
_MICROSECOND = timedelta(microseconds=1)
# Visual separators people type or systems emit inside numbers.
_SEPARATORS = str.maketrans("", "", " \t\r\n-.()/")
_DIGITS = frozenset("0123456789")


# --------------------------------------------------------------------------- errors


class RatingError(ValueError):
    """The call cannot be rated (bad number, bad tariff, bad arguments)."""


class NoTariff(RatingError):
    """No tariff prefix matches the number and the table has no DEFAULT row."""

    def __init__(self, number: str) -> None:
        super().__init__(f"no tariff for {number!r} and no {DEFAULT_PREFIX} tariff")
        self.number = number


class BarredDestination(RatingError):
    """The matching tariff is marked barred: calls to it are refused."""

    def __init__(self, prefix: str, number: str = "") -> None:
        where = f" ({number!r})" if number else ""
        super().__init__(f"destination barred by tariff {prefix!r}{where}")
        self.prefix = prefix
        self.number = number


# --------------------------------------------------------------------------- tariff


class Band(enum.Enum):
    H1 = "H1"
    H2 = "H2"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Tariff:
    """One row of the Costs screen. Validated on construction (raises :class:`RatingError`).

    H2 applies when the local hour is in ``[h2_begin, h2_end)``, wrapping past midnight when
    ``h2_begin > h2_end``; ``h2_begin == h2_end`` means there is no H2 band.
    """

    prefix: str
    h1_rate: int
    h2_begin: int = 0
    h2_end: int = 0
    h2_rate: int = 0
    initial_block: int = 1
    increment: int = 1
    connection_charge: int = 0
    barred: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`RatingError` naming the first bad field."""
        p = self.prefix
        if not isinstance(p, str) or not (
            p == DEFAULT_PREFIX or (0 < len(p) <= MAX_NUMBER_LENGTH and p.isascii() and p.isdigit())
        ):
            raise RatingError(
                f"tariff prefix must be 1 to {MAX_NUMBER_LENGTH} digits or "
                f"{DEFAULT_PREFIX!r}, got {p!r}"
            )
        for name in ("h1_rate", "h2_rate", "connection_charge"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise RatingError(f"tariff {p}: {name} must be an integer >= 0, got {value!r}")
        for name in ("h2_begin", "h2_end"):
            value = getattr(self, name)
            if not _is_int(value) or not 0 <= value <= 23:
                raise RatingError(f"tariff {p}: {name} must be an hour 0..23, got {value!r}")
        for name in ("initial_block", "increment"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise RatingError(
                    f"tariff {p}: {name} must be an integer number of seconds >= 1, got {value!r}"
                )
        if not isinstance(self.barred, bool):
            raise RatingError(f"tariff {p}: barred must be a bool, got {self.barred!r}")

    @property
    def is_default(self) -> bool:
        return self.prefix == DEFAULT_PREFIX

    @property
    def has_h2(self) -> bool:
        return self.h2_begin != self.h2_end

    def in_h2(self, hour: int) -> bool:
        """Whether the local ``hour`` (0..23) falls in the H2 window."""
        begin, end = self.h2_begin, self.h2_end
        if begin < end:
            return begin <= hour < end
        if begin > end:
            return hour >= begin or hour < end
        return False

    def rate(self, band: Band) -> int:
        return self.h2_rate if band is Band.H2 else self.h1_rate

    @property
    def is_free(self) -> bool:
        """Every second costs 0 units (the connection charge may still apply)."""
        return self.h1_rate == 0 and (not self.has_h2 or self.h2_rate == 0)

    @property
    def constant_rate(self) -> int | None:
        """The rate if it never depends on the time of day, else ``None``."""
        if not self.has_h2 or self.h1_rate == self.h2_rate:
            return self.h1_rate
        return None


def check_allowed(tariff: Tariff, number: str = "") -> Tariff:
    """Return ``tariff`` unless it is barred (then raise :class:`BarredDestination`)."""
    if tariff.barred:
        raise BarredDestination(tariff.prefix, number)
    return tariff


# --------------------------------------------------------------------------- numbers


@functools.lru_cache(maxsize=8192)  # every CCR-I normalises the same callers and numbers
def normalise_number(raw: str) -> str:
    """The dialled number as plain digits, the form tariff prefixes are written in.

    * ``"Name" <sip:...>`` → the URI inside the angle brackets;
    * the ``sip:``, ``sips:`` or ``tel:`` scheme, the host part after ``@``, URI parameters
      after ``;`` and headers after ``?`` are dropped;
    * visual separators (whitespace ``-`` ``.`` ``(`` ``)`` ``/``) are removed;
    * a leading ``+`` or ``00`` (international prefix) is removed, so E.164 numbers become
      plain digits: ``+33 1 41 58 70 70``, ``0033141587070`` and
      ``sip:+33141587070@ims.example;user=phone`` all give ``33141587070``. What follows an
      international prefix must not start with ``0`` (no country code does), which also makes
      the function idempotent;
    * a national number such as ``0141587070`` is kept as dialled (no country context here).

    ``*`` and ``#`` are **rejected**: tariff prefixes are digits only, and service codes such as
    ``*31#`` are not rateable destinations (the IVR strips its own ``#`` terminator before
    rating). Raises :class:`RatingError` for an empty result, any other non-digit character,
    or more than :data:`MAX_NUMBER_LENGTH` digits.
    """
    if not isinstance(raw, str):
        raise RatingError(f"number must be a string, got {type(raw).__name__}")
    text = raw.strip()
    lt = text.find("<")
    if lt != -1:
        gt = text.find(">", lt)
        if gt == -1:
            raise RatingError(f"not a dialable number: {raw!r} (unclosed '<')")
        text = text[lt + 1 : gt].strip()
    lower = text[:5].lower()
    for scheme in ("sips:", "sip:", "tel:"):
        if lower.startswith(scheme):
            text = text[len(scheme) :]
            break
    for stop in ("@", ";", "?"):
        cut = text.find(stop)
        if cut != -1:
            text = text[:cut]
    text = text.translate(_SEPARATORS)
    international = False
    if text.startswith("+"):
        text, international = text[1:], True
    elif text.startswith("00"):
        text, international = text[2:], True
    if not text:
        raise RatingError(f"not a dialable number: {raw!r} (no digits)")
    if not _DIGITS.issuperset(text):
        bad = next(c for c in text if c not in _DIGITS)
        raise RatingError(f"not a dialable number: {raw!r} (character {bad!r})")
    if international and text[0] == "0":
        raise RatingError(f"not a dialable number: {raw!r} (country code cannot start with 0)")
    if len(text) > MAX_NUMBER_LENGTH:
        raise RatingError(f"not a dialable number: {raw!r} (more than {MAX_NUMBER_LENGTH} digits)")
    return text


def _fast_normal(number: str) -> str:
    """``normalise_number`` with a shortcut for numbers that are already normal."""
    if (
        0 < len(number) <= MAX_NUMBER_LENGTH
        and number.isascii()
        and number.isdigit()
        and not number.startswith("00")
    ):
        return number
    return normalise_number(number)


# --------------------------------------------------------------------------- table


class TariffTable:
    """An immutable set of tariffs with longest-prefix lookup.

    Lookup is one dict probe per distinct prefix length (at most :data:`MAX_NUMBER_LENGTH`),
    longest first, whatever the size of the table.
    """

    __slots__ = ("_by_prefix", "_default", "_lengths", "_tariffs")

    def __init__(self, tariffs: Iterable[Tariff]) -> None:
        by_prefix: dict[str, Tariff] = {}
        default: Tariff | None = None
        ordered: list[Tariff] = []
        for tariff in tariffs:
            if not isinstance(tariff, Tariff):
                raise TypeError(f"expected Tariff, got {type(tariff).__name__}")
            tariff.validate()
            if tariff.is_default:
                if default is not None:
                    raise RatingError(f"duplicate tariff {DEFAULT_PREFIX!r}")
                default = tariff
            else:
                if tariff.prefix in by_prefix:
                    raise RatingError(f"duplicate tariff prefix {tariff.prefix!r}")
                by_prefix[tariff.prefix] = tariff
            ordered.append(tariff)
        self._by_prefix = by_prefix
        self._default = default
        self._lengths = tuple(sorted({len(p) for p in by_prefix}, reverse=True))
        self._tariffs = tuple(ordered)

    def match(self, number: str) -> Tariff:
        """The tariff for ``number`` (normalised first); barred tariffs are returned too.

        Raises :class:`RatingError` for an undialable number, :class:`NoTariff` when nothing
        matches and there is no DEFAULT row.
        """
        digits = _fast_normal(number)
        size = len(digits)
        get = self._by_prefix.get
        for length in self._lengths:
            if length <= size:
                found = get(digits[:length])
                if found is not None:
                    return found
        if self._default is not None:
            return self._default
        raise NoTariff(digits)

    def resolve(self, number: str) -> Tariff:
        """``match`` then :func:`check_allowed`: the tariff a call may be rated with."""
        return check_allowed(self.match(number), number)

    def get(self, prefix: str) -> Tariff | None:
        """The row with exactly this prefix (or ``"DEFAULT"``), if any."""
        if prefix == DEFAULT_PREFIX:
            return self._default
        return self._by_prefix.get(prefix)

    @property
    def default(self) -> Tariff | None:
        return self._default

    def __len__(self) -> int:
        return len(self._tariffs)

    def __iter__(self) -> Iterator[Tariff]:
        return iter(self._tariffs)

    def __contains__(self, prefix: object) -> bool:
        return isinstance(prefix, str) and self.get(prefix) is not None

    def __repr__(self) -> str:
        return f"TariffTable({len(self)} tariffs)"


# --------------------------------------------------------------------------- time bands


def _utc(at: datetime, name: str = "datetime") -> datetime:
    if not isinstance(at, datetime):
        raise RatingError(f"{name} must be a datetime, got {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise RatingError(f"{name} must be timezone-aware, got naive {at.isoformat()}")
    return at.astimezone(UTC)


def band_at(tariff: Tariff, at: datetime, tz: ZoneInfo) -> Band:
    """The band in force at instant ``at`` (local hour in ``tz``)."""
    local = _utc(at, "at").astimezone(tz)
    return Band.H2 if tariff.in_h2(local.hour) else Band.H1


def _first_offset_change(lo: datetime, hi: datetime, tz: ZoneInfo) -> datetime:
    """The first whole UTC second in ``(lo, hi]`` where ``tz``'s UTC offset differs from lo's.

    Requires that the offsets at ``lo`` and ``hi`` differ. zoneinfo transitions fall on whole
    seconds, so a bisection over integer seconds is exact.
    """
    offset = lo.astimezone(tz).utcoffset()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    a = (lo - epoch) // _SECOND  # floor: offset here is still lo's
    b = -((epoch - hi) // _SECOND)  # ceil: offset here already differs
    while b - a > 1:
        m = (a + b) // 2
        if (epoch + m * _SECOND).astimezone(tz).utcoffset() == offset:
            a = m
        else:
            b = m
    return epoch + b * _SECOND


_MAX_STEPS = 64  # a band change is always found within a couple of local days


def next_band_change(tariff: Tariff, at: datetime, tz: ZoneInfo) -> datetime | None:
    """The first instant strictly after ``at`` where the band in force changes (aware, UTC).

    ``None`` only when the tariff has no H2 window (``h2_begin == h2_end``); a change is
    reported even if both bands have the same rate. DST-correct: on a spring-forward day a
    window starting in the skipped hour begins when the clock jumps, a window made only of the
    skipped hour does not happen that day, and a repeated hour counts twice.
    """
    cur = _utc(at, "at")
    if not tariff.has_h2:
        return None
    local = cur.astimezone(tz)
    in_h2 = tariff.in_h2(local.hour)
    target = tariff.h2_end if in_h2 else tariff.h2_begin
    for _ in range(_MAX_STEPS):
        offset = local.utcoffset()
        # Hours to go (constant offset) until the local hour reaches the other band's edge.
        hours = (target - local.hour) % 24 or 24
        into_hour = timedelta(
            minutes=local.minute, seconds=local.second, microseconds=local.microsecond
        )
        candidate = cur - into_hour + hours * _HOUR
        if candidate.astimezone(tz).utcoffset() == offset:
            return candidate
        # A UTC-offset change (DST) before the candidate: step to it and look again.
        cur = _first_offset_change(cur, candidate, tz)
        local = cur.astimezone(tz)
        if tariff.in_h2(local.hour) != in_h2:
            return cur
    raise RatingError(f"no band change found after {at.isoformat()} in {tz}")  # pragma: no cover


def _runs(tariff: Tariff, start: datetime, tz: ZoneInfo) -> Iterator[tuple[Band, int, int | None]]:
    """Consecutive runs of call seconds in one band: ``(band, first_second, length)``.

    Second ``k`` starts at ``start + k`` s and is rated at the band in force then. The last run
    has length ``None`` (it never ends: no H2). ``start`` must be aware UTC.
    """
    k = 0
    at = start
    band = band_at(tariff, at, tz)
    while True:
        change = next_band_change(tariff, at, tz)
        if change is None:
            yield band, k, None
            return
        # First call second that begins at or after the change.
        micro = (change - start) // _MICROSECOND
        n = -(-micro // 1_000_000)
        at = start + n * _SECOND
        new_band = band_at(tariff, at, tz)
        if new_band is not band:
            yield band, k, n - k
            k = n
            band = new_band


def billed_seconds(tariff: Tariff, duration: int) -> int:
    """Duration rounded up to the initial block then whole increments; ``0`` stays ``0``."""
    if duration.__class__ is not int or duration < 0:  # (bool is not int here)
        raise RatingError(f"duration must be an integer >= 0, got {duration!r}")
    if duration == 0:
        return 0
    block, step = tariff.initial_block, tariff.increment
    if duration <= block:
        return block
    return block + -(-(duration - block) // step) * step


def rate_seconds(tariff: Tariff, at: datetime, seconds: int, tz: ZoneInfo) -> int:
    """Units for ``seconds`` consecutive seconds from ``at``, each at its band's rate.

    Raw: no initial block, increment or connection charge.
    """
    if seconds.__class__ is not int or seconds < 0:  # (bool is not int here)
        raise RatingError(f"seconds must be an integer >= 0, got {seconds!r}")
    fixed = tariff.constant_rate
    if fixed is not None and at.__class__ is datetime and at.tzinfo is not None:
        return fixed * seconds  # the charging hot path: no band, no time zone to work out
    start = _utc(at, "at")
    if seconds == 0:
        return 0
    if fixed is not None:
        return fixed * seconds
    total = 0
    remaining = seconds
    for band, _, length in _runs(tariff, start, tz):
        take = remaining if length is None else min(length, remaining)
        total += take * tariff.rate(band)
        remaining -= take
        if remaining == 0:
            break
    return total


def cost(tariff: Tariff, start: datetime, duration: int, tz: ZoneInfo) -> int:
    """Units for a call of ``duration`` seconds answered at ``start`` (see module doc)."""
    billed = billed_seconds(tariff, duration)
    _utc(start, "start")
    if billed == 0:
        return 0
    return tariff.connection_charge + rate_seconds(tariff, start, billed, tz)


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of billed seconds in one band. ``start`` is aware UTC."""

    band: Band
    start: datetime
    seconds: int
    rate: int
    units: int


def breakdown(tariff: Tariff, start: datetime, duration: int, tz: ZoneInfo) -> list[Segment]:
    """The billed seconds of a call split per band run.

    ``sum(s.seconds) == billed_seconds(duration)`` and
    ``sum(s.units) + connection_charge (when billed > 0) == cost(...)``. Empty for duration 0.
    """
    begin = _utc(start, "start")
    remaining = billed_seconds(tariff, duration)
    segments: list[Segment] = []
    if remaining == 0:
        return segments
    for band, first, length in _runs(tariff, begin, tz):
        take = remaining if length is None else min(length, remaining)
        rate = tariff.rate(band)
        segments.append(Segment(band, begin + first * _SECOND, take, rate, take * rate))
        remaining -= take
        if remaining == 0:
            break
    return segments


def affordable(
    tariff: Tariff,
    units: int,
    start: datetime,
    tz: ZoneInfo,
    limit: int | None = None,
) -> int | None:
    """The longest call (seconds) answered at ``start`` whose :func:`cost` is ``<= units``.

    With ``limit``, the answer is capped at ``limit``. Returns ``None`` (unlimited) only when
    the tariff is free (every rate 0), the connection charge is affordable and no limit is
    given. ``0`` means not even the first billed block is affordable. Runs in time
    proportional to the number of band runs crossed (never per second), integers only.
    Raises :class:`RatingError` for negative ``units`` or ``limit``.
    """
    begin = _utc(start, "start")
    if not _is_int(units) or units < 0:
        raise RatingError(f"units must be an integer >= 0, got {units!r}")
    if limit is not None and (not _is_int(limit) or limit < 0):
        raise RatingError(f"limit must be an integer >= 0 or None, got {limit!r}")
    if limit == 0 or tariff.connection_charge > units:
        return 0
    budget = units - tariff.connection_charge
    cap = None if limit is None else billed_seconds(tariff, limit)

    # n: the most billed seconds (<= cap) whose raw rating fits the budget; None = no bound.
    n: int | None
    fixed = tariff.constant_rate
    if fixed == 0:
        n = cap
    elif fixed is not None:
        n = budget // fixed if cap is None else min(budget // fixed, cap)
    else:
        n = 0
        for band, _, length in _runs(tariff, begin, tz):
            # Both bands recur and one rate is > 0 here, so every run is finite.
            assert length is not None
            last = cap is not None and n + length >= cap
            if last:
                assert cap is not None
                length = cap - n
            rate = tariff.rate(band)
            spend = rate * length
            if spend <= budget:
                budget -= spend
                n += length
                if last:
                    break
            else:
                n += budget // rate
                break

    if n is None:
        return limit
    if cap is not None and n >= cap:
        return limit
    block, step = tariff.initial_block, tariff.increment
    if n < block:
        return 0
    return block + (n - block) // step * step


def cost_of_usage_split(
    tariff: Tariff,
    change_at: datetime,
    before: int,
    after: int,
    tz: ZoneInfo,
) -> int:
    """Units for usage reported split around a tariff change (RFC 4006 Tariff-Change-Usage).

    ``before`` seconds are the ones ending at ``change_at`` (UNIT_BEFORE_TARIFF_CHANGE) and
    ``after`` the ones starting there (UNIT_AFTER_TARIFF_CHANGE); each second is rated at the
    band in force at its beginning. Raw seconds: the session layer applies block/increment
    rounding and the connection charge on the call total (via :func:`cost`).
    """
    at = _utc(change_at, "change_at")
    if not _is_int(before) or before < 0 or not _is_int(after) or after < 0:
        raise RatingError(f"usage must be integers >= 0, got before={before!r} after={after!r}")
    return rate_seconds(tariff, at - before * _SECOND, before, tz) + rate_seconds(
        tariff, at, after, tz
    )
