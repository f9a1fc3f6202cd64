"""Due timers: intermediate, boundary and start-event timers, each fired as a command."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from engine.commands.base import (
    EngineBase,
    _Outcome,
    _utc,
)
from engine.errors import (
    ConcurrentModification,
    NotFound,
)
from engine.lang.iso8601 import parse_cycle
from engine.runtime.instance import IncidentRaised
from engine.store import audit
from engine.store.db import read_only, unit_of_work
from engine.store.tables import (
    incident,
    process_definition,
    timer,
)

log = logging.getLogger("caseflow.timers")
TIMER_RETRY = timedelta(seconds=60)


class TimerCommands(EngineBase):
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
            except Exception as exc:  # one broken timer must not stall the others
                log.exception("timer %s of instance %s could not fire", t.element_id, t.instance_id)
                self._postpone_failed_timer(t, exc)
        if fired:
            self._notify()
        return fired

    def _fire_instance_timer(self, t: Any) -> None:
        with unit_of_work(self.db) as conn:
            still = conn.execute(select(timer.c.id).where(timer.c.id == t.id)).first()
            if still is None:
                return
            irow = self.get_instance_row(conn, t.instance_id)
            if irow.state not in ("running", "incident"):  # an incident elsewhere does not stop a deadline
                return
            loaded = self._load(conn, irow)
            # The refresh below fires every timer of the instance that is due, not only this one: each firing
            # goes in the audit trail (a missed deadline must show when it passed, e.g. two 7-day deadlines).
            firing = conn.execute(
                select(timer.c.task_id, timer.c.element_id, timer.c.due_at)
                .where(timer.c.instance_id == t.instance_id, timer.c.due_at <= self.now())
                .order_by(timer.c.due_at, timer.c.element_id)
            ).all()
            outcome = _Outcome(
                audit=[
                    audit.Entry(
                        "timer",
                        None,
                        self.now(),
                        task_id=f.task_id,
                        element_id=f.element_id,
                        details={"due_at": due.isoformat() if (due := _utc(f.due_at)) else None},
                    )
                    for f in firing or [t]
                ]
            )
            error = None
            try:
                self.runtime.refresh_timers(loaded.workflow)
            except IncidentRaised as exc:
                error = exc
            self._save(conn, loaded, outcome, error)
            conn.execute(  # it fired after all: earlier failures to fire are over
                update(incident)
                .where(
                    incident.c.instance_id == t.instance_id,
                    incident.c.task_id == t.task_id,
                    incident.c.error_type == "TimerFailed",
                    incident.c.state == "open",
                )
                .values(state="resolved", resolved_at=self.now())
            )

    def _postpone_failed_timer(self, t: Any, exc: Exception) -> None:
        """Record why the timer could not fire and try again later instead of at every pass."""
        now = self.now()
        with unit_of_work(self.db) as conn:
            conn.execute(update(timer).where(timer.c.id == t.id).values(due_at=now + TIMER_RETRY))
            conn.execute(
                insert(incident).values(
                    id=str(uuid.uuid4()),
                    instance_id=t.instance_id,
                    task_id=t.task_id,
                    element_id=t.element_id,
                    error_type="TimerFailed",
                    message=f"timer could not fire ({type(exc).__name__}: {exc}); "
                    f"retrying every {TIMER_RETRY.seconds} s"[:4000],
                    state="open",
                    created_at=now,
                )
            )

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
