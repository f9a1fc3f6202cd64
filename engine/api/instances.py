"""Process instances: start, read, cancel, audit."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query

from engine.api.deps import ActorDep, EngineDep
from engine.api.schemas import StartRequest
from engine.store import audit, queries
from engine.store.db import read_only

router = APIRouter(tags=["instances"])

State = Literal["running", "completed", "cancelled", "incident"]


@router.post("/api/process-definitions/key/{key}/start", status_code=201)
def start_by_key(engine: EngineDep, actor: ActorDep, key: str, body: StartRequest) -> dict[str, Any]:
    return engine.start(key=key, business_key=body.business_key, variables=body.variables, actor=actor)


@router.post("/api/process-definitions/{definition_id}/start", status_code=201)
def start_by_id(engine: EngineDep, actor: ActorDep, definition_id: str, body: StartRequest) -> dict[str, Any]:
    return engine.start(definition_id=definition_id, business_key=body.business_key, variables=body.variables,
                        actor=actor)


@router.get("/api/process-instances")
def list_instances(engine: EngineDep, key: str | None = None, business_key: str | None = None,
                   state: State | None = None, limit: int = Query(100, ge=1, le=1000),
                   offset: int = Query(0, ge=0)) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.instances(conn, key=key, business_key=business_key, state=state, limit=limit, offset=offset)


@router.get("/api/process-instances/{instance_id}")
def get_instance(engine: EngineDep, instance_id: str) -> dict[str, Any]:
    with read_only(engine.db) as conn:
        return queries.instance(conn, instance_id)


@router.delete("/api/process-instances/{instance_id}")
def cancel_instance(engine: EngineDep, actor: ActorDep, instance_id: str,
                    reason: str | None = Query(None, max_length=1000)) -> dict[str, Any]:
    return engine.cancel(instance_id, actor=actor, reason=reason)


@router.get("/api/process-instances/{instance_id}/audit")
def instance_audit(engine: EngineDep, instance_id: str) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.audit_trail(conn, instance_id)


@router.get("/api/audit/verify")
def verify_audit(engine: EngineDep, instance_id: str | None = None) -> dict[str, Any]:
    with read_only(engine.db) as conn:
        checked, problems = audit.verify(conn, instance_id)
    return {"ok": not problems, "records_checked": checked,
            "problems": [p.__dict__ for p in problems]}
