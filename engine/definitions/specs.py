"""Task specs and event definitions caseflow substitutes for the library's defaults.

They differ from SpiffWorkflow's in four ways that matter for an engine shared by agencies:
- every expression goes through the workflow's script engine (the safe evaluator), never ``eval``;
- timers read the engine's injected clock and accept bare ISO 8601 text;
- a message is caught only by the task the engine addressed it to (correlation is the engine's job) and a
  thrown message carries only the variables the model declares, never the sender's whole task data;
- user and service tasks carry the assignment, form and topic metadata the projections need.
Specs are never serialized (instances are saved without their spec), so extra attributes are free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from SpiffWorkflow.bpmn.specs.defaults import ScriptTask, ServiceTask
from SpiffWorkflow.bpmn.specs.event_definitions.message import CorrelationProperty, MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    CycleTimerEventDefinition,
    DurationTimerEventDefinition,
    TimeDateEventDefinition,
    TimerEventDefinition,
)
from SpiffWorkflow.bpmn.util import BpmnEvent, PendingBpmnEvent
from SpiffWorkflow.camunda.specs.user_task import UserTask
from SpiffWorkflow.util.task import TaskState

from engine.lang.iso8601 import Duration, looks_like_iso8601, parse_cycle, parse_datetime, parse_duration


class ClockedEngine(Protocol):
    """What specs need from the workflow's script engine besides ``evaluate``."""

    def now(self) -> datetime: ...

    @property
    def timezone(self) -> Any: ...

    def evaluate(self, task: Any, expression: str, external_context: Any = None) -> Any: ...


# --------------------------------------------------------------------------------------------- user tasks
@dataclass
class Assignment:
    candidate_groups: list[str] = field(default_factory=list)
    candidate_users: list[str] = field(default_factory=list)
    assignee: str | None = None
    due_date: str | None = None
    form_key: str | None = None
    priority: int = 50


class CaseflowUserTask(UserTask):  # type: ignore[misc]
    def __init__(self, wf_spec: Any, bpmn_id: str, form: Any, assignment: Assignment | None = None,
                 **kwargs: Any) -> None:
        super().__init__(wf_spec, bpmn_id, form, **kwargs)
        self.assignment = assignment or Assignment()


# ------------------------------------------------------------------------------------------ service tasks
class ExternalServiceTask(ServiceTask):  # type: ignore[misc]
    """A service task is a job: it waits (STARTED) until a worker completes or fails it through the engine."""

    def __init__(self, wf_spec: Any, bpmn_id: str, topic: str, **kwargs: Any) -> None:
        super().__init__(wf_spec, bpmn_id, **kwargs)
        self.topic = topic

    def _execute(self, task: Any) -> None:
        return None


class AssignmentScriptTask(ScriptTask):  # type: ignore[misc]
    """Script task whose text is run by the safe evaluator as assignments (the script engine does that)."""


# ------------------------------------------------------------------------------------------------- timers
def _timer_key(definition: TimerEventDefinition) -> str:
    # One key per timer: two timers on one event-based gateway share the gateway's task, and the library's
    # single 'event_value' key made them share one due time.
    return f"timer:{definition.name}"


def resolve_timer_value(definition: TimerEventDefinition, my_task: Any) -> Any:
    text = (definition.expression or "").strip()
    if looks_like_iso8601(text):
        return text
    return my_task.workflow.script_engine.evaluate(my_task, text)


def _as_datetime(value: Any, engine: ClockedEngine, element: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=engine.timezone)
    if isinstance(value, str):
        return parse_datetime(value.strip(), engine.timezone)
    raise TypeError(f"timer '{element}' expects a date-time, got {type(value).__name__}")


def _as_duration(value: Any, element: str) -> Duration | timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        return parse_duration(value.strip())
    raise TypeError(f"timer '{element}' expects an ISO 8601 duration, got {type(value).__name__}")


def _add(start: datetime, duration: Duration | timedelta) -> datetime:
    return start + duration if isinstance(duration, timedelta) else duration.add_to(start)


