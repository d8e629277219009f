"""Transactional outbox (architecture.md, "Delivery guarantees").

Writer: ``Outbox.add`` inserts the event in the caller's transaction, next to the state change
it announces, and NOTIFYs the relay (delivered only if that transaction commits).

Relay: ``OutboxRelay`` publishes unsent rows in ``seq`` order with the idempotent producer
(acks=all), waits for the broker's acknowledgements, then marks the rows sent in the same
transaction that locked them. A crash after publishing and before marking re-publishes the
batch: consumers dedupe by ``ce_id``, so the effect still happens once.

Ordering: the relay holds a transaction-scoped advisory lock per schema, so with several relay
replicas one publishes at a time (the others stand by) and per-episode order is kept;
``FOR UPDATE SKIP LOCKED`` keeps a stuck transaction from blocking the rest.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Awaitable, Callable, Protocol

import asyncpg

from . import envelope
from .contracts.base import EventData
from .db import ident
from .envelope import CloudEvent, KafkaRecord
from .faults import crash_point
from .listen import NotifyLoop, drain_batches
from .logging import get_logger
from .metrics import OUTBOX_PENDING, OUTBOX_PUBLISHED, RELAY_LAG_SECONDS

log = get_logger(__name__)


def notify_channel(schema: str) -> str:
    return f"{ident(schema)}_outbox"


class Outbox:
    """Writes events into the service's outbox table inside the caller's transaction."""

    def __init__(self, source: str, schema: str) -> None:
        self.source = source
        self.schema = ident(schema)
        self.channel = notify_channel(schema)

    async def add(
        self,
        conn: asyncpg.Connection,
        data: EventData,
        *,
        time: datetime,
        subject: str | None = None,
        cause: CloudEvent | None = None,
        event_id: str | None = None,
        correlation_id: str | None = None,
    ) -> CloudEvent:
        if not conn.is_in_transaction():
            raise RuntimeError("Outbox.add must run inside the transaction of the state change")
        subj = subject or str(getattr(data, "episode_id"))
        event = envelope.new_event(
            type=data.event_type,
            source=self.source,
            subject=subj,
            data=data,
            time=time,
            id=event_id,
            # One correlation id follows an episode's causal chain across services.
            correlation_id=correlation_id or (cause.correlation_id if cause else None),
            traceparent=cause.traceparent if cause else None,
        )
        if event.correlation_id is None:
            event = CloudEvent(**{**event.__dict__, "correlation_id": event.id})
        await self.add_event(conn, event, data.topic)
        return event

    async def add_event(self, conn: asyncpg.Connection, event: CloudEvent, topic: str) -> None:
        rec = envelope.encode(event)
        await conn.execute(
            f"INSERT INTO {self.schema}.outbox (event_id, topic, key, headers, value, event_type)"
            " VALUES ($1, $2, $3, $4::jsonb, $5, $6)",
            event.id, topic, rec.key, json.dumps(rec.headers), rec.value, event.type,
        )
        await conn.execute("SELECT pg_notify($1, '')", self.channel)


class Publisher(Protocol):
    async def __call__(self, topic: str, record: KafkaRecord) -> Awaitable[object]:
        """Start sending; the returned awaitable resolves when the broker acknowledged."""


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        publish: Callable[[str, KafkaRecord], Awaitable[Awaitable[object]]],
        schema: str,
        *,
        batch_size: int = 200,
        poll_interval_s: float = 1.0,
        retention_hours: int = 72,
    ) -> None:
        self.pool = pool
        self.publish = publish
        self.schema = ident(schema)
        self.channel = notify_channel(schema)
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.retention_hours = retention_hours
        self._last_prune = 0.0
        self._loop = NotifyLoop(pool, self.channel, poll_interval_s=poll_interval_s, what="outbox relay")

    async def publish_batch(self) -> int:
        """Publish one batch; returns how many rows were published (0 = nothing to do or not our turn)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))", f"{self.schema}.outbox"):
                return 0
            rows = await conn.fetch(
                f"SELECT seq, topic, key, headers, value, created_at FROM {self.schema}.outbox"
                " WHERE sent_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
                self.batch_size,
            )
            if not rows:
                OUTBOX_PENDING.set(0)
                return 0
            acks = []
            for r in rows:
                rec = KafkaRecord(key=bytes(r["key"]), value=bytes(r["value"]), headers=json.loads(r["headers"]))
                acks.append(await self.publish(r["topic"], rec))
            await asyncio.gather(*acks)  # every record acknowledged (acks=all) before we mark it
            crash_point("relay.after_publish")
            await conn.execute(
                f"UPDATE {self.schema}.outbox SET sent_at = now() WHERE seq = ANY($1::bigint[])", [r["seq"] for r in rows]
            )
            now = time.time()
            for r in rows:
                OUTBOX_PUBLISHED.labels(r["topic"]).inc()
                RELAY_LAG_SECONDS.observe(max(0.0, now - r["created_at"].timestamp()))
        crash_point("relay.after_mark")
        return len(rows)

    async def drain(self) -> int:
        return await drain_batches(self.publish_batch, self.batch_size)

    async def prune(self) -> int:
        res = await self.pool.execute(
            f"DELETE FROM {self.schema}.outbox WHERE sent_at < now() - make_interval(hours => $1)", self.retention_hours
        )
        return int(res.split()[-1])

    async def _pass(self) -> None:
        await self.drain()
        if time.monotonic() - self._last_prune > 3600:
            await self.prune()
            self._last_prune = time.monotonic()

    async def run(self) -> None:
        """Publish until stopped: woken by NOTIFY, with a polling fallback (lost notifications,
        rows written while no relay listened, a failed publish to retry)."""
        await self._loop.run(self._pass)

    def stop(self) -> None:
        self._loop.stop()
