"""Test doubles for the bridge's database-backed parts (lockout store, service-log sink), for
tests that run the SIP/RTP bridge with a fake directory and no database."""

from __future__ import annotations

from ivr_bridge.servicelog_store import LogEntry


class FakeLockout:
    """Counts failures per caller; locks at `limit` (the real rule is tested on a database)."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self.failures: dict[str, int] = {}

    async def is_locked(self, caller: str) -> bool:
        return self.failures.get(caller, 0) >= self.limit

    async def record_failure(self, caller: str, kind: str) -> bool:
        self.failures[caller] = self.failures.get(caller, 0) + 1
        return self.failures[caller] >= self.limit


class MemoryLogSink:
    def __init__(self) -> None:
        self.entries: list[LogEntry] = []

    async def store(self, entries: list[LogEntry]) -> None:
        self.entries += entries
