"""Turn deployed resources into executable process models, or refuse them with a precise error.

Every resource is parsed by the hardened parser (``xml.parse_xml``) and handed to the library as a tree, so the
library never touches bytes. Parsing and validation happen once per definition; the engine caches the result.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC as _UTC
from typing import Any

from lxml import etree
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.event_definitions.conditional import ConditionalEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import EventBasedGateway
from SpiffWorkflow.bpmn.specs.mixins.exclusive_gateway import ExclusiveGateway
from SpiffWorkflow.bpmn.specs.mixins.inclusive_gateway import InclusiveGateway
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import LoopTask
from SpiffWorkflow.bpmn.specs.mixins.parallel_gateway import ParallelGateway
from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import CallActivity, SubWorkflowTask
from SpiffWorkflow.specs.MultiChoice import MultiChoice

from engine.definitions.confidential import (
    SPEC_FLAG,
    is_confidential,
    literal_recipient_problem,
    message_throws,
)
from engine.definitions.mappings import CaseflowCallActivity, LocalVariablesMixin
from engine.definitions.parser import CaseflowParser
from engine.definitions.specs import (
    AssignmentScriptTask,
    CaseflowMessageEventDefinition,
    CaseflowTimerMixin,
    CaseflowUserTask,
)
from engine.definitions.xml import DEFAULT_MAX_BYTES, parse_xml
from engine.errors import InvalidModel
from engine.lang.iso8601 import (
    TimerValueError,
    looks_like_iso8601,
    parse_cycle,
    parse_datetime,
    parse_duration,
)

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
DMN_NAMESPACES = (
    "http://www.omg.org/spec/DMN/20151101/dmn.xsd",
    "http://www.omg.org/spec/DMN/20180521/MODEL/",
    "https://www.omg.org/spec/DMN/20191111/MODEL/",
    "https://www.omg.org/spec/DMN/20230324/MODEL/",
)
_ISO_ATTEMPT = re.compile(r"^(P\d|PT\d|R\d*/|\d{4}-\d{2}-\d{2})", re.IGNORECASE)
_ELEMENT_REPR = re.compile(r"<Element \{[^}]*\}(\w+) at 0x[0-9a-f]+>")
# Quartz/Unix cron (5 to 7 fields), as Camunda 7 accepts in timeCycle.
_CRON = re.compile(r"^[0-9*?/,#LW-]+(\s+[0-9A-Za-z*?/,#LW-]+){4,6}$")


@dataclass(frozen=True)
class TimerStart:
    element_id: str
    kind: str
    expression: str


@dataclass
class ProcessModel:
    key: str
    name: str | None
    resource: str
    spec: Any
    subprocess_specs: dict[str, Any]
    message_starts: tuple[str, ...] = ()
    timer_starts: tuple[TimerStart, ...] = ()
    lines: dict[str, int] = field(default_factory=dict)
    confidential: bool = False  # caseflow:confidential="true": need-to-know instances (discipline clues)

    def process_specs(self) -> list[Any]:
        """The process's own spec and those of the subprocesses and called processes compiled with it."""
        return [self.spec, *(s for s in self.subprocess_specs.values() if s is not None)]

    def task_specs(self) -> Iterable[Any]:
        """Every task spec of :meth:`process_specs`."""
        return _all_task_specs(self.spec, self.subprocess_specs)


@dataclass
class Compiled:
    processes: dict[str, ProcessModel]
    decisions: list[str]
    bpmn_resources: list[str]


@dataclass
class Checkers:
    """The safe evaluator's static checks, injected so that this layer does not depend on the runtime."""

    expression: Callable[[str], None]
    script: Callable[[str], None]


def _kind(root: etree._Element, resource: str) -> str:
    ns = etree.QName(root).namespace or ""
    local = etree.QName(root).localname
    if ns == BPMN_NS and local == "definitions":
        return "bpmn"
    if ns in DMN_NAMESPACES and local == "definitions":
        return "dmn"
    raise InvalidModel(
        f"root element <{local}> in namespace '{ns}' is neither BPMN 2.0 nor DMN definitions",
        resource=resource,
        line=root.sourceline,
    )


def _clean(message: str) -> str:
    return _ELEMENT_REPR.sub(lambda m: f"<{m.group(1)}>", message).strip()


class _Lines:
    def __init__(self) -> None:
        self.by_resource: dict[str, dict[str, int]] = {}

    def add(self, resource: str, root: etree._Element) -> None:
        table: dict[str, int] = {}
        for node in root.iter():
            if not isinstance(node.tag, str):
                continue
            ident = node.get("id")
            if ident and ident not in table and node.sourceline:
                table[ident] = node.sourceline
        self.by_resource[resource] = table

    def locate(self, element_id: str | None) -> tuple[str | None, int | None]:
        if not element_id:
            return None, None
        for resource, table in self.by_resource.items():
            if element_id in table:
                return resource, table[element_id]
        return None, None


