"""Inbox: the consumer side of "no duplicated effects".

``claim`` records the event id inside the effect's transaction. If the id is already there the
effect was committed before (a relay re-publish, a rebalance, a replay) and must be skipped.
"""

from __future__ import annotations

import asyncpg

from .envelope import CloudEvent


async def claim(conn: asyncpg.Connection, event: CloudEvent, topic: str, partition: int, offset: int) -> bool:
    """True if this is the first time the event is processed (caller applies the effect)."""
    if not conn.is_in_transaction():
        raise RuntimeError("inbox.claim must run inside the effect's transaction")
    inserted = await conn.fetchval(
        "INSERT INTO inbox (event_id, event_type, topic, kafka_partition, kafka_offset)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING RETURNING true",
        event.id, event.type, topic, partition, offset,
    )
    return bool(inserted)
