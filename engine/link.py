"""The link between agencies over RabbitMQ: the outbox relay and one consumer per served agency.

Relay: takes unsent outbox rows addressed to an agency (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the lock held
until the broker confirmed), signs each envelope with its sender's key and publishes it persistent and mandatory
to ``<prefix>.transfers`` with the receiving agency as routing key; a row is marked sent only after its confirm.
While the broker is down it retries with backoff and loses nothing. Rows with no ``caseflow:to`` are delivered
in this engine through the in-process transport, as without a broker.

Messages of confidential processes are sealed before signing (payload encrypted for the receiving agency) and
opened after the signature check (``bad_seal``: dead-lettered with an incident).

Consumer: for each served agency's inbox: decode -> size limit -> schema -> signature with the sender's key ->
seal opened -> correlate (deduplicated by message id, committed) -> ack. A message that can never be accepted is
rejected (``requeue=False``: the broker dead-letters it to ``<prefix>.dead-letter.<code>``) with an incident; a
transient database problem requeues it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

from sqlalchemy.exc import DBAPIError

from adapters import amqp
from adapters import envelope as env
from adapters.agencies import Keyring
from adapters.local import SEAL_MARK, LocalTransport, sign_for_sending
from engine.commands import Engine
from engine.errors import CaseflowError, ConcurrentModification, Unavailable

log = logging.getLogger("caseflow.link")

TRANSIENT = (ConcurrentModification, Unavailable, DBAPIError)


class Link:
    def __init__(
        self,
        engine: Engine,
        url: str,
        names: amqp.Names,
        keyring: Keyring,
        served: tuple[str, ...],
        local: LocalTransport,
        *,
        max_bytes: int = env.DEFAULT_MAX_BYTES,
        batch: int = 200,
        poll_s: float = 0.05,
        consumers: int = 4,
    ) -> None:
        self.engine = engine
        self.url = url
        self.names = names
        self.keyring = keyring
        self.served = served
        self.local = local
        self.max_bytes = max_bytes
        self.batch = batch
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._dead_letter_publisher: amqp.Publisher | None = None
        self._dead_letter_lock = threading.Lock()
        # Several connections consume at once: a message's command is mostly waiting on the database, so they
        # overlap. Their order is not kept; a message that arrives before its receiver waits is buffered.
        self.consumers = [
            amqp.Consumer(url, names, served, self.handle, prefetch=20) for _ in range(max(1, consumers))
        ]
        self.consumer = self.consumers[0]
        self.relay_error: str | None = None
        engine.on_commit(self._wake.set, "outbox")

    # ------------------------------------------------------------------ lifecycle
    def start(self, *, relay: bool = True, consume: bool = True) -> None:
        if relay:
            self._spawn("caseflow-relay", self._relay_loop)
        if consume and self.served:
            for n, consumer in enumerate(self.consumers):
                self._spawn(f"caseflow-consumer-{n}", partial(consumer.run, self._stop))

    def _spawn(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        with self._dead_letter_lock:
            if self._dead_letter_publisher is not None:
                self._dead_letter_publisher.close()

    # ------------------------------------------------------------------ relay
    def _relay_loop(self) -> None:
        publisher = amqp.Publisher(self.url)
        backoff = 0.5
        try:
            while not self._stop.is_set():
                try:
                    done = self.relay_once(publisher)
                    backoff = 0.5
                    self.relay_error = None
                except (amqp.BrokerUnavailable, *TRANSIENT) as exc:
                    self.relay_error = str(exc)
                    log.warning("relay: %s; retrying in %.1fs", exc, backoff)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                except Exception as exc:
                    self.relay_error = str(exc)
                    log.exception("relay pass failed; retrying")
                    self._stop.wait(1.0)
                    continue
                if not done:
                    self._wake.wait(self.poll_s)
                    self._wake.clear()
        finally:
            publisher.close()

    def relay_once(self, publisher: amqp.Publisher) -> int:
        """One pass: publish due rows addressed to agencies (a batch, its confirms awaited together), then deliver
        intra-engine rows here."""
        sent = 0
        if self.engine.has_pending_outbox("remote"):
            publisher.connect()
            sent += self.engine.relay_outbox(
                lambda record: self.publish(publisher, record),
                self.batch,
                which="remote",
                hold_lock=True,
                raise_errors=True,
                publish_batch=lambda records: self.publish_batch(publisher, records),
            )
        if self.engine.has_pending_outbox("local"):
            sent += self.engine.relay_outbox(self.local.publish, self.batch, which="local")
        return sent

    def prepare(self, record: Mapping[str, Any]) -> tuple[str, bytes, str]:
        """(routing key, signed body, message id) of an outbox record; EnvelopeError when it cannot be sent."""
        envelope = {k: v for k, v in record.items() if k in env.FIELDS and k != "signature"}
        sender = envelope.get("from")
        if sender is not None and sender not in self.served:
            raise env.EnvelopeError(
                "not_served_sender",
                f"message '{envelope.get('name')}' is from '{sender}', which this engine does not serve "
                f"(CASEFLOW_AGENCIES={','.join(self.served)}), so it cannot sign for it",
                envelope,
            )
        body = env.encode(sign_for_sending(self.keyring, envelope, sealed=bool(record.get(SEAL_MARK))))
        if len(body) > self.max_bytes:
            raise env.EnvelopeError(
                "too_large", f"message is {len(body)} bytes; the limit is {self.max_bytes}", envelope
            )
        return str(envelope["to"]), body, str(envelope["message_id"])

    def publish(self, publisher: amqp.Publisher, record: Mapping[str, Any]) -> None:
        routing_key, body, message_id = self.prepare(record)
        publisher.publish(self.names.exchange, routing_key, body, message_id=message_id)

    def publish_batch(
        self, publisher: amqp.Publisher, records: list[dict[str, Any]]
    ) -> list[Exception | None]:
        outcomes: list[Exception | None] = [None] * len(records)
        items, positions = [], []
        for position, record in enumerate(records):
            try:
                items.append(self.prepare(record))
            except env.EnvelopeError as exc:
                outcomes[position] = exc
                continue
            positions.append(position)
        if items:
            confirmed = publisher.publish_many(self.names.exchange, items)
            for position, outcome in zip(positions, confirmed, strict=True):
                outcomes[position] = outcome
        return outcomes

    # ------------------------------------------------------------------ dead letters of expired messages
    def dead_letter(self, envelope: Mapping[str, Any]) -> str:
        """Publish an expired buffered message to its agency's dead-letter queue; returns the queue's name."""
        to = str(envelope.get("to"))
        if env.is_sealed(envelope):
            envelope = {**envelope, "payload": {}}  # back to the sealed original: never a clear payload
        with self._dead_letter_lock:
            if self._dead_letter_publisher is None:
                self._dead_letter_publisher = amqp.Publisher(self.url)
            self._dead_letter_publisher.publish(
                self.names.dead_letter_exchange,
                to,
                env.encode(envelope),
                message_id=str(envelope.get("message_id") or ""),
            )
        return self.names.dead_letter_queue(to)

    # ------------------------------------------------------------------ consumer
    def handle(self, code: str, body: bytes, properties: Any = None) -> amqp.Decision:
        """One delivery from ``<prefix>.inbox.<code>``: accept it, refuse it for good, or ask for it again."""
        try:
            envelope = env.check(
                body,
                self.keyring.get,
                max_bytes=self.max_bytes,
                served=self.served,
                routed_to=code,
                known_keys=self.keyring.known,
                seal_key_for=self.keyring.seal_key,
            )
        except env.EnvelopeError as exc:
            return self._refuse(code, exc.reason, exc.message, exc.envelope)
        try:
            self.engine.receive(envelope)
        except TRANSIENT as exc:
            log.warning("message %s not handled now (%s); requeued", envelope.get("message_id"), exc)
            time.sleep(0.5)
            return amqp.Decision.RETRY
        except CaseflowError as exc:
            return self._refuse(code, exc.code, exc.message, envelope)
        return amqp.Decision.ACK

    def _refuse(self, code: str, reason: str, message: str, envelope: Mapping[str, Any]) -> amqp.Decision:
        queue = self.names.dead_letter_queue(code)
        details = {
            "message_id": envelope.get("message_id"),
            "name": envelope.get("name"),
            "from": envelope.get("from"),
            "to": envelope.get("to") or code,
            "reason": reason,
            "dead_letter_queue": queue,
        }
        try:
            self.engine.record_rejected_message(
                f"message refused by the inbox of '{code}' ({reason}): {message}", details
            )
        except TRANSIENT as exc:
            log.warning("cannot record the refused message (%s); requeued", exc)
            time.sleep(0.5)
            return amqp.Decision.RETRY
        log.warning("message refused into %s: %s", queue, message)
        return amqp.Decision.REJECT
