"""Upgrading a database that holds data: from the first release's schema (0001) to the
latest, on SQLite and PostgreSQL. Columns added to tables with rows get their defaults, a
session left open keeps its money and is due for the Tcc sweep, and the charging state is
kept."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
from tortoise import Tortoise
from tortoise.migrations.api import migrate as run_migrate

from ocs import db
from ocs.config import Settings
from tests.conftest import PG_DSN, port_open, unavailable, use_postgres

ROWS = [
    "INSERT INTO account (number, name, language, status, balance, reserved, created_at,"
    " updated_at) VALUES ('1001', 'a', 'FR', 'active', 5000, 1200, {now}, {now})",
    "INSERT INTO ledger_entry (account_id, kind, amount, balance_after, reference, actor,"
    " note, dialed, duration, created_at) VALUES (1, 'CREDIT', 5000, 5000, '', 'x', '', '', 0,"
    " {now})",
    # an open call, and one the crashed orphan sweep had claimed (expires_at NULL)
    "INSERT INTO credit_session (session_id, account_id, state, peer, calling, called,"
    " tariff_prefix, rate, reserved, used_seconds, cost, last_request_number, last_answer,"
    " started_at, expires_at, updated_at, end_reason) VALUES ('open-1', 1, 'open', 'p', '', "
    "'33', 'DEFAULT', 200, 600, 0, 0, 0, '{{\"services\": []}}', {now}, {now}, {now}, '')",
    "INSERT INTO credit_session (session_id, account_id, state, peer, calling, called,"
    " tariff_prefix, rate, reserved, used_seconds, cost, last_request_number, last_answer,"
    " started_at, expires_at, updated_at, end_reason) VALUES ('claimed-1', 1, 'open', 'p', '',"
    " '33', 'DEFAULT', 200, 600, 0, 0, 0, '{{}}', {now}, NULL, {now}, '')",
    "INSERT INTO credit_session (session_id, account_id, state, peer, calling, called,"
    " tariff_prefix, rate, reserved, used_seconds, cost, last_request_number, last_answer,"
    " started_at, expires_at, updated_at, end_reason) VALUES ('done-1', 1, 'closed', 'p', '',"
    " '33', 'DEFAULT', 200, 0, 3, 600, 1, '{{}}', {now}, {now}, {now}, 'NORMAL')",
]


async def test_upgrade_from_the_first_schema_keeps_the_data(tmp_path: Path) -> None:
    if use_postgres():
        if not port_open("127.0.0.1", 5432):
            unavailable("PostgreSQL on 127.0.0.1:5432")
        name = f"ocs_upgrade_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(PG_DSN)
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgres://") + "/" + name
        now = "now()"
    else:
        url = f"sqlite://{tmp_path / 'ocs.sqlite3'}"
        now = "'2026-01-01 00:00:00+00:00'"
    settings = Settings(data_dir=tmp_path, database_url=url)
    try:
        await run_migrate(config=db.tortoise_config(url), target="ocs.0001_initial")
        conn = Tortoise.get_connection("default")
        for sql in ROWS:
            await conn.execute_script(sql.format(now=now))
        await Tortoise.close_connections()

        applied = await db.migrate(settings)
        assert applied and applied[0] == "ocs.0002_answers_kill"

        await Tortoise.init(config=db.tortoise_config(url))
        conn = Tortoise.get_connection("default")
        _, rows = await conn.execute_query(
            "SELECT session_id, killed, expires_at IS NULL, charging_state FROM credit_session"
            " ORDER BY session_id"
        )
        got = {r[0]: (bool(r[1]), bool(r[2]), r[3]) for r in map(tuple, rows)}
        assert got == {
            "claimed-1": (False, False, "{}"),  # made due: the sweep settles it
            "done-1": (False, True, "{}"),  # closed: no expiry any more
            "open-1": (False, False, '{"services": []}'),
        }
        _, rows = await conn.execute_query(
            "SELECT balance, reserved, ivr_pin_required FROM account"
        )
        assert [(r[0], r[1], bool(r[2])) for r in map(tuple, rows)] == [(5000, 1200, False)]
        # the upgrade keeps the indexes queries rely on (a SQLite table rebuild loses them)
        if use_postgres():
            sql = "SELECT indexname FROM pg_indexes WHERE tablename IN ('cdr', 'credit_session')"
        else:
            sql = "SELECT name FROM sqlite_master WHERE type = 'index'"
        _, rows = await conn.execute_query(sql)
        names = {next(iter(r)) for r in rows}
        assert {
            "idx_cdr_session_870471",
            "idx_cdr_account_835737",
            "idx_cdr_started_7d3a5d",
        } <= names
        assert "idx_cdr_dialed_b11a98" not in names
        assert any("expires" in n for n in names)
        await Tortoise.close_connections()
    finally:
        await Tortoise.close_connections()
        if use_postgres():
            await asyncio.sleep(0)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
