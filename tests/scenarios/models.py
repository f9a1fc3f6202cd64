"""Reading the district's BPMN files statically (no engine): for the tests that check the models themselves.

``bpmn_doc("clue_transfer")`` parses ``bpmn/clue_transfer.bpmn`` with the hardened lxml parser of
``engine.definitions.xml``; :data:`NS` holds the ``bpmn`` and ``camunda`` prefixes for XPath; the helpers name the
elements the rule, forged-reply, period-parameter and demo-user tests walk over.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from lxml import etree

from engine.definitions.xml import parse_xml

BPMN_DIR = Path(__file__).resolve().parents[2] / "bpmn"
BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
CAMUNDA = "http://camunda.org/schema/1.0/bpmn"
CASEFLOW = "http://caseflow.local/schema/bpmn/1.0"
NS = {"bpmn": BPMN, "camunda": CAMUNDA}
# A1, A2, A3, B, C (process ids = file stems).
DISTRICT_MODELS = (
    "clue_transfer",
    "criminal_transfer",
    "discipline_clue_transfer",
    "approval_supervision_penalty",
    "jurisdiction_dispute",
)
CHINESE = re.compile(r"[\u4e00-\u9fff]")


@cache
def _parsed(path: Path) -> Any:
    return parse_xml(path.read_bytes(), path.name)


def bpmn_doc(model: str | Path) -> Any:
    """The parsed tree of ``bpmn/<stem>.bpmn`` (or of the file at a path). Cached: do not modify it."""
    path = model if isinstance(model, Path) else BPMN_DIR / f"{model}.bpmn"
    return _parsed(path)


def bpmn_files() -> list[Path]:
    """Every ``bpmn/*.bpmn``, the district models and their helpers, sorted."""
    return sorted(BPMN_DIR.glob("*.bpmn"))


def local_name(node: Any) -> str:
    return str(etree.QName(node).localname)


def caseflow(node: Any, attribute: str) -> str | None:
    """A ``caseflow:<attribute>`` of an element."""
    value = node.get(f"{{{CASEFLOW}}}{attribute}")
    return None if value is None else str(value)


def camunda(node: Any, attribute: str) -> str | None:
    """A ``camunda:<attribute>`` of an element."""
    value = node.get(f"{{{CAMUNDA}}}{attribute}")
    return None if value is None else str(value)


def split_list(value: str | None) -> list[str]:
    """A comma list attribute (candidate groups, requires) as its stripped, non-empty items."""
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def candidate_groups(node: Any) -> list[str]:
    return split_list(camunda(node, "candidateGroups"))


def lane_names(doc: Any) -> dict[str, str]:
    """Flow node id -> the name of the lane it is in."""
    return {
        ref.text.strip(): str(ref.getparent().get("name"))
        for ref in doc.xpath("//bpmn:flowNodeRef", namespaces=NS)
    }


def user_tasks(doc: Any) -> list[Any]:
    return list(doc.xpath("//bpmn:userTask", namespaces=NS))


def timers(doc: Any) -> list[Any]:
    """Every element with a timer definition: boundary, intermediate catch and start events."""
    return list(doc.xpath("//bpmn:*[bpmn:timerEventDefinition]", namespaces=NS))


def deadline_timers(doc: Any, task_id: str) -> list[Any]:
    """The timer boundary events attached to a task."""
    return list(
        doc.xpath(
            f"//bpmn:boundaryEvent[@attachedToRef='{task_id}'][bpmn:timerEventDefinition]", namespaces=NS
        )
    )


def timer_duration(timer: Any) -> str:
    return str(timer.xpath("string(bpmn:timerEventDefinition/*)", namespaces=NS)).strip()


def documentation(node: Any) -> str:
    return "".join(node.xpath("bpmn:documentation/text()", namespaces=NS))


def message_catches(doc: Any) -> list[Any]:
    """Every element that receives a message: catch and boundary events, message starts, receive tasks."""
    return list(
        doc.xpath(
            "//bpmn:intermediateCatchEvent[bpmn:messageEventDefinition]"
            " | //bpmn:boundaryEvent[bpmn:messageEventDefinition]"
            " | //bpmn:startEvent[bpmn:messageEventDefinition]"
            " | //bpmn:receiveTask",
            namespaces=NS,
        )
    )


def message_throws(doc: Any) -> list[Any]:
    return list(doc.xpath("//bpmn:intermediateThrowEvent[bpmn:messageEventDefinition]", namespaces=NS))
