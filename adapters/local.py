"""In-process transport for the single-machine default: the same envelopes as over RabbitMQ, delivered in-process.

A message addressed to an agency (``to`` set) is signed with the sender's key, encoded, held to the size limit
and put through the same receiving gate as a message off the broker (:func:`adapters.envelope.check`) before the
subscribed handler gets it; the handler (the engine's ``receive``) deduplicates by message id. A message with no
``to`` stays inside the engine: schema- and size-checked, not signed (it never leaves the process).

A record marked ``confidential`` (local metadata the engine puts on the outbox rows of a confidential process)
is sealed before it is signed (:func:`adapters.envelope.seal`, with the receiving agency's seal key) and opened
again after the signature check, as over the broker.

A message that cannot pass raises :class:`EnvelopeError`; the relay records it as an incident and does not
retry it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters import envelope as env
from adapters.agencies import Keyring, load
from adapters.transport import Handler

LOCAL_METADATA = ("from_instance", "from_element")
SEAL_MARK = env.SEAL_MARK


class LocalTransport:
    def __init__(self, keyring: Keyring | None = None, *, max_bytes: int = env.DEFAULT_MAX_BYTES) -> None:
        self._handlers: list[Handler] = []
        self._keyring = keyring
        self.max_bytes = max_bytes

    @property
    def keyring(self) -> Keyring:
        if self._keyring is None:
            self._keyring = Keyring(load())
        return self._keyring

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def publish(self, record: Mapping[str, Any]) -> None:
        if not self._handlers:
            raise RuntimeError("no receiver is subscribed to the local transport")
        checked = {**self.seal(record), **{k: record[k] for k in LOCAL_METADATA if k in record}}
        for handler in self._handlers:
            handler(checked)

    def seal(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The envelope as the receiving side will see it, after the same checks (raises EnvelopeError)."""
        envelope = {k: v for k, v in record.items() if k in env.FIELDS and k != "signature"}
        if envelope.get("to") is None:
            envelope.setdefault("signature", None)
            return env.decode(env.encode(envelope), self.max_bytes)
        signed = sign_for_sending(self.keyring, envelope, sealed=bool(record.get(SEAL_MARK)))
        return env.check(
            env.encode(signed),
            self.keyring.get,
            max_bytes=self.max_bytes,
            seal_key_for=self.keyring.seal_key,
        )


def sign_for_sending(
    keyring: Keyring, envelope: Mapping[str, Any], *, sealed: bool = False
) -> dict[str, Any]:
    """Check an outgoing envelope's addressing against the registry, seal its payload with the receiver's seal
    key when ``sealed``, and sign it with the sender's key."""
    name, sender, to = envelope.get("name"), envelope.get("from"), envelope.get("to")
    if not sender:
        raise env.EnvelopeError(
            "no_sender",
            f"message '{name}' names no sending agency: set caseflow:from on the throw, serve exactly one agency "
            "(CASEFLOW_AGENCIES) or give the instance a sender_agency variable",
            envelope,
        )
    if to not in keyring.registry:
        raise env.EnvelopeError(
            "unknown_agency", f"message '{name}' is addressed to unknown agency '{to}'", envelope
        )
    if sender not in keyring.registry:
        raise env.EnvelopeError(
            "unknown_agency", f"message '{name}' is sent by unknown agency '{sender}'", envelope
        )
    key = keyring.get(str(sender))
    if key is None:
        raise env.EnvelopeError("no_key", f"no signing key for the sending agency '{sender}'", envelope)
    if sealed:
        seal_key = keyring.seal_key(str(to))
        if seal_key is None:
            raise env.EnvelopeError(
                "no_seal_key",
                f"message '{name}' of a confidential process must be sealed, but there is no seal key for '{to}' "
                "(key.seal_env / key.seal_file in agencies.yaml); it is not sent",
                envelope,
            )
        envelope = env.seal(envelope, seal_key)
    env.validate({**envelope, "signature": None})
    return env.sign(envelope, key)
