"""CLI commands contributed by the admin API: `ocs admin set-password`, `ocs apikey ...`.

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

from ocs import admin_auth, apikeys
from ocs.config import ConfigError, load_settings
from ocs.db import database


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
    except (admin_auth.PasswordError, apikeys.ApiKeyError) as exc:
        return _fail(str(exc))


def _read_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin or not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    first = getpass.getpass("New admin password: ")
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
        print("admin password set")
        return 0

    return _run(body)


def cmd_apikey_create(args: argparse.Namespace) -> int:
    async def body() -> int:
        new = await apikeys.create_key(args.name)
        if args.json:
            print(json.dumps({"id": new.record.id, "name": new.record.name,
                              "prefix": new.record.prefix, "key": new.key}))
        else:
            print(new.key)
            print(
                f"API key {new.record.prefix} ({new.record.name}) created; "
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
        print(f"{'ID':>4}  {'PREFIX':<8}  {'STATE':<7}  {'CREATED':<19}  NAME")
        for r in rows:
            state = "revoked" if r["revoked"] else "active"
            created = r["created_at"][:19]
            print(f"{r['id']:>4}  {r['prefix']:<8}  {state:<7}  {created}  {r['name']}")
        return 0

    return _run(body)


def cmd_apikey_revoke(args: argparse.Namespace) -> int:
    async def body() -> int:
        if not await apikeys.revoke_key(args.key):
            return _fail(f"no active API key {args.key!r}")
        print(f"API key {args.key} revoked")
        return 0

    return _run(body)


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
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_apikey_create)
    listing = key_sub.add_parser("list", help="list keys (prefixes only)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_apikey_list)
    revoke = key_sub.add_parser("revoke", help="revoke a key by prefix or id")
    revoke.add_argument("key", help="key prefix (8 hex digits) or numeric id")
    revoke.set_defaults(func=cmd_apikey_revoke)
