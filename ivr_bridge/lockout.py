"""PIN brute-force protection: per caller ID, count failed PIN entries, lock out for a while.

Pure: the clock is injected (a callable returning seconds, e.g. ``time.monotonic``), so tests
drive time by hand. One tracker is shared by every call of the bridge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Record:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0


class LockoutTracker:
    """`max_failures` failed PINs within `window` seconds lock the caller for `duration`."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        max_failures: int = 6,
        window: float = 900.0,
        duration: float = 900.0,
    ) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        self._clock = clock
        self.max_failures = max_failures
        self.window = window
        self.duration = duration
        self._records: dict[str, _Record] = {}

    def _key(self, caller: str) -> str:
        # An anonymous caller shares one bucket: withholding the number must not help.
        return caller.strip() or "<anonymous>"

    def is_locked(self, caller: str) -> bool:
        record = self._records.get(self._key(caller))
        return record is not None and self._clock() < record.locked_until

    def remaining(self, caller: str) -> float:
        """Seconds left on the lockout (0 when not locked)."""
        record = self._records.get(self._key(caller))
        if record is None:
            return 0.0
        return max(0.0, record.locked_until - self._clock())

    def record_failure(self, caller: str) -> bool:
        """Count one failed PIN; returns True when this failure locks the caller out."""
        now = self._clock()
        key = self._key(caller)
        record = self._records.setdefault(key, _Record())
        record.failures = [t for t in record.failures if now - t < self.window]
        record.failures.append(now)
        if len(record.failures) >= self.max_failures:
            record.locked_until = now + self.duration
            record.failures.clear()
            return True
        return False

    def record_success(self, caller: str) -> None:
        """A correct PIN clears the failure count (an active lockout stays)."""
        record = self._records.get(self._key(caller))
        if record is not None:
            record.failures.clear()
            if self._clock() >= record.locked_until:
                del self._records[self._key(caller)]

    def prune(self) -> None:
        """Forget callers with no recent failure and no active lockout (bounded memory)."""
        now = self._clock()
        for key in list(self._records):
            record = self._records[key]
            recent = [t for t in record.failures if now - t < self.window]
            if not recent and now >= record.locked_until:
                del self._records[key]
            else:
                record.failures = recent
