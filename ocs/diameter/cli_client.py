"""`ocs client ...`: a small credit-control client to place a test call or ask a balance.

Why this exists: operators and tests need to exercise a running OCS over real Diameter
without a switch. `ocs.cli` calls `add_commands(subparsers)`; every handler takes the
argparse Namespace and returns an exit code (0 done, 1 error, 3 refused/cut by the OCS).

    ocs client call --from 5173 --to 0141587070 --duration 65 --update-every 30
    ocs client balance --account 1001

The call is simulated (no real waiting unless --realtime): CER, CCR-I, a CCR-U every
`--update-every` seconds of the call reporting the time used, CCR-T with the rest, DPR.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from decimal import Decimal
from typing import Any

from ocs.credit_control import CCAnswer, RequestedAction, ResultCode

from .client import GyClient
from .errors import CapabilitiesRefused, DiameterError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_REFUSED = 3


def add_commands(subparsers: Any) -> None:
    """Register `client call` and `client balance` on the `ocs` parser."""
    client = subparsers.add_parser("client", help="credit-control test client (Diameter Gy)")
    sub = client.add_subparsers(dest="client_cmd", required=True, metavar="ACTION")

    p = sub.add_parser("call", help="place a simulated call: CCR-I, CCR-U..., CCR-T")
    p.add_argument("--from", dest="caller", required=True,
                   help="calling number / account (Subscription-Id)")
    p.add_argument("--to", dest="called", required=True, help="dialled number")
    p.add_argument("--duration", type=int, default=60, help="call length in seconds")
    p.add_argument("--update-every", type=int, default=30,
                   help="seconds between CCR-U (also the time requested)")
    p.add_argument("--mscc", action=argparse.BooleanOptionalAction, default=True,
                   help="use Multiple-Services-Credit-Control (default) or top-level units")
    p.add_argument("--realtime", action="store_true", help="really wait between requests")
    _connection_args(p)
    p.set_defaults(func=cmd_call)

    p = sub.add_parser("balance", help="CCR-Event CHECK_BALANCE")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--account", help="account id (END_USER_PRIVATE / E.164 if digits)")
    who.add_argument("--from", dest="caller", help="calling number")
    _connection_args(p)
    p.set_defaults(func=cmd_balance)


def _connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="OCS address (default: diameter_host setting)")
    p.add_argument("--port", type=int, help="OCS port (default: diameter_port setting)")
    p.add_argument("--origin-host", help="our Origin-Host (default: cli.<realm>)")
    p.add_argument("--realm", help="our Origin-Realm and Destination-Realm")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait per answer")
    p.add_argument("--json", action="store_true", help="print the answers as JSON lines")


def _target(args: argparse.Namespace) -> tuple[str, int, str, str]:
    host, port, realm = "127.0.0.1", 3868, "localdomain"
    try:
        from ocs.config import load_settings

        s = load_settings()
        host, port, realm = s.diameter_host, s.diameter_port, s.diameter_realm
    except (ValueError, OSError):  # no usable config: fall back to the environment
        host = os.environ.get("OCS_DIAMETER_HOST", host)
        port = int(os.environ.get("OCS_DIAMETER_PORT", port))
        realm = os.environ.get("OCS_DIAMETER_REALM", realm)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    host = args.host or host
    port = args.port or port
    realm = args.realm or realm
    origin = args.origin_host or f"cli.{realm}"
    return host, port, origin, realm


_CURRENCIES = {978: "EUR", 840: "USD", 826: "GBP", 756: "CHF"}


def _money(units: int | None, exponent: int, currency: int = 978) -> str:
    if units is None:
        return "?"
    return f"{Decimal(units).scaleb(exponent):.4f} {_CURRENCIES.get(currency, currency)}"


def _describe(step: str, a: CCAnswer) -> str:
    parts = [f"{step}: {a.result_code}"]
    grant = a.mscc[0].granted_time if a.mscc else a.granted_time
    validity = a.mscc[0].validity_time if a.mscc else a.validity_time
    fua = a.mscc[0].final_unit_action if a.mscc else a.final_unit_action
    if a.mscc and a.mscc[0].result_code != a.result_code:
        parts.append(f"(service {a.mscc[0].result_code})")
    if grant is not None:
        parts.append(f"granted {grant} s")
    if validity is not None:
        parts.append(f"valid {validity} s")
    if fua is not None:
        parts.append(f"final units: {fua.name}")
    if a.remaining_balance is not None:
        parts.append(f"balance {a.remaining_balance} u "
                     f"({_money(a.remaining_balance, a.unit_price_exponent, a.currency_code)})")
    if a.cost_units is not None:
        money = _money(a.cost_units, a.unit_price_exponent, a.currency_code)
        parts.append(f"cost {a.cost_units} u ({money})")
    if a.error_message:
        parts.append(f"- {a.error_message}")
    return " ".join(parts)


def _emit(args: argparse.Namespace, step: str, a: CCAnswer) -> None:
    if args.json:
        grant = a.mscc[0].granted_time if a.mscc else a.granted_time
        print(json.dumps({"step": step, "result_code": a.result_code, "granted": grant,
                          "remaining_balance": a.remaining_balance, "cost": a.cost_units}))
    else:
        print(_describe(step, a))


def _granted(a: CCAnswer) -> tuple[int, bool]:
    """(seconds granted, whether they are the final units)."""
    if a.mscc:
        m = a.mscc[0]
        ok = a.result_code == ResultCode.SUCCESS and m.result_code == ResultCode.SUCCESS
        return (m.granted_time or 0) if ok else 0, m.final_unit_action is not None
    ok = a.result_code == ResultCode.SUCCESS
    return (a.granted_time or 0) if ok else 0, a.final_unit_action is not None


async def _call(args: argparse.Namespace) -> int:
    host, port, origin, realm = _target(args)
    every = max(1, args.update_every)
    async with GyClient(host, port, origin, realm, timeout=args.timeout) as gy:
        sid = gy.new_session_id()
        aborted = asyncio.Event()  # the OCS sent ASR (operator cut): end the call now
        gy.on_asr(lambda s: aborted.set() if s == sid else None)
        first = await gy.initial(sid, args.caller, args.called, requested_time=every,
                                 mscc=args.mscc)
        _emit(args, "CCR-I", first)
        grant, final = _granted(first)
        start_balance = first.remaining_balance
        elapsed = 0
        cut = False
        while True:
            left = args.duration - elapsed
            if grant <= 0:  # refused, or no credit left: Kamailio-like CCR-T with 0 used
                cut = left > 0
                t = await gy.terminate(sid, 0)
                break
            use = min(grant, every, left)
            if args.realtime:
                began = asyncio.get_running_loop().time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(aborted.wait(), use)
            if aborted.is_set():
                if args.realtime:
                    use = min(use, int(asyncio.get_running_loop().time() - began))
                elapsed += use
                cut = True
                t = await gy.terminate(sid, use, termination_cause=4)  # ADMINISTRATIVE
                break
            elapsed += use
            if elapsed >= args.duration:
                t = await gy.terminate(sid, use)
                break
            if final and use >= grant:  # final units spent: the switch cuts the call
                cut = True
                t = await gy.terminate(sid, use)
                break
            a = await gy.update(sid, use, requested_time=every)
            _emit(args, "CCR-U", a)
            grant, final = _granted(a)
        _emit(args, "CCR-T", t)
        cost = t.cost_units
        if cost is None and start_balance is not None and t.remaining_balance is not None:
            cost = start_balance - t.remaining_balance
        if not args.json:
            state = "cut by the OCS" if cut else "ended"
            print(f"call {state} after {elapsed} s; cost {cost} u "
                  f"({_money(cost, t.unit_price_exponent, t.currency_code)}); remaining "
                  f"{t.remaining_balance} u "
                  f"({_money(t.remaining_balance, t.unit_price_exponent, t.currency_code)})")
        return EXIT_REFUSED if cut else EXIT_OK

async def _balance(args: argparse.Namespace) -> int:
    host, port, origin, realm = _target(args)
    who = args.account or args.caller
    async with GyClient(host, port, origin, realm, timeout=args.timeout) as gy:
        a = await gy.event(who, RequestedAction.CHECK_BALANCE)
    _emit(args, "CCR-E", a)
    return EXIT_OK if a.result_code == ResultCode.SUCCESS else EXIT_REFUSED


def _run(coro_fn: Any, args: argparse.Namespace) -> int:
    try:
        code: int = asyncio.run(coro_fn(args))
        return code
    except CapabilitiesRefused as exc:
        print(f"ocs: error: the OCS refused us at CER (Result-Code {exc.result_code}); "
              f"is our Origin-Host in its peer list?", file=sys.stderr)
    except (DiameterError, OSError, TimeoutError) as exc:
        print(f"ocs: error: {type(exc).__name__}: {exc}", file=sys.stderr)
    return EXIT_ERROR


def cmd_call(args: argparse.Namespace) -> int:
    return _run(_call, args)


def cmd_balance(args: argparse.Namespace) -> int:
    return _run(_balance, args)
