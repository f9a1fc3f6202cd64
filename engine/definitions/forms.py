"""User task forms: Camunda 7 ``camunda:formData``, read into a typed definition and checked on completion.

A form is declared inside the user task's ``extensionElements``::

    <camunda:formData>
      <camunda:formField id="fine_amount" label="罚款金额（元）" type="long">
        <camunda:validation>
          <camunda:constraint name="required"/>
          <camunda:constraint name="min" config="0"/>
        </camunda:validation>
      </camunda:formField>
      <camunda:formField id="decision" label="处理决定" type="enum" defaultValue="penalty">
        <camunda:value id="penalty" name="给予行政处罚"/>
        <camunda:value id="no_penalty" name="不予行政处罚"/>
      </camunda:formField>
    </camunda:formData>

Types: ``string``, ``long`` (whole number), ``decimal`` (any number), ``boolean``, ``date`` (``YYYY-MM-DD``) and
``enum`` (one of the option ids). Constraints: ``required``, ``readonly``, ``minlength``/``maxlength`` (string),
``min``/``max`` (long, decimal, date). Anything else is refused when the model is deployed, naming the field.

Submitted values keep their JSON types (long -> int, decimal -> number, boolean -> bool, date -> ISO text,
enum -> the option id). Values are never quoted back in problems: a confidential case's content stays out of
error answers and logs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from lxml import etree

CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
CASEFLOW_NS = "http://caseflow.local/schema/bpmn/1.0"
FIELD_TYPES = ("string", "long", "decimal", "boolean", "date", "enum")
CONSTRAINTS = ("required", "readonly", "minlength", "maxlength", "min", "max")
_VARIABLE_NAME = re.compile(r"^[A-Za-z\u00c0-\uffff][A-Za-z0-9_\u00c0-\uffff]*$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_WHOLE = re.compile(r"^[+-]?\d{1,19}$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
Number = int | float
Bound = int | float | str  # a number, or an ISO date for date fields


class FormDefinitionError(ValueError):
    """A form the engine cannot honour; the message names the field."""


@dataclass(frozen=True)
class FormOption:
    id: str
    name: str


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with one submitted field (``problem`` is a stable code, ``message`` English)."""

    field: str
    label: str
    problem: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "label": self.label, "problem": self.problem, "message": self.message}


class _Wrong(Exception):
    def __init__(self, problem: str, text: str) -> None:
        super().__init__(text)
        self.problem = problem
        self.text = text


@dataclass(frozen=True)
class FormField:
    id: str
    label: str
    type: str
    required: bool = False
    readonly: bool = False
    default: Any = None
    options: tuple[FormOption, ...] = ()
    min_length: int | None = None
    max_length: int | None = None
    minimum: Bound | None = None
    maximum: Bound | None = None
    multiline: bool = False
    properties: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        return f"{self.label} ({self.id})"

    def constraints(self) -> dict[str, Any]:
        """The constraints with a value, as in the model (``required`` and ``readonly`` are flags beside)."""
        found = {
            "minlength": self.min_length,
            "maxlength": self.max_length,
            "min": self.minimum,
            "max": self.maximum,
        }
        return {name: value for name, value in found.items() if value is not None}

    def convert(self, value: Any) -> Any:
        """The value as stored for this field's type, or :class:`_Wrong`."""
        kind = self.type
        if kind == "string":
            if not isinstance(value, str):
                raise _Wrong("wrong_type", f"expected text, got {_what(value)}")
            return value
        if kind == "long":
            if isinstance(value, float) and math.isfinite(value) and value.is_integer():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise _Wrong("wrong_type", f"expected a whole number, got {_what(value)}")
            if not LONG_MIN <= value <= LONG_MAX:
                raise _Wrong("wrong_type", "the number is outside the range of a long (64-bit) value")
            return value
        if kind == "decimal":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _Wrong("wrong_type", f"expected a number, got {_what(value)}")
            if isinstance(value, float) and not math.isfinite(value):
                raise _Wrong("wrong_type", "expected a finite number")
            return value
        if kind == "boolean":
            if not isinstance(value, bool):
                raise _Wrong("wrong_type", f"expected true or false, got {_what(value)}")
            return value
        if kind == "date":
            if not isinstance(value, str):
                raise _Wrong("wrong_type", f"expected a date as YYYY-MM-DD, got {_what(value)}")
            if not _ISO_DATE.match(value):
                raise _Wrong("wrong_type", "expected a date as YYYY-MM-DD")
            try:
                return date.fromisoformat(value).isoformat()
            except ValueError:
                raise _Wrong("wrong_type", "is not a date in the calendar (YYYY-MM-DD)") from None
        # enum
        allowed = ", ".join(option.id for option in self.options)
        if not isinstance(value, str):
            raise _Wrong("wrong_type", f"expected one of the option ids ({allowed}), got {_what(value)}")
        if value not in {option.id for option in self.options}:
            raise _Wrong("not_an_option", f"is not one of the options ({allowed})")
        return value

    def check_constraints(self, value: Any) -> None:
        """Length and range constraints on a value already converted; :class:`_Wrong` on a violation."""
        if isinstance(value, str) and self.type == "string":
            if self.min_length is not None and len(value) < self.min_length:
                raise _Wrong("too_short", f"must be at least {self.min_length} characters long")
            if self.max_length is not None and len(value) > self.max_length:
                raise _Wrong("too_long", f"must be at most {self.max_length} characters long")
        if self.type in ("long", "decimal", "date"):
            if self.minimum is not None and value < self.minimum:
                raise _Wrong("too_small", f"must be at least {self.minimum}")
            if self.maximum is not None and value > self.maximum:
                raise _Wrong("too_large", f"must be at most {self.maximum}")


