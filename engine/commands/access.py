"""Who may act on a task and who may read a confidential instance.

With a directory (:class:`engine.directory.Directory`) a user acts on a task (claim, assign to, complete) only
as one of its candidates, holding what ``caseflow:requires`` names on the engine clock's date; otherwise 403.
Without one, anyone may (the open default of the engine tests).

A confidential instance (``caseflow:confidential`` on its process) exists only for those it names (see
:func:`engine.store.queries.visible`); to anyone else its instance, tasks and audit trail answer 404, as an
unknown id does. Every read by someone who may see it is appended to its audit chain (``read``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, select

from engine.commands.base import EngineBase
from engine.directory import REQUIREMENTS, SYSTEM, User, Viewer
from engine.errors import ConcurrentModification, Forbidden, NotFound
from engine.store import audit, queries
from engine.store.db import read_only, unit_of_work
from engine.store.tables import process_instance, task

T = TypeVar("T")
_READ_ATTEMPTS = 3


class AccessCommands(EngineBase):
    def viewer(self, user_id: str | None) -> Viewer:
        """The viewer for a user id: its groups come from the directory (none without one)."""
        if self.directory is not None:
            return self.directory.viewer(user_id)
        return Viewer(user=user_id) if user_id else Viewer()

    # ------------------------------------------------------------------------------------------ acting
    def _check_may_act(self, conn: Connection, task_id: str, user: str | None, command: str) -> None:
        """Refuse (403) a user who is not a candidate of the task or lacks what it requires; a confidential
        task the user may not see does not exist for them (404). Does nothing without a directory."""
        directory = self.directory
        if directory is None:
            return
        row = conn.execute(
            select(
                task.c.instance_id,
                task.c.name,
                task.c.lane,
                task.c.candidate_groups,
                task.c.candidate_users,
                task.c.assignee,
                task.c.requires,
                task.c.confidential,
            ).where(task.c.id == task_id)
        ).first()
        if row is None:
            raise NotFound(f"task '{task_id}' does not exist", task_id=task_id)
        person = directory.get(user)
        if row.confidential and (
            person is None or not _visible_instance(conn, row.instance_id, person.viewer())
        ):
            raise NotFound(f"task '{task_id}' does not exist", task_id=task_id)
        label = f"task '{task_id}'" + (f" ({row.name})" if row.name else "")
        if person is None:
            who = f"'{user}' is not a user of the directory" if user else "no user was named"
            raise Forbidden(f"{command} of {label} needs a user of the directory: {who}", task_id=task_id)
        if not _is_candidate(person, row):
            offered = ", ".join([*(row.candidate_groups or []), *(row.candidate_users or [])])
            raise Forbidden(
                f"user '{person.id}' ({person.name}) is not a candidate of {label}: it is offered to {offered}",
                task_id=task_id,
                user=person.id,
            )
        day = self.now().astimezone(self.config.timezone).date()
        requires = list(row.requires or [])
        missing = person.missing(requires, day)
        if missing:
            raise Forbidden(
                f"{label} requires {', '.join(requires)}; user '{person.id}' ({person.name}) lacks "
                + "; ".join(_lack(person, name, day.isoformat()) for name in missing),
                task_id=task_id,
                user=person.id,
                missing=missing,
            )

    # ------------------------------------------------------------------------------------------ reading
    def read_instance(self, instance_id: str, viewer: Viewer = SYSTEM) -> dict[str, Any]:
        """One instance in detail (variables included); a confidential one only for who may see it."""
        missing = NotFound(f"process instance '{instance_id}' does not exist", instance_id=instance_id)
        return self._read(
            instance_id, viewer, "instance", missing, lambda c: queries.instance(c, instance_id)
        )

    def read_audit(self, instance_id: str, viewer: Viewer = SYSTEM) -> list[dict[str, Any]]:
        missing = NotFound(f"process instance '{instance_id}' does not exist", instance_id=instance_id)
        return self._read(
            instance_id, viewer, "audit", missing, lambda c: queries.audit_trail(c, instance_id)
        )

    def read_task(self, task_id: str, viewer: Viewer = SYSTEM) -> dict[str, Any]:
        missing = NotFound(f"task '{task_id}' does not exist", task_id=task_id)
        with read_only(self.db) as conn:
            instance_id = conn.execute(select(task.c.instance_id).where(task.c.id == task_id)).scalar()
        if instance_id is None:
            raise missing
        return self._read(
            instance_id, viewer, "task", missing, lambda c: queries.task_by_id(c, task_id), task_id=task_id
        )

    def note_task_read(self, task_id: str, viewer: Viewer, what: str) -> None:
        """Before another read of a task (its form with the current values): 404 for a confidential task the
        viewer may not see, and the read written to the instance's audit trail when it is confidential."""
        missing = NotFound(f"task '{task_id}' does not exist", task_id=task_id)
        with read_only(self.db) as conn:
            instance_id = conn.execute(select(task.c.instance_id).where(task.c.id == task_id)).scalar()
        if instance_id is not None:
            self._read(instance_id, viewer, what, missing, lambda _: None, task_id=task_id)

    def redact_hidden(self, instances: list[dict[str, Any]], viewer: Viewer) -> list[dict[str, Any]]:
        """Command answers about instances (a correlated message, a retried incident, a completed job) without
        the content of confidential instances the viewer may not see: only that one was reached, and its state."""
        ids = [str(i.get("id")) for i in instances if i.get("id")]
        if not ids:
            return instances
        with read_only(self.db) as conn:
            hidden = {
                r.id
                for r in conn.execute(
                    select(process_instance.c.id).where(
                        process_instance.c.id.in_(ids), process_instance.c.confidential.is_(True)
                    )
                )
                if not _visible_instance(conn, r.id, viewer)
            }
        return [
            {"id": i["id"], "state": i.get("state"), "confidential": True} if i.get("id") in hidden else i
            for i in instances
        ]

    def ensure_visible(self, instance_id: str, viewer: Viewer) -> None:
        """404 for a confidential instance the viewer may not see (before a command on it)."""
        with read_only(self.db) as conn:
            confidential = conn.execute(
                select(process_instance.c.confidential).where(process_instance.c.id == instance_id)
            ).scalar()
            if confidential and not _visible_instance(conn, instance_id, viewer):
                raise NotFound(f"process instance '{instance_id}' does not exist", instance_id=instance_id)

    def _read(
        self,
        instance_id: str,
        viewer: Viewer,
        what: str,
        missing: NotFound,
        fetch: Callable[[Connection], T],
        task_id: str | None = None,
    ) -> T:
        with read_only(self.db) as conn:
            confidential = conn.execute(
                select(process_instance.c.confidential).where(process_instance.c.id == instance_id)
            ).scalar()
            if confidential is None:
                raise missing
            if not confidential:
                return fetch(conn)
            if not _visible_instance(conn, instance_id, viewer):
                raise missing
        # A confidential read is itself recorded: in the same transaction as what it returns.
        for attempt in range(_READ_ATTEMPTS):
            try:
                with unit_of_work(self.db) as conn:
                    head = conn.execute(
                        select(process_instance.c.audit_seq, process_instance.c.audit_head).where(
                            process_instance.c.id == instance_id
                        )
                    ).one()
                    entry = audit.Entry(
                        "read",
                        viewer.user,
                        self.now(),
                        task_id=task_id,
                        details={"what": what, "agency": viewer.agency},
                    )
                    self._append_instance_audit(conn, instance_id, head.audit_seq, head.audit_head, [entry])
                    return fetch(conn)
            except ConcurrentModification:
                if attempt == _READ_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")


