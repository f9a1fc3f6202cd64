"""Messages, incidents and jobs (external work for service tasks)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from engine.api.deps import ActorDep, EngineDep, ViewerDep, errors, require_json
from engine.api.schemas import (
    IncidentOut,
    InstanceOut,
    JobCompleteRequest,
    JobFailRequest,
    JobOut,
    MessageOut,
    MessageRequest,
    RetryOut,
    RetryRequest,
)
from engine.store import queries
from engine.store.db import read_only

router = APIRouter(tags=["messages and incidents"], dependencies=[Depends(require_json)])

IncidentId = Annotated[str, Path(max_length=255)]
JobId = Annotated[str, Path(max_length=255)]


@router.post(
    "/api/messages",
    response_model=MessageOut,
    responses=errors(409, 415, 422),
    summary="Deliver a message to the instance waiting for it (or start one; or buffer it for ttl_seconds)",
)
def correlate(engine: EngineDep, actor: ActorDep, body: MessageRequest) -> dict[str, Any]:
    return engine.correlate(
        body.name,
        business_key=body.business_key,
        correlation_keys=body.correlation_keys,
        variables=body.variables,
        message_id=body.message_id,
        ttl_seconds=body.ttl_seconds,
        all=body.all,
        actor=actor,
        source="api",
    )


@router.get("/api/incidents", response_model=list[IncidentOut], summary="List open incidents")
def list_incidents(
    engine: EngineDep, viewer: ViewerDep, instance_id: Annotated[str | None, Query(max_length=255)] = None
) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.incidents(conn, instance_id=instance_id, viewer=viewer)


@router.post(
    "/api/incidents/{incident_id}/retry",
    response_model=RetryOut,
    responses=errors(404, 409, 415, 422),
    summary="Resolve an incident by retrying the failed step (optionally with corrected variables)",
)
def retry(
    engine: EngineDep, actor: ActorDep, incident_id: IncidentId, body: RetryRequest | None = None
) -> dict[str, Any]:
    return engine.retry_incident(incident_id, body.variables if body else None, actor=actor)


@router.get(
    "/api/jobs", response_model=list[JobOut], summary="List jobs (service tasks waiting for a worker)"
)
def list_jobs(
    engine: EngineDep, topic: Annotated[str | None, Query(max_length=255)] = None
) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.jobs(conn, topic)


@router.post(
    "/api/jobs/{job_id}/complete",
    response_model=InstanceOut,
    responses=errors(404, 409, 415, 422),
    summary="A worker finished a job",
)
def complete_job(
    engine: EngineDep, actor: ActorDep, job_id: JobId, body: JobCompleteRequest
) -> dict[str, Any]:
    return engine.complete_job(job_id, body.variables, actor=actor)


@router.post(
    "/api/jobs/{job_id}/fail",
    responses=errors(404, 415, 422),
    summary="A worker failed a job; at zero retries it becomes an incident",
)
def fail_job(engine: EngineDep, actor: ActorDep, job_id: JobId, body: JobFailRequest) -> dict[str, Any]:
    return engine.fail_job(job_id, body.error_message, retries=body.retries, actor=actor)
