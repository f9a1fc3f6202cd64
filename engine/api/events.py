"""Messages, incidents and jobs (external work for service tasks)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from engine.api.deps import ActorDep, EngineDep
from engine.api.schemas import JobCompleteRequest, JobFailRequest, MessageRequest, RetryRequest
from engine.store import queries
from engine.store.db import read_only

router = APIRouter(tags=["messages and incidents"])


@router.post("/api/messages")
def correlate(engine: EngineDep, actor: ActorDep, body: MessageRequest) -> dict[str, Any]:
    return engine.correlate(body.name, business_key=body.business_key, correlation_keys=body.correlation_keys,
                            variables=body.variables, message_id=body.message_id, ttl_seconds=body.ttl_seconds,
                            all=body.all, actor=actor, source="api")


@router.get("/api/incidents")
def list_incidents(engine: EngineDep, instance_id: str | None = None) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.incidents(conn, instance_id=instance_id)


@router.post("/api/incidents/{incident_id}/retry")
def retry(engine: EngineDep, actor: ActorDep, incident_id: str, body: RetryRequest | None = None) -> dict[str, Any]:
    return engine.retry_incident(incident_id, body.variables if body else None, actor=actor)


@router.get("/api/jobs")
def list_jobs(engine: EngineDep, topic: str | None = None) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.jobs(conn, topic)


@router.post("/api/jobs/{job_id}/complete")
def complete_job(engine: EngineDep, actor: ActorDep, job_id: str, body: JobCompleteRequest) -> dict[str, Any]:
    return engine.complete_job(job_id, body.variables, actor=actor)


@router.post("/api/jobs/{job_id}/fail")
def fail_job(engine: EngineDep, actor: ActorDep, job_id: str, body: JobFailRequest) -> dict[str, Any]:
    return engine.fail_job(job_id, body.error_message, retries=body.retries, actor=actor)
