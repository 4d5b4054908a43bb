"""In-process event bus: session start/update/end, credit changes, low credit.

Producers call `publish()` (never blocks, never fails the caller); consumers (Supervision
page, MQTT publisher, metrics) iterate a `subscribe()` stream. A slow consumer loses its
oldest events rather than slowing charging down; it sees `dropped` grow.

Event kinds and payloads are part of the public MQTT schema (docs/EVENTS.md):
  session.start   {session_id, account, calling, called, rate, granted, available, ...}
  session.update  {session_id, account, used, cost, granted, available, ...}
  session.end     {session_id, account, duration, cost, reason, ...}
  credit.change   {account, amount, kind, balance, actor}
  credit.low      {account, available, threshold}
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

KINDS = ("session.start", "session.update", "session.end", "credit.change", "credit.low")


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    data: dict[str, Any]
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "at": self.at.isoformat(), **self.data}


class Subscription:
    def __init__(self, bus: EventBus, maxsize: int, kinds: frozenset[str] | None = None) -> None:
        self._bus = bus
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0
        self.kinds = kinds  # None: every kind

    def _offer(self, event: Event) -> None:
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Event]:
        while True:
            yield await self.queue.get()

    async def get(self, timeout: float | None = None) -> Event:
        return await asyncio.wait_for(self.queue.get(), timeout)

    def close(self) -> None:
        self._bus._subs.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self.published = 0

    def publish(self, kind: str, /, **data: Any) -> Event:
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        event = Event(kind, data)
        self.published += 1
        for sub in tuple(self._subs):
            if sub.kinds is None or kind in sub.kinds:
                sub._offer(event)
        return event

    def wants(self, kind: str) -> bool:
        """Whether anyone listens for `kind` (producers may skip building the event)."""
        return any(sub.kinds is None or kind in sub.kinds for sub in self._subs)

    def subscribe(
        self, maxsize: int = 1000, kinds: frozenset[str] | None = None
    ) -> Subscription:
        sub = Subscription(self, maxsize, kinds)
        self._subs.add(sub)
        return sub

    @property
    def subscribers(self) -> int:
        return len(self._subs)


_default = EventBus()


def default_bus() -> EventBus:
    """The process-wide bus (one per OCS process)."""
    return _default
