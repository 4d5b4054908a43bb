"""Migration 0003: the single admin password of earlier versions becomes operator "admin",
on SQLite and on PostgreSQL; API keys made before roles keep full access."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tortoise import Tortoise
from tortoise.migrations.api import migrate as run_migrate

from ocs import admin_auth, apikeys, db, operators
from ocs.config import Settings, load_settings
from ocs.models import ApiKey, Operator, OperatorRole, Setting
from tests.conftest import PG_DSN, _pg_admin, port_open, unavailable, use_postgres


@pytest.fixture
async def fresh(tmp_path: Path) -> AsyncIterator[Settings]:
    """An empty database (not the migrated test template)."""
    if use_postgres():
        if not port_open("127.0.0.1", 5432):
            unavailable("PostgreSQL on 127.0.0.1:5432")
        name = f"ocs_mig_{uuid.uuid4().hex[:10]}"
        await _pg_admin(f'CREATE DATABASE "{name}"')
        base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgres://")
        url = f"{base}/{name}"
    else:
        url = f"sqlite://{tmp_path / 'ocs.sqlite3'}"
    yield load_settings({"OCS_DATA_DIR": str(tmp_path), "OCS_DATABASE_URL": url})
    if use_postgres():
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_old_admin_password_becomes_operator_admin(fresh: Settings) -> None:
    config = db.tortoise_config(fresh.database_url)
    await run_migrate(config=config, target="ocs.0001_initial")
    await Tortoise.close_connections()
    record = admin_auth.hash_password("the old admin password")
    await db.init_db(fresh)
    try:
        # What a database of the single-password version holds.
        conn = db.connection()
        dialect = conn.capabilities.dialect
        ph = ("$1", "$2") if dialect == "postgres" else ("?", "?")
        import json

        await conn.execute_query(
            f'INSERT INTO "setting" ("key", "value") VALUES ({ph[0]}, {ph[1]})',
            ["admin_password", json.dumps(record)],
        )
        await conn.execute_query(
            'INSERT INTO "api_key" ("name", "prefix", "key_hash", "created_at", "revoked") '
            "VALUES ('old', 'abcd1234', 'x', CURRENT_TIMESTAMP, FALSE)"
        )
    finally:
        await db.close_db()

    assert await db.migrate(fresh) != []
    await db.init_db(fresh)
    try:
        admin = await Operator.get(name="admin")
        assert admin.role == OperatorRole.ADMIN and not admin.disabled
        assert admin.password == record
        assert await admin_auth.check_password("the old admin password")
        assert await operators.authenticate("admin", "the old admin password") is not None
        assert not await Setting.filter(key="admin_password").exists()
        old_key = await ApiKey.get(prefix="abcd1234")
        assert old_key.role == OperatorRole.ADMIN  # keys made before roles keep full access
        new = await apikeys.create_key("new", "readonly")
        assert new.record.role == OperatorRole.READONLY
    finally:
        await db.close_db()


async def test_fresh_database_has_no_operator(fresh: Settings) -> None:
    await db.migrate(fresh)
    await db.init_db(fresh)
    try:
        assert not await operators.any_exist()
        assert not await admin_auth.has_password()
    finally:
        await db.close_db()
