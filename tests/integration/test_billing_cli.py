"""`ocs billing run|list` and `ocs cdr list|export`, run in-process like the console script."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import pytest

from ocs import accounts, ledger
from ocs.cli_billing import add_commands
from ocs.config import Settings
from ocs.db import database
from tests.integration.test_billing import brochure_history
from tests.integration.test_cdr import BROCHURE_CDRS


def ocs(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ocs")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("OCS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("OCS_DATABASE_URL", settings.database_url)

    async def seed() -> None:
        async with database(settings):
            await brochure_history(settings)

    asyncio.run(seed())
    return settings


def test_billing_run_and_list(env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert ocs("billing", "run") == 0
    out, err = capsys.readouterr()
    path = out.strip()
    assert path.startswith(str(env.data_dir / "billing" / "BILLING_"))
    assert "billing: 2 accounts, 6 lines" in err
    text = Path(path).read_text(encoding="utf-8")
    assert "20120403_151812:REPORT:::203800:20,38" in text
    assert ocs("billing", "list", "--json") == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["filename"] for r in runs][1] == "BILLING_20120403_151812.csv"
    assert runs[0]["lines"] == 6 and runs[0]["status"] == "done"
    assert ocs("billing", "run", "--quiet", "--json") == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["lines"] == 2 and err == ""  # two REPORT lines, nothing new


def test_cdr_export_and_list(env: Settings, capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    out_file = tmp_path / "cdrs.csv"
    assert ocs("cdr", "export", "--out", str(out_file)) == 0
    assert out_file.read_text() == BROCHURE_CDRS
    capsys.readouterr()
    assert ocs("cdr", "export", "--user", "1001", "--prefix", "30") == 0
    assert capsys.readouterr().out == BROCHURE_CDRS.splitlines(keepends=True)[0] + (
        "20120412_103222:1334219473:1:65:13000:1001:3000:A12041210311334803:1,3\n"
    )
    assert ocs("cdr", "list", "--from", "2012-04-12", "--to", "2012-04-12", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert [d["date"] for d in doc["items"]] == [
        "20120412_103222", "20120412_103209", "20120412_102901"
    ]
    assert ocs("cdr", "list", "--limit", "1") == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split()[:3] == ["Date", "TimeStamp", "ConnectDelay"]
    assert "A12041210311334803" in out and "--before" in err


def test_cdr_bad_date(env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert ocs("cdr", "list", "--from", "yesterday") == 1
    assert "not a date" in capsys.readouterr().err


def test_billing_run_on_empty_database(settings: Settings, monkeypatch, capsys) -> None:
    monkeypatch.setenv("OCS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("OCS_DATABASE_URL", settings.database_url)
    assert ocs("billing", "run", "--json") == 0
    assert json.loads(capsys.readouterr().out)["accounts"] == 0

    async def later() -> None:
        async with database(settings):
            aid = (await accounts.create_account("1")).id
            await ledger.credit(aid, 1, actor="t")

    asyncio.run(later())
    assert ocs("billing", "run", "--json") == 0
    assert json.loads(capsys.readouterr().out)["lines"] == 1
