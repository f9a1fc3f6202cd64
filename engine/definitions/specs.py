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

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.specs.defaults import BoundaryEvent, ScriptTask, ServiceTask
from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import (
    EscalationEventDefinition,
    SignalEventDefinition,
)
from SpiffWorkflow.bpmn.specs.event_definitions.message import CorrelationProperty, MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    CycleTimerEventDefinition,
    DurationTimerEventDefinition,
    TimeDateEventDefinition,
    TimerEventDefinition,
)
from SpiffWorkflow.bpmn.util import BpmnEvent, PendingBpmnEvent
from SpiffWorkflow.camunda.specs.business_rule_task import BusinessRuleTask
from SpiffWorkflow.camunda.specs.multiinstance_task import (
    ParallelMultiInstanceTask,
    SequentialMultiInstanceTask,
)
from SpiffWorkflow.camunda.specs.user_task import UserTask
from SpiffWorkflow.dmn.engine.DMNEngine import DMNEngine
from SpiffWorkflow.dmn.specs.business_rule_task_mixin import BusinessRuleTaskMixin
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.util.task import TaskState

from engine.calendar import BusinessCalendar
from engine.definitions.confidential import refused_recipient
from engine.lang.iso8601 import (
    Cycle,
    Duration,
    looks_like_iso8601,
    parse_cycle,
    parse_datetime,
    parse_duration,
)


class ClockedEngine(Protocol):
    """What specs need from the workflow's script engine besides ``evaluate``."""

    def now(self) -> datetime: ...

    @property
    def timezone(self) -> Any: ...

    @property
    def business_calendar(self) -> BusinessCalendar: ...

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
    calendar: str | None = None  # caseflow:calendar: how a dueDate duration is counted (engine.calendar)
    requires: tuple[str, ...] = ()  # caseflow:requires: what the claimant must hold


class CaseflowUserTask(UserTask):  # type: ignore[misc]
    def __init__(
        self, wf_spec: Any, bpmn_id: str, form: Any, assignment: Assignment | None = None, **kwargs: Any
    ) -> None:
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


def deadline_note_key(definition: TimerEventDefinition) -> str:
    """Internal-data key of the note on a timer whose due time ran past the known calendar data."""
    return f"{_timer_key(definition)}:note"


# Set on a catching task whose timer could not be computed: a retry arms the wait again instead of running it.
WAIT_FAILED = "caseflow:wait_failed"


def _timer_failed(definition: TimerEventDefinition, my_task: Any, exc: Exception) -> WorkflowTaskException:
    """A timer whose value is not a valid time stops its task as an error (an incident) naming the element."""
    cause: BaseException = exc
    if isinstance(exc, WorkflowTaskException):
        cause = exc.__cause__ or exc.__context__ or exc
    text = cause.args[0] if isinstance(cause, WorkflowTaskException) and cause.args else str(cause)
    my_task.workflow.top_workflow.event_manager.remove_task(my_task)
    my_task.internal_data[WAIT_FAILED] = True
    my_task._set_state(TaskState.ERROR)
    error = WorkflowTaskException(
        f"timer '{my_task.task_spec.bpmn_id}' ({definition.expression}): {text}",
        task=my_task,
        exception=cause if isinstance(cause, Exception) else exc,
    )
    error.__cause__ = cause
    return error


