"""RabbitMQ: topology names and declaration, broker definitions for production, a confirming publisher and a
reconnecting consumer. Nothing here knows the engine; :mod:`engine.link` wires these to it.

Names (``<prefix>`` is ``CASEFLOW_AMQP_PREFIX``, default ``caseflow``):

- ``<prefix>.transfers``: durable topic exchange every transfer is published to, routing key = receiving agency;
- ``<prefix>.inbox.<code>``: durable quorum queue per agency, bound with routing key ``<code>``; a rejected
  message is dead-lettered to
- ``<prefix>.dead-letter``: durable direct exchange, routing key ``<code>``, feeding
- ``<prefix>.dead-letter.<code>``: durable queue per agency.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any

import pika
import pika.exceptions

log = logging.getLogger("caseflow.amqp")

BROKER_ERRORS: tuple[type[BaseException], ...] = (pika.exceptions.AMQPError, OSError)


@dataclass(frozen=True)
class Names:
    prefix: str = "caseflow"

    @property
    def exchange(self) -> str:
        return f"{self.prefix}.transfers"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}.dead-letter"

    def inbox(self, code: str) -> str:
        return f"{self.prefix}.inbox.{code}"

    def dead_letter_queue(self, code: str) -> str:
        return f"{self.prefix}.dead-letter.{code}"

    def inbox_arguments(self, code: str) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": self.dead_letter_exchange,
            "x-dead-letter-routing-key": code,
        }

    def user(self, code: str) -> str:
        return f"{self.prefix}-{code}"


def _nothing() -> None:
    """A no-op callback: scheduling it wakes a BlockingConnection's process_data_events."""


