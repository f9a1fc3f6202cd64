"""The embedded default (no broker): the same signed, checked, size-limited and deduplicated envelopes go through
the in-process transport; and a buffered transfer whose time-to-live runs out is dead-lettered with an incident."""

from __future__ import annotations

from pathlib import Path

from adapters import envelope as env
from adapters.agencies import development_key
from adapters.amqp import Decision
from tests.conftest import ManualClock
from tests.link.support import (
    Broker,
    app_for,
    broker_fixture,  # noqa: F401 - the broker fixture
    deploy,
    incidents,
    instances,
    outbox_rows,
    processed,
    signed,
)


def test_without_a_broker_one_engine_plays_both_agencies_with_the_same_envelopes(
    db_url: tuple[str, str | None],
) -> None:
    app = app_for(db_url, None, ())  # serves every district agency
    assert app.link is None and app.scheduler.publish is not None
    deploy(app.engine, "clue_sender.bpmn", "clue_receiver.bpmn")
    app.engine.start(
        key="link_clue_sender",
        variables={
            "case_no": "HB-1",
            "summary": "占道经营",
            "sender_agency": "market_regulation",
            "note": "内部",
        },
    )
    while app.scheduler.run_once():
        pass
    [sender] = instances(app.engine, "link_clue_sender")
    [receiver] = instances(app.engine, "link_clue_receiver")
    assert sender.state == "completed" and sender.variables["decision"] == "受理"
    assert receiver.variables == {
        "case_no": "HB-1",
        "summary": "占道经营",
        "sender_agency": "market_regulation",
        "decision": "受理",
    }
    transfer, reply = outbox_rows(app.engine)
    assert (transfer.envelope["from"], transfer.envelope["to"]) == ("market_regulation", "urban_management")
    assert (reply.envelope["from"], reply.envelope["to"]) == ("urban_management", "market_regulation")
    assert processed(app.engine) == {transfer.message_id, reply.message_id}
    assert incidents(app.engine) == []
    # The same envelope again (a second relay, a retry) changes nothing.
    assert app.engine.receive({**transfer.envelope, "message_id": transfer.message_id})["duplicate"] is True


def test_without_a_broker_an_oversized_or_unaddressable_message_is_an_incident(tmp_path: Path) -> None:
    app = app_for(
        (f"sqlite:///{tmp_path / 'a.db'}", None), None, ("market_regulation",), max_message_bytes=2048
    )
    deploy(app.engine, "clue_sender.bpmn", "addressed_by_variable.bpmn")
    app.engine.start(
        key="link_clue_sender",
        variables={"case_no": "HB-1", "summary": "长" * 2000, "sender_agency": "market_regulation"},
    )
    app.engine.start(key="link_addressed", variables={"case_no": "HB-2", "target": "nobody"})
    assert app.scheduler.run_once() == 0
    assert app.scheduler.run_once() == 0  # failed rows are not retried
    assert [r.failed_at is not None for r in outbox_rows(app.engine)] == [True, True]
    assert sorted(i.details["reason"] for i in incidents(app.engine)) == ["too_large", "unknown_agency"]


def test_a_buffered_transfer_whose_time_to_live_runs_out_is_dead_lettered_with_an_incident(
    tmp_path: Path, broker: Broker, clock: ManualClock
) -> None:
    app = app_for((f"sqlite:///{tmp_path / 'b.db'}", None), broker, ("market_regulation",), clock=clock)
    assert app.link is not None
    deploy(app.engine, "clue_sender.bpmn")
    early = signed("link_clue_reply", sender="urban_management", to="market_regulation", case_no="HB-404")
    early["payload"] = {"case_no": "HB-404", "decision": "受理"}
    early = env.sign(
        {k: v for k, v in early.items() if k != "signature"}, development_key("urban_management")
    )
    assert app.link.handle("market_regulation", env.encode(early)) is Decision.ACK  # buffered: nobody waits
    assert app.scheduler.run_once() == 0
    clock.advance(days=2)
    assert app.scheduler.run_once() == 1
    queue = broker.names.dead_letter_queue("market_regulation")
    [(properties, body)] = broker.drain(queue)
    assert env.decode(body) == early and properties.message_id == early["message_id"]
    [item] = incidents(app.engine)
    assert item.error_type == "MessageExpired"
    assert item.details == {
        "message_id": early["message_id"],
        "name": "link_clue_reply",
        "from": "urban_management",
        "to": "market_regulation",
        "reason": "expired",
        "dead_letter_queue": queue,
    }
