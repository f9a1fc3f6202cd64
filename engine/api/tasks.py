"""User tasks: list, claim, unclaim, assign, complete."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from engine.api.deps import ActorDep, EngineDep, Limit, Offset, TaskId, ViewerDep, errors, require_json
from engine.api.schemas import (
    AssigneeOut,
    AssignRequest,
    ClaimRequest,
    CompleteRequest,
    FormErrorOut,
    InstanceOut,
    TaskFormOut,
    TaskOut,
)
from engine.store import queries
from engine.store.db import read_only

router = APIRouter(tags=["tasks"], dependencies=[Depends(require_json)])

Filter = Annotated[str | None, Query(max_length=255)]


@router.get("/api/tasks", response_model=list[TaskOut], summary="List user tasks (open ones by default)")
def list_tasks(
    engine: EngineDep,
    viewer: ViewerDep,
    candidate_group: Filter = None,
    candidate_user: Filter = None,
    assignee: Filter = None,
    instance_id: Filter = None,
    state: Literal["open", "completed", "cancelled"] = "open",
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.tasks(
            conn,
            candidate_group=candidate_group,
            candidate_user=candidate_user,
            assignee=assignee,
            instance_id=instance_id,
            state=state,
            limit=limit,
            offset=offset,
            viewer=viewer,
        )


@router.get(
    "/api/tasks/{task_id}", response_model=TaskOut, responses=errors(401, 404), summary="One user task"
)
def get_task(engine: EngineDep, viewer: ViewerDep, task_id: TaskId) -> dict[str, Any]:
    return engine.read_task(task_id, viewer)


@router.get(
    "/api/tasks/{task_id}/form",
    response_model=TaskFormOut,
    responses=errors(404),
    summary="The task's form: fields, types, constraints, options and the variables' current values",
)
def get_task_form(engine: EngineDep, viewer: ViewerDep, task_id: TaskId) -> dict[str, Any]:
    engine.note_task_read(task_id, viewer, "form")  # a confidential task's values: need-to-know, logged
    return engine.task_form(task_id)


@router.post(
    "/api/tasks/{task_id}/claim",
    response_model=AssigneeOut,
    responses=errors(401, 403, 404, 409, 415, 422),
    summary="Claim a task (409 if someone else holds it)",
)
def claim(engine: EngineDep, actor: ActorDep, task_id: TaskId, body: ClaimRequest) -> dict[str, Any]:
    return engine.claim(task_id, body.user, actor=actor)


@router.post(
    "/api/tasks/{task_id}/unclaim",
    response_model=AssigneeOut,
    responses=errors(404, 409),
    summary="Give a claimed task back to its candidates",
)
def unclaim(engine: EngineDep, actor: ActorDep, task_id: TaskId) -> dict[str, Any]:
    return engine.unclaim(task_id, actor=actor)


@router.post(
    "/api/tasks/{task_id}/assign",
    response_model=AssigneeOut,
    responses=errors(401, 403, 404, 409, 415, 422),
    summary="Assign a task to a user (or to nobody)",
)
def assign(engine: EngineDep, actor: ActorDep, task_id: TaskId, body: AssignRequest) -> dict[str, Any]:
    return engine.assign(task_id, body.user, actor=actor)


@router.post(
    "/api/tasks/{task_id}/complete",
    response_model=InstanceOut,
    responses={
        **errors(401, 403, 404, 409, 415, 422),
        422: {
            "model": FormErrorOut,
            "description": "invalid variables, or a form not filled in (invalid_form)",
        },
    },
    summary="Complete a task with variables (checked against its form); answers the instance after it moved on",
)
def complete(engine: EngineDep, actor: ActorDep, task_id: TaskId, body: CompleteRequest) -> dict[str, Any]:
    return engine.complete(task_id, body.variables, user=body.user, actor=actor)
