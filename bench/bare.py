"""The yardstick: what a bare aiokafka client does on the same broker in the same run, so that
Rapport's consumer and relay rates are read next to the broker's and the client library's own.

- **producer**: one ``AIOKafkaProducer`` (acks=all, idempotent, linger 5 ms: as the relay's),
  every record handed to ``send`` without waiting, then every acknowledgement awaited. Timed: the
  first ``send`` to the last acknowledgement. The records are built before (not timed).
- **consumer**: one ``AIOKafkaConsumer`` in a fresh group (auto-commit off), ``getmany`` (up to 500
  records, as ``RAPPORT_CONSUMER_BATCH_MAX_RECORDS``) and one offset commit per batch, touching
  nothing in the records. Timed: from the first batch received (the group join and the first fetch
  are before) to the commit of the batch holding the N-th record — the window Rapport's consumer is
  timed over.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from rapport_shared.envelope import KafkaRecord

MAX_RECORDS = 500


async def produce(bootstrap: str, topic: str, records: Sequence[KafkaRecord]) -> float:
    """Send ``records`` to ``topic``; returns the seconds from the first send to the last ack."""
    prepared = [(r.key, r.value, [(k, v.encode()) for k, v in r.headers.items()]) for r in records]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                                max_batch_size=512 * 1024)
    await producer.start()
    try:
        began = time.perf_counter()
        acks = [await producer.send(topic, value=value, key=key, headers=headers) for key, value, headers in prepared]
        await asyncio.gather(*acks)
        return time.perf_counter() - began
    finally:
        await producer.stop()


async def consume(bootstrap: str, topics: Sequence[str], n: int, timeout: float = 600) -> float:
    """Read ``n`` records of ``topics`` in a fresh group, committing per batch; returns the
    seconds from the first batch to the commit of the batch holding the n-th record."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        seen, began = 0, None
        deadline = time.monotonic() + timeout
        while seen < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"bare consumer read {seen}/{n} records in {timeout:.0f} s")
            batches = await consumer.getmany(timeout_ms=1000, max_records=MAX_RECORDS)
            if not batches:
                continue
            began = began or time.perf_counter()
            seen += sum(len(b) for b in batches.values())
            await consumer.commit({tp: b[-1].offset + 1 for tp, b in batches.items()})
        return time.perf_counter() - began
    finally:
        await consumer.stop()
