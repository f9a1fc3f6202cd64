"""Instance state <-> snapshot, without the spec.

The library's documents embed the full spec in every save; caseflow stores only the instance state and
rebuilds the workflow on the cached spec of its definition. Task data is encoded so that what goes in comes
back: ``date``, ``datetime``, ``Decimal``, ``tuple`` and ``set`` keep their types, and a user's dict that happens
to have a ``"typename"`` key is escaped instead of crashing the load. So do what scripts can make besides:
``timedelta``, ``range`` and dicts with non-string keys.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer.default.event_definition import TimerConditionalEventDefinitionConverter
from SpiffWorkflow.bpmn.serializer.default.workflow import (
    BpmnEventConverter,
    BpmnSubWorkflowConverter,
    TaskConverter,
    WorkflowConverter,
)
from SpiffWorkflow.bpmn.serializer.helpers.encoder import create_encoder
from SpiffWorkflow.bpmn.serializer.helpers.spec import EventDefinitionConverter
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.util.subworkflow import BpmnSubWorkflow
from SpiffWorkflow.camunda.serializer.config import CAMUNDA_CONFIG
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.deep_merge import DeepMerge

from engine.definitions.specs import (
    AddressedMessage,
    CaseflowCycle,
    CaseflowDuration,
    CaseflowMessageEventDefinition,
    CaseflowTimeDate,
)

FORMAT = "caseflow-1/spiff-1.5"
_ESCAPED = "caseflow.dict"
_PAIRS = "caseflow.pairs"


def encode_data(value: Any) -> Any:
    """Encode task data into JSON-safe values with typed markers the registry restores."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict:
        if any(type(k) is not str for k in value):
            # JSON object keys are strings: 1 would come back as "1", a tuple key would not encode at all.
            return {"typename": _PAIRS, "items": [[encode_data(k), encode_data(v)] for k, v in value.items()]}
        items = {k: encode_data(v) for k, v in value.items()}
        if "typename" in value:
            return {"typename": _ESCAPED, "items": items}
        return items
    if kind is list:
        return [encode_data(v) for v in value]
    if kind is tuple:
        return {"typename": "tuple", "items": [encode_data(v) for v in value]}
    if kind is set or kind is frozenset:
        return {"typename": "set", "items": [encode_data(v) for v in value]}
    if kind is datetime:
        return {"typename": "datetime", "value": value.isoformat()}
    if kind is date:
        return {"typename": "date", "value": value.isoformat()}
    if kind is Decimal:
        return {"typename": "Decimal", "value": str(value)}
    if kind is timedelta:
        return {
            "typename": "timedelta",
            "days": value.days,
            "seconds": value.seconds,
            "microseconds": value.microseconds,
        }
    if kind is range:
        return {"typename": "range", "start": value.start, "stop": value.stop, "step": value.step}
    raise TypeError(f"a variable of type {kind.__name__} cannot be stored")


class _TaskConverter(TaskConverter):  # type: ignore[misc]
    def to_dict(self, task: Any) -> dict[str, Any]:
        if task.parent is None:
            data, delta = encode_data(task.data), {}
        else:
            data = {}
            delta = {
                "updates": encode_data(DeepMerge.get_updated_keys(task.parent.data, task.data)),
                "deletions": DeepMerge.get_deleted_keys(task.parent.data, task.data),
            }
        return {
            "id": str(task.id),
            "parent": str(task._parent) if task.parent is not None else None,
            "children": [str(child) for child in task._children],
            "last_state_change": task.last_state_change,
            "state": task.state,
            "task_spec": task.task_spec.name,
            "triggered": task.triggered,
            "internal_data": self.registry.convert(task.internal_data),
            "data": data,
            "delta": delta,
        }


def _workflow_dict(converter: WorkflowConverter, workflow: Any) -> dict[str, Any]:
    return {
        "data": encode_data(converter.registry.clean(workflow.data)),
        "correlations": encode_data(workflow.correlations),
        "last_task": str(workflow.last_task.id) if workflow.last_task is not None else None,
        "success": workflow.success,
        "completed": workflow.completed,
        "tasks": converter.mapping_to_dict(workflow.tasks),
        "root": str(workflow.task_tree.id),
    }


class _SubWorkflowConverter(BpmnSubWorkflowConverter):  # type: ignore[misc]
    def to_dict(self, workflow: Any) -> dict[str, Any]:
        dct = _workflow_dict(self, workflow)
        dct["parent_task_id"] = str(workflow.parent_task_id)
        dct["spec"] = workflow.spec.name
        return dct


