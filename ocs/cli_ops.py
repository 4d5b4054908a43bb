"""CLI for operator tools: adjustments, refunds, accounts CSV, vouchers, calling cards.

    ocs account adjust NUMBER -- -500 --reason "wrong credit"   (or: adjust NUMBER -500 ...)
    ocs account refund CDR_ID --reason "bad line" [--units N]
    ocs account import FILE [--separator ;]     (progress bar on stderr; all or nothing)
    ocs account export [--out FILE] [--separator ;]
    ocs voucher generate --count N (--units U | --money M) [--expires YYYY-MM-DD] --out FILE
    ocs voucher redeem CODE ACCOUNT ; ocs voucher list [--json] ; ocs voucher void BATCH
    ocs cards generate --count N [--credit U | --credit M --money] [--pin-length 8]
                       [--first NUMBER] --out FILE
Every action goes through its domain function with actor "cli".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from ocs import account_csv, adjustments, cards, money, vouchers
from ocs.account_bulk import BulkConflict, Progress
from ocs.cli import EXIT_OK, CliError, parse_units_or_money, print_json, run_with_db
from ocs.config import Settings
from ocs.settings_store import load_operator_settings

ACTOR = "cli"


def _write_new(path: str, text: str) -> None:
    """Codes and PINs exist in clear only in this file: create it, never overwrite, 0600."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CliError(f"{path} exists; choose a new file (codes are written once)") from None
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


# --- account adjust / refund ------------------------------------------------------------------


def _late_options(args: argparse.Namespace) -> None:
    """`adjust NUMBER -- -500 --reason x`: after `--` argparse keeps `--reason x` as
    positionals; read them here so both spellings work."""
    extra = list(args.extra or [])
    if not extra:
        return
    late = argparse.ArgumentParser(prog="ocs account adjust", add_help=False)
    late.add_argument("--reason")
    late.add_argument("--money", action="store_true")
    found, rest = late.parse_known_args(extra)
    if rest:
        raise CliError(f"unexpected arguments: {' '.join(rest)}")
    if found.reason is not None:
        args.reason = found.reason
    args.money = args.money or found.money


def cmd_adjust(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        _late_options(args)
        if not args.reason:
            raise CliError("--reason is required")
        ops = await load_operator_settings()
        units = parse_units_or_money(args.amount, args.money, ops.unit_price)
        try:
            done = await adjustments.adjust(args.number, units, reason=args.reason,
                                            actor=ACTOR)
        except adjustments.AdjustmentError as exc:
            raise CliError(str(exc)) from None
        shown = money.display(done.units, ops.unit_price, ops.currency_code)
        print(f"adjusted {done.account} by {done.units:+d} units ({shown} {ops.currency});"
              f" balance {done.balance_after}")
        return EXIT_OK

    return run_with_db(args, body)


def cmd_refund(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        ops = await load_operator_settings()
        try:
            done = await adjustments.refund_call(args.cdr_id, reason=args.reason,
                                                 units=args.units, actor=ACTOR)
        except (LookupError, adjustments.AdjustmentError) as exc:
            raise CliError(str(exc).strip("'\"")) from None
        shown = money.display(done.units, ops.unit_price, ops.currency_code)
        print(f"refunded {done.units} units ({shown} {ops.currency}) to {done.account};"
              f" balance {done.balance_after}")
        return EXIT_OK

    return run_with_db(args, body)


# --- accounts CSV ---------------------------------------------------------------------------


def render_bar(progress: Progress, width: int = 30) -> str:
    filled = width * progress.percent // 100
    return (f"\r{progress.phase:<17} [{'#' * filled}{'.' * (width - filled)}]"
            f" {progress.percent:3d}% {progress.done}/{progress.total}")


async def _with_bar(work: Any, progress: Progress, stream: TextIO) -> Any:
    task = asyncio.ensure_future(work)
    show = stream.isatty() or os.environ.get("OCS_PROGRESS") == "1"
    while not task.done():
        if show:
            stream.write(render_bar(progress))
            stream.flush()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), 0.2)
    if show:
        stream.write(render_bar(progress) + "\n")
    return task.result()


