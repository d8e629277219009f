"""Per-person data keys (crypto-shredding, docs/privacy.md): contact.v2 records, wrapped keys on
rapport.private.person-keys, the reader's replay of that topic, erasure notices."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest

from rapport_shared.private_contacts import (ContactRecordError, ContactRecordV1, DataKey, DataKeyUnavailable,
                                             ErasureNotice, Keyring, data_keys_from_records, decode_erasure,
                                             decode_person_key, decode_record, encode_contact, encode_person_key,
                                             encode_person_key_tombstone, wrap_data_key)
from rapport_shared.topics import ERASURES, PRIVATE_CONTACTS, PRIVATE_PERSON_KEYS

AT = datetime(2026, 1, 1, tzinfo=timezone.utc)
M1 = Keyring.from_config(json.dumps({"m1": base64.b64encode(b"1" * 32).decode()}), "m1")
M12 = Keyring.from_config(json.dumps({"m1": base64.b64encode(b"1" * 32).decode(),
                                      "m2": base64.b64encode(b"2" * 32).decode()}), "m2")


def contact(pid: str) -> ContactRecordV1:
    return ContactRecordV1(person_id=pid, email=f"{pid.lower()}@example.org", updated_at=AT)


def test_a_v2_record_decrypts_only_with_its_persons_data_key():
    dk = DataKey.generate()
    rec = encode_contact(contact("P-1"), M1, data_key=dk)
    assert rec.topic == PRIVATE_CONTACTS and rec.headers["rapport_record"] == "contact.v2"
    assert "rapport_kid" not in rec.headers and rec.headers["rapport_dek"] == dk.dek_id
    assert decode_record(rec.key, rec.value, rec.kafka_headers(), M1, {dk.dek_id: dk}) == contact("P-1")
    with pytest.raises(DataKeyUnavailable):  # the master key alone is not enough
        decode_record(rec.key, rec.value, rec.kafka_headers(), M1)
    other = DataKey(dk.dek_id, b"x" * 32)
    with pytest.raises(ContactRecordError):
        decode_record(rec.key, rec.value, rec.kafka_headers(), M1, {dk.dek_id: other})
    with pytest.raises(ContactRecordError):  # copied under another person's key
        decode_record(b"P-2", rec.value, rec.kafka_headers(), M1, {dk.dek_id: dk})


def test_legacy_v1_records_still_decode_with_the_master_key():
    rec = encode_contact(contact("P-1"), M1)
    assert rec.headers["rapport_record"] == "contact.v1"
    assert decode_record(rec.key, rec.value, rec.kafka_headers(), M1) == contact("P-1")


def test_wrapping_binds_person_and_key_id_and_rotation_rewraps():
    dk = DataKey.generate()
    w1 = wrap_data_key("P-1", dk, M1)
    assert w1.kid == "m1" and dk.key not in w1.wrapped
    assert w1.unwrap(M12) == dk
    w2 = wrap_data_key("P-1", w1.unwrap(M12), M12)  # rotation: the same data key, the new master key
    assert w2.kid == "m2" and w2.unwrap(M12) == dk
    with pytest.raises(ContactRecordError):
        w2.unwrap(M1)  # m2 unknown there
    moved = type(w1)("P-2", w1.dek_id, w1.kid, w1.wrapped)
    with pytest.raises(ContactRecordError):
        moved.unwrap(M1)


def test_replaying_the_keys_topic_forgets_an_erased_persons_key():
    a, b = DataKey.generate(), DataKey.generate()
    ka, kb = (encode_person_key(wrap_data_key(p, k, M1)) for p, k in (("P-a", a), ("P-b", b)))
    assert ka.topic == PRIVATE_PERSON_KEYS
    assert decode_person_key(ka.key, ka.value, ka.kafka_headers()).dek_id == a.dek_id
    tomb = encode_person_key_tombstone("P-a")
    assert decode_person_key(tomb.key, tomb.value, tomb.kafka_headers()) is None
    assert set(data_keys_from_records([ka, kb], M1)) == {a.dek_id, b.dek_id}
    after = data_keys_from_records([ka, kb, tomb], M1)
    assert set(after) == {b.dek_id}
    rec = encode_contact(contact("P-a"), M1, data_key=a)
    with pytest.raises(DataKeyUnavailable):
        decode_record(rec.key, rec.value, rec.kafka_headers(), M1, after)
    # without the master key the wrapped keys are useless
    assert data_keys_from_records([ka, kb], Keyring.development()) == {}


def test_erasure_notice_carries_only_id_organisation_and_time():
    n = ErasureNotice("P-1", "org-a", AT)
    rec = n.record()
    assert rec.topic == ERASURES and json.loads(rec.value) == {"person_id": "P-1", "organisation_id": "org-a",
                                                               "erased_at": AT.isoformat()}
    assert decode_erasure(rec.key, rec.value, rec.kafka_headers()) == n
    with pytest.raises(ContactRecordError):
        decode_erasure(b"P-2", rec.value, rec.kafka_headers())
    with pytest.raises(ContactRecordError):
        decode_erasure(rec.key, b"not json", rec.kafka_headers())
