"""The `ocs` command line: one entry point for operators, provisioning scripts and tests.

Core commands live here; other packages contribute theirs through an `add_commands(subparsers)`
function listed in COMMAND_MODULES. Every handler returns an exit code; bad input prints a
one-line error on stderr and exits non-zero. Listing commands take `--json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from ocs import accounts, audit, ledger, money, rating, tariffs
from ocs.config import ConfigError, Settings, load_settings
from ocs.db import database
from ocs.settings_store import load_operator_settings

COMMAND_MODULES: tuple[str, ...] = (
    "ocs.control",
    "ocs.diameter.cli_client",
    "ocs.cli_billing",
    "api.cli",
    "ocs.cli_ops",
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 1."""


def fail(message: str) -> int:
    print(f"ocs: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def run_with_db(args: argparse.Namespace, body: Callable[[Settings], Awaitable[int]]) -> int:
    """Run `body` with the database connected; map known errors to a clean exit."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        return fail(str(exc))

    async def main() -> int:
        async with database(settings):
            return await body(settings)

    try:
        return asyncio.run(main())
    except (
        CliError,
        accounts.AccountError,
        accounts.UnknownAccount,
        ledger.LedgerError,
        tariffs.TariffError,
        rating.RatingError,
    ) as exc:
        return fail(str(exc))


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def parse_units_or_money(text: str, money_flag: bool, unit_price: Decimal) -> int:
    if money_flag:
        try:
            amount = Decimal(text.replace(",", "."))
        except InvalidOperation:
            raise CliError(f"not an amount of money: {text!r}") from None
        try:
            return money.money_to_units(amount, unit_price)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    try:
        return int(text)
    except ValueError:
        raise CliError(f"not a whole number of units: {text!r}") from None


# --- migrate / demo ------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace) -> int:
    from ocs.db import migrate

    try:
        settings = load_settings()
    except ConfigError as exc:
        return fail(str(exc))
    applied = asyncio.run(migrate(settings))
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from ocs.demo import load_demo

    async def body(settings: Settings) -> int:
        done = await load_demo()
        print("\n".join(done) if done else "demo data already present")
        return EXIT_OK

    return run_with_db(args, body)


# --- accounts ------------------------------------------------------------------------------


async def _account_json(acc: Any, unit_price: Decimal, currency: str) -> dict[str, Any]:
    return {
        "number": acc.number,
        "name": acc.name,
        "language": acc.language,
        "status": str(acc.status),
        "balance": acc.balance,
        "reserved": acc.reserved,
        "available": acc.available,
        "available_money": str(money.units_to_money(acc.available, unit_price)),
        "currency": currency,
        "caller_ids": await accounts.caller_ids(acc.id),
        "has_pin": acc.pin_index is not None,
    }


def cmd_account_add(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        # Without --language, new accounts take the operator's default media language.
        language = args.language or (await load_operator_settings()).default_language
        acc = await accounts.create_account(
            args.number,
            name=args.name or "",
            pin=args.pin,
            language=language,
            caller_ids=args.caller_id or [],
        )
        actor = audit.cli_actor()
        await audit.record(actor, "account.create", f"account {acc.number}",
                           {"name": acc.name, "language": acc.language})
        if args.credit:
            posted = await ledger.credit(acc.id, args.credit, actor=actor, note="initial credit")
            await audit.record(actor, "credit.add", f"account {acc.number}",
                               {"units": args.credit, "entry": posted.entry_id,
                                "note": "initial credit"})
        print(f"account {acc.number} created")
        return EXIT_OK

    return run_with_db(args, body)


def cmd_account_credit(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        ops = await load_operator_settings()
        acc = await accounts.get_account(args.number)
        units = parse_units_or_money(args.amount, args.money, ops.unit_price)
        if units <= 0:
            raise CliError("credit must be positive (use a negative ADJUST via the API)")
        actor = audit.cli_actor()
        posted = await ledger.credit(acc.id, units, actor=actor, note=args.note or "")
        await audit.record(actor, "credit.add", f"account {acc.number}",
                           {"units": units, "entry": posted.entry_id, "note": args.note or ""})
        shown = money.format_money(money.units_to_money(units, ops.unit_price))
        print(
            f"credited {units} units ({shown} {ops.currency}) to {acc.number};"
            f" balance {posted.balance_after}"
        )
        return EXIT_OK

    return run_with_db(args, body)


def cmd_account_show(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        ops = await load_operator_settings()
        acc = await accounts.get_account(args.number)
        data = await _account_json(acc, ops.unit_price, ops.currency)
        data["dids"] = [
            {"did": d.did, "forward_to": d.forward_to} for d in await accounts.list_dids(acc.id)
        ]
        if args.json:
            print_json(data)
            return EXIT_OK
        print(f"account   {acc.number} ({acc.name}), {acc.language}, {acc.status}")
        for label in ("balance", "reserved", "available"):
            units = data[label]
            shown = money.format_money(money.units_to_money(units, ops.unit_price))
            print(f"{label:<9} {units} units ({shown} {ops.currency})")
        print(f"caller ID {', '.join(data['caller_ids']) or '-'}")
        for d in data["dids"]:
            print(f"DID       {d['did']} -> {d['forward_to']}")
        return EXIT_OK

    return run_with_db(args, body)


def cmd_account_list(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        ops = await load_operator_settings()
        page = await accounts.list_accounts(args.search or "", args.offset, args.limit)
        rows = [await _account_json(a, ops.unit_price, ops.currency) for a in page.items]
        if args.json:
            print_json({"total": page.total, "items": rows})
            return EXIT_OK
        print(f"{'number':<12} {'name':<20} {'balance':>12} {'reserved':>10} {'available':>12}")
        for r in rows:
            print(
                f"{r['number']:<12} {r['name'][:20]:<20} {r['balance']:>12} {r['reserved']:>10}"
                f" {r['available']:>12}"
            )
        print(f"({len(rows)} of {page.total})")
        return EXIT_OK

    return run_with_db(args, body)


# --- tariffs and rating --------------------------------------------------------------------


def cmd_tariff_import(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        ops = await load_operator_settings()
        try:
            text = Path(args.file).read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
        count = await tariffs.import_csv(
            text,
            args.separator or ",",
            replace=args.replace,
            default_block=ops.default_initial_block,
            default_increment=ops.default_increment,
        )
        await audit.record(audit.cli_actor(), "tariff.import", "tariffs",
                           {"rows": count, "replace": args.replace, "file": str(args.file)})
        print(f"imported {count} tariff(s)")
        return EXIT_OK

    return run_with_db(args, body)


def cmd_tariff_export(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        text = await tariffs.export_csv(args.separator or ",")
        if args.out:
            Path(args.out).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return EXIT_OK

    return run_with_db(args, body)


def cmd_tariff_list(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        ops = await load_operator_settings()
        rows = [tariffs.to_rating(r) for r in await tariffs.list_tariffs()]
        if args.json:
            print_json(
                [
                    {
                        **{c: getattr(t, c) for c in tariffs.COLUMNS},
                        "h1_per_minute": str(money.per_minute(t.h1_rate, ops.unit_price)),
                        "h2_per_minute": str(money.per_minute(t.h2_rate, ops.unit_price)),
                    }
                    for t in rows
                ]
            )
            return EXIT_OK
        print(
            f"{'prefix':<10} {'H1 u/s':>7} {'H2 begin':>8} {'H2 end':>6} {'H2 u/s':>7}"
            f" {'block/inc':>9} {'conn':>6}  barred"
        )
        for t in rows:
            h1 = money.format_money(money.per_minute(t.h1_rate, ops.unit_price), 4)
            print(
                f"{t.prefix:<10} {t.h1_rate:>7} {t.h2_begin:>8} {t.h2_end:>6} {t.h2_rate:>7}"
                f" {t.initial_block:>4}/{t.increment:<4} {t.connection_charge:>6}"
                f"  {'yes' if t.barred else 'no'}   ({h1} {ops.currency}/min)"
            )
        return EXIT_OK

    return run_with_db(args, body)


def _parse_at(text: str | None, tz: Any) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"--at must be an ISO time like 2026-11-25T14:30, got {text!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=tz)


def cmd_rate(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        ops = await load_operator_settings()
        tz = ops.tz
        table = await tariffs.load_table()
        number = rating.normalise_number(args.number)
        tariff = table.match(number)
        rating.check_allowed(tariff)
        at = _parse_at(args.at, tz)
        if args.duration < 0:
            raise CliError("--duration must not be negative")
        segments = rating.breakdown(tariff, at, args.duration, tz)
        total = rating.cost(tariff, at, args.duration, tz)
        total_money = money.units_to_money(total, ops.unit_price)
        data = {
            "number": number,
            "tariff": tariff.prefix,
            "at": at.astimezone(tz).isoformat(),
            "duration": args.duration,
            "billed_seconds": rating.billed_seconds(tariff, args.duration),
            "segments": [
                {
                    "band": s.band.name,
                    "start": s.start.astimezone(tz).isoformat(),
                    "seconds": s.seconds,
                    "rate": s.rate,
                    "per_minute": str(money.per_minute(s.rate, ops.unit_price)),
                    "units": s.units,
                }
                for s in segments
            ],
            "connection_charge": tariff.connection_charge if total else 0,
            "units": total,
            "money": str(total_money),
            "currency": ops.currency,
        }
        if args.json:
            print_json(data)
            return EXIT_OK
        print(f"number   {number}")
        print(
            f"tariff   {tariff.prefix}  (block {tariff.initial_block} s,"
            f" increment {tariff.increment} s, connection {tariff.connection_charge} u)"
        )
        print(
            f"at       {data['at']}   duration {args.duration} s"
            f" (billed {data['billed_seconds']} s)"
        )
        for s in data["segments"]:
            pm = money.format_money(Decimal(s["per_minute"]), 4)
            print(
                f"band     {s['band']}  {s['seconds']} s x {s['rate']} u/s"
                f" ({pm} {ops.currency}/min) = {s['units']} units"
            )
        print(f"total    {total} units = {money.format_money(total_money)} {ops.currency}")
        return EXIT_OK

    return run_with_db(args, body)


# --- serve ---------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from ocs.serve import serve

    try:
        settings = load_settings()
    except ConfigError as exc:
        return fail(str(exc))
    role = "worker" if args.worker else "primary"
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                settings,
                only=set(args.only or []),
                workers=args.workers,
                role=role,
                own_process=True,
            )
        )
    return EXIT_OK


# --- parser --------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocs", description="Prepaid telephony charging platform")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("migrate", help="create or upgrade the database schema")
    p.set_defaults(func=cmd_migrate)
    p = sub.add_parser("demo", help="load the brochure's demo tariffs and accounts")
    p.set_defaults(func=cmd_demo)

    acc = sub.add_parser("account", help="accounts and credit").add_subparsers(
        dest="account_cmd", required=True, metavar="ACTION"
    )
    p = acc.add_parser("add", help="create an account")
    p.add_argument("number")
    p.add_argument("--name")
    p.add_argument("--pin")
    p.add_argument("--language", help="FR or EN (default: the operator's default language)")
    p.add_argument("--caller-id", action="append", help="repeatable")
    p.add_argument("--credit", type=_positive_int, help="initial credit in units")
    p.set_defaults(func=cmd_account_add)
    p = acc.add_parser("credit", help="add credit to an account")
    p.add_argument("number")
    p.add_argument("amount", help="units, or money with --money")
    p.add_argument("--money", action="store_true", help="amount is in the configured currency")
    p.add_argument("--note")
    p.set_defaults(func=cmd_account_credit)
    p = acc.add_parser("show", help="balance, reserved and available units")
    p.add_argument("number")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_account_show)
    p = acc.add_parser("list", help="list accounts")
    p.add_argument("--search")
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_account_list)
    from ocs.cli_ops import add_account_commands

    add_account_commands(acc)  # adjust, refund, import, export

    tar = sub.add_parser("tariff", help="tariffs").add_subparsers(
        dest="tariff_cmd", required=True, metavar="ACTION"
    )
    p = tar.add_parser("import", help="import tariffs from CSV (all or nothing)")
    p.add_argument("file")
    p.add_argument("--separator", help="column separator (default ,)")
    p.add_argument("--replace", action="store_true", help="delete prefixes not in the file")
    p.set_defaults(func=cmd_tariff_import)
    p = tar.add_parser("export", help="export tariffs as CSV")
    p.add_argument("--out")
    p.add_argument("--separator")
    p.set_defaults(func=cmd_tariff_export)
    p = tar.add_parser("list", help="list tariffs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tariff_list)

    p = sub.add_parser("rate", help="rate a call: tariff, bands, units and money")
    p.add_argument("number")
    p.add_argument("--at", help="answer time, ISO 8601 (local time zone if no offset)")
    p.add_argument("--duration", type=int, default=60, help="seconds (default 60)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_rate)

    p = sub.add_parser("serve", help="run every server part")
    p.add_argument("--only", action="append", help="run only this part (repeatable)")
    p.add_argument(
        "--workers",
        type=_positive_int,
        help="processes sharing the Diameter port (PostgreSQL; default: one per core)",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)

    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
