"""The outbox relay against the real RabbitMQ: publisher confirms, sent only after the confirm, nothing lost while
the broker is unreachable, concurrent relays publish each row once, unaddressable rows become incidents."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from adapters import amqp
from adapters import envelope as env
from adapters.agencies import Keyring, load
from tests.conftest import ManualClock
from tests.link.support import (
    Broker,
    app_for,
    broker_fixture,  # noqa: F401 - the broker fixture
    deploy,
    incidents,
    outbox_rows,
    wait_for,
)

SENDER = ("market_regulation",)


def _transfer(app: Any, case_no: str = "HB-1") -> str:
    started = app.engine.start(
        key="link_clue_sender",
        business_key=case_no,
        variables={
            "case_no": case_no,
            "summary": "占道经营",
            "sender_agency": "market_regulation",
            "note": "内部",
        },
    )
    return str(started["id"])


class RefusingPublisher(amqp.Publisher):
    """Connected, but every publish is negatively confirmed."""

    def publish_many(
        self, exchange: str, items: list[tuple[str, bytes, str]]
    ) -> list[amqp.NotAccepted | None]:
        return [amqp.NotAccepted("the broker refused the message (negative confirm)") for _ in items]


def test_relay_publishes_signed_persistent_envelopes_and_marks_them_sent_only_after_the_confirm(
    db_url: tuple[str, str | None], broker: Broker, clock: ManualClock
) -> None:
    app = app_for(db_url, broker, SENDER, clock=clock)
    assert app.link is not None and app.scheduler.publish is None  # with a broker the link relays
    deploy(app.engine, "clue_sender.bpmn")
    instance_id = _transfer(app)
    [row] = outbox_rows(app.engine)
    assert row.target == "urban_management" and row.sent_at is None
    assert row.envelope["from"] == "market_regulation" and row.envelope["to"] == "urban_management"

    # No confirm, no mark: the row stays unsent and waits (backoff) before the next attempt.
    with pytest.raises(amqp.NotAccepted):
        app.link.relay_once(RefusingPublisher(broker.url))
    [row] = outbox_rows(app.engine)
    assert row.sent_at is None and row.attempts == 1 and "negative confirm" in row.last_error
    assert row.next_attempt_at is not None
    publisher = amqp.Publisher(broker.url)
    assert app.link.relay_once(publisher) == 0  # not due yet
    clock.advance(seconds=60)
    assert app.link.relay_once(publisher) == 1
    [row] = outbox_rows(app.engine)
    assert row.sent_at is not None and row.attempts == 2
    assert app.link.relay_once(publisher) == 0  # sent once
    publisher.close()

    [(properties, body)] = broker.drain(broker.names.inbox("urban_management"))
    assert properties.delivery_mode == 2 and properties.message_id == row.message_id
    received = env.check(body, Keyring(load()).get, routed_to="urban_management")
    assert received["message_id"] == row.message_id and received["name"] == "link_clue_transfer"
    assert received["payload"] == {
        "case_no": "HB-1",
        "summary": "占道经营",
        "sender_agency": "market_regulation",
    }
    assert received["correlation_keys"] == {"case_no": "HB-1"}
    assert "from_instance" not in received and instance_id not in body.decode()  # local metadata stays home


def test_relay_keeps_every_row_while_the_broker_is_unreachable_and_sends_them_when_it_is_back(
    tmp_path: Any, broker: Broker
) -> None:
    db = (f"sqlite:///{tmp_path / 'a.db'}", None)
    down = app_for(db, broker, SENDER, amqp_url="amqp://guest:guest@127.0.0.1:5999/%2F")
    assert down.link is not None
    deploy(down.engine, "clue_sender.bpmn")
    for n in range(3):
        _transfer(down, f"HB-{n}")
    with pytest.raises(amqp.BrokerUnavailable):
        down.link.relay_once(amqp.Publisher(down.link.url))
    down.link.start(consume=False)
    wait_for(lambda: down.link.relay_error, 10, "the relay to notice the broker is down")
    down.link.stop()
    assert [r.sent_at for r in outbox_rows(down.engine)] == [None] * 3
    assert all(r.attempts == 0 and r.failed_at is None for r in outbox_rows(down.engine))

    up = app_for(db, broker, SENDER)
    assert up.link is not None
    up.link.start(consume=False)
    try:
        wait_for(lambda: all(r.sent_at for r in outbox_rows(up.engine)), 20, "the rows to be sent")
    finally:
        up.link.stop()
    assert broker.count(broker.names.inbox("urban_management")) == 3


def test_two_relays_at_once_publish_every_row_exactly_once(
    pg_schema: tuple[str, str], broker: Broker
) -> None:
    app = app_for(pg_schema, broker, SENDER)
    assert app.link is not None
    deploy(app.engine, "clue_sender.bpmn")
    for n in range(60):
        _transfer(app, f"HB-{n}")
    app.link.batch = 7
    errors: list[BaseException] = []

    def relay() -> None:
        publisher = amqp.Publisher(broker.url)
        try:
            while any(r.sent_at is None for r in outbox_rows(app.engine)):
                assert app.link is not None
                app.link.relay_once(publisher)
        except BaseException as exc:
            errors.append(exc)
        finally:
            publisher.close()

    threads = [threading.Thread(target=relay) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    delivered = [p.message_id for p, _ in broker.drain(broker.names.inbox("urban_management"))]
    assert len(delivered) == 60 and len(set(delivered)) == 60
    assert all(r.attempts == 1 for r in outbox_rows(app.engine))


def test_an_unknown_receiver_or_a_missing_sender_is_an_incident_and_is_not_retried(
    tmp_path: Any, broker: Broker
) -> None:
    # Serving two agencies, the engine cannot guess the sender without caseflow:from or sender_agency.
    app = app_for((f"sqlite:///{tmp_path / 'a.db'}", None), broker, ("market_regulation", "court"))
    assert app.link is not None
    deploy(app.engine, "addressed_by_variable.bpmn")
    app.engine.start(
        key="link_addressed",
        variables={"case_no": "HB-1", "target": "no_such_agency", "sender_agency": "market_regulation"},
    )
    app.engine.start(key="link_addressed", variables={"case_no": "HB-2", "target": "court"})
    ok = app.engine.start(
        key="link_addressed",
        variables={"case_no": "HB-3", "target": "court", "sender_agency": "market_regulation"},
    )
    publisher = amqp.Publisher(broker.url)
    assert app.link.relay_once(publisher) == 1
    assert app.link.relay_once(publisher) == 0
    publisher.close()
    rows = outbox_rows(app.engine)
    assert [r.sent_at is not None for r in rows] == [False, False, True]
    assert [r.failed_at is not None for r in rows] == [True, True, False]
    found = {i.details["reason"]: i for i in incidents(app.engine)}
    assert set(found) == {"unknown_agency", "no_sender"}
    assert found["no_sender"].element_id == "send" and found["unknown_agency"].element_id == "send"
    assert "no_such_agency" in found["unknown_agency"].message
    [(_, body)] = broker.drain(broker.names.inbox("court"))
    assert env.decode(body)["correlation_keys"] == {"case_no": "HB-3"} and ok["state"] == "completed"


def test_a_message_no_queue_is_bound_for_stays_unsent_and_the_rest_of_the_batch_goes(
    tmp_path: Any, broker: Broker, clock: ManualClock
) -> None:
    app = app_for((f"sqlite:///{tmp_path / 'a.db'}", None), broker, SENDER, clock=clock)
    assert app.link is not None
    deploy(app.engine, "addressed_by_variable.bpmn")
    for n, target in enumerate(
        ["court", "procuratorate", "court"]
    ):  # this test's topology has no procuratorate
        app.engine.start(key="link_addressed", variables={"case_no": f"HB-{n}", "target": target})
    publisher = amqp.Publisher(broker.url)
    with pytest.raises(amqp.NotAccepted, match="no queue is bound for 'procuratorate'"):
        app.link.relay_once(publisher)
    publisher.close()
    rows = outbox_rows(app.engine)
    assert [r.sent_at is not None for r in rows] == [True, False, True]
    assert rows[1].failed_at is None and rows[1].next_attempt_at is not None  # retried later, not given up
    assert broker.count(broker.names.inbox("court")) == 2
    assert incidents(app.engine) == []
    # Still refused at the fifth attempt: an incident says so once, and the row is still retried.
    for attempt in range(2, 8):
        clock.advance(seconds=60)
        with pytest.raises(amqp.NotAccepted):
            app.link.relay_once(amqp.Publisher(broker.url))
        assert outbox_rows(app.engine)[1].attempts == attempt
    [stuck] = incidents(app.engine)
    assert stuck.error_type == "MessageNotAccepted" and stuck.details["reason"] == "not_accepted"
    assert stuck.details["to"] == "procuratorate" and outbox_rows(app.engine)[1].failed_at is None
