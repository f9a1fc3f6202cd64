"""caseflow's BPMN parser: SpiffWorkflow's Camunda parser with caseflow's specs plugged in.

Extended only through ``OVERRIDE_PARSER_CLASSES``; the library is never patched. Reads what the Camunda
parser ignores (``camunda:candidateGroups``, ``candidateUsers``, ``assignee``, ``dueDate``, ``priority``,
``camunda:type="external"`` / ``camunda:topic``) and caseflow's own extension attributes
(namespace :data:`CASEFLOW_NS`): ``caseflow:payload`` and ``caseflow:to`` on message throws,
``caseflow:correlationKeys`` on messages and catches, ``caseflow:topic`` on service tasks.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, NoReturn

from lxml import etree
from SpiffWorkflow.bpmn.parser.event_parsers import (
    BoundaryEventParser,
    EndEventParser,
    EventBasedGatewayParser,
    EventDefinitionParser,
    IntermediateCatchEventParser,
    IntermediateThrowEventParser,
    ReceiveTaskParser,
    SendTaskParser,
    StartEventParser,
)
from SpiffWorkflow.bpmn.parser.task_parsers import SubprocessParser
from SpiffWorkflow.bpmn.parser.TaskParser import TaskParser
from SpiffWorkflow.bpmn.parser.util import first, full_tag
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.defaults import (
    EndEvent,
    EventBasedGateway,
    IntermediateCatchEvent,
    IntermediateThrowEvent,
    ReceiveTask,
    SendTask,
    StartEvent,
)
from SpiffWorkflow.bpmn.specs.event_definitions.message import CorrelationProperty
from SpiffWorkflow.camunda.parser.CamundaParser import NSMAP as CAMUNDA_NSMAP
from SpiffWorkflow.camunda.parser.CamundaParser import CamundaParser
from SpiffWorkflow.camunda.parser.task_spec import (
    BusinessRuleTaskParser,
    CallActivityParser,
    CamundaTaskParser,
    UserTaskParser,
)

from engine.calendar import CALENDAR_KINDS, CalendarError
from engine.calendar.core import check_duration
from engine.definitions.confidential import parse_requires
from engine.definitions.forms import FormDefinitionError, parse_form
from engine.definitions.mappings import (
    LOCAL_VARIABLE_CLASSES,
    CaseflowCallActivity,
    Parameter,
    ParameterValue,
    VariableMapping,
)
from engine.definitions.specs import (
    MAP_DECISION_RESULTS,
    MULTI_INSTANCE_CLASSES,
    SUPPORTED_HIT_POLICIES,
    TIMER_CLASSES,
    Assignment,
    AssignmentScriptTask,
    CaseflowBoundaryEvent,
    CaseflowBusinessRuleTask,
    CaseflowCycleStep,
    CaseflowDMNEngine,
    CaseflowMessageEventDefinition,
    CaseflowUserTask,
    ExternalServiceTask,
)
from engine.lang.iso8601 import TimerValueError, looks_like_iso8601, parse_duration

CASEFLOW_NS = "http://caseflow.local/schema/bpmn/1.0"
CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
NSMAP = {**CAMUNDA_NSMAP, "caseflow": CASEFLOW_NS}

SUPPORTED_SCRIPT_FORMATS = {"", "python", "text/x-python", "caseflow", "expression", "juel"}


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _ext(node: Any, name: str) -> str | None:
    value = node.get(f"{{{CASEFLOW_NS}}}{name}")
    if value is None:
        value = node.get(f"{{{CAMUNDA_NS}}}{name}")
    return value  # type: ignore[no-any-return]


def parse_payload(text: str | None) -> list[tuple[str, str]]:
    """``caseflow:payload="case_no, summary=clue_summary"`` -> [(case_no, case_no), (summary, clue_summary)]."""
    pairs = []
    for part in _split(text):
        target, _, expr = part.partition("=")
        pairs.append((target.strip(), (expr or target).strip()))
    return pairs


_CALENDAR_EVENTS = ("boundaryEvent", "intermediateCatchEvent")
_CATCHING = ("boundaryEvent", "intermediateCatchEvent", "startEvent", "receiveTask")
_IDENTIFIER = re.compile(r"^[A-Za-z_\u00c0-\uffff][A-Za-z0-9_\u00c0-\uffff]*$")


def _local_name(node: Any) -> str:
    tag = node.tag if isinstance(node.tag, str) else ""
    return tag.rsplit("}", 1)[-1]


def _calendar(parser: Any, duration: str | None) -> str | None:
    """``caseflow:calendar`` of the parser's element, checked: a known kind, and a literal duration the kind
    can count (``PT3H`` is no number of working days). None when the element has none."""
    value: str | None = parser.node.get(f"{{{CASEFLOW_NS}}}calendar")
    if value is None:
        return None
    kind = value.strip()
    if kind not in CALENDAR_KINDS:
        raise ValidationException(
            f"caseflow:calendar '{value}' is not one of {', '.join(CALENDAR_KINDS)}",
            node=parser.node,
            file_name=parser.filename,
        )
    if duration is not None and looks_like_iso8601(duration.strip()):
        try:
            check_duration(kind, parse_duration(duration.strip()))
        except TimerValueError:
            pass  # the compiler reports a malformed duration with its own message
        except CalendarError as exc:
            raise ValidationException(
                f"caseflow:calendar '{kind}': {exc}", node=parser.node, file_name=parser.filename
            ) from None
    return kind


def _spawns_paths(node: Any) -> bool:
    """A timeCycle on a non-interrupting event-subprocess start event starts a path at each firing from one
    waiting task (CaseflowCycle). Everywhere else one waiting task is one firing (CaseflowCycleStep): an event a
    token passes fires once, and a non-interrupting boundary event arms itself again (CaseflowBoundaryEvent)."""
    if etree.QName(node).localname != "startEvent":
        return False
    return (node.get("isInterrupting") or "true").strip().lower() == "false"


class CaseflowEventParserMixin(EventDefinitionParser):  # type: ignore[misc]
    def parse_message_event(self, message_event: Any) -> CaseflowMessageEventDefinition:
        message_ref = message_event.get("messageRef")
        correlations: list[CorrelationProperty] = []
        if message_ref is not None:
            message = None
            for candidate in self.doc_xpath(".//bpmn:message"):
                if candidate.get("id") == message_ref:
                    message = candidate
                    break
            if message is None:
                raise ValidationException(
                    f"messageRef '{message_ref}' names no <message> in this file",
                    node=self.node,
                    file_name=self.filename,
                )
            # A message's name is optional in BPMN: fall back to its id.
            name = message.get("name") or message.get("id")
            correlations = list(self.get_message_correlations(message_ref))
            declared = message.get(f"{{{CASEFLOW_NS}}}correlationKeys")
        else:
            name = self.node.get("name") or self.node.get("id")
            declared = None
        declared_here = self.node.get(f"{{{CASEFLOW_NS}}}correlationKeys")
        known = {prop.name for prop in correlations}
        for key in _split(declared_here or declared):
            var, _, expr = key.partition("=")
            if var.strip() not in known:
                correlations.append(CorrelationProperty(var.strip(), (expr or var).strip(), []))
        payload = parse_payload(self.node.get(f"{{{CASEFLOW_NS}}}payload"))
        to = self.node.get(f"{{{CASEFLOW_NS}}}to")
        sender = self.node.get(f"{{{CASEFLOW_NS}}}from")
        accepts = None
        if _local_name(self.node) in _CATCHING and self.node.get(f"{{{CASEFLOW_NS}}}payload") is not None:
            # On a catch, caseflow:payload lists the only variables a message may set ("filed" or
            # "police_reasons=reasons"): a reply from another agency cannot overwrite anything else.
            accepts = payload
            payload = []
            for target, source in accepts:
                if not _IDENTIFIER.match(target) or not _IDENTIFIER.match(source):
                    raise ValidationException(
                        f"caseflow:payload on a catching element lists variable names ('name' or "
                        f"'variable=field'); '{target}={source}' is not one",
                        node=self.node,
                        file_name=self.filename,
                    )
        return CaseflowMessageEventDefinition(
            name,
            correlations,
            payload=payload,
            to=to,
            sender=sender,
            accepts=accepts,
            description=self.get_event_description(message_event),
        )

    def parse_timer_event(self, event: Any) -> Any:
        description = self.get_event_description(event)
        for tag, cls in TIMER_CLASSES.items():
            node = first(self.xpath(f".//bpmn:{tag}"))
            if node is not None:
                if tag == "timeCycle" and not _spawns_paths(self.node):
                    cls = CaseflowCycleStep
                text = (node.text or "").strip()
                if not text:
                    raise ValidationException(
                        f"timer <{tag}> is empty", node=self.node, file_name=self.filename
                    )
                timer = cls(self.node.get("id"), text, description=description)
                timer.label = self.node.get("name")
                timer.kind = tag
                timer.calendar = self._timer_calendar(tag, text)
                return timer
        raise ValidationException(
            "timer event has no timeDate, timeDuration or timeCycle", node=self.node, file_name=self.filename
        )

    def _timer_calendar(self, tag: str, text: str) -> str | None:
        kind = _calendar(self, text if tag == "timeDuration" else None)
        if kind is None:
            return None
        where = etree.QName(self.node).localname
        if where not in _CALENDAR_EVENTS or tag != "timeDuration":
            raise ValidationException(
                f"caseflow:calendar applies to a timeDuration on a boundary or intermediate catch event, not to "
                f"a {tag} on a {where}",
                node=self.node,
                file_name=self.filename,
            )
        return kind


class _StartEventParser(CaseflowEventParserMixin, StartEventParser):  # type: ignore[misc]
    def create_task(self) -> Any:
        task = StartEventParser.create_task(self)
        # camunda:initiator names the variable that receives the id of the user who started the instance.
        task.initiator = (self.node.get(f"{{{CAMUNDA_NS}}}initiator") or "").strip() or None
        return task


class _EndEventParser(CaseflowEventParserMixin, EndEventParser):  # type: ignore[misc]
    def create_task(self) -> Any:
        return EndEventParser.create_task(self)


class _CatchEventParser(CaseflowEventParserMixin, IntermediateCatchEventParser):  # type: ignore[misc]
    def create_task(self) -> Any:
        return IntermediateCatchEventParser.create_task(self)


class _ThrowEventParser(CaseflowEventParserMixin, IntermediateThrowEventParser):  # type: ignore[misc]
    def create_task(self) -> Any:
        return IntermediateThrowEventParser.create_task(self)


class _BoundaryEventParser(CaseflowEventParserMixin, BoundaryEventParser):  # type: ignore[misc]
    def create_task(self) -> Any:
        return BoundaryEventParser.create_task(self)


class _SendTaskParser(CaseflowEventParserMixin, SendTaskParser):  # type: ignore[misc]
    def create_task(self) -> Any:
        return SendTaskParser.create_task(self)


class _ReceiveTaskParser(CaseflowEventParserMixin, ReceiveTaskParser):  # type: ignore[misc]
    def create_task(self) -> Any:
        return ReceiveTaskParser.create_task(self)


class _EventBasedGatewayParser(CaseflowEventParserMixin, EventBasedGatewayParser):  # type: ignore[misc]
    def create_task(self) -> Any:
        return EventBasedGatewayParser.create_task(self)


_COLLECTION_NAME = re.compile(r"^[$#]\{\s*(\w+)\s*\}$")


class _CamundaLoopMixin(CamundaTaskParser):  # type: ignore[misc]
    def _add_multiinstance_task(self, loop_characteristics: Any) -> None:
        """``camunda:collection`` names the variable holding the collection, bare or as ``${name}`` (as
        Camunda Modeler writes it); the library took the whole text as the variable name and failed at run
        time."""
        attribute = f"{{{CAMUNDA_NS}}}collection"
        text = (loop_characteristics.get(attribute) or "").strip()
        if text:
            bare = _COLLECTION_NAME.match(text)
            name = bare.group(1) if bare else text
            if not name.isidentifier():
                raise ValidationException(
                    f"camunda:collection '{text}' must name the variable that holds the collection "
                    "(reviewers or ${reviewers}); compute the collection into a variable first",
                    node=self.node,
                    file_name=self.filename,
                )
            loop_characteristics.set(attribute, name)
        super()._add_multiinstance_task(loop_characteristics)
        # Same state, one method more (see _CollectionMerge): swapping the class of the fresh spec keeps the
        # library's construction of it.
        self.task.__class__ = MULTI_INSTANCE_CLASSES.get(type(self.task), type(self.task))


class _UserTaskParser(_CamundaLoopMixin, UserTaskParser):  # type: ignore[misc]
    def create_task(self) -> Any:
        node = self.node
        # caseflow's typed form replaces the library's (which drops formData unless a formKey is set).
        try:
            form = parse_form(node, _ext(node, "formKey"))
        except FormDefinitionError as exc:
            raise ValidationException(str(exc), node=node, file_name=self.filename) from None
        priority_text = _ext(node, "priority")
        try:
            priority = int(priority_text) if priority_text else 50
        except ValueError:
            raise ValidationException(
                f"priority '{priority_text}' is not a whole number", node=node, file_name=self.filename
            ) from None
        assignment = Assignment(
            candidate_groups=_split(_ext(node, "candidateGroups")),
            candidate_users=_split(_ext(node, "candidateUsers")),
            assignee=_ext(node, "assignee"),
            due_date=_ext(node, "dueDate"),
            form_key=_ext(node, "formKey"),
            priority=priority,
            requires=_requires(node, self.filename),
        )
        assignment.calendar = _calendar(self, assignment.due_date)
        if assignment.calendar is not None and not assignment.due_date:
            raise ValidationException(
                "caseflow:calendar on a user task counts its camunda:dueDate, and this task has none",
                node=node,
                file_name=self.filename,
            )
        task = self.spec_class(
            self.spec, self.bpmn_id, form=form, assignment=assignment, **self.bpmn_attributes
        )
        return _with_local_variables(self, task)


def _requires(node: Any, filename: str | None) -> tuple[str, ...]:
    try:
        return parse_requires(node.get(f"{{{CASEFLOW_NS}}}requires"))
    except ValueError as exc:
        raise ValidationException(str(exc), node=node, file_name=filename) from None


class _ServiceTaskParser(_CamundaLoopMixin):
    def create_task(self) -> Any:
        node = self.node
        kind = node.get(f"{{{CAMUNDA_NS}}}type")
        if kind not in (None, "external"):
            raise ValidationException(
                f"service task type '{kind}' is not supported", node=node, file_name=self.filename
            )
        topic = _ext(node, "topic") or _java_topic(node) or self.bpmn_id
        task = self.spec_class(self.spec, self.bpmn_id, topic=topic, **self.bpmn_attributes)
        return _with_local_variables(self, task)


_BEAN = re.compile(r"[$#]\{\s*([A-Za-z_][\w.]*)\s*\}")


def _java_topic(node: Any) -> str | None:
    """Camunda 7 Java implementations never run here: such a service task is a job that an external worker
    completes, on a topic named after the implementation (the class, or the bean of a plain ``${bean}``)."""
    implementation = node.get(f"{{{CAMUNDA_NS}}}class")
    if implementation and implementation.strip():
        return implementation.strip()  # type: ignore[no-any-return]
    for attribute in ("delegateExpression", "expression"):
        text = node.get(f"{{{CAMUNDA_NS}}}{attribute}")
        if text:
            bean = _BEAN.fullmatch(text.strip())
            return bean.group(1) if bean else None
    return None


class _CallActivityParser(_CamundaLoopMixin, CallActivityParser):  # type: ignore[misc]
    """Reads ``camunda:in`` / ``camunda:out`` (semantics in :mod:`engine.definitions.mappings`)."""

    def create_task(self) -> Any:
        subworkflow_spec = SubprocessParser.get_call_activity_spec(self)
        ins, outs = self._mappings("in"), self._mappings("out")
        if ins is not None or outs is not None:
            # As in Camunda 7: once a call activity maps variables, each direction carries only what it maps
            # (a confidential clue neither leaks into the called process nor comes back unasked).
            ins, outs = ins or (), outs or ()
        return self.spec_class(
            self.spec,
            self.bpmn_id,
            subworkflow_spec=subworkflow_spec,
            in_mappings=ins,
            out_mappings=outs,
            **self.bpmn_attributes,
        )

    def _mappings(self, direction: str) -> tuple[VariableMapping, ...] | None:
        nodes = self.xpath(f"./bpmn:extensionElements/camunda:{direction}")
        if not nodes:
            return None  # nothing declared: every variable flows (the library's behaviour)
        found = (self._mapping(node, direction) for node in nodes)
        return tuple(mapping for mapping in found if mapping is not None)

    def _mapping(self, node: Any, direction: str) -> VariableMapping | None:
        def refuse(reason: str) -> NoReturn:
            raise ValidationException(
                f"camunda:{direction}: {reason}", node=self.node, file_name=self.filename
            )

        def attribute(name: str) -> str | None:
            return (node.get(name) or "").strip() or None

        variables, target = attribute("variables"), attribute("target")
        source, expression = attribute("source"), attribute("sourceExpression")
        if variables is not None:
            if variables != "all":
                refuse(f'variables="{variables}" is not supported; write variables="all"')
            if source or expression or target:
                refuse('variables="all" takes no source, sourceExpression or target')
            return VariableMapping(all=True)
        if node.get("businessKey") is not None and not (source or expression or target):
            if direction == "out":
                refuse("businessKey can only be passed in")
            # The called process runs inside the caller's instance and already shares its business key.
            return None
        if source and expression:
            refuse(f"'{target}' has both source and sourceExpression; give one")
        if not (source or expression):
            refuse('needs source, sourceExpression or variables="all"')
        if not target or not target.isidentifier():
            refuse(f"target '{target or ''}' is not a variable name")
        if source and not source.isidentifier():
            refuse(f"source '{source}' is not a variable name; use sourceExpression for an expression")
        return VariableMapping(target=target, source=source, expression=expression)


def _with_local_variables(parser: Any, task: Any) -> Any:
    """``camunda:inputOutput`` of the element itself (one inside ``camunda:connector`` belongs to the
    connector, which never runs here): the task gets the same spec with local variables."""
    inputs: list[Parameter] = []
    outputs: list[Parameter] = []
    for io in parser.xpath("./bpmn:extensionElements/camunda:inputOutput"):
        for node in io:
            if not isinstance(node.tag, str) or etree.QName(node).namespace != CAMUNDA_NS:
                continue
            kind = etree.QName(node).localname
            if kind not in ("inputParameter", "outputParameter"):
                continue
            what = f"camunda:{kind}"
            name = (node.get("name") or "").strip()
            if not name.isidentifier():
                raise ValidationException(
                    f"{what} name '{name}' is not a variable name",
                    node=parser.node,
                    file_name=parser.filename,
                )
            parameter = Parameter(name, _parameter_content(parser, node, f"{what} '{name}'"))
            (inputs if kind == "inputParameter" else outputs).append(parameter)
    if not inputs and not outputs:
        return task
    task.__class__ = LOCAL_VARIABLE_CLASSES[type(task)]
    task.input_parameters = tuple(inputs)
    task.output_parameters = tuple(outputs)
    return task


def _parameter_content(parser: Any, node: Any, what: str) -> ParameterValue:
    """Text (an expression if it holds ``${`` or ``#{``), empty (None) or one list, map or script."""
    children = [child for child in node if isinstance(child.tag, str)]
    if not children:
        text = (node.text or "").strip()
        if not text:
            return ParameterValue("null")
        return ParameterValue("expression" if "${" in text or "#{" in text else "text", text)
    if len(children) > 1:
        raise ValidationException(
            f"{what} holds more than one value", node=parser.node, file_name=parser.filename
        )
    return _parameter_structure(parser, children[0], what)


def _parameter_structure(parser: Any, node: Any, what: str) -> ParameterValue:
    kind = etree.QName(node).localname if etree.QName(node).namespace == CAMUNDA_NS else None
    items: list[tuple[str | None, ParameterValue]] = []
    if kind == "list":
        for item in node:
            if not isinstance(item.tag, str):
                continue
            if etree.QName(item).localname == "value":
                items.append((None, _parameter_content(parser, item, what)))
            else:
                items.append((None, _parameter_structure(parser, item, what)))
        return ParameterValue("list", items=tuple(items))
    if kind == "map":
        for entry in node:
            if isinstance(entry.tag, str):
                items.append(((entry.get("key") or "").strip(), _parameter_content(parser, entry, what)))
        return ParameterValue("map", items=tuple(items))
    if kind == "script":
        script_format = (node.get("scriptFormat") or "").strip()
        raise ValidationException(
            f"{what}: camunda:script (script format '{script_format}') is not supported: caseflow evaluates "
            "only safe expressions; write the value as ${...}",
            node=parser.node,
            file_name=parser.filename,
        )
    raise ValidationException(
        f"{what}: <{etree.QName(node).localname}> is not a value caseflow understands",
        node=parser.node,
        file_name=parser.filename,
    )


class _ScriptTaskParser(TaskParser):  # type: ignore[misc]
    def create_task(self) -> Any:
        script_format = (self.node.get("scriptFormat") or "").strip().lower()
        if script_format not in SUPPORTED_SCRIPT_FORMATS:
            raise ValidationException(
                f"script format '{script_format}' is not supported: caseflow scripts are assignments of "
                "safe expressions (scriptFormat 'python' or none)",
                node=self.node,
                file_name=self.filename,
            )
        scripts = self.xpath("./bpmn:script")
        if len(scripts) != 1:
            raise ValidationException(
                "a script task needs exactly one <script>", node=self.node, file_name=self.filename
            )
        text = "".join(scripts[0].itertext())
        return self.spec_class(self.spec, self.bpmn_id, script=text, **self.bpmn_attributes)


class _BusinessRuleTaskParser(BusinessRuleTaskParser):  # type: ignore[misc]
    @staticmethod
    def get_decision_ref(node: Any) -> str:
        ref = (node.get(f"{{{CAMUNDA_NS}}}decisionRef") or "").strip()
        if not ref:
            # The library reads the attribute with [] and leaks a bare KeyError.
            raise ValidationException(
                "business rule task has no camunda:decisionRef naming the DMN decision it evaluates",
                node=node,
            )
        return ref

    def create_task(self) -> Any:
        mapping = (_ext(self.node, "mapDecisionResult") or "resultList").strip()
        if mapping not in MAP_DECISION_RESULTS:
            raise ValidationException(
                f"camunda:mapDecisionResult '{mapping}' is not one of {', '.join(MAP_DECISION_RESULTS)}",
                node=self.node,
                file_name=self.filename,
            )
        engine = self.process_parser.parser.get_engine(self.get_decision_ref(self.node), self.node)
        return self.spec_class(
            self.spec,
            self.bpmn_id,
            dmnEngine=engine,
            result_variable=(_ext(self.node, "resultVariable") or "").strip() or None,
            map_decision_result=mapping,
            **self.bpmn_attributes,
        )


class CaseflowParser(CamundaParser):  # type: ignore[misc]
    OVERRIDE_PARSER_CLASSES: ClassVar[dict[str, tuple[Any, Any]]] = {
        **CamundaParser.OVERRIDE_PARSER_CLASSES,
        full_tag("userTask"): (_UserTaskParser, CaseflowUserTask),
        full_tag("serviceTask"): (_ServiceTaskParser, ExternalServiceTask),
        full_tag("scriptTask"): (_ScriptTaskParser, AssignmentScriptTask),
        full_tag("businessRuleTask"): (_BusinessRuleTaskParser, CaseflowBusinessRuleTask),
        full_tag("callActivity"): (_CallActivityParser, CaseflowCallActivity),
        full_tag("startEvent"): (_StartEventParser, StartEvent),
        full_tag("endEvent"): (_EndEventParser, EndEvent),
        full_tag("intermediateCatchEvent"): (_CatchEventParser, IntermediateCatchEvent),
        full_tag("intermediateThrowEvent"): (_ThrowEventParser, IntermediateThrowEvent),
        full_tag("boundaryEvent"): (_BoundaryEventParser, CaseflowBoundaryEvent),
        full_tag("sendTask"): (_SendTaskParser, SendTask),
        full_tag("receiveTask"): (_ReceiveTaskParser, ReceiveTask),
        full_tag("eventBasedGateway"): (_EventBasedGatewayParser, EventBasedGateway),
    }

    def __init__(self) -> None:
        super().__init__(namespaces=NSMAP)

    def create_parser(self, node: Any, filename: str | None = None, lane: str | None = None) -> Any:
        """An embedded subprocess with its own laneSet keeps its lanes: the library gave every node inside it
        the lane of the subprocess itself, so its inner lanes (and their candidate groups) were lost."""
        if lane is not None and node.find("{http://www.omg.org/spec/BPMN/20100524/MODEL}laneSet") is not None:
            lane = None
        return super().create_parser(node, filename=filename, lane=lane)

    def get_engine(self, decision_ref: str, node: Any) -> Any:
        """The decision's table on caseflow's DMN engine; hit policies it cannot honour are refused."""
        table = super().get_engine(decision_ref, node).decision_table
        tables = self.dmn_parsers[decision_ref].xpath(".//dmn:decisionTable")
        aggregation = tables[0].get("aggregation") if tables else None
        if table.hit_policy not in SUPPORTED_HIT_POLICIES or aggregation:
            policy = f"{table.hit_policy} {aggregation}" if aggregation else table.hit_policy
            raise ValidationException(
                f"decision '{decision_ref}' has hit policy {policy}, which caseflow does not support; use "
                "UNIQUE, FIRST, ANY or COLLECT without aggregation",
                node=node,
            )
        return CaseflowDMNEngine(table)