class CaseflowTimerMixin:
    name: str
    expression: str
    kind: str  # timeDate | timeDuration | timeCycle, set by the parser
    label: str | None  # the event's name as drawn
    # caseflow:calendar on a timeDuration: working_days | calendar_days | hours (engine.calendar); None counts
    # elapsed time on the wall clock, as before the business calendar existed.
    calendar: str | None = None

    def due_at(self, my_task: Any) -> datetime | None:
        """The due time of this timer for the task, computed once and kept in the task's internal data."""
        raise NotImplementedError

    def checked_due_at(self, my_task: Any) -> datetime | None:
        """:meth:`due_at`, with a value that is no valid time turned into an error of the task."""
        try:
            return self.due_at(my_task)
        except Exception as exc:  # expression and ISO 8601 errors alike
            raise _timer_failed(self, my_task, exc)  # noqa: B904 - the cause is set explicitly

    def has_fired(self, my_task: Any) -> bool:
        key = _timer_key(self)
        if my_task.internal_data.get(f"{key}:fired"):
            return True
        due = self.checked_due_at(my_task)
        engine: ClockedEngine = my_task.workflow.script_engine
        if due is not None and due <= engine.now():
            my_task.internal_data[f"{key}:fired"] = True
            return True
        return False

    def reset(self, my_task: Any) -> None:
        key = _timer_key(self)
        my_task.internal_data.pop(key, None)
        my_task.internal_data.pop(f"{key}:fired", None)
        my_task.internal_data.pop(f"{key}:note", None)
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
            if self.calendar is None:
                stored = _add(engine.now(), duration).isoformat()
            else:
                deadline = engine.business_calendar.deadline(self.calendar, engine.now(), duration)
                stored = deadline.due.isoformat()
                if deadline.note:
                    my_task.internal_data[deadline_note_key(self)] = deadline.note
            my_task.internal_data[key] = stored
        return datetime.fromisoformat(stored)


def _resolve_cycle(definition: Any, my_task: Any) -> tuple[str, Cycle]:
    """The cycle's text (literal, or computed by its expression) and its parsed form."""
    value = resolve_timer_value(definition, my_task)
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 cycle such as R3/PT10M, got {type(value).__name__}")
    text = value.strip()
    return text, parse_cycle(text, my_task.workflow.script_engine.timezone)