class _MessageConverter(EventDefinitionConverter):  # type: ignore[misc]
    def to_dict(self, definition: Any) -> dict[str, Any]:
        dct: dict[str, Any] = super().to_dict(definition)
        dct["correlation_properties"] = self.correlation_properties_to_dict(definition.correlation_properties)
        dct["payload"] = [list(p) for p in definition.payload]
        dct["to"] = definition.to
        dct["sender"] = getattr(definition, "sender", None)
        return dct

    def from_dict(self, dct: dict[str, Any]) -> Any:
        dct["correlation_properties"] = self.correlation_properties_from_dict(dct["correlation_properties"])
        dct["payload"] = [tuple(p) for p in dct.get("payload", [])]
        return super().from_dict(dct)


class _AddressedMessageConverter(BpmnEventConverter):  # type: ignore[misc]
    """A delivered message an event-based gateway keeps in its ``seen_events``; its addressing is spent."""

    def from_dict(self, dct: dict[str, Any]) -> Any:
        return AddressedMessage(
            self.registry.restore(dct["event_definition"]),
            self.registry.restore(dct["payload"]),
            set(),
            self.mapping_from_dict(dct["correlations"]),
        )


def _registry() -> Any:
    config = dict(CAMUNDA_CONFIG)
    config[Task] = _TaskConverter
    config[BpmnSubWorkflow] = _SubWorkflowConverter
    config[CaseflowMessageEventDefinition] = _MessageConverter
    config[AddressedMessage] = _AddressedMessageConverter
    for timer in (CaseflowTimeDate, CaseflowDuration, CaseflowCycle):
        config[timer] = TimerConditionalEventDefinitionConverter
    registry = BpmnWorkflowSerializer.configure(config)
    registry.register(date, lambda v: {"value": v.isoformat()}, lambda v: date.fromisoformat(v["value"]))
    registry.register(Decimal, lambda v: {"value": str(v)}, lambda v: Decimal(v["value"]))
    # tuple, set and escaped dicts are produced by encode_data; only their restoration is registered.
    restore = registry.restore
    registry.convert_from_dict["tuple"] = lambda v: tuple(restore(v["items"]))
    registry.convert_from_dict["set"] = lambda v: set(restore(v["items"]))
    registry.convert_from_dict[_ESCAPED] = lambda v: {k: restore(x) for k, x in v["items"].items()}
    registry.convert_from_dict[_PAIRS] = lambda v: {restore(k): restore(x) for k, x in v["items"]}
    registry.convert_from_dict["range"] = lambda v: range(v["start"], v["stop"], v["step"])
    return registry


class SnapshotCodec:
    """Dumps and loads instance state; one per process (the registry is built once)."""

    def __init__(self) -> None:
        self.registry = _registry()
        self._workflow_converter = WorkflowConverter(BpmnWorkflow, self.registry)
        self._encoder = create_encoder(self.registry)

    def dumps(self, workflow: Any) -> str:
        self.registry._encoder_mode = True
        try:
            return json.dumps(
                self._as_dict(workflow), cls=self._encoder, separators=(",", ":"), ensure_ascii=False
            )
        finally:
            self.registry._encoder_mode = False

    def _as_dict(self, workflow: Any) -> dict[str, Any]:
        dct = _workflow_dict(self._workflow_converter, workflow)
        dct["subprocesses"] = self._workflow_converter.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        dct["format"] = FORMAT
        return dct

    def loads(
        self, text: str | bytes, spec: Any, subprocess_specs: dict[str, Any], script_engine: Any
    ) -> Any:
        dct = json.loads(text)
        if dct.get("format") != FORMAT:
            raise ValueError(f"snapshot format {dct.get('format')!r} is not {FORMAT!r}")
        workflow = BpmnWorkflow(spec, subprocess_specs, script_engine=script_engine, deserializing=True)
        registry = self.registry
        workflow.tasks = self._workflow_converter.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        workflow.success = dct["success"]
        workflow.completed = dct.get("completed", False)
        workflow.correlations = registry.restore(dct.get("correlations", {}))
        if isinstance(dct["last_task"], str):
            workflow.last_task = workflow.tasks.get(UUID(dct["last_task"]))
        workflow.data = registry.restore(dct.get("data", {}))
        _restore_subprocesses(registry, dct["subprocesses"], workflow)
        workflow.bpmn_events = registry.restore(dct.get("bpmn_events", []))
        return workflow


def _restore_subprocesses(registry: Any, dct: dict[str, Any], workflow: Any, top: Any = None) -> None:
    from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import SubWorkflowTask

    top = top or workflow
    for task in list(workflow.tasks.values()):
        if isinstance(task.task_spec, SubWorkflowTask) and str(task.id) in dct:
            sub = registry.restore(dct.pop(str(task.id)), task=task, top_workflow=top)
            top.subprocesses[task.id] = sub
            sub.completed_event.connect(task.task_spec._on_subworkflow_completed, task)
            _restore_subprocesses(registry, dct, sub, top)
