"""The PostgreSQL test runs share one database, emptied between tests: every table must be
in the list the fixture truncates, or a test sees what an earlier one left."""

from tortoise.models import Model

from ocs import models
from tests.conftest import TABLES


def test_every_model_table_is_truncated_between_tests() -> None:
    tables = {
        m._meta.db_table
        for m in vars(models).values()
        if isinstance(m, type) and issubclass(m, Model) and m is not Model
    }
    assert tables - set(TABLES) == set()