def parameters(url: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = 5
    params.blocked_connection_timeout = 60
    return params


def connect(url: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(parameters(url))


def declare(channel: Any, names: Names, codes: Iterable[str]) -> list[str]:
    """Declare the exchanges and every agency's inbox and dead-letter queue (idempotent). Returns the queues."""
    channel.exchange_declare(names.exchange, exchange_type="topic", durable=True)
    channel.exchange_declare(names.dead_letter_exchange, exchange_type="direct", durable=True)
    queues = []
    for code in codes:
        dead = names.dead_letter_queue(code)
        channel.queue_declare(dead, durable=True)
        channel.queue_bind(dead, names.dead_letter_exchange, routing_key=code)
        inbox = names.inbox(code)
        channel.queue_declare(inbox, durable=True, arguments=names.inbox_arguments(code))
        channel.queue_bind(inbox, names.exchange, routing_key=code)
        queues += [inbox, dead]
    return queues


def apply(url: str, names: Names, codes: Iterable[str]) -> list[str]:
    connection = connect(url)
    try:
        return declare(connection.channel(), names, codes)
    finally:
        connection.close()


def _exact(name: str) -> str:
    """A RabbitMQ permission regexp matching exactly ``name``."""
    return "^" + "".join("\\" + c if c in ".-+*?()[]{}|^$\\" else c for c in name) + "$"


def permissions(names: Names, code: str) -> dict[str, str]:
    """An agency's broker user may read only its own inbox and write only to the transfers exchange."""
    return {"configure": "^$", "write": _exact(names.exchange), "read": _exact(names.inbox(code))}


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + SHA-256(salt + password)), 4-byte salt."""
    salt = salt if salt is not None else secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def engine_permissions(names: Names, codes: Iterable[str]) -> dict[str, str]:
    """The district engine's account: reads the inboxes of the agencies it serves, writes transfers and the dead
    letters of expired messages."""
    alternatives = "|".join(_exact(c)[1:-1] for c in codes)
    return {
        "configure": "^$",
        "write": f"^({_exact(names.exchange)[1:-1]}|{_exact(names.dead_letter_exchange)[1:-1]})$",
        "read": f"^{_exact(names.prefix)[1:-1]}\\.inbox\\.({alternatives})$",
    }


def definitions(
    names: Names,
    codes: Iterable[str],
    *,
    vhost: str = "/",
    passwords: Mapping[str, str] | None = None,
    engine_codes: Iterable[str] = (),
) -> dict[str, Any]:
    """Broker definitions (``rabbitmqctl import_definitions``): the topology, one user per agency and, given
    ``engine_codes``, the district engine's user ``<prefix>-district-engine``.

    Without ``passwords`` a user's ``password_hash`` is empty: that user cannot log in until an operator sets a
    password (``rabbitmqctl change_password caseflow-<code> …``).
    """
    codes = list(codes)
    users, perms, queues, bindings = [], [], [], []
    engine_codes = list(engine_codes)
    if engine_codes:
        engine_user = f"{names.prefix}-district-engine"
        password = (passwords or {}).get("district-engine")
        users.append(
            {
                "name": engine_user,
                "password_hash": password_hash(password) if password else "",
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": [],
            }
        )
        perms.append({"user": engine_user, "vhost": vhost, **engine_permissions(names, engine_codes)})
    for code in codes:
        password = (passwords or {}).get(code)
        users.append(
            {
                "name": names.user(code),
                "password_hash": password_hash(password) if password else "",
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": [],
            }
        )
        perms.append({"user": names.user(code), "vhost": vhost, **permissions(names, code)})
        queues.append(
            {
                "name": names.inbox(code),
                "vhost": vhost,
                "durable": True,
                "auto_delete": False,
                "arguments": names.inbox_arguments(code),
            }
        )
        queues.append(
            {
                "name": names.dead_letter_queue(code),
                "vhost": vhost,
                "durable": True,
                "auto_delete": False,
                "arguments": {},
            }
        )
        bindings.append(_binding(names.exchange, names.inbox(code), code, vhost))
        bindings.append(_binding(names.dead_letter_exchange, names.dead_letter_queue(code), code, vhost))
    return {
        "users": users,
        "vhosts": [{"name": vhost}],
        "permissions": perms,
        "exchanges": [
            _exchange(names.exchange, "topic", vhost),
            _exchange(names.dead_letter_exchange, "direct", vhost),
        ],
        "queues": queues,
        "bindings": bindings,
    }


def _exchange(name: str, kind: str, vhost: str) -> dict[str, Any]:
    return {
        "name": name,
        "vhost": vhost,
        "type": kind,
        "durable": True,
        "auto_delete": False,
        "internal": False,
        "arguments": {},
    }


def _binding(source: str, queue: str, key: str, vhost: str) -> dict[str, Any]:
    return {
        "source": source,
        "vhost": vhost,
        "destination": queue,
        "destination_type": "queue",
        "routing_key": key,
        "arguments": {},
    }


def generate_passwords(codes: Iterable[str], directory: str | Path) -> dict[str, str]:
    """A random password per agency, each written to ``<directory>/<code>.password`` (mode 600)."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    result = {}
    for code in [*codes, "district-engine"]:
        password = secrets.token_urlsafe(24)
        path = folder / f"{code}.password"
        path.write_text(password + "\n", encoding="utf-8")
        path.chmod(0o600)
        result[code] = password
    return result


class BrokerUnavailable(ConnectionError):
    """The broker could not be reached or the connection broke; nothing was confirmed."""


class NotAccepted(RuntimeError):
    """The broker answered but did not take the message (unroutable: no inbox bound; or nacked)."""


class Publisher:
    """One channel in confirm mode. Not thread-safe: one per thread.

    :meth:`publish_many` sends a whole batch and then waits for the confirms of all of it (pipelined: one wait
    for the batch instead of a round trip per message); :meth:`publish` is a batch of one.
    """

    def __init__(self, url: str, confirm_timeout: float = 30.0) -> None:
        self.url = url
        self.confirm_timeout = confirm_timeout
        self._connection: Any = None
        self._channel: Any = None
        self._published = 0  # delivery tags of this channel run 1, 2, …
        self._confirmed: dict[int, bool] = {}  # tag -> acked (True) / nacked (False), until collected
        self._unconfirmed: set[int] = set()
        self._returned: set[str] = set()  # message ids the broker could not route (mandatory)

    def connect(self) -> None:
        if self._channel is not None and self._channel.is_open and self._connection.is_open:
            return
        self.close()
        try:
            self._connection = connect(self.url)
            self._channel = self._connection.channel()
            self._published = 0
            self._confirmed.clear()
            self._unconfirmed.clear()
            self._returned.clear()
            ready: list[Any] = []
            # The underlying channel's confirm mode with our own callbacks (the blocking channel's own confirm
            # mode waits for every message in turn). Callbacks run inside process_data_events, in this thread.
            impl = self._channel._impl
            impl.add_on_return_callback(self._on_return)
            impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=ready.append)
            self._wait(lambda: bool(ready), "confirm mode")
        except BROKER_ERRORS as exc:
            self.close()
            raise BrokerUnavailable(f"cannot reach the broker: {type(exc).__name__} {exc}") from exc

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        tags = (
            [t for t in self._unconfirmed if t <= method.delivery_tag]
            if method.multiple
            else [method.delivery_tag]
        )
        for tag in tags:
            self._unconfirmed.discard(tag)
            self._confirmed[tag] = acked
        if self._connection is not None:
            # A callback on the underlying channel does not end process_data_events by itself: without this
            # the waiting publisher would sleep out its whole time slice after the last confirm arrived.
            self._connection.add_callback_threadsafe(_nothing)

    def _on_return(self, _channel: Any, _method: Any, properties: Any, _body: bytes) -> None:
        if properties.message_id:
            self._returned.add(properties.message_id)

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.confirm_timeout
        while not done():
            if time.monotonic() > deadline:
                raise BrokerUnavailable(
                    f"no answer from the broker within {self.confirm_timeout:.0f}s ({what})"
                )
            self._connection.process_data_events(time_limit=0.05)

    def publish(self, exchange: str, routing_key: str, body: bytes, *, message_id: str | None = None) -> None:
        """Persistent, mandatory; returns only after the broker confirmed it (else raises)."""
        [outcome] = self.publish_many(exchange, [(routing_key, body, message_id or "")])
        if outcome is not None:
            raise outcome

    def publish_many(self, exchange: str, items: list[tuple[str, bytes, str]]) -> list[NotAccepted | None]:
        """Publish ``(routing_key, body, message_id)`` items persistent and mandatory, then wait for every
        confirm. Per item: None (confirmed and routed) or :class:`NotAccepted` (nacked, or unroutable). Raises
        :class:`BrokerUnavailable` when the connection fails before all are confirmed (then none counts as sent)."""
        self.connect()
        tags = []
        try:
            for routing_key, body, message_id in items:
                properties = pika.BasicProperties(
                    delivery_mode=pika.DeliveryMode.Persistent,
                    content_type="application/json",
                    content_encoding="utf-8",
                    message_id=message_id or None,
                )
                self._channel._impl.basic_publish(exchange, routing_key, body, properties, mandatory=True)
                self._published += 1
                self._unconfirmed.add(self._published)
                tags.append(self._published)
            self._wait(lambda: all(t in self._confirmed for t in tags), "publisher confirms")
        except BrokerUnavailable:
            self.close()
            raise
        except BROKER_ERRORS as exc:
            self.close()
            raise BrokerUnavailable(f"lost the broker while publishing: {type(exc).__name__} {exc}") from exc
        outcomes: list[NotAccepted | None] = []
        for (routing_key, _body, message_id), tag in zip(items, tags, strict=True):
            if not self._confirmed.pop(tag):
                outcomes.append(NotAccepted("the broker refused the message (negative confirm)"))
            elif message_id and message_id in self._returned:
                self._returned.discard(message_id)
                outcomes.append(
                    NotAccepted(
                        f"no queue is bound for '{routing_key}' on {exchange} (run caseflow topology apply)"
                    )
                )
            else:
                outcomes.append(None)
        return outcomes

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                if connection.is_open:
                    connection.close()
            except Exception:  # noqa: S110 - closing a broken connection may fail; it is dropped either way
                pass


