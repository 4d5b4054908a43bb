"""`ocs operator add|list|passwd|role|disable|enable` and `ocs apikey create --role`, run
through the real `ocs` console script against the test database; each change is audited."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from ocs import operators
from ocs.config import Settings
from ocs.db import database
from ocs.models import ApiKey, AuditEntry, OperatorRole


def ocs(settings: Settings, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OCS_DATA_DIR": str(settings.data_dir),
           "OCS_DATABASE_URL": settings.database_url}
    env.pop("OCS_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "ocs.cli", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=120)


def in_db(settings: Settings, fn: Any) -> Any:
    async def main() -> Any:
        async with database(settings):
            return await fn()

    return asyncio.run(main())


@pytest.fixture
def cli(settings: Settings) -> Settings:
    return settings


def test_operator_lifecycle_from_the_shell(cli: Settings) -> None:
    r = ocs(cli, "operator", "add", "alice", "--role", "admin", "--password-stdin",
            stdin="alice password 1\n")
    assert r.returncode == 0, r.stderr
    r = ocs(cli, "operator", "add", "bob", "--password-stdin", stdin="bob password 1\n")
    assert r.returncode == 0 and "bob (operator) created" in r.stdout
    r = ocs(cli, "operator", "add", "bob", "--password-stdin", stdin="bob password 1\n")
    assert r.returncode == 1 and "already exists" in r.stderr
    r = ocs(cli, "operator", "add", "Bad Name", "--password-stdin", stdin="whatever123\n")
    assert r.returncode == 1 and "a-z" in r.stderr
    r = ocs(cli, "operator", "add", "carol", "--password-stdin", stdin="short\n")
    assert r.returncode == 1 and "at least 8" in r.stderr

    r = ocs(cli, "operator", "list", "--json")
    rows = json.loads(r.stdout)
    assert [(o["name"], o["role"], o["disabled"]) for o in rows] == [
        ("alice", "admin", False), ("bob", "operator", False)]

    assert ocs(cli, "operator", "role", "bob", "readonly").returncode == 0
    r = ocs(cli, "operator", "role", "alice", "operator")
    assert r.returncode == 1 and "last enabled admin" in r.stderr
    r = ocs(cli, "operator", "disable", "alice")
    assert r.returncode == 1 and "last enabled admin" in r.stderr
    assert ocs(cli, "operator", "disable", "bob").returncode == 0
    r = ocs(cli, "operator", "list")
    assert "bob" in r.stdout and "disabled" in r.stdout
    assert ocs(cli, "operator", "enable", "bob").returncode == 0
    r = ocs(cli, "operator", "passwd", "bob", "--password-stdin", stdin="bob password 2\n")
    assert r.returncode == 0
    r = ocs(cli, "operator", "passwd", "nobody", "--password-stdin", stdin="whatever123\n")
    assert r.returncode == 1 and "no operator" in r.stderr

    async def check() -> list[tuple[str, str, str]]:
        bob = await operators.get("bob")
        assert bob.role == OperatorRole.READONLY and not bob.disabled
        assert await operators.authenticate("bob", "bob password 2") is not None
        assert await operators.authenticate("alice", "alice password 1") is not None
        return [(e.actor, e.action, e.target) for e in await AuditEntry.all().order_by("id")]

    entries = in_db(cli, check)
    assert all(actor.startswith("cli:") for actor, _, _ in entries)
    assert [(a, t) for _, a, t in entries] == [
        ("operator.create", "operator alice"), ("operator.create", "operator bob"),
        ("operator.role", "operator bob"), ("operator.disable", "operator bob"),
        ("operator.enable", "operator bob"), ("operator.password", "operator bob")]


def test_apikey_roles_from_the_shell(cli: Settings) -> None:
    r = ocs(cli, "apikey", "create", "crm", "--role", "operator", "--json")
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)
    assert created["role"] == "operator"
    assert ocs(cli, "apikey", "create", "legacy").returncode == 0  # default: admin
    r = ocs(cli, "apikey", "list", "--json")
    assert [(k["name"], k["role"]) for k in json.loads(r.stdout)] == [
        ("crm", "operator"), ("legacy", "admin")]
    assert ocs(cli, "apikey", "revoke", created["prefix"]).returncode == 0

    async def check() -> list[str]:
        assert (await ApiKey.get(name="crm")).revoked
        return [e.action for e in await AuditEntry.all().order_by("id")]

    assert in_db(cli, check) == ["apikey.create", "apikey.create", "apikey.revoke"]


def test_admin_set_password_is_the_first_admin(cli: Settings) -> None:
    r = ocs(cli, "admin", "set-password", "--password-stdin", stdin="first admin pass\n")
    assert r.returncode == 0

    async def check() -> None:
        admin = await operators.get("admin")
        assert admin.role == OperatorRole.ADMIN
        assert await operators.authenticate("admin", "first admin pass") is not None

    in_db(cli, check)
