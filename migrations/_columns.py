"""Migration operations Tortoise's own do not cover (not a migration: the loader skips `_`).

Tortoise's AddField creates a NOT NULL column without a database default, which fails on a
table that already has rows (every upgraded deployment); its AlterField cannot change a
column's type. These keep the migration state of the ordinary operations and run SQL that
works on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from tortoise.migrations import operations as ops


class AddFilledColumn(ops.AddField):
    """AddField whose column gets `default_sql` as database default: existing rows get it."""

    def __init__(self, model_name: str, name: str, field: Any, sql_type: str, default_sql: str):
        super().__init__(model_name=model_name, name=name, field=field)
        self.sql_type = sql_type
        self.default_sql = default_sql

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:
        if not state_editor:
            return
        table = new_state.apps.get_model(f"{app_label}.{self.model_name}")._meta.db_table
        await state_editor.client.execute_script(
            f'ALTER TABLE "{table}" ADD COLUMN "{self.name}" {self.sql_type} NOT NULL'
            f" DEFAULT {self.default_sql}"
        )


class RetypeColumn(ops.AlterField):
    """AlterField changing a column's type: `postgres_sql` on PostgreSQL; SQLite stores any
    type in any column, so nothing is needed there."""

    def __init__(self, model_name: str, name: str, field: Any, postgres_sql: str):
        super().__init__(model_name=model_name, name=name, field=field)
        self.postgres_sql = postgres_sql

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:
        if state_editor and state_editor.client.capabilities.dialect == "postgres":
            await state_editor.client.execute_script(self.postgres_sql)


class DropColumnIndex(ops.AlterField):
    """AlterField that only drops a column's index, by name, on both databases (Tortoise's
    AlterField rebuilds a SQLite table and loses its other indexes)."""

    def __init__(self, model_name: str, name: str, field: Any, index: str):
        super().__init__(model_name=model_name, name=name, field=field)
        self.index = index

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:
        if state_editor:
            await state_editor.client.execute_script(f'DROP INDEX IF EXISTS "{self.index}"')
