"""Camunda 7 variable mappings: ``camunda:in`` / ``camunda:out`` on call activities and
``camunda:inputOutput`` on user and service tasks.

Call activities. The library copies the caller's whole task data into the called process and the called
process's whole data back. Between agencies that leaks every variable (a discipline-commission clue must not
reach a called process that has no need for it), so a call activity that declares mappings gets only what it
maps, as in Camunda 7:

- no ``camunda:in`` and no ``camunda:out``: everything flows both ways (the library's behaviour, which
  SpiffWorkflow's own models expect);
- any ``camunda:in``: only the mapped variables enter the called process (``source``/``target``,
  ``sourceExpression``/``target``, ``variables="all"``); ``<camunda:in businessKey="..."/>`` maps nothing: the
  called process runs inside the caller's instance, whose business key it already shares;
- any ``camunda:out``: only the mapped variables come back when the called process completes; without
  ``camunda:out`` every variable of the called process comes back, merged over the caller's (the caller's
  variables that were not passed in are kept).

Mappings are applied in document order (a later one wins), expressions go through the workflow's script
engine (the safe evaluator) and a ``source`` that is not set maps to None; ``local="true"`` is accepted and
ignored (there are no execution-local scopes here). Each instance of a multi-instance call activity maps its
own variables, and what it maps out becomes a process variable (the last instance to finish wins). Embedded
subprocesses share their parent's scope and are not affected.

User and service tasks. ``camunda:inputParameter`` values are local to the task: visible to its expressions
(assignee, candidate groups, due date) while it is open, gone when it completes (a process variable the
parameter shadowed gets its value back, even if the task was completed with a value under that name).
``camunda:outputParameter`` values are evaluated in the task's scope when it completes (the submitted
variables included) and become process variables. A value is text, an expression (``${...}`` /
``#{...}``), ``camunda:list``, ``camunda:map`` or empty (None); ``camunda:script`` is refused at deploy
time. ``camunda:inputOutput`` on other elements is ignored, as before.

Failures become incidents naming the element. A mapping into a task or called process that cannot be
evaluated arms the element again on retry (with the retry's variables); an output mapping that cannot be
evaluated is evaluated again on retry, with the retry's variables in scope.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.specs.defaults import CallActivity
from SpiffWorkflow.util.task import TaskState

from engine.definitions.specs import WAIT_FAILED, CaseflowUserTask, ExternalServiceTask

# Internal data of a task whose output mapping failed: the variables it had, set aside so that a retry's
# variables can be told apart from them (call activities); or a marker that completion is to be retried.
_OUT_FAILED = "caseflow:out_failed"
# Internal data of a task with input parameters: their names and the process variables they shadow.
_LOCALS = "caseflow:locals"


class MappingError(Exception):
    """A variable mapping or parameter that could not be evaluated; the message names it."""


def _reason(exc: BaseException) -> tuple[str, BaseException]:
    """The evaluator's own message and error (the script engine wraps them in a WorkflowTaskException)."""
    cause: BaseException = exc
    if isinstance(exc, WorkflowTaskException):
        cause = getattr(exc, "exception", None) or exc.__cause__ or exc
    text = cause.args[0] if isinstance(cause, WorkflowTaskException) and cause.args else str(cause)
    return str(text), cause


def _mapping_error(what: str, exc: Exception) -> MappingError:
    text, cause = _reason(exc)
    error = MappingError(f"{what}: {text}")
    error.__cause__ = cause
    return error


def _failure(my_task: Any, exc: MappingError) -> WorkflowTaskException:
    cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
    error = WorkflowTaskException(str(exc), task=my_task, exception=cause)
    error.__cause__ = cause
    return error


def _arm_failed(my_task: Any, exc: MappingError) -> WorkflowTaskException:
    """The element could not be entered: it fails, and a retry arms it again (see Runtime.retry)."""
    my_task.internal_data[WAIT_FAILED] = True
    my_task._set_state(TaskState.ERROR)
    return _failure(my_task, exc)


