"""Given/when/then helpers for the district's process scenarios (tests/scenarios).

The scenarios drive the bundled models in ``bpmn/`` through the engine's commands exactly as the API would,
on the ``engine`` fixture (SQLite and PostgreSQL) with the injected :class:`~tests.conftest.ManualClock`::

    deploy_models(engine, "clue_transfer")                                       # given
    case = start(engine, clock, "clue_transfer", case_no="HB-1", sender_agency="market_regulation")
    case.complete("register_clue", {...})                                        # when
    advance(engine, clock, days=3)                     # moves the clock, then fires the timers now due
    task = case.task("supervise_ack")                                            # then
    assert_task(task, lane="司法局", groups=["justice_bureau:supervisor"])
    assert case.sent("criminal_case_transfer")[0].to == "public_security"
    case.reply("police_receipt", {"receipt_no": "HG-1"})                   # an external agency answers

Stable API (models-B imports it): :func:`model_file`, :func:`deploy_models`, :func:`deploy_fixture`,
:func:`start`, :class:`Case` (``id``, ``case_no``, ``view``, ``state``, ``variables``, ``open_elements``,
``tasks``, ``task``, ``has_task``, ``visited_elements``, ``timers``, ``due``, ``sent``, ``waiting_for_messages``,
``audit``, ``complete``, ``reply``, ``check_stable``), :class:`Sent` (``name``, ``to``, ``sender``, ``payload``,
``correlation_keys``, ``envelope``), :func:`advance`, :func:`advance_to`, :func:`fire_timers`,
:func:`assert_task`, :func:`roles`, :func:`shanghai`, :func:`utc`, ``SHANGHAI``, :func:`end_of_day`,
:func:`timer_firings`, :func:`assert_supervised`. Add to it; do not change
what is there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from engine.commands import Engine
from engine.directory import SYSTEM
from engine.store import queries
from engine.store.db import read_only
from engine.store.tables import outbox
from tests.conftest import ManualClock
from tests.constructs.support import assert_round_trip

MODELS = Path(__file__).resolve().parents[2] / "bpmn"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHANGHAI = ZoneInfo("Asia/Shanghai")


# ------------------------------------------------------------------------------------------------ time
def shanghai(year: int, month: int, day: int, hour: int = 9, minute: int = 0, second: int = 0) -> datetime:
    """A wall-clock moment in 湖滨区 (Asia/Shanghai), as an aware datetime."""
    return datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI)


def end_of_day(day: datetime) -> datetime:
    """The end of ``day``'s date in Asia/Shanghai (24:00, i.e. 00:00 of the next calendar day): where a deadline
    counted in days ends."""
    return shanghai(day.year, day.month, day.day, 0) + timedelta(days=1)


def utc(value: str | datetime) -> datetime:
    """An ISO 8601 text or a datetime as an aware UTC datetime (naive values are read as UTC)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def fire_timers(engine: Engine) -> int:
    """Fire every timer due at the clock's current time; the number fired."""
    fired = 0
    while True:
        batch = engine.fire_due_timers()
        fired += batch
        if batch == 0:
            return fired


def advance(engine: Engine, clock: ManualClock, **delta: float) -> int:
    """Move the clock by ``timedelta(**delta)`` and fire the timers due by then (like the scheduler would)."""
    clock.advance(**delta)
    return fire_timers(engine)


def advance_to(engine: Engine, clock: ManualClock, when: datetime) -> int:
    """Set the clock to ``when`` (aware) and fire the timers due by then."""
    clock.set(when.astimezone(UTC))
    return fire_timers(engine)


# ---------------------------------------------------------------------------------------------- given
def model_file(stem: str) -> tuple[str, bytes]:
    """``bpmn/<stem>.bpmn`` (or ``.dmn``) as a (resource name, bytes) pair for ``engine.deploy``."""
    for suffix in (".bpmn", ".dmn"):
        path = MODELS / f"{stem}{suffix}"
        if path.is_file():
            return path.name, path.read_bytes()
    raise FileNotFoundError(f"no bpmn/{stem}.bpmn or .dmn")


def deploy_models(engine: Engine, *stems: str, extra: Sequence[tuple[str, bytes]] = ()) -> dict[str, Any]:
    """Deploy bundled models (by file stem) and any extra (name, bytes) resources together, as one deployment."""
    return engine.deploy([model_file(s) for s in stems] + list(extra), name="scenario", actor="tester")


def deploy_fixture(engine: Engine, name: str) -> dict[str, Any]:
    """Deploy one file of tests/scenarios/fixtures on its own (a test double of a called process, say)."""
    return engine.deploy([(name, (FIXTURES / name).read_bytes())], name="scenario-fixture", actor="tester")


@dataclass(frozen=True)
class Sent:
    """One message the instance put in the outbox for another agency."""

    name: str
    to: str | None
    sender: str | None  # the envelope's "from"
    payload: dict[str, Any]
    correlation_keys: dict[str, Any]
    envelope: dict[str, Any]


