"""Messages between instances through commands: throw -> outbox -> relay -> correlate.

Senders declare their payload (``caseflow:payload``) and the correlation key ``case_no``; receivers wait with
the same message and key. Correlation is strict: the key must be given and equal (never "first message wins").
"""

from __future__ import annotations

from typing import Any

import pytest

from engine.commands import Engine
from engine.errors import AmbiguousCorrelation, MessageNotCorrelated
from tests.conftest import ManualClock
from tests.constructs.support import (
    audit_trail,
    buffered,
    deploy,
    instance,
    instances_of,
    only_task,
    outbox_rows,
    stable,
    subscriptions,
    tasks,
)

SENDER = "线索移送_发送方.bpmn"
RECEIVER = "线索移送_接收方.bpmn"
SENDER_VARIABLES = {"clue_summary": "某酒店消防通道堵塞", "secret_note": "举报人手机号 139xxxx", "fine": 2500}


def _receiver(engine: Engine, case_no: str, business_key: str | None = None) -> str:
    started = engine.start(
        key="clue_receiver", business_key=business_key or f"R-{case_no}", variables={"case_no": case_no}
    )
    stable(engine, started["id"])
    assert started["activities"] == ["wait_clue"]
    assert subscriptions(engine, started["id"]) == [
        {
            "message_name": "移送线索",
            "element_id": "wait_clue",
            "correlation": {"case_no": case_no},
            "matchable": True,
        }
    ]
    return str(started["id"])


def _waiting(engine: Engine, instance_id: str) -> bool:
    return instance(engine, instance_id)["activities"] == ["wait_clue"]


def test_throw_relay_catch_only_the_matching_receiver_and_only_declared_variables(engine: Engine) -> None:
    deploy(engine, SENDER, RECEIVER)
    b1 = _receiver(engine, "AJ-001")
    b2 = _receiver(engine, "AJ-002")

    sender = engine.start(
        key="clue_sender", business_key="S-1", variables={"case_no": "AJ-001", **SENDER_VARIABLES}
    )
    sid = sender["id"]
    stable(engine, sid)
    assert outbox_rows(engine) == []  # nothing leaves before the throw is reached
    done = engine.complete(only_task(engine, sid)["id"], {"checked": True}, user="officer.1")
    stable(engine, sid)
    assert done["state"] == "completed"

    [row] = outbox_rows(engine)
    assert row["instance_id"] == sid and row["name"] == "移送线索" and row["sent_at"] is None
    assert row["envelope"]["correlation_keys"] == {"case_no": "AJ-001"}
    assert row["envelope"]["payload"] == {"case_no": "AJ-001", "summary": "某酒店消防通道堵塞"}
    assert row["envelope"]["from_element"] == "send_clue"

    assert engine.relay_outbox(engine.receive) == 1
    stable(engine, b1, b2, sid)
    assert outbox_rows(engine)[0]["sent_at"] is not None
    assert engine.relay_outbox(engine.receive) == 0  # sent rows are not sent again

    received = instance(engine, b1)
    assert received["activities"] == ["handle_clue"]
    # Trap 4: only the declared payload arrives; the sender's other variables stay with the sender.
    assert received["variables"] == {"case_no": "AJ-001", "summary": "某酒店消防通道堵塞"}
    assert "secret_note" not in received["variables"] and "fine" not in received["variables"]
    assert _waiting(engine, b2)
    assert subscriptions(engine, b2)[0]["correlation"] == {"case_no": "AJ-002"}
    [handle] = tasks(engine, candidate_group="receiver_officer")
    assert handle["instance_id"] == b1

    trail = audit_trail(engine, b1)
    assert [r["command"] for r in trail] == ["start", "correlate"]
    assert trail[1]["actor"] == f"instance:{sid}"
    assert trail[1]["details"]["message"] == "移送线索"
    assert trail[1]["details"]["message_id"] == row["message_id"]
    assert trail[1]["details"]["source"] == sid
    assert trail[1]["details"]["changed"] == {"summary": "某酒店消防通道堵塞"}
    assert [r["command"] for r in audit_trail(engine, sid)] == ["start", "complete"]
    assert [r["command"] for r in audit_trail(engine, b2)] == ["start"]


def test_send_task_carries_a_computed_payload(engine: Engine) -> None:
    deploy(engine, SENDER, RECEIVER)
    b = _receiver(engine, "AJ-010")
    sender = engine.start(key="clue_sender_task", variables={"case_no": "AJ-010", **SENDER_VARIABLES})
    stable(engine, sender["id"])
    assert sender["state"] == "completed"
    assert engine.relay_outbox(engine.receive) == 1
    stable(engine, b)
    variables = instance(engine, b)["variables"]
    assert variables == {"case_no": "AJ-010", "summary": "某酒店消防通道堵塞", "amount": 5000}