@dataclass(frozen=True)
class FormDefinition:
    """The form of one user task. ``declared`` is False when the task has no ``camunda:formData`` (then
    nothing is validated on completion, as before forms existed); ``key`` is ``camunda:formKey``."""

    key: str | None = None
    fields: tuple[FormField, ...] = ()
    declared: bool = False
    by_id: dict[str, FormField] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_id.update({f.id: f for f in self.fields})

    def validate(
        self, submitted: Mapping[str, Any], current: Mapping[str, Any]
    ) -> tuple[dict[str, Any], list[FieldProblem]]:
        """Check a completion's variables: ``(values to store, problems)``.

        - every variable must be a field of the form (a form-driven task sets nothing else);
        - a required field must be submitted and not empty (null, or blank text), even when the variable
          already holds a value (a second review round must not reuse the first round's decision);
        - a read-only field may only be sent back unchanged;
        - an optional field may be left out (its variable stays as it is) or sent as null (cleared).
        """
        values: dict[str, Any] = {}
        problems: list[FieldProblem] = []
        for name in submitted:
            if name not in self.by_id:
                problems.append(
                    FieldProblem(name, "", "unknown_field", f"'{name}' is not a field of this form")
                )
        for item in self.fields:
            present = item.id in submitted
            value = submitted.get(item.id)
            try:
                if item.required and (value is None or (isinstance(value, str) and not value.strip())):
                    raise _Wrong("required", "is required")
                if not present:
                    continue
                if item.readonly:
                    if value != current.get(item.id):
                        raise _Wrong("read_only", "is read-only and cannot be changed")
                    continue
                if value is None:
                    values[item.id] = None
                    continue
                converted = item.convert(value)
                item.check_constraints(converted)
                values[item.id] = converted
            except _Wrong as wrong:
                problems.append(
                    FieldProblem(item.id, item.label, wrong.problem, f"{item.describe()}: {wrong.text}")
                )
        return values, problems


