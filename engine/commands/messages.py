"""Messages: correlation (strict keys, buffering with a time-to-live, deduplication) and the outbox relay."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from adapters.envelope import FIELDS as ENVELOPE_FIELDS
from adapters.envelope import EnvelopeError
from adapters.envelope import summary as envelope_summary
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

# A row the broker keeps refusing (e.g. no inbox bound for its agency) raises an incident at this attempt.
STUCK_AFTER_ATTEMPTS = 5


START_CACHE_SECONDS = 2.0

# Has this message id been handled (its result) or buffered? One round trip for both.
_SEEN = select(
    select(processed_message.c.result)
    .where(processed_message.c.message_id == bindparam("b_message_id"))
    .scalar_subquery()
    .label("done"),
    exists().where(buffered_message.c.message_id == bindparam("b_message_id")).label("buffered"),
)
_LATEST = (
    select(process_definition.c.key, func.max(process_definition.c.version).label("v"))
    .group_by(process_definition.c.key)
    .subquery()
)
_LATEST_DEFINITIONS = select(process_definition).join(
    _LATEST, and_(_LATEST.c.key == process_definition.c.key, _LATEST.c.v == process_definition.c.version)
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
        envelope: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Deliver a message. ``envelope`` (a transferred message as received) is kept with a buffered message so
        that it can be dead-lettered to its receiving agency when its time-to-live runs out."""
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
                    seen = conn.execute(_SEEN, {"b_message_id": message_id}).one()
                    if seen.done is not None:
                        return {**seen.done, "duplicate": True}
                    if seen.buffered:
                        return {
                            "message_id": message_id,
                            "buffered": True,
                            "duplicate": True,
                            "instances": [],
                        }
                result = self._correlate_in(
                    conn, name, business_key, keys, variables, message_id, ttl, all, actor, source, envelope
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
        envelope: Mapping[str, Any] | None = None,
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
                    # The message's variables enter through its start event, which may limit them
                    # (caseflow:payload on a catch).
                    self._start_in(conn, definition, business_key, {}, actor, message=(name, {**variables}))
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
                        recipient=envelope.get("to") if envelope else None,
                        envelope=_json_safe(dict(envelope)) if envelope else None,
                    )
                )
                return {"message_id": message_id, "buffered": True, "instances": []}
            raise MessageNotCorrelated(
                f"no process instance waits for message '{name}' with these keys, and no process starts with it",
                message_name=name,
            )
        return {"message_id": message_id, "buffered": False, "instances": results}

    def _message_start_definitions(self, conn: Connection, name: str) -> list[Any]:
        """The latest definitions a message starts (cached for a moment: every transfer asks)."""
        cached = self.message_starts
        if cached is None or time.monotonic() - cached[0] > START_CACHE_SECONDS:
            by_name: dict[str, list[Any]] = {}
            for r in conn.execute(_LATEST_DEFINITIONS).all():
                for message in r.message_starts or []:
                    by_name.setdefault(message, []).append(r)
            cached = (time.monotonic(), by_name)
            self.message_starts = cached
        return list(cached[1].get(name, []))

    def expire_buffered(self, dead_letter: Callable[[Mapping[str, Any]], str | None] | None = None) -> int:
        """Drop buffered messages past their time-to-live, each with an incident.

        A transferred message (buffered with its envelope) is first handed to ``dead_letter``, which publishes it
        to its agency's dead-letter queue and returns the queue's name. If that raises, the message stays buffered
        (it can no longer be delivered: draining only takes unexpired messages) and a later pass tries again.
        """
        now = self.now()
        with read_only(self.db) as conn:
            expired = conn.execute(
                select(buffered_message)
                .where(buffered_message.c.expires_at <= now)
                .order_by(buffered_message.c.expires_at)
                .limit(500)
            ).all()
        done = 0
        for r in expired:
            queue = None
            if dead_letter is not None and r.envelope:
                queue = dead_letter(r.envelope)
            with unit_of_work(self.db) as conn:
                gone = conn.execute(delete(buffered_message).where(buffered_message.c.id == r.id))
                if not gone.rowcount:
                    continue  # another process expired it meanwhile
                envelope = r.envelope or {}
                _insert_incident(
                    conn,
                    "MessageExpired",
                    f"message '{r.message_name}' (id {r.message_id}) found no receiver before its time-to-live "
                    "ran out",
                    self.now(),
                    details={
                        "message_id": r.message_id,
                        "name": r.message_name,
                        "from": envelope.get("from"),
                        "to": r.recipient,
                        "reason": "expired",
                        "dead_letter_queue": queue,
                    },
                )
            done += 1
        return done

    def has_pending_outbox(self, which: str = "all") -> bool:
        """Is any row due to be relayed? (A cheap read, so an idle relay can poll often.)"""
        with read_only(self.db) as conn:
            query = select(outbox.c.id).where(*self._due(which)).limit(1)
            return conn.execute(query).first() is not None

    def _due(self, which: str) -> list[Any]:
        conditions = [
            outbox.c.sent_at.is_(None),
            outbox.c.failed_at.is_(None),
            or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= self.now()),
        ]
        if which == "local":
            conditions.append(outbox.c.target.is_(None))
        elif which == "remote":
            conditions.append(outbox.c.target.is_not(None))
        return conditions

    def pending_outbox(self, conn: Connection, limit: int, which: str = "all") -> list[Any]:
        """Unsent rows due now, oldest first. ``which``: ``all``, ``local`` (no ``caseflow:to``: delivered in
        this engine) or ``remote`` (addressed to an agency). On PostgreSQL the rows are locked (SKIP LOCKED), so
        relays running at once each take different rows."""
        query = select(outbox).where(*self._due(which)).order_by(outbox.c.id).limit(limit)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return list(conn.execute(query).all())

    def relay_outbox(
        self,
        publish: Callable[[dict[str, Any]], None],
        limit: int = 100,
        *,
        which: str = "all",
        hold_lock: bool = False,
        raise_errors: bool = False,
        publish_batch: Callable[[list[dict[str, Any]]], list[Exception | None]] | None = None,
    ) -> int:
        """Hand unsent outbox rows to the transport; a row is marked sent only after ``publish`` returned.

        ``publish`` gets the row's envelope with its local metadata (``from_instance``, ``from_element``). It
        returns once the message is safely accepted (for RabbitMQ: after the publisher confirm). A
        :class:`CaseflowError` or :class:`EnvelopeError` is final: the row is marked failed with an incident. Any
        other error leaves the row for a later attempt (with backoff) and ends the pass; ``raise_errors`` then
        re-raises it after the pass is recorded.

        ``hold_lock``: read, publish and mark in one transaction, keeping the rows locked (``FOR UPDATE SKIP
        LOCKED`` on PostgreSQL) until their confirms arrived, so concurrent relays never publish the same row.
        ``publish`` must then not write to this database itself.

        ``publish_batch`` (instead of ``publish``): hands over the whole batch at once and returns one outcome per
        record (None: accepted; an exception: as above); if it raises, no row counts as sent.
        """
        failure: Exception | None = None
        if hold_lock:
            with unit_of_work(self.db) as conn:
                rows = self.pending_outbox(conn, limit, which)
                sent, failure = self._relay_rows(rows, publish, lambda: nullcontext(conn), publish_batch)
        else:
            with unit_of_work(self.db) as conn:
                rows = self.pending_outbox(conn, limit, which)
            sent, failure = self._relay_rows(rows, publish, lambda: unit_of_work(self.db), publish_batch)
        if failure is not None and raise_errors:
            raise failure
        return sent

    def _relay_rows(
        self,
        rows: list[Any],
        publish: Callable[[dict[str, Any]], None],
        transaction: Callable[[], AbstractContextManager[Connection]],
        publish_batch: Callable[[list[dict[str, Any]]], list[Exception | None]] | None = None,
    ) -> tuple[int, Exception | None]:
        records = [{**row.envelope, "message_id": row.message_id} for row in rows]
        outcomes: list[Exception | None] = []
        if publish_batch is not None:
            try:
                outcomes = list(publish_batch(records))
            except Exception as exc:
                return 0, exc  # nothing known to be accepted: every row stays for a later pass
        else:
            for record in records:
                try:
                    publish(record)
                except Exception as exc:
                    outcomes.append(exc)
                    if not isinstance(exc, CaseflowError | EnvelopeError):
                        break
                    continue
                outcomes.append(None)
        sent: list[int] = []
        failure: Exception | None = None
        for row, outcome in zip(rows, outcomes, strict=False):
            if outcome is None:
                sent.append(row.id)
            elif isinstance(outcome, CaseflowError | EnvelopeError):
                self._give_up(row, outcome, transaction)
            else:
                failure = failure or outcome
                delay = min(30.0, 0.5 * 2 ** min(row.attempts, 10))
                with transaction() as conn:
                    conn.execute(
                        update(outbox)
                        .where(outbox.c.id == row.id)
                        .values(
                            attempts=row.attempts + 1,
                            last_error=f"{type(outcome).__name__}: {outcome}"[:4000],
                            next_attempt_at=self.now() + timedelta(seconds=delay),
                        )
                    )
                    if row.attempts + 1 == STUCK_AFTER_ATTEMPTS:  # tell someone once; keep trying
                        _insert_incident(
                            conn,
                            "MessageNotAccepted",
                            f"message '{row.message_name}' was not accepted after {STUCK_AFTER_ATTEMPTS} attempts "
                            f"and is still being retried: {outcome}",
                            self.now(),
                            instance_id=row.instance_id,
                            element_id=row.envelope.get("from_element"),
                            details={
                                **envelope_summary(row.envelope),
                                "message_id": row.message_id,
                                "reason": "not_accepted",
                                "dead_letter_queue": None,
                            },
                        )
        if sent:
            with transaction() as conn:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id.in_(sent))
                    .values(sent_at=self.now(), attempts=outbox.c.attempts + 1)
                )
        return len(sent), failure

    def _give_up(
        self,
        row: Any,
        exc: CaseflowError | EnvelopeError,
        transaction: Callable[[], AbstractContextManager[Connection]],
    ) -> None:
        """A row that can never be delivered: marked failed, with an incident saying why."""
        reason = exc.reason if isinstance(exc, EnvelopeError) else exc.code
        now = self.now()
        with transaction() as conn:
            conn.execute(
                update(outbox)
                .where(outbox.c.id == row.id)
                .values(failed_at=now, attempts=row.attempts + 1, last_error=exc.message[:4000])
            )
            _insert_incident(
                conn,
                type(exc).__name__,
                f"message '{row.message_name}' could not be delivered: {exc.message}",
                now,
                instance_id=row.instance_id,
                element_id=row.envelope.get("from_element"),
                details={
                    **envelope_summary(row.envelope),
                    "message_id": row.message_id,
                    "reason": reason,
                    "dead_letter_queue": None,
                },
            )

    def receive(self, envelope: Mapping[str, Any]) -> dict[str, Any]:
        """A (checked) envelope becomes a correlate command, deduplicated by its message id.

        Called by the transports after their checks (schema, size, signature). ``from_instance`` is local
        metadata present only for a message from this same engine.
        """
        sender = envelope.get("from")
        origin = envelope.get("from_instance")
        actor = f"instance:{origin}" if origin else (f"agency:{sender}" if sender else None)
        transferred = {k: envelope[k] for k in ENVELOPE_FIELDS if k in envelope}
        return self.correlate(
            str(envelope.get("name") or ""),
            business_key=envelope.get("business_key"),
            correlation_keys=dict(envelope.get("correlation_keys") or {}),
            variables=dict(envelope.get("payload") or {}),
            message_id=envelope.get("message_id"),
            ttl_seconds=self.config.default_message_ttl,
            actor=actor,
            source=origin or sender,
            envelope=transferred if envelope.get("to") else None,
        )

    def record_rejected_message(
        self, message: str, details: Mapping[str, Any], error_type: str = "MessageRejected"
    ) -> str:
        """An incident for a message refused at the gate (details: message id, from, to, reason, dead-letter
        queue); visible in GET /api/incidents."""
        with unit_of_work(self.db) as conn:
            return _insert_incident(conn, error_type, message, self.now(), details=_json_safe(dict(details)))


def _insert_incident(
    conn: Connection,
    error_type: str,
    message: str,
    now: Any,
    *,
    instance_id: str | None = None,
    element_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> str:
    incident_id = str(uuid.uuid4())
    conn.execute(
        insert(incident).values(
            id=incident_id,
            instance_id=instance_id,
            task_id=None,
            element_id=element_id,
            error_type=error_type[:255],
            message=message[:4000],
            state="open",
            created_at=now,
            details=dict(details) if details is not None else None,
        )
    )
    return incident_id
