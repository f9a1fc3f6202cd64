"""The core every command shares: load an instance, save it with its projections, audit and outbox.

A command loads what it needs, lets the runtime advance the instance in memory, then writes the snapshot (a
compare-and-set on the instance's revision), its projections, the audit records and the outbox, and commits.
Nothing leaves before the commit. A loser of a race gets :class:`ConcurrentModification` (HTTP 409).
"""

from __future__ import annotations

import json
import math
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from threading import Lock
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, or_, select, update
from sqlalchemy import Engine as Database
from sqlalchemy.exc import DBAPIError

from adapters import envelope
from engine.calendar import BusinessCalendar
from engine.definitions.compiler import Checkers, Compiled, ProcessModel, compile_resources
from engine.definitions.xml import DEFAULT_MAX_BYTES
from engine.directory import Directory
from engine.errors import (
    ConcurrentModification,
    InvalidVariables,
    NotFound,
)
from engine.lang.expressions import Evaluator
from engine.runtime.instance import IncidentRaised, OutgoingMessage, Projection, Runtime, deadline_flags
from engine.runtime.snapshot import FORMAT, encode_data
from engine.store import audit
from engine.store.db import read_only
from engine.store.tables import (
    audit_record,
    buffered_message,
    incident,
    job,
    message_subscription,
    outbox,
    process_definition,
    process_instance,
    processed_message,
    resource,
    task,
    task_candidate,
    timer,
)

Clock = Callable[[], datetime]
_VAR_NAME = re.compile(r"^[A-Za-z\u00c0-\uffff][A-Za-z0-9_\u00c0-\uffff]*$")
MAX_VARIABLES_BYTES = 1_000_000
MAX_VARIABLES_DEPTH = 32


