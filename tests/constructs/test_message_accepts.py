"""A catch may list the only variables a message may set (``caseflow:payload`` on the catching element).

A reply from another agency must not be able to re-route a case by overwriting, say, ``sender_agency``.
"""

from __future__ import annotations

import pytest

from engine.commands import Engine
from engine.errors import InvalidModel
from tests.bpmn_util import chain, process
from tests.constructs.support import instance

MESSAGE = '<bpmn:message id="m_decision" name="police_filing_decision" caseflow:correlationKeys="case_no"/>'


def _waiting(payload: str) -> bytes:
    return process(
        "waits_for_decision",
        f"""
  <bpmn:startEvent id="start"/>
  <bpmn:intermediateCatchEvent id="decision" name="收到立案决定" caseflow:payload="{payload}">
    <bpmn:messageEventDefinition messageRef="m_decision"/>
  </bpmn:intermediateCatchEvent>
  <bpmn:userTask id="next" name="后续处理" camunda:candidateGroups="${{sender_agency}}:officer"/>
  <bpmn:endEvent id="end"/>
  {chain("start", "decision", "next", "end")}""",
        extra=MESSAGE,
    )


def _started_with_reply(engine: Engine, payload: str, reply: dict[str, object]) -> dict[str, object]:
    engine.deploy([("waits.bpmn", _waiting(payload))])
    started = engine.start(
        key="waits_for_decision", variables={"case_no": "XS-1", "sender_agency": "market_regulation"}
    )
    engine.correlate("police_filing_decision", correlation_keys={"case_no": "XS-1"}, variables=reply)
    return instance(engine, str(started["id"]))


def test_a_declared_catch_takes_only_the_listed_variables(engine: Engine) -> None:
    reply = {"filed": False, "reasons": "不构成犯罪", "sender_agency": "justice_bureau", "case_no": "XS-9"}
    found = _started_with_reply(engine, "filed, police_reasons=reasons", reply)
    variables = found["variables"]
    assert isinstance(variables, dict)
    assert variables["filed"] is False
    assert variables["police_reasons"] == "不构成犯罪"
    # what the catch does not list is ignored, so the reply cannot re-route or renumber the case
    assert variables["sender_agency"] == "market_regulation"
    assert variables["case_no"] == "XS-1"
    assert "reasons" not in variables


def test_an_undeclared_catch_keeps_taking_every_variable(engine: Engine) -> None:
    engine.deploy(
        [
            (
                "open.bpmn",
                process(
                    "open_catch",
                    f"""
  <bpmn:startEvent id="start"/>
  <bpmn:intermediateCatchEvent id="decision"><bpmn:messageEventDefinition messageRef="m_decision"/>
  </bpmn:intermediateCatchEvent>
  <bpmn:endEvent id="end"/>
  {chain("start", "decision", "end")}""",
                    extra=MESSAGE,
                ),
            )
        ]
    )
    started = engine.start(key="open_catch", variables={"case_no": "XS-2"})
    engine.correlate(
        "police_filing_decision", correlation_keys={"case_no": "XS-2"}, variables={"filed": True}
    )
    assert instance(engine, str(started["id"]))["variables"]["filed"] is True


@pytest.mark.parametrize("payload", ["a=b+1", "1x", "x=${y}"])
def test_a_catch_payload_must_name_variables(engine: Engine, payload: str) -> None:
    with pytest.raises(InvalidModel) as caught:
        engine.deploy([("bad.bpmn", _waiting(payload))])
    assert "decision" in str(caught.value.to_dict())


def test_a_message_start_event_takes_only_the_listed_variables(engine: Engine) -> None:
    engine.deploy(
        [
            (
                "start.bpmn",
                process(
                    "started_by_transfer",
                    f"""
  <bpmn:startEvent id="start" caseflow:payload="case_no, summary=clue_summary">
    <bpmn:messageEventDefinition messageRef="m_decision"/>
  </bpmn:startEvent>
  <bpmn:userTask id="register" name="登记" camunda:candidateGroups="market_regulation:staff"/>
  <bpmn:endEvent id="end"/>
  {chain("start", "register", "end")}""",
                    extra=MESSAGE,
                ),
            )
        ]
    )
    result = engine.correlate(
        "police_filing_decision",
        variables={"case_no": "XS-3", "clue_summary": "线索", "receiver_agency": "justice_bureau"},
    )
    started = instance(engine, str(result["instances"][0]["id"]))
    assert started["variables"] == {"case_no": "XS-3", "summary": "线索"}
