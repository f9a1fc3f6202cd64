"""Models with forms for the form tests, built from small pieces."""

from __future__ import annotations

from tests.bpmn_util import chain, process

# One field per type and per constraint: the decision on a proposed penalty.
DECISION_FORM = """
<camunda:formData>
  <camunda:formField id="case_no" label="案件编号" type="string">
    <camunda:validation><camunda:constraint name="readonly"/></camunda:validation>
  </camunda:formField>
  <camunda:formField id="summary" label="案情摘要" type="string" caseflow:multiline="true">
    <camunda:properties><camunda:property id="placeholder" value="简要说明违法事实"/></camunda:properties>
    <camunda:validation>
      <camunda:constraint name="required"/>
      <camunda:constraint name="minlength" config="5"/>
      <camunda:constraint name="maxlength" config="200"/>
    </camunda:validation>
  </camunda:formField>
  <camunda:formField id="fine_amount" label="罚款金额（元）" type="long" defaultValue="0">
    <camunda:validation>
      <camunda:constraint name="min" config="0"/>
      <camunda:constraint name="max" config="200000"/>
    </camunda:validation>
  </camunda:formField>
  <camunda:formField id="ratio" label="裁量比例" type="decimal">
    <camunda:validation>
      <camunda:constraint name="min" config="0"/>
      <camunda:constraint name="max" config="1.5"/>
    </camunda:validation>
  </camunda:formField>
  <camunda:formField id="approved" label="是否批准" type="boolean">
    <camunda:validation><camunda:constraint name="required"/></camunda:validation>
  </camunda:formField>
  <camunda:formField id="decided_on" label="决定日期" type="date">
    <camunda:validation>
      <camunda:constraint name="min" config="2020-01-01"/>
      <camunda:constraint name="max" config="2030-12-31"/>
    </camunda:validation>
  </camunda:formField>
  <camunda:formField id="decision" label="处理决定" type="enum" defaultValue="penalty">
    <camunda:value id="penalty" name="给予行政处罚"/>
    <camunda:value id="no_penalty" name="不予行政处罚"/>
    <camunda:validation><camunda:constraint name="required"/></camunda:validation>
  </camunda:formField>
</camunda:formData>
"""

# A complete, valid submission of DECISION_FORM.
GOOD = {
    "summary": "未按规定公示价格",
    "fine_amount": 5000,
    "ratio": 0.5,
    "approved": True,
    "decided_on": "2026-10-08",
    "decision": "penalty",
}


def user_task(form: str, *, task_id: str = "decide", name: str = "作出处理决定", attrs: str = "") -> str:
    extensions = f"<bpmn:extensionElements>{form}</bpmn:extensionElements>" if form else ""
    return (
        f'<bpmn:userTask id="{task_id}" name="{name}" camunda:candidateGroups="market_regulation:head" {attrs}>'
        f"{extensions}</bpmn:userTask>"
    )


def form_model(form: str = DECISION_FORM, pid: str = "penalty_decision", attrs: str = "") -> bytes:
    """start -> the task with ``form`` -> a task without a form -> end."""
    return process(
        pid,
        '<bpmn:startEvent id="start"/>'
        + user_task(form, attrs=attrs)
        + '<bpmn:userTask id="notify" name="送达决定书" camunda:candidateGroups="market_regulation:staff"/>'
        + '<bpmn:endEvent id="end"/>'
        + chain("start", "decide", "notify", "end"),
        name="处罚决定",
    )


def field(
    body: str, *, field_id: str = "x", label: str = "字段", type_: str = "string", extra: str = ""
) -> str:
    """A formData with one field (for definition tests)."""
    return (
        f'<camunda:formData><camunda:formField id="{field_id}" label="{label}" type="{type_}" {extra}>'
        f"{body}</camunda:formField></camunda:formData>"
    )


def constraints(*items: str) -> str:
    return "<camunda:validation>" + "".join(items) + "</camunda:validation>"


def constraint(name: str, config: str | None = None) -> str:
    return f'<camunda:constraint name="{name}"' + (f' config="{config}"' if config is not None else "") + "/>"