def system_clock() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def validate_variables(
    variables: Any, what: str = "variables", *, identifiers: bool = True
) -> dict[str, Any]:
    """Variables are a JSON object with identifier names; anything else is a clear 422."""
    if variables is None:
        return {}
    if not isinstance(variables, dict):
        raise InvalidVariables(f"{what} must be a JSON object, got {type(variables).__name__}", field=what)
    for name in variables:
        if not isinstance(name, str) or (identifiers and not _VAR_NAME.match(name)):
            raise InvalidVariables(
                f"variable name {name!r} is not allowed: use letters, digits and '_' and do not start with "
                "'_' or a digit",
                field=f"{what}.{name}",
            )
    if _nesting_depth(variables) > MAX_VARIABLES_DEPTH:
        raise InvalidVariables(f"{what} are nested more than {MAX_VARIABLES_DEPTH} levels deep", field=what)
    try:
        # Not JSON (NaN, Infinity) or not storable text (lone surrogates): refused here, not by the database.
        size = len(json.dumps(encode_data(variables), ensure_ascii=False, allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidVariables(f"{what}: {exc}", field=what) from None
    if size > MAX_VARIABLES_BYTES:
        raise InvalidVariables(f"{what} are {size} bytes; the limit is {MAX_VARIABLES_BYTES}", field=what)
    return variables


def _nesting_depth(value: Any) -> int:
    """How deeply containers nest (iterative, so hostile input cannot exhaust the stack)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple | set | frozenset):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_VARIABLES_DEPTH:
            return depth
        stack.extend((child, depth + 1) for child in children)
    return deepest


def validate_text(value: Any, what: str, *, max_length: int = 255, required: bool = False) -> str | None:
    """A short text stored in a column (business key, message name, user): a string the database can hold."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise InvalidVariables(f"{what} must be a {'non-empty ' if required else ''}string", field=what)
    if len(value) > max_length:
        raise InvalidVariables(f"{what} is longer than {max_length} characters", field=what)
    if "\x00" in value:
        raise InvalidVariables(f"{what} must not contain NUL characters", field=what)
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidVariables(f"{what} is not valid Unicode text", field=what) from None
    return value


def _json_safe(value: Any) -> Any:
    """Plain JSON view of task data for projections and API answers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset | range):
        return [_json_safe(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/Infinity, and PostgreSQL's json type refuses them
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for key, value in after.items():
        if key not in before or before[key] != value:
            changes[key] = _json_safe(value)
    for key in before:
        if key not in after:
            changes[key] = None
    return changes


@dataclass
class EngineConfig:
    timezone: tzinfo = UTC
    max_model_bytes: int = DEFAULT_MAX_BYTES
    default_message_ttl: int = 86_400
    job_retries: int = 3
    model_cache_size: int = 256
    # the agencies this engine serves (CASEFLOW_AGENCIES): the default sender of a message with caseflow:to
    agencies: tuple[str, ...] = ()
    calendar: BusinessCalendar | None = None  # None: chinese-calendar alone (no local calendar files)


@dataclass
class _Loaded:
    row: Any
    model: ProcessModel
    workflow: Any
    before: dict[str, Any]


@dataclass
class _Outcome:
    audit: list[audit.Entry] = field(default_factory=list)
    task_completed: tuple[str, str | None] | None = None  # (task id, user)
    incident_resolved: str | None = None


# Statements whose success decides a race say so with RETURNING (a row or none), which also holds when
# PostgreSQL runs the transaction in pipeline mode, where a row count is not known until the end.
_UPDATE_INSTANCE = (
    update(process_instance)
    .where(process_instance.c.id == bindparam("b_id"), process_instance.c.revision == bindparam("b_revision"))
    .returning(process_instance.c.id)
)
# Statements built once: SQLAlchemy then reuses their compiled form without rebuilding cache keys.
_INSERT_AUDIT = insert(audit_record)
_INSERT_TASK = insert(task)
_INSERT_CANDIDATES = insert(task_candidate)
_INSERT_INSTANCE = insert(process_instance)
_INSERT_SUBSCRIPTIONS = insert(message_subscription)
_INSERT_JOBS = insert(job)
_INSERT_OUTBOX = insert(outbox)
_INSERT_TIMERS = insert(timer)
_END_TASK = update(task).where(task.c.id == bindparam("b_id"))
_CLAIM_TASK = update(task).where(
    task.c.id == bindparam("b_id"),
    task.c.state == "open",
    or_(task.c.assignee.is_(None), task.c.assignee == bindparam("b_user")),
)
_APPEND_AUDIT = (
    update(process_instance)
    .where(process_instance.c.id == bindparam("b_id"), process_instance.c.audit_seq == bindparam("b_seq"))
    .returning(process_instance.c.id)
)
_TASK_FOR_ASSIGNMENT = (
    select(
        task.c.id,
        task.c.instance_id,
        task.c.state,
        task.c.assignee,
        task.c.element_id,
        process_instance.c.state.label("instance_state"),
        process_instance.c.revision,
        process_instance.c.audit_seq,
        process_instance.c.audit_head,
    )
    .join(process_instance, process_instance.c.id == task.c.instance_id)
    .where(task.c.id == bindparam("b_id"))
)
_LATEST_BY_KEY = (
    select(process_definition.c.id, process_definition.c.key)
    .where(process_definition.c.key == bindparam("b_key"))
    .order_by(process_definition.c.version.desc())
    .limit(1)
)
_TASK_WITH_INSTANCE = (
    select(
        task.c.state.label("task_state"),
        task.c.assignee.label("task_assignee"),
        task.c.element_id.label("task_element_id"),
        process_instance,
    )
    .join(process_instance, process_instance.c.id == task.c.instance_id)
    .where(task.c.id == bindparam("b_id"))
)


_INSERT_INSTANCE_RETURNING = _INSERT_INSTANCE.returning(process_instance.c.id)
_PREBUILT = frozenset(
    id(statement)
    for statement in (
        _INSERT_AUDIT,
        _INSERT_TASK,
        _INSERT_CANDIDATES,
        _INSERT_SUBSCRIPTIONS,
        _INSERT_JOBS,
        _INSERT_OUTBOX,
        _INSERT_TIMERS,
        _INSERT_INSTANCE_RETURNING,
        _UPDATE_INSTANCE,
        _END_TASK,
        _APPEND_AUDIT,
        _CLAIM_TASK,
    )
)


class Writes:
    """A command's writes after its decisive compare-and-set on the instance, sent together.

    On PostgreSQL they go in one pipeline (psycopg): the compare-and-set, the audit records and the projections
    travel in one round trip instead of one each. Elsewhere they run one after the other. Either way they sit in
    the command's transaction: when the compare-and-set matches nothing, the caller raises and all is rolled back.
    """

    def __init__(self) -> None:
        self._items: list[tuple[Any, Any]] = []

    def add(self, statement: Any, params: Any = None) -> None:
        self._items.append((statement, params))

    def run(self, conn: Connection, decisive: Any, params: dict[str, Any]) -> Any:
        """Execute everything; returns the decisive statement's RETURNING row (None: it matched nothing)."""
        driver: Any = conn.connection.driver_connection
        if conn.dialect.name != "postgresql" or not hasattr(driver, "pipeline"):
            row = conn.execute(decisive, params).first()
            if row is not None:
                for statement, values in self._items:
                    conn.execute(statement, values)
            return row
        try:
            with driver.pipeline():
                decided = driver.cursor()
                decided.execute(*_driver_sql(conn, decisive, params))
                for statement, values in self._items:
                    if isinstance(values, list):
                        sql, rows = _driver_sql_many(conn, statement, values)
                        driver.cursor().executemany(sql, rows)
                    else:
                        driver.cursor().execute(*_driver_sql(conn, statement, values))
            return decided.fetchone()
        except driver.__class__.Error as exc:
            if type(exc).__name__ == "UniqueViolation" and "audit_record" in str(exc):
                return None  # a concurrent command's audit record took this sequence number: a lost race
            raise DBAPIError.instance(None, None, exc, driver.__class__.Error) from exc


_COMPILED: dict[tuple[int, tuple[str, ...]], Any] = {}


def _compiled(conn: Connection, statement: Any, keys: tuple[str, ...]) -> Any:
    """SQLAlchemy's compilation of a prebuilt statement for these parameter names, kept for reuse."""
    cacheable = id(statement) in _PREBUILT
    cache_key = (id(statement), keys)
    found = _COMPILED.get(cache_key) if cacheable else None
    if found is None:
        found = statement.compile(
            dialect=conn.dialect, column_keys=list(keys), compile_kwargs={"render_postcompile": True}
        )
        if cacheable:
            _COMPILED[cache_key] = found
    return found


def _processed(compiled: Any, params: dict[str, Any] | None) -> dict[str, Any]:
    values = compiled.construct_params(params or {})
    processors = compiled._bind_processors
    return {k: processors[k](v) if k in processors else v for k, v in values.items()}


def _driver_sql(
    conn: Connection, statement: Any, params: dict[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    compiled = _compiled(conn, statement, tuple(sorted(params or {})))
    return compiled.string, _processed(compiled, params)


def _driver_sql_many(conn: Connection, statement: Any, rows: list[dict[str, Any]]) -> tuple[str, list[Any]]:
    compiled = _compiled(conn, statement, tuple(sorted(rows[0])))
    return compiled.string, [_processed(compiled, row) for row in rows]


class ModelCache:
    """Compiled definitions by id. Definitions are immutable, so any process may cache them forever."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: dict[str, ProcessModel] = {}
        self._lock = Lock()

    def get(self, key: str) -> ProcessModel | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: str, model: ProcessModel) -> None:
        with self._lock:
            if len(self._items) >= self._size:
                self._items.pop(next(iter(self._items)))
            self._items[key] = model


class EngineBase:
    """State and the shared load/save machinery; the command mixins build on it."""

    def __init__(
        self,
        db: Database,
        clock: Clock = system_clock,
        config: EngineConfig | None = None,
        *,
        directory: Directory | None = None,
    ) -> None:
        self.db = db
        # Users, roles and certificates; None: anyone may act on any task (engine tests, the open default).
        self.directory = directory
        self.clock = clock
        self.config = config or EngineConfig()
        self.runtime = Runtime(self.now, self.config.timezone, self.config.calendar)
        self.models = ModelCache(self.config.model_cache_size)
        # The deploy-time checker knows the functions scripts may call at run time (see SafeScriptEngine).
        checker = Evaluator({"now": self.now})
        self.checkers = Checkers(expression=checker.check, script=checker.check_script)
        self._watchers: list[tuple[Callable[[], None], frozenset[str]]] = []
        self._written = threading.local()  # what the current thread's command wrote, for _notify
        # message name -> latest definitions it starts, read at most every START_CACHE_SECONDS (a deploy in this
        # process clears it; one in another process is seen within that time)
        self.message_starts: tuple[float, dict[str, list[Any]]] | None = None

    def now(self) -> datetime:
        value = self.clock()
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def model(self, definition_id: str, conn: Connection | None = None) -> ProcessModel:
        cached = self.models.get(definition_id)
        if cached is not None:
            return cached
        if conn is None:
            with read_only(self.db) as c:
                return self.model(definition_id, c)
        row = conn.execute(select(process_definition).where(process_definition.c.id == definition_id)).first()
        if row is None:
            raise NotFound(
                f"process definition '{definition_id}' does not exist", definition_id=definition_id
            )
        own = conn.execute(select(resource).where(resource.c.deployment_id == row.deployment_id)).all()
        own_ids = {r.id for r in own}
        libs = conn.execute(
            select(resource).where(resource.c.id.in_([i for i in row.resource_ids if i not in own_ids]))
        ).all()
        compiled: Compiled = compile_resources(
            [(r.name, r.content) for r in own],
            self.checkers,
            libraries=[(f"library:{r.name}", r.content) for r in libs],
            max_bytes=max(self.config.max_model_bytes, max(len(r.content) for r in own)),
        )
        # The compilation produced every process of the deployment: keep the siblings too.
        siblings = conn.execute(
            select(process_definition.c.id, process_definition.c.key).where(
                process_definition.c.deployment_id == row.deployment_id
            )
        ).all()
        for sibling in siblings:
            if sibling.key in compiled.processes and self.models.get(sibling.id) is None:
                self.models.put(sibling.id, compiled.processes[sibling.key])
        return compiled.processes[row.key]

    def _start_in(
        self,
        conn: Connection,
        definition: Any,
        business_key: str | None,
        variables: dict[str, Any],
        actor: str | None,
        *,
        message: tuple[str, dict[str, Any]] | None = None,
        start_timer: str | None = None,
    ) -> dict[str, Any]:
        validate_text(business_key, "business_key")
        model = self.model(definition.id, conn)
        now = self.now()
        instance_id = str(uuid.uuid4())
        workflow = self.runtime.new(model, variables, initiator=actor)
        outcome = _Outcome(
            audit=[
                audit.Entry(
                    "start",
                    actor,
                    now,
                    details={
                        "definition_id": definition.id,
                        "business_key": business_key,
                        "variables": _json_safe(variables),
                    },
                )
            ]
        )
        error: IncidentRaised | None = None
        try:
            self.runtime.run(workflow)
            if message is not None:
                name, payload = message
                waiting = [s for s in self.runtime.project(workflow).subscriptions if s.message_name == name]
                self.runtime.deliver(workflow, [s.task_id for s in waiting[:1]], name, payload, {})
            if start_timer is not None:
                self.runtime.start_timer_fired(workflow, start_timer)
        except IncidentRaised as exc:
            error = exc
        row = {
            "id": instance_id,
            "definition_id": definition.id,
            "definition_key": definition.key,
            "business_key": business_key,
            "revision": -1,
            "waits": {},
            "audit_seq": 0,
            "audit_head": None,
            "started_at": now,
            "started_by": actor,
            "confidential": model.confidential,
        }
        loaded = _Loaded(row=_Row(row), model=model, workflow=workflow, before={})
        return self._save(conn, loaded, outcome, error, new=True)

    def get_instance_row(self, conn: Connection, instance_id: str) -> Any:
        row = conn.execute(select(process_instance).where(process_instance.c.id == instance_id)).first()
        if row is None:
            raise NotFound(f"process instance '{instance_id}' does not exist", instance_id=instance_id)
        return row

    def _load(self, conn: Connection, row: Any) -> _Loaded:
        model = self.model(row.definition_id, conn)
        workflow = self.runtime.load(model, row.snapshot)
        return _Loaded(row=row, model=model, workflow=workflow, before=dict(row.variables or {}))

    def _save(
        self,
        conn: Connection,
        loaded: _Loaded,
        outcome: _Outcome,
        error: IncidentRaised | None,
        *,
        new: bool = False,
        cancelled: bool = False,
    ) -> dict[str, Any]:
        """Write the instance after a command: snapshot (CAS), projections, incidents, outbox, audit."""
        runtime = self.runtime
        workflow = loaded.workflow
        row = loaded.row
        now = self.now()
        if error is None and not cancelled:
            error = self._drain_buffer(conn, loaded)
        projection: Projection | None = None
        while projection is None:
            try:
                projection = runtime.project(workflow) if not cancelled else Projection(completed=False)
            except IncidentRaised as exc:
                error = error or exc  # the failing task is now in ERROR: projecting again goes past it
            except Exception as exc:
                projection = Projection(completed=False)
                error = error or IncidentRaised(None, None, str(exc), type(exc).__name__)
        outgoing = runtime.drain_messages(workflow)
        variables = runtime.variables(workflow)
        try:
            snapshot = runtime.dump(workflow)
        except TypeError as exc:
            raise InvalidVariables(f"the instance's data cannot be stored: {exc}") from None
        if cancelled:
            state = "cancelled"
        elif error is not None or projection.errors:
            state = "incident"
        elif projection.completed:
            state = "completed"
        else:
            state = "running"
        variables_json = _json_safe(variables)
        changes = _changed(loaded.before, variables_json)
        if outcome.audit:
            outcome.audit[-1].details = {
                **(outcome.audit[-1].details or {}),
                "changed": changes,
                "state": state,
            }
        if error is not None:
            outcome.audit.append(
                audit.Entry(
                    "incident",
                    None,
                    now,
                    task_id=error.task_id,
                    element_id=error.element_id,
                    details={"error_type": error.error_type, "message": error.message},
                )
            )
        rows, seq, head = audit.build_rows(row.id, row.audit_seq, row.audit_head, outcome.audit)
        # Jobs whose worker gave up keep the instance in incident until they are retried or completed.
        waiting_jobs = {j.task_id for j in projection.jobs}
        failed_jobs = [j for j in (row.waits or {}).get("failed_jobs", []) if j in waiting_jobs]
        if failed_jobs and state == "running":
            state = "incident"
        waits = {
            "subs": len(projection.subscriptions),
            "timers": len(projection.timers),
            "jobs": len(projection.jobs),
            "tasks": [t.id for t in projection.user_tasks],
            "failed_jobs": failed_jobs,
        }
        values = {
            "state": state,
            "revision": row.revision + 1,
            "snapshot": snapshot,
            "variables": variables_json,
            "active_elements": sorted(set(projection.active_elements)),
            "waits": waits,
            "audit_seq": seq,
            "audit_head": head,
            "updated_at": now,
            "ended_at": now if state in ("completed", "cancelled") else None,
            "flags": deadline_flags(getattr(row, "flags", None), projection),
        }
        writes = Writes()
        if new:
            decisive: Any = _INSERT_INSTANCE_RETURNING
            decisive_params = {
                "id": row.id,
                "definition_id": row.definition_id,
                "definition_key": row.definition_key,
                "business_key": row.business_key,
                "snapshot_format": FORMAT,
                "started_at": row.started_at,
                "started_by": row.started_by,
                "confidential": row.confidential,
                **values,
            }
        else:
            decisive = _UPDATE_INSTANCE
            decisive_params = {"b_id": row.id, "b_revision": row.revision, **values}
        if rows:
            writes.add(_INSERT_AUDIT, rows)
        self._write_tasks(conn, writes, row, projection, outcome, now, new)
        self._write_waits(conn, writes, row, projection, now, new)
        if error is not None:
            writes.add(
                insert(incident).values(
                    id=str(uuid.uuid4()),
                    instance_id=row.id,
                    task_id=error.task_id,
                    element_id=error.element_id,
                    error_type=error.error_type,
                    message=error.message[:4000],
                    state="open",
                    created_at=now,
                )
            )
        if outgoing:
            self._write_outbox(writes, row, outgoing, now, variables_json)
            self._wrote("outbox")
        if projection.timers or (row.waits or {}).get("timers"):
            self._wrote("timers")
        if writes.run(conn, decisive, decisive_params) is None:
            raise ConcurrentModification(
                f"process instance '{row.id}' was changed by another command at the same time; retry",
                instance_id=row.id,
            )
        return {
            "id": row.id,
            "definition_id": row.definition_id,
            "definition_key": row.definition_key,
            "business_key": row.business_key,
            "state": state,
            "revision": row.revision + 1,
            "activities": values["active_elements"],
            "variables": variables_json,
            "tasks": [
                {"id": t.id, "element_id": t.element_id, "name": t.name} for t in projection.user_tasks
            ],
            "incident": {"element_id": error.element_id, "message": error.message} if error else None,
            "flags": values["flags"] or [],
        }

    def _write_tasks(
        self,
        conn: Connection,
        writes: Writes,
        row: Any,
        projection: Projection,
        outcome: _Outcome,
        now: datetime,
        new: bool,
    ) -> None:
        existing: set[str] = set()
        if not new:
            known = (row.waits or {}).get("tasks")
            existing = (
                set(known)
                if known is not None
                else set(
                    conn.execute(
                        select(task.c.id).where(task.c.instance_id == row.id, task.c.state == "open")
                    ).scalars()
                )
            )
        current = {t.id: t for t in projection.user_tasks}
        completed_id, completed_by = outcome.task_completed or (None, None)
        gone = existing - set(current)
        for tid in gone:
            done = tid == completed_id
            writes.add(
                _END_TASK,
                {
                    "b_id": tid,
                    "state": "completed" if done else "cancelled",
                    "ended_at": now,
                    "completed_by": completed_by if done else None,
                },
            )
        fresh = [t for t in projection.user_tasks if t.id not in existing]
        if fresh:
            writes.add(
                _INSERT_TASK,
                [
                    {
                        "id": t.id,
                        "instance_id": row.id,
                        "definition_id": row.definition_id,
                        "element_id": t.element_id,
                        "name": t.name,
                        "lane": t.lane,
                        "candidate_groups": t.candidate_groups,
                        "candidate_users": t.candidate_users,
                        "assignee": t.assignee,
                        "form_key": t.form_key,
                        "priority": t.priority,
                        "state": "open",
                        "due_at": _utc(t.due_at),
                        "created_at": now,
                        "ended_at": None,
                        "completed_by": None,
                        "confidential": bool(getattr(row, "confidential", False)),
                        "requires": list(t.requires) or None,
                        "deadline_note": t.deadline_note,
                    }
                    for t in fresh
                ],
            )
            candidates = [
                {"task_id": t.id, "kind": "group", "value": g} for t in fresh for g in set(t.candidate_groups)
            ]
            candidates += [
                {"task_id": t.id, "kind": "user", "value": u} for t in fresh for u in set(t.candidate_users)
            ]
            if candidates:
                writes.add(_INSERT_CANDIDATES, candidates)

    def _write_waits(
        self, conn: Connection, writes: Writes, row: Any, projection: Projection, now: datetime, new: bool
    ) -> None:
        before = row.waits or {}
        if not new and before.get("subs"):
            writes.add(delete(message_subscription).where(message_subscription.c.instance_id == row.id))
        if projection.subscriptions:
            writes.add(
                _INSERT_SUBSCRIPTIONS,
                [
                    {
                        "instance_id": row.id,
                        "task_id": s.task_id,
                        "element_id": s.element_id,
                        "message_name": s.message_name,
                        "business_key": row.business_key,
                        "correlation": _json_safe(s.correlation),
                        "matchable": s.matchable,
                        "created_at": now,
                    }
                    for s in projection.subscriptions
                ],
            )
        if not new and before.get("timers"):
            writes.add(delete(timer).where(timer.c.instance_id == row.id))
        if projection.timers:
            writes.add(
                _INSERT_TIMERS,
                [
                    {
                        "instance_id": row.id,
                        "task_id": t.task_id,
                        "element_id": t.element_id,
                        "kind": "instance",
                        "due_at": _utc(t.due_at),
                        "definition_id": row.definition_id,
                        "cycle": None,
                    }
                    for t in projection.timers
                ],
            )
        existing_jobs: set[str] = set()
        if not new and before.get("jobs"):
            existing_jobs = set(conn.execute(select(job.c.id).where(job.c.instance_id == row.id)).scalars())
        current = {j.task_id for j in projection.jobs}
        if existing_jobs - current:
            writes.add(delete(job).where(job.c.id.in_(list(existing_jobs - current))))
        fresh = [j for j in projection.jobs if j.task_id not in existing_jobs]
        if fresh:
            writes.add(
                _INSERT_JOBS,
                [
                    {
                        "id": j.task_id,
                        "instance_id": row.id,
                        "element_id": j.element_id,
                        "topic": j.topic,
                        "retries": self.config.job_retries,
                        "worker_id": None,
                        "locked_until": None,
                        "error_message": None,
                        "created_at": now,
                    }
                    for j in fresh
                ],
            )

    def _write_outbox(
        self,
        writes: Writes,
        row: Any,
        outgoing: list[OutgoingMessage],
        now: datetime,
        variables: Mapping[str, Any] | None = None,
    ) -> None:
        """One row per thrown message, holding its envelope v1 (unsigned; the relay signs it) plus where it
        came from (``from_instance``, ``from_element``: local metadata, never published); a confidential
        instance's rows are also marked ``confidential``, so the transport seals their payload."""
        rows = []
        sealed = {envelope.SEAL_MARK: True} if getattr(row, "confidential", False) else {}
        for m in outgoing:
            message_id = str(uuid.uuid4())
            to = _agency_text(m.to)
            sender = _agency_text(m.sender) or self.default_sender(variables or {})
            built = envelope.build(
                m.name,
                sender=sender,
                to=to,
                payload=_json_safe(m.payload),
                correlation_keys=_json_safe(m.correlations),
                message_id=message_id,
                sent_at=now,
            )
            rows.append(
                {
                    "message_id": message_id,
                    "instance_id": row.id,
                    "message_name": m.name,
                    "target": to,
                    "envelope": {
                        **built,
                        "from_instance": row.id,
                        "from_element": m.source_element,
                        **sealed,
                    },
                    "created_at": now,
                    "sent_at": None,
                    "attempts": 0,
                    "last_error": None,
                    "next_attempt_at": None,
                    "failed_at": None,
                }
            )
        writes.add(_INSERT_OUTBOX, rows)

    def default_sender(self, variables: Mapping[str, Any]) -> str | None:
        """A throw without caseflow:from is sent by the one agency this engine serves, else by the instance's
        ``sender_agency`` variable; None when neither says (the relay then raises an incident)."""
        if len(self.config.agencies) == 1:
            return self.config.agencies[0]
        return _agency_text(variables.get("sender_agency"))

    def _drain_buffer(self, conn: Connection, loaded: _Loaded) -> IncidentRaised | None:
        """Deliver buffered messages the instance now waits for (a message may arrive before its receiver)."""
        if not self.runtime.waits_for_messages(loaded.workflow):
            return None
        for _ in range(100):
            try:
                subs = [s for s in self.runtime.project(loaded.workflow).subscriptions if s.matchable]
            except IncidentRaised as exc:
                return exc
            if not subs:
                return None
            names = {s.message_name for s in subs}
            rows = conn.execute(
                select(buffered_message)
                .where(buffered_message.c.message_name.in_(names), buffered_message.c.expires_at > self.now())
                .order_by(buffered_message.c.created_at)
            ).all()
            delivered = False
            for msg in rows:
                for sub in subs:
                    if sub.message_name != msg.message_name:
                        continue
                    if not _matches(
                        sub.correlation,
                        loaded.row.business_key,
                        loaded.workflow and self.runtime.variables(loaded.workflow),
                        msg.business_key,
                        msg.correlation_keys or {},
                    ):
                        continue
                    conn.execute(delete(buffered_message).where(buffered_message.c.id == msg.id))
                    try:
                        self.runtime.deliver(
                            loaded.workflow,
                            [sub.task_id],
                            msg.message_name,
                            dict(msg.variables or {}),
                            dict(msg.correlation_keys or {}),
                        )
                    except IncidentRaised as exc:
                        return exc
                    if msg.message_id:
                        _record_processed(
                            conn, msg.message_id, {"delivered_from_buffer": loaded.row.id}, self.now()
                        )
                    delivered = True
                    break
                if delivered:
                    break
            if not delivered:
                return None
        return None

    def _task_row(self, conn: Connection, task_id: str) -> Any:
        row = conn.execute(_TASK_FOR_ASSIGNMENT, {"b_id": task_id}).first()
        if row is None:
            raise NotFound(f"task '{task_id}' does not exist", task_id=task_id)
        return row

    def _append_instance_audit(
        self,
        conn: Connection,
        instance_id: str,
        seq: int,
        head: str | None,
        entries: list[audit.Entry],
        writes: Writes | None = None,
    ) -> None:
        """Append to the instance's audit chain (a compare-and-set on its head) together with ``writes``: any
        command that changed the instance meanwhile moved the head, so this one then fails cleanly."""
        rows, new_seq, new_head = audit.build_rows(instance_id, seq, head, entries)
        writes = writes or Writes()
        writes.add(_INSERT_AUDIT, rows)
        params = {"b_id": instance_id, "b_seq": seq, "audit_seq": new_seq, "audit_head": new_head}
        if writes.run(conn, _APPEND_AUDIT, params) is None:
            raise ConcurrentModification(
                f"process instance '{instance_id}' changed at the same time; retry", instance_id=instance_id
            )

    def on_commit(self, callback: Callable[[], None], *kinds: str) -> None:
        """Call ``callback`` after a command commits that wrote any of ``kinds`` (``outbox``: a message to
        relay; ``timers``: a timer armed or moved). Without kinds: after every command."""
        self._watchers.append((callback, frozenset(kinds)))

    def _wrote(self, *kinds: str) -> None:
        written: set[str] | None = getattr(self._written, "kinds", None)
        if written is None:
            written = set()
            self._written.kinds = written
        written.update(kinds)

    def _notify(self) -> None:
        written: set[str] = getattr(self._written, "kinds", None) or set()
        self._written.kinds = None
        for callback, kinds in self._watchers:
            if not kinds or kinds & written:
                callback()


class _Row:
    """Attribute access over a dict, standing in for a row of an instance created in this transaction."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def _agency_text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def _record_processed(conn: Connection, message_id: str, result: dict[str, Any], now: datetime) -> None:
    summary = {
        "message_id": message_id,
        "buffered": False,
        "instances": [{"id": r.get("id"), "state": r.get("state")} for r in result.get("instances", [])],
    }
    if "delivered_from_buffer" in result:
        summary = {
            "message_id": message_id,
            "buffered": False,
            "instances": [{"id": result["delivered_from_buffer"]}],
        }
    conn.execute(insert(processed_message).values(message_id=message_id, result=summary, processed_at=now))


def _matches(
    expected: Mapping[str, Any],
    instance_business_key: str | None,
    instance_variables: Any,
    business_key: str | None,
    keys: Mapping[str, Any],
) -> bool:
    """Strict correlation: every key the receiver declares must be given and equal; a given key the receiver
    does not declare must equal the receiver's variable of that name; a given business key must equal."""
    if business_key is not None and business_key != instance_business_key:
        return False
    for name, value in expected.items():
        if name not in keys or keys[name] != value:
            return False
    variables = instance_variables or {}
    for name, value in keys.items():
        if name in expected:
            continue
        if name not in variables or variables[name] != value:
            return False
    return True
