"""SDK for an agency's own system (court, procuratorate, public security, discipline commission …).

It connects to the district's RabbitMQ as one agency, hands each transfer addressed to that agency to a callback
after checking it (size, JSON Schema, the sender's HMAC signature) and sends replies in correctly signed
envelopes. It depends on nothing of the engine: copy ``adapters/`` (envelope, agencies, amqp, client and
``schemas/``) into the agency's system, or install the package.

    client = AgencyClient("public_security", "amqp://caseflow-public_security:…@broker/%2F")

    def on_transfer(envelope: dict) -> None:
        if envelope["name"] == "criminal_case_transfer":
            client.reply(envelope, "police_receipt", {"case_no": envelope["payload"]["case_no"], "receipt_no": "…"})

    client.run(on_transfer)   # until client.stop() (or the stop event) is set

A sealed transfer (from a confidential process, e.g. a discipline clue) is opened with this agency's seal key
after the signature check: the callback gets the payload in clear (the envelope still carries ``sealed``). One
that does not decrypt is rejected (reason ``bad_seal``). ``send``/``reply`` seal their payload for the receiver
with ``seal=True``; by default they are not sealed.

A message that fails the checks is rejected into ``<prefix>.dead-letter.<agency>`` and never reaches the
callback. A callback that raises gets the message again later (it is requeued); one that returns has it
acknowledged. Deliveries are at least once: the same ``message_id`` may come twice after a reconnect, so the
system should remember the ids it handled (the client also skips ids it already handled in this process).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from adapters import amqp
from adapters import envelope as env
from adapters.agencies import AgencyError, Keyring
from adapters.agencies import load as load_agencies

log = logging.getLogger("caseflow.client")

Callback = Callable[[dict[str, Any]], None]


class AgencyClient:
    def __init__(
        self,
        agency: str,
        amqp_url: str,
        *,
        prefix: str = "caseflow",
        key: bytes | None = None,
        seal_key: bytes | None = None,
        agencies_file: str | Path | None = None,
        max_bytes: int = env.DEFAULT_MAX_BYTES,
        production: bool = False,
    ) -> None:
        self.registry = load_agencies(agencies_file)
        self.registry.get(agency)  # an unknown agency is an error now, not at the first message
        self.agency = agency
        self.url = amqp_url
        self.names = amqp.Names(prefix)
        self.keyring = Keyring(self.registry, production=production)
        self.key = key if key is not None else self.keyring.key(agency)
        self.seal_key = seal_key if seal_key is not None else self.keyring.seal_key(agency)
        if self.seal_key is None and self.registry.get(agency).receives_sealed:
            raise AgencyError(f"no seal key configured for '{agency}', which receives sealed messages")
        self.max_bytes = max_bytes
        self._publisher = amqp.Publisher(amqp_url)
        self._publish_lock = threading.Lock()
        self._stop = threading.Event()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.rejected: list[tuple[str, str]] = []  # (message id or "", reason) of refused deliveries

    # ------------------------------------------------------------------ sending
    def send(
        self,
        name: str,
        to: str,
        payload: Mapping[str, Any],
        *,
        correlation_keys: Mapping[str, Any] | None = None,
        business_key: str | None = None,
        attachments: Iterable[Mapping[str, Any]] = (),
        message_id: str | None = None,
        seal: bool = False,
    ) -> dict[str, Any]:
        """Sign and publish one message to agency ``to``; returns the envelope once the broker confirmed it.
        ``seal``: encrypt the payload with ``to``'s seal key first (only the payload; correlation keys stay clear).

        The receiving engine correlates on ``correlation_keys`` (e.g. ``{"case_no": …}``); a ``business_key``
        narrows that to the instance with exactly this business key, so leave it None unless you know it.
        Reusing a ``message_id`` (e.g. when retrying after an error) makes the receiver handle it once."""
        self.registry.get(to)
        built = env.build(
            name,
            sender=self.agency,
            to=to,
            payload=payload,
            correlation_keys=correlation_keys,
            business_key=business_key,
            attachments=attachments,
            message_id=message_id,
        )
        if seal:
            seal_key = self.keyring.seal_key(to)
            if seal_key is None:
                raise env.EnvelopeError(
                    "no_seal_key", f"no seal key for '{to}': the message is not sent", built
                )
            built = env.seal(built, seal_key)
        envelope = env.sign(built, self.key)
        env.validate(envelope)
        body = env.encode(envelope)
        if len(body) > self.max_bytes:
            raise env.EnvelopeError(
                "too_large", f"message is {len(body)} bytes; the limit is {self.max_bytes}"
            )
        with self._publish_lock:
            self._publisher.publish(self.names.exchange, to, body, message_id=envelope["message_id"])
        return envelope

    def reply(
        self,
        received: Mapping[str, Any],
        name: str,
        payload: Mapping[str, Any],
        *,
        correlation_keys: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        seal: bool = False,
    ) -> dict[str, Any]:
        """Answer ``received`` (to its sender, with its correlation keys unless others are given)."""
        return self.send(
            name,
            str(received["from"]),
            payload,
            correlation_keys=correlation_keys
            if correlation_keys is not None
            else received["correlation_keys"],
            message_id=message_id,
            seal=seal,
        )

    # ------------------------------------------------------------------ receiving
    def run(self, callback: Callback, stop: threading.Event | None = None) -> None:
        """Consume this agency's inbox until :meth:`stop` (or ``stop``); reconnects when the broker restarts."""
        if stop is not None:

            def forward() -> None:
                stop.wait()
                self._stop.set()

            threading.Thread(target=forward, daemon=True).start()
        consumer = amqp.Consumer(
            self.url, self.names, [self.agency], lambda _c, b, _p: self._deliver(b, callback)
        )
        try:
            consumer.run(self._stop)
        finally:
            with self._publish_lock:
                self._publisher.close()

    def stop(self) -> None:
        self._stop.set()

    def _deliver(self, body: bytes, callback: Callback) -> amqp.Decision:
        try:
            envelope = env.check(
                body,
                self.keyring.get,
                max_bytes=self.max_bytes,
                served=(self.agency,),
                routed_to=self.agency,
                known_keys=self.keyring.known,
                seal_key_for=lambda code: self.seal_key if code == self.agency else None,
            )
        except env.EnvelopeError as exc:
            log.warning(
                "refused a message into %s: %s", self.names.dead_letter_queue(self.agency), exc.message
            )
            self.rejected.append((str(exc.envelope.get("message_id") or ""), exc.reason))
            return amqp.Decision.REJECT
        message_id = envelope["message_id"]
        if message_id in self._seen:
            return amqp.Decision.ACK
        try:
            callback(envelope)
        except Exception:
            log.exception("the callback failed on message %s; it is requeued", message_id)
            time.sleep(0.5)
            return amqp.Decision.RETRY
        self._seen[message_id] = None
        while len(self._seen) > 100_000:
            self._seen.popitem(last=False)
        return amqp.Decision.ACK
