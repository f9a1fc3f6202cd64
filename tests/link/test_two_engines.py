"""Two engine processes, each serving its own agency with its own database, linked by the real RabbitMQ.

A (market_regulation) transfers a clue with a message throw (caseflow:to="urban_management"); in B
(urban_management) the message start event starts the receiving process, which replies
(caseflow:to="${sender_agency}"); A's waiting instance continues and completes. Each side runs ``caseflow worker``
as a subprocess (scheduler, relay and consumer), stopped with SIGTERM at the end. A keeps SQLite; B runs on SQLite
and on PostgreSQL.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from engine.store.db import read_only
from engine.store.tables import outbox
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
    processed,
    wait_for,
)


def _worker(db: str, broker: Broker, agency: str, log: Path) -> subprocess.Popen[bytes]:
    env = caseflow_environ(
        CASEFLOW_DATABASE_URL=db,
        CASEFLOW_AMQP_URL=broker.url,
        CASEFLOW_AMQP_PREFIX=broker.names.prefix,
        CASEFLOW_AGENCIES=agency,
        CASEFLOW_ENV="test",
        CASEFLOW_SCHEDULER_INTERVAL_MS="100",
    )
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(CASEFLOW), "worker"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _sent(app: Any) -> list[Any]:
    with read_only(app.engine.db) as conn:
        return list(conn.execute(select(outbox.c.sent_at, outbox.c.envelope)).all())


@pytest.mark.parametrize("b_database", ["sqlite", "postgres"])
def test_two_engine_processes_complete_a_transfer_and_its_reply(
    tmp_path: Path, broker: Broker, b_database: str, request: pytest.FixtureRequest
) -> None:
    db_a = f"sqlite:///{tmp_path / 'a.db'}"
    b_schema: str | None = None
    if b_database == "sqlite":
        db_b = pg_url = f"sqlite:///{tmp_path / 'b.db'}"
    else:  # B's own PostgreSQL schema; the worker process gets it as libpq's search_path
        pg_url, b_schema = request.getfixturevalue("pg_schema")
        db_b = (
            make_url(pg_url)
            .update_query_dict({"options": f"-csearch_path={b_schema}"})
            .render_as_string(hide_password=False)
        )
    a = app_for((db_a, None), broker, ("market_regulation",))
    b = app_for((pg_url, b_schema), broker, ("urban_management",))
    deploy(a.engine, "clue_sender.bpmn")
    deploy(b.engine, "clue_receiver.bpmn")
    workers = [
        _worker(db_a, broker, "market_regulation", tmp_path / "a.log"),
        _worker(db_b, broker, "urban_management", tmp_path / "b.log"),
    ]
    try:
        started = a.engine.start(
            key="link_clue_sender",
            business_key="HB-2026-0042",
            variables={
                "case_no": "HB-2026-0042",
                "summary": "商户占道经营",
                "sender_agency": "market_regulation",
            },
        )
        assert started["activities"] == ["await_reply"]

        def done() -> bool:
            [instance] = instances(a.engine, "link_clue_sender")
            return bool(instance.state == "completed")

        wait_for(done, 60, "A's instance to complete after B's reply")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        codes = [worker.wait(20) for worker in workers]
        logs = "\n".join((tmp_path / f"{n}.log").read_text(errors="replace")[-3000:] for n in "ab")
    assert codes == [0, 0], logs

    [sender] = instances(a.engine, "link_clue_sender")
    assert sender.variables["decision"] == "受理"
    [receiver] = instances(b.engine, "link_clue_receiver")
    assert receiver.state == "completed"
    assert receiver.variables == {
        "case_no": "HB-2026-0042",
        "summary": "商户占道经营",
        "sender_agency": "market_regulation",
        "decision": "受理",
    }
    [(sent_a, transfer)] = _sent(a)
    [(sent_b, reply)] = _sent(b)
    assert sent_a is not None and sent_b is not None
    assert (transfer["from"], transfer["to"]) == ("market_regulation", "urban_management")
    assert (reply["from"], reply["to"]) == ("urban_management", "market_regulation")
    assert processed(b.engine) == {transfer["message_id"]}
    assert processed(a.engine) == {reply["message_id"]}
    assert incidents(a.engine) == [] and incidents(b.engine) == []
    for code in ("market_regulation", "urban_management"):
        assert broker.count(broker.names.inbox(code)) == 0
        assert broker.count(broker.names.dead_letter_queue(code)) == 0
