"""The notifier's contacts reader with per-person data keys (crypto-shredding, docs/privacy.md):
contact.v2 records decrypt with the key from rapport.private.person-keys, in either order of
arrival; a key tombstone (erasure) removes the key, the patient and anything parked; legacy
contact.v1 records still decode with the master keyring."""

from __future__ import annotations

import pytest

from rapport_notifier.adapters.contacts import apply_record
from rapport_shared.private_contacts import (ContactRecordV1, DataKey, Keyring, encode_contact, encode_person_key,
                                             encode_person_key_tombstone, encode_tombstone, wrap_data_key)

pytestmark = pytest.mark.integration


async def _apply(h, rec, kr):
    async with h.pool.acquire() as conn, conn.transaction():
        return await apply_record(conn, rec.key, rec.value, rec.kafka_headers(), kr, h.clock.now())


def _records(h, pid: str, kr: Keyring, email: str):
    dk = DataKey.generate()
    contact = ContactRecordV1(person_id=pid, email=email, channel_consent={"email": True}, updated_at=h.clock.now())
    return encode_person_key(wrap_data_key(pid, dk, kr)), encode_contact(contact, kr, data_key=dk)


async def test_key_then_contact_and_contact_then_key_both_apply(h):
    kr = Keyring.development()
    key, contact = _records(h, "P-dk-1", kr, "one@patients.test")
    assert await _apply(h, key, kr) == "key"
    assert await _apply(h, contact, kr) == "upserted"
    key2, contact2 = _records(h, "P-dk-2", kr, "two@patients.test")
    assert await _apply(h, contact2, kr) == "parked"  # the key is on the other topic, not read yet
    assert await h.val("SELECT email FROM patients WHERE person_id = 'P-dk-2'") is None
    assert await _apply(h, key2, kr) == "key"
    assert await h.val("SELECT email FROM patients WHERE person_id = 'P-dk-2'") == "two@patients.test"
    assert await h.val("SELECT count(*) FROM contact_pending") == 0
    # nothing in clear: the stored key is the wrapped one
    wrapped = await h.val("SELECT wrapped_key FROM contact_keys WHERE person_id = 'P-dk-1'")
    assert bytes(wrapped) == key.value


async def test_a_key_tombstone_erases_key_patient_and_parked_record(h):
    kr = Keyring.development()
    key, contact = _records(h, "P-dk-3", kr, "three@patients.test")
    await _apply(h, key, kr)
    await _apply(h, contact, kr)
    assert await _apply(h, encode_person_key_tombstone("P-dk-3"), kr) == "erased"
    assert await h.val("SELECT count(*) FROM patients WHERE person_id = 'P-dk-3'") == 0
    assert await h.val("SELECT count(*) FROM contact_keys WHERE person_id = 'P-dk-3'") == 0
    # a replaying reader meeting the old contact record after the tombstone cannot read it: parked,
    # never applied, and gone with the contact's own tombstone
    assert await _apply(h, contact, kr) == "parked"
    assert await h.val("SELECT count(*) FROM patients WHERE person_id = 'P-dk-3'") == 0
    assert await _apply(h, encode_tombstone("P-dk-3"), kr) == "erased"
    assert await h.val("SELECT count(*) FROM contact_pending WHERE person_id = 'P-dk-3'") == 0


async def test_legacy_records_and_rotated_master_keys_still_read(h):
    import base64
    import json

    old = Keyring.development()
    new_key = base64.b64encode(b"k" * 32).decode()
    both = Keyring.from_config(json.dumps({"dev-1": base64.b64encode(old.key("dev-1")).decode(), "k2": new_key}), "k2")
    legacy = encode_contact(ContactRecordV1(person_id="P-dk-4", email="four@patients.test", updated_at=h.clock.now()), old)
    assert await _apply(h, legacy, both) == "upserted"  # contact.v1: master key dev-1
    key, contact = _records(h, "P-dk-5", both, "five@patients.test")  # wrapped by k2
    assert await _apply(h, key, both) == "key" and await _apply(h, contact, both) == "upserted"
    # a key wrapped by a master key the notifier does not hold is refused, not stored
    key6, _ = _records(h, "P-dk-6", both, "six@patients.test")
    assert await _apply(h, key6, old) == "skipped"
    assert await h.val("SELECT count(*) FROM contact_keys WHERE person_id = 'P-dk-6'") == 0
