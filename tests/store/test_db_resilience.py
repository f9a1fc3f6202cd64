"""A database connection that dies under the engine costs one clean 503, never a corrupted case."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from engine.commands import Engine
from engine.errors import Unavailable
from engine.store import queries
from engine.store.db import create_db_engine, read_only
from engine.store.migrate import migrate
from tests.bpmn_util import one_user_task


def test_lost_connection_is_a_503_and_the_next_command_works(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    db = create_db_engine(url, schema=schema, pool_size=1)
    migrate(db)
    engine = Engine(db)
    engine.deploy([("one.bpmn", one_user_task())])
    started = engine.start(key="one_task", business_key="LOST-1")
    task_id = started["tasks"][0]["id"]

    # The server ends the engine's pooled session (as a restart or a network cut would).
    with db.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    admin.dispose()

    with pytest.raises(Unavailable):
        engine.complete(task_id, {"approved": True})
    done = engine.complete(task_id, {"approved": True})
    assert done["state"] == "completed"
    with read_only(db) as conn:
        assert queries.instance(conn, started["id"])["state"] == "completed"
    db.dispose()


def test_an_unreachable_database_is_a_503_for_commands_and_reads() -> None:
    from engine.commands import Engine
    from engine.store import queries
    from engine.store.db import create_db_engine, read_only

    engine = Engine(create_db_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    with pytest.raises(Unavailable, match="cannot be reached"):
        engine.start(key="anything")
    with pytest.raises(Unavailable, match="cannot be reached"), read_only(engine.db) as conn:
        queries.tasks(conn)
