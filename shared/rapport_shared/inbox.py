"""Inbox: the consumer side of "no duplicated effects".

``claim`` records the event id inside the effect's transaction. If the id is already there the
effect was committed before (a relay re-publish, a rebalance, a replay) and must be skipped.
``claim_many`` does the same for a batch in one statement; ``release`` takes back the claims of
records whose effect was rolled back (to their savepoint) while the transaction goes on.
"""

from __future__ import annotations

import uuid
from typing import Iterable, Sequence

import asyncpg

from .envelope import CloudEvent


def _in_transaction(conn: asyncpg.Connection, what: str) -> None:
    if not conn.is_in_transaction():
        raise RuntimeError(f"inbox.{what} must run inside the effect's transaction")


async def claim(conn: asyncpg.Connection, event: CloudEvent, topic: str, partition: int, offset: int) -> bool:
    """True if this is the first time the event is processed (caller applies the effect)."""
    _in_transaction(conn, "claim")
    inserted = await conn.fetchval(
        "INSERT INTO inbox (event_id, event_type, topic, kafka_partition, kafka_offset)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING RETURNING true",
        event.id, event.type, topic, partition, offset,
    )
    return bool(inserted)


async def claim_many(conn: asyncpg.Connection,
                     items: Sequence[tuple[uuid.UUID, str, str, int, int]]) -> set[uuid.UUID]:
    """Claim ``(event_id, event_type, topic, partition, offset)`` items in one statement; returns
    the ids claimed now (the others were processed before). An id twice in ``items`` is claimed
    once, by its first item (the caller treats the later ones as duplicates)."""
    _in_transaction(conn, "claim_many")
    first: dict[uuid.UUID, tuple[uuid.UUID, str, str, int, int]] = {}
    for item in items:
        first.setdefault(item[0], item)
    if not first:
        return set()
    columns = list(zip(*first.values()))
    rows = await conn.fetch(
        "INSERT INTO inbox (event_id, event_type, topic, kafka_partition, kafka_offset)"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::bigint[])"
        " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        *columns,
    )
    return {r["event_id"] for r in rows}


async def release(conn: asyncpg.Connection, event_ids: Iterable[uuid.UUID]) -> None:
    """Take back claims made in this transaction for effects that will not be applied in it."""
    _in_transaction(conn, "release")
    ids = list(event_ids)
    if ids:
        await conn.execute("DELETE FROM inbox WHERE event_id = ANY($1::uuid[])", ids)
