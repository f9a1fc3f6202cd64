"""User tasks through commands: lanes and candidate groups, candidate users, assignee, due dates, claiming."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.commands import Engine
from engine.errors import NotFound, TaskClaimed, TaskNotOpen
from tests.conftest import ManualClock
from tests.constructs.support import audit_trail, deploy, only_task, stable, tasks

PERMIT = "许可申请_泳道.bpmn"
SIGN_BY = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


def _start(engine: Engine, business_key: str, *, urgent: bool = False) -> str:
    deploy(engine, PERMIT)
    started = engine.start(
        key="permit_application",
        business_key=business_key,
        actor="portal",
        variables={"urgent": urgent, "signer": "li.juzhang", "sign_by": SIGN_BY},
    )
    stable(engine, started["id"])
    assert started["activities"] == ["accept"]
    return str(started["id"])


def _due(task: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(task["due_at"]))


def test_lane_and_candidate_groups_and_iso_due_date(engine: Engine, clock: ManualClock) -> None:
    iid = _start(engine, "XK-1")
    accept = only_task(engine, iid)
    assert accept["lane"] == "窗口受理"
    # The lane name is a candidate group, besides the comma list of camunda:candidateGroups.
    assert accept["candidate_groups"] == ["窗口受理", "window_staff", "duty_leader"]
    assert accept["form_key"] == "forms/accept"
    assert _due(accept) == clock() + timedelta(hours=4)
    for group in ("窗口受理", "window_staff", "duty_leader"):
        assert [t["id"] for t in tasks(engine, candidate_group=group)] == [accept["id"]]
    assert tasks(engine, candidate_group="法制审核") == []
    assert tasks(engine, candidate_group="window") == []


def test_candidate_users_and_juel_due_dates(engine: Engine, clock: ManualClock) -> None:
    urgent = _start(engine, "XK-2", urgent=True)
    calm = engine.start(
        key="permit_application",
        business_key="XK-3",
        variables={"urgent": False, "signer": "li.juzhang", "sign_by": SIGN_BY},
    )["id"]
    stable(engine, calm)
    clock.advance(minutes=10)
    for iid in (urgent, calm):
        engine.complete(only_task(engine, iid)["id"], {"accepted": True}, user="window.1")
        stable(engine, iid)

    review = only_task(engine, urgent, "legal_review")
    assert review["lane"] == "法制审核"
    assert review["candidate_groups"] == ["法制审核"]
    assert review["candidate_users"] == ["wang.wu", "zhao.liu"]
    # ${urgent ? 'PT2H' : 'P3D'} is evaluated when the task is created, against the injected clock.
    assert _due(review) == clock() + timedelta(hours=2)
    assert _due(only_task(engine, calm, "legal_review")) == clock() + timedelta(days=3)
    by_user = tasks(engine, candidate_user="zhao.liu")
    assert {t["instance_id"] for t in by_user} == {urgent, calm}
    assert tasks(engine, candidate_user="li.juzhang") == []

    # The due date does not move when the instance is loaded and saved again later.
    clock.advance(hours=1)
    engine.claim(review["id"], "wang.wu")
    stable(engine, urgent)
    assert _due(only_task(engine, urgent, "legal_review")) == clock() + timedelta(hours=1)


def test_assignee_expression_static_assignee_and_expression_due_date(engine: Engine) -> None:
    iid = _start(engine, "XK-4")
    engine.complete(only_task(engine, iid)["id"], {}, user="window.1")
    engine.complete(only_task(engine, iid)["id"], {"legal_ok": True}, user="wang.wu")
    stable(engine, iid)
    sign = only_task(engine, iid, "sign")
    assert sign["assignee"] == "li.juzhang"  # camunda:assignee="${signer}"
    assert sign["priority"] == 80
    assert _due(sign) == SIGN_BY  # camunda:dueDate="#{sign_by}" (a date-time variable)
    assert [t["id"] for t in tasks(engine, assignee="li.juzhang")] == [sign["id"]]
    assert sign["candidate_groups"] == ["领导签批"]

    # Someone else cannot complete the assignee's task, nor claim it.
    with pytest.raises(TaskClaimed) as refused:
        engine.complete(sign["id"], {"signed": True}, user="zhang.san")
    assert refused.value.status == 409
    with pytest.raises(TaskClaimed):
        engine.claim(sign["id"], "zhang.san")
    stable(engine, iid)
    assert only_task(engine, iid, "sign")["assignee"] == "li.juzhang"

    engine.complete(sign["id"], {"signed": True}, user="li.juzhang")
    stable(engine, iid)
    archive = only_task(engine, iid, "archive")
    assert archive["assignee"] == "chen.archivist"
    assert archive["due_at"] is None
    done = engine.complete(archive["id"], {}, user="chen.archivist")
    stable(engine, iid)
    assert done["state"] == "completed"
    assert done["variables"]["signed"] is True
    assert tasks(engine, instance_id=iid) == []
    closed = tasks(engine, instance_id=iid, state="completed")
    assert [t["completed_by"] for t in closed if t["element_id"] == "sign"] == ["li.juzhang"]


def test_claim_unclaim_assign_and_conflicts(engine: Engine) -> None:
    iid = _start(engine, "XK-5")
    accept = only_task(engine, iid)
    assert accept["assignee"] is None

    engine.claim(accept["id"], "window.1")
    stable(engine, iid)
    assert [t["id"] for t in tasks(engine, assignee="window.1")] == [accept["id"]]
    engine.claim(accept["id"], "window.1")  # claiming again by the same user is harmless
    with pytest.raises(TaskClaimed) as taken:
        engine.claim(accept["id"], "window.2")
    assert taken.value.status == 409
    assert taken.value.details["assignee"] == "window.1"
    with pytest.raises(TaskClaimed):
        engine.complete(accept["id"], {"accepted": True}, user="window.2")

    engine.unclaim(accept["id"], actor="window.1")
    stable(engine, iid)
    assert tasks(engine, assignee="window.1") == []
    engine.claim(accept["id"], "window.2")
    engine.assign(accept["id"], "window.3", actor="duty_leader.1")
    stable(engine, iid)
    assert only_task(engine, iid)["assignee"] == "window.3"
    with pytest.raises(TaskClaimed):
        engine.complete(accept["id"], {}, user="window.2")

    done = engine.complete(accept["id"], {"accepted": True}, user="window.3")
    stable(engine, iid)
    assert done["activities"] == ["legal_review"]
    with pytest.raises(TaskNotOpen) as closed:
        engine.claim(accept["id"], "window.1")
    assert closed.value.status == 409
    with pytest.raises(TaskNotOpen):
        engine.complete(accept["id"], {})
    with pytest.raises(NotFound):
        engine.claim("00000000-0000-0000-0000-000000000000", "window.1")

    trail = audit_trail(engine, iid)
    assert [(r["command"], r["actor"]) for r in trail] == [
        ("start", "portal"),
        ("claim", "window.1"),
        ("claim", "window.1"),
        ("unclaim", "window.1"),
        ("claim", "window.2"),
        ("assign", "duty_leader.1"),
        ("complete", "window.3"),
    ]
    assert trail[5]["details"] == {"assignee": "window.3", "previous": "window.2"}
    assert all(r["task_id"] == accept["id"] for r in trail[1:])
    # The records chain: each hash differs and the sequence has no gaps.
    assert [r["seq"] for r in trail] == list(range(1, len(trail) + 1))
    assert len({r["hash"] for r in trail}) == len(trail)


def test_list_tasks_by_instance_group_and_assignee_across_instances(engine: Engine) -> None:
    first = _start(engine, "XK-6")
    second = engine.start(
        key="permit_application",
        business_key="XK-7",
        variables={"urgent": False, "signer": "wang.fuju", "sign_by": SIGN_BY},
    )["id"]
    stable(engine, second)
    assert {t["instance_id"] for t in tasks(engine, candidate_group="窗口受理")} == {first, second}
    [only_first] = tasks(engine, instance_id=first)
    engine.claim(only_first["id"], "window.9")
    stable(engine, first)
    assert [t["instance_id"] for t in tasks(engine, assignee="window.9")] == [first]
    # Claimed tasks stay visible to their groups (the assignee column says who holds them).
    assert len(tasks(engine, candidate_group="window_staff")) == 2
