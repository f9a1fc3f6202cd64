"""Commands wake the loops that have work from them: the relay after an outbox row, the scheduler after a timer."""

from __future__ import annotations

from engine.commands import Engine
from tests.bpmn_util import chain, process

MESSAGE = '<bpmn:message id="m" name="note" caseflow:correlationKeys="case_no"/>'


def test_only_the_loops_concerned_are_woken(engine: Engine) -> None:
    woken: list[str] = []
    engine.on_commit(lambda: woken.append("outbox"), "outbox")
    engine.on_commit(lambda: woken.append("timers"), "timers")
    engine.on_commit(lambda: woken.append("any"))
    engine.deploy(
        [
            (
                "plain.bpmn",
                process(
                    "plain",
                    '<bpmn:startEvent id="s"/><bpmn:userTask id="t" name="登记"/><bpmn:endEvent id="e"/>'
                    + chain("s", "t", "e"),
                ),
            ),
            (
                "sends.bpmn",
                process(
                    "sends",
                    '<bpmn:startEvent id="s"/><bpmn:intermediateThrowEvent id="send" caseflow:payload="case_no">'
                    '<bpmn:messageEventDefinition messageRef="m"/></bpmn:intermediateThrowEvent>'
                    '<bpmn:endEvent id="e"/>' + chain("s", "send", "e"),
                    extra=MESSAGE,
                ),
            ),
            (
                "waits.bpmn",
                process(
                    "waits",
                    '<bpmn:startEvent id="s"/><bpmn:intermediateCatchEvent id="w">'
                    "<bpmn:timerEventDefinition><bpmn:timeDuration>PT1H</bpmn:timeDuration>"
                    '</bpmn:timerEventDefinition></bpmn:intermediateCatchEvent><bpmn:endEvent id="e"/>'
                    + chain("s", "w", "e"),
                ),
            ),
        ]
    )
    engine.start(key="plain")
    assert woken == ["any"]
    woken.clear()
    engine.start(key="sends", variables={"case_no": "N-1"})
    assert sorted(woken) == ["any", "outbox"]
    woken.clear()
    engine.start(key="waits")
    assert sorted(woken) == ["any", "timers"]