def _what(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number with a fraction" if math.isfinite(value) else "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# ------------------------------------------------------------------------------------------------ parsing
def _camunda(node: Any, name: str) -> bool:
    return isinstance(node.tag, str) and node.tag == f"{{{CAMUNDA_NS}}}{name}"


def parse_form(task_node: Any, form_key: str | None) -> FormDefinition:
    """The form of a ``bpmn:userTask`` element; :class:`FormDefinitionError` if it cannot be honoured."""
    forms = [
        form
        for extensions in task_node
        if isinstance(extensions.tag, str) and etree.QName(extensions).localname == "extensionElements"
        for form in extensions
        if _camunda(form, "formData")
    ]
    if not forms:
        return FormDefinition(key=form_key)
    if len(forms) > 1:
        raise FormDefinitionError("the task has more than one camunda:formData; merge them into one")
    fields: list[FormField] = []
    seen: set[str] = set()
    for child in forms[0]:
        if not isinstance(child.tag, str) or etree.QName(child).namespace != CAMUNDA_NS:
            continue
        if not _camunda(child, "formField"):
            raise FormDefinitionError(
                f"camunda:formData holds <{etree.QName(child).localname}>; only camunda:formField is supported"
            )
        item = _parse_field(child)
        if item.id in seen:
            raise FormDefinitionError(f"form field '{item.id}' is declared twice")
        seen.add(item.id)
        fields.append(item)
    return FormDefinition(key=form_key, fields=tuple(fields), declared=True)


def _parse_field(node: Any) -> FormField:
    ident = (node.get("id") or "").strip()
    if not ident:
        raise FormDefinitionError("a camunda:formField has no id")
    if not _VARIABLE_NAME.match(ident):
        raise FormDefinitionError(
            f"form field id '{ident}' is not a variable name (letters, digits and '_', not starting with '_' "
            "or a digit)"
        )

    def refuse(reason: str) -> FormDefinitionError:
        return FormDefinitionError(f"form field '{ident}': {reason}")

    label = (node.get("label") or "").strip()
    if not label:
        raise refuse('has no label; give the name staff see (in Chinese), e.g. label="罚款金额"')
    kind = (node.get("type") or "").strip()
    if kind not in FIELD_TYPES:
        shown = f"type '{kind}'" if kind else "no type"
        raise refuse(f"{shown}; the type must be one of {', '.join(FIELD_TYPES)}")
    pattern = (node.get("datePattern") or "").strip()
    if pattern and pattern != "yyyy-MM-dd":
        raise refuse(f"datePattern '{pattern}' is not supported: dates are ISO YYYY-MM-DD; remove it")
    multiline_text = (node.get(f"{{{CASEFLOW_NS}}}multiline") or "false").strip().lower()
    if multiline_text not in ("true", "false"):
        raise refuse(f"caseflow:multiline must be true or false, not '{multiline_text}'")
    multiline = multiline_text == "true"
    if multiline and kind != "string":
        raise refuse("caseflow:multiline applies to string fields only")

    options: list[FormOption] = []
    constraints: dict[str, str | None] = {}
    properties: dict[str, str] = {}
    for child in node:
        if not isinstance(child.tag, str) or etree.QName(child).namespace != CAMUNDA_NS:
            continue
        local = etree.QName(child).localname
        if local == "value":
            options.append(_parse_option(child, refuse))
        elif local == "validation":
            for constraint in child:
                if not _camunda(constraint, "constraint"):
                    continue
                name = (constraint.get("name") or "").strip()
                if name not in CONSTRAINTS:
                    raise refuse(f"constraint '{name}' is not one of {', '.join(CONSTRAINTS)}")
                if name in constraints:
                    raise refuse(f"constraint '{name}' is given twice")
                config = constraint.get("config")
                constraints[name] = config.strip() if config is not None else None
        elif local == "properties":
            for prop in child:
                if not _camunda(prop, "property"):
                    continue
                prop_id = (prop.get("id") or "").strip()
                if not prop_id or prop_id in properties:
                    raise refuse(f"property id '{prop_id}' is empty or given twice")
                properties[prop_id] = prop.get("value") or ""
        else:
            raise refuse(f"<camunda:{local}> is not supported in a form field")

    if kind == "enum":
        if not options:
            raise refuse('an enum field needs its options as <camunda:value id="…" name="…"/>')
        ids = [option.id for option in options]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise refuse(f"option '{duplicates[0]}' is given twice")
    elif options:
        raise refuse(f"options (camunda:value) apply to enum fields only, not to type '{kind}'")

    for flag in ("required", "readonly"):
        if constraints.get(flag):
            raise refuse(f"constraint '{flag}' takes no config")
    required, readonly = "required" in constraints, "readonly" in constraints
    if required and readonly:
        raise refuse("a field cannot be both required and readonly (nobody could fill it in)")
    min_length = _length(constraints, "minlength", kind, refuse)
    max_length = _length(constraints, "maxlength", kind, refuse)
    if min_length is not None and max_length is not None and min_length > max_length:
        raise refuse(f"minlength {min_length} is greater than maxlength {max_length}")
    minimum = _bound(constraints, "min", kind, refuse)
    maximum = _bound(constraints, "max", kind, refuse)
    if minimum is not None and maximum is not None and minimum > maximum:  # type: ignore[operator]
        raise refuse(f"min {minimum} is greater than max {maximum}")

    item = FormField(
        id=ident,
        label=label,
        type=kind,
        required=required,
        readonly=readonly,
        options=tuple(options),
        min_length=min_length,
        max_length=max_length,
        minimum=minimum,
        maximum=maximum,
        multiline=multiline,
        properties=tuple(properties.items()),
    )
    default_text = node.get("defaultValue")
    if default_text is None or default_text == "":
        return item
    default = _default(item, default_text, refuse)
    return replace(item, default=default)


def _parse_option(node: Any, refuse: Any) -> FormOption:
    option_id = (node.get("id") or "").strip()
    name = (node.get("name") or "").strip()
    if not option_id:
        raise refuse("an option (camunda:value) has no id")
    if not name:
        raise refuse(f"option '{option_id}' has no name; give the text staff see (in Chinese)")
    return FormOption(option_id, name)


def _length(constraints: Mapping[str, str | None], name: str, kind: str, refuse: Any) -> int | None:
    if name not in constraints:
        return None
    if kind != "string":
        raise refuse(f"constraint '{name}' applies to string fields only, not to type '{kind}'")
    config = constraints[name] or ""
    if not config.isdigit():
        raise refuse(f"constraint '{name}' needs a whole number of characters as config, not '{config}'")
    return int(config)


def _bound(constraints: Mapping[str, str | None], name: str, kind: str, refuse: Any) -> Bound | None:
    if name not in constraints:
        return None
    if kind not in ("long", "decimal", "date"):
        raise refuse(
            f"constraint '{name}' applies to long, decimal and date fields only, not to type '{kind}'"
        )
    config = constraints[name] or ""
    value = _literal(kind, config)
    if value is None:
        expected = {"long": "a whole number", "decimal": "a number", "date": "a date as YYYY-MM-DD"}[kind]
        raise refuse(f"constraint '{name}' needs {expected} as config, not '{config}'")
    return value  # type: ignore[no-any-return]


def _literal(kind: str, text: str) -> Any:
    """A value written in the model (a constraint's config, a default) for a field of ``kind``, or None."""
    text = text.strip()
    if kind == "string":
        return text
    if kind == "long":
        value = int(text) if _WHOLE.match(text) else None
        return value if value is not None and LONG_MIN <= value <= LONG_MAX else None
    if kind == "decimal":
        if not _NUMBER.match(text):
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:
            return None
        result = float(number)
        if not math.isfinite(result):
            return None
        return int(number) if number == number.to_integral_value() and abs(number) < 2**53 else result
    if kind == "boolean":
        return {"true": True, "false": False}.get(text)
    if kind == "date":
        if not _ISO_DATE.match(text):
            return None
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            return None
    return text  # enum: checked against the options by the caller


def _default(item: FormField, text: str, refuse: Any) -> Any:
    if "${" in text or "#{" in text:
        raise refuse(
            "defaultValue is a literal in caseflow, not an expression; the form already shows the variable's "
            "current value when it has one"
        )
    if item.type == "string":
        value: Any = text
    else:
        value = _literal(item.type, text)
        if value is None:
            raise refuse(f"defaultValue '{text}' is not a valid {item.type} value")
    try:
        item.convert(value)
        item.check_constraints(value)
    except _Wrong as wrong:
        raise refuse(f"defaultValue '{text}' {wrong.text}") from None
    return value