class Decision(Enum):
    ACK = "ack"  # handled (or a duplicate): remove from the queue
    REJECT = "reject"  # refused for good: dead-letter it
    RETRY = "retry"  # not handled now (database unavailable…): requeue


Handler = Callable[[str, bytes, Any], Decision]


class Consumer:
    """One connection, one channel, one ``basic_consume`` per agency inbox; reconnects until stopped."""

    def __init__(
        self, url: str, names: Names, codes: Iterable[str], handler: Handler, prefetch: int = 50
    ) -> None:
        self.url = url
        self.names = names
        self.codes = list(codes)
        self.handler = handler
        self.prefetch = prefetch
        self.connected = threading.Event()

    def run(self, stop: threading.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            connection: Any = None
            try:
                connection = connect(self.url)
                channel = connection.channel()
                channel.basic_qos(prefetch_count=self.prefetch)
                for code in self.codes:
                    channel.basic_consume(self.names.inbox(code), partial(self._on_message, code))
                self.connected.set()
                log.info("consuming %s", ", ".join(self.names.inbox(c) for c in self.codes))
                backoff = 0.5
                while not stop.is_set():
                    connection.process_data_events(time_limit=0.5)
            except pika.exceptions.ChannelClosedByBroker as exc:
                self.connected.clear()
                hint = (
                    " (is the topology declared? run caseflow topology apply)"
                    if exc.reply_code == 404
                    else ""
                )
                log.warning("consumer: %s%s; retrying in %.1fs", exc.reply_text, hint, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except BROKER_ERRORS as exc:
                self.connected.clear()
                log.warning(
                    "consumer: broker unavailable (%s %s); reconnecting in %.1fs",
                    type(exc).__name__,
                    exc,
                    backoff,
                )
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.connected.clear()
                if connection is not None:
                    try:
                        if connection.is_open:
                            connection.close()
                    except Exception:  # noqa: S110 - see Publisher.close
                        pass

    def _on_message(self, code: str, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        try:
            decision = self.handler(code, body, properties)
        except Exception:
            log.exception("message handler failed; the message is requeued")
            decision = Decision.RETRY
        if decision is Decision.ACK:
            channel.basic_ack(method.delivery_tag)
        elif decision is Decision.REJECT:
            channel.basic_reject(method.delivery_tag, requeue=False)
        else:
            channel.basic_nack(method.delivery_tag, requeue=True)
