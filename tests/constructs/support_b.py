"""Helpers for the construct scenarios of timers, subprocesses, errors/escalations and service tasks.

Every command of the engine loads the instance from the database and saves it again; :func:`step` adds the
check that the stored snapshot survives one more load + dump unchanged (a reload between every step), using
``tests.constructs.support.assert_round_trip``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from engine.commands import Engine
from engine.store import queries
from engine.store.db import read_only
from engine.store.tables import timer
from tests.constructs.support import assert_round_trip

FIXTURES_B = Path(__file__).resolve().parents[1] / "fixtures" / "constructs_b"


def fixture_b(name: str) -> tuple[str, bytes]:
    """A (resource name, bytes) pair for ``engine.deploy`` from tests/fixtures/constructs_b."""
    return name, (FIXTURES_B / name).read_bytes()


def deploy_b(engine: Engine, *names: str) -> dict[str, Any]:
    """Deploy fixture files of constructs_b together, as one deployment."""
    return engine.deploy([fixture_b(n) for n in names], name="constructs_b", actor="tester")


def utc(value: str | datetime) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def step(engine: Engine, ref: dict[str, Any] | str) -> dict[str, Any]:
    """After a command: check the instance's snapshot round trip and return its read-side view.

    ``ref`` is an instance id or a command's answer about an instance (``{"id": ...}``).
    """
    instance_id = ref if isinstance(ref, str) else str(ref["id"])
    assert_round_trip(engine, instance_id)
    return instance(engine, instance_id)


def instance(engine: Engine, instance_id: str) -> dict[str, Any]:
    with read_only(engine.db) as conn:
        return queries.instance(conn, instance_id)


def tasks(engine: Engine, instance_id: str | None = None, state: str | None = "open") -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.tasks(conn, instance_id=instance_id, state=state)


def one_task(engine: Engine, instance_id: str, element_id: str) -> dict[str, Any]:
    found = [t for t in tasks(engine, instance_id) if t["element_id"] == element_id]
    assert len(found) == 1, f"expected one open '{element_id}' task, got {tasks(engine, instance_id)}"
    return found[0]


def jobs(engine: Engine, topic: str | None = None) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.jobs(conn, topic=topic)


def incidents(
    engine: Engine, instance_id: str | None = None, state: str | None = "open"
) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.incidents(conn, instance_id=instance_id, state=state)


def instances(engine: Engine, key: str | None = None) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.instances(conn, key=key)


def start_timers(engine: Engine) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        rows = conn.execute(select(timer).where(timer.c.kind == "start").order_by(timer.c.id)).all()
    return [
        {
            "definition_id": r.definition_id,
            "element_id": r.element_id,
            "due_at": utc(r.due_at),
            "cycle": r.cycle,
        }
        for r in rows
    ]


def timer_dues(engine: Engine, instance_id: str) -> list[tuple[str, datetime]]:
    """(element id, due at) of the timers the instance waits for, from the read side (queries.instance)."""
    waiting = instance(engine, instance_id)["waiting_for"]["timers"]
    return sorted((t["element_id"], utc(t["due_at"])) for t in waiting)


def open_elements(engine: Engine, instance_id: str) -> list[str]:
    """Element ids of the instance's open user tasks, sorted."""
    return sorted(t["element_id"] for t in tasks(engine, instance_id))


def cancelled_elements(engine: Engine, instance_id: str) -> list[str]:
    return sorted(t["element_id"] for t in tasks(engine, instance_id, state="cancelled"))


def assert_all_stable(engine: Engine, key: str | None = None) -> None:
    for item in instances(engine, key):
        assert_round_trip(engine, item["id"])
