"""Messages between the OCS processes sharing one PostgreSQL, over LISTEN/NOTIFY.

A peer's Diameter connection lives in one process, but a session may be cut or
re-authorised from another (the web UI, `ocs session kill`, a top-up): this relay carries
those requests to whichever process holds the connection, and top-ups to every process.

Channel `ocs_relay`, JSON payloads:
  {"op": "req", "id", "kind": "ASR"|"RAR", "sid", "from"}   any process: who holds `sid`?
  {"op": "claim", "id"}                                       the holder: "mine, sending"
  {"op": "ans", "id", "code"} | {"op": "err", "id", "error"}  the holder: RAA/ASA or failure
  {"op": "topup", "account_id"}                               a credit was added (ledger)
A request nobody claims within `claim_timeout` has no live connection anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from ocs.diameter.errors import RequestTimeout, UnknownSession

log = logging.getLogger("ocs.relay")

CHANNEL = "ocs_relay"


class LocalPeers(Protocol):
    def holds(self, session_id: str) -> bool: ...

    async def send_rar(self, session_id: str) -> int: ...

    async def send_asr(self, session_id: str) -> int: ...


class Relay:
    """One per process. `local`: this process's Diameter server (None: it has none);
    `on_topup(account_id)`: called for every top-up of any process."""

    def __init__(
        self,
        dsn: str,
        local: LocalPeers | None,
        on_topup: Callable[[int], None] | None = None,
        *,
        claim_timeout: float = 1.0,
        answer_timeout: float = 6.0,
    ) -> None:
        self.dsn = dsn
        self.local = local
        self.on_topup = on_topup
        self.claim_timeout = claim_timeout
        self.answer_timeout = answer_timeout
        self.me = uuid.uuid4().hex[:12]
        self._conn: Any = None
        self._claims: dict[str, asyncio.Future[None]] = {}
        self._answers: dict[str, asyncio.Future[int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        import asyncpg

        self._conn = await asyncpg.connect(self.dsn)
        await self._conn.add_listener(CHANNEL, self._heard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    async def _notify(self, message: dict[str, Any]) -> None:
        await self._conn.execute("SELECT pg_notify($1, $2)", CHANNEL, json.dumps(message))

    # --- requests from this process ----------------------------------------------------

    async def send_rar(self, session_id: str) -> int:
        return await self._request("RAR", session_id)

    async def send_asr(self, session_id: str) -> int:
        return await self._request("ASR", session_id)

    async def _request(self, kind: str, session_id: str) -> int:
        local = self.local
        if local is not None and local.holds(session_id):
            return await (local.send_asr if kind == "ASR" else local.send_rar)(session_id)
        loop = asyncio.get_running_loop()
        rid = uuid.uuid4().hex
        claimed = self._claims[rid] = loop.create_future()
        answered = self._answers[rid] = loop.create_future()
        try:
            await self._notify(
                {"op": "req", "id": rid, "kind": kind, "sid": session_id, "from": self.me}
            )
            try:
                await asyncio.wait_for(asyncio.shield(claimed), self.claim_timeout)
            except TimeoutError:
                raise UnknownSession(
                    f"no OCS process holds a connection for {session_id!r}"
                ) from None
            try:
                return await asyncio.wait_for(answered, self.answer_timeout)
            except TimeoutError:
                raise RequestTimeout(f"no {kind[:2]}A for {session_id!r}") from None
        finally:
            self._claims.pop(rid, None)
            self._answers.pop(rid, None)

    # --- what other processes say ------------------------------------------------------

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            op = message["op"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed relay message: %.200r", payload)
            return
        if op == "req":
            local = self.local
            if message.get("from") != self.me and local and local.holds(str(message.get("sid"))):
                self._spawn(self._serve(message))
        elif op == "claim":
            fut = self._claims.get(str(message.get("id")))
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif op in ("ans", "err"):
            answer = self._answers.get(str(message.get("id")))
            if answer is not None and not answer.done():
                if op == "ans":
                    answer.set_result(int(message["code"]))
                else:
                    answer.set_exception(RuntimeError(str(message.get("error"))))
        elif op == "topup" and self.on_topup is not None:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                self.on_topup(int(message["account_id"]))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, message: dict[str, Any]) -> None:
        rid, kind, sid = message["id"], message.get("kind"), str(message.get("sid"))
        assert self.local is not None
        try:
            await self._notify({"op": "claim", "id": rid})
            send = self.local.send_asr if kind == "ASR" else self.local.send_rar
            code = await send(sid)
        except Exception as exc:  # noqa: BLE001 -- the asking process gets the error instead of a timeout
            reply: dict[str, Any] = {"op": "err", "id": rid, "error": str(exc) or repr(exc)}
        else:
            reply = {"op": "ans", "id": rid, "code": code}
        with contextlib.suppress(Exception):
            await self._notify(reply)


def topup_statement(account_id: int) -> tuple[str, tuple[Any, ...]]:
    """The statement that tells every OCS process that `account_id` got credit (they
    re-authorise its sessions on final units); PostgreSQL only, delivered on commit."""
    return (
        "SELECT pg_notify(?, ?)",
        (CHANNEL, json.dumps({"op": "topup", "account_id": account_id})),
    )
