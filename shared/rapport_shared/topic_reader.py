"""One loop for reading a private (compacted) topic into a service's own tables: the contacts and
person keys the notifier keeps, the erasure notices outcomes applies.

These topics are read outside the event consumer on purpose: their records are not CloudEvents,
a key's latest record is the truth (compaction), and they are applied in batches, each batch in
one transaction, offsets committed after it (a crash re-reads; every apply is idempotent). Any
failure of Kafka or Postgres restarts the reader after jittered, growing waits (never giving up);
a topic that does not exist yet is waited for.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Sequence

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_never

from .kafka_admin import client_kwargs
from .logging import get_logger
from .retry import RetryPolicy

log = get_logger(__name__)

RESTART = RetryPolicy(initial_s=2.0, max_s=30.0)

# (conn, records of one batch in reading order) -> None; runs inside the batch's transaction.
ApplyBatch = Callable[[Any, list[Any]], Awaitable[None]]


async def run_topic_reader(runtime, *, name: str, topics: Sequence[str], group: str, apply: ApplyBatch,
                           prepare: Callable[[], Awaitable[None]] | None = None,
                           order: Callable[[Any], Any] | None = None, max_records: int = 200) -> None:
    """Read ``topics`` in consumer group ``group`` until cancelled. ``prepare`` runs before each
    (re)start (e.g. create the topics); ``order`` sorts a batch's partitions (e.g. keys first)."""

    def restarting(state: RetryCallState) -> None:
        log.warning(f"{name} failed; restarting", error=repr(state.outcome.exception()) if state.outcome else None,
                    retry_in_s=round(state.next_action.sleep, 1) if state.next_action else None)

    async for attempt in AsyncRetrying(retry=retry_if_exception_type(Exception), stop=stop_never,
                                       wait=RESTART.wait(), before_sleep=restarting, sleep=asyncio.sleep):
        with attempt:
            await _read(runtime, topics, group, apply, prepare, order, max_records)


async def _read(runtime, topics, group, apply, prepare, order, max_records) -> None:
    from aiokafka import AIOKafkaConsumer

    s = runtime.settings
    if prepare is not None:
        await prepare()
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", **client_kwargs())
    await consumer.start()
    try:
        waits = RESTART.delays()
        while missing := set(topics) - await consumer.topics():  # another service creates it
            log.info("waiting for topics", topics=sorted(missing))
            await asyncio.sleep(next(waits))
        consumer.subscribe(list(topics))
        while True:
            batch = await consumer.getmany(timeout_ms=1000, max_records=max_records)
            if not batch:
                continue
            records = [r for tp in sorted(batch, key=order or (lambda tp: 0)) for r in batch[tp]]
            async with runtime.pool.acquire() as conn, conn.transaction():
                await apply(conn, records)
            await consumer.commit()
    finally:
        try:
            await consumer.stop()
        except Exception:  # stopping a consumer whose broker is gone: nothing left to release
            pass
