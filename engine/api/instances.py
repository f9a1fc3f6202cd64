"""Process instances: start, read, cancel, audit."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from engine.api.deps import ActorDep, EngineDep, InstanceId, Limit, Offset, ViewerDep, errors, require_json
from engine.api.schemas import (
    AuditRecordOut,
    AuditVerifyOut,
    InstanceDetail,
    InstanceOut,
    InstanceSummary,
    StartRequest,
)
from engine.store import audit, queries
from engine.store.db import read_only

router = APIRouter(tags=["instances"], dependencies=[Depends(require_json)])

State = Literal["running", "completed", "cancelled", "incident"]


@router.post(
    "/api/process-definitions/key/{key}/start",
    status_code=201,
    response_model=InstanceOut,
    responses=errors(404, 409, 415, 422),
    summary="Start an instance of the latest version of a process",
)
def start_by_key(engine: EngineDep, actor: ActorDep, key: str, body: StartRequest) -> dict[str, Any]:
    return engine.start(key=key, business_key=body.business_key, variables=body.variables, actor=actor)


@router.post(
    "/api/process-definitions/{definition_id}/start",
    status_code=201,
    response_model=InstanceOut,
    responses=errors(404, 409, 415, 422),
    summary="Start an instance of one definition version",
)
def start_by_id(engine: EngineDep, actor: ActorDep, definition_id: str, body: StartRequest) -> dict[str, Any]:
    return engine.start(
        definition_id=definition_id, business_key=body.business_key, variables=body.variables, actor=actor
    )


@router.get("/api/process-instances", response_model=list[InstanceSummary], summary="List process instances")
def list_instances(
    engine: EngineDep,
    viewer: ViewerDep,
    key: Annotated[str | None, Query(max_length=255)] = None,
    business_key: Annotated[str | None, Query(max_length=255)] = None,
    state: State | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.instances(
            conn, key=key, business_key=business_key, state=state, limit=limit, offset=offset, viewer=viewer
        )


@router.get(
    "/api/process-instances/{instance_id}",
    response_model=InstanceDetail,
    responses=errors(401, 404),
    summary="One instance: state, active elements, variables, open tasks, what it waits for",
)
def get_instance(engine: EngineDep, viewer: ViewerDep, instance_id: InstanceId) -> dict[str, Any]:
    return engine.read_instance(instance_id, viewer)


@router.delete(
    "/api/process-instances/{instance_id}",
    response_model=InstanceOut,
    responses=errors(404, 409),
    summary="Cancel an instance",
)
def cancel_instance(
    engine: EngineDep,
    actor: ActorDep,
    viewer: ViewerDep,
    instance_id: InstanceId,
    reason: Annotated[str | None, Query(max_length=1000)] = None,
) -> dict[str, Any]:
    engine.ensure_visible(instance_id, viewer)
    return engine.cancel(instance_id, actor=actor, reason=reason)


@router.get(
    "/api/process-instances/{instance_id}/audit",
    response_model=list[AuditRecordOut],
    responses=errors(401, 404),
    summary="The instance's audit trail: who did what, when, and which variables changed",
)
def instance_audit(engine: EngineDep, viewer: ViewerDep, instance_id: InstanceId) -> list[dict[str, Any]]:
    return engine.read_audit(instance_id, viewer)


@router.get(
    "/api/audit/verify",
    response_model=AuditVerifyOut,
    summary="Recompute the audit hash chains: reports every edited or removed record",
)
def verify_audit(
    engine: EngineDep, instance_id: Annotated[str | None, Query(max_length=255)] = None
) -> dict[str, Any]:
    with read_only(engine.db) as conn:
        checked, problems = audit.verify(conn, instance_id)
    return {"ok": not problems, "records_checked": checked, "problems": [p.__dict__ for p in problems]}