class CaseflowTimerMixin:
    name: str
    expression: str

    def due_at(self, my_task: Any) -> datetime | None:
        """The due time of this timer for the task, computed once and kept in the task's internal data."""
        raise NotImplementedError

    def has_fired(self, my_task: Any) -> bool:
        key = _timer_key(self)  # type: ignore[arg-type]
        if my_task.internal_data.get(f"{key}:fired"):
            return True
        due = self.due_at(my_task)
        engine: ClockedEngine = my_task.workflow.script_engine
        if due is not None and due <= engine.now():
            my_task.internal_data[f"{key}:fired"] = True
            return True
        return False

    def reset(self, my_task: Any) -> None:
        key = _timer_key(self)  # type: ignore[arg-type]
        my_task.internal_data.pop(key, None)
        my_task.internal_data.pop(f"{key}:fired", None)
        super().reset(my_task)  # type: ignore[misc]

    def details(self, my_task: Any) -> PendingBpmnEvent:
        due = self.due_at(my_task)
        return PendingBpmnEvent(self.name, type(self).__name__, due.isoformat() if due else None)


class CaseflowTimeDate(CaseflowTimerMixin, TimeDateEventDefinition):  # type: ignore[misc]
    def due_at(self, my_task: Any) -> datetime | None:
        key = _timer_key(self)
        stored = my_task.internal_data.get(key)
        if stored is None:
            engine = my_task.workflow.script_engine
            due = _as_datetime(resolve_timer_value(self, my_task), engine, self.name)
            stored = due.isoformat()
            my_task.internal_data[key] = stored
        return datetime.fromisoformat(stored)


class CaseflowDuration(CaseflowTimerMixin, DurationTimerEventDefinition):  # type: ignore[misc]
    def due_at(self, my_task: Any) -> datetime | None:
        key = _timer_key(self)
        stored = my_task.internal_data.get(key)
        if stored is None:
            engine = my_task.workflow.script_engine
            duration = _as_duration(resolve_timer_value(self, my_task), self.name)
            stored = _add(engine.now(), duration).isoformat()
            my_task.internal_data[key] = stored
        return datetime.fromisoformat(stored)


class CaseflowCycle(CaseflowTimerMixin, CycleTimerEventDefinition):  # type: ignore[misc]
    """R[n]/[start/]interval: fires up to n times (unbounded without n); each firing makes a new child."""

    def _state(self, my_task: Any) -> dict[str, Any]:
        key = _timer_key(self)
        state = my_task.internal_data.get(key)
        if state is None:
            engine = my_task.workflow.script_engine
            value = resolve_timer_value(self, my_task)
            if not isinstance(value, str):
                raise TypeError(f"timer '{self.name}' expects an ISO 8601 cycle such as R3/PT10M")
            cycle = parse_cycle(value.strip(), engine.timezone)
            first = cycle.start if cycle.start is not None else cycle.interval.add_to(engine.now())
            state = {
                "remaining": -1 if cycle.repetitions is None else cycle.repetitions,
                "next": first.isoformat(),
                "interval": value.strip(),
                "end": cycle.end.isoformat() if cycle.end else None,
            }
            my_task.internal_data[key] = state
        return state  # type: ignore[no-any-return]

    def due_at(self, my_task: Any) -> datetime | None:
        state = self._state(my_task)
        if state["remaining"] == 0:
            return None
        due = datetime.fromisoformat(state["next"])
        if state["end"] and due > datetime.fromisoformat(state["end"]):
            return None
        return due

    def cycle_complete(self, my_task: Any) -> bool:
        state = self._state(my_task)
        engine: ClockedEngine = my_task.workflow.script_engine
        due = self.due_at(my_task)
        if due is None:
            my_task.internal_data["event_fired"] = True
            return False
        if due <= engine.now():
            cycle = parse_cycle(state["interval"], engine.timezone)
            state["next"] = cycle.interval.add_to(due).isoformat()
            if state["remaining"] > 0:
                state["remaining"] -= 1
            my_task.internal_data[_timer_key(self)] = dict(state)
            return True
        return False

    def has_fired(self, my_task: Any) -> bool:
        return bool(my_task.internal_data.get("event_fired", False))

    def update_task(self, my_task: Any) -> None:
        if self.cycle_complete(my_task):
            for output in my_task.task_spec.outputs:
                child = my_task._add_child(output, TaskState.FUTURE)
                child.task_spec._predict(child, mask=TaskState.NOT_FINISHED_MASK)
                child.task_spec._update(child)