def test_message_with_the_wrong_key_is_not_delivered(engine: Engine) -> None:
    """Trap 3: the library accepted the first message whatever its key while nothing was correlated yet."""
    deploy(engine, SENDER, RECEIVER)
    b = _receiver(engine, "AJ-100")
    with pytest.raises(MessageNotCorrelated) as refused:
        engine.correlate("移送线索", correlation_keys={"case_no": "AJ-999"}, variables={"summary": "错的"})
    assert refused.value.status == 409
    with pytest.raises(MessageNotCorrelated):
        engine.correlate("移送线索", variables={"summary": "没有案号"})  # a declared key must be given
    with pytest.raises(MessageNotCorrelated):
        engine.correlate(
            "移送线索",
            correlation_keys={"case_no": "AJ-100"},
            business_key="R-other",
            variables={"summary": "业务号不符"},
        )
    stable(engine, b)
    assert _waiting(engine, b)
    assert [r["command"] for r in audit_trail(engine, b)] == ["start"]

    # Through the outbox: a sender with another case number reaches nobody; its message is buffered instead.
    stray = engine.start(key="clue_sender_task", variables={"case_no": "AJ-555", **SENDER_VARIABLES})
    stable(engine, stray["id"])
    assert engine.relay_outbox(engine.receive) == 1
    stable(engine, b)
    assert _waiting(engine, b)
    assert [m["correlation_keys"] for m in buffered(engine)] == [{"case_no": "AJ-555"}]

    result = engine.correlate(
        "移送线索", correlation_keys={"case_no": "AJ-100"}, variables={"summary": "对的"}
    )
    stable(engine, b)
    assert [r["id"] for r in result["instances"]] == [b]
    assert instance(engine, b)["variables"] == {"case_no": "AJ-100", "summary": "对的"}


def test_message_before_the_receiver_waits_is_buffered_and_delivered_later(
    engine: Engine, clock: ManualClock
) -> None:
    deploy(engine, SENDER, RECEIVER)
    early = engine.correlate(
        "移送线索",
        correlation_keys={"case_no": "AJ-200"},
        variables={"summary": "先到"},
        message_id="m-early",
        ttl_seconds=3600,
    )
    assert early == {"message_id": "m-early", "buffered": True, "instances": []}
    assert [m["message_id"] for m in buffered(engine)] == ["m-early"]
    # Without a time-to-live a message nobody waits for is refused.
    with pytest.raises(MessageNotCorrelated):
        engine.correlate("移送线索", correlation_keys={"case_no": "AJ-200"}, variables={}, ttl_seconds=0)

    # A receiver for another case does not take it.
    other = engine.start(key="clue_receiver", variables={"case_no": "AJ-201"})
    stable(engine, other["id"])
    assert other["activities"] == ["wait_clue"]
    assert len(buffered(engine)) == 1

    clock.advance(minutes=30)
    receiver = engine.start(key="clue_receiver", business_key="R-200", variables={"case_no": "AJ-200"})
    stable(engine, receiver["id"])
    assert receiver["activities"] == ["handle_clue"]
    assert receiver["variables"] == {"case_no": "AJ-200", "summary": "先到"}
    assert buffered(engine) == []
    # The buffered message was processed once: repeating it is a no-op.
    again = engine.correlate(
        "移送线索",
        correlation_keys={"case_no": "AJ-200"},
        variables={"summary": "重复"},
        message_id="m-early",
        ttl_seconds=3600,
    )
    stable(engine, receiver["id"])
    assert again["duplicate"] is True
    assert buffered(engine) == []
    assert instance(engine, receiver["id"])["variables"]["summary"] == "先到"


def test_buffered_message_expires_after_its_ttl(engine: Engine, clock: ManualClock) -> None:
    deploy(engine, SENDER, RECEIVER)
    engine.correlate(
        "移送线索",
        correlation_keys={"case_no": "AJ-300"},
        variables={"summary": "过期"},
        message_id="m-late",
        ttl_seconds=600,
    )
    clock.advance(minutes=11)
    receiver = engine.start(key="clue_receiver", variables={"case_no": "AJ-300"})
    stable(engine, receiver["id"])
    assert receiver["activities"] == ["wait_clue"]  # the message is past its time-to-live
    assert engine.expire_buffered() == 1
    assert buffered(engine) == []


def test_duplicate_message_id_is_a_no_op(engine: Engine) -> None:
    deploy(engine, SENDER, RECEIVER)
    first = _receiver(engine, "AJ-400")
    result = engine.correlate(
        "移送线索", correlation_keys={"case_no": "AJ-400"}, variables={"summary": "一"}, message_id="m-400"
    )
    stable(engine, first)
    assert [r["id"] for r in result["instances"]] == [first]
    revision = instance(engine, first)["revision"]

    # A second receiver with the same key now waits; the same message id must not reach it.
    second = _receiver(engine, "AJ-400")
    again = engine.correlate(
        "移送线索", correlation_keys={"case_no": "AJ-400"}, variables={"summary": "二"}, message_id="m-400"
    )
    stable(engine, first, second)
    assert again["duplicate"] is True
    assert [r["id"] for r in again["instances"]] == [first]
    assert _waiting(engine, second)
    assert instance(engine, first)["revision"] == revision
    assert instance(engine, first)["variables"]["summary"] == "一"

    # Relaying the same outbox envelope twice (a transport redelivery) is also a no-op.
    resend = engine.start(key="clue_sender_task", variables={"case_no": "AJ-400", **SENDER_VARIABLES})
    stable(engine, resend["id"])
    envelopes: list[dict[str, Any]] = []
    assert engine.relay_outbox(envelopes.append) == 1
    engine.receive(envelopes[0])
    stable(engine, second)
    assert instance(engine, second)["activities"] == ["handle_clue"]
    revision = instance(engine, second)["revision"]
    assert engine.receive(envelopes[0])["duplicate"] is True
    stable(engine, second)
    assert instance(engine, second)["revision"] == revision


