"""`ocs billing …` and `ocs cdr …`: start a billing run, list statements, list/export CDRs.

Wired into `ocs.cli` through COMMAND_MODULES (`add_commands(subparsers)`). Handlers return an
exit code; progress goes to stderr so stdout stays machine-readable.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from datetime import UTC
from pathlib import Path
from typing import Any

from ocs import audit, billing, cdr
from ocs.config import Settings
from ocs.settings_store import load_operator_settings


def add_commands(subparsers: Any) -> None:
    bil = subparsers.add_parser("billing", help="billing runs (statements)").add_subparsers(
        dest="billing_cmd", required=True, metavar="ACTION"
    )
    p = bil.add_parser("run", help="close the period and write BILLING_YYYYMMDD_HHMMSS.csv")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_billing_run)
    p = bil.add_parser("list", help="past statements (newest first)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_billing_list)

    cd = subparsers.add_parser("cdr", help="call detail records").add_subparsers(
        dest="cdr_cmd", required=True, metavar="ACTION"
    )
    p = cd.add_parser("list", help="list CDRs, newest first")
    _filters(p)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--before", type=int, help="page cursor: CDRs older than this id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cdr_list)
    p = cd.add_parser("export", help="CDRs as CSV (configured separator), oldest first")
    _filters(p)
    p.add_argument("--out", help="file to write (default: stdout)")
    p.set_defaults(func=cmd_cdr_export)


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="since", help="answered at or after (local date/time)")
    p.add_argument("--to", dest="until", help="answered before (a bare date: end of that day)")
    p.add_argument("--user", default="", help="account number")
    p.add_argument("--prefix", default="", help="dialled number prefix")


def _run(args: argparse.Namespace, body: Any) -> int:
    from ocs.cli import run_with_db

    return run_with_db(args, body)


async def _filter_of(args: argparse.Namespace) -> cdr.CdrFilter:
    from ocs.cli import CliError

    tz = (await load_operator_settings()).tz
    try:
        since = cdr.parse_local_date(args.since, tz) if args.since else None
        until = cdr.parse_local_date(args.until, tz, end=True) if args.until else None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return cdr.CdrFilter(since=since, until=until, user=args.user, prefix=args.prefix)


def cmd_billing_run(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        last = 0.0

        def progress(p: billing.BillingProgress) -> None:
            nonlocal last
            now = time.monotonic()
            if args.quiet or (not p.finished and now - last < 0.2):
                return
            last = now
            end = "\n" if p.finished else ""
            print(f"\rbilling: {p.accounts} accounts, {p.lines} lines", end=end,
                  file=sys.stderr, flush=True)

        try:
            result = await billing.run_billing(settings, progress=progress)
        except billing.BillingError as exc:
            from ocs.cli import CliError

            raise CliError(str(exc)) from None
        await audit.record(audit.cli_actor(), "billing.run", f"billing run {result.run_id}",
                           {"file": result.filename, "accounts": result.accounts})
        if args.json:
            print(json.dumps(_result_json(result), indent=2))
        else:
            print(result.path)
        return 0

    return _run(args, body)


def _result_json(r: billing.BillingResult) -> dict[str, Any]:
    return {
        "run_id": r.run_id,
        "filename": r.filename,
        "path": str(r.path),
        "first_ledger_id": r.first_ledger_id,
        "last_ledger_id": r.last_ledger_id,
        "accounts": r.accounts,
        "lines": r.lines,
    }


def run_json(run: Any) -> dict[str, Any]:
    return {
        "id": run.id,
        "filename": run.filename,
        "status": run.status,
        "started_at": run.started_at.astimezone(UTC).isoformat(),
        "finished_at": run.finished_at.astimezone(UTC).isoformat() if run.finished_at else None,
        "last_ledger_id": run.last_ledger_id,
        "accounts": run.accounts,
        "lines": run.lines,
    }


def cmd_billing_list(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        runs = await billing.list_runs(args.limit)
        if args.json:
            print(json.dumps([run_json(r) for r in runs], indent=2))
            return 0
        folder = billing.billing_dir(settings)
        for r in runs:
            where = folder / r.filename if r.status == billing.DONE else "(" + r.status + ")"
            print(f"{r.id:>5}  {r.filename:<32} {r.accounts:>7} accounts {r.lines:>9} lines"
                  f"  {where}")
        return 0

    return _run(args, body)


def cmd_cdr_list(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        ops = await load_operator_settings()
        page = await cdr.list_cdrs(await _filter_of(args), limit=args.limit, before=args.before)
        if args.json:
            print(json.dumps(
                {"items": [cdr.record_json(r, ops.tz, ops.unit_price) for r in page.items],
                 "older": page.older},
                indent=2,
            ))
            return 0
        dec = cdr.decimal_separator(ops.csv_separator)
        rows = [[*cdr.CDR_COLUMNS, ops.currency]]
        rows += [cdr.csv_fields(r, ops.tz, ops.unit_price, dec) for r in page.items]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if page.older is not None:
            print(f"(more: --before {page.older})", file=sys.stderr)
        return 0

    return _run(args, body)


def cmd_cdr_export(args: argparse.Namespace) -> int:
    async def body(settings: Settings) -> int:
        flt = await _filter_of(args)
        if not args.out or args.out == "-":
            async for chunk in cdr.export_csv_with_settings(flt):
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return 0
        target = Path(args.out)
        temp = target.with_name(f".{target.name}.partial")
        try:
            with open(temp, "wb") as fh:
                async for chunk in cdr.export_csv_with_settings(flt):
                    fh.write(chunk)
            os.replace(temp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        print(target, file=sys.stderr)
        return 0

    return _run(args, body)
