"""Browser sessions: server-side, created only at login, a fresh id at every login.

Litestar's stock server-side backend stores *every* session, empty ones included (a file per
anonymous request, `/healthz` too) and keeps whatever id the browser sends, so an id planted
before login stays valid after it (session fixation). This backend:

* writes nothing and sets no cookie while a session is empty;
* only reuses an id that was found in the store; an unknown cookie never names a session;
* issues a new id when a handler calls :func:`rotate` (login, password change) and deletes
  the old one;
* deletes the stored session and expires the cookie when the session is cleared (logout).

Expired session files are deleted at start-up and every ``PURGE_INTERVAL`` seconds
(:func:`purge_loop`); Litestar's file store otherwise only drops one when it is read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.middleware.session.server_side import (
    ServerSideSessionBackend,
    ServerSideSessionConfig,
)
from litestar.stores.base import Store
from litestar.types import Empty, Message, ScopeSession
from litestar.utils.dataclass import extract_dataclass_items

log = logging.getLogger(__name__)

PURGE_INTERVAL = 3600.0
_KNOWN = "ocs_session_known_id"  # scope-state key: the id whose data was loaded
_ROTATE = "ocs_session_rotate"


def rotate(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Give this session a new id when the response is sent (the old id stops working)."""
    connection.scope.setdefault("state", {})[_ROTATE] = True  # type: ignore[typeddict-unknown-key]


class OcsSessionBackend(ServerSideSessionBackend):
    async def load_from_connection(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> dict[str, Any]:
        session_id = connection.cookies.get(self.config.key)
        if session_id and session_id != "null":
            store = self.config.get_store_from_app(connection.scope["app"])
            data = await self.get(session_id, store=store)
            if data is not None:
                connection.scope.setdefault("state", {})[_KNOWN] = session_id  # type: ignore[typeddict-unknown-key]
                return self.deserialize_data(data)
        return {}

    async def store_in_message(
        self,
        scope_session: ScopeSession,
        message: Message,
        connection: ASGIConnection[Any, Any, Any, Any],
    ) -> None:
        scope = connection.scope
        state: dict[str, Any] = scope.get("state", {})  # type: ignore[assignment]
        known: str | None = state.get(_KNOWN)
        sent = connection.cookies.get(self.config.key)
        store = self.config.get_store_from_app(scope["app"])
        headers = MutableScopeHeaders.from_message(message)
        params = dict(
            extract_dataclass_items(self.config, exclude_none=True, include=Cookie.__dict__.keys())
        )
        if scope_session is Empty or not scope_session:
            if known:
                await self.delete(known, store=store)
            if sent:  # logged out, expired or never valid: make the browser forget it
                headers.add("Set-Cookie", Cookie(value="null", key=self.config.key, expires=0,
                                                 **params).to_header(header=""))
            return
        session_id = known
        if session_id is None or state.get(_ROTATE):
            if session_id is not None:
                await self.delete(session_id, store=store)
            session_id = self.generate_session_id()
            state[_KNOWN] = session_id
            state.pop(_ROTATE, None)
        await self.set(session_id, self.serialize_data(scope_session, scope), store=store)
        headers.add("Set-Cookie",
                    Cookie(value=session_id, key=self.config.key, **params).to_header(header=""))


@dataclass
class OcsSessionConfig(ServerSideSessionConfig):
    _backend_class = OcsSessionBackend


async def purge_expired(store: Store) -> None:
    delete_expired = getattr(store, "delete_expired", None)
    if delete_expired is not None:
        await delete_expired()


async def purge_loop(store: Store, interval: float = PURGE_INTERVAL) -> None:
    """Delete expired sessions now and then every `interval` seconds, until cancelled."""
    while True:
        try:
            await purge_expired(store)
        except OSError as exc:  # a file vanished or the disk is unhappy: try again later
            log.warning("could not purge expired web sessions: %s", exc)
        await asyncio.sleep(interval)


async def stop_task(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