def test_ambiguous_correlation_is_refused_unless_all(engine: Engine) -> None:
    deploy(engine, SENDER, RECEIVER)
    twins = [_receiver(engine, "AJ-500", "R-A"), _receiver(engine, "AJ-500", "R-B")]
    bystander = _receiver(engine, "AJ-501")
    with pytest.raises(AmbiguousCorrelation) as refused:
        engine.correlate("移送线索", correlation_keys={"case_no": "AJ-500"}, variables={"summary": "两份"})
    assert refused.value.status == 409
    assert refused.value.details["matches"] == 2
    stable(engine, *twins)
    assert all(_waiting(engine, t) for t in twins)

    # A business key narrows it to one.
    narrowed = engine.correlate(
        "移送线索", business_key="R-B", correlation_keys={"case_no": "AJ-500"}, variables={"summary": "只给B"}
    )
    stable(engine, *twins)
    assert [r["id"] for r in narrowed["instances"]] == [twins[1]]
    assert _waiting(engine, twins[0])

    more = [_receiver(engine, "AJ-500", "R-C"), _receiver(engine, "AJ-500", "R-D")]
    result = engine.correlate(
        "移送线索", correlation_keys={"case_no": "AJ-500"}, variables={"summary": "群发"}, all=True
    )
    stable(engine, *twins, *more, bystander)
    assert sorted(r["id"] for r in result["instances"]) == sorted([twins[0], *more])
    assert instance(engine, twins[1])["variables"]["summary"] == "只给B"
    assert instance(engine, more[0])["variables"]["summary"] == "群发"
    assert all(instance(engine, t)["activities"] == ["handle_clue"] for t in twins + more)
    assert _waiting(engine, bystander)


# --------------------------------------------------------------------------------------- message start events
def test_correlate_starts_a_process_with_a_message_start_event(engine: Engine) -> None:
    deploy(engine, "举报受理_消息启动.bpmn", RECEIVER)
    result = engine.correlate(
        "举报线索",
        business_key="JB-1",
        variables={"reporter_alias": "热心市民", "content": "夜间施工扰民"},
        message_id="report-1",
    )
    [started] = result["instances"]
    iid = started["id"]
    stable(engine, iid)
    assert started["definition_key"] == "report_intake"
    assert started["business_key"] == "JB-1"
    assert started["activities"] == ["triage"]
    assert started["variables"] == {"reporter_alias": "热心市民", "content": "夜间施工扰民"}
    [triage] = tasks(engine, candidate_group="complaint_desk")
    assert triage["instance_id"] == iid
    # The same message again starts nothing new.
    assert engine.correlate("举报线索", variables={"content": "再发一次"}, message_id="report-1")["duplicate"]
    assert len(instances_of(engine, "report_intake")) == 1
    # Another message (another id) starts another case.
    another = engine.correlate("举报线索", variables={"reporter_alias": "匿名", "content": "占道经营"})
    stable(engine, another["instances"][0]["id"])
    assert len(instances_of(engine, "report_intake")) == 2
    done = engine.complete(triage["id"], {"category": "噪声"}, user="desk.1")
    stable(engine, iid)
    assert done["state"] == "completed"
    assert [r["command"] for r in audit_trail(engine, iid)] == ["start", "complete"]


def test_a_thrown_message_starts_another_process_through_the_outbox(engine: Engine) -> None:
    deploy(engine, "举报受理_消息启动.bpmn")
    deploy(engine, "举报转交.bpmn")
    forwarder = engine.start(
        key="report_forwarder",
        business_key="ZJ-1",
        variables={"reporter_alias": "老王", "report_text": "河道排污", "reporter_phone": "13800000000"},
    )
    stable(engine, forwarder["id"])
    assert forwarder["state"] == "completed"
    assert instances_of(engine, "report_intake") == []  # nothing starts before the relay

    assert engine.relay_outbox(engine.receive) == 1
    [intake] = instances_of(engine, "report_intake")
    stable(engine, intake["id"])
    detail = instance(engine, intake["id"])
    assert detail["activities"] == ["triage"]
    assert detail["variables"] == {"reporter_alias": "老王", "content": "河道排污"}  # not the phone number
    trail = audit_trail(engine, intake["id"])
    assert trail[0]["command"] == "start"
    assert trail[0]["actor"] == f"instance:{forwarder['id']}"
