"""Confidential processes (``caseflow:confidential="true"`` on ``<bpmn:process>``) and role requirements.

A confidential process (a discipline clue, enforcement-rules A3) may send messages only to the discipline
commission. Deploy refuses a throw whose ``caseflow:to`` is a literal naming anyone else, or that names nobody
(it would be correlated inside the district); a computed ``caseflow:to`` is checked when the message is thrown
(:func:`refused_recipient`), and a wrong one makes an incident instead of a message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

CONFIDENTIAL_RECIPIENTS = frozenset({"discipline_commission"})
REQUIREMENT_NAMES = ("certified_officer", "legal_qualification", "head")
_CASEFLOW_NS = "http://caseflow.local/schema/bpmn/1.0"
# The attribute set on a confidential process's top spec; the throw reads it from the running top workflow,
# so a non-confidential process called from a confidential one is held to the same rule.
SPEC_FLAG = "caseflow_confidential"


def is_confidential(process_node: Any) -> bool:
    value = process_node.get(f"{{{_CASEFLOW_NS}}}confidential")
    return value is not None and value.strip().lower() in ("true", "1", "yes")


def is_literal(expression: str) -> bool:
    return "${" not in expression and "#{" not in expression


def literal_recipient_problem(to: str | None) -> str | None:
    """Why a throw with this ``caseflow:to`` may not be in a confidential process (None: it may)."""
    if to is None or not to.strip():
        return (
            "a confidential process may send messages only to the discipline commission: give the throw "
            'caseflow:to="discipline_commission"'
        )
    text = to.strip()
    if is_literal(text) and text not in CONFIDENTIAL_RECIPIENTS:
        return (
            f"a confidential process may send messages only to the discipline commission, not to '{text}' "
            "(caseflow:to)"
        )
    return None


def refused_recipient(workflow: Any, target: Any) -> str | None:
    """At run time: why a message to ``target`` may not leave this instance (None: it may)."""
    top = getattr(workflow, "top_workflow", workflow)
    if not getattr(top.spec, SPEC_FLAG, False):
        return None
    if not isinstance(target, str) or target not in CONFIDENTIAL_RECIPIENTS:
        return (
            "a confidential instance may send messages only to the discipline commission; caseflow:to "
            f"computed {target!r}: nothing was sent"
        )
    return None


def parse_requires(text: str | None) -> tuple[str, ...]:
    """``caseflow:requires="certified_officer, head"`` -> ("certified_officer", "head"); unknown names raise."""
    names = tuple(dict.fromkeys(part.strip() for part in (text or "").split(",") if part.strip()))
    unknown = [n for n in names if n not in REQUIREMENT_NAMES]
    if unknown:
        raise ValueError(
            f"caseflow:requires names '{unknown[0]}'; known requirements: {', '.join(REQUIREMENT_NAMES)}"
        )
    return names


def message_throws(task_specs: Iterable[Any]) -> Iterable[tuple[Any, Any]]:
    """(task spec, message event definition) of every throwing message element among ``task_specs``."""
    from engine.definitions.specs import CaseflowMessageEventDefinition

    for spec in task_specs:
        if not getattr(spec, "bpmn_id", None):
            continue
        definition = getattr(spec, "event_definition", None)
        items = getattr(definition, "event_definitions", None) or [definition]
        if not _throws(spec):
            continue
        for item in items:
            if isinstance(item, CaseflowMessageEventDefinition):
                yield spec, item


def _throws(spec: Any) -> bool:
    from SpiffWorkflow.bpmn.specs.mixins.events.event_types import ThrowingEvent

    return isinstance(spec, ThrowingEvent)
