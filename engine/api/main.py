"""FastAPI application factory (nothing is created at import time)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from engine.api import definitions, errors, events, instances, tasks
from engine.commands import Engine

ROUTERS = (definitions.router, instances.router, tasks.router, events.router)


def create_app(engine: Engine) -> FastAPI:
    app = FastAPI(
        title="caseflow",
        version="0.1.0",
        description="BPMN workflow engine for transferring cases between government agencies.",
    )
    app.state.engine = engine
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/api/health", tags=["health"])
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    return app
