"""A message start event starts the latest version, also right after a deploy and from another engine process."""

from __future__ import annotations

import pytest

from engine.commands import Engine
from engine.commands import messages as message_commands
from tests.bpmn_util import chain, process

MESSAGE = '<bpmn:message id="m" name="transfer_in" caseflow:correlationKeys="case_no"/>'


def _model(task_name: str) -> bytes:
    return process(
        "started_by_message",
        f"""
  <bpmn:startEvent id="start"><bpmn:messageEventDefinition messageRef="m"/></bpmn:startEvent>
  <bpmn:userTask id="register" name="{task_name}" camunda:candidateGroups="market_regulation:staff"/>
  <bpmn:endEvent id="end"/>
  {chain("start", "register", "end")}""",
        extra=MESSAGE,
    )


def _started_version(engine: Engine, case_no: str) -> str:
    result = engine.correlate("transfer_in", variables={"case_no": case_no})
    (started,) = result["instances"]
    return str(started["definition_id"]).split(":")[1]


def test_a_deploy_in_this_process_takes_effect_at_once(engine: Engine) -> None:
    engine.deploy([("m.bpmn", _model("登记"))])
    assert _started_version(engine, "A-1") == "1"
    engine.deploy([("m.bpmn", _model("登记（新版）"))])
    assert _started_version(engine, "A-2") == "2"


def test_another_process_sees_a_new_version_once_its_cache_expires(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Engine(engine.db, engine.clock, engine.config)  # a second engine process on the same database
    engine.deploy([("m.bpmn", _model("登记"))])
    assert _started_version(other, "B-1") == "1"
    engine.deploy([("m.bpmn", _model("登记（新版）"))])
    monkeypatch.setattr(message_commands, "START_CACHE_SECONDS", 0.0)
    assert _started_version(other, "B-2") == "2"
