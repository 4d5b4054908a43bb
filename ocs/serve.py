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
from ocs.diameter.errors import CapabilitiesRefused
from ocs.events import default_bus
from ocs.runtime import Part, ServeContext, SimplePart

log = logging.getLogger("ocs.serve")


async def start_ocs(ctx: ServeContext) -> Part:
    """The charging engine and the Diameter Gy/Ro server in front of it."""
    from ocs.diameter.server import DiameterServer

    settings = ctx.settings
    tls = None
    if settings.diameter_tls_port is not None:
        from ocs.diameter.tls import server_context

        assert settings.diameter_tls_cert and settings.diameter_tls_key  # load_settings checks
        assert settings.diameter_tls_ca
        try:
            tls = server_context(settings.diameter_tls_cert, settings.diameter_tls_key,
                                 settings.diameter_tls_ca)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise SystemExit(f"ocs serve: cannot load the Diameter TLS certificate, key or "
                             f"CA: {exc}") from exc
    engine = ChargingEngine(ledger.store(), ctx.bus, grace=settings.tcc_grace)
    await engine.start()
    server = DiameterServer(
        engine,
        host=settings.diameter_host,
        port=settings.diameter_port,
        origin_host=settings.diameter_origin_host,
        realm=settings.diameter_realm,
        allowed_peers=settings.diameter_peers,
        max_message=settings.diameter_max_message,
        pre_cer_max=settings.diameter_pre_cer_max,
        max_connections=settings.diameter_max_connections,
        max_buffered=settings.diameter_max_buffered,
        # the built-in IVR bridge connects from this machine as itself: always admitted
        local_peers=(settings.ivr_origin_host,),
        tls=tls,
        tls_port=settings.diameter_tls_port or 0,
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
                try:
                    part = await factory(ctx)
                except CapabilitiesRefused as exc:
                    raise SystemExit(
                        f"ocs serve: the {name} part could not open its Diameter connection: "
                        f"the OCS refused its CER with Result-Code {exc.result_code}"
                        + (" (unknown peer: add its Origin-Host to OCS_DIAMETER_PEERS of "
                           "that OCS)" if exc.result_code == 3010 else "")) from exc
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
