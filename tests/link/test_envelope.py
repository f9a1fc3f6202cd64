"""Envelope v1: canonical form, signature, tamper detection, schema and the receiving gate (no broker)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from adapters import envelope as env
from adapters.agencies import Keyring, development_key, load
from engine.app import agencies
from engine.settings import Settings, SettingsError

KEY = development_key("market_regulation")


def _envelope(**overrides: object) -> dict[str, object]:
    built = env.build(
        "clue_transfer",
        sender="market_regulation",
        to="public_security",
        payload={"case_no": "HB-1", "summary": "无证经营"},
        correlation_keys={"case_no": "HB-1"},
        attachments=[env.attachment("现场照片.jpg", b"jpeg bytes")],
        message_id="m-1",
        sent_at=datetime(2026, 11, 26, 8, 0, tzinfo=UTC),
    )
    built.update(overrides)
    return built


def test_canonical_form_sorts_keys_is_compact_utf8_and_leaves_out_the_signature() -> None:
    e = env.sign(_envelope(), KEY)
    text = env.canonical(e).decode()
    assert '"signature"' not in text
    assert text.startswith('{"attachments":[{"name":"现场照片.jpg","sha256":"')
    assert ", " not in text and ": " not in text
    assert text == json.dumps(
        {k: v for k, v in e.items() if k != "signature"},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    # Key order of the input does not matter.
    assert env.canonical(dict(reversed(list(e.items())))) == env.canonical(e)


def test_signature_is_hmac_sha256_hex_and_verifies() -> None:
    import hashlib
    import hmac

    e = env.sign(_envelope(), KEY)
    assert e["signature"] == hmac.new(KEY, env.canonical(e), hashlib.sha256).hexdigest()
    assert env.verify(e, KEY)
    assert not env.verify(e, development_key("court"))
    env.validate(e)


@pytest.mark.parametrize(
    "field,value",
    [
        ("payload", {"case_no": "HB-1", "summary": "无证经营 "}),
        ("to", "court"),
        ("from", "court"),
        ("correlation_keys", {"case_no": "HB-2"}),
        ("name", "clue_transfer2"),
        ("message_id", "m-2"),
        ("sent_at", "2026-11-26T08:00:01+00:00"),
        ("attachments", []),
        ("business_key", "X"),
    ],
)
def test_any_change_to_a_signed_field_breaks_the_signature(field: str, value: object) -> None:
    e = env.sign(_envelope(), KEY)
    e[field] = value
    assert not env.verify(e, KEY)


def test_schema_rejects_missing_extra_and_wrong_fields() -> None:
    for broken in (
        {k: v for k, v in _envelope().items() if k != "payload"},
        {**_envelope(), "variables": {}},
        _envelope(schema_version=2),
        _envelope(to="Not An Agency"),
        _envelope(attachments=[{"name": "a", "sha256": "xyz", "size": 1}]),
        _envelope(payload=[]),
        _envelope(signature="abc"),
    ):
        with pytest.raises(env.EnvelopeError) as info:
            env.validate(broken)
        assert info.value.reason == "schema"


def _keys() -> Keyring:
    return Keyring(load())


@pytest.mark.parametrize(
    "body,reason",
    [
        (b"\xff\xfe not json", "not_json"),
        (b"[1, 2]", "schema"),
        (b'{"a": NaN}', "not_json"),
        (b"x" * 2048, "too_large"),
    ],
)
def test_gate_refuses_bytes_it_cannot_read(body: bytes, reason: str) -> None:
    keys = _keys()
    with pytest.raises(env.EnvelopeError) as info:
        env.check(body, keys.get, max_bytes=1024)
    assert info.value.reason == reason


def test_gate_accepts_a_signed_envelope_and_names_every_kind_of_bad_one() -> None:
    keys = _keys()
    good = env.sign(_envelope(), KEY)
    assert env.check(env.encode(good), keys.get, routed_to="public_security") == good

    def reason(e: dict[str, object], **kw: object) -> str:
        with pytest.raises(env.EnvelopeError) as info:
            env.check(env.encode(e), keys.get, known_keys=keys.known, **kw)  # type: ignore[arg-type]
        return info.value.reason

    forged = {**good, "signature": "0" * 64}
    assert reason(forged) == "bad_signature"
    wrong_from = env.sign(_envelope(**{"from": "court"}), KEY)  # claims court, signed by market regulation
    assert reason(wrong_from) == "wrong_sender"
    assert reason({**good, "signature": None}) == "unsigned"
    assert reason(env.sign(_envelope(**{"from": "nobody_here"}), KEY)) == "unknown_sender"
    assert reason(good, routed_to="court") == "misrouted"
    assert reason(good, served={"court"}) == "not_served"
    assert reason(env.sign(_envelope(to=None), KEY)) == "unaddressed"


def test_development_keys_are_deterministic_and_production_has_none() -> None:
    assert development_key("court") == development_key("court") != development_key("procuratorate")
    registry = load()
    assert Keyring(registry, environ={}).get("court") == development_key("court")
    prod = Keyring(registry, production=True, environ={"CASEFLOW_KEY_COURT": "k" * 40})
    assert prod.get("court") == b"k" * 40
    assert prod.get("procuratorate") is None
    with pytest.raises(ValueError, match="procuratorate"):
        prod.require(["court", "procuratorate"])


def test_production_refuses_to_start_without_real_keys_for_the_served_agencies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    production = Settings(
        database_url="postgresql://caseflow@db/caseflow", environment="production", agencies=("court",)
    )
    with pytest.raises(SettingsError, match="court"):
        agencies(production)
    monkeypatch.setenv("CASEFLOW_KEY_COURT", "k" * 40)
    _registry, served, keyring = agencies(production)
    assert served == ("court",) and keyring.key("court") == b"k" * 40
    assert keyring.get("procuratorate") is None  # never a development key in production
    with pytest.raises(SettingsError, match="nowhere"):
        agencies(Settings(agencies=("nowhere",)))
    assert agencies(Settings())[1] == load().district_codes()
