"""The charging engine: answers credit-control requests, batching their database work.

Concurrency model
  * Requests are queued; a batch worker takes everything queued so far and runs it as one
    set-based database operation (`ocs.charging.batch`), then resolves the requests after
    COMMIT: nothing is answered before it is durable, and every answer is stored before it
    is sent. A batch that fails for a passing reason (another process took a row it wrote,
    a deadlock) runs again; one that keeps failing is run one request at a time, so a
    faulty request only fails itself.
  * Requests of one session run one after another (a retransmission that overtakes the
    original waits for it and gets the same answer); different sessions run in parallel.
  * Live sessions are cached in memory; the database row decides. Every batch reads the
    rows it works on, so a copy gone stale (Tcc, another process, an operator's kill) is
    never used, and any process answers any copy of a request identically.

Tcc supervision policy (docs/ARCHITECTURE.md): a session silent past its Validity-Time plus
`grace` seconds is closed with end reason TCC_EXPIRED by the sweep (one process of a
deployment runs it): its last grant is charged as used (the switch was entitled to use it),
the rest of its reservation is released, a CDR is written, and an ASR is sent if its peer is
still connected. The sweep claims and closes a session in one transaction, so a crash leaves
no session half-claimed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from ocs import metrics, rating, tariffs
from ocs.charging import batch, records
from ocs.charging.batch import Item, Result, Sweep, Work
from ocs.charging.outcome import Outcome, RatingContext
from ocs.charging.request_rules import RequestKey, request_key
from ocs.charging.state import LiveSession
from ocs.credit_control import CCAnswer, CCRequest, PeerGateway, RequestType, ResultCode
from ocs.events import EventBus
from ocs.ledger import LedgerStore, StaleRead
from ocs.settings_store import OperatorSettings, load_operator_settings

log = logging.getLogger("ocs.charging")

REMEMBERED_ANSWERS = 100_000
RETRIES = 4  # a set-based batch run again after a passing failure, before going one by one
SWEEP_LIMIT = 100


def _passing(exc: BaseException) -> bool:
    """A failure that running the same batch again can get past."""
    if isinstance(exc, (StaleRead, records.SessionClash)):
        return True
    sqlstate = getattr(exc, "sqlstate", None)  # asyncpg: deadlock, serialization, unique
    return sqlstate in {"40P01", "40001", "23505"}


class ChargingEngine:
    def __init__(
        self,
        store: LedgerStore,
        bus: EventBus,
        *,
        grace: float = 10.0,
        clock: Callable[[], datetime] | None = None,
        max_batch: int = 256,
        workers: int | None = None,
        refresh_interval: float = 2.0,
        tcc_interval: float = 1.0,
        per_operation: bool = False,
        sweeper: bool = True,
        answer_retention: float = 3600.0,
    ) -> None:
        self.store = store
        self.bus = bus
        self.grace = grace
        self.clock = clock or (lambda: datetime.now(UTC))
        self.max_batch = max_batch
        # One batch worker by default: bigger batches, and no two batches of ours queueing
        # on the same hot account row.
        self.workers = workers or 1
        self.refresh_interval = refresh_interval
        self.tcc_interval = tcc_interval
        # The reference path: each request its own database operation (differential tests).
        self.per_operation = per_operation
        self.sweeper = sweeper  # run the Tcc sweep here (one process of a deployment)
        self.answer_retention = answer_retention
        self.table = rating.TariffTable(())
        self.settings = OperatorSettings()
        self.gateway: PeerGateway | None = None
        self._table_version = -1
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future[Any]]] = asyncio.Queue()
        self._live: dict[str, LiveSession] = {}
        self._answers: OrderedDict[RequestKey, CCAnswer] = OrderedDict()
        # Sessions with a request in progress, and the requests waiting for their turn.
        self._busy: dict[str, collections.deque[asyncio.Future[None]] | None] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._next_purge = 0.0
        # Top-ups come from this process's bus, or (several processes) from ocs.relay.
        self.watch_bus_topups = True
        self.batches = 0
        self.batched_ops = 0
        self.retried_batches = 0
        self.fallback_batches = 0

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh()
        for i in range(self.workers):
            self._tasks.append(asyncio.create_task(self._batch_worker(), name=f"batch-{i}"))
        self._tasks.append(asyncio.create_task(self._refresh_loop(), name="refresh"))
        self._tasks.append(asyncio.create_task(self._tcc_loop(), name="tcc"))
        self._tasks.append(asyncio.create_task(self._topup_listener(), name="topups"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks + list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.batches:
            log.info(
                "charging engine: %d batches, %.1f requests per batch, %d retried after a clash,"
                " %d run per operation",
                self.batches,
                self.batched_ops / self.batches,
                self.retried_batches,
                self.fallback_batches,
            )

    def set_gateway(self, gateway: PeerGateway) -> None:
        self.gateway = gateway

    async def refresh(self) -> None:
        """Reload operator settings, and the tariff table when it changed."""
        self.settings = await load_operator_settings()
        version = await tariffs.table_version()
        if version != self._table_version:
            self.table = await tariffs.load_table()
            self._table_version = version

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self.refresh()
            except Exception:
                log.exception("refreshing settings/tariffs failed; keeping the previous ones")

    def context(self) -> RatingContext:
        return RatingContext(
            table=self.table, settings=self.settings, now=self.clock(), grace=self.grace
        )

    # --- batching ------------------------------------------------------------------------

    async def _submit(self, item: Item) -> Any:
        """Queue one item for the next batch; returns its result or raises its error."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, fut))
        result = await fut
        if isinstance(result, BaseException):
            raise result
        return result

    async def _batch_worker(self) -> None:
        while True:
            queued = [await self._queue.get()]
            while len(queued) < self.max_batch:
                try:
                    queued.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            items = [item for item, _ in queued]
            try:
                results = await self._run(items)
            except Exception as exc:
                log.exception("batch of %d failed", len(items))
                results = [exc] * len(items)
            self.batches += 1
            self.batched_ops += len(items)
            for (_, fut), result in zip(queued, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

    async def _run(self, items: list[Item]) -> list[Result]:
        ctx = self.context()
        dialect = self.store.sql
        # After a clash, another process may have answered any of these requests: read every
        # stored answer from then on.
        clashed = False
        if not self.per_operation:
            for _ in range(RETRIES):
                (result,) = await self.store.run_batch(
                    [batch.run(items, ctx, dialect, every_answer=clashed)]
                )
                if not isinstance(result, BaseException):
                    return list(result)
                if not _passing(result):
                    log.error("set-based batch of %d failed: %r", len(items), result)
                    break
                clashed = True
                self.retried_batches += 1
            self.fallback_batches += 1
        results: list[Result] = []
        for item in items:
            # one by one, each its own transaction (and its own retries)
            again = clashed
            for _ in range(RETRIES):
                (one,) = await self.store.run_batch(
                    [batch.run([item], ctx, dialect, every_answer=again)]
                )
                if not isinstance(one, BaseException) or not _passing(one):
                    break
                again = True
            results.append(one[0] if isinstance(one, list) else one)
        return results

    # --- request handling ----------------------------------------------------------------

    async def handle(self, request: CCRequest) -> CCAnswer:
        started = time.perf_counter()
        try:
            answer = await self._handle(request)
        except Exception as exc:
            log.exception("CCR %s/%s failed", request.session_id, request.request_number)
            answer = CCAnswer(
                result_code=int(ResultCode.UNABLE_TO_COMPLY),
                request_type=request.request_type,
                request_number=request.request_number,
                error_message=f"internal error: {type(exc).__name__}",
            )
        metrics.observe_ccr(
            int(request.request_type), answer.result_code, time.perf_counter() - started
        )
        return answer

    async def _handle(self, req: CCRequest) -> CCAnswer:
        key = request_key(req)
        cached = self._answers.get(key)
        if cached is not None:
            return cached
        sid = req.session_id
        # One request at a time per session, in arrival order (a retransmission that
        # overtakes the original waits for it, then finds its answer).
        if sid in self._busy:
            await self._wait_turn(sid)
            cached = self._answers.get(key)
            if cached is not None:
                self._next_turn(sid)
                return cached
        else:
            self._busy[sid] = None
        try:
            live = None if req.request_type is RequestType.EVENT else self._live.get(sid)
            outcome: Outcome = await self._submit(Work(req, live))
            self._apply(outcome, sid)
            self._remember(key, outcome.answer)
            return outcome.answer
        finally:
            self._next_turn(sid)

    async def _wait_turn(self, sid: str) -> None:
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = self._busy[sid]
        if waiting is None:
            waiting = self._busy[sid] = collections.deque()
        waiting.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._next_turn(sid)  # it was our turn: hand it on
            elif turn in waiting:
                waiting.remove(turn)
            raise

    def _next_turn(self, sid: str) -> None:
        waiting = self._busy.get(sid)
        while waiting:
            turn = waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._busy.pop(sid, None)

    def _remember(self, key: RequestKey, answer: CCAnswer) -> None:
        self._answers[key] = answer
        if len(self._answers) > REMEMBERED_ANSWERS:
            self._answers.popitem(last=False)

    def _apply(self, outcome: Outcome, session_id: str | None) -> None:
        if outcome.session is not None:
            self._live[outcome.session.session_id] = outcome.session
        elif outcome.closed and session_id is not None:
            self._live.pop(session_id, None)
        for kind, data in outcome.events:
            if self.bus.wants(kind):
                self.bus.publish(kind, **(data() if callable(data) else data))
        metrics.set_live_sessions(len(self._live))

    # --- live sessions, supervision, server-initiated requests ------------------------------

    def live_sessions(self) -> list[LiveSession]:
        return list(self._live.values())

    async def expire_idle(self) -> list[str]:
        """Close every session silent past Validity-Time + grace, whichever process held it.
        Returns the closed ids."""
        closed: list[str] = []
        while True:
            outcomes = await self._submit(Sweep(SWEEP_LIMIT, frozenset(self._busy)))
            for outcome in outcomes:
                assert outcome.write is not None
                session_id = outcome.write.session.session_id
                self._live.pop(session_id, None)
                self._apply(outcome, session_id)
                closed.append(session_id)
                self._abort_in_background(session_id)
            if len(outcomes) < SWEEP_LIMIT:
                break
        # Whatever of ours is past its expiry now was closed, by this sweep or another
        # process's; the copies are only a cache (a request reads its row anyway).
        self._forget_stale(self.clock())
        return closed

    def _forget_stale(self, horizon: datetime) -> None:
        """Drop cached sessions that expired before `horizon` and have no request running."""
        for session_id in [s.session_id for s in self._live.values() if s.expires_at < horizon]:
            if session_id not in self._busy:
                del self._live[session_id]

    async def purge_answers(self) -> int:
        before = self.clock() - timedelta(seconds=self.answer_retention)
        return await self.store.run(records.purge_answers(before))

    async def _tcc_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tcc_interval)
            if not self.sweeper:
                # the primary's sweep closes them; give it a grace period to do so
                self._forget_stale(self.clock() - timedelta(seconds=self.grace))
                continue
            try:
                closed = await self.expire_idle()
                if closed:
                    log.info("Tcc closed %d silent session(s)", len(closed))
                if time.monotonic() >= self._next_purge:
                    self._next_purge = time.monotonic() + 60
                    await self.purge_answers()
            except Exception:
                log.exception("Tcc supervision pass failed")

    def _in_background(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _abort_in_background(self, session_id: str) -> None:
        gateway = self.gateway
        if gateway is None:
            return

        async def abort() -> None:
            with contextlib.suppress(Exception):
                await gateway.send_asr(session_id)

        self._in_background(abort())

    async def kill(self, session_id: str) -> int:
        """Cut a live call: flag it in the database, so that its next request gets no more
        credit (4012) even from a switch that ignores ASR, then send the ASR; returns the ASA
        Result-Code. Raises LookupError when no such call is live."""
        peer = await self.store.run(records.mark_killed(session_id, self.clock(), self.grace))
        if peer is None:
            raise LookupError(f"no live session {session_id!r}")
        if self.gateway is None:
            raise RuntimeError("no Diameter server attached to send the ASR")
        return await self.gateway.send_asr(session_id)

    async def reauthorise(self, session_id: str) -> int:
        if await self.store.run(records.open_session_peer(session_id)) is None:
            raise LookupError(f"no live session {session_id!r}")
        if self.gateway is None:
            raise RuntimeError("no Diameter server attached to send the RAR")
        return await self.gateway.send_rar(session_id)

    def topped_up(self, account_id: int) -> None:
        """The account got credit: re-authorise its sessions here that are on final units
        (the client re-asks and gets more)."""
        for session in list(self._live.values()):
            if session.account_id == account_id and session.final_units:
                self._rar_in_background(session.session_id)

    async def _topup_listener(self) -> None:
        with self.bus.subscribe(kinds=frozenset({"credit.change"})) as sub:
            async for event in sub:
                if not self.watch_bus_topups or event.kind != "credit.change":
                    continue
                if int(event.data.get("amount", 0)) > 0 and event.data.get("account_id"):
                    self.topped_up(int(event.data["account_id"]))

    def _rar_in_background(self, session_id: str) -> None:
        if self.gateway is None:
            return

        async def rar() -> None:
            try:
                await self.reauthorise(session_id)
            except Exception as exc:  # noqa: BLE001 -- a background RAR: the next CCR still sees the credit
                log.info("RAR for %s failed: %s", session_id, exc)

        self._in_background(rar())
