"""Reads the private contacts topic (compacted, encrypted; ``rapport_shared.private_contacts``)
into the ``patients`` table: an upsert per record, a delete per tombstone (erasure). Plain
aiokafka with its own group (``<group>-contacts``); offsets committed after the write, so a crash
re-reads (the upsert is idempotent). A record that cannot be read is logged and skipped."""

from __future__ import annotations

import asyncio
import json

from rapport_shared.kafka import client_kwargs
from rapport_shared.logging import get_logger
from rapport_shared.private_contacts import ContactRecordError, Keyring, decode_record, ensure_private_topic
from rapport_shared.topics import PRIVATE_CONTACTS

log = get_logger("rapport.notifier.contacts")


async def apply_record(conn, key: bytes | None, value: bytes | None, headers, keyring: Keyring, now) -> str:
    try:
        record = decode_record(key, value, headers, keyring)
    except ContactRecordError as exc:
        log.error("unreadable private contact record skipped", error=str(exc))
        return "skipped"
    person_id = key.decode()
    if record is None:
        await conn.execute("DELETE FROM patients WHERE person_id = $1", person_id)
        await conn.execute("DELETE FROM patient_preferences WHERE person_id = $1", person_id)
        return "erased"
    await conn.execute(
        "INSERT INTO patients (person_id, email, phone, channel_consent, preferred_channel, quiet_hours, updated_at,"
        " language) VALUES ($1,$2,$3,$4::jsonb,$5,$6::jsonb,$7,$8) ON CONFLICT (person_id) DO UPDATE SET email=$2,"
        " phone=$3, channel_consent=$4::jsonb, preferred_channel=$5, quiet_hours=$6::jsonb, updated_at=$7, language=$8",
        person_id, record.email, record.phone, json.dumps({str(k): v for k, v in record.channel_consent.items()}),
        record.preferred_channel.value if record.preferred_channel else None,
        record.quiet_hours.model_dump_json() if record.quiet_hours else None, record.updated_at, record.language,
    )
    return "upserted"


async def run_contacts_reader(runtime, keyring: Keyring) -> None:
    from aiokafka import AIOKafkaConsumer

    s = runtime.settings
    while True:
        consumer = None
        try:
            await ensure_private_topic(s.kafka_bootstrap, s.topic_partitions, s.topic_replication)
            consumer = AIOKafkaConsumer(PRIVATE_CONTACTS, bootstrap_servers=s.kafka_bootstrap,
                                        group_id=f"{s.consumer_group}-contacts", enable_auto_commit=False,
                                        auto_offset_reset="earliest", **client_kwargs())
            await consumer.start()
            while True:
                batch = await consumer.getmany(timeout_ms=1000, max_records=200)
                if not batch:
                    continue
                async with runtime.pool.acquire() as conn, conn.transaction():
                    for records in batch.values():
                        for r in records:
                            await apply_record(conn, r.key, r.value, r.headers, keyring, runtime.clock.now())
                await consumer.commit()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("contacts reader failed; restarting", error=repr(exc))
            await asyncio.sleep(2)
        finally:
            if consumer is not None:
                try:
                    await consumer.stop()
                except Exception:
                    pass
