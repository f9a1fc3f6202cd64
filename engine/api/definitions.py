"""Deployments and process definitions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import Response

from engine.api.deps import ActorDep, EngineDep
from engine.errors import InvalidModel, PayloadTooLarge
from engine.store import queries
from engine.store.db import read_only

router = APIRouter(tags=["definitions"])


@router.post("/api/deployments", status_code=201)
async def deploy(
    engine: EngineDep,
    actor: ActorDep,
    files: Annotated[list[UploadFile], File(description="BPMN and DMN files")],
    name: Annotated[str | None, Form(max_length=255)] = None,
) -> dict[str, Any]:
    limit = engine.config.max_model_bytes
    resources: list[tuple[str, bytes]] = []
    for upload in files:
        content = await upload.read(limit + 1)
        filename = upload.filename or f"resource-{len(resources) + 1}.bpmn"
        if len(content) > limit:
            raise PayloadTooLarge(f"{filename}: larger than the limit of {limit} bytes", resource=filename,
                                  limit=limit)
        resources.append((filename, content))
    if not resources:
        raise InvalidModel("a deployment needs at least one file")
    return engine.deploy(resources, name=name, source="api", actor=actor)


@router.get("/api/process-definitions")
def list_definitions(engine: EngineDep, key: str | None = None, latest: bool = False) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.definitions(conn, key, latest)


@router.get("/api/process-definitions/{definition_id}/xml", response_class=Response,
            responses={200: {"content": {"application/xml": {}}}})
def definition_xml(engine: EngineDep, definition_id: str) -> Response:
    with read_only(engine.db) as conn:
        _name, content = queries.definition_xml(conn, definition_id)
    return Response(content, media_type="application/xml")
