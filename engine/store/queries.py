"""Read side: lists and details for the API and the CLI (no command runs here)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, or_, select

from engine.directory import Viewer
from engine.errors import NotFound
from engine.store.tables import (
    audit_record,
    incident,
    job,
    message_subscription,
    process_definition,
    process_instance,
    resource,
    task,
    task_candidate,
    timer,
)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def definitions(conn: Connection, key: str | None = None, latest_only: bool = False) -> list[dict[str, Any]]:
    query = select(process_definition).order_by(process_definition.c.key, process_definition.c.version)
    if key is not None:
        query = query.where(process_definition.c.key == key)
    rows = conn.execute(query).all()
    if latest_only:
        latest: dict[str, Any] = {}
        for r in rows:
            latest[r.key] = r
        rows = list(latest.values())
    return [
        {
            "id": r.id,
            "key": r.key,
            "version": r.version,
            "name": r.name,
            "deployment_id": r.deployment_id,
            "created_at": _iso(r.created_at),
        }
        for r in rows
    ]


def definition_xml(conn: Connection, definition_id: str) -> tuple[str, bytes]:
    row = conn.execute(
        select(resource.c.name, resource.c.content)
        .join(process_definition, process_definition.c.resource_id == resource.c.id)
        .where(process_definition.c.id == definition_id)
    ).first()
    if row is None:
        raise NotFound(f"process definition '{definition_id}' does not exist", definition_id=definition_id)
    return row.name, row.content


def visible(viewer: Viewer | None, instance_id: Any, confidential: Any) -> Any:
    """A condition on rows naming an instance (its id column, its confidential column): need-to-know.

    Confidential instances show only to case supervision and to the people an instance's tasks name: a candidate
    user, a member of a candidate group, the assignee or completer, or whoever started it. No viewer (``None``)
    or an anonymous one sees none; None is returned when the viewer sees everything (no condition).
    """
    if viewer is not None and viewer.sees_all_confidential:
        return None
    if viewer is None or viewer.user is None:
        return ~confidential
    user, groups = viewer.user, sorted(viewer.groups)
    named = select(task_candidate.c.task_id).where(
        or_(
            (task_candidate.c.kind == "user") & (task_candidate.c.value == user),
            (task_candidate.c.kind == "group") & task_candidate.c.value.in_(groups),
        )
    )
    involved = select(task.c.instance_id).where(
        or_(task.c.assignee == user, task.c.completed_by == user, task.c.id.in_(named))
    )
    started = select(process_instance.c.id).where(process_instance.c.started_by == user)
    return or_(~confidential, instance_id.in_(involved), instance_id.in_(started))


def _instance_dict(r: Any, detail: bool = False) -> dict[str, Any]:
    out = {
        "id": r.id,
        "definition_id": r.definition_id,
        "definition_key": r.definition_key,
        "business_key": r.business_key,
        "state": r.state,
        "started_at": _iso(r.started_at),
        "ended_at": _iso(r.ended_at),
        "revision": r.revision,
    }
    if detail:
        out["activities"] = r.active_elements
        out["variables"] = r.variables
        out["flags"] = r.flags or []
    return out


def instances(
    conn: Connection,
    *,
    key: str | None = None,
    business_key: str | None = None,
    state: str | None = None,
    limit: int = 100,
    offset: int = 0,
    viewer: Viewer | None = None,
) -> list[dict[str, Any]]:
    """Instances, newest first; confidential ones only for a viewer who may see them (see :func:`visible`)."""
    query = select(
        process_instance.c.id,
        process_instance.c.definition_id,
        process_instance.c.definition_key,
        process_instance.c.business_key,
        process_instance.c.state,
        process_instance.c.started_at,
        process_instance.c.ended_at,
        process_instance.c.revision,
    )
    if key is not None:
        query = query.where(process_instance.c.definition_key == key)
    if business_key is not None:
        query = query.where(process_instance.c.business_key == business_key)
    if state is not None:
        query = query.where(process_instance.c.state == state)
    condition = visible(viewer, process_instance.c.id, process_instance.c.confidential)
    if condition is not None:
        query = query.where(condition)
    query = (
        query.order_by(process_instance.c.started_at.desc(), process_instance.c.id)
        .limit(limit)
        .offset(offset)
    )
    return [_instance_dict(r) for r in conn.execute(query)]


def instance(conn: Connection, instance_id: str) -> dict[str, Any]:
    row = conn.execute(select(process_instance).where(process_instance.c.id == instance_id)).first()
    if row is None:
        raise NotFound(f"process instance '{instance_id}' does not exist", instance_id=instance_id)
    out = _instance_dict(row, detail=True)
    out["tasks"] = tasks(conn, instance_id=instance_id)
    out["incidents"] = incidents(conn, instance_id=instance_id)
    out["waiting_for"] = {
        "messages": [
            {"name": s.message_name, "element_id": s.element_id, "correlation": s.correlation}
            for s in conn.execute(
                select(message_subscription).where(message_subscription.c.instance_id == instance_id)
            )
        ],
        "timers": [
            {"element_id": t.element_id, "due_at": _iso(t.due_at)}
            for t in conn.execute(select(timer).where(timer.c.instance_id == instance_id))
        ],
        "jobs": [
            {"id": j.id, "element_id": j.element_id, "topic": j.topic, "retries": j.retries}
            for j in conn.execute(select(job).where(job.c.instance_id == instance_id))
        ],
    }
    return out


def _task_dict(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "instance_id": r.instance_id,
        "definition_id": r.definition_id,
        "element_id": r.element_id,
        "name": r.name,
        "lane": r.lane,
        "candidate_groups": r.candidate_groups,
        "candidate_users": r.candidate_users,
        "assignee": r.assignee,
        "form_key": r.form_key,
        "priority": r.priority,
        "state": r.state,
        "due_at": _iso(r.due_at),
        "deadline_note": r.deadline_note,
        "created_at": _iso(r.created_at),
        "ended_at": _iso(r.ended_at),
        "completed_by": r.completed_by,
    }


def tasks(
    conn: Connection,
    *,
    candidate_group: str | None = None,
    candidate_user: str | None = None,
    assignee: str | None = None,
    instance_id: str | None = None,
    state: str | None = "open",
    limit: int = 100,
    offset: int = 0,
    viewer: Viewer | None = None,
) -> list[dict[str, Any]]:
    """User tasks; those of confidential instances only for a viewer who may see them (:func:`visible`)."""
    query = select(task)
    condition = visible(viewer, task.c.instance_id, task.c.confidential)
    if condition is not None:
        query = query.where(condition)
    if state is not None:
        query = query.where(task.c.state == state)
    if candidate_group is not None:
        query = query.where(
            task.c.id.in_(
                select(task_candidate.c.task_id).where(
                    task_candidate.c.kind == "group", task_candidate.c.value == candidate_group
                )
            )
        )
    if candidate_user is not None:
        query = query.where(
            task.c.id.in_(
                select(task_candidate.c.task_id).where(
                    task_candidate.c.kind == "user", task_candidate.c.value == candidate_user
                )
            )
        )
    if assignee is not None:
        query = query.where(task.c.assignee == assignee)
    if instance_id is not None:
        query = query.where(task.c.instance_id == instance_id)
    query = query.order_by(task.c.created_at, task.c.id).limit(limit).offset(offset)
    return [_task_dict(r) for r in conn.execute(query)]


def task_by_id(conn: Connection, task_id: str) -> dict[str, Any]:
    row = conn.execute(select(task).where(task.c.id == task_id)).first()
    if row is None:
        raise NotFound(f"task '{task_id}' does not exist", task_id=task_id)
    return _task_dict(row)


def incidents(
    conn: Connection,
    *,
    instance_id: str | None = None,
    state: str | None = "open",
    viewer: Viewer | None = None,
) -> list[dict[str, Any]]:
    query = select(incident).order_by(incident.c.created_at)
    secret = select(process_instance.c.id).where(process_instance.c.confidential)
    condition = visible(viewer, incident.c.instance_id, incident.c.instance_id.in_(secret))
    if condition is not None:
        query = query.where(or_(incident.c.instance_id.is_(None), condition))
    if instance_id is not None:
        query = query.where(incident.c.instance_id == instance_id)
    if state is not None:
        query = query.where(incident.c.state == state)
    return [
        {
            "id": r.id,
            "instance_id": r.instance_id,
            "task_id": r.task_id,
            "element_id": r.element_id,
            "error_type": r.error_type,
            "message": r.message,
            "state": r.state,
            "created_at": _iso(r.created_at),
            "resolved_at": _iso(r.resolved_at),
            # a refused or expired message: message_id, from, to, reason, dead_letter_queue
            "details": r.details,
        }
        for r in conn.execute(query)
    ]


def jobs(conn: Connection, topic: str | None = None, *, viewer: Viewer | None = None) -> list[dict[str, Any]]:
    """Jobs waiting for a worker; those of confidential instances only for a viewer who may see them."""
    query = select(job).order_by(job.c.created_at)
    condition = visible(
        viewer,
        job.c.instance_id,
        select(process_instance.c.confidential)
        .where(process_instance.c.id == job.c.instance_id)
        .scalar_subquery(),
    )
    if condition is not None:
        query = query.where(condition)
    if topic is not None:
        query = query.where(job.c.topic == topic)
    return [
        {
            "id": r.id,
            "instance_id": r.instance_id,
            "element_id": r.element_id,
            "topic": r.topic,
            "retries": r.retries,
            "error_message": r.error_message,
        }
        for r in conn.execute(query)
    ]


def audit_trail(conn: Connection, instance_id: str) -> list[dict[str, Any]]:
    exists = conn.execute(
        select(func.count()).select_from(process_instance).where(process_instance.c.id == instance_id)
    ).scalar()
    if not exists:
        raise NotFound(f"process instance '{instance_id}' does not exist", instance_id=instance_id)
    rows = conn.execute(
        select(audit_record).where(audit_record.c.stream == instance_id).order_by(audit_record.c.seq)
    )
    return [
        {
            "seq": r.seq,
            "at": _iso(r.at),
            "actor": r.actor,
            "command": r.command,
            "task_id": r.task_id,
            "element_id": r.element_id,
            "details": r.details,
            "hash": r.hash,
        }
        for r in rows
    ]
