"""The engine's tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create exactly these.

Instance state lives in ``process_instance.snapshot``; every other table about an instance is a projection of
that state written in the same transaction (open tasks, subscriptions, timers, jobs, incidents), or an
append-only record (audit, outbox, processed messages).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _ts(name: str, nullable: bool = True, **kw: object) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable, **kw)  # type: ignore[arg-type]


deployment = Table(
    "deployment",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255), nullable=True),
    Column("source", String(255), nullable=True),
    _ts("created_at", nullable=False),
    Column("created_by", String(255), nullable=True),
)

resource = Table(
    "resource",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("deployment_id", String(36), ForeignKey("deployment.id"), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("sha256", String(64), nullable=False, index=True),
    Column("content", LargeBinary, nullable=False),
)

process_definition = Table(
    "process_definition",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("key", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("name", String(255), nullable=True),
    Column("deployment_id", String(36), ForeignKey("deployment.id"), nullable=False),
    Column("resource_id", String(36), ForeignKey("resource.id"), nullable=False),
    Column("content_hash", String(64), nullable=False),
    # resource ids compiled together with it (its deployment plus processes it calls)
    Column("resource_ids", JSON, nullable=False),
    Column("message_starts", JSON, nullable=False),
    Column("timer_starts", JSON, nullable=False),
    _ts("created_at", nullable=False),
    # caseflow:confidential on the process: its instances are need-to-know (discipline clues)
    Column("confidential", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("key", "version"),
)

process_instance = Table(
    "process_instance",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("definition_id", String(128), ForeignKey("process_definition.id"), nullable=False, index=True),
    Column("definition_key", String(255), nullable=False),
    Column("business_key", String(255), nullable=True),
    Column("state", String(16), nullable=False),  # running | completed | cancelled | incident
    Column("revision", Integer, nullable=False),
    Column("snapshot", Text, nullable=False),
    Column("snapshot_format", String(32), nullable=False),
    Column("variables", JSON, nullable=False),
    Column("active_elements", JSON, nullable=False),
    Column(
        "waits", JSON, nullable=False
    ),  # counts of projected subscriptions/timers/jobs, to skip empty deletes
    Column("audit_seq", Integer, nullable=False),
    Column("audit_head", String(64), nullable=True),
    _ts("started_at", nullable=False),
    _ts("updated_at", nullable=False),
    _ts("ended_at"),
    Column("started_by", String(255), nullable=True),
    Column("confidential", Boolean, nullable=False, server_default=false()),
    # deadline flags (e.g. a deadline past the known working-day calendar), shown on the instance
    Column("flags", JSON, nullable=True),
    Index("ix_process_instance_key_business_key", "definition_key", "business_key"),
    Index("ix_process_instance_business_key", "business_key"),
    Index("ix_process_instance_state", "state"),
)

task = Table(
    "task",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("instance_id", String(36), ForeignKey("process_instance.id"), nullable=False, index=True),
    Column("definition_id", String(128), nullable=False),
    Column("element_id", String(255), nullable=False),
    Column("name", String(255), nullable=True),
    Column("lane", String(255), nullable=True),
    Column("candidate_groups", JSON, nullable=False),
    Column("candidate_users", JSON, nullable=False),
    Column("assignee", String(255), nullable=True, index=True),
    Column("form_key", String(255), nullable=True),
    Column("priority", Integer, nullable=False, default=50),
    Column("state", String(16), nullable=False),  # open | completed | cancelled
    _ts("due_at"),
    _ts("created_at", nullable=False),
    _ts("ended_at"),
    Column("completed_by", String(255), nullable=True),
    Column("confidential", Boolean, nullable=False, server_default=false()),
    # why the due time is not trustworthy (e.g. it runs past the known working-day calendar)
    Column("deadline_note", Text, nullable=True),
    # what the claimant must hold (e.g. ["certified_officer"]), from caseflow:requires on the user task
    Column("requires", JSON, nullable=True),
    Index("ix_task_state_due", "state", "due_at"),
)

task_candidate = Table(
    "task_candidate",
    metadata,
    Column("task_id", String(36), ForeignKey("task.id", ondelete="CASCADE"), primary_key=True),
    Column("kind", String(8), primary_key=True),  # group | user
    Column("value", String(255), primary_key=True),
    Index("ix_task_candidate_kind_value", "kind", "value"),
)

message_subscription = Table(
    "message_subscription",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("instance_id", String(36), ForeignKey("process_instance.id"), nullable=False, index=True),
    Column("task_id", String(36), nullable=False),
    Column("element_id", String(255), nullable=False),
    Column("message_name", String(255), nullable=False),
    Column("business_key", String(255), nullable=True),
    Column("correlation", JSON, nullable=False),
    Column("matchable", Boolean, nullable=False),
    _ts("created_at", nullable=False),
    Index("ix_message_subscription_name_bk", "message_name", "business_key"),
)

buffered_message = Table(
    "buffered_message",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("message_id", String(255), nullable=True, unique=True),
    Column("message_name", String(255), nullable=False, index=True),
    Column("business_key", String(255), nullable=True),
    Column("correlation_keys", JSON, nullable=False),
    Column("variables", JSON, nullable=False),
    Column("source", String(255), nullable=True),
    _ts("created_at", nullable=False),
    _ts("expires_at", nullable=False),
    # the agency it was addressed to and the envelope as received: dead-lettered when its time-to-live runs out
    Column("recipient", String(64), nullable=True),
    Column("envelope", JSON, nullable=True),
)

processed_message = Table(
    "processed_message",
    metadata,
    Column("message_id", String(255), primary_key=True),
    Column("result", JSON, nullable=False),
    _ts("processed_at", nullable=False),
)

timer = Table(
    "timer",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("instance_id", String(36), ForeignKey("process_instance.id"), nullable=True, index=True),
    Column("definition_id", String(128), nullable=True, index=True),
    Column("task_id", String(36), nullable=True),
    Column("element_id", String(255), nullable=False),
    Column("kind", String(16), nullable=False),  # instance | start
    Column("cycle", JSON, nullable=True),  # start-event cycles: remaining repetitions and expression
    _ts("due_at", nullable=False),
    Index("ix_timer_due_at", "due_at"),
)

job = Table(
    "job",
    metadata,
    Column("id", String(36), primary_key=True),  # the task id
    Column("instance_id", String(36), ForeignKey("process_instance.id"), nullable=False, index=True),
    Column("element_id", String(255), nullable=False),
    Column("topic", String(255), nullable=False, index=True),
    Column("retries", Integer, nullable=False, default=3),
    Column("worker_id", String(255), nullable=True),
    _ts("locked_until"),
    Column("error_message", Text, nullable=True),
    _ts("created_at", nullable=False),
)

incident = Table(
    "incident",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("instance_id", String(36), ForeignKey("process_instance.id"), nullable=True, index=True),
    Column("task_id", String(36), nullable=True),
    Column("element_id", String(255), nullable=True),
    Column("error_type", String(255), nullable=False),
    Column("message", Text, nullable=False),
    Column("state", String(16), nullable=False),  # open | resolved
    _ts("created_at", nullable=False),
    _ts("resolved_at"),
    # structured context (a rejected message: its id, sender, receiver, reason and dead-letter queue)
    Column("details", JSON, nullable=True),
    Index("ix_incident_state", "state"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("message_id", String(64), nullable=False, unique=True),
    Column("instance_id", String(36), nullable=True),
    Column("message_name", String(255), nullable=False),
    Column("target", String(255), nullable=True),
    Column("envelope", JSON, nullable=False),
    _ts("created_at", nullable=False),
    _ts("sent_at"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    _ts("next_attempt_at"),  # a row that failed to publish waits until then (backoff)
    _ts("failed_at"),  # given up (unknown agency, no sender): an incident says why; never relayed again
    Index("ix_outbox_unsent", "sent_at", "id"),
)

audit_stream = Table(
    "audit_stream",
    metadata,
    Column("stream", String(64), primary_key=True),  # an instance id, or "system"
    Column("seq", Integer, nullable=False),
    Column("head", String(64), nullable=False),
)

audit_record = Table(
    "audit_record",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("stream", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    _ts("at", nullable=False),
    Column("actor", String(255), nullable=True),
    Column("command", String(64), nullable=False),
    Column("task_id", String(36), nullable=True),
    Column("element_id", String(255), nullable=True),
    Column("details", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=True),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("stream", "seq"),
)
