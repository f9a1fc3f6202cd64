"""The transfer envelope, version 1: build, canonical form, HMAC-SHA256 signature, schema and the receiving gate.

An envelope is a JSON object (schema: ``adapters/schemas/envelope-v1.json``)::

    {"schema_version": 1, "message_id": "…", "name": "clue_transfer", "from": "market_regulation",
     "to": "public_security", "business_key": null, "correlation_keys": {"case_no": "HB-1"},
     "payload": {"case_no": "HB-1", "summary": "…"}, "attachments": [{"name", "sha256", "size"}],
     "sent_at": "2026-11-26T08:00:00+00:00", "signature": "<64 hex>"}

The signature is HMAC-SHA256 (hex) with the sender's key over :func:`canonical`: the envelope without its
``signature`` field, keys sorted, compact separators, UTF-8 with non-ASCII characters unescaped.

A **sealed** envelope (a message thrown by a confidential process) carries ``payload: {}`` and
``sealed: {"alg": "AES-256-GCM", "nonce": b64, "ciphertext": b64}``: the canonical JSON of the payload encrypted
with the *receiving* agency's seal key (a secret separate from signing keys), with the canonical JSON of
``{message_id, name, from, to}`` as associated data (:func:`seal`, :func:`unseal`). Only the payload is sealed:
names, addresses and correlation keys stay readable for routing. The signature covers ``sealed`` too, and the
receiver opens the seal only after the signature checked out.

This module depends on nothing of the engine: the engine, the in-process transport, the RabbitMQ link and the
external-system SDK (``adapters/client.py``) all use it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import uuid
from collections.abc import Callable, Container, Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jsonschema import Draft202012Validator

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).parent / "schemas" / "envelope-v1.json"
DEFAULT_MAX_BYTES = 1024 * 1024
FIELDS = (
    "schema_version",
    "message_id",
    "name",
    "from",
    "to",
    "business_key",
    "correlation_keys",
    "payload",
    "attachments",
    "sent_at",
    "sealed",
    "signature",
)
SEAL_ALG = "AES-256-GCM"
SEAL_MARK = "confidential"  # local metadata on an outbox record: seal its payload before it leaves
SEAL_KEY_BYTES = 32
NONCE_BYTES = 12


class EnvelopeError(ValueError):
    """An envelope that cannot be accepted. ``reason`` is a short stable code; ``envelope`` what could be read."""

    def __init__(self, reason: str, message: str, envelope: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.envelope = dict(envelope) if isinstance(envelope, Mapping) else {}


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    return Draft202012Validator(schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def build(
    name: str,
    *,
    sender: str | None,
    to: str | None,
    payload: Mapping[str, Any] | None = None,
    correlation_keys: Mapping[str, Any] | None = None,
    business_key: str | None = None,
    attachments: Iterable[Mapping[str, Any]] = (),
    message_id: str | None = None,
    sent_at: datetime | None = None,
) -> dict[str, Any]:
    """An unsigned envelope (sign it with :func:`sign`)."""
    when = sent_at or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return {
        "schema_version": SCHEMA_VERSION,
        "message_id": message_id or str(uuid.uuid4()),
        "name": name,
        "from": sender,
        "to": to,
        "business_key": business_key,
        "correlation_keys": dict(correlation_keys or {}),
        "payload": dict(payload or {}),
        "attachments": [
            {"name": str(a["name"]), "sha256": str(a["sha256"]), "size": int(a["size"])} for a in attachments
        ],
        "sent_at": when.isoformat(),
    }


def attachment(name: str, content: bytes) -> dict[str, Any]:
    """Metadata of one attachment (the content itself travels elsewhere)."""
    return {"name": name, "sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}


def canonical(envelope: Mapping[str, Any]) -> bytes:
    """The bytes the signature covers: everything but ``signature``, sorted keys, compact, UTF-8."""
    body = {k: v for k, v in envelope.items() if k != "signature"}
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def signature_of(envelope: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, canonical(envelope), hashlib.sha256).hexdigest()


def sign(envelope: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """A copy of ``envelope`` carrying its signature with ``key``."""
    return {**envelope, "signature": signature_of(envelope, key)}


def verify(envelope: Mapping[str, Any], key: bytes) -> bool:
    given = envelope.get("signature")
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given, signature_of(envelope, key))


def _canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def associated_data(envelope: Mapping[str, Any]) -> bytes:
    """What a seal binds the ciphertext to: the canonical JSON of message_id, name, from and to."""
    return _canonical_json({k: envelope.get(k) for k in ("message_id", "name", "from", "to")})


def is_sealed(envelope: Mapping[str, Any]) -> bool:
    return isinstance(envelope.get("sealed"), Mapping)


def _aead(key: bytes) -> AESGCM:
    if len(key) != SEAL_KEY_BYTES:
        raise ValueError(f"a seal key must be {SEAL_KEY_BYTES} bytes, not {len(key)}")
    return AESGCM(key)


def seal(envelope: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """A copy of an unsigned ``envelope`` whose payload is encrypted with ``key`` (the receiver's seal key,
    32 bytes) into ``sealed``; ``payload`` becomes ``{}``. Sign the result afterwards."""
    nonce = os.urandom(NONCE_BYTES)
    plaintext = _canonical_json(dict(envelope.get("payload") or {}))
    ciphertext = _aead(key).encrypt(nonce, plaintext, associated_data(envelope))
    body = {k: v for k, v in envelope.items() if k != "signature"}
    body["payload"] = {}
    body["sealed"] = {
        "alg": SEAL_ALG,
        "nonce": base64.b64encode(nonce).decode("ascii"),
        "ciphertext": base64.b64encode(ciphertext).decode("ascii"),
    }
    return body


def unseal(envelope: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """A copy of a sealed ``envelope`` with its payload decrypted (``sealed`` is kept, so the original is the copy
    with ``payload: {}``). Raises :class:`EnvelopeError` (reason ``bad_seal``) when it does not decrypt."""
    sealed = envelope.get("sealed")
    if not isinstance(sealed, Mapping):
        return dict(envelope)
    bad = EnvelopeError(
        "bad_seal",
        f"sealed message '{envelope.get('message_id')}' does not decrypt with the seal key of "
        f"'{envelope.get('to')}' (wrong key, or ciphertext, nonce or addressing altered)",
        envelope,
    )
    if sealed.get("alg") != SEAL_ALG:
        raise bad
    try:
        nonce = base64.b64decode(str(sealed.get("nonce")), validate=True)
        ciphertext = base64.b64decode(str(sealed.get("ciphertext")), validate=True)
        plaintext = _aead(key).decrypt(nonce, ciphertext, associated_data(envelope))
        payload = json.loads(plaintext.decode("utf-8"), parse_constant=_no_constant)
    except (binascii.Error, InvalidTag, ValueError, UnicodeDecodeError, RecursionError):
        raise bad from None
    if not isinstance(payload, dict):
        raise bad
    return {**envelope, "payload": payload}


def validate(envelope: Any) -> None:
    """Raise :class:`EnvelopeError` (reason ``schema``) unless ``envelope`` satisfies envelope-v1.json."""
    errors = sorted(_validator().iter_errors(envelope), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(envelope)"
        raise EnvelopeError(
            "schema",
            f"envelope does not match schema v{SCHEMA_VERSION} at {where}: {first.message[:300]}",
            envelope if isinstance(envelope, Mapping) else None,
        )


def encode(envelope: Mapping[str, Any]) -> bytes:
    """Wire form: compact JSON, UTF-8."""
    return json.dumps(
        dict(envelope), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def decode(body: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """Bytes off the wire -> a schema-valid envelope; the size limit is checked before anything is parsed."""
    if len(body) > max_bytes:
        raise EnvelopeError("too_large", f"message is {len(body)} bytes; the limit is {max_bytes}")
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EnvelopeError("not_json", f"message is not UTF-8 JSON: {str(exc)[:200]}") from None
    except RecursionError:
        raise EnvelopeError("not_json", "message nests too deeply") from None
    if not isinstance(value, dict):
        raise EnvelopeError("schema", f"message is JSON {type(value).__name__}, not an object")
    validate(value)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def check(
    body: bytes,
    key_for: Callable[[str], bytes | None],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    served: Container[str] | None = None,
    routed_to: str | None = None,
    known_keys: Callable[[], Iterable[tuple[str, bytes]]] | None = None,
    seal_key_for: Callable[[str], bytes | None] | None = None,
) -> dict[str, Any]:
    """The receiving gate: size, JSON, schema, addressing, sender's key and signature, then the seal.

    ``key_for(code)`` returns an agency's key (None: unknown agency). ``served`` are the agencies this receiver
    accepts mail for; ``routed_to`` the agency whose queue the message came from. ``known_keys`` (optional)
    lets a bad signature be diagnosed as ``wrong_sender`` when another agency's key made it.
    ``seal_key_for(code)`` returns the receiving agency's seal key: a sealed envelope comes back with its payload
    decrypted (``bad_seal`` when it does not decrypt, ``no_seal_key`` without a key); without it a sealed
    envelope is returned still sealed.
    """
    envelope = decode(body, max_bytes)
    sender, to = envelope.get("from"), envelope.get("to")
    if sender is None or to is None:
        raise EnvelopeError("unaddressed", "a transferred message must name both 'from' and 'to'", envelope)
    if routed_to is not None and to != routed_to:
        raise EnvelopeError(
            "misrouted", f"message for '{to}' arrived in the queue of '{routed_to}'", envelope
        )
    if served is not None and to not in served:
        raise EnvelopeError("not_served", f"this receiver does not serve agency '{to}'", envelope)
    if envelope.get("signature") is None:
        raise EnvelopeError("unsigned", "message carries no signature", envelope)
    key = key_for(sender)
    if key is None:
        raise EnvelopeError("unknown_sender", f"'{sender}' is not a known agency", envelope)
    if not verify(envelope, key):
        if known_keys is not None:
            for code, other in known_keys():
                if code != sender and verify(envelope, other):
                    raise EnvelopeError(
                        "wrong_sender",
                        f"message claims to be from '{sender}' but is signed with the key of '{code}'",
                        envelope,
                    )
        raise EnvelopeError(
            "bad_signature", f"signature does not match the key of the sender '{sender}'", envelope
        )
    if seal_key_for is not None and is_sealed(envelope):
        seal_key = seal_key_for(str(to))
        if seal_key is None:
            raise EnvelopeError("no_seal_key", f"no seal key for '{to}' to open the sealed message", envelope)
        return unseal(envelope, seal_key)
    return envelope


def summary(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """What an incident records about a rejected message (never its payload)."""
    return {k: envelope.get(k) for k in ("message_id", "name", "from", "to")}
