"""Build small BPMN documents for tests without repeating the boilerplate."""

from __future__ import annotations

import itertools

NAMESPACES = (
    'xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
    'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" '
    'xmlns:caseflow="http://caseflow.local/schema/bpmn/1.0" '
    'targetNamespace="http://caseflow.local/tests"'
)


def definitions(*parts: str) -> bytes:
    body = "\n".join(parts)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<bpmn:definitions {NAMESPACES} id="defs">\n{body}\n'
        f"</bpmn:definitions>\n".encode()
    )


def process(pid: str, body: str, *, extra: str = "", name: str | None = None) -> bytes:
    label = f' name="{name}"' if name else ""
    return definitions(
        extra, f'<bpmn:process id="{pid}" isExecutable="true"{label}>\n{body}\n</bpmn:process>'
    )


def flow(fid: str, source: str, target: str, condition: str | None = None) -> str:
    if condition is None:
        return f'<bpmn:sequenceFlow id="{fid}" sourceRef="{source}" targetRef="{target}"/>'
    return (
        f'<bpmn:sequenceFlow id="{fid}" sourceRef="{source}" targetRef="{target}">'
        f"<bpmn:conditionExpression>{condition}</bpmn:conditionExpression></bpmn:sequenceFlow>"
    )


def chain(*ids: str) -> str:
    return "\n".join(flow(f"f_{a}_{b}", a, b) for a, b in itertools.pairwise(ids))


def one_user_task(pid: str = "one_task", groups: str = "officer") -> bytes:
    return process(
        pid,
        f"""
  <bpmn:startEvent id="start"/>
  <bpmn:userTask id="review" name="审核" camunda:candidateGroups="{groups}"/>
  <bpmn:endEvent id="end"/>
  {chain("start", "review", "end")}""",
    )
