"""One rule for the [U]/[S] periods of the five district models.

A period the law does not fix ([U]) or that comes from secondary sources ([S]) is a parameter: a literal
ISO 8601 duration assigned once, unconditionally, in the script task that directly follows the process's start
event (so a start variable cannot loosen it, and a task's due date and its 督办 timer share it). Its timer's
documentation says "[U] 参数" or "[S] 参数", names the variable and gives the practice value ("实践值 2 个工作日").
A timer with a literal duration is fixed by law and does not call itself a parameter. A check-interval taken
from a decision table is a [U] parameter of that table.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from engine.commands import Engine
from tests.conftest import ManualClock
from tests.scenarios.models import (
    BPMN,
    DISTRICT_MODELS,
    NS,
    bpmn_doc,
    camunda,
    caseflow,
    documentation,
    timer_duration,
    timers,
)
from tests.scenarios.support import deploy_models, start

VARIABLE = re.compile(r"^\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}$")
DECISION = re.compile(r"^\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\.[A-Za-z_][A-Za-z0-9_.]*\s*\}$")
LITERAL_PERIOD = re.compile(r'^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"(P(?:T?\d+[DHMW]))"\s*$', re.MULTILINE)
PARAMETER = re.compile(r"\[[US]\] 参数")
UNIT = {"working_days": "个工作日", "calendar_days": "日", "hours": "小时"}


def _start_script(doc: Any) -> tuple[str, str]:
    """(id, text) of the script task right after the process's (none) start event."""
    [process] = doc.xpath("//bpmn:process", namespaces=NS)
    [start_event] = process.xpath(
        "bpmn:startEvent[not(*[contains(local-name(), 'EventDefinition')])]", namespaces=NS
    )
    [flow] = process.xpath(f"bpmn:sequenceFlow[@sourceRef='{start_event.get('id')}']", namespaces=NS)
    scripts = process.xpath(f"bpmn:scriptTask[@id='{flow.get('targetRef')}']", namespaces=NS)
    assert scripts, (
        f"{process.get('id')}: the start event leads to {flow.get('targetRef')}, not a script task"
    )
    script = scripts[0]
    return str(script.get("id")), str(script.findtext(f"{{{BPMN}}}script") or "")


def start_periods(stem: str) -> dict[str, str]:
    """Period variable -> literal duration, as the start script assigns them."""
    _, text = _start_script(bpmn_doc(stem))
    return dict(LITERAL_PERIOD.findall(text))


def _practice_value(duration: str) -> str:
    return re.sub(r"\D", "", duration)


@pytest.mark.parametrize("stem", DISTRICT_MODELS)
def test_u_and_s_periods_are_set_once_in_the_start_script_and_documented_with_their_practice_value(
    stem: str,
) -> None:
    doc = bpmn_doc(stem)
    script_id, text = _start_script(doc)
    periods = start_periods(stem)
    parameters = 0
    for timer in timers(doc):
        where = f"{stem}: {timer.get('id')}"
        duration = timer_duration(timer)
        described = documentation(timer)
        calendar = caseflow(timer, "calendar")
        if match := VARIABLE.match(duration):
            name = match.group(1)
            assert name in periods, f"{where}: {name} is not set by a literal in the start script {script_id}"
            assert len(re.findall(rf"^\s*{name}\s*=", text, re.MULTILINE)) == 1, f"{where}: {name} set twice"
            assert PARAMETER.search(described), f"{where}: documentation does not say [U]/[S] 参数"
            assert name in described, f"{where}: documentation does not name {name}"
            practice = f"实践值 {_practice_value(periods[name])} {UNIT[str(calendar)]}"
            assert practice in described, f"{where}: documentation lacks {practice!r}: {described}"
            parameters += 1
        elif DECISION.match(duration):
            assert PARAMETER.search(described) and "决策表" in described and "实践值" in described, (
                f"{where}: an interval from a decision table is a [U] parameter of that table"
            )
        else:
            assert not PARAMETER.search(described), (
                f"{where}: says it is a parameter but its duration {duration!r} is written on the timer; "
                f"set it in the start script {script_id}"
            )
    # Each model has [U]/[S] periods; due dates use the same variables.
    assert parameters, stem
    for task in doc.xpath("//bpmn:userTask[@camunda:dueDate]", namespaces=NS):
        due = str(camunda(task, "dueDate"))
        if match := VARIABLE.match(due):
            assert match.group(1) in periods, f"{stem}: {task.get('id')} due date {due}"


def _start_variables(stem: str) -> dict[str, Any]:
    if stem == "approval_supervision_penalty":
        return {"enterprise": "某食品经营有限公司", "supervising_agency": "market_regulation"}
    if stem == "jurisdiction_dispute":
        return {"sender_agency": "market_regulation", "receiver_agency": "urban_management"}
    return {"sender_agency": "market_regulation"}


@pytest.mark.parametrize("stem", DISTRICT_MODELS)
def test_a_start_variable_cannot_change_a_period(engine: Engine, clock: ManualClock, stem: str) -> None:
    periods = start_periods(stem)
    stems = dict.fromkeys(
        [stem, "clue_transfer", "jurisdiction_dispute", "major_decision", "inspection_frequency"]
    )
    deploy_models(engine, *stems)
    loosened = {name: "P999D" for name in periods}
    case = start(engine, clock, stem, case_no=f"HB-PERIODS-{stem}", **_start_variables(stem), **loosened)
    variables = case.variables
    assert {name: variables[name] for name in periods} == periods
    # No armed deadline is anywhere near the 999 days a starter asked for.
    assert all((due - clock()).days < 120 for due in case.timers().values()), case.timers()
