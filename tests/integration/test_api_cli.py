"""`ocs admin set-password` and `ocs apikey create|list|revoke` (api.cli handlers)."""

from __future__ import annotations

import argparse
import asyncio
import io
import json

import pytest

from api.cli import add_commands
from ocs import admin_auth, apikeys
from ocs.config import Settings
from ocs.db import database


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("OCS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("OCS_DATABASE_URL", settings.database_url)
    monkeypatch.delenv("OCS_CONFIG", raising=False)
    return settings


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ocs")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def in_db(settings: Settings, coro_fn):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        async with database(settings):
            return await coro_fn()

    return asyncio.run(main())


def test_set_password_from_stdin(cli_env: Settings, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    assert run(["admin", "set-password", "--password-stdin"]) == 0
    assert in_db(cli_env, lambda: admin_auth.check_password("a long password"))
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert run(["admin", "set-password", "--password-stdin"]) == 1
    assert "at least 8" in capsys.readouterr().err


def test_apikey_lifecycle(cli_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["apikey", "create", "provisioning"]) == 0
    out = capsys.readouterr()
    key = out.out.strip()
    assert key.startswith("ocs_") and "only time" in out.err
    assert in_db(cli_env, lambda: apikeys.verify_key(key)) is not None

    assert run(["apikey", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["revoked"]) for r in rows] == [("provisioning", False)]
    assert key not in json.dumps(rows)
    prefix = rows[0]["prefix"]

    assert run(["apikey", "revoke", prefix]) == 0
    assert in_db(cli_env, lambda: apikeys.verify_key(key)) is None
    assert run(["apikey", "revoke", prefix]) == 1
    assert run(["apikey", "list"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert run(["apikey", "create", " "]) == 1
