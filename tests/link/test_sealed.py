"""The sealed channel: payloads of confidential processes travel encrypted for the receiving agency.

Unit tests of :func:`adapters.envelope.seal` / :func:`unseal` and the receiving gate, the in-process transport,
and over the real RabbitMQ a confidential transfer to ``discipline_commission`` read raw off the broker.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters import amqp
from adapters import envelope as env
from adapters.agencies import (
    AgencyError,
    Keyring,
    development_key,
    development_seal_key,
    load,
    parse_seal_key,
)
from adapters.client import AgencyClient
from adapters.local import LocalTransport, sign_for_sending
from tests.link.support import (
    FIXTURES,
    Broker,
    app_for,
    broker_fixture,  # noqa: F401 - the broker fixture
    incidents,
    instances,
    wait_for,
)

CLUE = "某局科长收受红包，线索人：张某"
SENDER, RECEIVER = "market_regulation", "discipline_commission"


def _built(payload: dict[str, Any] | None = None) -> dict[str, Any]:
    return env.build(
        "link_discipline_clue",
        sender=SENDER,
        to=RECEIVER,
        payload=payload if payload is not None else {"case_no": "HB-7", "clue_summary": CLUE},
        correlation_keys={"case_no": "HB-7"},
    )


def _sealed_and_signed(**changes: Any) -> dict[str, Any]:
    sealed = env.seal(_built(), development_seal_key(RECEIVER))
    sealed.update(changes)
    return env.sign(sealed, development_key(SENDER))


def _flip(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[0] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


# ---------------------------------------------------------------------- unit: seal and unseal
def test_a_sealed_envelope_carries_no_payload_in_clear_and_opens_with_the_receivers_key() -> None:
    key = development_seal_key(RECEIVER)
    sealed = env.seal(_built(), key)
    assert sealed["payload"] == {}
    assert sealed["sealed"]["alg"] == "AES-256-GCM"
    assert len(base64.b64decode(sealed["sealed"]["nonce"])) == 12
    body = env.encode(env.sign(sealed, development_key(SENDER)))
    assert CLUE not in body.decode() and "HB-7" in body.decode()  # the correlation key stays clear
    env.validate(env.decode(body))
    opened = env.unseal(env.decode(body), key)
    assert opened["payload"] == {"case_no": "HB-7", "clue_summary": CLUE}
    assert {**opened, "payload": {}} == env.decode(body)  # the sealed original is the copy without payload


def test_each_seal_uses_a_fresh_nonce() -> None:
    key = development_seal_key(RECEIVER)
    first, second = env.seal(_built(), key), env.seal(_built(), key)
    assert first["sealed"]["nonce"] != second["sealed"]["nonce"]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(
            lambda s: {**s, "sealed": {**s["sealed"], "ciphertext": _flip(s["sealed"]["ciphertext"])}},
            id="ciphertext",
        ),
        pytest.param(
            lambda s: {**s, "sealed": {**s["sealed"], "nonce": _flip(s["sealed"]["nonce"])}}, id="nonce"
        ),
        pytest.param(lambda s: {**s, "name": "another_message"}, id="name"),
        pytest.param(lambda s: {**s, "message_id": "m-other"}, id="message_id"),
        pytest.param(lambda s: {**s, "from": "urban_management"}, id="from"),
        pytest.param(lambda s: {**s, "to": "court"}, id="to"),
        pytest.param(
            lambda s: {**s, "sealed": {**s["sealed"], "ciphertext": "!!not base64!!"}}, id="garbage"
        ),
        pytest.param(lambda s: {**s, "sealed": {**s["sealed"], "alg": "none"}}, id="alg"),
    ],
)
def test_a_tampered_seal_is_refused(tamper: Any) -> None:
    sealed = env.seal(_built(), development_seal_key(RECEIVER))
    with pytest.raises(env.EnvelopeError) as caught:
        env.unseal(tamper(sealed), development_seal_key(RECEIVER))
    assert caught.value.reason == "bad_seal"


def test_the_wrong_key_is_refused() -> None:
    sealed = env.seal(_built(), development_seal_key(RECEIVER))
    for wrong in (development_seal_key("court"), development_key(RECEIVER)):
        with pytest.raises(env.EnvelopeError) as caught:
            env.unseal(sealed, wrong)
        assert caught.value.reason == "bad_seal"


def test_the_gate_checks_the_signature_first_then_opens_the_seal() -> None:
    keys = Keyring(load())
    good = _sealed_and_signed()
    opened = env.check(env.encode(good), keys.get, seal_key_for=keys.seal_key)
    assert opened["payload"]["clue_summary"] == CLUE
    # without seal_key_for the envelope comes back still sealed
    assert env.check(env.encode(good), keys.get)["payload"] == {}
    # a ciphertext altered in transit breaks the signature: refused before the seal is looked at
    altered = {**good, "sealed": {**good["sealed"], "ciphertext": _flip(good["sealed"]["ciphertext"])}}
    with pytest.raises(env.EnvelopeError) as caught:
        env.check(env.encode(altered), keys.get, seal_key_for=keys.seal_key)
    assert caught.value.reason == "bad_signature"
    # a sender who signs a seal that does not open (wrong key, altered bytes) is refused as bad_seal
    resigned = env.sign(altered, development_key(SENDER))
    with pytest.raises(env.EnvelopeError) as caught:
        env.check(env.encode(resigned), keys.get, seal_key_for=keys.seal_key)
    assert caught.value.reason == "bad_seal"


def test_the_schema_requires_an_empty_payload_next_to_a_seal() -> None:
    sealed = _sealed_and_signed()
    with pytest.raises(env.EnvelopeError) as caught:
        env.validate({**sealed, "payload": {"clue_summary": CLUE}})
    assert caught.value.reason == "schema"
    with pytest.raises(env.EnvelopeError):
        env.validate({**sealed, "sealed": {**sealed["sealed"], "extra": 1}})


def test_seal_keys_are_separate_from_signing_keys_and_read_from_the_environment() -> None:
    registry = load()
    assert development_seal_key(RECEIVER) != development_key(RECEIVER)
    assert registry.get(RECEIVER).receives_sealed
    hex_key = "ab" * 32
    keyring = Keyring(registry, environ={"CASEFLOW_SEAL_KEY_DISCIPLINE_COMMISSION": hex_key})
    assert keyring.seal_key(RECEIVER) == bytes.fromhex(hex_key)
    assert parse_seal_key(base64.b64encode(b"k" * 32).decode(), "x") == b"k" * 32
    with pytest.raises(AgencyError, match="seal key of 'x'"):
        parse_seal_key("too short", "x")


def test_production_requires_a_seal_key_for_an_agency_that_receives_sealed_messages() -> None:
    registry = load()
    signing = {"CASEFLOW_KEY_DISCIPLINE_COMMISSION": "s" * 40, "CASEFLOW_KEY_MARKET_REGULATION": "m" * 40}
    keyring = Keyring(registry, production=True, environ=signing)
    assert keyring.seal_key(RECEIVER) is None
    with pytest.raises(AgencyError, match="no seal key configured for: discipline_commission"):
        keyring.require([RECEIVER])
    keyring.require([SENDER])  # declares no seal key source: only its signing key is needed
    # a sender in production without the receiver's seal key refuses to send in clear
    with pytest.raises(env.EnvelopeError) as caught:
        sign_for_sending(keyring, _built(), sealed=True)
    assert caught.value.reason == "no_seal_key"
    ready = Keyring(
        registry, production=True, environ={**signing, "CASEFLOW_SEAL_KEY_DISCIPLINE_COMMISSION": "cd" * 32}
    )
    ready.require([RECEIVER])


# ---------------------------------------------------------------------- in-process transport
def test_the_in_process_transport_seals_a_confidential_record_and_hands_over_the_payload_in_clear() -> None:
    transport = LocalTransport(Keyring(load()))
    got: list[dict[str, Any]] = []
    transport.subscribe(lambda e: got.append(dict(e)))
    transport.publish({**_built(), "from_instance": "i-1", env.SEAL_MARK: True})
    transport.publish({**_built(), "from_instance": "i-2"})
    confidential, plain = got
    assert confidential["payload"]["clue_summary"] == CLUE and env.is_sealed(confidential)
    assert plain["payload"]["clue_summary"] == CLUE and not env.is_sealed(plain)


# ---------------------------------------------------------------------- over RabbitMQ
@pytest.fixture(name="commission")
def commission_fixture(broker: Broker) -> Iterator[Broker]:
    """The broker namespace with an inbox for the discipline commission as well."""
    amqp.apply(broker.url, broker.names, (RECEIVER,))
    yield broker
    broker.cleanup((RECEIVER,))


def _deploy(app: Any, confidential: bool) -> str:
    text = (FIXTURES / "confidential_clue.bpmn").read_text(encoding="utf-8")
    key = "link_confidential_clue"
    if not confidential:
        text = text.replace('caseflow:confidential="true"', "").replace(key, "link_plain_clue")
        key = "link_plain_clue"
    app.engine.deploy([(f"{key}.bpmn", text.encode())], name=key, source="tests", actor="test")
    return key


def _transfer(app: Any, commission: Broker, key: str, case_no: str) -> bytes:
    app.engine.start(
        key=key,
        business_key=case_no,
        variables={"case_no": case_no, "clue_summary": CLUE, "sender_agency": SENDER},
    )
    inbox = commission.names.inbox(RECEIVER)
    wait_for(lambda: commission.count(inbox) >= 1, 30, "the transfer in the commission's inbox")
    [(_properties, body)] = commission.drain(inbox)
    return body


def test_a_confidential_transfer_is_sealed_on_the_broker_and_the_sdk_opens_it(
    tmp_path: Path, commission: Broker
) -> None:
    app = app_for((f"sqlite:///{tmp_path / 'a.db'}", None), commission, (SENDER,))
    assert app.link is not None
    key = _deploy(app, confidential=True)
    app.link.start()
    client = AgencyClient(RECEIVER, commission.url, prefix=commission.names.prefix)
    received: list[dict[str, Any]] = []

    def on_transfer(envelope: dict[str, Any]) -> None:
        received.append(envelope)
        client.reply(envelope, "link_discipline_registered", {"case_no": envelope["payload"]["case_no"]})

    stop = threading.Event()
    thread = threading.Thread(target=client.run, args=(on_transfer, stop))
    try:
        body = _transfer(app, commission, key, "HB-S-1")  # read raw, before the SDK runs
        text = body.decode("utf-8")
        assert CLUE not in text and "收受红包" not in text
        raw = env.decode(body)
        assert raw["payload"] == {} and raw["sealed"]["alg"] == "AES-256-GCM"
        assert raw["correlation_keys"] == {"case_no": "HB-S-1"}
        assert env.verify(raw, development_key(SENDER))
        commission.publish(RECEIVER, body)  # back into the inbox for the SDK
        thread.start()
        wait_for(lambda: received, 30, "the SDK callback")
        assert received[0]["payload"] == {"case_no": "HB-S-1", "clue_summary": CLUE, "sender_agency": SENDER}
        wait_for(lambda: instances(app.engine, key)[0].state == "completed", 30, "the registration reply")
        # a seal that the sender signed but that does not open is dead-lettered by the SDK as bad_seal
        bad = env.seal(_built(), development_seal_key("court"))
        commission.publish(RECEIVER, env.encode(env.sign(bad, development_key(SENDER))))
        wait_for(lambda: client.rejected, 30, "the refusal")
        assert client.rejected == [(bad["message_id"], "bad_seal")]
        assert commission.count(commission.names.dead_letter_queue(RECEIVER)) == 1
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(15)
        app.link.stop()
    assert incidents(app.engine) == []


def test_a_transfer_of_a_process_that_is_not_confidential_is_not_sealed(
    tmp_path: Path, commission: Broker
) -> None:
    app = app_for((f"sqlite:///{tmp_path / 'a.db'}", None), commission, (SENDER,))
    assert app.link is not None
    key = _deploy(app, confidential=False)
    app.link.start()
    try:
        body = _transfer(app, commission, key, "HB-P-1")
    finally:
        app.link.stop()
    raw = env.decode(body)
    assert "sealed" not in raw and raw["payload"]["clue_summary"] == CLUE


def test_the_engine_consumer_opens_a_sealed_reply_and_dead_letters_one_that_does_not_open(
    tmp_path: Path, commission: Broker
) -> None:
    app = app_for((f"sqlite:///{tmp_path / 'a.db'}", None), commission, (SENDER,))
    assert app.link is not None
    key = _deploy(app, confidential=True)
    app.link.start()
    client = AgencyClient(RECEIVER, commission.url, prefix=commission.names.prefix)
    try:
        _transfer(app, commission, key, "HB-S-2")
        broken = env.seal(
            env.build(
                "link_discipline_registered",
                sender=RECEIVER,
                to=SENDER,
                payload={"case_no": "HB-S-2"},
                correlation_keys={"case_no": "HB-S-2"},
            ),
            development_seal_key("court"),
        )
        commission.publish(SENDER, env.encode(env.sign(broken, development_key(RECEIVER))))
        wait_for(lambda: incidents(app.engine), 30, "the bad_seal incident")
        [found] = incidents(app.engine)
        assert found.details["reason"] == "bad_seal" and found.details["message_id"] == broken["message_id"]
        assert commission.count(commission.names.dead_letter_queue(SENDER)) == 1
        # a reply the SDK seals for market_regulation is opened by the engine and correlates
        client.send(
            "link_discipline_registered",
            SENDER,
            {"case_no": "HB-S-2", "registration_no": "纪登-1"},
            correlation_keys={"case_no": "HB-S-2"},
            seal=True,
        )
        wait_for(lambda: instances(app.engine, key)[0].state == "completed", 30, "the sealed reply")
    finally:
        app.link.stop()


def test_an_engine_without_a_broker_seals_the_transfers_of_a_confidential_process(tmp_path: Path) -> None:
    app = app_for((f"sqlite:///{tmp_path / 'a.db'}", None), None, (SENDER,))
    assert app.link is None
    seen: list[dict[str, Any]] = []
    app.transport.subscribe(lambda e: seen.append(dict(e)))
    for confidential in (True, False):
        key = _deploy(app, confidential)
        app.engine.start(
            key=key,
            business_key=f"HB-L-{confidential}",
            variables={"case_no": f"HB-L-{confidential}", "clue_summary": CLUE, "sender_agency": SENDER},
        )
    app.engine.relay_outbox(app.transport.publish)
    by_case = {e["correlation_keys"]["case_no"]: e for e in seen}
    assert env.is_sealed(by_case["HB-L-True"]) and not env.is_sealed(by_case["HB-L-False"])
    assert by_case["HB-L-True"]["payload"]["clue_summary"] == CLUE


def test_an_expired_sealed_message_is_dead_lettered_still_sealed(tmp_path: Path, broker: Broker) -> None:
    app = app_for((f"sqlite:///{tmp_path / 'a.db'}", None), broker, (SENDER,))
    assert app.link is not None
    keys = Keyring(load())
    sealed = env.sign(
        env.seal({**_built(), "to": SENDER, "from": RECEIVER}, development_seal_key(SENDER)),
        development_key(RECEIVER),
    )
    opened = env.check(env.encode(sealed), keys.get, seal_key_for=keys.seal_key)
    assert opened["payload"]["clue_summary"] == CLUE
    try:
        queue = app.link.dead_letter(opened)
    finally:
        app.link.stop()
    [(_properties, body)] = broker.drain(queue)
    assert CLUE not in body.decode("utf-8")
    assert env.decode(body) == sealed and env.verify(env.decode(body), development_key(RECEIVER))
