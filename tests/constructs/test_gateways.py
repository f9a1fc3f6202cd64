"""Gateways driven through commands: exclusive, inclusive, parallel and event-based.

Every step is a command (each loads the instance from the database and saves it again); after each step the
stored snapshot must load and dump to the same document.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.commands import Engine
from engine.errors import MessageNotCorrelated
from tests.conftest import ManualClock
from tests.constructs.support import (
    audit_trail,
    deploy,
    instance,
    only_task,
    stable,
    subscriptions,
    tasks,
    timers,
)

EXCLUSIVE = "排他网关_罚款分流.bpmn"


# ------------------------------------------------------------------------------------------------ exclusive
@pytest.mark.parametrize(
    ("amount", "first_task", "group"),
    [(5000, "head_review", "head"), (0, "invalid_amount", "window"), (500, "officer_review", "officer")],
)
def test_exclusive_gateway_routes_on_juel_plain_and_default(
    engine: Engine, amount: int, first_task: str, group: str
) -> None:
    deploy(engine, EXCLUSIVE)
    started = engine.start(key="penalty_routing", business_key=f"FK-{amount}", variables={"amount": amount})
    stable(engine, started["id"])
    assert started["activities"] == [first_task]
    [open_task] = tasks(engine, candidate_group=group)
    assert open_task["element_id"] == first_task
    assert open_task["instance_id"] == started["id"]


def test_exclusive_gateway_juel_negation_and_default_at_the_second_gateway(engine: Engine) -> None:
    deploy(engine, EXCLUSIVE)
    rejected = engine.start(key="penalty_routing", variables={"amount": 5000})
    accepted = engine.start(key="penalty_routing", variables={"amount": 800})
    stable(engine, rejected["id"], accepted["id"])

    head = only_task(engine, rejected["id"], "head_review")
    done = engine.complete(head["id"], {"approved": False}, user="li.head")
    stable(engine, rejected["id"])
    assert done["state"] == "completed"
    assert done["variables"]["outcome"] == "rejected"  # #{!approved} was true

    officer = only_task(engine, accepted["id"], "officer_review")
    done = engine.complete(officer["id"], {"approved": True}, user="zhang.officer")
    stable(engine, accepted["id"])
    assert done["state"] == "completed"
    assert done["variables"]["outcome"] == "accepted"  # default flow

    trail = audit_trail(engine, rejected["id"])
    assert [r["command"] for r in trail] == ["start", "complete"]
    assert trail[1]["actor"] == "li.head" and trail[1]["element_id"] == "head_review"
    assert trail[1]["details"]["changed"]["approved"] is False
    assert trail[1]["details"]["state"] == "completed"


def test_exclusive_gateway_without_the_variable_becomes_an_incident(engine: Engine) -> None:
    deploy(engine, EXCLUSIVE)
    started = engine.start(key="penalty_routing", variables={"note": "金额未填"})
    stable(engine, started["id"])
    assert started["state"] == "incident"
    assert started["incident"]["element_id"] == "gw_amount"
    assert "amount" in started["incident"]["message"]


# ------------------------------------------------------------------------------------------------ inclusive
def test_inclusive_gateway_takes_every_true_branch_and_joins_all_of_them(engine: Engine) -> None:
    deploy(engine, "inclusive_gateway.bpmn")
    started = engine.start(
        key="joint_inspection",
        business_key="JC-1",
        variables={"needs_police": True, "needs_fire": False, "amount": 20000},
    )
    iid = started["id"]
    stable(engine, iid)
    assert started["activities"] == ["finance_check", "police_check"]
    assert {t["element_id"] for t in tasks(engine, instance_id=iid)} == {"police_check", "finance_check"}

    police = only_task(engine, iid, "police_check")
    after_police = engine.complete(police["id"], {"police_ok": True}, user="police.1")
    stable(engine, iid)
    # The join waits for the finance branch, which was also taken.
    assert "summary" not in after_police["activities"]
    assert [t["element_id"] for t in tasks(engine, instance_id=iid)] == ["finance_check"]

    finance = only_task(engine, iid, "finance_check")
    after_finance = engine.complete(finance["id"], {"finance_ok": True}, user="finance.1")
    stable(engine, iid)
    assert after_finance["activities"] == ["summary"]
    summary = only_task(engine, iid, "summary")
    done = engine.complete(summary["id"], {}, user="officer.1")
    stable(engine, iid)
    assert done["state"] == "completed"
    assert done["variables"]["police_ok"] is True and done["variables"]["finance_ok"] is True


def test_inclusive_gateway_three_branches_and_default(engine: Engine) -> None:
    deploy(engine, "inclusive_gateway.bpmn")
    everything = engine.start(
        key="joint_inspection", variables={"needs_police": True, "needs_fire": True, "amount": 10000}
    )
    nothing = engine.start(
        key="joint_inspection", variables={"needs_police": False, "needs_fire": False, "amount": 10}
    )
    stable(engine, everything["id"], nothing["id"])
    assert everything["activities"] == ["finance_check", "fire_check", "police_check"]
    assert nothing["activities"] == ["general_check"]

    for element in ("fire_check", "police_check"):
        engine.complete(only_task(engine, everything["id"], element)["id"], {})
        stable(engine, everything["id"])
        assert "summary" not in instance(engine, everything["id"])["activities"]
    engine.complete(only_task(engine, everything["id"], "finance_check")["id"], {})
    stable(engine, everything["id"])
    assert instance(engine, everything["id"])["activities"] == ["summary"]

    engine.complete(only_task(engine, nothing["id"], "general_check")["id"], {})
    stable(engine, nothing["id"])
    assert instance(engine, nothing["id"])["activities"] == ["summary"]


# ------------------------------------------------------------------------------------------------- parallel
def test_parallel_gateway_needs_both_tasks(engine: Engine) -> None:
    deploy(engine, "parallel_gateway.bpmn")
    started = engine.start(key="parallel_review", business_key="BX-7")
    iid = started["id"]
    stable(engine, iid)
    assert started["activities"] == ["finance_opinion", "legal_opinion"]
    [legal] = tasks(engine, candidate_group="legal")
    [finance] = tasks(engine, candidate_group="finance")

    # Completing the second branch first: the join still waits for the first one.
    after = engine.complete(finance["id"], {"finance_opinion": "同意"}, user="cai.wu")
    stable(engine, iid)
    assert after["state"] == "running"
    assert after["activities"] == ["join", "legal_opinion"]  # the join holds the finance token
    assert tasks(engine, candidate_group="head") == []

    after = engine.complete(legal["id"], {"legal_opinion": "合法"}, user="fa.zhi")
    stable(engine, iid)
    assert after["activities"] == ["decide"]
    [decide] = tasks(engine, candidate_group="head")
    done = engine.complete(decide["id"], {"decision": "处罚"}, user="head.1")
    stable(engine, iid)
    assert done["state"] == "completed"
    assert done["variables"] == {"finance_opinion": "同意", "legal_opinion": "合法", "decision": "处罚"}
    closed = {t["element_id"]: t["completed_by"] for t in tasks(engine, instance_id=iid, state="completed")}
    assert closed == {"finance_opinion": "cai.wu", "legal_opinion": "fa.zhi", "decide": "head.1"}


# ---------------------------------------------------------------------------------------------- event-based
def test_event_based_gateway_message_wins(engine: Engine, clock: ManualClock) -> None:
    deploy(engine, "event_based_gateway.bpmn")
    started = engine.start(key="await_supplement", business_key="BZ-1", variables={"case_no": "BZ-1"})
    other = engine.start(key="await_supplement", business_key="BZ-2", variables={"case_no": "BZ-2"})
    iid = started["id"]
    stable(engine, iid, other["id"])
    assert [s["message_name"] for s in subscriptions(engine, iid)] == ["补正材料"]
    assert subscriptions(engine, iid)[0]["correlation"] == {"case_no": "BZ-1"}
    [deadline] = timers(engine, iid)
    assert deadline["element_id"] == "deadline"
    assert deadline["due_at"] == clock() + timedelta(hours=2)

    clock.advance(minutes=30)
    assert engine.fire_due_timers() == 0
    result = engine.correlate(
        "补正材料", correlation_keys={"case_no": "BZ-1"}, variables={"materials": ["身份证复印件"]}
    )
    stable(engine, iid)
    [delivered] = result["instances"]
    assert delivered["id"] == iid
    assert delivered["activities"] == ["review_supplement"]
    assert delivered["variables"]["materials"] == ["身份证复印件"]
    # The timer branch is gone: no timer row, and the deadline passing changes nothing.
    assert timers(engine, iid) == []
    assert subscriptions(engine, iid) == []
    clock.advance(hours=3)
    assert engine.fire_due_timers() == 1  # only the other instance's deadline
    stable(engine, iid, other["id"])
    assert instance(engine, iid)["activities"] == ["review_supplement"]
    assert instance(engine, other["id"])["activities"] == ["handle_timeout"]


def test_event_based_gateway_timer_wins(engine: Engine, clock: ManualClock) -> None:
    deploy(engine, "event_based_gateway.bpmn")
    started = engine.start(key="await_supplement", business_key="BZ-9", variables={"case_no": "BZ-9"})
    iid = started["id"]
    stable(engine, iid)
    clock.advance(hours=1, minutes=59)
    assert engine.fire_due_timers() == 0
    stable(engine, iid)
    clock.advance(minutes=1)
    assert engine.fire_due_timers() == 1
    stable(engine, iid)
    assert instance(engine, iid)["activities"] == ["handle_timeout"]
    assert subscriptions(engine, iid) == []
    # The message branch was withdrawn with the gateway: a late message finds nobody.
    with pytest.raises(MessageNotCorrelated):
        engine.correlate("补正材料", correlation_keys={"case_no": "BZ-9"}, variables={"materials": []})
    assert [r["command"] for r in audit_trail(engine, iid)] == ["start", "timer"]
    done = engine.complete(only_task(engine, iid, "handle_timeout")["id"], {"closed": True}, user="officer")
    stable(engine, iid)
    assert done["state"] == "completed"


def test_two_timers_on_one_event_based_gateway_fire_at_their_own_due_times(
    engine: Engine, clock: ManualClock
) -> None:
    """Trap 8: the library gave both timers of one gateway the due time of the first one computed."""
    deploy(engine, "event_based_gateway.bpmn")
    t0 = clock()
    quick = engine.start(key="reminder_escalation", variables={"remind_every": "PT1H"})
    slow = engine.start(key="reminder_escalation", variables={"remind_every": "PT5H"})
    stable(engine, quick["id"], slow["id"])
    assert [(t["element_id"], t["due_at"]) for t in timers(engine, quick["id"])] == [
        ("remind_after", t0 + timedelta(hours=1)),
        ("escalate_after", t0 + timedelta(hours=3)),
    ]
    assert [(t["element_id"], t["due_at"]) for t in timers(engine, slow["id"])] == [
        ("escalate_after", t0 + timedelta(hours=3)),
        ("remind_after", t0 + timedelta(hours=5)),
    ]

    clock.advance(minutes=59)
    assert engine.fire_due_timers() == 0
    clock.advance(minutes=1)
    assert engine.fire_due_timers() == 1  # the one-hour reminder of `quick` only
    stable(engine, quick["id"], slow["id"])
    assert instance(engine, quick["id"])["activities"] == ["remind"]
    assert timers(engine, quick["id"]) == []
    assert tasks(engine, instance_id=slow["id"]) == []
    assert len(timers(engine, slow["id"])) == 2

    # Reminding loops back to the gateway: both timers are armed again from now.
    clock.advance(minutes=30)
    engine.complete(only_task(engine, quick["id"], "remind")["id"], {"reminded": 1})
    stable(engine, quick["id"])
    assert [(t["element_id"], t["due_at"]) for t in timers(engine, quick["id"])] == [
        ("remind_after", t0 + timedelta(hours=2, minutes=30)),
        ("escalate_after", t0 + timedelta(hours=4, minutes=30)),
    ]

    clock.set(t0 + timedelta(hours=2, minutes=29))
    assert engine.fire_due_timers() == 0
    clock.set(t0 + timedelta(hours=2, minutes=30))
    assert engine.fire_due_timers() == 1  # `quick` reminds again, not at the old 3h of its first round
    stable(engine, quick["id"], slow["id"])
    assert [t["element_id"] for t in tasks(engine, instance_id=quick["id"])] == ["remind"]

    clock.set(t0 + timedelta(hours=3))
    assert engine.fire_due_timers() == 1  # the three-hour escalation of `slow` (its reminder is at 5h)
    stable(engine, quick["id"], slow["id"])
    assert instance(engine, slow["id"])["activities"] == ["escalate"]
    assert timers(engine, slow["id"]) == []
    [escalation] = tasks(engine, candidate_group="head")
    assert escalation["instance_id"] == slow["id"]
    assert [t["element_id"] for t in tasks(engine, instance_id=quick["id"])] == ["remind"]
    assert [r["command"] for r in audit_trail(engine, slow["id"])] == ["start", "timer"]