class CaseflowCycle(CaseflowTimerMixin, CycleTimerEventDefinition):  # type: ignore[misc]
    """R[n]/[start/]interval: fires up to n times (unbounded without n); each firing makes a new child.

    Used for the start event of a non-interrupting event subprocess; elsewhere the parser uses
    :class:`CaseflowCycleStep`.
    """

    def _state(self, my_task: Any) -> dict[str, Any]:
        key = _timer_key(self)
        state = my_task.internal_data.get(key)
        if state is None:
            engine = my_task.workflow.script_engine
            text, cycle = _resolve_cycle(self, my_task)
            first = cycle.start if cycle.start is not None else cycle.interval.add_to(engine.now())
            state = {
                "remaining": -1 if cycle.repetitions is None else cycle.repetitions,
                "next": first.isoformat(),
                "interval": text,
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
        try:
            complete = self.cycle_complete(my_task)
        except Exception as exc:
            raise _timer_failed(self, my_task, exc)  # noqa: B904 - the cause is set explicitly
        if complete:
            for output in my_task.task_spec.outputs:
                child = my_task._add_child(output, TaskState.FUTURE)
                child.task_spec._predict(child, mask=TaskState.NOT_FINISHED_MASK)
                child.task_spec._update(child)


class CaseflowCycleStep(CaseflowTimerMixin, TimerEventDefinition):  # type: ignore[misc]
    """A timeCycle where one waiting task stands for one firing.

    On an event a token passes once (an intermediate catch event, an interrupting boundary event, a process
    start event inside the instance) it fires once, at the cycle's first due time, as in Camunda (repeated
    starts of a timer start event are the engine's start timers). On a non-interrupting boundary event,
    :class:`CaseflowBoundaryEvent` arms a fresh task with :meth:`next_state` for each further repetition.
    """

    def _state(self, my_task: Any) -> dict[str, Any]:
        key = _timer_key(self)
        state = my_task.internal_data.get(key)
        if state is None:
            engine = my_task.workflow.script_engine
            text, _cycle = _resolve_cycle(self, my_task)
            state = {"cycle": text, "anchor": engine.now().isoformat(), "fired": 0}
            my_task.internal_data[key] = state
        return state  # type: ignore[no-any-return]

    def _due(self, state: dict[str, Any], engine: ClockedEngine) -> datetime | None:
        cycle = parse_cycle(state["cycle"], engine.timezone)
        return cycle.next_after(datetime.fromisoformat(state["anchor"]), state["fired"])

    def due_at(self, my_task: Any) -> datetime | None:
        return self._due(self._state(my_task), my_task.workflow.script_engine)

    def next_state(self, my_task: Any) -> dict[str, Any] | None:
        """Internal data for the task that waits for the next repetition; None when the cycle is over."""
        state = {**self._state(my_task)}
        state["fired"] += 1
        if self._due(state, my_task.workflow.script_engine) is None:
            return None
        return {_timer_key(self): state}


TIMER_CLASSES: dict[str, type[TimerEventDefinition]] = {
    "timeDate": CaseflowTimeDate,
    "timeDuration": CaseflowDuration,
    "timeCycle": CaseflowCycle,
}


# ------------------------------------------------------------------------------------- boundary events
_RECURRING = (MessageEventDefinition, SignalEventDefinition, EscalationEventDefinition)


class CaseflowBoundaryEvent(BoundaryEvent):  # type: ignore[misc]
    """A non-interrupting boundary event stays armed while its activity runs (BPMN): each occurrence starts its
    own path and a fresh task waits for the next one. The library's task completes after the first occurrence,
    so a second escalation or message was lost; timer cycles spawned their paths under the waiting task, so
    the paths vanished when the activity completed and the waiting task was cancelled."""

    def _run_hook(self, my_task: Any) -> Any:
        armed_next = None if self.cancel_activity else self._next_occurrence(my_task)
        result = super()._run_hook(my_task)
        if armed_next is not None:
            self._arm_again(my_task, armed_next)
        return result

    def _next_occurrence(self, my_task: Any) -> dict[str, Any] | None:
        definition = self.event_definition
        if isinstance(definition, CaseflowCycleStep):
            return definition.next_state(my_task)
        if isinstance(definition, _RECURRING):
            return {}
        return None

    def _arm_again(self, my_task: Any, internal_data: dict[str, Any]) -> None:
        split = my_task.parent
        if split is None:
            return
        activity = [t for t in split.children if not isinstance(t.task_spec, BoundaryEvent)]
        if not activity or activity[0].has_state(TaskState.FINISHED_MASK):
            return
        again = split._add_child(self, TaskState.WAITING)
        again.internal_data.update(internal_data)
        self._predict(again, mask=TaskState.NOT_FINISHED_MASK)
        self._update(again)


# ----------------------------------------------------------------------------------------------- messages
class AddressedMessage(BpmnEvent):  # type: ignore[misc]
    """A message the engine has already correlated: only the listed waiting tasks may catch it."""

    def __init__(
        self,
        event_definition: Any,
        payload: dict[str, Any],
        task_ids: set[Any],
        correlations: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(event_definition, payload, correlations or {})
        self.task_ids = task_ids


class CaseflowMessageEventDefinition(MessageEventDefinition):  # type: ignore[misc]
    """Messages correlate in the engine, and a throw carries only the declared payload.

    ``payload`` is a list of (variable, expression) pairs; ``to`` optionally names the receiving agency (an
    expression); correlation properties carry retrieval expressions evaluated by the safe evaluator.
    """

    def __init__(
        self,
        name: str,
        correlation_properties: list[CorrelationProperty] | None = None,
        payload: list[tuple[str, str]] | None = None,
        to: str | None = None,
        sender: str | None = None,
        accepts: list[tuple[str, str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, correlation_properties or [], **kwargs)
        self.payload = payload or []
        self.to = to
        self.sender = sender  # caseflow:from
        # caseflow:payload on a catch: (variable, message field) pairs, the only variables a message may set;
        # None: every variable the message carries (messages between instances of one engine)
        self.accepts = accepts

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
            except Exception:
                keys[prop.name] = _UNRESOLVED
        return keys

    def throw(self, my_task: Any) -> None:
        engine = my_task.workflow.script_engine
        payload = {target: engine.evaluate(my_task, expr) for target, expr in self.payload}
        correlations = {
            prop.name: engine.evaluate(my_task, prop.retrieval_expression)
            for prop in self.correlation_properties
        }
        target = address(engine, my_task, self.to)
        refused = refused_recipient(my_task.workflow, target)  # confidential: only to the commission
        if refused:
            raise WorkflowTaskException(refused, task=my_task)
        event = BpmnEvent(self, payload=payload, correlations=correlations)
        event.target_agency = target
        event.sender_agency = address(engine, my_task, self.sender)
        event.source_element = my_task.task_spec.bpmn_id
        # Messages leave the instance: they are never caught inside the sender.
        my_task.workflow.top_workflow.bpmn_events.append(event)

    def update_task_data(self, my_task: Any) -> None:
        payload = my_task.internal_data.get(self.name)
        if payload and self.accepts is not None:
            payload = {target: payload[source] for target, source in self.accepts if source in payload}
        if payload:
            my_task.set_data(**payload)

    def details(self, my_task: Any) -> PendingBpmnEvent:
        return PendingBpmnEvent(self.name, "MessageEventDefinition", None, {})


def address(engine: Any, my_task: Any, text: str | None) -> Any:
    """caseflow:to / caseflow:from: a literal agency code, or an expression when it holds ``${...}``."""
    if not text or not text.strip():
        return None
    if "${" not in text:
        return text.strip().strip("'\"")  # also a quoted literal: 'public_security'
    return engine.evaluate(my_task, text)


class _Unresolved:
    def __repr__(self) -> str:
        return "<unresolved>"


_UNRESOLVED = _Unresolved()


def is_unresolved(value: Any) -> bool:
    return value is _UNRESOLVED


# ----------------------------------------------------------------------------------------- business rules
SUPPORTED_HIT_POLICIES = ("UNIQUE", "FIRST", "ANY", "COLLECT")
MAP_DECISION_RESULTS = ("resultList", "singleResult", "singleEntry", "collectEntries")
_FEEL_RANGE = re.compile(r"^([\[\]\(])\s*(.+?)\s*\.\.\s*(.+?)\s*([\[\]\)])$", re.S)
_FEEL_NOT = re.compile(r"^not\s*\((.*)\)$", re.S)


def split_unary_tests(text: str) -> list[str]:
    """Split a DMN input entry on its top-level commas (not inside quotes, brackets or parentheses)."""
    parts: list[str] = []
    depth = 0
    quote = ""
    current = ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += char
    parts.append(current.strip())
    return [p for p in parts if p]


class CaseflowDMNEngine(DMNEngine):  # type: ignore[misc]
    """The library's decision table, with the FEEL input entries Camunda Modeler writes and strict policies.

    An input entry may be a comma list (any of them matches: ``"major","general"``), ``not(...)``, or a range
    (``[1000..5000[``); the library compared the input with a tuple and silently matched nothing. A UNIQUE
    table that matches more than one rule is an error (the library took the first); FIRST and ANY take the
    first match.
    """

    def decide(self, task: Any) -> list[Any]:
        table = self.decision_table
        rules = [rule for rule in table.rules if self._DMNEngine__check_rule(rule, task)]
        if table.hit_policy == "UNIQUE" and len(rules) > 1:
            numbers = ", ".join(str(rule.row_number) for rule in rules)
            raise WorkflowTaskException(
                f"decision table '{table.id}' has hit policy UNIQUE but rules {numbers} all match", task=task
            )
        if table.hit_policy in ("UNIQUE", "FIRST", "ANY"):
            return rules[:1]
        return rules

    def evaluate(self, input_expr: Any, match_expr: Any, task: Any) -> bool:
        text = match_expr.strip() if isinstance(match_expr, str) else match_expr
        if text is None or text in ("", "-"):
            return True
        negated = _FEEL_NOT.match(text)
        if negated:
            return not self._any_of(input_expr, negated.group(1), task)
        return self._any_of(input_expr, text, task)

    def _any_of(self, input_expr: Any, text: str, task: Any) -> bool:
        for test in split_unary_tests(text):
            bounds = _FEEL_RANGE.match(test)
            if bounds:
                low = ">=" if bounds.group(1) == "[" else ">"
                high = "<=" if bounds.group(4) == "]" else "<"
                test = f"? {low} ({bounds.group(2)}) and ? {high} ({bounds.group(3)})"
            if super().evaluate(input_expr, test, task):
                return True
        return False


def map_decision_result(results: list[dict[str, Any]], mapping: str, decision: str) -> Any:
    """Camunda's ``camunda:mapDecisionResult`` over the matched rules' outputs."""
    if mapping == "resultList":
        return results
    if mapping == "collectEntries":
        if any(len(r) > 1 for r in results):
            raise ValueError(f"decision '{decision}': collectEntries needs exactly one output per rule")
        return [next(iter(r.values())) for r in results if r]
    if len(results) > 1:
        raise ValueError(
            f"decision '{decision}': {mapping} needs at most one matching rule, got {len(results)}"
        )
    if not results:
        return None
    if mapping == "singleEntry":
        if len(results[0]) != 1:
            raise ValueError(f"decision '{decision}': singleEntry needs exactly one output column")
        return next(iter(results[0].values()))
    return results[0]


class CaseflowBusinessRuleTask(BusinessRuleTask):  # type: ignore[misc]
    """A business rule task; with ``camunda:resultVariable`` the result is stored under that one name,
    mapped by ``camunda:mapDecisionResult`` as in Camunda. Without it the outputs become variables (the
    library's way)."""

    def __init__(
        self,
        wf_spec: Any,
        bpmn_id: str,
        result_variable: str | None = None,
        map_decision_result: str = "resultList",
        **kwargs: Any,
    ) -> None:
        super().__init__(wf_spec, bpmn_id, **kwargs)  # the library's dmnEngine keyword passes through
        self.result_variable = result_variable
        self.map_decision_result = map_decision_result

    def _run_hook(self, my_task: Any) -> bool:
        if not self.result_variable:
            return bool(super()._run_hook(my_task))
        decision = self.dmnEngine.decision_table.id
        try:
            results = [dict(rule.output_as_dict(my_task)) for rule in self.dmnEngine.decide(my_task)]
            value = map_decision_result(results, self.map_decision_result, decision)
        except SpiffWorkflowException:
            raise
        except Exception as exc:  # a failing decision stops this task as an incident
            raise WorkflowTaskException(str(exc), task=my_task, exception=exc) from exc
        my_task.data[self.result_variable] = value
        return bool(super(BusinessRuleTaskMixin, self)._run_hook(my_task))


# ------------------------------------------------------------------------------------------ multi-instance
class _CollectionMerge:
    """Camunda multi-instance over ``camunda:collection``: the variables an instance sets when it completes
    become instance variables (the last instance to finish wins), as in Camunda. The library only wrote the
    element variable back into the collection and dropped everything else the user entered."""

    data_output: Any
    output_item: Any

    def merge_child(self, workflow: Any, child: Any) -> None:
        if self.data_output is not None and self.output_item is not None:
            parent = child.parent
            local = {self.output_item.bpmn_id, self.data_output.bpmn_id}
            parent.data.update(
                {
                    k: v
                    for k, v in child.data.items()
                    if k not in local and (k not in parent.data or parent.data[k] != v)
                }
            )
        super().merge_child(workflow, child)  # type: ignore[misc]


class CaseflowParallelMultiInstance(_CollectionMerge, ParallelMultiInstanceTask):  # type: ignore[misc]
    pass


class CaseflowSequentialMultiInstance(_CollectionMerge, SequentialMultiInstanceTask):  # type: ignore[misc]
    pass


MULTI_INSTANCE_CLASSES: dict[type, type] = {
    ParallelMultiInstanceTask: CaseflowParallelMultiInstance,
    SequentialMultiInstanceTask: CaseflowSequentialMultiInstance,
}
