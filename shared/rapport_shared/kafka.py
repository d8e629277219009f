"""Kafka adapter: the FastStream broker, the relay/DLQ publisher and topic creation."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Awaitable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage

from .consumer import EventConsumer
from .envelope import KafkaRecord
from .logging import get_logger
from .settings import KafkaSecurity

log = get_logger(__name__)


def kafka_security(security: KafkaSecurity | None = None) -> KafkaSecurity:
    """``security`` or, when None, the one from the environment (``RAPPORT_KAFKA_SASL_*``)."""
    return security if security is not None else KafkaSecurity()


def client_kwargs(security: KafkaSecurity | None = None) -> dict[str, Any]:
    """SASL keyword arguments for any aiokafka client ({} unless the secure profile is on)."""
    return kafka_security(security).aiokafka_kwargs()


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


async def _tolerant_parser(record: Any, original_parser: Any) -> Any:
    """FastStream's own parser decodes every header value as strict UTF-8 (and cannot take a
    null one): a record with such a header would fail before our handler ever sees it, and be
    redelivered forever. Hand it a copy with printable headers, then put the untouched record
    back as ``raw_message``: the envelope judges (and the DLQ keeps) the real bytes."""
    try:
        return await original_parser(record)
    except Exception:
        pass
    safe = [(k, v.decode("utf-8", "replace").encode() if isinstance(v, (bytes, bytearray)) else b"")
            for k, v in (record.headers or ())]
    msg = await original_parser(dataclasses.replace(record, headers=safe))
    msg.raw_message = record
    return msg


async def _raw_body(msg: Any) -> bytes:
    # Hand the handler the raw bytes: decoding and validation are the envelope's job.
    return msg.body


def attach(broker: KafkaBroker, consumer: EventConsumer, *, auto_offset_reset: str) -> None:
    """Subscribe ``consumer`` to its topics. Offsets are committed by hand, after the effect."""
    if not consumer.handlers:
        return
    subscriber = broker.subscriber(
        *consumer.topics,
        group_id=consumer.group_id,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset=auto_offset_reset,
        decoder=_raw_body,
        parser=_tolerant_parser,
    )

    @subscriber
    async def on_record(body: bytes, msg: KafkaMessage) -> None:
        # ``process`` ends every record (processed, ignored or dead-lettered) and raises only on
        # cancellation (shutdown): then rewind so the record is not committed past.
        try:
            await consumer.process(msg.raw_message)
        except BaseException:
            await msg.nack()
            raise
        await msg.ack()


async def ensure_topics(bootstrap: str, topics: list[str], partitions: int, replication: int,
                        security: KafkaSecurity | None = None) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs(security))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        # Event topics are the system of record for replay: keep them forever (the broker's default
        # would delete history after 7 days). Erasure never relies on retention: personal data only
        # travels on the compacted private topic, which intake creates with its own config.
        new = [NewTopic(t, partitions, replication, topic_configs={"retention.ms": "-1"}) for t in topics if t not in existing]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
            log.info("topics created", topics=[t.name for t in new])
    finally:
        await admin.close()
