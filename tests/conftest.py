"""Shared fixtures: an injected clock, and an engine on SQLite and on PostgreSQL.

Tests that need PostgreSQL skip with a clear message where it is not running, and fail instead when CI=true.
Each PostgreSQL test gets its own schema, dropped afterwards, so tests never share rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from engine.commands import Engine, EngineConfig
from engine.store.db import create_db_engine
from engine.store.migrate import migrate

PG_URL = os.environ.get("CASEFLOW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
# The shared corpus lives beside the project root; CASEFLOW_SHARED_DIR points elsewhere (a clone kept apart).
SHARED = Path(os.environ.get("CASEFLOW_SHARED_DIR") or Path(__file__).resolve().parents[1].parent / "shared")
FIXTURES = Path(__file__).parent / "fixtures"


class ManualClock:
    """The engine's clock in tests: time moves only when a test says so."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **kwargs: float) -> datetime:
        self.current += timedelta(**kwargs)
        return self.current

    def set(self, when: datetime) -> None:
        self.current = when


def require_postgres() -> str:
    try:
        probe = create_engine(PG_URL)
        with probe.connect() as conn:
            conn.execute(text("select 1"))
        probe.dispose()
    except Exception as exc:
        message = f"PostgreSQL is not reachable at {PG_URL}: {exc.__class__.__name__}"
        if IN_CI:
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)")
        pytest.skip(message)
    return PG_URL


AMQP_URL = os.environ.get("CASEFLOW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def require_rabbitmq() -> str:
    """The test broker's URL; skips (fails when CI=true) when RabbitMQ does not answer."""
    import pika

    try:
        params = pika.URLParameters(AMQP_URL)
        params.connection_attempts = 1
        params.socket_timeout = 3
        pika.BlockingConnection(params).close()
    except Exception as exc:
        message = f"RabbitMQ is not reachable at {AMQP_URL}: {exc.__class__.__name__}"
        if IN_CI:
            pytest.fail(message + " (CI=true: RabbitMQ tests must run)")
        pytest.skip(message)
    return AMQP_URL


def require_shared() -> Path:
    if not SHARED.is_dir():
        if IN_CI:
            pytest.fail(f"{SHARED} is missing (CI=true: conformance tests must run)")
        pytest.skip(f"{SHARED} (the shared conformance corpus) is not beside this clone")
    return SHARED


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 2, 1, 0, tzinfo=UTC))


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    url = require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield url, schema
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'caseflow.db'}", None
    else:
        yield request.getfixturevalue("pg_schema")


@pytest.fixture
def engine(db_url: tuple[str, str | None], clock: ManualClock) -> Iterator[Engine]:
    url, schema = db_url
    db = create_db_engine(url, schema=schema)
    migrate(db)
    yield Engine(db, clock, EngineConfig(timezone=UTC))
    db.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path, clock: ManualClock) -> Iterator[Engine]:
    db = create_db_engine(f"sqlite:///{tmp_path / 'caseflow.db'}")
    migrate(db)
    yield Engine(db, clock, EngineConfig(timezone=UTC))
    db.dispose()
