"""The external-system SDK (adapters/client.py) and ``caseflow agency-sim`` against the real RabbitMQ."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

from adapters import envelope as env
from adapters.agencies import development_key
from adapters.client import AgencyClient
from tests.link.support import (
    CASEFLOW,
    ROOT,
    Broker,
    app_for,
    broker_fixture,  # noqa: F401 - the broker fixture
    caseflow_environ,
    deploy,
    incidents,
    instances,
    signed,
    wait_for,
)


def test_the_police_simulator_answers_a_criminal_case_transfer_with_a_receipt_and_a_filing_decision(
    tmp_path: Path, broker: Broker
) -> None:
    app = app_for((f"sqlite:///{tmp_path / 'a.db'}", None), broker, ("market_regulation",))
    assert app.link is not None
    deploy(app.engine, "police_transfer.bpmn")
    env_vars = caseflow_environ(
        CASEFLOW_AMQP_URL=broker.url, CASEFLOW_AMQP_PREFIX=broker.names.prefix, CASEFLOW_ENV="test"
    )
    log = tmp_path / "sim.log"
    with log.open("wb") as out:
        sim = subprocess.Popen(
            [str(CASEFLOW), "agency-sim", "public_security", "--filing-delay", "1"],
            env=env_vars,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    app.scheduler.start()
    app.link.start()
    try:
        started = app.engine.start(
            key="link_police_transfer",
            business_key="HB-2026-0100",
            variables={
                "case_no": "HB-2026-0100",
                "sender_agency": "market_regulation",
                "suspected_crime": "非法经营罪",
            },
        )

        def state(activity: str | None = None, completed: bool = False) -> bool:
            [row] = instances(app.engine, "link_police_transfer")
            return bool(row.state == "completed") if completed else activity in (row.active_elements or [])

        wait_for(lambda: state("await_decision"), 30, "the 回执 (police_receipt)")
        wait_for(lambda: state(completed=True), 30, "the filing decision")
    finally:
        app.link.stop()
        app.scheduler.stop()
        sim.send_signal(signal.SIGTERM)
        code = sim.wait(15)
    assert code == 0, log.read_text(errors="replace")
    [row] = instances(app.engine, "link_police_transfer")
    assert row.id == started["id"]
    assert row.variables["receipt_no"] == "回执-HB-2026-0100"
    assert row.variables["filed"] is True and row.variables["filing_notice_no"] == "立案-HB-2026-0100"
    assert incidents(app.engine) == []


def test_the_sdk_receives_verified_transfers_refuses_forged_ones_and_replies_with_signed_envelopes(
    tmp_path: Path, broker: Broker
) -> None:
    court = AgencyClient("court", broker.url, prefix=broker.names.prefix)
    received: list[dict[str, Any]] = []
    stop = threading.Event()
    thread = threading.Thread(target=court.run, args=(received.append, stop))
    thread.start()
    try:
        genuine = signed("court_notice", sender="market_regulation", to="court", case_no="HB-9")
        forged = {**signed("court_notice", sender="market_regulation", to="court", case_no="HB-10")}
        forged["payload"] = {"case_no": "HB-10", "summary": "篡改"}
        broker.publish("court", env.encode(forged))
        broker.publish("court", env.encode(genuine))
        broker.publish("court", env.encode(genuine))  # a redelivery: the callback sees it once
        sentinel = signed("court_notice", sender="market_regulation", to="court", case_no="HB-11")
        broker.publish("court", env.encode(sentinel))
        wait_for(lambda: any(e["message_id"] == sentinel["message_id"] for e in received), 20, "the sentinel")
        assert [e["message_id"] for e in received] == [genuine["message_id"], sentinel["message_id"]]
        assert court.rejected == [(forged["message_id"], "bad_signature")]
        assert broker.count(broker.names.dead_letter_queue("court")) == 1

        reply = court.reply(received[0], "court_ruling", {"case_no": "HB-9", "ruling": "准予强制执行"})
    finally:
        stop.set()
        thread.join(15)
    [(properties, body)] = broker.drain(broker.names.inbox("market_regulation"))
    assert properties.message_id == reply["message_id"]
    decoded = env.decode(body)
    assert decoded["from"] == "court" and decoded["to"] == "market_regulation"
    assert decoded["correlation_keys"] == {"case_no": "HB-9"}
    assert env.verify(decoded, development_key("court"))
