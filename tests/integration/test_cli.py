"""The `ocs` command line, run as a real subprocess against a real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ocs.config import Settings


def run_ocs(settings: Settings, *args: str, check: bool = True,
            env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OCS_DATA_DIR": str(settings.data_dir),
        "OCS_DATABASE_URL": settings.database_url,
        **(env_extra or {}),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "ocs.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"ocs {' '.join(args)} failed: {proc.stderr}")
    return proc


@pytest.fixture
def demo(settings: Settings) -> Settings:
    run_ocs(settings, "demo")
    return settings


@pytest.mark.parametrize(("duration", "units"), [(3, 600), (13, 2600), (113, 22600), (65, 13000)])
def test_rate_reproduces_brochure_figures(demo: Settings, duration: int, units: int) -> None:
    out = run_ocs(demo, "rate", "5173", "--duration", str(duration), "--json").stdout
    data = json.loads(out)
    assert data["tariff"] == "DEFAULT"
    assert data["units"] == units
    assert data["segments"][0]["per_minute"] == "1.2000"
    text = run_ocs(demo, "rate", "5173", "--duration", str(duration)).stdout
    assert f"total    {units} units" in text
    assert "1,2000 Euros/min" in text


def test_rate_prefixes_and_bands(demo: Settings, tmp_path: Path) -> None:
    assert json.loads(run_ocs(demo, "rate", "+38 123", "--json").stdout)["tariff"] == "38"
    assert (
        json.loads(run_ocs(demo, "rate", "42999", "--duration", "10", "--json").stdout)["units"]
        == 2500
    )
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("prefix,h1_rate,h2_begin,h2_end,h2_rate\n44,100,20,8,50\n")
    run_ocs(demo, "tariff", "import", str(csv_file))
    data = json.loads(
        run_ocs(
            demo, "rate", "44123", "--at", "2026-11-25T19:59:30", "--duration", "60", "--json"
        ).stdout
    )
    assert [(s["band"], s["seconds"]) for s in data["segments"]] == [("H1", 30), ("H2", 30)]
    assert data["units"] == 30 * 100 + 30 * 50


def test_accounts_and_credit(demo: Settings) -> None:
    shown = json.loads(run_ocs(demo, "account", "show", "1001", "--json").stdout)
    assert (shown["balance"], shown["reserved"], shown["available"]) == (250000, 0, 250000)
    assert shown["caller_ids"] == ["0123456789", "5173"]
    assert len(shown["dids"]) == 4
    run_ocs(demo, "account", "add", "2001", "--pin", "9876", "--caller-id", "0600000001")
    out = run_ocs(demo, "account", "credit", "2001", "12,5", "--money").stdout
    assert "125000 units" in out
    text = run_ocs(demo, "account", "show", "2001").stdout
    assert "available 125000 units (12,50 Euros)" in text
    listing = json.loads(run_ocs(demo, "account", "list", "--json").stdout)
    assert [a["number"] for a in listing["items"]] == ["1001", "1002", "2001"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("account", "credit", "4242", "100"), "unknown account"),
        (("account", "credit", "1001", "-100"), "positive"),
        (("account", "credit", "1001", "abc"), "not a whole number"),
        (("account", "add", "1001"), "already exists"),
        (("account", "add", "12x"), "digits"),
        (("account", "add", "3001", "--pin", "12"), "PIN"),
        (("rate", "abc"), "not a dialable number"),
        (("rate", "5173", "--at", "yesterday"), "ISO"),
        (("tariff", "import", "/nonexistent.csv"), "cannot read"),
    ],
)
def test_bad_input_is_a_clear_error(demo: Settings, args: tuple[str, ...], message: str) -> None:
    proc = run_ocs(demo, *args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_malformed_tariff_csv_imports_nothing(demo: Settings, tmp_path: Path) -> None:
    before = run_ocs(demo, "tariff", "export").stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("prefix;h1_rate\n33;100\n34;lots\n35;90\n")
    proc = run_ocs(demo, "tariff", "import", str(bad), "--separator", ";", check=False)
    assert proc.returncode == 1
    assert "line 3" in proc.stderr and "h1_rate" in proc.stderr
    assert run_ocs(demo, "tariff", "export").stdout == before


def test_tariff_export_import_round_trip(demo: Settings, tmp_path: Path) -> None:
    exported = run_ocs(demo, "tariff", "export", "--separator", ";").stdout
    assert exported.splitlines()[1].startswith("DEFAULT;200;")
    path = tmp_path / "t.csv"
    path.write_text(exported)
    assert "imported 3" in run_ocs(demo, "tariff", "import", str(path), "--separator", ";").stdout
    assert run_ocs(demo, "tariff", "export", "--separator", ";").stdout == exported
    tl = json.loads(run_ocs(demo, "tariff", "list", "--json").stdout)
    assert [(t["prefix"], t["h1_per_minute"]) for t in tl] == [
        ("DEFAULT", "1.2000"),
        ("38", "1.0800"),
        ("42", "1.5000"),
    ]


def test_demo_is_idempotent(demo: Settings) -> None:
    assert "already present" in run_ocs(demo, "demo").stdout


def test_session_list_empty(demo: Settings) -> None:
    assert json.loads(run_ocs(demo, "session", "list", "--json").stdout) == []
    proc = run_ocs(demo, "session", "kill", "nope", check=False)
    assert proc.returncode == 1 and "no running" in proc.stderr
