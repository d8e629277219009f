"""Publishes contact state to the private, compacted ``rapport.private.contacts`` topic.

Like the event outbox, but for a table rather than a stream: a ``contact_publications`` row
(written in the transaction that changed a contact, or erased it) says "publish this person's
current state". The relay reads the state *at publish time* — the encrypted contact, or a
tombstone if there is none — so a change followed by an erasure publishes only the tombstone,
and no ciphertext ever waits in a queue table. Rows are deleted once the broker acknowledged
(acks=all, idempotent producer); a crash before that republishes the same current state, which
a compacted topic absorbs. Plain aiokafka, because FastStream cannot send a null value.

Crypto-shredding (docs/privacy.md): each person's contact is encrypted with the person's own data
key (``person_keys``, created here on first publication, stored and published only wrapped by the
active master key). For every queued person the relay publishes the key record on
``rapport.private.person-keys`` and then the contact (``contact.v2``); for a person without a
contact (erased) it destroys any live key — the erasure already did, this closes the race with a
publication running concurrently — and publishes both tombstones. A key wrapped by a master key
that is no longer active is re-wrapped on publication (``POST /v1/admin/contacts/republish``
after a rotation re-wraps every key). Erasures are then announced on ``rapport.erasures``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Awaitable, Callable

import asyncpg
from aiokafka import AIOKafkaProducer

from rapport_shared.db import ident
from rapport_shared.faults import crash_point
from rapport_shared.kafka import client_kwargs
from rapport_shared.listen import NotifyLoop, drain_batches
from rapport_shared.logging import get_logger
from rapport_shared.private_contacts import (ERASURES_TOPIC_CONFIG, KEYS_TOPIC_CONFIG, ContactRecordError, DataKey,
                                             Keyring, PrivateRecord, encode_contact, encode_person_key,
                                             encode_person_key_tombstone, encode_tombstone, ensure_private_topic,
                                             wrap_data_key)
from rapport_shared.retry import RetryPolicy
from rapport_shared.topics import ERASURES, PRIVATE_CONTACTS, PRIVATE_PERSON_KEYS

from . import contacts

log = get_logger(__name__)

Send = Callable[[PrivateRecord], Awaitable[Awaitable[object]]]


class ContactsRelay:
    def __init__(self, pool: asyncpg.Pool, send: Send, keyring: Keyring, schema: str, *,
                 batch_size: int = 200, poll_interval_s: float = 1.0) -> None:
        self.pool, self.send, self.keyring = pool, send, keyring
        self.schema = ident(schema)
        self.channel = contacts.notify_channel(schema)
        self.batch_size, self.poll_interval_s = batch_size, poll_interval_s
        self._loop = NotifyLoop(pool, self.channel, poll_interval_s=poll_interval_s, what="contacts relay")

    async def publish_batch(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            queue = contacts.PublicationQueue(conn, self.schema)
            if not await queue.lock():
                return 0
            rows = await queue.pending(self.batch_size)
            erasures = await queue.unpublished_erasures(self.batch_size)
            if not rows and not erasures:
                return 0
            persons = list(dict.fromkeys(person for _, person in rows))
            current = await queue.get_many(persons)
            acks = []
            for person in persons:
                c = current.get(person)
                if c is None:  # erased (or never recorded): no key may outlive the contact
                    await queue.destroy_keys(person)
                    acks.append(await self.send(encode_person_key_tombstone(person)))
                    acks.append(await self.send(encode_tombstone(person)))
                    continue
                data_key, key_record = await self._data_key(queue, person)
                acks.append(await self.send(key_record))  # the key first: a reader meets it no later than the contact
                acks.append(await self.send(encode_contact(c, self.keyring, data_key=data_key)))
            for _, notice in erasures:
                acks.append(await self.send(notice.record()))
            await asyncio.gather(*acks)
            crash_point("contacts_relay.after_publish")
            await queue.done([seq for seq, _ in rows])
            if erasures:
                await queue.mark_erasures_published([i for i, _ in erasures])
            return max(len(rows), len(erasures))

    async def _data_key(self, queue: contacts.PublicationQueue, person: str) -> tuple[DataKey, PrivateRecord]:
        """The person's data key and its key record: created on first use, re-wrapped when its
        master key is no longer the active one, replaced when its master key is gone from the
        keyring (the old one cannot be unwrapped any more; the contact itself is here in clear)."""
        wrapped = await queue.live_key(person)
        if wrapped is not None:
            try:
                data_key = wrapped.unwrap(self.keyring)
            except ContactRecordError as exc:
                log.warning("data key cannot be unwrapped; replacing it", error=str(exc))
                await queue.destroy_keys(person)
                wrapped = None
        if wrapped is None:
            data_key = DataKey.generate()
            wrapped = wrap_data_key(person, data_key, self.keyring)
            await queue.insert_key(wrapped)
        elif wrapped.kid != self.keyring.active:
            wrapped = wrap_data_key(person, data_key, self.keyring)
            await queue.rewrap_key(wrapped)
        return data_key, encode_person_key(wrapped)

    async def drain(self) -> int:
        return await drain_batches(self.publish_batch, self.batch_size)

    async def run(self) -> None:
        await self._loop.run(self.drain)

    def stop(self) -> None:
        self._loop.stop()


def producer_send(producer: AIOKafkaProducer) -> Send:
    async def send(record: PrivateRecord) -> Awaitable[object]:
        return await producer.send(record.topic, value=record.value, key=record.key, headers=record.kafka_headers())

    return send


# Kafka may not be reachable when the service starts: the relay waits for it (however long),
# with the shared jittered backoff, rather than dying.
_STARTUP = RetryPolicy(max_attempts=sys.maxsize, initial_s=1.0, max_s=15.0)


async def _start_producer(s) -> AIOKafkaProducer:
    """The relay's producer, once its three private topics exist."""
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", enable_idempotence=True,
                                client_id=f"rapport-{s.service_name}-contacts", **client_kwargs())
    try:
        for config, topic in ((None, PRIVATE_CONTACTS), (KEYS_TOPIC_CONFIG, PRIVATE_PERSON_KEYS),
                              (ERASURES_TOPIC_CONFIG, ERASURES)):
            await ensure_private_topic(s.kafka_bootstrap, s.topic_partitions, s.topic_replication, config, topic=topic)
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    return producer


def _log_retry(state) -> None:  # tenacity's before_sleep
    log.warning("contacts relay cannot reach Kafka yet", error=repr(state.outcome.exception()),
                retry_in_s=round(state.next_action.sleep, 3) if state.next_action else None)


async def run_contacts_relay(runtime) -> None:
    """Background job of the intake runtime: make sure the compacted topics exist, then relay."""
    s = runtime.settings
    retrying, _ = _STARTUP.retrying(before_sleep=_log_retry)
    producer = await retrying(_start_producer, s)
    relay = ContactsRelay(runtime.pool, producer_send(producer), s.keyring(), s.db_schema,
                          batch_size=s.relay_batch_size, poll_interval_s=s.relay_poll_interval_s)
    runtime.contacts_relay = relay
    try:
        await relay.run()
    finally:
        relay.stop()
        await producer.stop()
