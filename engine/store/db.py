"""Database connection and the unit of work every command runs in.

SQLite (the embedded default) serializes writers: a command's transaction starts with ``BEGIN IMMEDIATE`` so
that two writers queue on the busy timeout instead of failing when a reader upgrades. PostgreSQL runs commands
at READ COMMITTED; the instance's revision column (compare-and-set) decides races.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from engine.errors import ConcurrentModification, Unavailable


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def normalize_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def create_db_engine(url: str, *, pool_size: int = 10, schema: str | None = None) -> Engine:
    url = normalize_url(url)
    if is_sqlite(url):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write", True) else "BEGIN")

        return engine
    connect_args: dict[str, Any] = {}
    if schema:
        connect_args["options"] = f"-csearch_path={schema}"
    # No pre-ping: it would cost a round trip per command. A connection that died with the server is detected
    # by the command that meets it (503, nothing changed) and the pool replaces it.
    return create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=3600, connect_args=connect_args
    )


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Connection]:
    """One command = one transaction. Lock contention surfaces as a clean 409, never a half-written case."""
    entered = False
    try:
        with engine.begin() as conn:
            entered = True
            yield conn
    except DBAPIError as exc:
        if exc.connection_invalidated:
            # The pool drops the dead connection; the transaction never committed.
            raise Unavailable("the database connection was lost; nothing was changed, retry") from None
        if isinstance(exc, OperationalError) and _is_lock_error(exc):
            raise ConcurrentModification("another command is changing the same data; retry") from None
        if isinstance(exc, OperationalError) and not entered:
            raise Unavailable("the database cannot be reached; nothing was changed, retry") from None
        raise


def _is_lock_error(exc: DBAPIError) -> bool:
    text = str(exc.orig) if exc.orig is not None else str(exc)
    return "locked" in text or "could not obtain lock" in text or "deadlock" in text


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    entered = False
    try:
        with engine.connect() as conn:
            entered = True
            conn.info["write"] = False
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info["write"] = True
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise Unavailable("the database connection was lost; retry") from None
        if isinstance(exc, OperationalError) and not entered and not _is_lock_error(exc):
            raise Unavailable("the database cannot be reached; retry") from None
        raise
