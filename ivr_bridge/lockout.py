"""PIN (and voucher) brute-force limits: the rule, pure. The counts come from the database
(`ocs.ivr_lockout`), so a lockout survives a restart and is shared by every process.

Two limits, both operator settings:

* **per caller ID**: `max_failures` failed attempts within `window` seconds lock that caller
  ID out for `duration` seconds (an anonymous caller shares one bucket: withholding the
  number must not help);
* **global**: more than `global_per_minute` failed attempts in the last 60 s, from any
  caller IDs, refuse every new attempt until the minute has passed. Spoofing many caller IDs
  therefore buys an attacker nothing: the guess rate stays capped.

A correct PIN does not clear the failures (an attacker holding one valid PIN could otherwise
reset its own counter between guesses); they age out of the window, or an operator unlocks.
A registered caller ID whose account does not ask for a PIN is recognised without one, so a
spoofer locking that number out does not stop its owner from calling.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

ANONYMOUS = "<anonymous>"
GLOBAL_WINDOW = 60.0


def caller_key(caller: str) -> str:
    return caller.strip() or ANONYMOUS


class LockReason(enum.Enum):
    CALLER = "caller"
    GLOBAL = "global"


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    max_failures: int = 6
    window: float = 900.0
    duration: float = 900.0
    global_per_minute: int = 30

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.global_per_minute < 1:
            raise ValueError("lockout limits must be at least 1")
        if self.window <= 0 or self.duration <= 0:
            raise ValueError("lockout window and duration must be positive")

    def caller_locked(self, failures_in_window: int) -> bool:
        """Does this count of recent failures (this one included) lock the caller ID?"""
        return failures_in_window >= self.max_failures

    def global_locked(self, failures_last_minute: int) -> bool:
        return failures_last_minute >= self.global_per_minute

    def decide(self, caller_failures: int, global_failures: int) -> LockReason | None:
        if self.caller_locked(caller_failures):
            return LockReason.CALLER
        if self.global_locked(global_failures):
            return LockReason.GLOBAL
        return None
