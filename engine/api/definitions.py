"""Deployments and process definitions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from engine.api.deps import ActorDep, EngineDep, errors, require_multipart
from engine.api.schemas import DefinitionFormOut, DefinitionOut, DeploymentOut
from engine.errors import InvalidModel, PayloadTooLarge
from engine.store import queries
from engine.store.db import read_only

router = APIRouter(tags=["definitions"])


@router.post(
    "/api/deployments",
    status_code=201,
    response_model=DeploymentOut,
    dependencies=[Depends(require_multipart)],
    responses=errors(400, 413, 415, 422),
    summary="Deploy BPMN and DMN files (a changed model becomes a new version)",
)
async def deploy(
    engine: EngineDep,
    actor: ActorDep,
    files: Annotated[list[UploadFile], File(description="BPMN and DMN files")],
    name: Annotated[str | None, Form(max_length=255)] = None,
) -> dict[str, Any]:
    limit = engine.config.max_model_bytes
    resources: list[tuple[str, bytes]] = []
    for upload in files:
        # Read at most one byte past the limit: a larger file is refused without holding it all.
        content = await upload.read(limit + 1)
        filename = upload.filename or f"resource-{len(resources) + 1}.bpmn"
        if len(content) > limit:
            raise PayloadTooLarge(
                f"{filename}: larger than the limit of {limit} bytes", resource=filename, limit=limit
            )
        resources.append((filename, content))
    if not resources:
        raise InvalidModel("a deployment needs at least one file")
    result: dict[str, Any] = await run_in_threadpool(
        engine.deploy, resources, name=name, source="api", actor=actor
    )
    return result


@router.get(
    "/api/process-definitions", response_model=list[DefinitionOut], summary="List process definitions"
)
def list_definitions(
    engine: EngineDep,
    key: Annotated[str | None, Query(max_length=255, description="only this process key")] = None,
    latest: Annotated[bool, Query(description="only the latest version of each key")] = False,
) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return queries.definitions(conn, key, latest)


@router.get(
    "/api/process-definitions/{definition_id}/xml",
    response_class=Response,
    responses={200: {"content": {"application/xml": {}}, "description": "the deployed BPMN"}, **errors(404)},
    summary="The BPMN XML a definition was deployed from",
)
def definition_xml(engine: EngineDep, definition_id: str) -> Response:
    with read_only(engine.db) as conn:
        _name, content = queries.definition_xml(conn, definition_id)
    return Response(content, media_type="application/xml")


@router.get(
    "/api/process-definitions/{definition_id}/forms",
    response_model=list[DefinitionFormOut],
    responses=errors(404),
    summary="The form of every user task of a definition (fields, types, constraints, options)",
)
def definition_forms(
    engine: EngineDep, definition_id: Annotated[str, Path(max_length=255)]
) -> list[dict[str, Any]]:
    return engine.definition_forms(definition_id)
