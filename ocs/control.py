"""Local control socket of a running `ocs serve`, and the `ocs session` commands using it.

A Unix socket in the data directory (mode 0600: only the operator's account can use it)
takes one JSON request per line and answers one JSON line:
  {"cmd": "kill", "session_id": "..."}   -> {"ok": true, "result_code": 2001}
  {"cmd": "rar",  "session_id": "..."}   -> {"ok": true, "result_code": 2001}
  {"cmd": "live"}                         -> {"ok": true, "sessions": [...]}
`ocs session list` reads open sessions from the database, so it works for every OCS process
sharing it; `kill` goes to the process holding the session through this socket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from ocs import audit
from ocs.config import ConfigError, Settings, load_settings
from ocs.runtime import Part, ServeContext, SimplePart

SOCKET_NAME = "ocs.sock"


def socket_path(settings: Settings) -> Path:
    return settings.data_dir / SOCKET_NAME


async def _dispatch(ctx: ServeContext, request: dict[str, Any]) -> dict[str, Any]:
    cmd = request.get("cmd")
    if cmd == "live":
        engine = ctx.engine
        sessions = engine.live_sessions() if engine is not None else []
        return {
            "ok": True,
            "sessions": [
                {
                    "session_id": s.session_id,
                    "account": s.account_number,
                    "calling": s.calling,
                    "called": s.called,
                    "used": s.used,
                    "reserved": s.reserved,
                    "started_at": s.started_at.isoformat(),
                    "peer": s.peer,
                }
                for s in sessions
            ],
        }
    if cmd in ("kill", "rar"):
        session_id = request.get("session_id")
        if not isinstance(session_id, str) or not session_id:
            return {"ok": False, "error": "session_id is required"}
        if ctx.sessions is None:
            return {"ok": False, "error": "the OCS part is not running"}
        try:
            if cmd == "kill":
                code = await ctx.sessions.kill(session_id)
            else:
                code = await ctx.sessions.reauthorise(session_id)
        except LookupError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 -- the control socket answers every failure to its CLI client
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        if cmd == "kill":
            actor = request.get("actor")
            await audit.record(actor if isinstance(actor, str) and actor else "cli",
                               "session.kill", f"session {session_id}", {"result_code": code})
        return {"ok": True, "result_code": code}
    return {"ok": False, "error": f"unknown command {cmd!r}"}


async def start_control(ctx: ServeContext) -> Part:
    path = socket_path(ctx.settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("a JSON object is expected")
                    reply = await _dispatch(ctx, request)
                except ValueError as exc:
                    reply = {"ok": False, "error": f"bad request: {exc}"}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

    old_umask = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(client, path=str(path))
    finally:
        os.umask(old_umask)

    async def stop() -> None:
        server.close()
        await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    return SimplePart("control", stop)


async def request(settings: Settings, payload: dict[str, Any], timeout: float = 10.0) -> Any:
    path = socket_path(settings)
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        raise ConnectionError(f"no running `ocs serve` (socket {path})") from None
    try:
        writer.write(json.dumps(payload).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
    return json.loads(line)


# --- CLI --------------------------------------------------------------------------------------


def _cmd_list(args: argparse.Namespace) -> int:
    from ocs.cli import print_json, run_with_db
    from ocs.models import CreditSession, SessionState

    async def body(settings: Settings) -> int:
        rows = await CreditSession.filter(state=SessionState.OPEN).prefetch_related("account")
        data = [
            {
                "session_id": r.session_id,
                "account": r.account.number if r.account else "",
                "calling": r.calling,
                "called": r.called,
                "tariff": r.tariff_prefix,
                "rate": r.rate,
                "used": r.used_seconds,
                "cost": r.cost,
                "reserved": r.reserved,
                "started_at": r.started_at.isoformat(),
                "peer": r.peer,
            }
            for r in rows
        ]
        if args.json:
            print_json(data)
            return 0
        print(
            f"{'session':<40} {'account':<8} {'calling':<14} {'called':<16} {'used':>5}"
            f" {'cost':>7} {'reserved':>9}"
        )
        for d in data:
            print(
                f"{d['session_id'][:40]:<40} {d['account']:<8} {d['calling']:<14}"
                f" {d['called']:<16} {d['used']:>5} {d['cost']:>7} {d['reserved']:>9}"
            )
        print(f"({len(data)} live)")
        return 0

    return run_with_db(args, body)


def _cmd_action(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"ocs: error: {exc}", file=sys.stderr)
        return 1
    cmd = "kill" if args.session_cmd == "kill" else "rar"
    try:
        reply = asyncio.run(request(settings, {"cmd": cmd, "session_id": args.session_id,
                                               "actor": audit.cli_actor()}))
    except (ConnectionError, TimeoutError, ValueError) as exc:
        print(f"ocs: error: {exc}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"ocs: error: {reply.get('error')}", file=sys.stderr)
        return 1
    word = "ASR" if cmd == "kill" else "RAR"
    print(f"{word} sent to the client of {args.session_id}: Result-Code {reply['result_code']}")
    return 0 if reply["result_code"] == 2001 else 1


def add_commands(subparsers: Any) -> None:
    sess = subparsers.add_parser("session", help="live credit-control sessions").add_subparsers(
        dest="session_cmd", required=True, metavar="ACTION"
    )
    p = sess.add_parser("list", help="open sessions (from the database)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_list)
    p = sess.add_parser("kill", help="abort a live call (ASR)")
    p.add_argument("session_id")
    p.set_defaults(func=_cmd_action)
    p = sess.add_parser("reauth", help="ask the client to re-authorise (RAR)")
    p.add_argument("session_id")
    p.set_defaults(func=_cmd_action)
