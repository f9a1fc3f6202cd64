"""Typed errors a user of the engine can meet.

Each carries a stable machine code (``error``), an HTTP status, and a message that says what was wrong and
where (resource, line, BPMN element id, field name). The API turns them into ``{error, message, ...}``.
"""

from __future__ import annotations

from typing import Any


class CaseflowError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, /, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = {k: v for k, v in details.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        # A detail can never replace the machine code or the message.
        extra = {k: v for k, v in self.details.items() if k not in ("error", "message")}
        return {"error": self.code, "message": self.message, **extra}


class InvalidModel(CaseflowError):
    """A BPMN/DMN resource that cannot be deployed: names the resource, line and element id."""

    code = "invalid_model"

    def __init__(
        self,
        message: str,
        *,
        resource: str | None = None,
        line: int | None = None,
        element_id: str | None = None,
    ) -> None:
        where = []
        if resource:
            where.append(resource)
        if line:
            where.append(f"line {line}")
        if element_id:
            where.append(f"element '{element_id}'")
        full = f"{', '.join(where)}: {message}" if where else message
        super().__init__(full, resource=resource, line=line, element_id=element_id)


class PayloadTooLarge(CaseflowError):
    status = 413
    code = "payload_too_large"


class InvalidVariables(CaseflowError):
    status = 422
    code = "invalid_variables"


class InvalidForm(InvalidVariables):
    """A completion that does not fill in the task's form: ``fields`` lists each field and what is wrong."""

    code = "invalid_form"


class NotFound(CaseflowError):
    status = 404
    code = "not_found"


class Conflict(CaseflowError):
    status = 409
    code = "conflict"


class ConcurrentModification(Conflict):
    code = "concurrent_modification"


class TaskNotOpen(Conflict):
    code = "task_not_open"


class TaskClaimed(Conflict):
    code = "task_claimed"


class MessageNotCorrelated(Conflict):
    code = "message_not_correlated"


class AmbiguousCorrelation(Conflict):
    code = "ambiguous_correlation"


class InstanceNotRunning(Conflict):
    code = "instance_not_running"


class Forbidden(CaseflowError):
    status = 403
    code = "forbidden"


class Unavailable(CaseflowError):
    """The database could not be reached; nothing was changed and the request may be repeated."""

    status = 503
    code = "unavailable"
