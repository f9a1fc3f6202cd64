"""Request bodies and answers of the native API (/openapi.json is built from these)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("is not valid Unicode text") from None
    return value


Name = Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(_storable)]
OptionalName = Annotated[str, StringConstraints(max_length=255), AfterValidator(_storable)] | None
Variables = Annotated[
    dict[str, Any],
    Field(
        default_factory=dict,
        description="process variables: names are letters, digits and '_' (not starting with '_' or a digit)",
        examples=[{"amount": 5000, "approved": True}],
    ),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartRequest(_Body):
    business_key: OptionalName = None
    variables: Variables


class ClaimRequest(_Body):
    user: Name


class AssignRequest(_Body):
    user: OptionalName = None


class CompleteRequest(_Body):
    variables: Variables
    user: OptionalName = None


class MessageRequest(_Body):
    name: Name
    business_key: OptionalName = None
    correlation_keys: Annotated[dict[str, Any], Field(default_factory=dict)]
    variables: Variables
    message_id: Name | None = None
    ttl_seconds: Annotated[
        int, Field(ge=0, le=30 * 86_400, description="buffer this long if nobody waits")
    ] = 0
    all: bool = False


class RetryRequest(_Body):
    variables: Variables


class JobCompleteRequest(_Body):
    variables: Variables


class JobFailRequest(_Body):
    error_message: Annotated[str, StringConstraints(min_length=1, max_length=4000), AfterValidator(_storable)]
    retries: Annotated[int | None, Field(ge=0, le=100)] = None


# ----------------------------------------------------------------------------------------------- answers
# Answers allow extra fields: the engine may add detail without breaking the documented shape.


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorOut(_Out):
    error: str = Field(description="stable machine code, e.g. not_found, invalid_model, task_claimed")
    message: str = Field(description="what was wrong and where")


class DefinitionRef(_Out):
    id: str
    key: str
    version: int
    name: str | None = None


class DeploymentOut(_Out):
    id: str
    name: str | None = None
    created: bool
    definitions: list[DefinitionRef]


class DefinitionOut(DefinitionRef):
    deployment_id: str | None = None
    created_at: str | None = None


class InstanceSummary(_Out):
    id: str
    definition_id: str
    definition_key: str
    business_key: str | None = None
    state: Literal["running", "completed", "cancelled", "incident"]
    revision: int


class InstanceOut(InstanceSummary):
    activities: list[str]
    variables: dict[str, Any]
    flags: list[dict[str, Any]] = Field(
        default_factory=list,
        description="notes on the case, e.g. kind=deadline_estimated: a deadline past the known holiday "
        "arrangement, computed Monday-Friday (element_id, due_at, note in Chinese)",
    )


class TaskOut(_Out):
    id: str
    instance_id: str
    element_id: str
    name: str | None = None
    candidate_groups: list[str]
    candidate_users: list[str]
    assignee: str | None = None
    state: str
    due_at: str | None = None
    deadline_note: str | None = Field(
        None, description="set when due_at ran past the known holiday arrangement (Chinese, for staff)"
    )


class InstanceDetail(InstanceOut):
    tasks: list[TaskOut]
    incidents: list[dict[str, Any]]
    waiting_for: dict[str, Any]


class AssigneeOut(_Out):
    id: str
    assignee: str | None = None


class MessageOut(_Out):
    message_id: str | None = None
    buffered: bool
    instances: list[dict[str, Any]]


class IncidentOut(_Out):
    id: str
    instance_id: str | None = None
    task_id: str | None = None
    element_id: str | None = None
    error_type: str
    message: str
    state: str
    # a refused message: message_id, from, to, reason, dead_letter_queue
    details: dict[str, Any] | None = None


class RetryOut(_Out):
    id: str
    state: str


class JobOut(_Out):
    id: str
    instance_id: str
    element_id: str
    topic: str
    retries: int


class AuditRecordOut(_Out):
    seq: int
    at: str | None
    actor: str | None = None
    command: str
    task_id: str | None = None
    element_id: str | None = None
    details: dict[str, Any]
    hash: str


class AuditProblem(_Out):
    stream: str
    seq: int | None = None
    problem: str


class AuditVerifyOut(_Out):
    ok: bool
    records_checked: int
    problems: list[AuditProblem]


# ------------------------------------------------------------------------------------------------- forms
class FormOptionOut(_Out):
    id: str
    name: str = Field(description="the option as staff see it (Chinese)")


class FormFieldOut(_Out):
    id: str = Field(description="the variable the field fills in")
    label: str = Field(description="the field's name as staff see it (Chinese)")
    type: Literal["string", "long", "decimal", "boolean", "date", "enum"]
    required: bool
    readonly: bool
    default: Any = Field(None, description="the model's defaultValue, typed (dates as YYYY-MM-DD)")
    value: Any = Field(None, description="the variable's current value, if it has one")
    options: list[FormOptionOut] | None = Field(None, description="enum fields: the allowed option ids")
    constraints: dict[str, Any] = Field(
        description="minlength, maxlength (string); min, max (long, decimal, date)"
    )
    multiline: bool = False
    properties: dict[str, str] = Field(default_factory=dict)


class TaskFormOut(_Out):
    task_id: str
    instance_id: str
    element_id: str
    name: str | None = None
    form_key: str | None = Field(None, description="camunda:formKey, when the model names an external form")
    has_form: bool = Field(description="false: the task declares no camunda:formData and takes any variables")
    fields: list[FormFieldOut]


class DefinitionFormOut(_Out):
    process_id: str
    element_id: str
    name: str | None = None
    form_key: str | None = None
    has_form: bool
    fields: list[FormFieldOut]


class FormProblemOut(_Out):
    field: str
    label: str = Field(description="the field's Chinese label (empty for a variable the form does not have)")
    problem: Literal[
        "required",
        "unknown_field",
        "wrong_type",
        "not_an_option",
        "too_short",
        "too_long",
        "too_small",
        "too_large",
        "read_only",
    ]
    message: str


class FormErrorOut(ErrorOut):
    task_id: str | None = None
    fields: list[FormProblemOut] | None = Field(
        None, description="invalid_form: each field and what is wrong"
    )
