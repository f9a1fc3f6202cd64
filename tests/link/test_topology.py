"""caseflow topology apply (idempotent, quorum inboxes dead-lettering per agency) and export (broker users whose
permission regexps reach exactly their own inbox and the transfers exchange)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import uuid
from pathlib import Path

import pika.exceptions
import pytest

from adapters import amqp
from adapters.agencies import load
from tests.conftest import require_rabbitmq
from tests.link.support import CASEFLOW, ROOT, Broker, caseflow_environ


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CASEFLOW), *args],
        env=caseflow_environ(**env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_topology_apply_declares_every_agency_and_is_idempotent() -> None:
    url = require_rabbitmq()
    names = amqp.Names(f"test-{uuid.uuid4().hex[:12]}")
    codes = load().codes()
    broker = Broker(url, names)
    try:
        for _ in range(2):
            done = _cli("topology", "apply", CASEFLOW_AMQP_URL=url, CASEFLOW_AMQP_PREFIX=names.prefix)
            assert done.returncode == 0, done.stderr
        declared = json.loads(done.stdout)
        assert declared["exchange"] == f"{names.prefix}.transfers"
        assert declared["dead_letter_exchange"] == f"{names.prefix}.dead-letter"
        assert len(declared["queues"]) == 2 * len(codes)
        for code in codes:
            assert broker.count(names.inbox(code)) == 0 and broker.count(names.dead_letter_queue(code)) == 0
        # The inbox is a quorum queue: declaring it as a classic queue is refused.
        connection = broker.connection()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="x-queue-type"):
            classic = {**names.inbox_arguments("court"), "x-queue-type": "classic"}
            connection.channel().queue_declare(names.inbox("court"), durable=True, arguments=classic)
        connection.close()
        # A message rejected from an inbox lands in that agency's dead-letter queue.
        broker.publish("court", b"{}")
        connection = broker.connection()
        channel = connection.channel()
        method, _, _ = channel.basic_get(names.inbox("court"))
        channel.basic_reject(method.delivery_tag, requeue=False)
        connection.close()
        assert [body for _, body in broker.drain(names.dead_letter_queue("court"))] == [b"{}"]
    finally:
        broker.cleanup(codes)


def test_topology_export_gives_each_agency_its_own_inbox_and_the_exchange_only(tmp_path: Path) -> None:
    out = tmp_path / "definitions.json"
    done = _cli(
        "topology",
        "export",
        "--output",
        str(out),
        "--passwords-dir",
        str(tmp_path / "pw"),
        CASEFLOW_AMQP_PREFIX="cf",
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    names = amqp.Names("cf")
    registry = load()
    codes = registry.codes()
    users = {u["name"]: u for u in data["users"]}
    assert set(users) == {names.user(c) for c in codes} | {"cf-district-engine"}
    perms = {p["user"]: p for p in data["permissions"]}
    every_resource = [
        names.exchange,
        names.dead_letter_exchange,
        *(names.inbox(c) for c in codes),
        *(names.dead_letter_queue(c) for c in codes),
        "cf.transfersX",
        "cf.inbox.court.extra",
        "amq.default",
    ]
    for code in codes:
        p = perms[names.user(code)]
        assert [r for r in every_resource if re.search(p["read"], r)] == [names.inbox(code)]
        assert [r for r in every_resource if re.search(p["write"], r)] == [names.exchange]
        assert [r for r in every_resource if re.search(p["configure"], r)] == []
        password = (tmp_path / "pw" / f"{code}.password").read_text().strip()
        stored = users[names.user(code)]["password_hash"]
        salt = base64.b64decode(stored)[:4]
        assert amqp.password_hash(password, salt) == stored
    engine = perms["cf-district-engine"]
    assert sorted(r for r in every_resource if re.search(engine["read"], r)) == sorted(
        names.inbox(c) for c in registry.district_codes()
    )
    assert sorted(r for r in every_resource if re.search(engine["write"], r)) == sorted(
        [names.exchange, names.dead_letter_exchange]
    )
    queues = {q["name"]: q for q in data["queues"]}
    assert queues[names.inbox("court")]["arguments"] == {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "cf.dead-letter",
        "x-dead-letter-routing-key": "court",
    }
    # Without a passwords directory the hashes are empty placeholders.
    bare = tmp_path / "bare.json"
    assert _cli("topology", "export", "--output", str(bare)).returncode == 0
    assert {u["password_hash"] for u in json.loads(bare.read_text())["users"]} == {""}
