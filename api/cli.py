"""CLI commands contributed by the admin API: `ocs admin set-password`, `ocs apikey ...`,
`ocs operator add|list|passwd|role|disable|enable`. Changes are written to the audit log with
the actor `cli:<unix user>`.

`ocs.cli` calls `add_commands(subparsers)`; every handler takes the argparse Namespace and
returns an exit code (0 ok, 1 error).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from ocs import admin_auth, apikeys, audit, operators
from ocs.config import ConfigError, load_settings
from ocs.db import database

cli_actor = audit.cli_actor


def _fail(message: str) -> int:
    print(f"ocs: error: {message}", file=sys.stderr)
    return 1


def _run(body: Callable[[], Awaitable[int]]) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        return _fail(str(exc))

    async def main() -> int:
        async with database(settings):
            return await body()

    try:
        return asyncio.run(main())
    except (admin_auth.PasswordError, apikeys.ApiKeyError, operators.OperatorError) as exc:
        return _fail(str(exc))


def _read_password(args: argparse.Namespace, who: str = "admin") -> str | None:
    if args.password_stdin or not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    first = getpass.getpass(f"New {who} password: ")
    second = getpass.getpass("Repeat it: ")
    if first != second:
        return None
    return first


def cmd_set_password(args: argparse.Namespace) -> int:
    password = _read_password(args)
    if password is None:
        return _fail("the two passwords differ")
    try:
        admin_auth.validate_password(password)
    except admin_auth.PasswordError as exc:
        return _fail(str(exc))

    async def body() -> int:
        await admin_auth.set_password(password)
        await audit.record(cli_actor(), "operator.password", f"operator {operators.FIRST_ADMIN}")
        print("admin password set")
        return 0

    return _run(body)


def cmd_apikey_create(args: argparse.Namespace) -> int:
    async def body() -> int:
        new = await apikeys.create_key(args.name, args.role)
        await audit.record(cli_actor(), "apikey.create", f"api key {new.record.prefix}",
                           {"name": new.record.name, "role": new.record.role.value})
        if args.json:
            print(json.dumps({"id": new.record.id, "name": new.record.name,
                              "prefix": new.record.prefix, "role": new.record.role.value,
                              "key": new.key}))
        else:
            print(new.key)
            print(
                f"API key {new.record.prefix} ({new.record.name}, "
                f"{new.record.role.value}) created; "
                "this is the only time it is shown.",
                file=sys.stderr,
            )
        return 0

    return _run(body)


def cmd_apikey_list(args: argparse.Namespace) -> int:
    async def body() -> int:
        keys = await apikeys.list_keys()
        rows: list[dict[str, Any]] = [
            {
                "id": k.id,
                "prefix": k.prefix,
                "name": k.name,
                "role": k.role.value,
                "created_at": k.created_at.isoformat(),
                "revoked": k.revoked,
            }
            for k in keys
        ]
        if args.json:
            print(json.dumps(rows))
            return 0
        if not rows:
            print("no API keys")
            return 0
        print(f"{'ID':>4}  {'PREFIX':<8}  {'STATE':<7}  {'ROLE':<8}  {'CREATED':<19}  NAME")
        for r in rows:
            state = "revoked" if r["revoked"] else "active"
            created = r["created_at"][:19]
            print(f"{r['id']:>4}  {r['prefix']:<8}  {state:<7}  {r['role']:<8}  {created}  "
                  f"{r['name']}")
        return 0

    return _run(body)


def cmd_apikey_revoke(args: argparse.Namespace) -> int:
    async def body() -> int:
        record = await apikeys.revoke(args.key)
        if record is None:
            return _fail(f"no active API key {args.key!r}")
        await audit.record(cli_actor(), "apikey.revoke", f"api key {record.prefix}",
                           {"name": record.name})
        print(f"API key {args.key} revoked")
        return 0

    return _run(body)


def cmd_operator_add(args: argparse.Namespace) -> int:
    password = _read_password(args, args.name)
    if password is None:
        return _fail("the two passwords differ")

    async def body() -> int:
        row = await operators.create(args.name, password, args.role)
        await audit.record(cli_actor(), "operator.create", f"operator {row.name}",
                           {"role": row.role.value})
        print(f"operator {row.name} ({row.role.value}) created")
        return 0

    return _run(body)


def cmd_operator_list(args: argparse.Namespace) -> int:
    async def body() -> int:
        rows: list[dict[str, Any]] = [
            {"name": o.name, "role": o.role.value, "disabled": o.disabled,
             "created_at": o.created_at.isoformat(),
             "last_login_at": o.last_login_at.isoformat() if o.last_login_at else None}
            for o in await operators.list_operators()
        ]
        if args.json:
            print(json.dumps(rows))
            return 0
        if not rows:
            print("no operators (the web login page creates the first admin)")
            return 0
        print(f"{'NAME':<20}  {'ROLE':<8}  {'STATE':<8}  LAST LOGIN")
        for r in rows:
            state = "disabled" if r["disabled"] else "enabled"
            print(f"{r['name']:<20}  {r['role']:<8}  {state:<8}  "
                  f"{str(r['last_login_at'] or 'never')[:19]}")
        return 0

    return _run(body)


def cmd_operator_passwd(args: argparse.Namespace) -> int:
    password = _read_password(args, args.name)
    if password is None:
        return _fail("the two passwords differ")

    async def body() -> int:
        row = await operators.set_password(args.name, password)
        await audit.record(cli_actor(), "operator.password", f"operator {row.name}")
        print(f"password of {row.name} changed; their browser sessions have ended")
        return 0

    return _run(body)


def cmd_operator_role(args: argparse.Namespace) -> int:
    async def body() -> int:
        row = await operators.set_role(args.name, args.role)
        await audit.record(cli_actor(), "operator.role", f"operator {row.name}",
                           {"role": row.role.value})
        print(f"{row.name} is now {row.role.value}")
        return 0

    return _run(body)


def _cmd_operator_state(disabled: bool) -> Any:
    def handler(args: argparse.Namespace) -> int:
        async def body() -> int:
            row = await operators.set_disabled(args.name, disabled)
            action = "operator.disable" if disabled else "operator.enable"
            await audit.record(cli_actor(), action, f"operator {row.name}")
            print(f"{row.name} is {'disabled' if disabled else 'enabled'}")
            return 0

        return _run(body)

    return handler


def add_commands(subparsers: Any) -> None:
    admin = subparsers.add_parser("admin", help="web UI administrator")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    setpw = admin_sub.add_parser(
        "set-password", help="set the admin password of the web UI (prompts, or reads stdin)"
    )
    setpw.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (one line)"
    )
    setpw.set_defaults(func=cmd_set_password)

    apikey = subparsers.add_parser("apikey", help="REST API keys")
    key_sub = apikey.add_subparsers(dest="apikey_command", required=True)
    create = key_sub.add_parser("create", help="create a key and print it (once)")
    create.add_argument("name", help="what the key is for, e.g. provisioning")
    create.add_argument("--role", choices=operators.ROLES, default="admin",
                        help="what the key may do (default admin; provisioning needs operator)")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_apikey_create)
    listing = key_sub.add_parser("list", help="list keys (prefixes only)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_apikey_list)
    revoke = key_sub.add_parser("revoke", help="revoke a key by prefix or id")
    revoke.add_argument("key", help="key prefix (8 hex digits) or numeric id")
    revoke.set_defaults(func=cmd_apikey_revoke)

    operator = subparsers.add_parser("operator", help="web UI operators and their roles")
    op_sub = operator.add_subparsers(dest="operator_command", required=True)
    add = op_sub.add_parser("add", help="add an operator (prompts for the password, or stdin)")
    add.add_argument("name")
    add.add_argument("--role", choices=operators.ROLES, default="operator")
    add.add_argument("--password-stdin", action="store_true")
    add.set_defaults(func=cmd_operator_add)
    lst = op_sub.add_parser("list", help="list operators")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_operator_list)
    passwd = op_sub.add_parser("passwd", help="set an operator's password (ends their sessions)")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    passwd.set_defaults(func=cmd_operator_passwd)
    role = op_sub.add_parser("role", help="change an operator's role")
    role.add_argument("name")
    role.add_argument("role", choices=operators.ROLES)
    role.set_defaults(func=cmd_operator_role)
    disable = op_sub.add_parser("disable", help="disable an operator (ends their sessions)")
    disable.add_argument("name")
    disable.set_defaults(func=_cmd_operator_state(True))
    enable = op_sub.add_parser("enable", help="enable a disabled operator")
    enable.add_argument("name")
    enable.set_defaults(func=_cmd_operator_state(False))
