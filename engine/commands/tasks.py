"""User tasks: claim, unclaim, assign, complete."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from engine.commands.access import AccessCommands
from engine.commands.base import (
    _CLAIM_TASK,
    _TASK_WITH_INSTANCE,
    Writes,
    _Outcome,
    validate_text,
    validate_variables,
)
from engine.commands.forms import check_completion
from engine.errors import (
    NotFound,
    TaskClaimed,
    TaskNotOpen,
)
from engine.runtime.instance import IncidentRaised
from engine.store import audit
from engine.store.db import unit_of_work
from engine.store.tables import (
    task,
)


class TaskCommands(AccessCommands):
    def claim(self, task_id: str, user: str, *, actor: str | None = None) -> dict[str, Any]:
        validate_text(user, "user", required=True)
        with unit_of_work(self.db) as conn:
            row = self._task_row(conn, task_id)
            self._check_may_act(conn, task_id, user, "claim")
            if row.state != "open":
                raise TaskNotOpen(f"task '{task_id}' is {row.state}", task_id=task_id)
            if row.assignee is not None and row.assignee != user:
                raise TaskClaimed(
                    f"task '{task_id}' is already claimed by '{row.assignee}'",
                    task_id=task_id,
                    assignee=row.assignee,
                )
            # The chain head decides a race: whoever changed the instance since it was read moved the head.
            claiming = Writes()
            claiming.add(_CLAIM_TASK, {"b_id": task_id, "b_user": user, "assignee": user})
            self._append_instance_audit(
                conn,
                row.instance_id,
                row.audit_seq,
                row.audit_head,
                [
                    audit.Entry(
                        "claim",
                        actor or user,
                        self.now(),
                        task_id=task_id,
                        element_id=row.element_id,
                        details={"assignee": user},
                    )
                ],
                claiming,
            )
        return {"id": task_id, "assignee": user}

    def unclaim(self, task_id: str, *, actor: str | None = None) -> dict[str, Any]:
        return self._set_assignee(task_id, None, actor, "unclaim")

    def assign(self, task_id: str, user: str | None, *, actor: str | None = None) -> dict[str, Any]:
        return self._set_assignee(task_id, user, actor, "assign")

    def _set_assignee(
        self, task_id: str, user: str | None, actor: str | None, command: str
    ) -> dict[str, Any]:
        validate_text(user, "user")
        with unit_of_work(self.db) as conn:
            row = self._task_row(conn, task_id)
            if user is not None:
                self._check_may_act(conn, task_id, user, command)
            if row.state != "open":
                raise TaskNotOpen(f"task '{task_id}' is {row.state}", task_id=task_id)
            conn.execute(update(task).where(task.c.id == task_id).values(assignee=user))
            self._append_instance_audit(
                conn,
                row.instance_id,
                row.audit_seq,
                row.audit_head,
                [
                    audit.Entry(
                        command,
                        actor,
                        self.now(),
                        task_id=task_id,
                        element_id=row.element_id,
                        details={"assignee": user, "previous": row.assignee},
                    )
                ],
            )
        return {"id": task_id, "assignee": user}

    def complete(
        self,
        task_id: str,
        variables: dict[str, Any] | None = None,
        *,
        user: str | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        variables = validate_variables(variables)
        with unit_of_work(self.db) as conn:
            irow = conn.execute(_TASK_WITH_INSTANCE, {"b_id": task_id}).first()
            if irow is None:
                raise NotFound(f"task '{task_id}' does not exist", task_id=task_id)
            self._check_may_act(conn, task_id, user or actor or irow.task_assignee, "complete")
            if irow.task_state != "open":
                raise TaskNotOpen(f"task '{task_id}' is {irow.task_state}", task_id=task_id)
            if user is not None and irow.task_assignee is not None and irow.task_assignee != user:
                raise TaskClaimed(
                    f"task '{task_id}' is claimed by '{irow.task_assignee}'",
                    task_id=task_id,
                    assignee=irow.task_assignee,
                )
            loaded = self._load(conn, irow)
            variables = check_completion(self.runtime, loaded.workflow, task_id, variables)
            who = user or irow.task_assignee or actor
            outcome = _Outcome(
                audit=[
                    audit.Entry(
                        "complete", actor or who, self.now(), task_id=task_id, element_id=irow.task_element_id
                    )
                ],
                task_completed=(task_id, who),
            )
            error = None
            try:
                self.runtime.complete_user_task(loaded.workflow, task_id, variables)
            except LookupError:
                raise TaskNotOpen(f"task '{task_id}' is no longer open", task_id=task_id) from None
            except IncidentRaised as exc:
                error = exc
            result = self._save(conn, loaded, outcome, error)
        self._notify()
        return result
