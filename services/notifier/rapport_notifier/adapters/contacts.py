"""Reads the private contacts path (compacted, encrypted; ``rapport_shared.private_contacts``)
into the ``patients`` table. Two topics, one consumer (group ``<group>-contacts``):

* ``rapport.private.person-keys``: each person's data key, wrapped by the master key, kept here
  wrapped (``contact_keys``); a tombstone (erasure: the key was destroyed) deletes the key, the
  patient row and anything parked for the person;
* ``rapport.private.contacts``: a ``contact.v2`` record is decrypted with the person's data key, a
  legacy ``contact.v1`` one with the master keyring; an upsert per record, a delete per tombstone.
  A ``contact.v2`` record whose key has not been read yet (the two topics are not ordered with
  each other) is parked, still encrypted, in ``contact_pending`` and applied when the key arrives.

Plain aiokafka; offsets committed after the write, so a crash re-reads (every step is
idempotent). A record that cannot be read is logged and skipped; a failure of Kafka or Postgres
restarts the reader after the shared backoff (``rapport_shared.retry``)."""

from __future__ import annotations

import json

from rapport_shared.logging import get_logger
from rapport_shared.private_contacts import (H_RECORD, KEY_FORMAT, KEYS_TOPIC_CONFIG, ContactRecordError,
                                             DataKeyUnavailable, Keyring, WrappedKey, data_key_id_of, headers_text, decode_person_key,
                                             decode_record, ensure_private_topic, person_id_of)
from rapport_shared.topic_reader import run_topic_reader
from rapport_shared.topics import PRIVATE_CONTACTS, PRIVATE_PERSON_KEYS

log = get_logger("rapport.notifier.contacts")


async def _data_keys(conn, person_id: str, headers, keyring: Keyring) -> dict:
    """The person's data key, unwrapped (in memory only), as ``decode_record`` wants it; none
    needed for a legacy ``contact.v1`` record or a tombstone."""
    if data_key_id_of(headers) is None:
        return {}
    row = await conn.fetchrow("SELECT dek_id, master_kid, wrapped_key FROM contact_keys WHERE person_id = $1",
                              person_id)
    if row is None:
        return {}
    key = WrappedKey(person_id, row["dek_id"], row["master_kid"], bytes(row["wrapped_key"])).unwrap(keyring)
    return {key.dek_id: key}


async def _erase(conn, person_id: str) -> None:
    await conn.execute("DELETE FROM patients WHERE person_id = $1", person_id)
    await conn.execute("WITH parked AS (DELETE FROM contact_pending WHERE person_id = $1)"
                       " DELETE FROM patient_preferences WHERE person_id = $1", person_id)


async def apply_record(conn, key: bytes | None, value: bytes | None, headers, keyring: Keyring, now) -> str:
    """One record of either topic (told apart by its ``rapport_record`` header): ``upserted``,
    ``erased``, ``key`` (a data key stored), ``parked`` or ``skipped``."""
    if headers_text(headers).get(H_RECORD) == KEY_FORMAT:
        return await _apply_key(conn, key, value, headers, keyring, now)
    try:
        person_id = person_id_of(key)
        record = decode_record(key, value, headers, keyring, await _data_keys(conn, person_id, headers, keyring))
    except DataKeyUnavailable as exc:
        await conn.execute(
            "INSERT INTO contact_pending (person_id, dek_id, value, headers) VALUES ($1,$2,$3,$4::jsonb)"
            " ON CONFLICT (person_id) DO UPDATE SET dek_id=$2, value=$3, headers=$4::jsonb, received_at=now()",
            person_id, exc.dek_id, bytes(value), json.dumps(headers_text(headers)))
        return "parked"
    except ContactRecordError as exc:
        log.error("unreadable private contact record skipped", error=str(exc))
        return "skipped"
    if record is None:
        await _erase(conn, person_id)
        return "erased"
    await conn.execute(
        "INSERT INTO patients (person_id, email, phone, channel_consent, preferred_channel, quiet_hours, updated_at,"
        " language) VALUES ($1,$2,$3,$4::jsonb,$5,$6::jsonb,$7,$8) ON CONFLICT (person_id) DO UPDATE SET email=$2,"
        " phone=$3, channel_consent=$4::jsonb, preferred_channel=$5, quiet_hours=$6::jsonb, updated_at=$7, language=$8",
        person_id, record.email, record.phone, json.dumps({str(k): v for k, v in record.channel_consent.items()}),
        record.preferred_channel.value if record.preferred_channel else None,
        record.quiet_hours.model_dump_json() if record.quiet_hours else None, record.updated_at, record.language,
    )
    await conn.execute("DELETE FROM contact_pending WHERE person_id = $1", person_id)  # superseded
    return "upserted"


async def _apply_key(conn, key: bytes | None, value: bytes | None, headers, keyring: Keyring, now) -> str:
    try:
        wrapped = decode_person_key(key, value, headers)
        if wrapped is not None:
            wrapped.unwrap(keyring)  # refuse a key this keyring cannot use, before storing it
    except ContactRecordError as exc:
        log.error("unreadable private key record skipped", error=str(exc))
        return "skipped"
    person_id = key.decode()
    if wrapped is None:  # the person was erased: the key is destroyed, so is all we decrypted with it
        await conn.execute("DELETE FROM contact_keys WHERE person_id = $1", person_id)
        await _erase(conn, person_id)
        return "erased"
    await conn.execute(
        "INSERT INTO contact_keys (person_id, dek_id, master_kid, wrapped_key) VALUES ($1,$2,$3,$4)"
        " ON CONFLICT (person_id) DO UPDATE SET dek_id=$2, master_kid=$3, wrapped_key=$4, received_at=now()",
        person_id, wrapped.dek_id, wrapped.kid, wrapped.wrapped)
    parked = await conn.fetchrow("SELECT value, headers FROM contact_pending WHERE person_id = $1 AND dek_id = $2",
                                 person_id, wrapped.dek_id)
    if parked is not None:
        await apply_record(conn, key, bytes(parked["value"]), json.loads(parked["headers"]), keyring, now)
    return "key"


async def run_contacts_reader(runtime, keyring: Keyring) -> None:
    """Read both topics into the tables above until cancelled (the shared private-topic reader)."""
    s = runtime.settings

    async def prepare() -> None:
        await ensure_private_topic(s.kafka_bootstrap, s.topic_partitions, s.topic_replication)
        await ensure_private_topic(s.kafka_bootstrap, s.topic_partitions, s.topic_replication, KEYS_TOPIC_CONFIG,
                                   topic=PRIVATE_PERSON_KEYS)

    async def apply(conn, records) -> None:
        for r in records:
            await apply_record(conn, r.key, r.value, r.headers, keyring, runtime.clock.now())

    await run_topic_reader(runtime, name="contacts reader", topics=[PRIVATE_PERSON_KEYS, PRIVATE_CONTACTS],
                           group=f"{s.consumer_group}-contacts", apply=apply, prepare=prepare,
                           order=lambda tp: tp.topic != PRIVATE_PERSON_KEYS)  # keys first: fewer records parked