@dataclass
class Case:
    """One started process instance of a scenario, with the case number its messages correlate on."""

    engine: Engine
    clock: ManualClock
    id: str
    case_no: str

    # ------------------------------------------------------------------------------------------- then
    def view(self) -> dict[str, Any]:
        with read_only(self.engine.db) as conn:
            return queries.instance(conn, self.id)

    @property
    def state(self) -> str:
        return str(self.view()["state"])

    @property
    def variables(self) -> dict[str, Any]:
        return dict(self.view()["variables"] or {})

    def tasks(self, state: str | None = "open") -> list[dict[str, Any]]:
        with read_only(self.engine.db) as conn:
            # The engine's own view: confidential instances' tasks too (need-to-know is tested separately).
            return queries.tasks(conn, instance_id=self.id, state=state, viewer=SYSTEM)

    def open_elements(self) -> list[str]:
        """Element ids of the open user tasks, sorted."""
        return sorted(t["element_id"] for t in self.tasks())

    def visited_elements(self) -> set[str]:
        """Element ids of every user task the case has had, open, completed or cancelled."""
        return {t["element_id"] for t in self.tasks(state=None)}

    def has_task(self, element_id: str) -> bool:
        return any(t["element_id"] == element_id for t in self.tasks())

    def task(self, element_id: str) -> dict[str, Any]:
        """The one open user task of ``element_id`` (fails when there is none or more than one)."""
        found = [t for t in self.tasks() if t["element_id"] == element_id]
        assert len(found) == 1, f"expected one open '{element_id}' task, open: {self.open_elements()}"
        return found[0]

    def timers(self) -> dict[str, datetime]:
        """Element id -> due time (UTC) of the timers the instance waits for."""
        waiting = self.view()["waiting_for"]["timers"]
        return {t["element_id"]: utc(t["due_at"]) for t in waiting}

    def due(self, element_id: str) -> datetime:
        """Due time (UTC) of the timer of ``element_id``."""
        timers = self.timers()
        assert element_id in timers, f"no timer '{element_id}' armed; armed: {sorted(timers)}"
        return timers[element_id]

    def waiting_for_messages(self) -> list[str]:
        """Names of the messages the instance waits for, sorted."""
        return sorted(m["name"] for m in self.view()["waiting_for"]["messages"])

    def sent(self, name: str | None = None) -> list[Sent]:
        """Messages this instance sent (outbox rows in order), optionally only those named ``name``."""
        with read_only(self.engine.db) as conn:
            rows = conn.execute(
                select(outbox.c.message_name, outbox.c.target, outbox.c.envelope)
                .where(outbox.c.instance_id == self.id)
                .order_by(outbox.c.id)
            ).all()
        out = [
            Sent(
                name=r.message_name,
                to=r.target,
                sender=r.envelope.get("from"),
                payload=dict(r.envelope.get("payload", r.envelope.get("variables")) or {}),
                correlation_keys=dict(r.envelope.get("correlation_keys") or {}),
                envelope=dict(r.envelope),
            )
            for r in rows
        ]
        return [m for m in out if name is None or m.name == name]

    def audit(self) -> list[dict[str, Any]]:
        with read_only(self.engine.db) as conn:
            return queries.audit_trail(conn, self.id)

    def check_stable(self) -> None:
        """The stored snapshot loads and dumps back unchanged."""
        assert_round_trip(self.engine, self.id)

    # ------------------------------------------------------------------------------------------- when
    def complete(
        self, element_id: str, variables: dict[str, Any] | None = None, *, user: str | None = None
    ) -> dict[str, Any]:
        """Complete the open task of ``element_id`` with the form's values."""
        task = self.task(element_id)
        return self.engine.complete(task["id"], variables or {}, user=user or "tester")

    def reply(self, name: str, variables: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
        """An external agency's answer: correlate message ``name`` on this case's ``case_no``."""
        return self.engine.correlate(
            name, correlation_keys={"case_no": self.case_no}, variables=variables or {}, **options
        )


def start(
    engine: Engine,
    clock: ManualClock,
    key: str,
    *,
    case_no: str,
    business_key: str | None = None,
    **variables: Any,
) -> Case:
    """Start the latest ``key`` with ``case_no`` and the other variables; the business key defaults to it."""
    started = engine.start(
        key=key, business_key=business_key or case_no, variables={"case_no": case_no, **variables}
    )
    return Case(engine, clock, str(started["id"]), case_no)


# ---------------------------------------------------------------------------------------------- asserts
def timer_firings(case: Case, element_id: str) -> list[dict[str, Any]]:
    """The audit entries of the timer ``element_id`` firing in the case (empty while it has not fired)."""
    return [e for e in case.audit() if e["command"] == "timer" and e["element_id"] == element_id]


def assert_supervised(
    case: Case,
    task_id: str,
    *,
    name: str,
    lane: str,
    timer: str | None = None,
    groups: Iterable[str] = ("justice_bureau:supervisor",),
) -> dict[str, Any]:
    """Then a missed deadline is supervised (督办): the open task ``task_id`` has this name and lane and is the
    supervisors' (by default the justice bureau's), and the ``timer`` that missed it, if named, fired on record."""
    task = case.task(task_id)
    assert_task(task, name=name, lane=lane, groups=groups)
    if timer is not None:
        assert timer_firings(case, timer), (
            f"the timer {timer} that opened {task_id} is not in the audit trail"
        )
    return task


def roles(task: dict[str, Any]) -> list[str]:
    """The task's ``<agency>:<role>`` candidate groups, sorted (the engine also lists the lane's name)."""
    return sorted(g for g in task["candidate_groups"] if g != task.get("lane"))


def assert_task(
    task: dict[str, Any],
    *,
    name: str | None = None,
    lane: str | None = None,
    groups: Iterable[str] | None = None,
    due: datetime | None = None,
) -> None:
    """Check an open task's name, lane, candidate groups (as in :func:`roles`) and due time."""
    if name is not None:
        assert task["name"] == name, f"task name {task['name']!r}, expected {name!r}"
    if lane is not None:
        assert task["lane"] == lane, f"task {task['element_id']} in lane {task['lane']!r}, expected {lane!r}"
    if groups is not None:
        assert roles(task) == sorted(groups), f"task {task['element_id']} candidate groups {roles(task)}"
    if due is not None:
        assert task["due_at"] is not None, f"task {task['element_id']} has no due time"
        assert utc(task["due_at"]) == utc(due), (
            f"task {task['element_id']} due {task['due_at']}, expected {due}"
        )
