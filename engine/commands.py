"""Every change to a case is a command here, processed as one database transaction.

A command loads what it needs, lets the runtime advance the instance in memory, then writes the snapshot (a
compare-and-set on the instance's revision), its projections, the audit records and the outbox — and commits.
Nothing leaves before the commit. A loser of a race gets :class:`ConcurrentModification` (HTTP 409).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from threading import Lock
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy import Engine as Database
from sqlalchemy.exc import IntegrityError

from engine.definitions.compiler import Checkers, Compiled, ProcessModel, compile_resources
from engine.definitions.xml import DEFAULT_MAX_BYTES
from engine.errors import (
    AmbiguousCorrelation,
    CaseflowError,
    ConcurrentModification,
    InstanceNotRunning,
    InvalidModel,
    InvalidVariables,
    MessageNotCorrelated,
    NotFound,
    TaskClaimed,
    TaskNotOpen,
)
from engine.lang.expressions import Evaluator
from engine.lang.iso8601 import looks_like_iso8601, parse_cycle, resolve_due
from engine.runtime.instance import IncidentRaised, OutgoingMessage, Projection, Runtime
from engine.runtime.snapshot import FORMAT, encode_data
from engine.store import audit
from engine.store.db import read_only, unit_of_work
from engine.store.tables import (
    audit_record,
    buffered_message,
    deployment,
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
_CLAIM_TASK = (
    update(task)
    .where(
        task.c.id == bindparam("b_id"),
        task.c.state == "open",
        or_(task.c.assignee.is_(None), task.c.assignee == bindparam("b_user")),
    )
    .returning(task.c.id)
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


class Engine:
    def __init__(self, db: Database, clock: Clock = system_clock, config: EngineConfig | None = None) -> None:
        self.db = db
        self.clock = clock
        self.config = config or EngineConfig()
        self.runtime = Runtime(self.now, self.config.timezone)
        self.models = ModelCache(self.config.model_cache_size)
        # The deploy-time checker knows the functions scripts may call at run time (see SafeScriptEngine).
        checker = Evaluator({"now": self.now})
        self.checkers = Checkers(expression=checker.check, script=checker.check_script)
        self.after_commit: list[Callable[[], None]] = []

    def now(self) -> datetime:
        value = self.clock()
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    # =================================================================================== definitions
    def deploy(
        self,
        files: Sequence[tuple[str, bytes]],
        *,
        name: str | None = None,
        source: str | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        if not files:
            raise InvalidModel("a deployment needs at least one BPMN or DMN file")
        names = [n for n, _ in files]
        for res_name in names:
            try:
                validate_text(res_name, "resource name", required=True)
            except InvalidVariables as exc:
                raise InvalidModel(exc.message, resource=str(res_name)[:255]) from None
        validate_text(name, "name")
        if len(set(names)) != len(names):
            raise InvalidModel("two resources in one deployment have the same name", resource=names[0])
        hashes = {n: hashlib.sha256(c).hexdigest() for n, c in files}
        with read_only(self.db) as conn:
            libraries = self._libraries_for(conn, files)
        compiled = compile_resources(
            files,
            self.checkers,
            libraries=[(n, c) for _, n, c in libraries],
            max_bytes=self.config.max_model_bytes,
        )
        now = self.now()
        with unit_of_work(self.db) as conn:
            latest_by_key: dict[str, Any] = {}
            for r in conn.execute(
                select(process_definition)
                .where(process_definition.c.key.in_(list(compiled.processes)))
                .order_by(process_definition.c.key, process_definition.c.version.desc())
            ):
                latest_by_key.setdefault(r.key, r)
            changed = [
                k
                for k, m in compiled.processes.items()
                if latest_by_key.get(k) is None or latest_by_key[k].content_hash != hashes[m.resource]
            ]
            if compiled.processes and not changed:
                # Identical content: nothing new is created.
                first = latest_by_key[next(iter(compiled.processes))]
                return {
                    "id": first.deployment_id,
                    "name": name,
                    "created": False,
                    "definitions": [self._definition_dict(latest_by_key[k]) for k in compiled.processes],
                }
            deployment_id = str(uuid.uuid4())
            conn.execute(
                insert(deployment).values(
                    id=deployment_id, name=name, source=source, created_at=now, created_by=actor
                )
            )
            resource_ids: dict[str, str] = {}
            for res_name, content in files:
                rid = str(uuid.uuid4())
                resource_ids[res_name] = rid
                conn.execute(
                    insert(resource).values(
                        id=rid,
                        deployment_id=deployment_id,
                        name=res_name,
                        sha256=hashes[res_name],
                        content=content,
                    )
                )
            all_resource_ids = list(resource_ids.values()) + [rid for rid, _, _ in libraries]
            definitions = []
            for key, model in compiled.processes.items():
                previous = latest_by_key.get(key)
                if previous is not None and previous.content_hash == hashes[model.resource]:
                    definitions.append(self._definition_dict(previous))
                    continue
                version = (previous.version if previous is not None else 0) + 1
                definition_id = f"{key}:{version}:{deployment_id[:8]}"
                row = {
                    "id": definition_id,
                    "key": key,
                    "version": version,
                    "name": model.name,
                    "deployment_id": deployment_id,
                    "resource_id": resource_ids[model.resource],
                    "content_hash": hashes[model.resource],
                    "resource_ids": all_resource_ids,
                    "message_starts": list(model.message_starts),
                    "timer_starts": [t.__dict__ for t in model.timer_starts],
                    "created_at": now,
                }
                conn.execute(insert(process_definition).values(**row))
                self.models.put(definition_id, model)
                definitions.append({"id": definition_id, "key": key, "version": version, "name": model.name})
                self._schedule_start_timers(
                    conn, definition_id, model, previous.id if previous else None, now
                )
            audit.append_system(
                conn,
                [
                    audit.Entry(
                        "deploy",
                        actor,
                        now,
                        details={
                            "deployment_id": deployment_id,
                            "resources": names,
                            "definitions": [d["id"] for d in definitions],
                        },
                    )
                ],
            )
        return {
            "id": deployment_id,
            "name": name,
            "created": True,
            "definitions": definitions,
            "decisions": compiled.decisions,
        }

    def _libraries_for(
        self, conn: Connection, files: Sequence[tuple[str, bytes]]
    ) -> list[tuple[str, str, bytes]]:
        """Latest deployed resources defining processes that the new files call but do not contain."""
        called: set[str] = set()
        defined: set[str] = set()
        for _, content in files:
            called.update(m.decode() for m in re.findall(rb'calledElement="([^"]+)"', content))
            defined.update(
                m.decode() for m in re.findall(rb'<(?:\w+:)?process\b[^>]*\bid="([^"]+)"', content)
            )
        missing = called - defined
        out: list[tuple[str, str, bytes]] = []
        seen: set[str] = set()
        for key in sorted(missing):
            row = conn.execute(
                select(resource.c.id, resource.c.name, resource.c.content)
                .join(process_definition, process_definition.c.resource_id == resource.c.id)
                .where(process_definition.c.key == key)
                .order_by(process_definition.c.version.desc())
                .limit(1)
            ).first()
            if row is not None and row.id not in seen:
                seen.add(row.id)
                out.append((row.id, f"library:{row.name}", row.content))
        return out

    def _schedule_start_timers(
        self,
        conn: Connection,
        definition_id: str,
        model: ProcessModel,
        previous_id: str | None,
        now: datetime,
    ) -> None:
        if previous_id is not None:
            # A new version replaces the start timers of the previous one (as in Camunda).
            conn.execute(delete(timer).where(timer.c.definition_id == previous_id, timer.c.kind == "start"))
        for start in model.timer_starts:
            text = start.expression.strip()
            if not looks_like_iso8601(text):
                raise InvalidModel(
                    "a timer start event needs a literal ISO 8601 value", element_id=start.element_id
                )
            kind = {"timeDate": "date", "timeDuration": "duration", "timeCycle": "cycle"}[start.kind]
            due = resolve_due(kind, text, now, self.config.timezone)  # type: ignore[arg-type]
            cycle = None
            if kind == "cycle":
                parsed = parse_cycle(text, self.config.timezone)
                cycle = {
                    "expression": text,
                    "remaining": -1 if parsed.repetitions is None else parsed.repetitions,
                }
            conn.execute(
                insert(timer).values(
                    definition_id=definition_id,
                    element_id=start.element_id,
                    kind="start",
                    cycle=cycle,
                    due_at=_utc(due),
                )
            )

    def _definition_dict(self, row: Any) -> dict[str, Any]:
        return {"id": row.id, "key": row.key, "version": row.version, "name": row.name}

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
        model = compiled.processes[row.key]
        self.models.put(definition_id, model)
        return model

    # ===================================================================================== instances
    def start(
        self,
        *,
        key: str | None = None,
        definition_id: str | None = None,
        business_key: str | None = None,
        variables: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        variables = validate_variables(variables)
        with unit_of_work(self.db) as conn:
            definition = self._resolve_definition(conn, key, definition_id)
            result = self._start_in(conn, definition, business_key, variables, actor)
        self._notify()
        return result

    def _resolve_definition(self, conn: Connection, key: str | None, definition_id: str | None) -> Any:
        if definition_id:
            row = conn.execute(
                select(process_definition).where(process_definition.c.id == definition_id)
            ).first()
            if row is None:
                raise NotFound(
                    f"process definition '{definition_id}' does not exist", definition_id=definition_id
                )
            return row
        if not key:
            raise InvalidVariables("give a process definition key or id", field="key")
        row = conn.execute(_LATEST_BY_KEY, {"b_key": key}).first()
        if row is None:
            raise NotFound(f"no process definition with key '{key}' is deployed", key=key)
        return row

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
        }
        if new:
            conn.execute(
                _INSERT_INSTANCE,
                {
                    "id": row.id,
                    "definition_id": row.definition_id,
                    "definition_key": row.definition_key,
                    "business_key": row.business_key,
                    "snapshot_format": FORMAT,
                    "started_at": row.started_at,
                    "started_by": row.started_by,
                    **values,
                },
            )
        elif (
            conn.execute(_UPDATE_INSTANCE, {"b_id": row.id, "b_revision": row.revision, **values}).first()
            is None
        ):
            raise ConcurrentModification(
                f"process instance '{row.id}' was changed by another command at the same time; retry",
                instance_id=row.id,
            )
        if rows:
            conn.execute(_INSERT_AUDIT, rows)
        self._write_tasks(conn, row, projection, outcome, now, new)
        self._write_waits(conn, row, projection, now, new)
        if error is not None:
            conn.execute(
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
            self._write_outbox(conn, row, outgoing, now)
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
        }

    def _write_tasks(
        self, conn: Connection, row: Any, projection: Projection, outcome: _Outcome, now: datetime, new: bool
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
            conn.execute(
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
            conn.execute(
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
                conn.execute(_INSERT_CANDIDATES, candidates)

    def _write_waits(
        self, conn: Connection, row: Any, projection: Projection, now: datetime, new: bool
    ) -> None:
        before = row.waits or {}
        if not new and before.get("subs"):
            conn.execute(delete(message_subscription).where(message_subscription.c.instance_id == row.id))
        if projection.subscriptions:
            conn.execute(
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
            conn.execute(delete(timer).where(timer.c.instance_id == row.id))
        if projection.timers:
            conn.execute(
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
            conn.execute(delete(job).where(job.c.id.in_(list(existing_jobs - current))))
        fresh = [j for j in projection.jobs if j.task_id not in existing_jobs]
        if fresh:
            conn.execute(
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
        self, conn: Connection, row: Any, outgoing: list[OutgoingMessage], now: datetime
    ) -> None:
        conn.execute(
            _INSERT_OUTBOX,
            [
                {
                    "message_id": str(uuid.uuid4()),
                    "instance_id": row.id,
                    "message_name": m.name,
                    "target": str(m.to) if m.to is not None else None,
                    "envelope": {
                        "name": m.name,
                        "correlation_keys": _json_safe(m.correlations),
                        "variables": _json_safe(m.payload),
                        "business_key": None,
                        "from_instance": row.id,
                        "from_element": m.source_element,
                        "to": _json_safe(m.to),
                    },
                    "created_at": now,
                    "sent_at": None,
                    "attempts": 0,
                    "last_error": None,
                }
                for m in outgoing
            ],
        )

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

    # =========================================================================================== tasks
    def _task_row(self, conn: Connection, task_id: str) -> Any:
        row = conn.execute(_TASK_FOR_ASSIGNMENT, {"b_id": task_id}).first()
        if row is None:
            raise NotFound(f"task '{task_id}' does not exist", task_id=task_id)
        return row

    def _append_instance_audit(
        self, conn: Connection, instance_id: str, seq: int, head: str | None, entries: list[audit.Entry]
    ) -> None:
        rows, new_seq, new_head = audit.build_rows(instance_id, seq, head, entries)
        result = conn.execute(
            _APPEND_AUDIT, {"b_id": instance_id, "b_seq": seq, "audit_seq": new_seq, "audit_head": new_head}
        )
        if result.first() is None:
            raise ConcurrentModification(
                f"process instance '{instance_id}' changed at the same time; retry", instance_id=instance_id
            )
        conn.execute(_INSERT_AUDIT, rows)

    def claim(self, task_id: str, user: str, *, actor: str | None = None) -> dict[str, Any]:
        validate_text(user, "user", required=True)
        with unit_of_work(self.db) as conn:
            row = self._task_row(conn, task_id)
            if row.state != "open":
                raise TaskNotOpen(f"task '{task_id}' is {row.state}", task_id=task_id)
            if row.assignee is not None and row.assignee != user:
                raise TaskClaimed(
                    f"task '{task_id}' is already claimed by '{row.assignee}'",
                    task_id=task_id,
                    assignee=row.assignee,
                )
            result = conn.execute(_CLAIM_TASK, {"b_id": task_id, "b_user": user, "assignee": user})
            if result.first() is None:
                raise ConcurrentModification(
                    f"task '{task_id}' was changed at the same time; retry", task_id=task_id
                )
            self._append_instance_audit(
                conn,
                row.instance_id,
                row.audit_seq,
                row.audit_head,
                [
                    audit.Entry(
                        "claim",
                        actor or user,
                        self.now(),
                        task_id=task_id,
                        element_id=row.element_id,
                        details={"assignee": user},
                    )
                ],
            )
        return {"id": task_id, "assignee": user}

    def unclaim(self, task_id: str, *, actor: str | None = None) -> dict[str, Any]:
        return self._set_assignee(task_id, None, actor, "unclaim")

    def assign(self, task_id: str, user: str | None, *, actor: str | None = None) -> dict[str, Any]:
        return self._set_assignee(task_id, user, actor, "assign")

    def _set_assignee(
        self, task_id: str, user: str | None, actor: str | None, command: str
    ) -> dict[str, Any]:
        validate_text(user, "user")
        with unit_of_work(self.db) as conn:
            row = self._task_row(conn, task_id)
            if row.state != "open":
                raise TaskNotOpen(f"task '{task_id}' is {row.state}", task_id=task_id)
            conn.execute(update(task).where(task.c.id == task_id).values(assignee=user))
            self._append_instance_audit(
                conn,
                row.instance_id,
                row.audit_seq,
                row.audit_head,
                [
                    audit.Entry(
                        command,
                        actor,
                        self.now(),
                        task_id=task_id,
                        element_id=row.element_id,
                        details={"assignee": user, "previous": row.assignee},
                    )
                ],
            )
        return {"id": task_id, "assignee": user}

    def complete(
        self,
        task_id: str,
        variables: dict[str, Any] | None = None,
        *,
        user: str | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        variables = validate_variables(variables)
        with unit_of_work(self.db) as conn:
            irow = conn.execute(_TASK_WITH_INSTANCE, {"b_id": task_id}).first()
            if irow is None:
                raise NotFound(f"task '{task_id}' does not exist", task_id=task_id)
            if irow.task_state != "open":
                raise TaskNotOpen(f"task '{task_id}' is {irow.task_state}", task_id=task_id)
            if user is not None and irow.task_assignee is not None and irow.task_assignee != user:
                raise TaskClaimed(
                    f"task '{task_id}' is claimed by '{irow.task_assignee}'",
                    task_id=task_id,
                    assignee=irow.task_assignee,
                )
            loaded = self._load(conn, irow)
            who = user or irow.task_assignee or actor
            outcome = _Outcome(
                audit=[
                    audit.Entry(
                        "complete", actor or who, self.now(), task_id=task_id, element_id=irow.task_element_id
                    )
                ],
                task_completed=(task_id, who),
            )
            error = None
            try:
                self.runtime.complete_user_task(loaded.workflow, task_id, variables)
            except LookupError:
                raise TaskNotOpen(f"task '{task_id}' is no longer open", task_id=task_id) from None
            except IncidentRaised as exc:
                error = exc
            result = self._save(conn, loaded, outcome, error)
        self._notify()
        return result

    # ======================================================================================== messages
    def correlate(
        self,
        name: str,
        *,
        business_key: str | None = None,
        correlation_keys: dict[str, Any] | None = None,
        variables: dict[str, Any] | None = None,
        message_id: str | None = None,
        ttl_seconds: int | None = None,
        all: bool = False,
        actor: str | None = None,
        source: str | None = None,
    ) -> dict[str, Any]:
        validate_text(name, "name", required=True)
        validate_text(business_key, "business_key")
        validate_text(message_id, "message_id")
        variables = validate_variables(variables)
        # Correlation property names need not be identifiers; the values must still be storable JSON.
        keys = dict(validate_variables(correlation_keys, "correlation_keys", identifiers=False))
        ttl = 0 if ttl_seconds is None else int(ttl_seconds)
        if ttl < 0:
            raise InvalidVariables("ttl_seconds must not be negative", field="ttl_seconds")
        try:
            with unit_of_work(self.db) as conn:
                if message_id is not None:
                    done = conn.execute(
                        select(processed_message.c.result).where(processed_message.c.message_id == message_id)
                    ).first()
                    if done is not None:
                        return {**done.result, "duplicate": True}
                    buffered = conn.execute(
                        select(buffered_message.c.id).where(buffered_message.c.message_id == message_id)
                    ).first()
                    if buffered is not None:
                        return {
                            "message_id": message_id,
                            "buffered": True,
                            "duplicate": True,
                            "instances": [],
                        }
                result = self._correlate_in(
                    conn, name, business_key, keys, variables, message_id, ttl, all, actor, source
                )
                if message_id is not None and not result.get("buffered"):
                    _record_processed(conn, message_id, result, self.now())
        except IntegrityError:
            # The same message id was processed by a concurrent command: that one counts.
            with read_only(self.db) as conn:
                done = conn.execute(
                    select(processed_message.c.result).where(processed_message.c.message_id == message_id)
                ).first()
            if done is None:
                raise ConcurrentModification(
                    "the message was being processed at the same time; retry"
                ) from None
            return {**done.result, "duplicate": True}
        self._notify()
        return result

    def _correlate_in(
        self,
        conn: Connection,
        name: str,
        business_key: str | None,
        keys: dict[str, Any],
        variables: dict[str, Any],
        message_id: str | None,
        ttl: int,
        all_: bool,
        actor: str | None,
        source: str | None,
    ) -> dict[str, Any]:
        query = (
            select(
                message_subscription,
                process_instance.c.revision,
                process_instance.c.variables,
                process_instance.c.business_key.label("instance_business_key"),
            )
            .join(process_instance, process_instance.c.id == message_subscription.c.instance_id)
            .where(
                message_subscription.c.message_name == name,
                process_instance.c.state == "running",
                message_subscription.c.matchable.is_(True),
            )
        )
        if business_key is not None:
            query = query.where(process_instance.c.business_key == business_key)
        matches = [
            s
            for s in conn.execute(query).all()
            if _matches(s.correlation, s.instance_business_key, s.variables, business_key, keys)
        ]
        if len(matches) > 1 and not all_:
            raise AmbiguousCorrelation(
                f"message '{name}' matches {len(matches)} waiting receivers; narrow it with business_key or "
                "correlation_keys, or set all=true",
                message_name=name,
                matches=len(matches),
            )
        now = self.now()
        results = []
        by_instance: dict[str, list[Any]] = {}
        for m in matches:
            by_instance.setdefault(m.instance_id, []).append(m)
        for instance_id, subs in by_instance.items():
            irow = self.get_instance_row(conn, instance_id)
            if irow.revision != subs[0].revision:
                raise ConcurrentModification(
                    f"process instance '{instance_id}' changed while the message was correlated; retry",
                    instance_id=instance_id,
                )
            loaded = self._load(conn, irow)
            outcome = _Outcome(
                audit=[
                    audit.Entry(
                        "correlate",
                        actor,
                        now,
                        task_id=subs[0].task_id,
                        element_id=subs[0].element_id,
                        details={
                            "message": name,
                            "message_id": message_id,
                            "source": source,
                            "correlation_keys": _json_safe(keys),
                        },
                    )
                ]
            )
            error = None
            try:
                self.runtime.deliver(loaded.workflow, [s.task_id for s in subs], name, variables, keys)
            except IncidentRaised as exc:
                error = exc
            results.append(self._save(conn, loaded, outcome, error))
        if not results:
            starts = self._message_start_definitions(conn, name)
            if len(starts) > 1 and not all_:
                raise AmbiguousCorrelation(
                    f"message '{name}' starts {len(starts)} different processes; set all=true",
                    message_name=name,
                )
            for definition in starts:
                results.append(
                    self._start_in(
                        conn, definition, business_key, {**variables}, actor, message=(name, {**variables})
                    )
                )
        if not results:
            if ttl > 0:
                conn.execute(
                    insert(buffered_message).values(
                        id=str(uuid.uuid4()),
                        message_id=message_id,
                        message_name=name,
                        business_key=business_key,
                        correlation_keys=_json_safe(keys),
                        variables=_json_safe(variables),
                        source=source,
                        created_at=now,
                        expires_at=now + timedelta(seconds=ttl),
                    )
                )
                return {"message_id": message_id, "buffered": True, "instances": []}
            raise MessageNotCorrelated(
                f"no process instance waits for message '{name}' with these keys, and no process starts with it",
                message_name=name,
            )
        return {"message_id": message_id, "buffered": False, "instances": results}

    def _message_start_definitions(self, conn: Connection, name: str) -> list[Any]:
        latest = (
            select(process_definition.c.key, func.max(process_definition.c.version).label("v"))
            .group_by(process_definition.c.key)
            .subquery()
        )
        rows = conn.execute(
            select(process_definition).join(
                latest,
                and_(latest.c.key == process_definition.c.key, latest.c.v == process_definition.c.version),
            )
        ).all()
        return [r for r in rows if name in (r.message_starts or [])]

    def expire_buffered(self) -> int:
        with unit_of_work(self.db) as conn:
            expired = conn.execute(
                select(buffered_message).where(buffered_message.c.expires_at <= self.now())
            ).all()
            if expired:
                conn.execute(
                    delete(buffered_message).where(buffered_message.c.id.in_([r.id for r in expired]))
                )
                for r in expired:
                    conn.execute(
                        insert(incident).values(
                            id=str(uuid.uuid4()),
                            instance_id=None,
                            task_id=None,
                            element_id=None,
                            error_type="MessageExpired",
                            message=f"message '{r.message_name}' (id {r.message_id}) found no receiver before its "
                            "time-to-live ran out",
                            state="open",
                            created_at=self.now(),
                        )
                    )
        return len(expired)

    # ========================================================================================== timers
    def next_timer_due(self) -> datetime | None:
        with read_only(self.db) as conn:
            return _utc(conn.execute(select(func.min(timer.c.due_at))).scalar())

    def fire_due_timers(self, limit: int = 100) -> int:
        """Fire timers due by now, each in its own transaction; returns how many fired."""
        fired = 0
        with read_only(self.db) as conn:
            due = conn.execute(
                select(timer).where(timer.c.due_at <= self.now()).order_by(timer.c.due_at).limit(limit)
            ).all()
        for t in due:
            try:
                if t.kind == "start":
                    self._fire_start_timer(t)
                else:
                    self._fire_instance_timer(t)
                fired += 1
            except (ConcurrentModification, NotFound):
                continue
        if fired:
            self._notify()
        return fired

    def _fire_instance_timer(self, t: Any) -> None:
        with unit_of_work(self.db) as conn:
            still = conn.execute(select(timer.c.id).where(timer.c.id == t.id)).first()
            if still is None:
                return
            irow = self.get_instance_row(conn, t.instance_id)
            if irow.state != "running":
                return
            loaded = self._load(conn, irow)
            outcome = _Outcome(
                audit=[
                    audit.Entry(
                        "timer",
                        None,
                        self.now(),
                        task_id=t.task_id,
                        element_id=t.element_id,
                        details={"due_at": due.isoformat() if (due := _utc(t.due_at)) else None},
                    )
                ]
            )
            error = None
            try:
                self.runtime.refresh_timers(loaded.workflow)
            except IncidentRaised as exc:
                error = exc
            self._save(conn, loaded, outcome, error)

    def _fire_start_timer(self, t: Any) -> None:
        with unit_of_work(self.db) as conn:
            still = conn.execute(select(timer).where(timer.c.id == t.id).with_for_update()).first()
            if still is None or _utc(still.due_at) > self.now():  # type: ignore[operator]
                return  # another scheduler fired it first
            definition = conn.execute(
                select(process_definition).where(process_definition.c.id == t.definition_id)
            ).first()
            cycle = still.cycle
            due = _utc(still.due_at)
            assert due is not None
            if cycle and cycle["remaining"] != 1:
                parsed = parse_cycle(cycle["expression"], self.config.timezone)
                remaining = cycle["remaining"] - 1 if cycle["remaining"] > 0 else -1
                conn.execute(
                    update(timer)
                    .where(timer.c.id == t.id)
                    .values(due_at=parsed.interval.add_to(due), cycle={**cycle, "remaining": remaining})
                )
            else:
                conn.execute(delete(timer).where(timer.c.id == t.id))
            if definition is not None:
                self._start_in(conn, definition, None, {}, None, start_timer=t.element_id)

    # ====================================================================================== jobs
    def complete_job(
        self, job_id: str, variables: dict[str, Any] | None = None, *, actor: str | None = None
    ) -> dict[str, Any]:
        variables = validate_variables(variables)
        with unit_of_work(self.db) as conn:
            jrow = conn.execute(select(job).where(job.c.id == job_id)).first()
            if jrow is None:
                raise NotFound(f"job '{job_id}' does not exist", job_id=job_id)
            irow = self.get_instance_row(conn, jrow.instance_id)
            loaded = self._load(conn, irow)
            outcome = _Outcome(
                audit=[
                    audit.Entry("complete_job", actor, self.now(), task_id=job_id, element_id=jrow.element_id)
                ]
            )
            error = None
            try:
                self.runtime.complete_job(loaded.workflow, job_id, variables)
            except LookupError:
                raise TaskNotOpen(f"job '{job_id}' is no longer waiting", job_id=job_id) from None
            except IncidentRaised as exc:
                error = exc
            conn.execute(
                update(incident)
                .where(
                    incident.c.task_id == job_id,
                    incident.c.state == "open",
                    incident.c.error_type == "JobFailed",
                )
                .values(state="resolved", resolved_at=self.now())
            )
            result = self._save(conn, loaded, outcome, error)
        self._notify()
        return result

    def fail_job(
        self, job_id: str, error_message: str, *, retries: int | None = None, actor: str | None = None
    ) -> dict[str, Any]:
        """A worker reports a failure; at zero retries the real error becomes an incident."""
        with unit_of_work(self.db) as conn:
            jrow = conn.execute(select(job).where(job.c.id == job_id)).first()
            if jrow is None:
                raise NotFound(f"job '{job_id}' does not exist", job_id=job_id)
            left = jrow.retries - 1 if retries is None else int(retries)
            conn.execute(
                update(job)
                .where(job.c.id == job_id)
                .values(retries=max(left, 0), error_message=error_message, worker_id=None, locked_until=None)
            )
            irow = self.get_instance_row(conn, jrow.instance_id)
            entries = [
                audit.Entry(
                    "fail_job",
                    actor,
                    self.now(),
                    task_id=job_id,
                    element_id=jrow.element_id,
                    details={"error": error_message, "retries": max(left, 0)},
                )
            ]
            incident_id = None
            if left <= 0:
                incident_id = str(uuid.uuid4())
                conn.execute(
                    insert(incident).values(
                        id=incident_id,
                        instance_id=jrow.instance_id,
                        task_id=job_id,
                        element_id=jrow.element_id,
                        error_type="JobFailed",
                        message=error_message[:4000],
                        state="open",
                        created_at=self.now(),
                    )
                )
                waits = dict(irow.waits or {})
                waits["failed_jobs"] = sorted({*waits.get("failed_jobs", []), job_id})
                changed = conn.execute(
                    update(process_instance)
                    .where(process_instance.c.id == irow.id, process_instance.c.revision == irow.revision)
                    .values(state="incident", waits=waits, revision=irow.revision + 1)
                ).rowcount
                if changed != 1:
                    raise ConcurrentModification(
                        f"process instance '{irow.id}' changed at the same time; retry", instance_id=irow.id
                    )
            self._append_instance_audit(conn, irow.id, irow.audit_seq, irow.audit_head, entries)
        return {"id": job_id, "retries": max(left, 0), "incident_id": incident_id}

    def run_job(
        self, job_id: str, handler: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> dict[str, Any]:
        """Run an in-process service handler for a job: success completes it, an exception fails it with its
        own message (never masked)."""
        with read_only(self.db) as conn:
            jrow = conn.execute(select(job).where(job.c.id == job_id)).first()
            if jrow is None:
                raise NotFound(f"job '{job_id}' does not exist", job_id=job_id)
            irow = self.get_instance_row(conn, jrow.instance_id)
        try:
            result = handler(dict(irow.variables or {})) or {}
        except Exception as exc:
            return self.fail_job(job_id, f"{type(exc).__name__}: {exc}")
        return self.complete_job(job_id, result)

    # ======================================================================= cancel and incidents
    def cancel(
        self, instance_id: str, *, actor: str | None = None, reason: str | None = None
    ) -> dict[str, Any]:
        with unit_of_work(self.db) as conn:
            irow = self.get_instance_row(conn, instance_id)
            if irow.state in ("completed", "cancelled"):
                raise InstanceNotRunning(
                    f"process instance '{instance_id}' is already {irow.state}", instance_id=instance_id
                )
            loaded = self._load(conn, irow)
            self.runtime.cancel(loaded.workflow)
            outcome = _Outcome(audit=[audit.Entry("cancel", actor, self.now(), details={"reason": reason})])
            result = self._save(conn, loaded, outcome, None, cancelled=True)
            conn.execute(
                update(incident)
                .where(incident.c.instance_id == instance_id, incident.c.state == "open")
                .values(state="resolved", resolved_at=self.now())
            )
        return result

    def retry_incident(
        self, incident_id: str, variables: dict[str, Any] | None = None, *, actor: str | None = None
    ) -> dict[str, Any]:
        variables = validate_variables(variables)
        with unit_of_work(self.db) as conn:
            inc = conn.execute(select(incident).where(incident.c.id == incident_id)).first()
            if inc is None:
                raise NotFound(f"incident '{incident_id}' does not exist", incident_id=incident_id)
            if inc.state != "open":
                raise TaskNotOpen(f"incident '{incident_id}' is already {inc.state}", incident_id=incident_id)
            conn.execute(
                update(incident)
                .where(incident.c.id == incident_id)
                .values(state="resolved", resolved_at=self.now())
            )
            if inc.instance_id is None:
                return {"id": incident_id, "state": "resolved"}
            irow = self.get_instance_row(conn, inc.instance_id)
            if irow.state == "cancelled":
                raise InstanceNotRunning("the instance was cancelled", instance_id=irow.id)
            if inc.error_type == "JobFailed":
                conn.execute(
                    update(job).where(job.c.id == inc.task_id).values(retries=self.config.job_retries)
                )
                self._append_instance_audit(
                    conn,
                    irow.id,
                    irow.audit_seq,
                    irow.audit_head,
                    [
                        audit.Entry(
                            "retry",
                            actor,
                            self.now(),
                            task_id=inc.task_id,
                            element_id=inc.element_id,
                            details={"incident_id": incident_id},
                        )
                    ],
                )
                waits = dict(irow.waits or {})
                waits["failed_jobs"] = [j for j in waits.get("failed_jobs", []) if j != inc.task_id]
                others = conn.execute(
                    select(func.count())
                    .select_from(incident)
                    .where(incident.c.instance_id == irow.id, incident.c.state == "open")
                ).scalar()
                conn.execute(
                    update(process_instance)
                    .where(process_instance.c.id == irow.id)
                    .values(
                        state="incident" if others or waits["failed_jobs"] else "running",
                        waits=waits,
                        revision=irow.revision + 1,
                    )
                )
                return {"id": incident_id, "state": "resolved", "instance_id": irow.id}
            loaded = self._load(conn, irow)
            outcome = _Outcome(
                audit=[
                    audit.Entry(
                        "retry",
                        actor,
                        self.now(),
                        task_id=inc.task_id,
                        element_id=inc.element_id,
                        details={"incident_id": incident_id},
                    )
                ]
            )
            error = None
            try:
                self.runtime.retry(loaded.workflow, inc.task_id, variables)
            except IncidentRaised as exc:
                error = exc
            result = self._save(conn, loaded, outcome, error)
        self._notify()
        return {"id": incident_id, "state": "resolved", "instance": result}

    # ====================================================================================== outbox
    def pending_outbox(self, conn: Connection, limit: int) -> list[Any]:
        query = select(outbox).where(outbox.c.sent_at.is_(None)).order_by(outbox.c.id).limit(limit)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return list(conn.execute(query).all())

    def relay_outbox(self, publish: Callable[[dict[str, Any]], None], limit: int = 100) -> int:
        """Hand unsent outbox rows to the transport; a row is marked sent only after publish returns."""
        sent = 0
        with unit_of_work(self.db) as conn:
            rows = self.pending_outbox(conn, limit)
        for row in rows:
            envelope = {**row.envelope, "message_id": row.message_id}
            try:
                publish(envelope)
            except CaseflowError as exc:
                with unit_of_work(self.db) as conn:
                    conn.execute(
                        update(outbox)
                        .where(outbox.c.id == row.id)
                        .values(sent_at=self.now(), attempts=row.attempts + 1, last_error=exc.message[:4000])
                    )
                    conn.execute(
                        insert(incident).values(
                            id=str(uuid.uuid4()),
                            instance_id=row.instance_id,
                            task_id=None,
                            element_id=row.envelope.get("from_element"),
                            error_type=type(exc).__name__,
                            message=f"message '{row.message_name}' could not be delivered: {exc.message}"[
                                :4000
                            ],
                            state="open",
                            created_at=self.now(),
                        )
                    )
                continue
            except Exception as exc:
                with unit_of_work(self.db) as conn:
                    conn.execute(
                        update(outbox)
                        .where(outbox.c.id == row.id)
                        .values(attempts=row.attempts + 1, last_error=str(exc)[:4000])
                    )
                break
            with unit_of_work(self.db) as conn:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id == row.id)
                    .values(sent_at=self.now(), attempts=row.attempts + 1)
                )
            sent += 1
        return sent

    def receive(self, envelope: Mapping[str, Any]) -> dict[str, Any]:
        """An envelope from the transport becomes a correlate command (deduplicated by its message id)."""
        return self.correlate(
            str(envelope.get("name") or ""),
            business_key=envelope.get("business_key"),
            correlation_keys=dict(envelope.get("correlation_keys") or {}),
            variables=dict(envelope.get("variables") or {}),
            message_id=envelope.get("message_id"),
            ttl_seconds=int(envelope.get("ttl_seconds") or self.config.default_message_ttl),
            all=bool(envelope.get("all", False)),
            actor=f"instance:{envelope.get('from_instance')}" if envelope.get("from_instance") else None,
            source=envelope.get("from_instance"),
        )

    def _notify(self) -> None:
        for callback in self.after_commit:
            callback()


class _Row:
    """Attribute access over a dict, standing in for a row of an instance created in this transaction."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


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