# ------------------------------------------------------------------------------------------ call activities
@dataclass(frozen=True)
class VariableMapping:
    """One ``camunda:in`` or ``camunda:out``: all variables, or one ``target`` from ``source`` or an
    ``expression``."""

    target: str | None = None
    source: str | None = None
    expression: str | None = None
    all: bool = False

    def describe(self, direction: str) -> str:
        if self.all:
            return f'camunda:{direction} variables="all"'
        if self.expression is not None:
            return f"camunda:{direction} '{self.target}' (sourceExpression)"
        return f"camunda:{direction} '{self.target}' (source '{self.source}')"


def map_variables(
    mappings: tuple[VariableMapping, ...], task: Any, direction: str, supplied: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The variables ``mappings`` produce from ``task``'s data; ``supplied`` values take precedence."""
    engine = task.workflow.script_engine
    scope = {**task.data, **(supplied or {})}
    values: dict[str, Any] = {}
    for mapping in mappings:
        try:
            if mapping.all:
                values.update(scope)
            elif mapping.expression is not None:
                values[str(mapping.target)] = engine.evaluate(task, mapping.expression, supplied)
            else:
                values[str(mapping.target)] = scope.get(str(mapping.source))
        except Exception as exc:
            raise _mapping_error(mapping.describe(direction), exc) from None
    return deepcopy(values)


class CaseflowCallActivity(CallActivity):  # type: ignore[misc]
    """A call activity honouring ``camunda:in`` / ``camunda:out`` (None: not declared, everything flows)."""

    def __init__(
        self,
        wf_spec: Any,
        bpmn_id: str,
        subworkflow_spec: Any,
        in_mappings: tuple[VariableMapping, ...] | None = None,
        out_mappings: tuple[VariableMapping, ...] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(wf_spec, bpmn_id, subworkflow_spec, **kwargs)
        self.in_mappings = in_mappings
        self.out_mappings = out_mappings

    @property
    def mapped(self) -> bool:
        return self.in_mappings is not None or self.out_mappings is not None

    def start_workflow(self, my_task: Any) -> None:
        if self.in_mappings is None:
            super().start_workflow(my_task)
            return
        # Evaluated before the called process exists, so that a failure leaves nothing half-started.
        try:
            values = map_variables(self.in_mappings, my_task, "in")
        except MappingError as exc:
            raise _arm_failed(my_task, exc) from None
        top = my_task.workflow.top_workflow
        if self.spec not in top.subprocess_specs:
            my_task.error()
            raise WorkflowTaskException(self.get_missing_subworkflow_error(my_task), task=my_task)
        subworkflow = top.create_subprocess(my_task, self.spec)
        subworkflow.completed_event.connect(self._on_subworkflow_completed, my_task)
        start = subworkflow.get_next_task(subworkflow.task_tree, skip_subprocesses=True, spec_name="Start")
        start.set_data(**values)
        start.run()

    def _on_subworkflow_completed(self, subworkflow: Any, my_task: Any) -> None:
        if not self.mapped:
            super()._on_subworkflow_completed(subworkflow, my_task)
            return
        # The variables come back when the call activity runs (see _run_hook): a failing output mapping then
        # fails the call activity, not the called process's last step.
        my_task._set_state(TaskState.READY)

    def _run_hook(self, my_task: Any) -> Any:
        if self.mapped:
            subworkflow = my_task.workflow.top_workflow.subprocesses.get(my_task.id)
            if subworkflow is not None and subworkflow.completed:
                self._return_variables(my_task, subworkflow)
        return super()._run_hook(my_task)

    def _return_variables(self, my_task: Any, subworkflow: Any) -> None:
        last = subworkflow.last_task
        supplied: dict[str, Any] | None = None
        kept = my_task.internal_data.pop(_OUT_FAILED, None)
        if kept is not None:
            # A retry after a failed output mapping: what the retry set is all the task's data holds now.
            supplied = dict(my_task.data)
            my_task.data = kept
        try:
            values = map_variables(self.out_mappings or (), last, "out", supplied)
        except MappingError as exc:
            my_task.internal_data[_OUT_FAILED] = my_task.data
            my_task.data = {}
            raise _failure(my_task, exc) from None
        my_task.data.update(values)


# ------------------------------------------------------------------------------ input/output parameters
@dataclass(frozen=True)
class ParameterValue:
    """The value of a ``camunda:inputParameter`` / ``outputParameter`` (or of a list item or map entry)."""

    kind: str  # "null" | "text" | "expression" | "list" | "map"
    text: str | None = None
    items: tuple[tuple[str | None, ParameterValue], ...] = ()

    def resolve(self, evaluate: Callable[[str], Any]) -> Any:
        if self.kind == "text":
            return self.text
        if self.kind == "expression":
            return evaluate(str(self.text))
        if self.kind == "list":
            return [value.resolve(evaluate) for _, value in self.items]
        if self.kind == "map":
            return {key: value.resolve(evaluate) for key, value in self.items}
        return None

    def expressions(self) -> Iterator[str]:
        if self.kind == "expression" and self.text is not None:
            yield self.text
        for _, value in self.items:
            yield from value.expressions()


@dataclass(frozen=True)
class Parameter:
    name: str
    value: ParameterValue


class LocalVariablesMixin:
    """``camunda:inputOutput`` on a task: input parameters are local to it, output parameters come back."""

    input_parameters: tuple[Parameter, ...] = ()
    output_parameters: tuple[Parameter, ...] = ()

    def _update_hook(self, my_task: Any) -> Any:
        ready = super()._update_hook(my_task)  # type: ignore[misc]
        if ready and self.input_parameters and _LOCALS not in my_task.internal_data:
            self._enter(my_task)
        return ready

    def _enter(self, my_task: Any) -> None:
        engine = my_task.workflow.script_engine
        values: dict[str, Any] = {}
        for parameter in self.input_parameters:
            try:
                # Later parameters see the earlier ones.
                values[parameter.name] = parameter.value.resolve(
                    lambda text: engine.evaluate(my_task, text, values)
                )
            except Exception as exc:
                error = _mapping_error(f"camunda:inputParameter '{parameter.name}'", exc)
                raise _arm_failed(my_task, error) from None
        shadowed = {name: my_task.data[name] for name in values if name in my_task.data}
        my_task.internal_data[_LOCALS] = {"names": list(values), "shadowed": deepcopy(shadowed)}
        my_task.data.update(deepcopy(values))

    def _run_hook(self, my_task: Any) -> Any:
        if my_task.internal_data.pop(_OUT_FAILED, False):
            return True  # retried after its output parameters failed: complete it (again), nothing else
        return super()._run_hook(my_task)  # type: ignore[misc]

    def _on_complete_hook(self, my_task: Any) -> None:
        if self.input_parameters or self.output_parameters:
            self._leave(my_task)
        super()._on_complete_hook(my_task)  # type: ignore[misc]

    def _leave(self, my_task: Any) -> None:
        engine = my_task.workflow.script_engine
        outputs: dict[str, Any] = {}
        for parameter in self.output_parameters:
            try:
                outputs[parameter.name] = parameter.value.resolve(lambda text: engine.evaluate(my_task, text))
            except Exception as exc:
                my_task.internal_data[_OUT_FAILED] = True
                my_task._set_state(TaskState.ERROR)
                error = _mapping_error(f"camunda:outputParameter '{parameter.name}'", exc)
                raise _failure(my_task, error) from None
        scope = my_task.internal_data.pop(_LOCALS, None)
        if scope:
            shadowed = scope["shadowed"]
            for name in scope["names"]:
                # In place, not removed and added again: the order of the keys is part of the snapshot.
                if name in shadowed:
                    my_task.data[name] = shadowed[name]
                else:
                    my_task.data.pop(name, None)
        my_task.data.update(deepcopy(outputs))


class MappedUserTask(LocalVariablesMixin, CaseflowUserTask):
    pass


class MappedServiceTask(LocalVariablesMixin, ExternalServiceTask):
    pass


LOCAL_VARIABLE_CLASSES: dict[type, type] = {
    CaseflowUserTask: MappedUserTask,
    ExternalServiceTask: MappedServiceTask,
}
