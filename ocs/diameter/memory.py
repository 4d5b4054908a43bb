"""An in-memory `CreditControlHandler` and a standalone server around it.

Why this exists: the protocol layer must be testable and benchmarkable without the
charging engine or a database. `MemoryHandler` grants time from an in-memory balance at a
flat rate (reserve on I/U, debit on U/T), enough for tests, the load benchmark and IVR
development. It is NOT the charging engine (`ocs.charging`): no tariffs, no persistence.

    python -m ocs.diameter.memory --port 3868 --balance 100000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from ocs.credit_control import (
    CCAnswer,
    CCRequest,
    FinalUnitAction,
    MsccAnswer,
    RequestedAction,
    RequestType,
    ResultCode,
)


@dataclass
class MemoryHandler:
    """Flat-rate prepaid balances keyed by Subscription-Id-Data (any unknown -> default)."""

    balances: dict[str, int] = field(default_factory=dict)
    rate: int = 200  # units per second
    quota: int = 30  # default grant in seconds
    validity: int = 60
    default_balance: int | None = None  # balance for unknown subscribers (None = 5030)
    reserved: dict[str, tuple[str, int]] = field(default_factory=dict)  # session -> (acct, s)
    session_cost: dict[str, int] = field(default_factory=dict)  # units debited per session
    requests: list[CCRequest] = field(default_factory=list)
    keep_requests: bool = True
    delay: float = 0.0

    def _account(self, req: CCRequest) -> str | None:
        for s in req.subscription_ids:
            if s.data in self.balances:
                return s.data
        if self.default_balance is not None and req.subscription_ids:
            acct = req.subscription_ids[0].data
            self.balances[acct] = self.default_balance
            return acct
        return None

    async def handle(self, request: CCRequest) -> CCAnswer:
        if self.keep_requests:
            self.requests.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        req = request
        acct = self._account(req)
        if acct is None:
            return CCAnswer(ResultCode.USER_UNKNOWN, req.request_type, req.request_number)
        # settle what was used
        used = sum(u.cc_time for u in req.used)
        if req.mscc:
            used += sum(u.cc_time for m in req.mscc for u in m.used)
        prior = self.reserved.pop(req.session_id, None)
        if prior is not None or req.request_type is not RequestType.INITIAL:
            self.balances[acct] -= used * self.rate
            self.session_cost[req.session_id] = (self.session_cost.get(req.session_id, 0)
                                                 + used * self.rate)
        available = self.balances[acct]
        if req.request_type is RequestType.EVENT:
            if req.requested_action is RequestedAction.PRICE_ENQUIRY:
                secs = req.requested_time or 60
                return CCAnswer(ResultCode.SUCCESS, req.request_type, req.request_number,
                                cost_units=secs * self.rate, remaining_balance=available)
            return CCAnswer(ResultCode.SUCCESS, req.request_type, req.request_number,
                            remaining_balance=available)
        if req.request_type is RequestType.TERMINATE:
            # Cost-Information at the end of a session: what the whole session cost
            return CCAnswer(ResultCode.SUCCESS, req.request_type, req.request_number,
                            remaining_balance=available,
                            cost_units=self.session_cost.pop(req.session_id, 0))
        wanted = self.quota
        asked = (req.mscc[0].requested_time if req.mscc else req.requested_time)
        if asked:
            wanted = min(wanted, asked)
        affordable = max(0, available // self.rate)
        grant = min(wanted, affordable)
        if grant <= 0:
            rc = ResultCode.CREDIT_LIMIT_REACHED
            if req.mscc is not None:
                m = req.mscc[0]
                return CCAnswer(rc, req.request_type, req.request_number, mscc=(
                    MsccAnswer(rc, m.rating_group, m.service_identifier),),
                    remaining_balance=available)
            return CCAnswer(rc, req.request_type, req.request_number,
                            remaining_balance=available)
        self.reserved[req.session_id] = (acct, grant)
        fua = FinalUnitAction.TERMINATE if grant < wanted else None
        if req.mscc is not None:
            m = req.mscc[0]
            return CCAnswer(ResultCode.SUCCESS, req.request_type, req.request_number, mscc=(
                MsccAnswer(ResultCode.SUCCESS, m.rating_group, m.service_identifier, grant,
                           self.validity, fua),), remaining_balance=available)
        return CCAnswer(ResultCode.SUCCESS, req.request_type, req.request_number,
                        granted_time=grant, validity_time=self.validity,
                        final_unit_action=fua, remaining_balance=available)


async def _serve(args: argparse.Namespace) -> None:
    from .server import DiameterServer

    handler = MemoryHandler(default_balance=args.balance, keep_requests=False)
    server = DiameterServer(handler, host=args.host, port=args.port,
                            origin_host=args.origin_host, realm=args.realm)
    await server.start()
    print(f"listening on {args.host}:{server.bound_port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=3868)
    ap.add_argument("--origin-host", default="ocs.localdomain")
    ap.add_argument("--realm", default="localdomain")
    ap.add_argument("--balance", type=int, default=10**12)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
