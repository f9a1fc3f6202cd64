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


def test_engines_starting_together_on_an_empty_postgresql_schema_all_come_up(
    pg_schema: tuple[str, str],
) -> None:
    """Several processes start at once (two replicas, a worker): one migrates, the others wait for it."""
    import threading

    from engine.store.db import create_db_engine

    url, schema = pg_schema
    databases = [create_db_engine(url, schema=schema) for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(databases))

    def boot(db: object) -> None:
        try:
            start.wait()
            migrate(db)  # type: ignore[arg-type]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=boot, args=(db,)) for db in databases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    with databases[0].connect() as conn:
        assert not compare_metadata(MigrationContext.configure(conn), metadata)
    for db in databases:
        db.dispose()