def cmd_import(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        ops = await load_operator_settings()
        try:
            text = Path(args.file).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read {args.file}: {exc}") from None
        sep = args.separator or ops.csv_separator
        progress = Progress(total=max(1, text.count("\n")))
        try:
            count = await _with_bar(
                account_csv.import_csv(text, "\t" if sep == "\\t" else sep, actor=ACTOR,
                                       default_language=ops.default_language,
                                       progress=progress),
                progress, sys.stderr)
        except (account_csv.AccountCsvError, BulkConflict) as exc:
            raise CliError(f"nothing imported: {exc}") from None
        print(f"imported {count} account(s)")
        return EXIT_OK

    return run_with_db(args, body)


def cmd_export(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        ops = await load_operator_settings()
        sep = args.separator or ops.csv_separator
        out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
        try:
            async for chunk in account_csv.export_csv("\t" if sep == "\\t" else sep):
                out.write(chunk)
        finally:
            if args.out:
                out.close()
        return EXIT_OK

    return run_with_db(args, body)


# --- vouchers ---------------------------------------------------------------------------------


def _expiry(text: str | None, tz: Any) -> datetime | None:
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise CliError(f"--expires must be a date YYYY-MM-DD, got {text!r}") from None
    return (day + timedelta(days=1)).replace(tzinfo=tz).astimezone(UTC)


def cmd_voucher_generate(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        ops = await load_operator_settings()
        if Path(args.out).exists():
            raise CliError(f"{args.out} exists; choose a new file (codes are written once)")
        value = parse_units_or_money(args.value, args.money, ops.unit_price)
        try:
            gen = await vouchers.generate_batch(args.count, value, actor=ACTOR,
                                                expires_at=_expiry(args.expires, ops.tz),
                                                label=args.label or "")
        except vouchers.BatchError as exc:
            raise CliError(str(exc)) from None
        _write_new(args.out, gen.csv(args.separator or ops.csv_separator,
                                     unit_price=ops.unit_price, currency=ops.currency))
        print(f"batch {gen.batch.id}: {gen.batch.count} vouchers of {value} units written to"
              f" {args.out} (the only copy of the codes)")
        return EXIT_OK

    return run_with_db(args, body)


def cmd_voucher_redeem(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        try:
            got = await vouchers.redeem(args.code, args.account, actor=ACTOR)
        except vouchers.VoucherError as exc:
            raise CliError(str(exc)) from None
        print(f"voucher {got.serial}: {got.units} units to {got.account};"
              f" balance {got.balance_after}")
        return EXIT_OK

    return run_with_db(args, body)


def cmd_voucher_list(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        rows = [
            {"id": s.batch.id, "label": s.batch.label, "units": s.batch.value,
             "count": s.batch.count, "used": s.used, "unused": s.unused,
             "expired": s.expired, "voided": s.voided, "state": s.state,
             "expires_at": s.batch.expires_at.isoformat() if s.batch.expires_at else None}
            for s in await vouchers.list_batches()
        ]
        if args.json:
            print_json(rows)
            return EXIT_OK
        print(f"{'batch':>5} {'units':>9} {'used':>6} {'unused':>6} {'expired':>7}"
              f" {'voided':>6}  state      label")
        for r in rows:
            print(f"{r['id']:>5} {r['units']:>9} {r['used']:>6} {r['unused']:>6}"
                  f" {r['expired']:>7} {r['voided']:>6}  {r['state']:<10} {r['label']}")
        return EXIT_OK

    return run_with_db(args, body)


def cmd_voucher_void(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        try:
            n = await vouchers.void_batch(args.batch, actor=ACTOR)
        except (LookupError, vouchers.BatchError) as exc:
            raise CliError(str(exc).strip("'\"")) from None
        print(f"batch {args.batch} voided: {n} unused voucher(s) cancelled")
        return EXIT_OK

    return run_with_db(args, body)


# --- calling cards ----------------------------------------------------------------------------


def cmd_cards_generate(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        ops = await load_operator_settings()
        if Path(args.out).exists():
            raise CliError(f"{args.out} exists; choose a new file (PINs are written once)")
        credit = parse_units_or_money(args.credit, args.money, ops.unit_price)
        progress = Progress(total=args.count)
        try:
            gen = await _with_bar(
                cards.generate_cards(args.count, initial_credit=credit, actor=ACTOR,
                                     pin_length=args.pin_length, first_number=args.first,
                                     language=ops.default_language, label=args.label or "",
                                     progress=progress),
                progress, sys.stderr)
        except cards.CardError as exc:
            raise CliError(str(exc)) from None
        _write_new(args.out, gen.csv(args.separator or ops.csv_separator))
        print(f"{gen.batch.count} cards {gen.batch.first_number}..{gen.batch.last_number}"
              f" written to {args.out} (the only copy of the PINs)")
        return EXIT_OK

    return run_with_db(args, body)


# --- parsers ----------------------------------------------------------------------------------


def add_account_commands(acc: Any) -> None:
    """Sub-commands of `ocs account` (called by ocs.cli.build_parser)."""
    p = acc.add_parser("adjust", help="correct a balance (ADJUST entry, reason required)",
                       description="Negative amounts debit: ocs account adjust 1001 -- -500"
                                   " --reason 'wrong credit'")
    p.add_argument("number")
    p.add_argument("amount", help="signed units, or money with --money")
    p.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--reason", help="why (required; shown on the statement)")
    p.add_argument("--money", action="store_true", help="amount is in the configured currency")
    p.set_defaults(func=cmd_adjust)
    p = acc.add_parser("refund", help="refund a call from its CDR (REFUND entry)")
    p.add_argument("cdr_id", type=int)
    p.add_argument("--reason", required=True)
    p.add_argument("--units", type=int, help="part of the cost (default: all that is left)")
    p.set_defaults(func=cmd_refund)
    p = acc.add_parser("import", help="create accounts from CSV (all or nothing)")
    p.add_argument("file")
    p.add_argument("--separator", help="column separator (default: the configured one)")
    p.set_defaults(func=cmd_import)
    p = acc.add_parser("export", help="all accounts as CSV (no PINs)")
    p.add_argument("--out")
    p.add_argument("--separator")
    p.set_defaults(func=cmd_export)


def add_commands(subparsers: Any) -> None:
    vou = subparsers.add_parser("voucher", help="prepaid vouchers").add_subparsers(
        dest="voucher_cmd", required=True, metavar="ACTION")
    p = vou.add_parser("generate", help="a batch of vouchers; codes written once to --out")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--value", required=True, help="units, or money with --money")
    p.add_argument("--money", action="store_true")
    p.add_argument("--expires", help="last valid day, YYYY-MM-DD (operator time zone)")
    p.add_argument("--label")
    p.add_argument("--out", required=True, help="new CSV file for printing")
    p.add_argument("--separator")
    p.set_defaults(func=cmd_voucher_generate)
    p = vou.add_parser("redeem", help="credit an account with a voucher")
    p.add_argument("code")
    p.add_argument("account")
    p.set_defaults(func=cmd_voucher_redeem)
    p = vou.add_parser("list", help="batches with used / unused / expired counts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_voucher_list)
    p = vou.add_parser("void", help="cancel a batch's unused vouchers")
    p.add_argument("batch", type=int)
    p.set_defaults(func=cmd_voucher_void)

    crd = subparsers.add_parser("cards", help="calling-card batches").add_subparsers(
        dest="cards_cmd", required=True, metavar="ACTION")
    p = crd.add_parser("generate", help="N accounts with unique PINs; PINs written once")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--credit", default="0", help="initial credit: units, or money with --money")
    p.add_argument("--money", action="store_true")
    p.add_argument("--pin-length", type=int, default=8)
    p.add_argument("--first", help="first account number (default: after the highest)")
    p.add_argument("--label")
    p.add_argument("--out", required=True)
    p.add_argument("--separator")
    p.set_defaults(func=cmd_cards_generate)


__all__ = ["add_account_commands", "add_commands"]
