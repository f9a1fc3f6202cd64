"""Request-scoped dependencies as ``Annotated`` aliases."""

from __future__ import annotations

import email.message
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Query, Request

from engine.api.errors import UnknownUser, UnsupportedMediaType
from engine.api.schemas import ErrorOut
from engine.commands import Engine
from engine.directory import Viewer


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_actor(
    request: Request,
    x_caseflow_user: Annotated[
        str | None,
        Header(
            max_length=255,
            description="who acts or reads (recorded in the audit trail); with a users directory it must "
            "name one of its users (else 401), and it decides which confidential cases show",
        ),
    ] = None,
) -> str | None:
    directory = getattr(request.app.state.engine, "directory", None)
    if x_caseflow_user is not None and directory is not None and x_caseflow_user not in directory:
        raise UnknownUser(f"X-Caseflow-User '{x_caseflow_user}' is not a user of this engine's directory")
    return x_caseflow_user


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return (length is not None and length != "0") or "transfer-encoding" in request.headers


def _media_type(request: Request) -> tuple[str, str]:
    message = email.message.Message()
    message["content-type"] = request.headers.get("content-type", "")
    return message.get_content_maintype(), message.get_content_subtype()


def require_json(request: Request) -> None:
    """A JSON body must say so: anything else is a clear 415, not a puzzling validation error."""
    if request.method not in ("POST", "PUT", "PATCH") or not _has_body(request):
        return
    if "content-type" not in request.headers:
        raise UnsupportedMediaType("the request body needs the header Content-Type: application/json")
    main, sub = _media_type(request)
    if main != "application" or not (sub == "json" or sub.endswith("+json")):
        raise UnsupportedMediaType(
            f"the request body must be application/json, not {request.headers['content-type'][:100]}"
        )


def require_multipart(request: Request) -> None:
    if request.method != "POST":
        return
    main, sub = _media_type(request)
    if (main, sub) != ("multipart", "form-data"):
        raise UnsupportedMediaType(
            "a deployment is uploaded as multipart/form-data with one or more parts named 'files'"
        )


EngineDep = Annotated[Engine, Depends(get_engine)]
ActorDep = Annotated[str | None, Depends(get_actor)]


def get_viewer(engine: EngineDep, actor: ActorDep) -> Viewer:
    """Who reads: X-Caseflow-User with its groups from the directory (no header: nobody in particular, who
    sees no confidential case)."""
    return engine.viewer(actor)


ViewerDep = Annotated[Viewer, Depends(get_viewer)]
Limit = Annotated[int, Query(ge=1, le=1000, description="at most this many items")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="skip this many items")]
InstanceId = Annotated[str, Path(max_length=255, description="process instance id")]
TaskId = Annotated[str, Path(max_length=255, description="user task id")]


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the JSON errors a route answers."""
    text = {
        400: "invalid model or malformed request",
        401: "X-Caseflow-User names nobody in the users directory (unknown_user)",
        403: "the user may not act on this task: not a candidate, or lacks a certificate, qualification or "
        "role it requires (forbidden)",
        404: "no such id",
        409: "conflict with the current state (already claimed, already completed, not correlated, a race)",
        413: "the body is too large",
        415: "wrong content type",
        422: "invalid fields or variables",
    }
    return {status: {"model": ErrorOut, "description": text[status]} for status in statuses}
