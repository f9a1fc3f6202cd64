"""One process instance in memory: advance it, read what it waits for, collect what it sends.

This is the only module that drives SpiffWorkflow. It does no IO: commands load a snapshot, call these
functions, and write the projections and the outgoing messages in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent, EventBasedGateway
from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import EventSubprocess
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

from engine.calendar import BusinessCalendar
from engine.definitions.compiler import ProcessModel
from engine.definitions.mappings import CaseflowCallActivity
from engine.definitions.specs import (
    WAIT_FAILED,
    AddressedMessage,
    CaseflowMessageEventDefinition,
    CaseflowTimerMixin,
    CaseflowUserTask,
    ExternalServiceTask,
    deadline_note_key,
    is_unresolved,
)
from engine.lang.iso8601 import looks_like_iso8601, parse_datetime, parse_duration
from engine.runtime.script_engine import SafeScriptEngine
from engine.runtime.snapshot import SnapshotCodec

_DUE_NOTE = "caseflow:due_note"  # internal data: the note on a dueDate past the known calendar data


class IncidentRaised(Exception):
    """The instance stopped at an element that failed; the error is recorded, not raised to the caller."""

    def __init__(self, element_id: str | None, task_id: str | None, message: str, error_type: str) -> None:
        super().__init__(message)
        self.element_id = element_id
        self.task_id = task_id
        self.message = message
        self.error_type = error_type


@dataclass
class UserTaskView:
    id: str
    element_id: str
    name: str | None
    lane: str | None
    candidate_groups: list[str]
    candidate_users: list[str]
    assignee: str | None
    due_at: datetime | None
    form_key: str | None
    priority: int
    documentation: str | None
    requires: tuple[str, ...] = ()  # caseflow:requires
    # Set when the due time ran past the known holiday arrangement (estimated Monday–Friday): shown to staff.
    deadline_note: str | None = None


@dataclass
class SubscriptionView:
    task_id: str
    element_id: str
    message_name: str
    correlation: dict[str, Any]
    matchable: bool


@dataclass
class TimerView:
    task_id: str
    element_id: str
    due_at: datetime
    deadline_note: str | None = None  # see UserTaskView.deadline_note


@dataclass
class JobView:
    task_id: str
    element_id: str
    topic: str


@dataclass
class OutgoingMessage:
    name: str
    payload: dict[str, Any]
    correlations: dict[str, Any]
    to: Any
    source_element: str | None
    sender: Any = None  # caseflow:from, evaluated at the throw (None: the engine decides)


@dataclass
class Projection:
    completed: bool
    user_tasks: list[UserTaskView] = field(default_factory=list)
    subscriptions: list[SubscriptionView] = field(default_factory=list)
    timers: list[TimerView] = field(default_factory=list)
    jobs: list[JobView] = field(default_factory=list)
    active_elements: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


DEADLINE_FLAG = "deadline_estimated"


def deadline_flags(existing: Any, projection: Projection) -> list[Any] | None:
    """The instance's flags (``process_instance.flags``): those already stored, plus one per element whose
    deadline ran past the known holiday arrangement. A flag stays after its task ends: that deadline was
    estimated, and the case's record should say so."""
    flags: list[Any] = list(existing or [])
    seen = {(f.get("kind"), f.get("element_id")) for f in flags if isinstance(f, dict)}
    waits: list[tuple[str, datetime | None, str | None]] = [
        (t.element_id, t.due_at, t.deadline_note) for t in projection.user_tasks
    ]
    waits += [(t.element_id, t.due_at, t.deadline_note) for t in projection.timers]
    for element_id, due, note in waits:
        if note and (DEADLINE_FLAG, element_id) not in seen:
            seen.add((DEADLINE_FLAG, element_id))
            flags.append(
                {
                    "kind": DEADLINE_FLAG,
                    "element_id": element_id,
                    "due_at": due.isoformat() if due else None,
                    "note": note,
                }
            )
    return flags or None


