"""Messages, incidents and jobs (external work for service tasks)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy import select

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
from engine.errors import NotFound
from engine.store import queries
from engine.store.db import read_only
from engine.store.tables import job

router = APIRouter(tags=["messages and incidents"], dependencies=[Depends(require_json)])

IncidentId = Annotated[str, Path(max_length=255)]
JobId = Annotated[str, Path(max_length=255)]


@router.post(
    "/api/messages",
    response_model=MessageOut,
    responses=errors(409, 415, 422),
    summary="Deliver a message to the instance waiting for it (or start one; or buffer it for ttl_seconds)",
)
def correlate(engine: EngineDep, actor: ActorDep, viewer: ViewerDep, body: MessageRequest) -> dict[str, Any]:
    result = engine.correlate(
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
    # The sender learns that its message arrived, not what a confidential case holds.
    return {**result, "instances": engine.redact_hidden(list(result.get("instances") or []), viewer)}


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
    engine: EngineDep, viewer: ViewerDep, topic: Annotated[str | None, Query(max_length=255)] = None
) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.jobs(conn, topic, viewer=viewer)


@router.post(
    "/api/jobs/{job_id}/complete",
    response_model=InstanceOut,
    responses=errors(404, 409, 415, 422),
    summary="A worker finished a job",
)
def complete_job(
    engine: EngineDep, actor: ActorDep, viewer: ViewerDep, job_id: JobId, body: JobCompleteRequest
) -> dict[str, Any]:
    _ensure_job_visible(engine, job_id, viewer)
    return engine.complete_job(job_id, body.variables, actor=actor)


def _ensure_job_visible(engine: Any, job_id: str, viewer: Any) -> None:
    """A job of a confidential case the caller may not see does not exist for it (404, as in the list)."""
    with read_only(engine.db) as conn:
        instance_id = conn.execute(select(job.c.instance_id).where(job.c.id == job_id)).scalar()
    if instance_id is not None:
        try:
            engine.ensure_visible(instance_id, viewer)
        except NotFound:
            raise NotFound(f"job '{job_id}' does not exist", job_id=job_id) from None


@router.post(
    "/api/jobs/{job_id}/fail",
    responses=errors(404, 415, 422),
    summary="A worker failed a job; at zero retries it becomes an incident",
)
def fail_job(
    engine: EngineDep, actor: ActorDep, viewer: ViewerDep, job_id: JobId, body: JobFailRequest
) -> dict[str, Any]:
    _ensure_job_visible(engine, job_id, viewer)
    return engine.fail_job(job_id, body.error_message, retries=body.retries, actor=actor)
