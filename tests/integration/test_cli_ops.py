"""`ocs account adjust/refund/import/export`, `ocs voucher …`, `ocs cards …` as subprocesses."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

from ocs.config import Settings
from tests.integration import test_cli
from tests.integration.test_cli import run_ocs

demo = test_cli.demo  # the CLI tests' fixture: a database with the brochure's demo data


def test_adjust_with_the_double_dash_form(demo: Settings) -> None:
    out = run_ocs(demo, "account", "adjust", "1001", "--", "-500", "--reason", "wrong credit")
    assert "adjusted 1001 by -500 units" in out.stdout and "balance 249500" in out.stdout
    out = run_ocs(demo, "account", "adjust", "1001", "2,5", "--money", "--reason", "goodwill")
    assert "by +25000 units" in out.stdout
    bad = run_ocs(demo, "account", "adjust", "1001", "--", "-500", check=False)
    assert bad.returncode == 1 and "--reason is required" in bad.stderr
    bad = run_ocs(demo, "account", "adjust", "1001", "--", "-999999", "--reason", "x",
                  check=False)
    assert bad.returncode == 1 and "available" in bad.stderr
    shown = json.loads(run_ocs(demo, "account", "show", "1001", "--json").stdout)
    assert shown["balance"] == 274_500


def test_import_export_with_progress(demo: Settings, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("number,name,balance\n" + "".join(f"{5000 + i},N{i},{i}\n"
                                                     for i in range(300)))
    proc = run_ocs(demo, "account", "import", str(src), "--separator", ",",
                   env_extra={"OCS_PROGRESS": "1"})
    assert "imported 300 account(s)" in proc.stdout
    assert "100%" in proc.stderr and "[" in proc.stderr  # the progress bar
    bad = tmp_path / "bad.csv"
    bad.write_text("number,name\n6000,a\n6001\n")
    proc = run_ocs(demo, "account", "import", str(bad), "--separator", ",", check=False)
    assert proc.returncode == 1 and "nothing imported: line 3" in proc.stderr
    out = tmp_path / "out.csv"
    run_ocs(demo, "account", "export", "--out", str(out), "--separator", ",")
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["number", "name", "language", "status", "caller_ids", "balance"]
    assert len(rows) == 1 + 2 + 300 and not any(r[0] == "6000" for r in rows)


def test_vouchers_and_cards(demo: Settings, tmp_path: Path) -> None:
    codes = tmp_path / "codes.csv"
    out = run_ocs(demo, "voucher", "generate", "--count", "3", "--value", "10", "--money",
                  "--out", str(codes), "--separator", ",")
    assert "3 vouchers of 100000 units" in out.stdout
    assert oct(codes.stat().st_mode & 0o777) == "0o600"
    again = run_ocs(demo, "voucher", "generate", "--count", "1", "--value", "1", "--out",
                    str(codes), check=False)
    assert again.returncode == 1 and "exists" in again.stderr
    rows = list(csv.reader(codes.open()))
    out = run_ocs(demo, "voucher", "redeem", rows[1][1], "1002")
    assert "balance 350000" in out.stdout
    used = run_ocs(demo, "voucher", "redeem", rows[1][1], "1002", check=False)
    assert used.returncode == 1 and "already been used" in used.stderr
    listed = json.loads(run_ocs(demo, "voucher", "list", "--json").stdout)
    assert (listed[0]["used"], listed[0]["unused"]) == (1, 2)
    assert "2 unused voucher(s) cancelled" in run_ocs(demo, "voucher", "void",
                                                      str(listed[0]["id"])).stdout
    pins = tmp_path / "pins.csv"
    out = run_ocs(demo, "cards", "generate", "--count", "4", "--credit", "5", "--money",
                  "--first", "7000", "--out", str(pins), "--separator", ",")
    assert "4 cards 7000..7003" in out.stdout
    cards = list(csv.reader(pins.open()))
    assert len(cards) == 5 and cards[1][0] == "7000" and len(cards[1][1]) == 8


def test_refund_a_call(demo: Settings) -> None:
    from ocs import db as ocs_db
    from tests.calls import charged_call

    async def make_call() -> int:
        await ocs_db.init_db(demo)
        try:
            row = await charged_call("1001", "0141587070", 3)  # the demo's DEFAULT: 200/s
            assert row.cost == 600
            return row.id
        finally:
            await ocs_db.close_db()

    cdr_id = asyncio.run(make_call())
    out = run_ocs(demo, "account", "refund", str(cdr_id), "--reason", "echo")
    assert "refunded 600 units" in out.stdout
    bad = run_ocs(demo, "account", "refund", str(cdr_id), "--reason", "echo", check=False)
    assert bad.returncode == 1 and "already been refunded" in bad.stderr
