"""`ocs serve`: every server part, started in order, stopped in reverse.

Parts: the charging engine and its Diameter server (`ocs`), the operator web UI and REST API
(`web`), the IVR bridge (`ivr`), the MQTT event publisher (`mqtt`, only with OCS_MQTT_URL),
the billing scheduler (`billing`) and the local control socket used by `ocs session ...`
(`control`). `--only NAME` runs a subset (the database is always connected).

`--workers N` (PostgreSQL; default one per core): this process (the primary) runs every part
and starts N-1 worker processes that run only charging + Diameter (and MQTT) on the same
Diameter port (SO_REUSEPORT): the kernel spreads the peers' connections over them. Tcc, the
web UI, billing and the IVR run once, in the primary. A worker exits when the primary goes
away (its stdin closes); the primary restarts a worker that dies. ASR/RAR for a session
reach the process holding its peer's connection through `ocs.relay`. SQLite: one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

from ocs import ledger, metrics
from ocs.charging.engine import ChargingEngine
from ocs.config import Settings
from ocs.db import database
from ocs.diameter.errors import CapabilitiesRefused
from ocs.events import default_bus
from ocs.relay import Relay
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
    store = ledger.store()
    engine = ChargingEngine(
        store,
        ctx.bus,
        grace=settings.tcc_grace,
        sweeper=ctx.role == "primary",
        answer_retention=settings.answer_retention,
        workers=1 if store.dialect == "sqlite" else settings.batch_workers,
    )
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
        reuse_port=ctx.workers > 1 or ctx.role == "worker",
    )
    relay: Relay | None = None
    if store.dialect == "postgres":
        # Other processes may hold a session's connection, and top-ups may come from any.
        relay = Relay(ledger.postgres_dsn(settings.database_url), server, engine.topped_up)
        await relay.start()
        engine.watch_bus_topups = False
        engine.set_gateway(relay)
    else:
        engine.set_gateway(server)
    try:
        await server.start()
    except BaseException:
        if relay is not None:
            await relay.stop()
        await engine.stop()
        raise
    ctx.engine = engine
    ctx.sessions = engine
    ctx.diameter_port = server.bound_port
    log.info("Diameter server on %s:%d", settings.diameter_host, server.bound_port)

    async def report_peers() -> None:
        while True:
            metrics.set_peers(len(server.open_peers))
            await asyncio.sleep(1)

    peers_task = asyncio.create_task(report_peers())

    async def stop() -> None:
        peers_task.cancel()
        await server.stop()
        if relay is not None:
            await relay.stop()
        await engine.stop()

    return SimplePart("ocs", stop)


async def start_workers(ctx: ServeContext) -> Part | None:
    """The N-1 worker processes of `--workers N` (primary only)."""
    if ctx.role != "primary" or ctx.workers <= 1 or ctx.diameter_port is None:
        return None
    pool = WorkerPool(ctx.workers - 1, ctx.diameter_port)
    await pool.start()
    return SimplePart("workers", pool.stop)


class WorkerPool:
    """Worker processes on the primary's Diameter port, restarted when one dies."""

    def __init__(self, count: int, port: int) -> None:
        self.count = count
        self.port = port
        self.procs: list[asyncio.subprocess.Process] = []
        self._watch: asyncio.Task[None] | None = None

    async def _spawn(self) -> asyncio.subprocess.Process:
        env = {**os.environ, "OCS_DIAMETER_PORT": str(self.port)}
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ocs.cli", "serve", "--worker",
            stdin=asyncio.subprocess.PIPE, env=env,
        )

    async def start(self) -> None:
        self.procs = [await self._spawn() for _ in range(self.count)]
        self._watch = asyncio.create_task(self._restart_dead())
        log.info("started %d worker process(es) on Diameter port %d", self.count, self.port)

    async def _restart_dead(self) -> None:
        while True:
            await asyncio.sleep(1)
            for i, proc in enumerate(self.procs):
                if proc.returncode is not None:
                    log.error("worker %d exited (%s): restarting it", proc.pid, proc.returncode)
                    self.procs[i] = await self._spawn()

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


def worker_count(settings: Settings, requested: int | None) -> int:
    """Processes for `ocs serve`: one per core by default; always one on SQLite (one
    writer, one file)."""
    wanted = requested if requested is not None else settings.workers
    if settings.is_sqlite:
        if wanted > 1:
            log.warning("SQLite: --workers %d ignored, running one process", wanted)
        return 1
    return wanted or os.cpu_count() or 1


async def _exit_when_primary_goes() -> None:
    """A worker's stdin is a pipe from the primary: EOF means the primary is gone."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


def _lazy(module: str, name: str) -> Callable[[ServeContext], Awaitable[Part]]:
    async def start(ctx: ServeContext) -> Part:
        factory = getattr(importlib.import_module(module), name)
        part: Part = await factory(ctx)
        return part

    return start


PARTS: dict[str, Callable[[ServeContext], Awaitable[Part | None]]] = {
    "ocs": start_ocs,
    "workers": start_workers,
    "ivr": _lazy("ivr_bridge.service", "start_part"),
    "web": _lazy("api.server", "start_web"),
    "mqtt": _lazy("ocs.mqtt", "start_mqtt"),
    "billing": _lazy("ocs.billing", "start_billing_scheduler"),
    "control": _lazy("ocs.control", "start_control"),
}


WORKER_PARTS = {"ocs", "mqtt"}


# The cyclic GC's default thresholds (700, 10, 10) pause the loop for a collection every few
# hundred allocations: at thousands of CCR/s that made most of the p99 (bench/gy_load.py,
# 4 x 50, SQLite, 2,000 accounts: 121-130 ms with the defaults, 46-67 ms with these).
# Reference counting frees nearly everything a request makes; what start-up built (tariffs,
# the AVP dictionary, code) is frozen out of every collection.
GC_THRESHOLDS = (100_000, 50, 100)


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve(
    settings: Settings,
    *,
    only: set[str] | None = None,
    ready: asyncio.Event | None = None,
    workers: int | None = None,
    role: str = "primary",
    own_process: bool = False,
) -> None:
    """`own_process`: this process is `ocs serve` itself (not a test or an embedding
    program), so its garbage collector may be tuned for serving."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
    )
    unknown = (only or set()) - PARTS.keys()
    if unknown:
        raise SystemExit(f"ocs serve: unknown part(s): {', '.join(sorted(unknown))}")
    if role == "worker":
        only = WORKER_PARTS
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop_event.set)
    if role == "worker":
        watcher = asyncio.create_task(_exit_when_primary_goes())
        watcher.add_done_callback(lambda _: stop_event.set())
    count = worker_count(settings, workers) if role == "primary" else 1
    async with database(settings):
        ctx = ServeContext(settings=settings, bus=default_bus(), role=role, workers=count)
        started: list[Part] = []
        try:
            for name, factory in PARTS.items():
                if only and name not in only and not (name == "workers" and "ocs" in only):
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
            if own_process:
                tune_gc()
            await stop_event.wait()
        finally:
            for part in reversed(started):
                try:
                    await part.stop()
                except Exception:
                    log.exception("stopping %s failed", part.name)
