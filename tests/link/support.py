"""Helpers for the link tests: a broker namespace of the test's own (unique prefix), signed envelopes, waiting.

Import the ``broker`` fixture into a test module (``from tests.link.support import broker_fixture``).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pytest
from sqlalchemy import func, select

from adapters import amqp
from adapters import envelope as env
from adapters.agencies import development_key
from engine.app import Application, build
from engine.commands import Engine, system_clock
from engine.settings import Settings
from engine.store.db import read_only
from engine.store.tables import incident, outbox, process_instance, processed_message
from tests.conftest import require_rabbitmq

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "link"
CASEFLOW = ROOT / ".venv" / "bin" / "caseflow"  # the command line, as `make` installs it


def caseflow_environ(**settings: str) -> dict[str, str]:
    """The environment for a ``caseflow`` subprocess: this one without any CASEFLOW_* of its own, plus
    ``settings``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CASEFLOW_")}
    return {**environ, **settings}


CODES = ("market_regulation", "urban_management", "public_security", "court")


@dataclass
class Broker:
    url: str
    names: amqp.Names

    def connection(self) -> pika.BlockingConnection:
        return amqp.connect(self.url)

    def publish(self, routing_key: str, body: bytes, *, exchange: str | None = None) -> None:
        connection = self.connection()
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            channel.basic_publish(
                self.names.exchange if exchange is None else exchange,
                routing_key,
                body,
                properties=pika.BasicProperties(delivery_mode=2),
                mandatory=True,
            )
        finally:
            connection.close()

    def count(self, queue: str) -> int:
        connection = self.connection()
        try:
            return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
        finally:
            connection.close()

    def drain(self, queue: str) -> list[tuple[Any, bytes]]:
        """Take every ready message off ``queue``."""
        connection = self.connection()
        taken = []
        try:
            channel = connection.channel()
            while True:
                method, properties, body = channel.basic_get(queue, auto_ack=True)
                if method is None:
                    return taken
                taken.append((properties, body))
        finally:
            connection.close()

    def cleanup(self, codes: tuple[str, ...] = CODES) -> None:
        connection = self.connection()
        try:
            channel = connection.channel()
            for code in codes:
                channel.queue_delete(self.names.inbox(code))
                channel.queue_delete(self.names.dead_letter_queue(code))
            channel.exchange_delete(self.names.exchange)
            channel.exchange_delete(self.names.dead_letter_exchange)
        finally:
            connection.close()


@pytest.fixture(name="broker")
def broker_fixture() -> Iterator[Broker]:
    url = require_rabbitmq()
    found = Broker(url, amqp.Names(f"test-{uuid.uuid4().hex[:12]}"))
    amqp.apply(url, found.names, CODES)
    yield found
    found.cleanup()


def settings(database_url: str, broker: Broker | None, agencies: tuple[str, ...], **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "environment": "test",
        "amqp_url": broker.url if broker else None,
        "amqp_prefix": broker.names.prefix if broker else "caseflow",
        "agencies": agencies,
    }
    return Settings(**{**values, **kw})


def app_for(
    db_url: tuple[str, str | None], broker: Broker | None, agencies: tuple[str, ...], **kw: Any
) -> Application:
    url, schema = db_url
    clock = kw.pop("clock", None) or system_clock
    return build(settings(url, broker, agencies, **kw), clock, schema=schema)


def deploy(engine: Engine, *names: str) -> None:
    for name in names:
        path = FIXTURES / name
        engine.deploy([(path.name, path.read_bytes())], name=path.stem, source="tests", actor="test")


def signed(
    name: str = "link_clue_transfer",
    *,
    sender: str = "market_regulation",
    to: str = "urban_management",
    key_of: str | None = None,
    payload: dict[str, Any] | None = None,
    case_no: str = "HB-1",
    **overrides: Any,
) -> dict[str, Any]:
    built = env.build(
        name,
        sender=sender,
        to=to,
        payload=payload
        if payload is not None
        else {"case_no": case_no, "summary": "占道经营", "sender_agency": sender},
        correlation_keys={"case_no": case_no},
    )
    built.update(overrides)
    return env.sign(built, development_key(key_of or sender))


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def outbox_rows(engine: Engine) -> list[Any]:
    with read_only(engine.db) as conn:
        return list(conn.execute(select(outbox).order_by(outbox.c.id)).all())


def incidents(engine: Engine) -> list[Any]:
    with read_only(engine.db) as conn:
        return list(conn.execute(select(incident).order_by(incident.c.created_at)).all())


def processed(engine: Engine) -> set[str]:
    with read_only(engine.db) as conn:
        return set(conn.execute(select(processed_message.c.message_id)).scalars())


def instances(engine: Engine, key: str) -> list[Any]:
    with read_only(engine.db) as conn:
        return list(
            conn.execute(select(process_instance).where(process_instance.c.definition_key == key)).all()
        )


def count_instances(engine: Engine, key: str, state: str | None = None) -> int:
    query = select(func.count()).select_from(process_instance).where(process_instance.c.definition_key == key)
    if state is not None:
        query = query.where(process_instance.c.state == state)
    with read_only(engine.db) as conn:
        return int(conn.execute(query).scalar_one())
