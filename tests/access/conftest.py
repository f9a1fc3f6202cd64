"""Access fixtures: the demo users directory, an engine that enforces it, and the small access models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.commands import Engine
from engine.directory import Directory, load_agency_codes, load_directory
from engine.store.db import read_only
from engine.store.tables import audit_record, task

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "access"
USERS_FILE = ROOT / "deployments" / "users.yaml"
AGENCIES_FILE = ROOT / "deployments" / "agencies.yaml"


@pytest.fixture(scope="session")
def directory() -> Directory:
    return load_directory(USERS_FILE, load_agency_codes(AGENCIES_FILE))


@pytest.fixture
def guarded(engine: Engine, directory: Directory) -> Engine:
    """The parametrized engine (SQLite and PostgreSQL) with the demo users directory enforced."""
    engine.directory = directory
    return engine


def model(name: str) -> tuple[str, bytes]:
    return name, (FIXTURES / name).read_bytes()


def deploy(engine: Engine, *names: str) -> dict[str, Any]:
    return engine.deploy([model(n) for n in names], name="access", actor="tester")


def open_task(engine: Engine, instance_id: str, element_id: str) -> dict[str, Any]:
    """The open task of an element, read past need-to-know (the engine's own view)."""
    with read_only(engine.db) as conn:
        row = conn.execute(
            select(task).where(
                task.c.instance_id == instance_id, task.c.element_id == element_id, task.c.state == "open"
            )
        ).one()
    return dict(row._mapping)


def audit_commands(engine: Engine, instance_id: str) -> list[tuple[str, str | None]]:
    with read_only(engine.db) as conn:
        rows = conn.execute(
            select(audit_record.c.command, audit_record.c.actor)
            .where(audit_record.c.stream == instance_id)
            .order_by(audit_record.c.seq)
        ).all()
    return [(r.command, r.actor) for r in rows]
