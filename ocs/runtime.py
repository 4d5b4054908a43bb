"""What the parts of a running `ocs serve` share, and how a part is started and stopped.

A part (Diameter server, web UI, IVR bridge, Tcc supervisor, MQTT publisher, billing
scheduler) is an async factory `start(ctx) -> Part`; `ocs.serve` starts them in order and
stops them in reverse. Parts never import each other; they meet here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ocs.config import Settings
from ocs.events import EventBus

if TYPE_CHECKING:
    from ocs.charging.engine import ChargingEngine


class Part(Protocol):
    name: str

    async def stop(self) -> None: ...


class SessionControl(Protocol):
    """Live-session actions the web UI and the control socket need (the OCS implements it)."""

    async def kill(self, session_id: str) -> int:
        """Abort a live call (ASR); returns the ASA Result-Code. Raises LookupError."""
        ...

    async def reauthorise(self, session_id: str) -> int:
        """Ask the client to re-authorise (RAR); returns the RAA Result-Code."""
        ...


@dataclass
class ServeContext:
    settings: Settings
    bus: EventBus
    engine: ChargingEngine | None = None
    sessions: SessionControl | None = None
    # "primary" runs every part; a "worker" (`ocs serve --workers N`) only charging and
    # Diameter (and MQTT), sharing the primary's Diameter port.
    role: str = "primary"
    workers: int = 1  # processes sharing the Diameter port
    diameter_port: int | None = None  # bound by the `ocs` part


PartFactory = Callable[[ServeContext], Awaitable[Part]]


@dataclass
class SimplePart:
    """A Part made of a name and a stop coroutine function."""

    name: str
    stopper: Callable[[], Awaitable[None]]

    async def stop(self) -> None:
        await self.stopper()
