"""Deploying BPMN/DMN resources as versioned process definitions."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from engine.commands.base import (
    EngineBase,
    _utc,
    validate_text,
)
from engine.definitions.compiler import ProcessModel, compile_resources
from engine.errors import (
    InvalidModel,
    InvalidVariables,
)
from engine.lang.iso8601 import looks_like_iso8601, parse_cycle, resolve_due
from engine.store import audit
from engine.store.db import read_only, unit_of_work
from engine.store.tables import (
    deployment,
    process_definition,
    resource,
    timer,
)


class DeployCommands(EngineBase):
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
        # A definition is what was compiled into it: its own file, the decision tables of its deployment and
        # the processes it calls. Any of them changing makes a new version; none changing makes nothing.
        extra = sorted(hashes[n] for n, _ in files if n not in compiled.bpmn_resources)
        extra += sorted(hashlib.sha256(c).hexdigest() for _, _, c in libraries)
        content_hash = {
            n: hashlib.sha256("".join([hashes[n], *extra]).encode()).hexdigest()
            for n in compiled.bpmn_resources
        }
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
                if latest_by_key.get(k) is None or latest_by_key[k].content_hash != content_hash[m.resource]
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
                if previous is not None and previous.content_hash == content_hash[model.resource]:
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
                    "content_hash": content_hash[model.resource],
                    "resource_ids": all_resource_ids,
                    "message_starts": list(model.message_starts),
                    "timer_starts": [t.__dict__ for t in model.timer_starts],
                    "created_at": now,
                    "confidential": model.confidential,
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
        self.message_starts = None  # a new version may start with other messages
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
