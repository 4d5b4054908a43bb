"""Database lifecycle: Tortoise configuration, init/close, and migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tortoise import Tortoise, connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.backends.base.config_generator import expand_db_url

from ocs.config import Settings

APP = "ocs"
MIGRATIONS_MODULE = "migrations"


def tortoise_config(database_url: str) -> dict[str, Any]:
    url = database_url
    if url.startswith("postgresql://"):
        url = "postgres://" + url.removeprefix("postgresql://")
    connection = expand_db_url(url)
    if connection["engine"].endswith("sqlite"):
        # WAL lets readers (web UI, billing) run beside the charging writer; NORMAL is
        # durable across process crashes, and busy_timeout avoids spurious "locked" errors.
        connection["credentials"].setdefault("journal_mode", "WAL")
        connection["credentials"].setdefault("synchronous", "NORMAL")
        connection["credentials"].setdefault("busy_timeout", 10000)
    return {
        "connections": {"default": connection},
        "apps": {
            APP: {
                "models": ["ocs.models"],
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def _ensure_sqlite_dir(settings: Settings) -> None:
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path = settings.database_url.split("://", 1)[1]
        if path and path != ":memory:":
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)


async def init_db(settings: Settings, *, ledger_store: bool = True) -> None:
    """Connect the ORM, the ledger store and the PIN key: what every process needs."""
    from ocs import accounts, ledger, pins

    _ensure_sqlite_dir(settings)
    accounts.set_pin_key(pins.load_or_create_key(settings.secret_key_path))
    await Tortoise.init(config=tortoise_config(settings.database_url))
    if ledger_store:
        ledger.set_store(await ledger.open_store(settings.database_url))


async def close_db() -> None:
    from ocs import ledger

    if ledger._store is not None:
        await ledger._store.close()
        ledger.set_store(None)
    await Tortoise.close_connections()


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[None]:
    await init_db(settings)
    try:
        yield
    finally:
        await close_db()


def connection() -> BaseDBAsyncClient:
    return connections.get("default")


async def migrate(settings: Settings) -> list[str]:
    """Apply pending migrations; returns the names applied."""
    from tortoise.migrations.api import migrate as run_migrate

    _ensure_sqlite_dir(settings)
    applied: list[str] = []

    def progress(event: str, app_label: str, name: str) -> None:
        if event == "apply_done":
            applied.append(f"{app_label}.{name}")

    await run_migrate(config=tortoise_config(settings.database_url), progress=progress)
    await Tortoise.close_connections()
    return applied
