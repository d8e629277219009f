"""Plain-aiokafka helpers for tests: read a topic from the beginning, produce raw records.

Deliberately independent of the services' code paths (a partner's view of the topics)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]
    timestamp: int


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    # consumer.topics() fetches metadata without keeping it; read the fetched cluster directly.
    cluster = await consumer._client.fetch_all_metadata()
    return cluster.partitions_for_topic(topic) or set()


def record_of(m) -> Record:
    """An aiokafka ConsumerRecord as a ``Record`` (header values decoded for matching)."""
    return Record(m.topic, m.partition, m.offset, m.key, m.value,
                  {k: (v or b"").decode("utf-8", "replace") for k, v in m.headers}, m.timestamp)


async def read_all(bootstrap: str, topic: str) -> list[Record]:
    """Every record currently in ``topic`` (no consumer group, nothing committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = await _partitions(consumer, topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Record] = []
        remaining = {tp for tp in tps if end[tp] > 0}
        for tp in list(remaining):
            if await consumer.position(tp) >= end[tp]:
                remaining.discard(tp)
        deadline = time.monotonic() + 30
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, msgs in batch.items():
                out += [record_of(m) for m in msgs]
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


async def wait_for_records(bootstrap: str, topic: str, predicate: Callable[[Record], bool], count: int = 1,
                           timeout: float = 60) -> list[Record]:
    deadline = time.monotonic() + timeout
    found: list[Record] = []
    while time.monotonic() < deadline:
        found = [r for r in await read_all(bootstrap, topic) if predicate(r)]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{len(found)}/{count} matching records on {topic} after {timeout}s")


async def produce_raw(bootstrap: str, topic: str, value: bytes | None, key: bytes | None = None,
                      headers: dict[str, str] | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key,
                                     headers=[(k, v.encode()) for k, v in (headers or {}).items()])
    finally:
        await producer.stop()


def header(record: Record, name: str) -> str | None:
    return record.headers.get(name)


async def wait_caught_up(bootstrap: str, group: str, topic: str, timeout: float = 60) -> None:
    """Until ``group`` has committed every record currently in ``topic`` (lag 0)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await _partitions(consumer, topic))]
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        lag: dict = {}
        while time.monotonic() < deadline:
            committed = await admin.list_consumer_group_offsets(group)
            lag = {tp: ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in tps}
            if all(v <= 0 for v in lag.values()):
                return
            await asyncio.sleep(0.3)
        raise TimeoutError(f"group {group} still lags on {topic}: {lag}")
    finally:
        await consumer.stop()
        await admin.close()


def validate_partner_view(record: Record) -> dict:
    """Check a record as a partner would: CloudEvents binary-mode headers, the topic and key the
    published schema names, and the value against that committed JSON Schema. Returns the data."""
    import json

    import jsonschema  # a test dependency; this module is only imported by tests and tools

    from rapport_tools.contracts.export import SCHEMA_DIR

    h = record.headers
    assert h["ce_specversion"] == "1.0" and h["content-type"] == "application/json"
    schema = json.loads((SCHEMA_DIR / f"{h['ce_type']}.json").read_text())
    assert h["ce_dataschema"] == schema["$id"] and schema["x-kafka-topic"] == record.topic
    data = json.loads(record.value)
    jsonschema.validate(data, schema)
    assert record.key.decode() == h["ce_subject"] == data["episode_id"]
    return data
