"""FastAPI application factory (nothing is created at import time)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

from engine.api import definitions, errors, events, instances, tasks
from engine.api.guard import DEFAULT_MAX_JSON_BYTES, RequestGuard
from engine.api.schemas import ErrorOut
from engine.commands import Engine
from engine.store.db import read_only

ROUTERS = (definitions.router, instances.router, tasks.router, events.router)
# A deployment may carry a few models (a BPMN with its DMN tables) of up to max_model_bytes each.
MODELS_PER_DEPLOYMENT = 4


def create_app(engine: Engine, *, max_json_bytes: int = DEFAULT_MAX_JSON_BYTES) -> FastAPI:
    app = FastAPI(
        title="caseflow",
        version="0.1.0",
        description="BPMN workflow engine for transferring cases between government agencies. Every error is "
        "JSON `{error, message}`: `error` is a stable code, `message` says what was wrong and where.",
    )
    app.state.engine = engine
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(
        RequestGuard,
        max_json_bytes=max_json_bytes,
        max_multipart_bytes=engine.config.max_model_bytes * MODELS_PER_DEPLOYMENT + 64 * 1024,
    )

    @app.get("/api/health", tags=["health"], summary="Liveness: the API answers")
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get(
        "/api/ready",
        tags=["health"],
        summary="Readiness: the database answers (503 `unavailable` while it does not)",
        responses={503: {"model": ErrorOut, "description": "the database is unreachable"}},
    )
    def ready() -> dict[str, Any]:
        with read_only(engine.db) as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ready", "database": "ok"}

    return app
