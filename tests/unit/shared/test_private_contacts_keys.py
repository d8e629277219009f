"""The contacts reader survives any record (issue 11, item 6): a key that is not a person id
(non-UTF-8, huge, tombstone or not), headers that are not UTF-8, a value that does not decrypt —
each is a ContactRecordError (logged and skipped by the reader), never another exception that
would restart the reader on the same record for ever. No contact data in the error text."""

import base64
import json
import os
from datetime import datetime, timezone

import pytest

from rapport_shared.private_contacts import (
    ContactRecordError,
    ContactRecordV1,
    Keyring,
    decode_record,
    encode_contact,
    encode_tombstone,
    person_id_of,
)

pytestmark = pytest.mark.unit

RING = Keyring.from_config(json.dumps({"k1": base64.b64encode(os.urandom(32)).decode()}), "k1")
CONTACT = ContactRecordV1(person_id="P-42", email="grace@example.org", phone="+15555550100",
                          updated_at=datetime(2026, 3, 1, tzinfo=timezone.utc))


@pytest.mark.parametrize("key", [b"\xff\xfe", b"P-\xc3", b"P" * 100_000, b"P 42", b"grace@example.org", b"P-\x00", None, b""])
@pytest.mark.parametrize("tombstone", [True, False])
def test_a_key_that_is_not_a_person_id_is_refused_even_on_a_tombstone(key, tombstone):
    good = encode_tombstone("P-42") if tombstone else encode_contact(CONTACT, RING)
    with pytest.raises(ContactRecordError) as err:
        decode_record(key, good.value, good.kafka_headers(), RING)
    assert "grace" not in str(err.value) and (key is None or len(str(err.value)) < 200)


def test_person_id_of_a_valid_key():
    assert person_id_of(b"P-7f3a") == "P-7f3a"


@pytest.mark.parametrize("headers", [
    [("rapport_record", b"\xff"), ("rapport_alg", b"A256GCM"), ("rapport_kid", b"k1")],
    [("rapport_record", b"contact.v1"), ("rapport_alg", b"A256GCM"), ("rapport_kid", b"\xff\xfe")],
    [("rapport_record", None)],
    [(b"rapport_record", b"contact.v1")],
    [("rapport_record",)],
    None,
])
def test_headers_of_any_shape_are_a_contact_record_error(headers):
    rec = encode_contact(CONTACT, RING)
    with pytest.raises(ContactRecordError):
        decode_record(rec.key, rec.value, headers, RING)


@pytest.mark.parametrize("value", [b"", b"x" * 12, os.urandom(64), os.urandom(100_000)])
def test_a_value_that_does_not_decrypt_is_a_contact_record_error(value):
    rec = encode_contact(CONTACT, RING)
    with pytest.raises(ContactRecordError):
        decode_record(rec.key, value, rec.kafka_headers(), RING)


def _sealed(plaintext: bytes, person_id="P-42") -> tuple[bytes, list]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    nonce = os.urandom(12)
    aad = f"rapport.private.contacts/v1|k1|{person_id}".encode()
    return nonce + AESGCM(RING.key("k1")).encrypt(nonce, plaintext, aad), encode_contact(CONTACT, RING).kafka_headers()


def test_plaintext_that_is_not_a_contact_names_fields_but_never_the_data():
    value, headers = _sealed(json.dumps({"person_id": "P-42", "email": "secret@example.org",
                                         "quiet_hours": {"start": "secret-start"}, "updated_at": "x"}).encode())
    with pytest.raises(ContactRecordError) as err:
        decode_record(b"P-42", value, headers, RING)
    assert "secret" not in str(err.value) and "updated_at" in str(err.value)


def test_a_nul_character_that_postgres_cannot_store_is_refused():
    value, headers = _sealed(json.dumps({"person_id": "P-42", "email": "a\u0000b@example.org",
                                         "updated_at": "2026-03-01T00:00:00Z"}).encode())
    with pytest.raises(ContactRecordError):
        decode_record(b"P-42", value, headers, RING)


class FakeConn:
    def __init__(self):
        self.statements = []

    async def execute(self, sql, *args):
        self.statements.append((sql, args))


@pytest.mark.parametrize("key", [b"\xff\xfe\xfd", b"P" * 10_000])
async def test_the_notifier_reader_skips_a_tombstone_with_a_bad_key(key):
    """The reader's own per-record step (rapport_notifier.adapters.contacts.apply_record): before,
    a non-UTF-8 tombstone key raised UnicodeDecodeError there, the batch failed and the reader
    restarted on the same record for ever, stopping every later erasure."""
    from rapport_notifier.adapters.contacts import apply_record

    conn = FakeConn()
    t = encode_tombstone("P-42")
    assert await apply_record(conn, key, None, t.kafka_headers(), RING, None) == "skipped"
    assert conn.statements == []
    # and the next, valid tombstone is applied
    assert await apply_record(conn, t.key, None, t.kafka_headers(), RING, None) == "erased"
    assert [args for _, args in conn.statements] == [("P-42",), ("P-42",)]
