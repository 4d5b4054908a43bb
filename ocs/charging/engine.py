"""The charging engine: answers credit-control requests, batching their database work.

Concurrency model
  * Requests are turned into ledger operations (ocs.charging.operations) and queued; a batch
    worker runs everything queued so far in one transaction (group commit) and resolves the
    requests' futures after COMMIT (one worker by default, see __init__).
  * Requests of one session run one after another (a retransmission that overtakes the
    original waits for it and gets the same answer); different sessions run in parallel.
  * Live sessions are held in memory; their state is also written to credit_session so that
    another process, or this one after a restart, can carry on or close them.

Tcc supervision policy (documented in docs/ARCHITECTURE.md): a session silent past its
Validity-Time plus `tcc_grace` seconds is closed with end reason TCC_EXPIRED; its last grant
is charged as used (the switch was entitled to use it), the rest of its reservation is
released, a CDR is written, and an ASR is sent if its peer is still connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from ocs import ledger, metrics, rating, tariffs
from ocs.charging import operations as ops
from ocs.charging.state import LiveSession
from ocs.credit_control import (
    CCAnswer,
    CCRequest,
    PeerGateway,
    RequestType,
    ResultCode,
)
from ocs.events import EventBus
from ocs.ledger import LedgerStore, Op
from ocs.settings_store import OperatorSettings, load_operator_settings

log = logging.getLogger("ocs.charging")

REMEMBERED_ANSWERS = 100_000
REMEMBERED_CLOSED = 50_000


class ChargingEngine:
    def __init__(
        self,
        store: LedgerStore,
        bus: EventBus,
        *,
        grace: float = 10.0,
        strategy: ledger.Strategy = ledger.Strategy.CONDITIONAL,
        clock: Callable[[], datetime] | None = None,
        max_batch: int = 256,
        workers: int | None = None,
        refresh_interval: float = 2.0,
        tcc_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.bus = bus
        self.grace = grace
        self.strategy = strategy
        self.clock = clock or (lambda: datetime.now(UTC))
        self.max_batch = max_batch
        # One batch worker by default on both databases: bigger batches, and no two batches
        # of ours queueing on the same hot account row (PostgreSQL, one account, 4x8 load:
        # 1 worker 724 CCR/s, 2 workers 494, 4 workers 606).
        self.workers = workers or 1
        self.refresh_interval = refresh_interval
        self.tcc_interval = tcc_interval
        self.table = rating.TariffTable(())
        self.settings = OperatorSettings()
        self.gateway: PeerGateway | None = None
        self._table_version = -1
        self._queue: asyncio.Queue[tuple[Op[Any], asyncio.Future[Any]]] = asyncio.Queue()
        self._live: dict[str, LiveSession] = {}
        self._answers: OrderedDict[tuple[str, int, int], CCAnswer] = OrderedDict()
        self._refused_initial: OrderedDict[str, None] = OrderedDict()
        self._tails: dict[str, asyncio.Future[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self.batches = 0
        self.batched_ops = 0

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

    # --- batching ------------------------------------------------------------------------

    async def run(self, op: Op[Any]) -> Any:
        """Queue one operation for the next batch; returns its result or raises its error."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, fut))
        result = await fut
        if isinstance(result, BaseException):
            raise result
        return result

    async def _batch_worker(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            try:
                results = await self.store.run_batch([op for op, _ in batch])
            except Exception as exc:
                log.exception("batch of %d failed", len(batch))
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.batches += 1
            self.batched_ops += len(batch)
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

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
        key = (req.session_id, req.request_number, int(req.request_type))
        cached = self._answers.get(key)
        if cached is not None:
            return cached
        # One request at a time per session, in arrival order.
        previous = self._tails.get(req.session_id)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[req.session_id] = mine
        try:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(previous)
            cached = self._answers.get(key)
            if cached is not None:
                return cached
            answer = await self._process(req)
            self._remember(key, answer)
            return answer
        finally:
            mine.set_result(None)
            if self._tails.get(req.session_id) is mine:
                del self._tails[req.session_id]

    def _remember(self, key: tuple[str, int, int], answer: CCAnswer) -> None:
        self._answers[key] = answer
        if len(self._answers) > REMEMBERED_ANSWERS:
            self._answers.popitem(last=False)

    def context(self) -> ops.RatingContext:
        return ops.RatingContext(
            table=self.table,
            settings=self.settings,
            now=self.clock(),
            grace=self.grace,
            strategy=self.strategy,
        )

    async def _process(self, req: CCRequest) -> CCAnswer:
        ctx = self.context()
        if req.request_type is RequestType.INITIAL:
            outcome = await self._initial(req, ctx)
        elif req.request_type is RequestType.EVENT:
            outcome = await self.run(self._event_op(req, ctx))
        else:
            try:
                outcome = await self.run(
                    self._continue_op(req, ctx, self._live.get(req.session_id))
                )
            except ops.SessionConflict:
                # Our copy was stale (closed by Tcc, or moved on in another process):
                # start again from the database's state.
                self._live.pop(req.session_id, None)
                outcome = await self.run(self._continue_op(req, ctx, None))
        self._apply(outcome, req)
        return outcome.answer

    async def _initial(self, req: CCRequest, ctx: ops.RatingContext) -> ops.Outcome:
        live = self._live.get(req.session_id)
        if live is not None:
            if live.last_request_number == req.request_number:
                return ops.Outcome(live.last_answer, live)
            return ops.Outcome(_error(req, ResultCode.UNABLE_TO_COMPLY, "session already open"))
        try:
            return await self.run(ops.initial_op(req, ctx))
        except Exception as exc:
            # The session id exists in the database already: a retransmission reaching this
            # process after another (or before a restart) answered it.
            stored = await self.run(ops.event_answer_op(req.session_id, req.request_number))
            if stored is not None:
                return ops.Outcome(stored)
            log.warning("CCR-I %s refused: %s", req.session_id, exc)
            return ops.Outcome(_error(req, ResultCode.UNABLE_TO_COMPLY, "session id in use"))

    def _event_op(self, req: CCRequest, ctx: ops.RatingContext) -> Op[ops.Outcome]:
        stored = yield from ops.event_answer_op(
            req.session_id, req.request_number, RequestType.EVENT
        )
        if stored is not None:
            return ops.Outcome(stored)
        return (yield from ops.event_op(req, ctx))

    def _continue_op(
        self, req: CCRequest, ctx: ops.RatingContext, session: LiveSession | None
    ) -> Op[ops.Outcome]:
        if session is None:
            state, session = yield from ops.load_session(req.session_id)
            if state == "missing" or session is None:
                if state == "missing" and req.session_id in self._refused_initial:
                    # e.g. Kamailio sends CCR-T (0 used) after a refused CCR-I
                    return ops.Outcome(
                        CCAnswer(
                            result_code=int(ResultCode.SUCCESS),
                            request_type=req.request_type,
                            request_number=req.request_number,
                        )
                    )
                return ops.Outcome(_error(req, ResultCode.UNKNOWN_SESSION_ID, "unknown session"))
            if state == "closed":
                last = session.last_answer
                if (
                    session.last_request_number == req.request_number
                    and last.request_type is req.request_type
                ):
                    return ops.Outcome(last)
                return ops.Outcome(_error(req, ResultCode.UNKNOWN_SESSION_ID, "session closed"))
        if req.request_number == session.last_request_number:
            if session.last_answer.request_type is req.request_type:
                return ops.Outcome(session.last_answer, session)  # a retransmission
            return ops.Outcome(
                _error(req, ResultCode.UNABLE_TO_COMPLY, "CC-Request-Number already used"),
                session,
            )
        if req.request_number < session.last_request_number:
            return ops.Outcome(
                _error(req, ResultCode.UNABLE_TO_COMPLY, "CC-Request-Number went backwards"),
                session,
            )
        if req.request_type is RequestType.UPDATE:
            return (yield from ops.update_op(req, session, ctx))
        return (yield from ops.terminate_op(req, session, ctx))

    def _apply(self, outcome: ops.Outcome, req: CCRequest | None) -> None:
        if outcome.session is not None:
            self._live[outcome.session.session_id] = outcome.session
        elif outcome.closed or (req is not None and req.request_type is RequestType.TERMINATE):
            sid = req.session_id if req is not None else None
            if sid:
                self._live.pop(sid, None)
        if (
            req is not None
            and req.request_type is RequestType.INITIAL
            and outcome.session is None
            and outcome.answer.result_code != ResultCode.SUCCESS
        ):
            self._refused_initial[req.session_id] = None
            if len(self._refused_initial) > REMEMBERED_CLOSED:
                self._refused_initial.popitem(last=False)
        for kind, data in outcome.events:
            self.bus.publish(kind, **data)
        metrics.set_live_sessions(len(self._live))

    # --- live sessions, supervision, server-initiated requests ------------------------------

    def live_sessions(self) -> list[LiveSession]:
        return list(self._live.values())

    async def expire_idle(self) -> list[str]:
        """Close sessions silent past Validity-Time + grace (this process's, then orphans
        left open in the database by a process that died). Returns the closed ids."""
        ctx = self.context()
        closed: list[str] = []
        for session in [s for s in self._live.values() if s.expires_at < ctx.now]:
            if session.session_id in self._tails:
                continue  # a request is in progress: not silent
            try:
                outcome = await self.run(_tcc_close(session, ctx))
            except ops.SessionConflict:
                # it moved on meanwhile (a late request here, or another process)
                if self._live.get(session.session_id) is session:
                    del self._live[session.session_id]
                continue
            self._live.pop(session.session_id, None)
            self._apply(outcome, None)
            closed.append(session.session_id)
            self._abort_in_background(session.session_id)
        closed += await self._close_orphans(ctx)
        return closed

    async def _close_orphans(self, ctx: ops.RatingContext) -> list[str]:
        rows = await self.run(_orphans_op(ctx.now, tuple(self._live)))
        closed = []
        for session_id in rows:
            state, session = await self.run(ops.load_session(session_id))
            if state != "open" or session is None:
                continue
            try:
                outcome = await self.run(_tcc_close(session, ctx))
            except ops.SessionConflict:
                continue
            self._apply(outcome, None)
            closed.append(session_id)
        return closed

    async def _tcc_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tcc_interval)
            try:
                closed = await self.expire_idle()
                if closed:
                    log.info("Tcc closed %d silent session(s)", len(closed))
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
        """Abort a live call: ASR to its client, which then ends it with a CCR-T."""
        if session_id not in self._live:
            raise LookupError(f"no live session {session_id!r}")
        if self.gateway is None:
            raise RuntimeError("no Diameter server attached to send the ASR")
        return await self.gateway.send_asr(session_id)

    async def reauthorise(self, session_id: str) -> int:
        if session_id not in self._live:
            raise LookupError(f"no live session {session_id!r}")
        if self.gateway is None:
            raise RuntimeError("no Diameter server attached to send the RAR")
        return await self.gateway.send_rar(session_id)

    async def _topup_listener(self) -> None:
        """After a top-up, re-authorise that account's sessions that are on final units."""
        with self.bus.subscribe() as sub:
            async for event in sub:
                if event.kind != "credit.change" or int(event.data.get("amount", 0)) <= 0:
                    continue
                account_id = event.data.get("account_id")
                for session in list(self._live.values()):
                    if session.account_id == account_id and session.final_units:
                        self._rar_in_background(session.session_id)

    def _rar_in_background(self, session_id: str) -> None:
        if self.gateway is None:
            return

        async def rar() -> None:
            try:
                await self.reauthorise(session_id)
            except Exception as exc:
                log.info("RAR for %s failed: %s", session_id, exc)

        self._in_background(rar())


def _tcc_close(session: LiveSession, ctx: ops.RatingContext) -> Op[ops.Outcome]:
    return ops.close_op(
        session, ctx, used=[], end_reason="TCC_EXPIRED", charge_outstanding_grants=True
    )


def _error(req: CCRequest, code: ResultCode, message: str) -> CCAnswer:
    return CCAnswer(
        result_code=int(code),
        request_type=req.request_type,
        request_number=req.request_number,
        error_message=message,
    )


def _orphans_op(now: datetime, mine: tuple[str, ...]) -> Op[list[str]]:
    """Claim sessions left open past their expiry by a process that is gone (the claim,
    pushing expires_at to NULL, keeps two processes from closing the same one)."""
    rows = yield (
        "SELECT session_id FROM credit_session WHERE state = 'open' AND expires_at < ?"
        " ORDER BY expires_at LIMIT 100",
        (now,),
    )
    claimed = []
    skip = set(mine)
    for (session_id,) in rows:
        if session_id in skip:
            continue
        got = yield (
            "UPDATE credit_session SET expires_at = NULL WHERE session_id = ? AND state = 'open'"
            " AND expires_at < ? RETURNING session_id",
            (session_id, now),
        )
        if got:
            claimed.append(str(session_id))
    return claimed
