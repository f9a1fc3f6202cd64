"""Composition root: settings -> database (migrated) -> engine -> transport -> scheduler."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters import amqp
from adapters.agencies import AgencyError, Keyring, Registry
from adapters.agencies import load as load_agencies
from adapters.local import LocalTransport
from engine.calendar import BusinessCalendar, CalendarFileError, load_calendar
from engine.commands import Clock, Engine, EngineConfig, system_clock
from engine.directory import Directory, DirectoryError, load_agency_codes, load_directory
from engine.errors import InvalidModel
from engine.link import Link
from engine.scheduler import Scheduler
from engine.settings import Settings, SettingsError
from engine.store.db import create_db_engine
from engine.store.migrate import migrate

log = logging.getLogger("caseflow")


@dataclass
class Application:
    settings: Settings
    engine: Engine
    transport: LocalTransport
    scheduler: Scheduler
    link: Link | None = None  # the RabbitMQ link, when CASEFLOW_AMQP_URL is set


def build(
    settings: Settings,
    clock: Clock = system_clock,
    *,
    schema: str | None = None,
    directory: Directory | None = None,
) -> Application:
    _registry, served, keyring = agencies(settings)
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
            agencies=served,
            calendar=_calendar(settings),
        ),
        directory=directory,
    )
    transport = LocalTransport(keyring, max_bytes=settings.max_message_bytes)
    transport.subscribe(engine.receive)
    link = None
    if settings.amqp_url:
        link = Link(
            engine,
            settings.amqp_url,
            amqp.Names(settings.amqp_prefix),
            keyring,
            served,
            transport,
            max_bytes=settings.max_message_bytes,
            consumers=settings.link_consumers,
        )
    # With a broker the link relays the outbox (and dead-letters expired messages); without, the scheduler
    # hands it to the in-process transport.
    scheduler = Scheduler(
        engine,
        transport.publish if link is None else None,
        settings.scheduler_interval_ms / 1000,
        dead_letter=link.dead_letter if link is not None else None,
    )
    return Application(settings, engine, transport, scheduler, link)


def agencies(settings: Settings) -> tuple[Registry, tuple[str, ...], Keyring]:
    """The agencies file, the agencies this engine serves and their keys (production: real keys required)."""
    try:
        registry = load_agencies(settings.agencies_file)
        served = settings.agencies or registry.district_codes()
        unknown = [code for code in served if code not in registry]
        if unknown:
            raise AgencyError(
                f"CASEFLOW_AGENCIES names agencies not in the agencies file: {', '.join(unknown)}"
            )
        keyring = Keyring(registry, production=settings.environment == "production")
        if settings.environment == "production":
            keyring.require(served)
    except AgencyError as exc:
        raise SettingsError(str(exc)) from None
    return registry, tuple(served), keyring


def _calendar(settings: Settings) -> BusinessCalendar:
    try:
        return load_calendar(settings.calendar_dir)
    except CalendarFileError as exc:
        raise SettingsError(f"CASEFLOW_CALENDAR_DIR: {exc}") from None


def load_users(settings: Settings) -> Directory | None:
    """The users directory of CASEFLOW_USERS_FILE (None: set to "none"; or the default file is missing outside
    production, with a warning). A named file that cannot be used stops the start."""
    if settings.users_file is None:
        log.warning("no users directory (CASEFLOW_USERS_FILE=none): anyone may act on any task")
        return None
    path = Path(settings.users_file)
    default = settings.users_file == Settings.users_file
    if not path.is_file() and default and settings.environment != "production":
        log.warning("no users directory: %s is missing, so anyone may act on any task", path.resolve())
        return None
    agencies_file = Path(settings.agencies_file or "deployments/agencies.yaml")
    try:
        agencies = load_agency_codes(agencies_file) if agencies_file.is_file() else None
        directory = load_directory(path, agencies)
    except DirectoryError as exc:
        raise SettingsError(f"CASEFLOW_USERS_FILE: {exc}") from None
    log.info("users directory %s: %d users", path, len(directory))
    return directory


def deploy_directory(engine: Engine, directory: str | Path, actor: str = "system") -> list[dict[str, Any]]:
    """Deploy the bundled models: each BPMN file its own deployment (with every DMN file beside it), so that
    unchanged files create nothing. A process that calls one from another file deploys after it: files that
    fail are tried again as long as another file deployed in the meantime."""
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
    pending = [p for p in files if p.suffix != ".dmn"]
    failures: dict[str, str] = {}
    while pending:
        failed = []
        for p in pending:
            try:
                results.append(
                    engine.deploy([(p.name, p.read_bytes()), *dmn], name=p.stem, source="bpmn/", actor=actor)
                )
                failures.pop(p.name, None)
            except InvalidModel as exc:
                failures[p.name] = exc.message
                failed.append(p)
        if len(failed) == len(pending):
            break
        pending = failed
    for name, message in failures.items():
        log.error("bundled model %s was not deployed: %s", name, message)
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
