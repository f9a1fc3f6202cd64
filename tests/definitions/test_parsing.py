"""Parser and compiler behaviour that real-world (Camunda 7, MIWG) files exposed.

Each case is small and built here; the corpus itself is exercised by test_conformance.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from engine.commands import Engine
from engine.errors import InvalidModel
from engine.store import queries
from engine.store.db import read_only
from tests.bpmn_util import chain, process


def _one_service(attributes: str, pid: str = "svc") -> bytes:
    return process(
        pid,
        "\n".join(
            [
                '<bpmn:startEvent id="start"/>',
                f'<bpmn:serviceTask id="call" {attributes}/>',
                '<bpmn:endEvent id="end"/>',
                chain("start", "call", "end"),
            ]
        ),
    )


def _jobs(engine: Engine) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.jobs(conn)


def _refused(engine: Engine, content: bytes, name: str = "model.bpmn") -> InvalidModel:
    with pytest.raises(InvalidModel) as refused:
        engine.deploy([(name, content)])
    assert name in refused.value.message and "<Element" not in refused.value.message
    return refused.value


# ============================================================ Camunda 7 Java implementations become jobs
@pytest.mark.parametrize(
    ("attributes", "topic"),
    [
        ('camunda:class="org.example.LoggerDelegate"', "org.example.LoggerDelegate"),
        ('camunda:delegateExpression="${loggerDelegate}"', "loggerDelegate"),
        ('camunda:delegateExpression="#{ledger.adapter}"', "ledger.adapter"),
        ('camunda:expression="${orderService.place(order)}"', "call"),
        ('camunda:class="org.example.Ignored" camunda:topic="ledger"', "ledger"),
        ('camunda:type="external" camunda:topic="ledger"', "ledger"),
        ('caseflow:topic="court-filing"', "court-filing"),
        ("", "call"),
    ],
    ids=[
        "class",
        "delegate-bean",
        "delegate-dotted",
        "expression",
        "topic-wins",
        "external",
        "caseflow",
        "plain",
    ],
)
def test_service_task_implementations_become_jobs_on_a_topic(
    sqlite_engine: Engine, attributes: str, topic: str
) -> None:
    sqlite_engine.deploy([("svc.bpmn", _one_service(attributes))])
    started = sqlite_engine.start(key="svc")
    assert started["state"] == "running" and started["activities"] == ["call"]
    [job] = _jobs(sqlite_engine)
    assert job["topic"] == topic
    assert sqlite_engine.complete_job(job["id"], {})["state"] == "completed"


def test_unknown_service_task_type_is_refused(sqlite_engine: Engine) -> None:
    refused = _refused(sqlite_engine, _one_service('camunda:type="connector"'))
    assert refused.details["element_id"] == "call" and "connector" in refused.message


# ============================================================================= code the engine never runs
@pytest.mark.parametrize("fmt", ["javascript", "groovy", "JavaScript", "xslt"])
def test_scripts_in_other_languages_are_refused(sqlite_engine: Engine, fmt: str) -> None:
    content = process(
        "js",
        "\n".join(
            [
                '<bpmn:startEvent id="start"/>',
                f'<bpmn:scriptTask id="calc" scriptFormat="{fmt}"><bpmn:script>x = 1</bpmn:script></bpmn:scriptTask>',
                '<bpmn:endEvent id="end"/>',
                chain("start", "calc", "end"),
            ]
        ),
    )
    refused = _refused(sqlite_engine, content)
    assert refused.details["element_id"] == "calc"
    assert f"script format '{fmt.lower()}' is not supported" in refused.message


@pytest.mark.parametrize(
    "listener",
    [
        '<camunda:executionListener class="org.example.Audit" event="start"/>',
        '<camunda:executionListener expression="${execution.setVariable(\'x\', 1)}" event="end"/>',
        '<camunda:executionListener event="start"><camunda:script scriptFormat="groovy">x = 1</camunda:script>'
        "</camunda:executionListener>",
        '<camunda:taskListener delegateExpression="${notify}" event="create"/>',
    ],
    ids=["class", "expression", "script", "task-listener"],
)
def test_listeners_are_refused_naming_their_element(sqlite_engine: Engine, listener: str) -> None:
    content = process(
        "listened",
        "\n".join(
            [
                '<bpmn:startEvent id="start"/>',
                f'<bpmn:userTask id="review"><bpmn:extensionElements>{listener}</bpmn:extensionElements>'
                "</bpmn:userTask>",
                '<bpmn:endEvent id="end"/>',
                chain("start", "review", "end"),
            ]
        ),
    )
    refused = _refused(sqlite_engine, content)
    assert refused.details["element_id"] == "review" and refused.details["line"]
    assert "Listener" in refused.message


@pytest.mark.parametrize("cron", ["0/5 0/1 * 1/1 * ?", "0 0 12 * * ?", "*/5 * * * *", "0 15 10 ? * MON-FRI"])
def test_cron_timers_are_refused_with_the_iso_alternative(sqlite_engine: Engine, cron: str) -> None:
    content = process(
        "cron",
        "\n".join(
            [
                '<bpmn:startEvent id="start"><bpmn:timerEventDefinition>'
                f"<bpmn:timeCycle>{cron}</bpmn:timeCycle></bpmn:timerEventDefinition></bpmn:startEvent>",
                '<bpmn:endEvent id="end"/>',
                chain("start", "end"),
            ]
        ),
    )
    refused = _refused(sqlite_engine, content)
    assert refused.details["element_id"] == "start"
    assert "cron expression" in refused.message and "R/PT5M" in refused.message


def test_business_rule_task_without_decision_ref_is_refused_clearly(sqlite_engine: Engine) -> None:
    content = process(
        "rules",
        "\n".join(
            [
                '<bpmn:startEvent id="start"/>',
                '<bpmn:businessRuleTask id="decide" name="判定"/>',
                '<bpmn:endEvent id="end"/>',
                chain("start", "decide", "end"),
            ]
        ),
    )
    refused = _refused(sqlite_engine, content)
    assert refused.details["element_id"] == "decide"
    assert "camunda:decisionRef" in refused.message and "KeyError" not in refused.message


# ============================================================================== user task assignment
def _assigned(assignee: str, initiator: bool = True) -> bytes:
    start = (
        '<bpmn:startEvent id="start" camunda:initiator="starter"/>'
        if initiator
        else '<bpmn:startEvent id="start"/>'
    )
    return process(
        "assigned",
        "\n".join(
            [
                start,
                f'<bpmn:userTask id="review" camunda:assignee="{assignee}"/>',
                '<bpmn:endEvent id="end"/>',
                chain("start", "review", "end"),
            ]
        ),
    )


def test_camunda_initiator_receives_the_starting_user(engine: Engine) -> None:
    engine.deploy([("assigned.bpmn", _assigned("${starter}"))])
    started = engine.start(key="assigned", actor="zhang.san")
    assert started["variables"]["starter"] == "zhang.san"
    with read_only(engine.db) as conn:
        [task] = queries.tasks(conn, instance_id=started["id"])
    assert task["assignee"] == "zhang.san"
    # Started by nobody in particular (a system start): the variable exists and the task is unassigned.
    anonymous = engine.start(key="assigned")
    assert anonymous["state"] == "running" and anonymous["variables"]["starter"] is None
    with read_only(engine.db) as conn:
        [task] = queries.tasks(conn, instance_id=anonymous["id"])
    assert task["assignee"] is None


def test_assignment_expression_that_fails_is_an_incident_then_retried(engine: Engine) -> None:
    engine.deploy([("assigned.bpmn", _assigned("${reviewer}", initiator=False))])
    started = engine.start(key="assigned")  # nothing sets 'reviewer': never an uncaught exception
    assert started["state"] == "incident"
    assert started["incident"]["element_id"] == "review"
    assert "reviewer" in started["incident"]["message"]
    with read_only(engine.db) as conn:
        [incident] = queries.incidents(conn, instance_id=started["id"])
        assert queries.tasks(conn, instance_id=started["id"]) == []
    retried = engine.retry_incident(incident["id"], {"reviewer": "li.si"})
    assert retried["instance"]["state"] == "running"
    with read_only(engine.db) as conn:
        [task] = queries.tasks(conn, instance_id=started["id"])
    assert task["assignee"] == "li.si"
    assert engine.complete(task["id"], {}, user="li.si")["state"] == "completed"


# ====================================================================== library errors name the element
def test_multi_instance_over_a_missing_collection_names_the_element(sqlite_engine: Engine) -> None:
    content = process(
        "each",
        "\n".join(
            [
                '<bpmn:startEvent id="start"/>',
                '<bpmn:userTask id="review_each"><bpmn:multiInstanceLoopCharacteristics camunda:collection="items" '
                'camunda:elementVariable="item"/></bpmn:userTask>',
                '<bpmn:endEvent id="end"/>',
                chain("start", "review_each", "end"),
            ]
        ),
    )
    sqlite_engine.deploy([("each.bpmn", content)])
    failed = sqlite_engine.start(key="each", variables={"items": None})
    assert failed["state"] == "incident" and failed["incident"]["element_id"] == "review_each"
    ok = sqlite_engine.start(key="each", variables={"items": ["a", "b"]})
    assert ok["state"] == "running" and len(ok["tasks"]) == 2


def test_called_process_from_an_earlier_deployment_is_found(sqlite_engine: Engine) -> None:
    sub = process(
        "sub_review",
        '<bpmn:startEvent id="s"/><bpmn:userTask id="inner"/><bpmn:endEvent id="e"/>'
        + chain("s", "inner", "e"),
    )
    main = process(
        "main",
        '<bpmn:startEvent id="start"/>'
        '<bpmn:callActivity id="call" calledElement="sub_review"/>'
        '<bpmn:endEvent id="end"/>' + chain("start", "call", "end"),
    )
    refused = _refused(sqlite_engine, main, "main.bpmn")
    assert "sub_review" in refused.message
    sqlite_engine.deploy([("sub.bpmn", sub)])
    sqlite_engine.deploy([("main.bpmn", main)])
    started = sqlite_engine.start(key="main")
    assert [t["element_id"] for t in started["tasks"]] == ["inner"]


@pytest.mark.parametrize("value", ["PT1X", "R3/PT", "P3Q", "2026-02-30"])
def test_a_mistyped_iso_timer_is_refused_at_deploy(sqlite_engine: Engine, value: str) -> None:
    body = f"""
  <bpmn:startEvent id="start"/>
  <bpmn:intermediateCatchEvent id="wait"><bpmn:timerEventDefinition>
    <bpmn:timeDuration>{value}</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>
  <bpmn:endEvent id="end"/>
  """ + chain("start", "wait", "end")
    error = _refused(sqlite_engine, process("timed", body))
    assert error.details["element_id"] == "wait"
    assert value in error.message
