"""caseflow's BPMN parser: SpiffWorkflow's Camunda parser with caseflow's specs plugged in.

Extended only through ``OVERRIDE_PARSER_CLASSES``; the library is never patched. Reads what the Camunda
parser ignores (``camunda:candidateGroups``, ``candidateUsers``, ``assignee``, ``dueDate``, ``priority``,
``camunda:type="external"`` / ``camunda:topic``) and caseflow's own extension attributes
(namespace :data:`CASEFLOW_NS`): ``caseflow:payload`` and ``caseflow:to`` on message throws,
``caseflow:correlationKeys`` on messages and catches, ``caseflow:topic`` on service tasks.
"""

from __future__ import annotations

from typing import Any

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
from SpiffWorkflow.bpmn.parser.TaskParser import TaskParser
from SpiffWorkflow.bpmn.parser.util import first, full_tag
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.defaults import (
    BoundaryEvent,
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
from SpiffWorkflow.camunda.parser.task_spec import CamundaTaskParser, UserTaskParser

from engine.definitions.specs import (
    TIMER_CLASSES,
    AssignmentScriptTask,
    Assignment,
    CaseflowMessageEventDefinition,
    CaseflowUserTask,
    ExternalServiceTask,
)

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
                    node=self.node, file_name=self.filename,
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
        return CaseflowMessageEventDefinition(
            name, correlations, payload=payload, to=to, description=self.get_event_description(message_event)
        )

    def parse_timer_event(self, event: Any) -> Any:
        description = self.get_event_description(event)
        for tag, cls in TIMER_CLASSES.items():
            node = first(self.xpath(f".//bpmn:{tag}"))
            if node is not None:
                text = (node.text or "").strip()
                if not text:
                    raise ValidationException(
                        f"timer <{tag}> is empty", node=self.node, file_name=self.filename
                    )
                timer = cls(self.node.get("id"), text, description=description)
                timer.label = self.node.get("name")
                timer.kind = tag
                return timer
        raise ValidationException(
            "timer event has no timeDate, timeDuration or timeCycle", node=self.node, file_name=self.filename
        )


class _StartEventParser(CaseflowEventParserMixin, StartEventParser):  # type: ignore[misc]
    def create_task(self) -> Any:
        return StartEventParser.create_task(self)


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


class _UserTaskParser(UserTaskParser):  # type: ignore[misc]
    def create_task(self) -> Any:
        form = self.get_form()
        node = self.node
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
        )
        return self.spec_class(self.spec, self.bpmn_id, form=form, assignment=assignment,
                               **self.bpmn_attributes)


class _ServiceTaskParser(CamundaTaskParser):  # type: ignore[misc]
    def create_task(self) -> Any:
        node = self.node
        kind = node.get(f"{{{CAMUNDA_NS}}}type")
        for unsupported in ("class", "expression", "delegateExpression"):
            if node.get(f"{{{CAMUNDA_NS}}}{unsupported}") is not None:
                raise ValidationException(
                    f"camunda:{unsupported} service tasks run Java code and are not supported; "
                    'use camunda:type="external" with camunda:topic, or caseflow:topic',
                    node=node, file_name=self.filename,
                )
        if kind not in (None, "external"):
            raise ValidationException(
                f"service task type '{kind}' is not supported", node=node, file_name=self.filename
            )
        topic = _ext(node, "topic") or self.bpmn_id
        return self.spec_class(self.spec, self.bpmn_id, topic=topic, **self.bpmn_attributes)


class _ScriptTaskParser(TaskParser):  # type: ignore[misc]
    def create_task(self) -> Any:
        script_format = (self.node.get("scriptFormat") or "").strip().lower()
        if script_format not in SUPPORTED_SCRIPT_FORMATS:
            raise ValidationException(
                f"script format '{script_format}' is not supported: caseflow scripts are assignments of "
                "safe expressions (scriptFormat 'python' or none)",
                node=self.node, file_name=self.filename,
            )
        scripts = self.xpath("./bpmn:script")
        if len(scripts) != 1:
            raise ValidationException("a script task needs exactly one <script>", node=self.node,
                                      file_name=self.filename)
        text = "".join(scripts[0].itertext())
        return self.spec_class(self.spec, self.bpmn_id, script=text, **self.bpmn_attributes)


class CaseflowParser(CamundaParser):  # type: ignore[misc]
    OVERRIDE_PARSER_CLASSES = {
        **CamundaParser.OVERRIDE_PARSER_CLASSES,
        full_tag("userTask"): (_UserTaskParser, CaseflowUserTask),
        full_tag("serviceTask"): (_ServiceTaskParser, ExternalServiceTask),
        full_tag("scriptTask"): (_ScriptTaskParser, AssignmentScriptTask),
        full_tag("startEvent"): (_StartEventParser, StartEvent),
        full_tag("endEvent"): (_EndEventParser, EndEvent),
        full_tag("intermediateCatchEvent"): (_CatchEventParser, IntermediateCatchEvent),
        full_tag("intermediateThrowEvent"): (_ThrowEventParser, IntermediateThrowEvent),
        full_tag("boundaryEvent"): (_BoundaryEventParser, BoundaryEvent),
        full_tag("sendTask"): (_SendTaskParser, SendTask),
        full_tag("receiveTask"): (_ReceiveTaskParser, ReceiveTask),
        full_tag("eventBasedGateway"): (_EventBasedGatewayParser, EventBasedGateway),
    }

    def __init__(self) -> None:
        super().__init__(namespaces=NSMAP)
