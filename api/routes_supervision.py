"""Supervision: live calls table kept fresh over Server-Sent Events, and the Cut action."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from litestar import Request, get, post
from litestar.response import Redirect, Response, ServerSentEvent, Template
from litestar.response.sse import ServerSentEventMessage

from api.auth import audit_log
from api.live import live_calls, live_fingerprint
from api.templating import Formatter, render_page
from api.web import ctx_of, flash, form_dict, page_context
from ocs.settings_store import load_operator_settings

RESYNC_SECONDS = 10.0  # full refresh even without events (also a keep-alive)
# Calls held by other OCS processes (`--workers`, or another `ocs serve` on one PostgreSQL)
# publish no event here: the open sessions' fingerprint is polled this often instead.
POLL_SECONDS = 1.0
DEBOUNCE_SECONDS = 0.2  # coalesce bursts of events into one refresh
STOPPING_KEY = "ocs_stopping"


async def _rows_html(request: Request[Any, Any, Any]) -> str:
    ops = await load_operator_settings()
    calls = await live_calls()
    engine = request.app.template_engine
    assert engine is not None
    template = engine.get_template("_live_rows.html")
    return str(
        template.render(calls=calls, fmt=Formatter(ops), now=datetime.now(UTC), ops=ops)
    )


@get("/supervision", include_in_schema=False)
async def supervision_page(request: Request[Any, Any, Any]) -> Template:
    context = await page_context(request, "supervision")
    context.update(
        {
            "rows_html": await _rows_html(request),
            "control": ctx_of(request).sessions is not None,
        }
    )
    return render_page(request, "supervision.html", context)


@get("/supervision/rows", include_in_schema=False)
async def supervision_rows(request: Request[Any, Any, Any]) -> Response[str]:
    return Response(await _rows_html(request), media_type="text/html")


@get("/supervision/stream", include_in_schema=False)
async def supervision_stream(request: Request[Any, Any, Any]) -> ServerSentEvent:
    ctx = ctx_of(request)
    stopping: asyncio.Event = request.app.state[STOPPING_KEY]

    async def events() -> AsyncIterator[ServerSentEventMessage]:
        sub = ctx.bus.subscribe(maxsize=100)
        loop = asyncio.get_running_loop()
        try:
            seen = await live_fingerprint()
            sent_at = loop.time()
            yield ServerSentEventMessage(data=await _rows_html(request), event="rows", retry=2000)
            while not stopping.is_set():
                waiter = asyncio.ensure_future(sub.get())
                stopper = asyncio.ensure_future(stopping.wait())
                done, _ = await asyncio.wait(
                    {waiter, stopper}, timeout=POLL_SECONDS,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for task in (waiter, stopper):
                    if not task.done():
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                if stopper in done:
                    break
                if waiter in done:
                    await asyncio.sleep(DEBOUNCE_SECONDS)
                    while not sub.queue.empty():
                        sub.queue.get_nowait()
                now = await live_fingerprint()
                if waiter not in done and now == seen and loop.time() - sent_at < RESYNC_SECONDS:
                    continue  # nothing changed anywhere
                seen, sent_at = now, loop.time()
                yield ServerSentEventMessage(data=await _rows_html(request), event="rows")
        finally:
            sub.close()

    return ServerSentEvent(events(), headers={"Cache-Control": "no-store",
                                              "X-Accel-Buffering": "no"})


@post("/supervision/kill", include_in_schema=False, status_code=303)
async def supervision_kill(request: Request[Any, Any, Any]) -> Response[str] | Redirect:
    form = await form_dict(request)
    session_id = form.get("session_id", "")
    control = ctx_of(request).sessions
    kind = "error"
    if control is None:
        message = "Call control is not available: the charging server is not running here."
    elif not session_id:
        message = "No call selected."
    else:
        try:
            code = await control.kill(session_id)
        except LookupError:
            message = "That call has already ended."
        except Exception as exc:  # noqa: BLE001 -- any failure to cut is shown to the operator
            request.logger.warning("kill %s failed: %s", session_id, exc)
            message = f"Could not cut the call: {exc}"
        else:
            await audit_log(request, "session.kill", f"session {session_id}",
                            {"result_code": code})
            kind = "ok" if code == 2001 else "error"
            message = f"Abort request sent to the switch (Result-Code {code})."
    if request.headers.get("hx-request"):
        # htmx swaps only 2xx answers: the outcome is in the message, not the status.
        return Response(
            f'<div class="flash {kind}" role="status">{_escape(message)}</div>',
            media_type="text/html",
            status_code=200,
        )
    flash(request, message, kind)
    return Redirect("/supervision", status_code=303)


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


ROUTES: list[Any] = [supervision_page, supervision_rows, supervision_stream, supervision_kill]
