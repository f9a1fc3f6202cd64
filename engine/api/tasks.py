"""User tasks: list, claim, unclaim, assign, complete."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query

from engine.api.deps import ActorDep, EngineDep
from engine.api.schemas import AssignRequest, ClaimRequest, CompleteRequest
from engine.store import queries
from engine.store.db import read_only

router = APIRouter(tags=["tasks"])


@router.get("/api/tasks")
def list_tasks(engine: EngineDep, candidate_group: str | None = None, candidate_user: str | None = None,
               assignee: str | None = None, instance_id: str | None = None,
               state: Literal["open", "completed", "cancelled"] = "open",
               limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.tasks(conn, candidate_group=candidate_group, candidate_user=candidate_user,
                             assignee=assignee, instance_id=instance_id, state=state, limit=limit, offset=offset)


@router.get("/api/tasks/{task_id}")
def get_task(engine: EngineDep, task_id: str) -> dict[str, Any]:
    with read_only(engine.db) as conn:
        return queries.task_by_id(conn, task_id)


@router.post("/api/tasks/{task_id}/claim")
def claim(engine: EngineDep, actor: ActorDep, task_id: str, body: ClaimRequest) -> dict[str, Any]:
    return engine.claim(task_id, body.user, actor=actor)


@router.post("/api/tasks/{task_id}/unclaim")
def unclaim(engine: EngineDep, actor: ActorDep, task_id: str) -> dict[str, Any]:
    return engine.unclaim(task_id, actor=actor)


@router.post("/api/tasks/{task_id}/assign")
def assign(engine: EngineDep, actor: ActorDep, task_id: str, body: AssignRequest) -> dict[str, Any]:
    return engine.assign(task_id, body.user, actor=actor)


@router.post("/api/tasks/{task_id}/complete")
def complete(engine: EngineDep, actor: ActorDep, task_id: str, body: CompleteRequest) -> dict[str, Any]:
    return engine.complete(task_id, body.variables, user=body.user, actor=actor)
