"""Messages: correlation (strict keys, buffering with a time-to-live, deduplication) and the outbox relay."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from engine.commands.base import (
    EngineBase,
    _json_safe,
    _matches,
    _Outcome,
    _record_processed,
    validate_text,
    validate_variables,
)
from engine.errors import (
    AmbiguousCorrelation,
    CaseflowError,
    ConcurrentModification,
    InvalidVariables,
    MessageNotCorrelated,
)
from engine.runtime.instance import IncidentRaised
from engine.store import audit
from engine.store.db import read_only, unit_of_work
from engine.store.tables import (
    buffered_message,
    incident,
    message_subscription,
    outbox,
    process_definition,
    process_instance,
    processed_message,
)


class MessageCommands(EngineBase):
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