TIMER_CLASSES: dict[str, type[TimerEventDefinition]] = {
    "timeDate": CaseflowTimeDate,
    "timeDuration": CaseflowDuration,
    "timeCycle": CaseflowCycle,
}


# ----------------------------------------------------------------------------------------------- messages
class AddressedMessage(BpmnEvent):  # type: ignore[misc]
    """A message the engine has already correlated: only the listed waiting tasks may catch it."""

    def __init__(self, event_definition: Any, payload: dict[str, Any], task_ids: set[Any],
                 correlations: dict[str, Any] | None = None) -> None:
        super().__init__(event_definition, payload, correlations or {})
        self.task_ids = task_ids


class CaseflowMessageEventDefinition(MessageEventDefinition):  # type: ignore[misc]
    """Messages correlate in the engine, and a throw carries only the declared payload.

    ``payload`` is a list of (variable, expression) pairs; ``to`` optionally names the receiving agency (an
    expression); correlation properties carry retrieval expressions evaluated by the safe evaluator.
    """

    def __init__(self, name: str, correlation_properties: list[CorrelationProperty] | None = None,
                 payload: list[tuple[str, str]] | None = None, to: str | None = None, **kwargs: Any) -> None:
        super().__init__(name, correlation_properties or [], **kwargs)
        self.payload = payload or []
        self.to = to

    def catches(self, my_task: Any, event: Any) -> bool:
        if not isinstance(event, AddressedMessage):
            return False
        return bool(event.event_definition.name == self.name and my_task.id in event.task_ids)

    def catch(self, my_task: Any, event: Any = None) -> None:
        if event is not None:
            my_task.internal_data[self.name] = dict(event.payload or {})
            my_task.workflow.correlations.update(event.correlations or {})
        my_task._set_internal_data(event_fired=True)

    def expected_correlation(self, my_task: Any) -> dict[str, Any]:
        """Key values a message must carry to reach this waiting task (missing value -> never matches)."""
        engine = my_task.workflow.script_engine
        established = my_task.workflow.correlations
        keys: dict[str, Any] = {}
        for prop in self.correlation_properties:
            if prop.name in established:
                keys[prop.name] = established[prop.name]
                continue
            try:
                keys[prop.name] = engine.evaluate(my_task, prop.retrieval_expression)
            except Exception:  # noqa: BLE001 - an unresolved key makes the subscription unmatched, not broken
                keys[prop.name] = _UNRESOLVED
        return keys

    def throw(self, my_task: Any) -> None:
        engine = my_task.workflow.script_engine
        payload = {target: engine.evaluate(my_task, expr) for target, expr in self.payload}
        correlations = {
            prop.name: engine.evaluate(my_task, prop.retrieval_expression) for prop in self.correlation_properties
        }
        target = engine.evaluate(my_task, self.to) if self.to else None
        event = BpmnEvent(self, payload=payload, correlations=correlations)
        event.target_agency = target  # type: ignore[attr-defined]
        event.source_element = my_task.task_spec.bpmn_id  # type: ignore[attr-defined]
        # Messages leave the instance: they are never caught inside the sender.
        my_task.workflow.top_workflow.bpmn_events.append(event)

    def update_task_data(self, my_task: Any) -> None:
        payload = my_task.internal_data.get(self.name)
        if payload:
            my_task.set_data(**payload)

    def details(self, my_task: Any) -> PendingBpmnEvent:
        return PendingBpmnEvent(self.name, "MessageEventDefinition", None, {})


class _Unresolved:
    def __repr__(self) -> str:
        return "<unresolved>"


_UNRESOLVED = _Unresolved()


def is_unresolved(value: Any) -> bool:
    return value is _UNRESOLVED
