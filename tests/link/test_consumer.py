"""The consumer against the real RabbitMQ: duplicates handled once; forged, misattributed, schema-violating,
oversized and non-JSON messages each dead-lettered with an incident while the consumer keeps going."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from adapters import envelope as env
from adapters.agencies import development_key
from engine.api.main import create_app
from tests.link.support import (
    Broker,
    app_for,
    broker_fixture,  # noqa: F401 - the broker fixture
    count_instances,
    deploy,
    incidents,
    processed,
    signed,
    wait_for,
)

RECEIVER = ("urban_management",)


def _receiving_app(db_url: tuple[str, str | None], broker: Broker, consumers: int = 4) -> Any:
    app = app_for(db_url, broker, RECEIVER, link_consumers=consumers)
    assert app.link is not None
    deploy(app.engine, "clue_receiver.bpmn")
    app.link.start(relay=False, consume=True)
    wait_for(app.link.consumer.connected.is_set, 15, "the consumer to connect")
    return app


def test_the_same_envelope_delivered_twice_is_handled_once(
    db_url: tuple[str, str | None], broker: Broker
) -> None:
    app = _receiving_app(db_url, broker, consumers=1)  # one consumer keeps the order: the sentinel comes last
    try:
        body = env.encode(signed(case_no="HB-7"))
        broker.publish("urban_management", body)
        broker.publish("urban_management", body)  # a redelivery, or the sender's relay publishing again
        sentinel = signed(case_no="HB-8")
        broker.publish("urban_management", env.encode(sentinel))
        wait_for(lambda: sentinel["message_id"] in processed(app.engine), 30, "the sentinel to be handled")
    finally:
        app.link.stop()
    assert count_instances(app.engine, "link_clue_receiver") == 2  # HB-7 once, HB-8 once
    assert len(processed(app.engine)) == 2
    assert broker.count(broker.names.dead_letter_queue("urban_management")) == 0
    assert broker.count(broker.names.inbox("urban_management")) == 0
    assert incidents(app.engine) == []


def test_bad_messages_go_to_the_dead_letter_queue_with_an_incident_and_the_consumer_keeps_going(
    tmp_path: Any, broker: Broker
) -> None:
    app = _receiving_app((f"sqlite:///{tmp_path / 'b.db'}", None), broker)
    forged = {**signed(case_no="HB-1"), "signature": "0" * 64}
    wrong_from = signed(case_no="HB-2", sender="court", key_of="market_regulation")
    no_payload = {k: v for k, v in signed(case_no="HB-3").items() if k != "payload"}
    no_payload = env.sign(no_payload, development_key("market_regulation"))
    huge = signed(case_no="HB-4", payload={"case_no": "HB-4", "attachment": "x" * (10 * 1024 * 1024)})
    bad = [
        ("bad_signature", env.encode(forged), forged["message_id"]),
        ("wrong_sender", env.encode(wrong_from), wrong_from["message_id"]),
        ("schema", env.encode(no_payload), no_payload["message_id"]),
        ("too_large", env.encode(huge), None),
        ("not_json", b"\x00\xff this is not JSON", None),
    ]
    good = signed(case_no="HB-5")
    try:
        for _, body, _ in bad:
            broker.publish("urban_management", body)
        broker.publish("urban_management", env.encode(good))
        wait_for(
            lambda: good["message_id"] in processed(app.engine), 30, "the good message after the bad ones"
        )
        dead_queue = broker.names.dead_letter_queue("urban_management")
        wait_for(lambda: broker.count(dead_queue) == len(bad), 15, "the dead letters")
        assert app.link.consumer.connected.is_set()  # still consuming
        # ... and still handling: one more good message after them.
        later = signed(case_no="HB-6")
        broker.publish("urban_management", env.encode(later))
        wait_for(
            lambda: later["message_id"] in processed(app.engine), 30, "a good message after the dead letters"
        )
    finally:
        app.link.stop()

    dead = broker.drain(dead_queue)
    assert sorted(len(body) for _, body in dead) == sorted(
        len(body) for _, body, _ in bad
    )  # unchanged bodies
    assert count_instances(app.engine, "link_clue_receiver") == 2
    # Four consumers handle messages concurrently, so the incidents come in any order.
    by_reason = {i.details["reason"]: i for i in incidents(app.engine)}
    assert sorted(by_reason) == sorted(reason for reason, _, _ in bad)
    refused = [by_reason[reason] for reason, _, _ in bad]
    for item, (reason, _, message_id) in zip(refused, bad, strict=True):
        assert item.error_type == "MessageRejected" and item.instance_id is None
        assert item.details["dead_letter_queue"] == dead_queue
        assert item.details["to"] == "urban_management"
        assert item.details["message_id"] == message_id
        assert reason in item.message
    assert refused[1].details["from"] == "court"

    listed = TestClient(create_app(app.engine)).get("/api/incidents").json()
    assert sorted(i["details"]["reason"] for i in listed) == sorted(reason for reason, _, _ in bad)
    [listed_forged] = [i for i in listed if i["details"]["reason"] == "bad_signature"]
    assert listed_forged["details"]["message_id"] == forged["message_id"]
