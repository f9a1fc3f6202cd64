"""Reading camunda:formData into a typed form, and refusing forms the engine cannot honour (at deploy)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.commands import Engine
from engine.definitions.compiler import Checkers, compile_resources
from engine.definitions.forms import FormDefinition, FormField
from engine.errors import InvalidModel
from tests.forms.support import DECISION_FORM, constraint, constraints, field, form_model

NO_CHECKS = Checkers(expression=lambda _text: None, script=lambda _text: None)


def _form(form: str, attrs: str = "") -> FormDefinition:
    compiled = compile_resources([("decision.bpmn", form_model(form, attrs=attrs))], NO_CHECKS)
    result = compiled.processes["penalty_decision"].spec.task_specs["decide"].form
    assert isinstance(result, FormDefinition)
    return result


def _refusal(form: str) -> str:
    with pytest.raises(InvalidModel) as refused:
        compile_resources([("decision.bpmn", form_model(form))], NO_CHECKS)
    message = refused.value.message
    assert "decision.bpmn" in message and "element 'decide'" in message, message
    return message


def test_every_type_and_constraint_is_read() -> None:
    form = _form(DECISION_FORM)
    assert form.declared and form.key is None
    by_id = {f.id: f for f in form.fields}
    assert list(by_id) == ["case_no", "summary", "fine_amount", "ratio", "approved", "decided_on", "decision"]
    assert by_id["case_no"] == FormField("case_no", "案件编号", "string", readonly=True)
    summary = by_id["summary"]
    assert (summary.label, summary.required, summary.min_length, summary.max_length) == (
        "案情摘要",
        True,
        5,
        200,
    )
    assert summary.multiline and dict(summary.properties) == {"placeholder": "简要说明违法事实"}
    assert (by_id["fine_amount"].default, by_id["fine_amount"].minimum, by_id["fine_amount"].maximum) == (
        0,
        0,
        200000,
    )
    assert by_id["ratio"].type == "decimal" and by_id["ratio"].maximum == 1.5
    assert by_id["approved"].type == "boolean" and by_id["approved"].required
    assert by_id["decided_on"].constraints() == {"min": "2020-01-01", "max": "2030-12-31"}
    decision = by_id["decision"]
    assert [(o.id, o.name) for o in decision.options] == [
        ("penalty", "给予行政处罚"),
        ("no_penalty", "不予行政处罚"),
    ]
    assert decision.default == "penalty" and decision.required


def test_form_data_is_read_without_a_form_key_and_the_key_is_kept_beside_it() -> None:
    # The library's own parser drops the fields unless camunda:formKey is set; caseflow reads both.
    assert _form(DECISION_FORM).fields
    keyed = _form(DECISION_FORM, attrs='camunda:formKey="embedded:app:forms/decision.html"')
    assert keyed.key == "embedded:app:forms/decision.html" and len(keyed.fields) == 7


def test_a_task_without_form_data_has_an_undeclared_form() -> None:
    form = _form("")
    assert not form.declared and form.fields == ()
    assert _form("", attrs='camunda:formKey="app:review"') == FormDefinition(key="app:review")


def test_an_empty_form_data_is_a_declared_form_without_fields() -> None:
    form = _form("<camunda:formData/>")
    assert form.declared and form.fields == ()


@pytest.mark.parametrize(
    ("type_", "default", "expected"),
    [
        ("string", "无", "无"),
        ("long", "-12", -12),
        ("decimal", "2.50", 2.5),
        ("decimal", "3", 3),
        ("boolean", "true", True),
        ("boolean", "false", False),
        ("date", "2026-10-01", "2026-10-01"),
    ],
)
def test_default_values_are_typed(type_: str, default: str, expected: Any) -> None:
    [item] = _form(field("", type_=type_, extra=f'defaultValue="{default}"')).fields
    assert item.default == expected and type(item.default) is type(expected)


BAD_FORMS = {
    "unknown type": (field("", type_="money"), ["'x'", "type 'money'", "string, long, decimal"]),
    "no type": (field("", type_=""), ["'x'", "no type"]),
    "enum without values": (field("", type_="enum"), ["'x'", "camunda:value"]),
    "duplicate field ids": (
        "<camunda:formData>"
        '<camunda:formField id="amount" label="金额" type="long"/>'
        '<camunda:formField id="amount" label="金额" type="long"/>'
        "</camunda:formData>",
        ["'amount'", "twice"],
    ),
    "duplicate option": (
        field('<camunda:value id="a" name="甲"/><camunda:value id="a" name="乙"/>', type_="enum"),
        ["'x'", "option 'a'", "twice"],
    ),
    "option without name": (field('<camunda:value id="a"/>', type_="enum"), ["option 'a'", "no name"]),
    "options on a string": (field('<camunda:value id="a" name="甲"/>'), ["enum fields only"]),
    "no label": (field("", label=""), ["'x'", "no label"]),
    "id not a variable name": (field("", field_id="1st"), ["'1st'", "variable name"]),
    "unknown constraint": (field(constraints(constraint("validator", "x.Y"))), ["'validator'"]),
    "constraint twice": (field(constraints(constraint("required"), constraint("required"))), ["twice"]),
    "minlength not a number": (
        field(constraints(constraint("minlength", "five"))),
        ["'x'", "minlength", "'five'"],
    ),
    "minlength negative": (field(constraints(constraint("minlength", "-1"))), ["minlength", "'-1'"]),
    "minlength on a long": (
        field(constraints(constraint("minlength", "1")), type_="long"),
        ["string fields"],
    ),
    "min on a string": (field(constraints(constraint("min", "1"))), ["long, decimal and date"]),
    "min not a number": (
        field(constraints(constraint("min", "zero")), type_="long"),
        ["whole number", "'zero'"],
    ),
    "min a fraction on a long": (field(constraints(constraint("min", "1.5")), type_="long"), ["'1.5'"]),
    "max not a date": (field(constraints(constraint("max", "31/12/2026")), type_="date"), ["YYYY-MM-DD"]),
    "max not a calendar date": (
        field(constraints(constraint("max", "2026-02-30")), type_="date"),
        ["2026-02-30"],
    ),
    "min above max": (
        field(constraints(constraint("min", "10"), constraint("max", "1")), type_="decimal"),
        ["min 10 is greater than max 1"],
    ),
    "minlength above maxlength": (
        field(constraints(constraint("minlength", "9"), constraint("maxlength", "2"))),
        ["minlength 9 is greater than maxlength 2"],
    ),
    "required with a config": (field(constraints(constraint("required", "yes"))), ["takes no config"]),
    "required and readonly": (
        field(constraints(constraint("required"), constraint("readonly"))),
        ["both required and readonly"],
    ),
    "default of the wrong type": (field("", type_="long", extra='defaultValue="many"'), ["'many'"]),
    "default not a boolean": (field("", type_="boolean", extra='defaultValue="yes"'), ["'yes'"]),
    "default not an option": (
        field('<camunda:value id="a" name="甲"/>', type_="enum", extra='defaultValue="b"'),
        ["'b'", "not one of the options"],
    ),
    "default breaks a constraint": (
        field(constraints(constraint("max", "10")), type_="long", extra='defaultValue="11"'),
        ["'11'", "at most 10"],
    ),
    "default an expression": (field("", extra='defaultValue="${case_no}"'), ["not an expression"]),
    "date pattern": (field("", type_="date", extra='datePattern="dd/MM/yyyy"'), ["datePattern"]),
    "multiline on a long": (
        field("", type_="long", extra='caseflow:multiline="true"'),
        ["string fields only"],
    ),
    "unknown element in a field": (field("<camunda:script/>"), ["camunda:script"]),
    "two formData": (field("") + field(""), ["more than one camunda:formData"]),
}


@pytest.mark.parametrize(("form", "mentions"), BAD_FORMS.values(), ids=BAD_FORMS.keys())
def test_a_form_the_engine_cannot_honour_is_refused_naming_element_and_field(
    form: str, mentions: list[str]
) -> None:
    message = _refusal(form)
    for text in mentions:
        assert text in message, (text, message)


def test_deploy_refuses_a_bad_form_and_stores_nothing(engine: Engine) -> None:
    with pytest.raises(InvalidModel) as refused:
        engine.deploy([("decision.bpmn", form_model(field("", field_id="amount", type_="money")))])
    assert refused.value.code == "invalid_model"
    assert "element 'decide'" in refused.value.message and "'amount'" in refused.value.message
    assert refused.value.details["element_id"] == "decide"
    assert engine.deploy([("decision.bpmn", form_model())])["created"]
