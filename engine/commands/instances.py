"""Starting, cancelling and retrying process instances."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select, update

from engine.commands.base import (
    _LATEST_BY_KEY,
    EngineBase,
    _Outcome,
    validate_variables,
)
from engine.errors import (
    InstanceNotRunning,
    InvalidVariables,
    NotFound,
    TaskNotOpen,
)
from engine.runtime.instance import IncidentRaised
from engine.store import audit
from engine.store.db import unit_of_work
from engine.store.tables import (
    incident,
    job,
    process_definition,
    process_instance,
)


class InstanceCommands(EngineBase):
    def start(
        self,
        *,
        key: str | None = None,
        definition_id: str | None = None,
        business_key: str | None = None,
        variables: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        variables = validate_variables(variables)
        with unit_of_work(self.db) as conn:
            definition = self._resolve_definition(conn, key, definition_id)
            result = self._start_in(conn, definition, business_key, variables, actor)
        self._notify()
        return result

    def _resolve_definition(self, conn: Connection, key: str | None, definition_id: str | None) -> Any:
        if definition_id:
            row = conn.execute(
                select(process_definition).where(process_definition.c.id == definition_id)
            ).first()
            if row is None:
                raise NotFound(
                    f"process definition '{definition_id}' does not exist", definition_id=definition_id
                )
            return row
        if not key:
            raise InvalidVariables("give a process definition key or id", field="key")
        row = conn.execute(_LATEST_BY_KEY, {"b_key": key}).first()
        if row is None:
            raise NotFound(f"no process definition with key '{key}' is deployed", key=key)
        return row

    def cancel(
        self, instance_id: str, *, actor: str | None = None, reason: str | None = None
    ) -> dict[str, Any]:
        with unit_of_work(self.db) as conn:
            irow = self.get_instance_row(conn, instance_id)
            if irow.state in ("completed", "cancelled"):
                raise InstanceNotRunning(
                    f"process instance '{instance_id}' is already {irow.state}", instance_id=instance_id
                )
            loaded = self._load(conn, irow)
            self.runtime.cancel(loaded.workflow)
            outcome = _Outcome(audit=[audit.Entry("cancel", actor, self.now(), details={"reason": reason})])
            result = self._save(conn, loaded, outcome, None, cancelled=True)
            conn.execute(
                update(incident)
                .where(incident.c.instance_id == instance_id, incident.c.state == "open")
                .values(state="resolved", resolved_at=self.now())
            )
        return result

    def retry_incident(
        self, incident_id: str, variables: dict[str, Any] | None = None, *, actor: str | None = None
    ) -> dict[str, Any]:
        variables = validate_variables(variables)
        with unit_of_work(self.db) as conn:
            inc = conn.execute(select(incident).where(incident.c.id == incident_id)).first()
            if inc is None:
                raise NotFound(f"incident '{incident_id}' does not exist", incident_id=incident_id)
            if inc.state != "open":
                raise TaskNotOpen(f"incident '{incident_id}' is already {inc.state}", incident_id=incident_id)
            conn.execute(
                update(incident)
                .where(incident.c.id == incident_id)
                .values(state="resolved", resolved_at=self.now())
            )
            if inc.instance_id is None:
                return {"id": incident_id, "state": "resolved"}
            irow = self.get_instance_row(conn, inc.instance_id)
            if irow.state == "cancelled":
                raise InstanceNotRunning("the instance was cancelled", instance_id=irow.id)
            if inc.error_type == "JobFailed":
                conn.execute(
                    update(job).where(job.c.id == inc.task_id).values(retries=self.config.job_retries)
                )
                self._append_instance_audit(
                    conn,
                    irow.id,
                    irow.audit_seq,
                    irow.audit_head,
                    [
                        audit.Entry(
                            "retry",
                            actor,
                            self.now(),
                            task_id=inc.task_id,
                            element_id=inc.element_id,
                            details={"incident_id": incident_id},
                        )
                    ],
                )
                waits = dict(irow.waits or {})
                waits["failed_jobs"] = [j for j in waits.get("failed_jobs", []) if j != inc.task_id]
                others = conn.execute(
                    select(func.count())
                    .select_from(incident)
                    .where(incident.c.instance_id == irow.id, incident.c.state == "open")
                ).scalar()
                conn.execute(
                    update(process_instance)
                    .where(process_instance.c.id == irow.id)
                    .values(
                        state="incident" if others or waits["failed_jobs"] else "running",
                        waits=waits,
                        revision=irow.revision + 1,
                    )
                )
                return {"id": incident_id, "state": "resolved", "instance_id": irow.id}
            loaded = self._load(conn, irow)
            outcome = _Outcome(
                audit=[
                    audit.Entry(
                        "retry",
                        actor,
                        self.now(),
                        task_id=inc.task_id,
                        element_id=inc.element_id,
                        details={"incident_id": incident_id},
                    )
                ]
            )
            error = None
            try:
                self.runtime.retry(loaded.workflow, inc.task_id, variables)
            except IncidentRaised as exc:
                error = exc
            result = self._save(conn, loaded, outcome, error)
        self._notify()
        return {"id": incident_id, "state": "resolved", "instance": result}
