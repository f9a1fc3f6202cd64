"""The smallest path through the engine: deploy, start, claim, complete; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from engine.commands import Engine
from engine.errors import TaskClaimed, TaskNotOpen
from tests.bpmn_util import one_user_task


def test_start_claim_complete(engine: Engine) -> None:
    deployed = engine.deploy([("one.bpmn", one_user_task())])
    assert deployed["definitions"][0]["key"] == "one_task"
    started = engine.start(key="one_task", business_key="CASE-1", variables={"amount": 5})
    assert started["state"] == "running"
    assert started["activities"] == ["review"]
    from engine.store import queries
    from engine.store.db import read_only

    with read_only(engine.db) as conn:
        tasks = queries.tasks(conn, candidate_group="officer")
    assert [t["element_id"] for t in tasks] == ["review"]
    task_id = tasks[0]["id"]
    engine.claim(task_id, "zhang.san")
    with pytest.raises(TaskClaimed):
        engine.claim(task_id, "li.si")
    done = engine.complete(task_id, {"approved": True}, user="zhang.san")
    assert done["state"] == "completed"
    assert done["variables"] == {"amount": 5, "approved": True}
    with pytest.raises(TaskNotOpen):
        engine.complete(task_id, {})


def test_redeploy_identical_creates_nothing(engine: Engine) -> None:
    first = engine.deploy([("one.bpmn", one_user_task())])
    again = engine.deploy([("one.bpmn", one_user_task())])
    assert again["created"] is False
    assert again["definitions"] == first["definitions"]
    changed = engine.deploy([("one.bpmn", one_user_task(groups="head"))])
    assert changed["definitions"][0]["version"] == 2


def test_a_fresh_engine_compiles_a_deployment_once_for_all_its_processes(engine: Engine) -> None:
    from tests.bpmn_util import chain, definitions

    def review(pid: str) -> str:
        start, task, end = f"{pid}_start", f"{pid}_review", f"{pid}_end"
        return f"""<bpmn:process id="{pid}" isExecutable="true">
  <bpmn:startEvent id="{start}"/><bpmn:userTask id="{task}" name="审核"/><bpmn:endEvent id="{end}"/>
  {chain(start, task, end)}
</bpmn:process>"""

    deployed = engine.deploy([("two.bpmn", definitions(review("first"), review("second")))])
    ids = {d["key"]: d["id"] for d in deployed["definitions"]}
    fresh = Engine(engine.db, engine.clock, engine.config)  # another process: nothing cached yet
    assert fresh.models.get(ids["first"]) is None
    fresh.model(ids["first"])
    assert fresh.models.get(ids["second"]) is not None
    assert fresh.start(key="second")["state"] == "running"