def _model_error(exc: BaseException, lines: _Lines, fallback_resource: str | None) -> InvalidModel:
    element_id = getattr(exc, "id", None) or None
    resource, line = lines.locate(element_id)
    line = line or (getattr(exc, "line_number", None) or None)
    message = exc.args[0] if exc.args else type(exc).__name__
    if not isinstance(message, str):
        message = repr(message)
    return InvalidModel(
        _clean(message),
        resource=resource or getattr(exc, "file_name", None) or fallback_resource,
        line=line if isinstance(line, int) else None,
        element_id=element_id,
    )


def compile_resources(
    resources: Sequence[tuple[str, bytes]],
    checkers: Checkers,
    *,
    libraries: Sequence[tuple[str, bytes]] = (),
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Compiled:
    """Parse and validate ``resources`` (name, bytes); ``libraries`` supply processes they call."""
    parser = CaseflowParser()
    lines = _Lines()
    own_process_ids: dict[str, str] = {}
    bpmn_resources: list[str] = []
    decisions: list[str] = []
    trees: list[tuple[str, str, etree._Element]] = []
    for name, content in list(resources) + list(libraries):
        root = parse_xml(content, name, max_bytes)
        trees.append((name, _kind(root, name), root))
        lines.add(name, root)
    own_names = {name for name, _ in resources}
    # DMN first: business rule tasks resolve their decisions while the BPMN is parsed.
    for name, kind, root in trees:
        if kind != "dmn":
            continue
        try:
            parser.add_dmn_xml(root, filename=name)
        except Exception as exc:
            raise _model_error(exc, lines, name) from None
        if name in own_names:
            decisions.extend(d.get("id") for d in root.iter(f"{{{root.nsmap.get(None, '')}}}decision"))
    for name, kind, root in trees:
        if kind != "bpmn":
            continue
        if name in own_names:
            _refuse_listeners(root, name)
            bpmn_resources.append(name)
            for proc in root.iter(f"{{{BPMN_NS}}}process"):
                if proc.get("isExecutable", "true") == "true" and proc.get("id"):
                    own_process_ids[proc.get("id")] = name
        try:
            parser.add_bpmn_xml(root, filename=name)
        except Exception as exc:
            raise _model_error(exc, lines, name) from None

    if not own_process_ids and not decisions:
        raise InvalidModel(
            'no executable process (isExecutable="true") and no decision found',
            resource=", ".join(n for n, _ in resources) or None,
        )

    processes: dict[str, ProcessModel] = {}
    for process_id, resource in own_process_ids.items():
        processes[process_id] = _compile_process(parser, process_id, resource, lines, checkers)
    _refuse_recursive_calls(processes, parser, lines)
    for model in processes.values():
        _try_instantiate(model, lines)
    return Compiled(processes=processes, decisions=decisions, bpmn_resources=bpmn_resources)


def _refuse_listeners(root: etree._Element, resource: str) -> None:
    """Camunda listeners run Java or script code on engine events; dropping them silently would change what
    the model does, so they are refused with the element they sit on."""
    for tag in ("executionListener", "taskListener"):
        for node in root.iter(f"{{{CAMUNDA_NS}}}{tag}"):
            owner = node.getparent()
            while owner is not None and not owner.get("id"):
                owner = owner.getparent()
            raise InvalidModel(
                f"camunda:{tag} runs Java or script code on engine events, which caseflow does not do; move "
                "the work into a service task (an external job) or a script task",
                resource=resource,
                line=node.sourceline,
                element_id=owner.get("id") if owner is not None else None,
            )


def _compile_process(
    parser: CaseflowParser, process_id: str, resource: str, lines: _Lines, checkers: Checkers
) -> ProcessModel:
    try:
        spec = parser.get_spec(process_id)
        subprocess_specs = parser.get_subprocess_specs(process_id)
    except RecursionError:
        raise InvalidModel(
            "the process nests or calls itself without end", resource=resource, element_id=process_id
        ) from None
    except Exception as exc:
        raise _model_error(exc, lines, resource) from None
    missing = [name for name, sub in subprocess_specs.items() if sub is None]
    if missing:
        raise InvalidModel(
            f"called process '{missing[0]}' is not deployed", resource=resource, element_id=process_id
        )
    message_starts: list[str] = []
    timer_starts: list[TimerStart] = []
    for task_spec in _all_task_specs(spec, subprocess_specs):
        _check_task_spec(task_spec, lines, checkers)
    for task_spec in spec.start.outputs:
        definition = getattr(task_spec, "event_definition", None)
        if isinstance(definition, CaseflowMessageEventDefinition):
            message_starts.append(definition.name)
        elif isinstance(definition, CaseflowTimerMixin):
            timer_starts.append(TimerStart(task_spec.bpmn_id, definition.kind, definition.expression))
    name = parser.get_process_parser(process_id).get_name()
    confidential = is_confidential(parser.get_process_parser(process_id).node)
    if confidential:
        _check_confidential(spec, subprocess_specs, resource, lines)
    return ProcessModel(
        key=process_id,
        name=name if name != process_id else None,
        resource=resource,
        spec=spec,
        subprocess_specs=subprocess_specs,
        message_starts=tuple(message_starts),
        timer_starts=tuple(timer_starts),
        lines=lines.by_resource.get(resource, {}),
        confidential=confidential,
    )


def _check_confidential(spec: Any, subprocess_specs: dict[str, Any], resource: str, lines: _Lines) -> None:
    """A confidential process's messages go only to the discipline commission (also from what it calls)."""
    for task_spec, definition in message_throws(_all_task_specs(spec, subprocess_specs)):
        problem = literal_recipient_problem(definition.to)
        if problem:
            where, line = lines.locate(task_spec.bpmn_id)
            raise InvalidModel(problem, resource=where or resource, line=line, element_id=task_spec.bpmn_id)
    setattr(spec, SPEC_FLAG, True)


def _all_task_specs(spec: Any, subprocess_specs: dict[str, Any]) -> Iterable[Any]:
    yield from spec.task_specs.values()
    for sub in subprocess_specs.values():
        if sub is not None:
            yield from sub.task_specs.values()


def _check_task_spec(task_spec: Any, lines: _Lines, checkers: Checkers) -> None:
    element_id = getattr(task_spec, "bpmn_id", None)

    def check(text: str | None, what: str, script: bool = False) -> None:
        if text is None or not text.strip():
            return
        try:
            (checkers.script if script else checkers.expression)(text)
        except Exception as exc:
            resource, line = lines.locate(element_id)
            raise InvalidModel(
                f"{what}: {exc}", resource=resource, line=line, element_id=element_id
            ) from None

    if isinstance(task_spec, MultiChoice):
        for condition, _target in task_spec.cond_task_specs:
            text = condition.args[0] if getattr(condition, "args", None) else None
            check(text if isinstance(text, str) else None, "condition")
    if isinstance(task_spec, AssignmentScriptTask):
        check(task_spec.script, "script", script=True)
    if isinstance(task_spec, LoopTask):
        for attr in ("cardinality", "condition", "completion_condition"):
            value = getattr(task_spec, attr, None)
            if isinstance(value, str):
                check(value, attr.replace("_", " "))
    if isinstance(task_spec, CaseflowUserTask):
        for attr in ("assignee", "due_date"):
            value = getattr(task_spec.assignment, attr)
            if value and ("${" in value or "#{" in value):
                check(value, attr.replace("_", " "))
    if isinstance(task_spec, CaseflowCallActivity):
        for direction, mappings in (("in", task_spec.in_mappings), ("out", task_spec.out_mappings)):
            for mapping in mappings or ():
                check(mapping.expression, mapping.describe(direction))
    if isinstance(task_spec, LocalVariablesMixin):
        for kind, parameters in (
            ("inputParameter", task_spec.input_parameters),
            ("outputParameter", task_spec.output_parameters),
        ):
            for parameter in parameters:
                for text in parameter.value.expressions():
                    check(text, f"camunda:{kind} '{parameter.name}'")
    definition = getattr(task_spec, "event_definition", None)
    definitions = (
        list(definition.event_definitions)
        if isinstance(definition, MultipleEventDefinition)
        else [definition]
    )
    for item in definitions:
        if isinstance(item, CaseflowTimerMixin):
            _check_timer(item, check, lines, element_id)
        elif isinstance(item, CaseflowMessageEventDefinition):
            for target, expr in item.payload:
                check(expr, f"payload '{target}'")
            for prop in item.correlation_properties:
                check(prop.retrieval_expression, f"correlation key '{prop.name}'")
            for attribute, text in (("caseflow:to", item.to), ("caseflow:from", item.sender)):
                if text and "${" in text:
                    check(text, attribute)
        elif isinstance(item, ConditionalEventDefinition):
            check(item.expression, "condition")


def _check_timer(
    timer: Any, check: Callable[[str | None, str], None], lines: _Lines, element_id: str | None
) -> None:
    text = timer.expression.strip()
    if _CRON.match(text):
        resource, line = lines.locate(element_id)
        raise InvalidModel(
            f"timer: '{text}' is a cron expression, which caseflow does not support; use ISO 8601: a date "
            "(2026-03-01T09:00:00+08:00), a duration (PT5M) or a cycle (R/PT5M, R5/2026-03-01T09:00:00Z/P1D)",
            resource=resource,
            line=line,
            element_id=element_id,
        )
    if not looks_like_iso8601(text):
        if _ISO_ATTEMPT.match(text):
            # 'PT1X' or 'R3/PT' is a mistyped ISO 8601 value, not a variable name to look up at run time.
            resource, line = lines.locate(element_id)
            raise InvalidModel(
                f"timer: '{text}' is not a valid ISO 8601 date, duration or cycle",
                resource=resource,
                line=line,
                element_id=element_id,
            )
        check(text, "timer")
        return
    try:
        if timer.kind == "timeDate":
            parse_datetime(text, _UTC)
        elif timer.kind == "timeDuration":
            parse_duration(text)
        else:
            parse_cycle(text, _UTC)
    except (TimerValueError, ValueError) as exc:
        resource, line = lines.locate(element_id)
        raise InvalidModel(f"timer: {exc}", resource=resource, line=line, element_id=element_id) from None


def _refuse_recursive_calls(
    processes: dict[str, ProcessModel], parser: CaseflowParser, lines: _Lines
) -> None:
    graph: dict[str, list[tuple[str, str]]] = {}
    for model in processes.values():
        for name, spec in [(model.key, model.spec), *model.subprocess_specs.items()]:
            if spec is None or name in graph:
                continue
            graph[name] = [
                (ts.spec, ts.bpmn_id)
                for ts in spec.task_specs.values()
                if isinstance(ts, CallActivity) and isinstance(getattr(ts, "spec", None), str)
            ]
    state: dict[str, int] = {}

    def visit(node: str) -> None:
        state[node] = 1
        for target, element_id in graph.get(node, []):
            if state.get(target) == 1:
                resource, line = lines.locate(element_id)
                raise InvalidModel(
                    f"call activity calls '{target}', which (directly or indirectly) calls back into it; "
                    "recursive calls are refused because they never end",
                    resource=resource,
                    line=line,
                    element_id=element_id,
                )
            if state.get(target) is None:
                visit(target)
        state[node] = 2

    for node in graph:
        if state.get(node) is None:
            visit(node)


def _loop_without_gateway(model: ProcessModel) -> str | None:
    """The first element of a cycle of sequence flows that passes no gateway (which makes the library's
    prediction recurse without end), so that the refusal names where the loop is."""
    for spec in model.process_specs():
        state: dict[str, int] = {}
        for task_spec in spec.task_specs.values():
            if task_spec.name not in state and not isinstance(task_spec, _GATEWAYS):
                found = _cycle_from(task_spec, state)
                if found:
                    return found
    return None


_GATEWAYS = (ExclusiveGateway, InclusiveGateway, ParallelGateway, EventBasedGateway)


def _cycle_from(task_spec: Any, state: dict[str, int]) -> str | None:
    """Depth-first search over non-gateway specs (1 = on the current path, 2 = done)."""
    state[task_spec.name] = 1
    for output in task_spec.outputs:
        if isinstance(output, _GATEWAYS):
            continue
        if state.get(output.name) == 1:
            return getattr(output, "bpmn_id", None) or output.name  # type: ignore[no-any-return]
        if output.name not in state:
            found = _cycle_from(output, state)
            if found:
                return found
    state[task_spec.name] = 2
    return None


def _try_instantiate(model: ProcessModel, lines: _Lines) -> None:
    limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(limit, 3000))
        BpmnWorkflow(model.spec, model.subprocess_specs)
        # Embedded subprocesses are instantiated only when reached: try them now, not in a running case.
        for sub in model.subprocess_specs.values():
            if sub is not None:
                BpmnWorkflow(sub, model.subprocess_specs)
    except RecursionError:
        element_id = _loop_without_gateway(model)
        resource, line = lines.locate(element_id)
        raise InvalidModel(
            "the sequence flows form a loop that passes no gateway; route the loop through an exclusive "
            "gateway",
            resource=resource or model.resource,
            line=line,
            element_id=element_id or model.key,
        ) from None
    except ValidationException as exc:
        raise _model_error(exc, lines, model.resource) from None
    except Exception as exc:
        raise InvalidModel(
            f"cannot be instantiated: {_clean(str(exc))}", resource=model.resource, element_id=model.key
        ) from None
    finally:
        sys.setrecursionlimit(limit)


def is_subworkflow(task_spec: Any) -> bool:
    return isinstance(task_spec, SubWorkflowTask)
