"""Shared fixtures: a migrated database per test, on SQLite or PostgreSQL.

`OCS_TEST_DB=postgres` runs the database tests against the real PostgreSQL server
(127.0.0.1:5432, trust auth; override with OCS_TEST_PG_DSN). Each pytest run creates its own
database, migrates it once, and empties the tables between tests. SQLite tests copy a
migrated template file. Outside CI a missing PostgreSQL/Mosquitto skips; under CI=true it fails.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ocs import db as ocs_db
from ocs.config import Settings, load_settings

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_DSN = os.environ.get("OCS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
DATABASE_URL = pytest.StashKey[str]()
TABLES = (
    "cc_answer",
    "voucher",
    "voucher_batch",
    "card_batch",
    "dashboard_day",
    "ivr_failure",
    "ivr_lock",
    "ivr_log",
    "statement_balance",
    "billing_run",
    "cdr",
    "credit_session",
    "ledger_entry",
    "did_mapping",
    "caller_id",
    "tariff",
    "setting",
    "api_key",
    "operator",
    "audit_entry",
    "login_throttle",
    "account",
)


def unavailable(what: str) -> None:
    """Skip locally, fail under CI: a missing service must not pass silently there."""
    if IN_CI:
        pytest.fail(f"{what} is required under CI but is not available")
    pytest.skip(f"{what} not available")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def use_postgres() -> bool:
    return os.environ.get("OCS_TEST_DB", "sqlite").lower() in {"postgres", "postgresql", "pg"}


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this pytest run."""
    if not port_open("127.0.0.1", 5432):
        unavailable("PostgreSQL on 127.0.0.1:5432")
    name = f"ocs_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    base = PG_DSN.rsplit("/", 1)[0]
    url = f"{base.replace('postgresql://', 'postgres://')}/{name}"
    settings = Settings(data_dir=Path("/tmp"), database_url=url)
    asyncio.run(ocs_db.migrate(settings))
    yield url
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("template")
    settings = Settings(data_dir=folder, database_url=f"sqlite://{folder / 'ocs.sqlite3'}")
    asyncio.run(ocs_db.migrate(settings))
    return folder / "ocs.sqlite3"


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Boot settings for one test: its own data dir and an empty migrated database."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if use_postgres():
        url = request.getfixturevalue("pg_database_url")
        asyncio.run(_pg_truncate(url))
    else:
        template = request.getfixturevalue("sqlite_template")
        shutil.copy(template, data_dir / "ocs.sqlite3")
        url = f"sqlite://{data_dir / 'ocs.sqlite3'}"
    request.node.stash[DATABASE_URL] = url  # for the after-test money check
    return load_settings(
        {
            "OCS_DATA_DIR": str(data_dir),
            "OCS_DATABASE_URL": url,
            "OCS_DIAMETER_PORT": "0",
            "OCS_WEB_PORT": "0",
            "OCS_SIP_PORT": "0",
        }
    )


async def _pg_truncate(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://"))
    try:
        await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


def _money_rules(request: pytest.FixtureRequest) -> str | None:
    """Which money invariants this test must leave true: "all", "ledger" or None."""
    if request.node.get_closest_marker("corrupts_money") is not None:
        return None
    if request.node.get_closest_marker("ledger_only") is not None:
        return "ledger"
    return "all"


async def _money_violations(url: str, sessions: bool) -> list[str]:
    from ocs import ledger
    from ocs.money_check import check_money

    store = await ledger.open_store(url)
    try:
        return [str(v) for v in await check_money(store, sessions=sessions)]
    finally:
        await store.close()


@pytest.fixture(autouse=True)
def money_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every test that had a database: the money invariants of ocs.money_check hold
    (every balance is its entries, nothing over-reserved or left reserved, every CDR is its
    CALL entries). Opt out with @pytest.mark.corrupts_money (the test breaks the data on
    purpose) or narrow with @pytest.mark.ledger_only (it drives ocs.ledger below the
    session layer, so only the account rules M1-M3 apply)."""
    yield
    url = request.node.stash.get(DATABASE_URL, None)
    rules = _money_rules(request)
    if url is None or rules is None:
        return
    problems = asyncio.run(_money_violations(url, sessions=rules == "all"))
    if problems:
        pytest.fail("money invariants broken after the test:\n  " + "\n  ".join(problems))


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Settings]:
    """ORM + ledger store connected to the test database."""
    await ocs_db.init_db(settings)
    try:
        yield settings
    finally:
        await ocs_db.close_db()


@pytest.fixture
def mqtt_broker() -> tuple[str, int]:
    if not port_open("127.0.0.1", 1883):
        unavailable("Mosquitto on 127.0.0.1:1883")
    return ("127.0.0.1", 1883)
