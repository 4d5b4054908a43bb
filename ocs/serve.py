"""`ocs serve`: every server part in one process, started in order, stopped in reverse.

Parts: the charging engine and its Diameter server (`ocs`), the operator web UI and REST API
(`web`), the IVR bridge (`ivr`), the MQTT event publisher (`mqtt`, only with OCS_MQTT_URL),
the billing scheduler (`billing`) and the local control socket used by `ocs session ...`
(`control`). `--only NAME` runs a subset (the database is always connected).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
from collections.abc import Awaitable, Callable

from ocs import ledger, metrics
from ocs.charging.engine import ChargingEngine
from ocs.config import Settings
from ocs.db import database
from ocs.events import default_bus
from ocs.runtime import Part, ServeContext, SimplePart

log = logging.getLogger("ocs.serve")


async def start_ocs(ctx: ServeContext) -> Part:
    """The charging engine and the Diameter Gy/Ro server in front of it."""
    from ocs.diameter.server import DiameterServer

    settings = ctx.settings
    engine = ChargingEngine(ledger.store(), ctx.bus, grace=settings.tcc_grace)
    await engine.start()
    server = DiameterServer(
        engine,
        host=settings.diameter_host,
        port=settings.diameter_port,
        origin_host=settings.diameter_origin_host,
        realm=settings.diameter_realm,
        allowed_peers=settings.diameter_peers,
    )
    engine.set_gateway(server)
    try:
        await server.start()
    except BaseException:
        await engine.stop()
        raise
    ctx.engine = engine
    ctx.sessions = engine
    ctx.extras["diameter_server"] = server
    log.info("Diameter server on %s:%d", settings.diameter_host, server.bound_port)

    async def report_peers() -> None:
        while True:
            metrics.set_peers(len(server.open_peers))
            await asyncio.sleep(1)

    peers_task = asyncio.create_task(report_peers())

    async def stop() -> None:
        peers_task.cancel()
        await server.stop()
        await engine.stop()

    return SimplePart("ocs", stop)


def _lazy(module: str, name: str) -> Callable[[ServeContext], Awaitable[Part]]:
    async def start(ctx: ServeContext) -> Part:
        factory = getattr(importlib.import_module(module), name)
        part: Part = await factory(ctx)
        return part

    return start


PARTS: dict[str, Callable[[ServeContext], Awaitable[Part]]] = {
    "ocs": start_ocs,
    "ivr": _lazy("ivr_bridge.service", "start_part"),
    "web": _lazy("api.server", "start_web"),
    "mqtt": _lazy("ocs.mqtt", "start_mqtt"),
    "billing": _lazy("ocs.billing", "start_billing_scheduler"),
    "control": _lazy("ocs.control", "start_control"),
}


async def serve(
    settings: Settings, *, only: set[str] | None = None, ready: asyncio.Event | None = None
) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    unknown = (only or set()) - PARTS.keys()
    if unknown:
        raise SystemExit(f"ocs serve: unknown part(s): {', '.join(sorted(unknown))}")
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop_event.set)
    async with database(settings):
        ctx = ServeContext(settings=settings, bus=default_bus())
        started: list[Part] = []
        try:
            for name, factory in PARTS.items():
                if only and name not in only:
                    continue
                part = await factory(ctx)
                if part is not None:
                    started.append(part)
                    log.info("started %s", name)
            if ready is not None:
                ready.set()
            await stop_event.wait()
        finally:
            for part in reversed(started):
                try:
                    await part.stop()
                except Exception:
                    log.exception("stopping %s failed", part.name)
