"""Kafka adapter: the FastStream broker, the batch subscriber feeding an ``EventConsumer``, the
relay's producer, the DLQ publisher and topic creation."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.partitioner import DefaultPartitioner, murmur2
from faststream.kafka import KafkaBroker

from .consumer import EventConsumer
from .envelope import KafkaRecord
from .faults import crash_point
from .kafka_admin import client_kwargs, ensure_topics, kafka_security  # noqa: F401  (re-exported)
from .logging import get_logger
from .retry import RetryPolicy
from .settings import KafkaSecurity

log = get_logger(__name__)

COMPRESSION_TYPES = ("none", "gzip", "snappy", "lz4", "zstd")


def make_broker(bootstrap: str, client_id: str, security: KafkaSecurity | None = None) -> KafkaBroker:
    sec = kafka_security(security)
    extra: dict[str, Any] = {"security": sec.faststream_security()} if sec.enabled else {}
    # Idempotent producer with acks=all: a retried send never duplicates or reorders a record.
    return KafkaBroker(
        bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        logger=logging.getLogger("rapport.faststream"),  # propagates to our structlog formatter
        log_level=logging.DEBUG,  # FastStream logs every message at this level; ours are richer
        graceful_timeout=15.0,
        **extra,
    )


def publisher(broker: KafkaBroker):
    async def publish(topic: str, record: KafkaRecord) -> Awaitable[Any]:
        return await broker.publish(
            record.value, topic, key=record.key, headers=dict(record.headers), no_confirm=True,
            correlation_id=record.headers.get("correlation_id") or None,
        )

    return publish


def dead_letter_publisher(broker: KafkaBroker):
    publish = publisher(broker)

    async def dead_letter(topic: str, record: KafkaRecord) -> None:
        await (await publish(topic, record))

    return dead_letter


# ------------------------------------------------------------------------------ relay producer

def compression_codec(name: str) -> str | None:
    """aiokafka's ``compression_type`` for a setting value; refuses a codec this install lacks
    (snappy, lz4 and zstd need ``cramjam``)."""
    from aiokafka import codec  # noqa: PLC0415

    name = (name or "none").lower()
    if name not in COMPRESSION_TYPES:
        raise ValueError(f"compression must be one of {COMPRESSION_TYPES}, not {name!r}")
    if name == "none":
        return None
    if not getattr(codec, f"has_{name}")():
        raise ValueError(f"compression {name!r} needs the cramjam package, which is not installed")
    return name


class KeyPartitioner:
    """aiokafka's default partitioner (murmur2 of the key, as the Java client) with the hash kept
    per key: the pure-Python murmur2 costs more than the rest of a send, and an episode's events
    share their key. Same partition for a key as ``DefaultPartitioner``."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._hashes: dict[bytes, int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return DefaultPartitioner()(key, all_partitions, available)
        h = self._hashes.get(key)
        if h is None:
            if len(self._hashes) >= self.max_keys:
                self._hashes.clear()
            h = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[h % len(all_partitions)]


class RelayProducer:
    """The outbox relay's own producer: idempotent with acks=all (a retried send never duplicates
    or reorders a record) and batching — records handed over within ``linger_ms`` travel together,
    ``compression`` applied per batch. ``publish`` returns the acknowledgement's future at once, so
    the relay hands over a whole batch before waiting."""

    def __init__(self, bootstrap: str, *, client_id: str, linger_ms: int = 0, compression: str = "none",
                 max_batch_bytes: int = 512 * 1024, security: KafkaSecurity | None = None) -> None:
        self.kwargs: dict[str, Any] = dict(
            bootstrap_servers=bootstrap, client_id=client_id, acks="all", enable_idempotence=True,
            linger_ms=linger_ms, compression_type=compression_codec(compression), max_batch_size=max_batch_bytes,
            partitioner=KeyPartitioner(), **client_kwargs(security))
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(**self.kwargs)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def reset(self) -> None:
        """Start over with a new producer id (after the broker put the idempotent sequence out of step)."""
        await self.stop()
        await self.start()

    async def publish(self, topic: str, record: KafkaRecord) -> Awaitable[Any]:
        assert self._producer is not None, "RelayProducer not started"
        return await self._producer.send(topic, value=record.value, key=record.key,
                                         headers=[(k, v.encode()) for k, v in record.headers.items()])


