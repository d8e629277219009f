"""The private contacts record format (rapport_shared.private_contacts): encrypted values keyed by
person id, key ids in headers so keys rotate, tombstones for erasure."""

import base64
import json
import os
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from rapport_shared.http.auth import TokenIssuer
from rapport_shared.private_contacts import (
    DEV_KEYS_JSON,
    ContactRecordError,
    ContactRecordV1,
    Keyring,
    decode_record,
    encode_contact,
    encode_tombstone,
)
from rapport_shared.topics import PRIVATE_CONTACTS, SHARED_TOPICS
from rapport_intake.settings import IntakeSettings

pytestmark = pytest.mark.unit


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def ring(active="k1", **keys) -> Keyring:
    return Keyring.from_config(json.dumps(keys or {"k1": key()}), active)


CONTACT = ContactRecordV1(person_id="P-42", name="Grace Hopper", email="grace@example.org", phone="+15555550100",
                          channel_consent={"email": True, "sms": True}, preferred_channel="sms",
                          updated_at=datetime(2026, 3, 1, tzinfo=timezone.utc))


def test_a_record_round_trips_and_hides_everything_personal():
    kr = ring()
    rec = encode_contact(CONTACT, kr)
    assert rec.key == b"P-42" and rec.headers == {"rapport_record": "contact.v1", "rapport_alg": "A256GCM", "rapport_kid": "k1"}
    for secret in (b"Grace", b"Hopper", b"grace@example.org", b"5555550100"):
        assert secret not in rec.value and secret not in json.dumps(rec.headers).encode()
    assert decode_record(rec.key, rec.value, rec.kafka_headers(), kr) == CONTACT


def test_each_value_has_its_own_nonce():
    kr = ring()
    assert encode_contact(CONTACT, kr).value != encode_contact(CONTACT, kr).value


def test_a_tombstone_has_a_null_value_and_decodes_to_none():
    t = encode_tombstone("P-42")
    assert t.key == b"P-42" and t.value is None and t.headers["rapport_erased"] == "true"
    assert decode_record(t.key, t.value, t.headers, ring()) is None


def test_keys_rotate_by_key_id():
    k1, k2 = key(), key()
    old = encode_contact(CONTACT, ring("k1", k1=k1))
    new_ring = ring("k2", k1=k1, k2=k2)
    assert decode_record(old.key, old.value, old.headers, new_ring) == CONTACT  # old values still readable
    new = encode_contact(CONTACT, new_ring)
    assert new.headers["rapport_kid"] == "k2"
    with pytest.raises(ContactRecordError, match="unknown contacts key id 'k2'"):
        decode_record(new.key, new.value, new.headers, ring("k1", k1=k1))


def test_a_tampered_value_is_refused():
    kr = ring()
    rec = encode_contact(CONTACT, kr)
    flipped = rec.value[:-1] + bytes([rec.value[-1] ^ 1])
    with pytest.raises(ContactRecordError, match="does not decrypt"):
        decode_record(rec.key, flipped, rec.headers, kr)


def test_a_value_moved_under_another_persons_key_does_not_decrypt():
    kr = ring()
    rec = encode_contact(CONTACT, kr)
    with pytest.raises(ContactRecordError, match="does not decrypt"):
        decode_record(b"P-43", rec.value, rec.headers, kr)


def test_a_value_relabelled_with_another_key_id_does_not_decrypt():
    k = key()
    kr = ring("a", a=k, b=k)  # even the same key bytes: the key id is bound in
    rec = encode_contact(CONTACT, kr)
    with pytest.raises(ContactRecordError):
        decode_record(rec.key, rec.value, {**rec.headers, "rapport_kid": "b"}, kr)


@pytest.mark.parametrize("headers", [{}, {"rapport_record": "contact.v2"}, {"ce_type": "rapport.intake.completed.v1"}])
def test_records_of_another_format_are_refused(headers):
    with pytest.raises(ContactRecordError):
        decode_record(b"P-1", b"x" * 40, headers, ring())


def test_keyring_validation():
    with pytest.raises(ValueError, match="32 bytes"):
        Keyring.from_config(json.dumps({"k": base64.b64encode(b"short").decode()}), "k")
    with pytest.raises(ValueError, match="not in the keyring"):
        Keyring.from_config(json.dumps({"k": key()}), "other")
    with pytest.raises(ValueError, match="not JSON"):
        Keyring.from_config("k=abc", "k")
    urlsafe = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    assert Keyring.from_config(json.dumps({"k": urlsafe}), "k").key_ids == ("k",)


def test_the_development_key_is_refused_in_production(monkeypatch, tmp_path):
    # Production verifies tokens with the issuer's public keys (a JWKS), never a shared secret.
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(TokenIssuer.generate("prod-key-1").jwks()))
    monkeypatch.setenv("RAPPORT_AUTH_JWKS", str(jwks))
    # ... and verified TLS to Postgres, SASL_SSL to Kafka (production's other refusals)
    monkeypatch.setenv("RAPPORT_DATABASE_DSN", "postgresql://u:p@db:5432/rapport?sslmode=verify-full")
    monkeypatch.setenv("RAPPORT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("RAPPORT_KAFKA_SASL_USERNAME", "intake")
    with pytest.raises(ValidationError, match="RAPPORT_CONTACTS_KEYS"):
        IntakeSettings(environment="production")
    monkeypatch.setenv("RAPPORT_CONTACTS_KEYS", json.dumps({"2026-03": key()}))
    monkeypatch.setenv("RAPPORT_CONTACTS_ACTIVE_KEY", "2026-03")
    assert IntakeSettings(environment="production").keyring().active == "2026-03"
    assert ring().is_development() is False and Keyring.from_config(DEV_KEYS_JSON, "dev-1").is_development()


def test_the_private_topic_is_never_a_shared_topic():
    assert PRIVATE_CONTACTS == "rapport.private.contacts" and PRIVATE_CONTACTS not in SHARED_TOPICS


def test_contact_person_id_is_pseudonymous():
    with pytest.raises(ValidationError):
        ContactRecordV1(person_id="grace@example.org", updated_at=datetime(2026, 1, 1, tzinfo=timezone.utc))


def test_language_is_carried_and_records_written_before_it_still_decode():
    kr = ring()
    with_lang = CONTACT.model_copy(update={"language": "es"})
    rec = encode_contact(with_lang, kr)
    assert decode_record(rec.key, rec.value, rec.kafka_headers(), kr).language == "es"
    # a v1 record from before the field existed: its plaintext has no "language" at all
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    old = json.loads(CONTACT.model_dump_json())
    old.pop("language")
    nonce = os.urandom(12)
    value = nonce + AESGCM(kr.key("k1")).encrypt(nonce, json.dumps(old).encode(), b"rapport.private.contacts/v1|k1|P-42")
    decoded = decode_record(b"P-42", value, rec.kafka_headers(), kr)
    assert decoded.language is None and decoded.email == CONTACT.email


def test_intake_puts_a_validated_language_on_the_record():
    from rapport_intake.domain.commands import RecordContact
    from rapport_intake.domain.model import contact_record

    cmd = RecordContact(email="a@example.org", channel_consent={"email": True}, language=" ES ")
    assert contact_record(cmd, "P-1", datetime(2026, 3, 1, tzinfo=timezone.utc)).language == "es"
    assert contact_record(RecordContact(email="a@example.org"), "P-1", datetime(2026, 3, 1, tzinfo=timezone.utc)).language is None
    for bad in ("english", "e", "en_GB", "12"):
        with pytest.raises(ValidationError) as e:
            RecordContact(language=bad)
        assert e.value.errors()[0]["loc"] == ("language",)
