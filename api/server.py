"""Run the web app inside `ocs serve`: uvicorn as an asyncio task, stopped cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from api.app import STOPPING_KEY, create_app
from ocs.runtime import Part, ServeContext

log = logging.getLogger(__name__)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: `ocs serve` owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    """Bind here so a busy port is an OSError for the caller, not a SystemExit in a task."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class WebPart:
    name = "web"

    def __init__(
        self,
        server: uvicorn.Server,
        task: asyncio.Task[None],
        stopping: asyncio.Event,
        sock: socket.socket,
    ) -> None:
        self.server = server
        self._sock = sock
        self._port = int(sock.getsockname()[1])
        self.task = task
        self._stopping = stopping

    @property
    def port(self) -> int:
        """The bound port (useful when settings.web_port is 0)."""
        return self._port

    async def stop(self) -> None:
        self._stopping.set()  # ends live SSE streams so shutdown does not wait on them
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout=10)
        except TimeoutError:
            self.server.force_exit = True
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self._sock.close()


async def start_web(ctx: ServeContext) -> Part:
    """Serve the admin API + UI on settings.web_host:web_port until `stop()`."""
    app = create_app(ctx)
    config = uvicorn.Config(
        app,
        host=ctx.settings.web_host,
        port=ctx.settings.web_port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=3,
        proxy_headers=False,
        ssl_certfile=str(ctx.settings.web_tls_cert) if ctx.settings.web_tls_cert else None,
        ssl_keyfile=str(ctx.settings.web_tls_key) if ctx.settings.web_tls_key else None,
    )
    sock = _bind(ctx.settings.web_host, ctx.settings.web_port)
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="web")
    while not server.started:
        if task.done():
            sock.close()
            exc = task.exception()
            raise RuntimeError(f"web server failed to start: {exc}") from exc
        await asyncio.sleep(0.02)
    part = WebPart(server, task, app.state[STOPPING_KEY], sock)
    scheme = "https" if ctx.settings.web_tls else "http"
    log.info("web UI on %s://%s:%d/", scheme, ctx.settings.web_host, part.port)
    return part