# ------------------------------------------------------------------------------ batch subscriber

class BatchSubscriber(ConsumerRebalanceListener):
    """Feeds an ``EventConsumer`` what the broker has and commits the offsets after.

    One aiokafka consumer in the consumer's group, subscribed to its topics, auto-commit off. Each
    pass takes what is fetched (up to ``max_records``; ``max_bytes`` per fetch), hands it to
    ``EventConsumer.process_batch`` (partitions in parallel, one transaction per partition) and
    then commits the offsets of the whole batch once — only for partitions still assigned.

    Rebalances: when partitions are revoked, the batch in flight finishes and commits its offsets
    before this member lets them go (``on_partitions_revoked`` waits for it, up to
    ``revoke_wait_s``); a batch fetched across a rebalance and not yet started is dropped, the
    partitions of it still assigned rewound to its first record; a batch that outlived its
    assignment commits nothing. A record handled twice that way is skipped by the inbox.
    """

    def __init__(self, consumer: EventConsumer, bootstrap: str, *, client_id: str, auto_offset_reset: str = "earliest",
                 max_records: int = 500, max_bytes: int = 16 * 1024 * 1024, security: KafkaSecurity | None = None,
                 graceful_timeout_s: float = 15.0, revoke_wait_s: float = 60.0) -> None:
        self.consumer = consumer
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.auto_offset_reset = auto_offset_reset
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.security = security
        self.graceful_timeout_s = graceful_timeout_s
        self.revoke_wait_s = revoke_wait_s
        self._kc: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self._busy = asyncio.Lock()  # held while a batch is processed and committed
        self._generation = 0  # bumped by every rebalance
        self._stopping = False

    @property
    def group_id(self) -> str:
        return self.consumer.group_id

    async def start(self) -> None:
        if not self.consumer.handlers:
            return
        self._kc = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group_id, client_id=self.client_id,
            enable_auto_commit=False, auto_offset_reset=self.auto_offset_reset,
            fetch_max_bytes=self.max_bytes, max_partition_fetch_bytes=min(self.max_bytes, 1024 * 1024),
            **client_kwargs(self.security))
        self._kc.subscribe(self.consumer.topics, listener=self)
        await self._kc.start()
        self._task = asyncio.create_task(self._run(), name=f"consumer {self.group_id}")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("consumer loop ended on an error", group=self.group_id, error=repr(task.exception()))

    async def stop(self) -> None:
        """Let the batch in flight finish (up to ``graceful_timeout_s``, then cancel it: its
        transactions roll back and its offsets stay uncommitted), then leave the group."""
        self._stopping = True
        if self._task is not None:
            if not self._busy.locked():
                self._task.cancel()  # waiting for records: nothing in flight
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.graceful_timeout_s)
            except asyncio.TimeoutError:
                self._task.cancel()
            except (asyncio.CancelledError, Exception):
                pass
            await asyncio.gather(self._task, return_exceptions=True)
        if self._kc is not None:
            await self._kc.stop()

    async def _run(self) -> None:
        assert self._kc is not None
        delays = failing = None
        while not self._stopping:
            generation = self._generation
            try:
                fetched = await self._fetch()
                delays = None
            except Exception as exc:  # the broker away (KafkaError), or a fetch aiokafka cannot parse
                delays = delays or RetryPolicy(initial_s=0.5, max_s=10.0).delays()
                delay = next(delays)
                log.warning("fetch failed; retrying", group=self.group_id, error=repr(exc), retry_in_s=round(delay, 3))
                await asyncio.sleep(delay)
                continue
            if not fetched:
                continue
            async with self._busy:
                if generation != self._generation:
                    self._rewind(fetched)  # fetched across a rebalance: read what is still ours again
                    continue
                records = [r for batch in fetched.values() for r in batch]
                try:
                    outcomes = await self.consumer.process_batch(records)
                except Exception as exc:  # a bug (process_batch ends every record): never stop consuming
                    log.exception("batch failed; reading it again", group=self.group_id, error=repr(exc)[:500])
                    self._rewind(fetched)
                    failing = failing or RetryPolicy(initial_s=0.5, max_s=10.0).delays()
                    await asyncio.sleep(next(failing))
                    continue
                failing = None
                crash_point("consumer.before_offset_commit",
                            " ".join(sorted({o.event_type for o in outcomes if o.event_type})))
                await self._commit(fetched, generation)

    async def _fetch(self) -> dict[TopicPartition, list[Any]]:
        """Up to ``max_records``, shared between the assigned partitions: ``getmany`` alone fills a
        batch from the first partition that has records, and the partitions would not be applied
        side by side. Waits (up to 1 s) for the first records, not for the others."""
        assert self._kc is not None
        assigned = self._kc.assignment()
        share = max(1, self.max_records // max(1, len(assigned)))
        fetched = await self._kc.getmany(timeout_ms=1000, max_records=share)
        room = self.max_records - sum(len(b) for b in fetched.values())
        for tp in assigned:  # a share from every partition that has records
            if room <= 0 or not fetched:
                break
            if tp not in fetched:
                more = await self._kc.getmany(tp, timeout_ms=0, max_records=min(share, room))
                fetched.update(more)
                room -= sum(len(b) for b in more.values())
        full = [tp for tp, b in fetched.items() if len(b) >= share]
        for tp in full:  # room left (partitions without records): more from those that have some
            if room <= 0:
                break
            more = await self._kc.getmany(tp, timeout_ms=0, max_records=min(room, max(share, room // len(full))))
            for part, batch in more.items():
                fetched[part] = fetched[part] + batch
                room -= len(batch)
        return fetched

    def _rewind(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        """Set the position of every partition of ``fetched`` still assigned back to its first
        record: ``getmany`` moved past them (were they fetched after the reassignment's reset), and
        a later commit would skip what was never applied. (Fetched before it: already reset.)"""
        assert self._kc is not None
        assigned = self._kc.assignment()
        for tp, batch in fetched.items():
            if batch and tp in assigned:
                self._kc.seek(tp, batch[0].offset)

    async def _commit(self, fetched: dict[TopicPartition, list[Any]], generation: int) -> None:
        """Commit after the effects: the offsets of the batch, for partitions still assigned."""
        assert self._kc is not None
        if generation != self._generation:
            log.warning("partitions reassigned while the batch ran: its offsets are not committed "
                        "(the inbox skips what is delivered again)", group=self.group_id)
            return
        assigned = self._kc.assignment()
        offsets = {tp: batch[-1].offset + 1 for tp, batch in fetched.items() if batch and tp in assigned}
        if not offsets:
            return
        try:
            await self._kc.commit(offsets)  # aiokafka retries retriable errors (broker away) itself
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("offset commit refused after a rebalance (the inbox skips what is delivered again)",
                        group=self.group_id, error=repr(exc))
        except KafkaError as exc:
            log.error("offset commit failed; the next batch's commit covers it", group=self.group_id, error=repr(exc))

    # ConsumerRebalanceListener
    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if not revoked:
            return
        try:  # the batch in flight commits its offsets while this member still owns them
            await asyncio.wait_for(self._busy.acquire(), self.revoke_wait_s)
        except asyncio.TimeoutError:
            log.warning("rebalance: the batch in flight outlasted the wait; it will commit nothing",
                        group=self.group_id, waited_s=self.revoke_wait_s)
            self._generation += 1
            return
        self._generation += 1
        self._busy.release()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._generation += 1
        log.info("partitions assigned", group=self.group_id,
                 partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))
