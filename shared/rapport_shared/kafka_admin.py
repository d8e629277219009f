"""Plain aiokafka clients: their SASL settings and topic creation.

What the simulated clock, the private contacts topic and the tools need without the FastStream
broker and the consumer (``kafka.py``), so that importing them pulls in neither."""

from __future__ import annotations

from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from .logging import get_logger
from .settings import KafkaSecurity

log = get_logger(__name__)


def kafka_security(security: KafkaSecurity | None = None) -> KafkaSecurity:
    """``security`` or, when None, the one from the environment (``RAPPORT_KAFKA_SASL_*``)."""
    return security if security is not None else KafkaSecurity()


def client_kwargs(security: KafkaSecurity | None = None) -> dict[str, Any]:
    """SASL keyword arguments for any aiokafka client ({} unless the secure profile is on)."""
    return kafka_security(security).aiokafka_kwargs()


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