def _task_in_traceback(exc: BaseException) -> Any:
    """The innermost task the library was working on when it failed with a plain Python error (e.g. a
    TypeError from a multi-instance collection that is None), so that the incident names the element."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("my_task")
        if isinstance(candidate, Task):
            found = candidate
        tb = tb.tb_next
    return found


def _embedded_in(workflow: Any, sub: Any) -> bool:
    """Is ``sub`` an embedded subprocess of ``workflow`` itself (through embedded subprocesses only)?"""
    current = sub
    while current is not workflow:
        owner = workflow.get_task_from_id(current.parent_task_id)
        # The Camunda parser builds an embedded subProcess on the library's CallActivity class too; a real
        # call activity is caseflow's (camunda:in/out).
        if owner is None or isinstance(owner.task_spec, CaseflowCallActivity | EventSubprocess):
            return False
        current = owner.workflow
    return True


def _task_error(exc: BaseException, workflow: Any) -> IncidentRaised:
    task = getattr(exc, "task", None)
    if task is None:
        failed = workflow.get_tasks(state=TaskState.ERROR)
        task = failed[0] if failed else _task_in_traceback(exc)
    element_id = task.task_spec.bpmn_id if task is not None else None
    cause = getattr(exc, "exception", None) or exc.__cause__ or exc.__context__
    message = str(exc)
    if isinstance(exc, SpiffWorkflowException):
        # Its str() always appends ". " and the notes; keep the message itself clean.
        message = ". ".join(str(part) for part in [*exc.args[:1], *exc.notes] if str(part))
    if cause is not None and str(cause) and str(cause) not in message:
        message = f"{message}: {type(cause).__name__}: {cause}"
    if not message:
        message = type(exc).__name__
    error_type = type(cause).__name__ if cause is not None else type(exc).__name__
    return IncidentRaised(element_id, str(task.id) if task is not None else None, message, error_type)


class Runtime:
    def __init__(
        self, clock: Callable[[], datetime], timezone: tzinfo, calendar: BusinessCalendar | None = None
    ) -> None:
        self.clock = clock
        self.timezone = timezone
        self.codec = SnapshotCodec()
        self.calendar = calendar or BusinessCalendar.official()
        self._script_engine = SafeScriptEngine(clock, timezone, calendar=self.calendar)

    # -------------------------------------------------------------------------------------- lifecycle
    def new(self, model: ProcessModel, variables: dict[str, Any], initiator: str | None = None) -> Any:
        workflow = BpmnWorkflow(model.spec, model.subprocess_specs, script_engine=self._script_engine)
        for start_event in model.spec.start.outputs:
            name = getattr(start_event, "initiator", None)
            if name and name not in variables:
                variables = {**variables, name: initiator}
        start = workflow.get_tasks(state=TaskState.READY)
        for task in start:
            task.set_data(**variables)
        workflow.data.setdefault("data_objects", {})
        return workflow

    def load(self, model: ProcessModel, snapshot: str | bytes) -> Any:
        return self.codec.loads(snapshot, model.spec, model.subprocess_specs, self._script_engine)

    def dump(self, workflow: Any) -> str:
        return self.codec.dumps(workflow)

    def run(self, workflow: Any) -> None:
        """Advance until every path waits; a failing element becomes an :class:`IncidentRaised`."""
        try:
            workflow.do_engine_steps()
        except RecursionError as exc:
            raise IncidentRaised(None, None, "the process recursed too deeply", "RecursionError") from exc
        except Exception as exc:
            raise _task_error(exc, workflow) from exc

    def start_timer_fired(self, workflow: Any, element_id: str) -> None:
        for task in workflow.get_tasks(state=TaskState.WAITING, spec_name=element_id):
            definition = task.task_spec.event_definition
            if isinstance(definition, CaseflowTimerMixin):
                task.internal_data[f"timer:{definition.name}:fired"] = True
        self.refresh_timers(workflow)

    def refresh_timers(self, workflow: Any) -> None:
        try:
            workflow.refresh_timers()
        except Exception as exc:
            raise _task_error(exc, workflow) from exc
        self.run(workflow)

    def find_task(self, workflow: Any, task_id: str) -> Any:
        try:
            return workflow.get_task_from_id(UUID(task_id))
        except (ValueError, KeyError, TypeError):
            return None

    def complete_user_task(self, workflow: Any, task_id: str, variables: dict[str, Any]) -> None:
        task = self.find_task(workflow, task_id)
        if task is None or task.state != TaskState.READY or not task.task_spec.manual:
            raise LookupError(task_id)
        task.set_data(**variables)
        try:
            task.run()
        except Exception as exc:
            raise _task_error(exc, workflow) from exc
        self.run(workflow)

    def complete_job(self, workflow: Any, task_id: str, variables: dict[str, Any]) -> None:
        task = self.find_task(workflow, task_id)
        if (
            task is None
            or task.state != TaskState.STARTED
            or not isinstance(task.task_spec, ExternalServiceTask)
        ):
            raise LookupError(task_id)
        task.set_data(**variables)
        try:
            task.complete()
        except Exception as exc:  # completion hooks (e.g. output parameters) fail as an incident
            raise _task_error(exc, workflow) from exc
        self.run(workflow)

    def deliver(
        self,
        workflow: Any,
        task_ids: Iterable[str],
        name: str,
        payload: dict[str, Any],
        correlation: dict[str, Any],
    ) -> int:
        ids = {UUID(t) for t in task_ids}
        definition = CaseflowMessageEventDefinition(name)
        event = AddressedMessage(definition, payload, ids, correlation)
        catching = [
            t
            for t in list(workflow.event_manager.tasks.values())
            if t.id in ids and t.task_spec.catches(t, event)
        ]
        try:
            for task in catching:
                task.task_spec.catch(task, event)
                task.task_spec._update(task)
        except Exception as exc:
            raise _task_error(exc, workflow) from exc
        self.run(workflow)
        return len(catching)

    def retry(self, workflow: Any, task_id: str | None, variables: dict[str, Any]) -> None:
        failed = workflow.get_tasks(state=TaskState.ERROR)
        for task in failed:
            if task_id is None or str(task.id) == task_id:
                if variables:
                    task.set_data(**variables)
                if task.internal_data.pop(WAIT_FAILED, False):
                    self._rearm(workflow, task, variables)
                    continue
                task._set_state(TaskState.READY)
        self.run(workflow)

    def _rearm(self, workflow: Any, task: Any, variables: dict[str, Any]) -> None:
        """A catching event that failed while arming its wait (a timer value that is no valid time) waits
        again; running it would skip the wait. It re-reads its parent's data when updated, so the fix goes
        there too."""
        parent = task.parent
        if variables and parent is not None:
            parent.set_data(**variables)
        task._set_state(TaskState.FUTURE)
        try:
            task.task_spec._update(task)
            # Siblings the failure kept from being updated (e.g. later boundary events of the same activity).
            for sibling in parent.children if parent is not None else []:
                if sibling is not task and sibling.state == TaskState.FUTURE:
                    sibling.task_spec._update(sibling)
        except Exception as exc:
            raise _task_error(exc, workflow) from exc

    def cancel(self, workflow: Any) -> None:
        workflow.cancel()

    # ------------------------------------------------------------------------------------------ views
    def drain_messages(self, workflow: Any) -> list[OutgoingMessage]:
        out = []
        for event in workflow.get_events():
            definition = event.event_definition
            if isinstance(definition, CaseflowMessageEventDefinition):
                out.append(
                    OutgoingMessage(
                        name=definition.name,
                        payload=dict(event.payload or {}),
                        correlations=dict(event.correlations or {}),
                        to=getattr(event, "target_agency", None),
                        source_element=getattr(event, "source_element", None),
                        sender=getattr(event, "sender_agency", None),
                    )
                )
        return out

    def waits_for_messages(self, workflow: Any) -> bool:
        """Cheap check before a full projection: does any waiting event catch a message?"""
        for task in workflow.event_manager.tasks.values():
            definition = getattr(task.task_spec, "event_definition", None)
            if isinstance(definition, CaseflowMessageEventDefinition):
                return True
            if isinstance(definition, MultipleEventDefinition) and any(
                isinstance(d, CaseflowMessageEventDefinition) for d in definition.event_definitions
            ):
                return True
        return False

    def variables(self, workflow: Any) -> dict[str, Any]:
        task = workflow.last_task
        if task is None:
            return {}
        data = dict(task.data)
        # BPMN: an embedded subprocess works on its process's variables, but the library keeps them inside
        # the subprocess until it completes. While one runs, its latest completed task holds the current
        # values (e.g. the documents of a whole investigation phase). A call activity is a process of its own
        # whose camunda:in/out decide what crosses: its variables stay out.
        for sub in sorted(workflow.get_active_subprocesses(), key=lambda s: s.depth):
            if sub.last_task is not None and _embedded_in(workflow, sub):
                data.update(sub.last_task.data)
        return {k: v for k, v in data.items() if not callable(v)}

    def project(self, workflow: Any) -> Projection:
        projection = Projection(completed=bool(workflow.is_completed()))
        for task in workflow.get_tasks(
            state=TaskState.READY | TaskState.STARTED | TaskState.WAITING | TaskState.ERROR
        ):
            spec = task.task_spec
            element_id = getattr(spec, "bpmn_id", None)
            if element_id is None:
                continue
            if task.state == TaskState.ERROR:
                projection.errors.append((str(task.id), element_id))
            if task.state in (TaskState.READY, TaskState.STARTED, TaskState.WAITING, TaskState.ERROR):
                projection.active_elements.append(element_id)
            if task.state == TaskState.READY and isinstance(spec, CaseflowUserTask):
                try:
                    projection.user_tasks.append(self._user_task(task))
                except Exception as exc:  # e.g. camunda:assignee="${nobody_set_this}"
                    # The task cannot be offered to anyone: it fails (an incident); a retry with the missing
                    # variables makes it READY again and evaluates its assignment anew.
                    task.error()
                    raise _task_error(exc, workflow) from exc
            elif task.state == TaskState.READY and spec.manual:
                projection.user_tasks.append(self._plain_manual_task(task))
            elif task.state == TaskState.STARTED and isinstance(spec, ExternalServiceTask):
                projection.jobs.append(JobView(str(task.id), element_id, spec.topic))
            elif task.state == TaskState.WAITING and isinstance(spec, CatchingEvent):
                self._waits(task, projection)
        return projection

    def _waits(self, task: Any, projection: Projection) -> None:
        spec = task.task_spec
        definition = spec.event_definition
        items = (
            definition.event_definitions if isinstance(definition, MultipleEventDefinition) else [definition]
        )
        for index, item in enumerate(items):
            # An event-based gateway waits for its catch events itself (the library moves their definitions
            # onto the gateway, in the order of its outgoing flows): report the catch event the wait is for.
            element_id = spec.bpmn_id
            if isinstance(spec, EventBasedGateway) and index < len(spec.outputs):
                element_id = getattr(spec.outputs[index], "bpmn_id", None) or element_id
            if isinstance(item, CaseflowMessageEventDefinition):
                expected = item.expected_correlation(task)
                matchable = not any(is_unresolved(v) for v in expected.values())
                projection.subscriptions.append(
                    SubscriptionView(
                        str(task.id),
                        element_id,
                        item.name,
                        {k: v for k, v in expected.items() if not is_unresolved(v)},
                        matchable,
                    )
                )
            elif isinstance(item, CaseflowTimerMixin):
                due = item.due_at(task)
                if due is not None and not task.internal_data.get(f"timer:{item.name}:fired"):
                    note = task.internal_data.get(deadline_note_key(item))
                    projection.timers.append(TimerView(str(task.id), element_id, due, note))

    def _evaluate(self, task: Any, text: str) -> Any:
        return self._script_engine.evaluate(task, text)

    def _dynamic(self, task: Any, text: str | None) -> Any:
        if text and ("${" in text or "#{" in text):
            return self._evaluate(task, text)
        return text

    def _user_task(self, task: Any) -> UserTaskView:
        spec: CaseflowUserTask = task.task_spec
        assignment = spec.assignment
        groups: list[str] = []
        for group in assignment.candidate_groups:
            value = self._dynamic(task, group)
            groups.extend(value if isinstance(value, list) else [str(value)])
        if spec.lane and spec.lane not in groups:
            groups.insert(0, spec.lane)
        users: list[str] = []
        for user in assignment.candidate_users:
            value = self._dynamic(task, user)
            users.extend(value if isinstance(value, list) else [str(value)])
        assignee = self._dynamic(task, assignment.assignee)
        due_at, deadline_note = self._deadline(task, assignment.due_date, assignment.calendar)
        return UserTaskView(
            id=str(task.id),
            element_id=spec.bpmn_id,
            name=spec.bpmn_name,
            lane=spec.lane,
            candidate_groups=groups,
            candidate_users=users,
            assignee=str(assignee) if assignee else None,
            due_at=due_at,
            form_key=assignment.form_key or (spec.form.key if getattr(spec, "form", None) else None),
            priority=assignment.priority,
            documentation=spec.documentation,
            requires=assignment.requires,
            deadline_note=deadline_note,
        )

    def _plain_manual_task(self, task: Any) -> UserTaskView:
        spec = task.task_spec
        return UserTaskView(
            id=str(task.id),
            element_id=spec.bpmn_id,
            name=spec.bpmn_name,
            lane=spec.lane,
            candidate_groups=[spec.lane] if spec.lane else [],
            candidate_users=[],
            assignee=None,
            due_at=None,
            form_key=None,
            priority=50,
            documentation=spec.documentation,
        )

    def _deadline(
        self, task: Any, text: str | None, calendar: str | None
    ) -> tuple[datetime | None, str | None]:
        """The task's due time and its note: its ``camunda:dueDate`` (on the business calendar when the task
        has ``caseflow:calendar``), or else the earliest pending timer attached to it as a boundary event."""
        if text:
            due = self._due(task, text, calendar)
            return due, task.internal_data.get(_DUE_NOTE) if due is not None else None
        return self._boundary_deadline(task)

    def _boundary_deadline(self, task: Any) -> tuple[datetime | None, str | None]:
        parent = task.parent
        if parent is None:
            return None, None
        earliest: tuple[datetime, str | None] | None = None
        for sibling in parent.children:
            spec = sibling.task_spec
            definition = getattr(spec, "event_definition", None)
            if (
                sibling is task
                or not isinstance(spec, BoundaryEvent)
                or not isinstance(definition, CaseflowTimerMixin)
                or sibling.state != TaskState.WAITING
                or sibling.internal_data.get(f"timer:{definition.name}:fired")
            ):
                continue
            try:
                due = definition.due_at(sibling)
            except Exception:  # noqa: S112 - a timer that cannot be computed fails on its own task, not this one
                continue
            if due is not None and (earliest is None or due < earliest[0]):
                earliest = (due, sibling.internal_data.get(deadline_note_key(definition)))
        return earliest if earliest is not None else (None, None)

    def _due(self, task: Any, text: str | None, calendar: str | None = None) -> datetime | None:
        if not text:
            return None
        stored = task.internal_data.get("caseflow:due")
        if stored:
            return datetime.fromisoformat(stored)
        value: Any = text.strip()
        if not looks_like_iso8601(value):
            value = self._evaluate(task, value)
        due: datetime | None
        if isinstance(value, datetime):
            due = value if value.tzinfo else value.replace(tzinfo=self.timezone)
        elif isinstance(value, str) and value.upper().startswith("P") and calendar is not None:
            deadline = self.calendar.deadline(calendar, self.clock(), parse_duration(value))
            due = deadline.due
            if deadline.note:
                task.internal_data[_DUE_NOTE] = deadline.note
        elif isinstance(value, str) and value.upper().startswith("P"):
            due = parse_duration(value).add_to(self.clock())
        elif isinstance(value, str):
            due = parse_datetime(value, self.timezone)
        else:
            due = None
        if due is not None:
            task.internal_data["caseflow:due"] = due.isoformat()
        return due
