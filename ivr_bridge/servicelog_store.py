"""Service-log lines: to the log stream at once, to the database (`ivr_log`) per call.

Each line goes to the ``ivr_bridge.servicelog`` logger as one JSON object as soon as the
step happens (so a crash loses nothing from the log stream). The database copy, which the
CDR page's call detail shows, is written in one insert when the call ends (and whenever a
long call has buffered `FLUSH_EVERY` lines), so the IVR adds no per-step write to the
database the charging engine uses.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

log = logging.getLogger("ivr_bridge.servicelog")

FLUSH_EVERY = 50


@dataclass(frozen=True, slots=True)
class LogEntry:
    call_id: str
    step: int
    at: datetime
    line: dict[str, Any]


class LogSink(Protocol):
    async def store(self, entries: list[LogEntry]) -> None: ...


class DbLogSink:
    """Stores service-log lines in the OCS database."""

    async def store(self, entries: list[LogEntry]) -> None:
        from ocs.models import IvrLogLine

        await IvrLogLine.bulk_create(
            [IvrLogLine(call_id=e.call_id, step=e.step, created_at=e.at, line=e.line)
             for e in entries]
        )  # fmt: skip


@dataclass(slots=True)
class CallLog:
    """The service log of one call."""

    call_id: str
    enabled: bool = True  # operator setting "service log"
    pending: list[LogEntry] = field(default_factory=list)
    lines: int = 0

    def add(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.lines += 1
        log.info(json.dumps({"call_id": self.call_id, **record}, separators=(",", ":")))
        step = int(record.get("step", self.lines))
        self.pending.append(LogEntry(self.call_id, step, datetime.now(UTC), record))

    @property
    def should_flush(self) -> bool:
        return len(self.pending) >= FLUSH_EVERY

    async def flush(self, sink: LogSink) -> None:
        entries, self.pending = self.pending, []
        if entries:
            await sink.store(entries)


async def lines_for_call(call_id: str, limit: int = 1000) -> list[dict[str, Any]]:
    """The stored lines of one call, in order (for the CDR page's call detail)."""
    from ocs.models import IvrLogLine

    rows = await IvrLogLine.filter(call_id=call_id).order_by("id").limit(limit)
    return [{"at": r.created_at, **r.line} for r in rows]
