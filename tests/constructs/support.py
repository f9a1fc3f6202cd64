"""Helpers for the construct scenarios: read the store, and check that every saved instance round-trips.

Every command already loads the instance from the database and saves it again; after each step the scenarios
additionally load the stored snapshot into a workflow and dump it again, and require the same JSON back.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from engine.commands import Engine
from engine.store import queries
from engine.store.db import read_only
from engine.store.tables import buffered_message, message_subscription, outbox, process_instance, timer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "constructs_a"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def fixture(name: str) -> tuple[str, bytes]:
    """A (resource name, bytes) pair for ``engine.deploy`` from tests/fixtures/constructs_a."""
    return name, (FIXTURES / name).read_bytes()


def deploy(engine: Engine, *names: str) -> dict[str, Any]:
    """Deploy fixture files together, as one deployment."""
    return engine.deploy([fixture(n) for n in names], name="constructs", actor="tester")


def assert_round_trip(engine: Engine, instance_id: str) -> dict[str, Any]:
    """Load the stored snapshot on the definition's model, dump it again and require the same document."""
    with read_only(engine.db) as conn:
        row = conn.execute(
            select(process_instance.c.definition_id, process_instance.c.snapshot).where(
                process_instance.c.id == instance_id
            )
        ).one()
    assert row.snapshot, f"instance {instance_id} has no snapshot"
    workflow = engine.runtime.load(engine.model(row.definition_id), row.snapshot)
    again = engine.runtime.dump(workflow)
    stored: dict[str, Any] = json.loads(row.snapshot)
    assert json.loads(again) == stored, f"snapshot of {instance_id} changed on load + dump"
    # A second generation must be stable too (what the next command will read).
    reloaded = engine.runtime.load(engine.model(row.definition_id), again)
    assert json.loads(engine.runtime.dump(reloaded)) == stored
    return stored


def stable(engine: Engine, *instance_ids: str) -> None:
    for instance_id in instance_ids:
        assert_round_trip(engine, instance_id)


def instance(engine: Engine, instance_id: str) -> dict[str, Any]:
    with read_only(engine.db) as conn:
        return queries.instance(conn, instance_id)


def tasks(engine: Engine, **filters: Any) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.tasks(conn, **filters)


def only_task(engine: Engine, instance_id: str, element_id: str | None = None) -> dict[str, Any]:
    found = [
        t
        for t in tasks(engine, instance_id=instance_id)
        if element_id is None or t["element_id"] == element_id
    ]
    assert len(found) == 1, f"expected one open task {element_id or ''} in {instance_id}, got {found}"
    return found[0]


def audit_trail(engine: Engine, instance_id: str) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.audit_trail(conn, instance_id)


def subscriptions(engine: Engine, instance_id: str) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        rows = conn.execute(
            select(message_subscription).where(message_subscription.c.instance_id == instance_id)
        ).all()
    return [
        {
            "message_name": r.message_name,
            "element_id": r.element_id,
            "correlation": r.correlation,
            "matchable": r.matchable,
        }
        for r in rows
    ]


def timers(engine: Engine, instance_id: str) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        rows = conn.execute(
            select(timer).where(timer.c.instance_id == instance_id).order_by(timer.c.due_at)
        ).all()
    return [{"element_id": r.element_id, "due_at": _utc(r.due_at)} for r in rows]


def outbox_rows(engine: Engine) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        rows = conn.execute(select(outbox).order_by(outbox.c.id)).all()
    return [
        {
            "message_id": r.message_id,
            "instance_id": r.instance_id,
            "name": r.message_name,
            "envelope": r.envelope,
            "sent_at": r.sent_at,
        }
        for r in rows
    ]


def buffered(engine: Engine) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        rows = conn.execute(select(buffered_message)).all()
    return [
        {
            "message_id": r.message_id,
            "name": r.message_name,
            "correlation_keys": r.correlation_keys,
            "variables": r.variables,
        }
        for r in rows
    ]


def instances_of(engine: Engine, key: str) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.instances(conn, key=key)
