"""Append-only audit trail with a hash chain per stream (an instance, or "system").

Each record's hash covers its content and the previous record's hash; the stream's head (last seq and hash)
is kept beside it. An edited record breaks its own hash, a removed one breaks the chain or the head.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from engine.store.tables import audit_record, audit_stream, process_instance

SYSTEM_STREAM = "system"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def record_hash(
    stream: str,
    seq: int,
    at: datetime,
    actor: str | None,
    command: str,
    task_id: str | None,
    element_id: str | None,
    details: dict[str, Any],
    prev_hash: str | None,
) -> str:
    body = _canonical(
        {
            "stream": stream,
            "seq": seq,
            "at": _at(at),
            "actor": actor,
            "command": command,
            "task_id": task_id,
            "element_id": element_id,
            "details": details,
            "prev": prev_hash,
        }
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _at(at: datetime) -> str:
    # SQLite drops the zone on the way back: hash the UTC wall time with microseconds.
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.isoformat(timespec="microseconds")


@dataclass
class Entry:
    command: str
    actor: str | None
    at: datetime
    task_id: str | None = None
    element_id: str | None = None
    details: dict[str, Any] | None = None


def build_rows(
    stream: str, seq: int, head: str | None, entries: list[Entry]
) -> tuple[list[dict[str, Any]], int, str | None]:
    rows = []
    for entry in entries:
        seq += 1
        details = json.loads(_canonical(entry.details or {}))
        digest = record_hash(
            stream, seq, entry.at, entry.actor, entry.command, entry.task_id, entry.element_id, details, head
        )
        rows.append(
            {
                "stream": stream,
                "seq": seq,
                "at": entry.at,
                "actor": entry.actor,
                "command": entry.command,
                "task_id": entry.task_id,
                "element_id": entry.element_id,
                "details": details,
                "prev_hash": head,
                "hash": digest,
            }
        )
        head = digest
    return rows, seq, head


def append_system(conn: Connection, entries: list[Entry]) -> None:
    row = conn.execute(
        select(audit_stream.c.seq, audit_stream.c.head)
        .where(audit_stream.c.stream == SYSTEM_STREAM)
        .with_for_update()
    ).first()
    seq, head = (row.seq, row.head) if row else (0, None)
    rows, new_seq, new_head = build_rows(SYSTEM_STREAM, seq, head, entries)
    if rows:
        conn.execute(insert(audit_record), rows)
        if row is None:
            conn.execute(insert(audit_stream).values(stream=SYSTEM_STREAM, seq=new_seq, head=new_head))
        else:
            conn.execute(
                update(audit_stream)
                .where(audit_stream.c.stream == SYSTEM_STREAM)
                .values(seq=new_seq, head=new_head)
            )


@dataclass
class Problem:
    stream: str
    seq: int | None
    problem: str


def verify(conn: Connection, stream: str | None = None) -> tuple[int, list[Problem]]:
    """Recompute every chain (or one); returns the number of records checked and the problems found."""
    heads: dict[str, tuple[int, str | None]] = {}
    q_inst = select(process_instance.c.id, process_instance.c.audit_seq, process_instance.c.audit_head)
    q_sys = select(audit_stream.c.stream, audit_stream.c.seq, audit_stream.c.head)
    if stream is not None:
        q_inst = q_inst.where(process_instance.c.id == stream)
        q_sys = q_sys.where(audit_stream.c.stream == stream)
    for r in conn.execute(q_inst):
        heads[r.id] = (r.audit_seq, r.audit_head)
    for r in conn.execute(q_sys):
        heads[r.stream] = (r.seq, r.head)
    query = select(audit_record).order_by(audit_record.c.stream, audit_record.c.seq)
    if stream is not None:
        query = query.where(audit_record.c.stream == stream)
    problems: list[Problem] = []
    checked = 0
    current: str | None = None
    expected_seq = 0
    prev: str | None = None

    def close(name: str | None) -> None:
        if name is None:
            return
        seq, head = heads.pop(name, (None, None))
        if seq is None:
            problems.append(Problem(name, None, "records exist for a stream with no head"))
        elif seq != expected_seq or head != prev:
            problems.append(
                Problem(
                    name,
                    expected_seq,
                    f"stream ends at record {expected_seq} but its head says {seq}: records were removed",
                )
            )

    for r in conn.execute(query):
        if r.stream != current:
            close(current)
            current, expected_seq, prev = r.stream, 0, None
        checked += 1
        expected_seq += 1
        if r.seq != expected_seq:
            problems.append(Problem(r.stream, r.seq, f"record {expected_seq} is missing"))
            expected_seq = r.seq
        if r.prev_hash != prev:
            problems.append(Problem(r.stream, r.seq, "chain broken: previous hash does not match"))
        digest = record_hash(
            r.stream, r.seq, r.at, r.actor, r.command, r.task_id, r.element_id, r.details, r.prev_hash
        )
        if digest != r.hash:
            problems.append(
                Problem(r.stream, r.seq, "record was edited: its hash does not match its content")
            )
        prev = r.hash
    close(current)
    for name, (seq, _head) in heads.items():
        if seq:
            problems.append(Problem(name, None, f"head says {seq} records but none are stored"))
    return checked, problems
