"""Service-task jobs: completed or failed by workers; a worker's own error text becomes the incident."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import insert, select, update

from engine.commands.base import (
    EngineBase,
    _Outcome,
    validate_variables,
)
from engine.errors import (
    ConcurrentModification,
    NotFound,
    TaskNotOpen,
)
from engine.runtime.instance import IncidentRaised
from engine.store import audit
from engine.store.db import read_only, unit_of_work
from engine.store.tables import (
    incident,
    job,
    process_instance,
)


class JobCommands(EngineBase):
    def complete_job(
        self, job_id: str, variables: dict[str, Any] | None = None, *, actor: str | None = None
    ) -> dict[str, Any]:
        variables = validate_variables(variables)
        with unit_of_work(self.db) as conn:
            jrow = conn.execute(select(job).where(job.c.id == job_id)).first()
            if jrow is None:
                raise NotFound(f"job '{job_id}' does not exist", job_id=job_id)
            irow = self.get_instance_row(conn, jrow.instance_id)
            loaded = self._load(conn, irow)
            outcome = _Outcome(
                audit=[
                    audit.Entry("complete_job", actor, self.now(), task_id=job_id, element_id=jrow.element_id)
                ]
            )
            error = None
            try:
                self.runtime.complete_job(loaded.workflow, job_id, variables)
            except LookupError:
                raise TaskNotOpen(f"job '{job_id}' is no longer waiting", job_id=job_id) from None
            except IncidentRaised as exc:
                error = exc
            conn.execute(
                update(incident)
                .where(
                    incident.c.task_id == job_id,
                    incident.c.state == "open",
                    incident.c.error_type == "JobFailed",
                )
                .values(state="resolved", resolved_at=self.now())
            )
            result = self._save(conn, loaded, outcome, error)
        self._notify()
        return result

    def fail_job(
        self, job_id: str, error_message: str, *, retries: int | None = None, actor: str | None = None
    ) -> dict[str, Any]:
        """A worker reports a failure; at zero retries the real error becomes an incident."""
        with unit_of_work(self.db) as conn:
            jrow = conn.execute(select(job).where(job.c.id == job_id)).first()
            if jrow is None:
                raise NotFound(f"job '{job_id}' does not exist", job_id=job_id)
            left = jrow.retries - 1 if retries is None else int(retries)
            conn.execute(
                update(job)
                .where(job.c.id == job_id)
                .values(retries=max(left, 0), error_message=error_message, worker_id=None, locked_until=None)
            )
            irow = self.get_instance_row(conn, jrow.instance_id)
            entries = [
                audit.Entry(
                    "fail_job",
                    actor,
                    self.now(),
                    task_id=job_id,
                    element_id=jrow.element_id,
                    details={"error": error_message, "retries": max(left, 0)},
                )
            ]
            incident_id = None
            if left <= 0:
                incident_id = str(uuid.uuid4())
                conn.execute(
                    insert(incident).values(
                        id=incident_id,
                        instance_id=jrow.instance_id,
                        task_id=job_id,
                        element_id=jrow.element_id,
                        error_type="JobFailed",
                        message=error_message[:4000],
                        state="open",
                        created_at=self.now(),
                    )
                )
                waits = dict(irow.waits or {})
                waits["failed_jobs"] = sorted({*waits.get("failed_jobs", []), job_id})
                changed = conn.execute(
                    update(process_instance)
                    .where(process_instance.c.id == irow.id, process_instance.c.revision == irow.revision)
                    .values(state="incident", waits=waits, revision=irow.revision + 1)
                ).rowcount
                if changed != 1:
                    raise ConcurrentModification(
                        f"process instance '{irow.id}' changed at the same time; retry", instance_id=irow.id
                    )
            self._append_instance_audit(conn, irow.id, irow.audit_seq, irow.audit_head, entries)
        return {"id": job_id, "retries": max(left, 0), "incident_id": incident_id}

    def run_job(
        self, job_id: str, handler: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> dict[str, Any]:
        """Run an in-process service handler for a job: success completes it, an exception fails it with its
        own message (never masked)."""
        with read_only(self.db) as conn:
            jrow = conn.execute(select(job).where(job.c.id == job_id)).first()
            if jrow is None:
                raise NotFound(f"job '{job_id}' does not exist", job_id=job_id)
            irow = self.get_instance_row(conn, jrow.instance_id)
        try:
            result = handler(dict(irow.variables or {})) or {}
        except Exception as exc:
            return self.fail_job(job_id, f"{type(exc).__name__}: {exc}")
        return self.complete_job(job_id, result)
