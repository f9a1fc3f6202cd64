"""The Alembic migrations create exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from engine.commands import Engine
from engine.store.migrate import migrate
from engine.store.tables import metadata


def test_migrations_match_the_declared_tables(engine: Engine) -> None:
    with engine.db.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_migrating_twice_is_harmless(engine: Engine) -> None:
    migrate(engine.db)
    tables = set(inspect(engine.db).get_table_names())
    assert {t.name for t in metadata.sorted_tables} <= tables
    assert "alembic_version" in tables