def _visible_instance(conn: Connection, instance_id: str, viewer: Viewer) -> bool:
    condition = queries.visible(viewer, process_instance.c.id, process_instance.c.confidential)
    if condition is None:
        return True
    found = conn.execute(
        select(process_instance.c.id).where(process_instance.c.id == instance_id, condition)
    ).first()
    return found is not None


def _is_candidate(person: User, row: Any) -> bool:
    groups = set(row.candidate_groups or [])
    users = set(row.candidate_users or [])
    if person.id in users or person.id == row.assignee or person.groups & groups:
        return True
    # A task's lane is added to its candidate groups; a task that names nobody else is open to every user.
    explicit = groups - {row.lane} if row.lane else groups
    return not (users or explicit or row.assignee)


def _lack(person: User, requirement: str, day: str) -> str:
    if requirement == "certified_officer" and person.certificate is not None:
        certificate = person.certificate
        return (
            f"certified_officer: 河南省行政执法证 {certificate.number} expired on "
            f"{certificate.valid_until.isoformat()} (today is {day})"
        )
    if requirement == "certified_officer":
        return "certified_officer: holds no 河南省行政执法证; an uncertified person may not act on this task"
    return f"{requirement}: {REQUIREMENTS.get(requirement, 'unknown requirement')}"
