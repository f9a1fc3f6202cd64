"""An embedded subprocess with its own laneSet keeps its inner lanes; one without takes the lane it sits in."""

from __future__ import annotations

from engine.definitions.compiler import Checkers, compile_resources
from tests.bpmn_util import chain, process

NO_CHECKS = Checkers(expression=lambda _text: None, script=lambda _text: None)


def _lanes(inner_lanes: bool) -> dict[str, str | None]:
    inner = (
        """<bpmn:laneSet id="inner_lanes">
        <bpmn:lane id="inner_officer" name="执法人员"><bpmn:flowNodeRef>s_start</bpmn:flowNodeRef>
          <bpmn:flowNodeRef>draft</bpmn:flowNodeRef><bpmn:flowNodeRef>s_end</bpmn:flowNodeRef></bpmn:lane>
        <bpmn:lane id="inner_head" name="负责人"><bpmn:flowNodeRef>approve</bpmn:flowNodeRef></bpmn:lane>
      </bpmn:laneSet>"""
        if inner_lanes
        else ""
    )
    xml = process(
        "lanes_in_subprocess",
        f"""
  <bpmn:laneSet id="outer_lanes">
    <bpmn:lane id="outer" name="移送机关"><bpmn:flowNodeRef>start</bpmn:flowNodeRef>
      <bpmn:flowNodeRef>procedure</bpmn:flowNodeRef><bpmn:flowNodeRef>end</bpmn:flowNodeRef></bpmn:lane>
  </bpmn:laneSet>
  <bpmn:startEvent id="start"/>
  <bpmn:subProcess id="procedure" name="移送程序">
    {inner}
    <bpmn:startEvent id="s_start"/>
    <bpmn:userTask id="draft" name="起草"/>
    <bpmn:userTask id="approve" name="审批"/>
    <bpmn:endEvent id="s_end"/>
    {chain("s_start", "draft", "approve", "s_end")}
  </bpmn:subProcess>
  <bpmn:endEvent id="end"/>
  {chain("start", "procedure", "end")}""",
    )
    model = compile_resources([("lanes.bpmn", xml)], NO_CHECKS).processes["lanes_in_subprocess"]
    spec = model.subprocess_specs["procedure"]
    return {name: spec.task_specs[name].lane for name in ("draft", "approve")}


def test_a_subprocess_with_its_own_lanes_keeps_them() -> None:
    assert _lanes(inner_lanes=True) == {"draft": "执法人员", "approve": "负责人"}


def test_a_subprocess_without_lanes_puts_its_tasks_in_its_own_lane() -> None:
    assert _lanes(inner_lanes=False) == {"draft": "移送机关", "approve": "移送机关"}
