"""`ocs account add` takes the operator's default media language (issue 11, defect 5)."""

from __future__ import annotations

import asyncio
import json

from ocs import db, settings_store
from ocs.config import Settings
from tests.integration.test_cli import run_ocs


def test_account_add_uses_the_operator_default_language(settings: Settings) -> None:
    async def set_default() -> None:
        await db.init_db(settings, ledger_store=False)
        try:
            await settings_store.save_operator_settings({"default_language": "EN"})
        finally:
            await db.close_db()

    asyncio.run(set_default())
    run_ocs(settings, "account", "add", "2001")
    shown = json.loads(run_ocs(settings, "account", "show", "2001", "--json").stdout)
    assert shown["language"] == "EN"
    # an explicit --language still wins
    run_ocs(settings, "account", "add", "2002", "--language", "FR")
    shown = json.loads(run_ocs(settings, "account", "show", "2002", "--json").stdout)
    assert shown["language"] == "FR"
