"""Admission control for new dialogs (SIP INVITE flood protection). Pure: clock injected.

Two limits, checked before the user agent allocates anything for an INVITE:

* **rate**: a token bucket of `per_second` new dialogs per second, holding at most `burst`
  tokens (a burst of calls after a quiet spell is fine; a sustained flood is not);
* **concurrency**: at most `max_dialogs` calls at once (ringing, in a menu or connected).

A refused INVITE is answered 503 with Retry-After (seconds): when the next token is due for
the rate limit, and `busy_retry_after` when full.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Admission:
    clock: Callable[[], float]
    max_dialogs: int = 100
    per_second: float = 10.0
    burst: int = 0  # 0: one second's worth
    busy_retry_after: int = 5
    _tokens: float = field(init=False, default=0.0)
    _last: float = field(init=False, default=0.0)
    admitted: int = field(init=False, default=0)
    refused: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.max_dialogs < 1 or self.per_second <= 0:
            raise ValueError("admission limits must be positive")
        if self.burst <= 0:
            self.burst = max(1, math.ceil(self.per_second))
        self._tokens = float(self.burst)
        self._last = self.clock()

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.per_second)
        self._last = now

    def admit(self, active: int) -> int | None:
        """Admit a new dialog (None) or refuse it: the Retry-After seconds to answer."""
        self._refill()
        if active >= self.max_dialogs:
            self.refused += 1
            return self.busy_retry_after
        if self._tokens < 1.0:
            self.refused += 1
            return max(1, math.ceil((1.0 - self._tokens) / self.per_second))
        self._tokens -= 1.0
        self.admitted += 1
        return None
