"""User task forms: what a task asks for (read), and the check a completion must pass (see ``tasks.complete``).

The definition side (syntax, types, constraints) is :mod:`engine.definitions.forms`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.commands.base import _TASK_WITH_INSTANCE, EngineBase, _json_safe
from engine.definitions.forms import FormDefinition, FormField
from engine.definitions.specs import CaseflowUserTask
from engine.errors import InvalidForm, NotFound
from engine.runtime.instance import Runtime
from engine.store.db import read_only


def _form_of(spec: Any) -> FormDefinition:
    form = getattr(spec, "form", None)
    return form if isinstance(form, FormDefinition) else FormDefinition()


def field_view(item: FormField, current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    current = current or {}
    return {
        "id": item.id,
        "label": item.label,
        "type": item.type,
        "required": item.required,
        "readonly": item.readonly,
        "default": item.default,
        "value": _json_safe(current[item.id]) if item.id in current else None,
        "options": [{"id": o.id, "name": o.name} for o in item.options] if item.type == "enum" else None,
        "constraints": item.constraints(),
        "multiline": item.multiline,
        "properties": dict(item.properties),
    }


def form_view(spec: Any, current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    form = _form_of(spec)
    return {
        "form_key": form.key,
        "has_form": form.declared,
        "fields": [field_view(item, current) for item in form.fields],
    }


def check_completion(
    runtime: Runtime, workflow: Any, task_id: str, variables: dict[str, Any]
) -> dict[str, Any]:
    """The variables to store when completing ``task_id``: checked against its form when it declares one
    (:class:`InvalidForm` naming every wrong field), unchanged when it has none."""
    found = runtime.find_task(workflow, task_id)
    if found is None:
        return variables  # the completion itself reports the task as gone
    form = _form_of(found.task_spec)
    if not form.declared:
        return variables
    values, problems = form.validate(variables, found.data)
    if problems:
        name = getattr(found.task_spec, "bpmn_name", None) or found.task_spec.bpmn_id
        names = ", ".join(problem.field for problem in problems)
        raise InvalidForm(
            f"the form of task '{name}' is not filled in correctly: {names}",
            task_id=task_id,
            fields=[problem.to_dict() for problem in problems],
        )
    return values


class FormCommands(EngineBase):
    def task_form(self, task_id: str) -> dict[str, Any]:
        """The form of a user task with the values its variables hold now (a read: nothing is written)."""
        with read_only(self.db) as conn:
            row = conn.execute(_TASK_WITH_INSTANCE, {"b_id": task_id}).first()
            if row is None:
                raise NotFound(f"task '{task_id}' does not exist", task_id=task_id)
            loaded = self._load(conn, row)
        found = self.runtime.find_task(loaded.workflow, task_id)
        if found is not None:
            spec, current = found.task_spec, found.data
        else:  # no longer in the instance's tree: the model's spec, the instance's variables
            spec = self._user_task_spec(loaded.model, row.task_element_id)
            current = dict(row.variables or {})
        return {
            "task_id": task_id,
            "instance_id": row.id,
            "element_id": row.task_element_id,
            "name": getattr(spec, "bpmn_name", None),
            **form_view(spec, current),
        }

    def definition_forms(self, definition_id: str) -> list[dict[str, Any]]:
        """Every user task form of a definition (its own processes and the ones it calls), without values."""
        model = self.model(definition_id)
        found: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for process_spec in model.process_specs():
            for spec in process_spec.task_specs.values():
                if not isinstance(spec, CaseflowUserTask):
                    continue
                key = (process_spec.name, spec.bpmn_id)
                if key in seen:
                    continue
                seen.add(key)
                found.append(
                    {
                        "process_id": process_spec.name,
                        "element_id": spec.bpmn_id,
                        "name": spec.bpmn_name,
                        **form_view(spec),
                    }
                )
        return found

    @staticmethod
    def _user_task_spec(model: Any, element_id: str) -> Any:
        for spec in model.task_specs():
            if isinstance(spec, CaseflowUserTask) and spec.bpmn_id == element_id:
                return spec
        return None
