"""Two OS processes race on one instance on PostgreSQL: exactly one wins, the other gets a clean 409.

Process A completes the user task; process B correlates the message of the task's interrupting boundary event.
Both are released by a barrier at the same moment, 200 times. After each race the instance must be consistent:
completed along exactly one path, the task in the matching state, nothing left waiting, the audit chain intact.
"""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import pytest
from sqlalchemy import select

from engine.commands import Engine
from engine.errors import CaseflowError
from engine.store import audit
from engine.store.db import create_db_engine, read_only
from engine.store.migrate import migrate
from engine.store.tables import message_subscription, process_instance, task
from tests.bpmn_util import chain, flow, process

RUNS = 200

RACE_MODEL = process(
    "race",
    """
  <bpmn:startEvent id="start"/>
  <bpmn:userTask id="review" name="审核" camunda:candidateGroups="officer"/>
  <bpmn:boundaryEvent id="withdrawn" attachedToRef="review" cancelActivity="true">
    <bpmn:messageEventDefinition messageRef="msg_withdraw"/>
  </bpmn:boundaryEvent>
  <bpmn:endEvent id="end_reviewed"/>
  <bpmn:endEvent id="end_withdrawn"/>
  """
    + chain("start", "review", "end_reviewed")
    + flow("f_withdrawn", "withdrawn", "end_withdrawn"),
    extra='<bpmn:message id="msg_withdraw" name="withdraw"/>',
)


def _worker(url: str, schema: str, role: str, jobs: Any, results: Any, barrier: Any) -> None:
    db = create_db_engine(url, schema=schema)
    engine = Engine(db)
    while True:
        job = jobs.get()
        if job is None:
            break
        task_id, business_key = job
        barrier.wait()
        try:
            if role == "complete":
                engine.complete(task_id, {"decision": "approve"})
            else:
                engine.correlate("withdraw", business_key=business_key, variables={"reason": "duplicate"})
            results.put((role, "won", None))
        except CaseflowError as exc:
            results.put((role, exc.status, exc.code))
        except Exception as exc:
            results.put((role, "crash", f"{type(exc).__name__}: {exc}"))
    db.dispose()


@pytest.mark.postgres
def test_complete_and_correlate_race(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    db = create_db_engine(url, schema=schema)
    migrate(db)
    engine = Engine(db)
    engine.deploy([("race.bpmn", RACE_MODEL)])

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    queues = {role: ctx.Queue() for role in ("complete", "correlate")}
    workers = [
        ctx.Process(target=_worker, args=(url, schema, role, queues[role], results, barrier))
        for role in queues
    ]
    for w in workers:
        w.start()
    outcomes: dict[str, int] = {"complete": 0, "correlate": 0}
    try:
        for i in range(RUNS):
            started = engine.start(key="race", business_key=f"R-{i}")
            task_id = started["tasks"][0]["id"]
            for q in queues.values():
                q.put((task_id, f"R-{i}"))
            got = [results.get(timeout=60) for _ in range(2)]
            winners = [role for role, status, _ in got if status == "won"]
            losers = [(role, status, code) for role, status, code in got if status != "won"]
            assert len(winners) == 1, got
            assert losers[0][1] == 409, got
            outcomes[winners[0]] += 1
            _assert_consistent(engine, started["id"], task_id, winners[0])
    finally:
        for q in queues.values():
            q.put(None)
        for w in workers:
            w.join(timeout=30)
    print(f"winners over {RUNS} races: {outcomes}")
    assert sum(outcomes.values()) == RUNS
    with read_only(db) as conn:
        checked, problems = audit.verify(conn)
    assert not problems and checked >= RUNS * 2
    db.dispose()


def _assert_consistent(engine: Engine, instance_id: str, task_id: str, winner: str) -> None:
    with read_only(engine.db) as conn:
        inst = conn.execute(select(process_instance).where(process_instance.c.id == instance_id)).one()
        review = conn.execute(select(task).where(task.c.id == task_id)).one()
        waiting = conn.execute(
            select(message_subscription).where(message_subscription.c.instance_id == instance_id)
        ).all()
    assert inst.state == "completed"
    assert inst.revision == 1
    assert not waiting
    if winner == "complete":
        assert review.state == "completed"
        assert inst.variables.get("decision") == "approve" and "reason" not in inst.variables
    else:
        assert review.state == "cancelled"
        assert inst.variables.get("reason") == "duplicate" and "decision" not in inst.variables
    # The stored state loads and matches the projection.
    model = engine.model(inst.definition_id)
    workflow = engine.runtime.load(model, inst.snapshot)
    assert workflow.is_completed()


@pytest.mark.postgres
def test_two_users_claiming_one_task_at_once(pg_schema: tuple[str, str]) -> None:
    """Claims race on the instance's audit chain: one user gets the task, the other a 409."""
    import threading

    url, schema = pg_schema
    db = create_db_engine(url, schema=schema)
    migrate(db)
    engine = Engine(db)
    engine.deploy([("race.bpmn", RACE_MODEL)])
    for i in range(50):
        task_id = engine.start(key="race", business_key=f"C-{i}")["tasks"][0]["id"]
        barrier = threading.Barrier(2)
        outcome: dict[str, str] = {}

        def claim(
            user: str,
            task_id: str = task_id,
            barrier: threading.Barrier = barrier,
            outcome: dict[str, str] = outcome,
        ) -> None:
            barrier.wait()
            try:
                engine.claim(task_id, user)
                outcome[user] = "won"
            except CaseflowError as exc:
                outcome[user] = f"{exc.status}"

        threads = [threading.Thread(target=claim, args=(user,)) for user in ("zhang.san", "li.si")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [u for u, r in outcome.items() if r == "won"]
        assert len(winners) == 1 and sorted(outcome.values()) == ["409", "won"], outcome
        with read_only(db) as conn:
            assert conn.execute(select(task.c.assignee).where(task.c.id == task_id)).scalar() == winners[0]
    with read_only(db) as conn:
        checked, problems = audit.verify(conn)
    assert not problems and checked >= 100
    db.dispose()
