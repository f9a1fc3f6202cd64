"""Composition root: settings -> database (migrated) -> engine -> transport -> scheduler."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.local import LocalTransport
from engine.commands import Clock, Engine, EngineConfig, system_clock
from engine.errors import InvalidModel
from engine.scheduler import Scheduler
from engine.settings import Settings
from engine.store.db import create_db_engine
from engine.store.migrate import migrate

log = logging.getLogger("caseflow")


@dataclass
class Application:
    settings: Settings
    engine: Engine
    transport: LocalTransport
    scheduler: Scheduler


def build(settings: Settings, clock: Clock = system_clock, *, schema: str | None = None) -> Application:
    db = create_db_engine(settings.database_url, schema=schema)
    migrate(db)
    engine = Engine(
        db,
        clock,
        EngineConfig(
            timezone=settings.tz,
            max_model_bytes=settings.max_model_bytes,
            default_message_ttl=settings.message_ttl_seconds,
            job_retries=settings.job_retries,
        ),
    )
    transport = LocalTransport()
    transport.subscribe(engine.receive)
    scheduler = Scheduler(engine, transport.publish, settings.scheduler_interval_ms / 1000)
    return Application(settings, engine, transport, scheduler)


def deploy_directory(engine: Engine, directory: str | Path, actor: str = "system") -> list[dict[str, Any]]:
    """Deploy the bundled models (each file its own deployment; unchanged files create nothing)."""
    path = Path(directory)
    results: list[dict[str, Any]] = []
    if not path.is_dir():
        log.warning(
            "no models deployed on start: %s is not a directory (set CASEFLOW_BPMN_DIR)", path.resolve()
        )
        return results
    files = sorted(
        p for p in path.iterdir() if p.suffix in (".bpmn", ".dmn") or p.name.endswith(".bpmn20.xml")
    )
    dmn = [(p.name, p.read_bytes()) for p in files if p.suffix == ".dmn"]
    for p in files:
        if p.suffix == ".dmn":
            continue
        try:
            results.append(
                engine.deploy([(p.name, p.read_bytes()), *dmn], name=p.stem, source="bpmn/", actor=actor)
            )
        except InvalidModel as exc:
            log.error("bundled model %s was not deployed: %s", p.name, exc.message)
    return results
