"""The relay at producer speed (real Postgres and Kafka): batches bounded by count and by bytes,
the relay's own batching producer (linger, compression), marking in one statement; two relays on
one schema still publish each row once, in per-episode order."""

import asyncio
import uuid
from datetime import datetime, timezone

import pytest

from rapport_shared.contracts import PhaseChangedV1
from rapport_shared.kafka import RelayProducer, compression_codec, ensure_topics
from rapport_shared.outbox import Outbox, OutboxRelay
from rapport_testing.kafka import read_all

pytestmark = pytest.mark.integration


def phase_event(episode):
    return PhaseChangedV1(episode_id=episode, course_id=uuid.uuid4(), from_phase="initial", to_phase="middle",
                          effective_from_session=4, reason="checklist_complete", changed_at=datetime.now(timezone.utc))


@pytest.fixture
async def pool(scratch_pool):
    await scratch_pool.execute("DELETE FROM outbox")
    return scratch_pool


async def write(pool, schema, n, episodes=7) -> dict[str, list[str]]:
    outbox = Outbox("/rapport/test", schema)
    eps = [uuid.uuid4() for _ in range(episodes)]
    written: dict[str, list[str]] = {str(e): [] for e in eps}
    async with pool.acquire() as conn, conn.transaction():
        for i in range(n):
            ep = eps[i % episodes]
            written[str(ep)].append((await outbox.add(conn, phase_event(ep), time=datetime.now(timezone.utc))).id)
    return written


class Retopic:
    """Every row to one scratch topic (the rows name rapport.course)."""

    def __init__(self, producer: RelayProducer, topic: str) -> None:
        self.producer, self.topic = producer, topic

    async def __call__(self, _topic, record):
        return await self.producer.publish(self.topic, record)


def assert_once_in_order(records, written):
    ids = [r.headers["ce_id"] for r in records]
    assert len(ids) == len(set(ids)) == sum(len(v) for v in written.values())  # each row once
    for ep, expected in written.items():  # per episode: one partition, outbox order
        assert [r.headers["ce_id"] for r in records if r.key == ep.encode()] == expected
        assert len({r.partition for r in records if r.key == ep.encode()}) == 1


async def test_a_batch_is_cut_by_bytes_and_the_drain_goes_on(pool, scratch_schema, kafka):
    topic = f"t.{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka.bootstrap, [topic], 3, 1)
    written = await write(pool, scratch_schema[0], 60)
    one_value = await pool.fetchval("SELECT max(octet_length(value)) FROM outbox")
    producer = RelayProducer(kafka.bootstrap, client_id="t-relay", linger_ms=5)
    await producer.start()
    try:
        relay = OutboxRelay(pool, Retopic(producer, topic), scratch_schema[0], batch_size=1000,
                            max_batch_bytes=one_value * 7)
        batches = []
        publish_batch = relay.publish_batch

        async def counting():
            n = await publish_batch()
            batches.append(n)
            return n

        relay.publish_batch = counting
        assert await relay.drain() == 60
    finally:
        await producer.stop()
    assert max(batches) <= 7 and len(batches) >= 9  # cut by bytes, yet one drain took everything
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0
    assert_once_in_order(await read_all(kafka.bootstrap, topic), written)


async def test_two_relays_with_batching_producers_publish_each_row_once_in_order(pool, scratch_schema, kafka):
    topic = f"t.{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka.bootstrap, [topic], 3, 1)
    written = await write(pool, scratch_schema[0], 600)
    producers = [RelayProducer(kafka.bootstrap, client_id=f"t-relay-{i}", linger_ms=20, compression=c)
                 for i, c in enumerate(("gzip", "none"))]
    for p in producers:
        await p.start()
    relays = [OutboxRelay(pool, Retopic(p, topic), scratch_schema[0], batch_size=50) for p in producers]

    async def drain_until_empty(relay):
        for _ in range(200):
            await relay.drain()
            if not await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"):
                return
            await asyncio.sleep(0.005)

    try:
        await asyncio.gather(*(drain_until_empty(r) for r in relays))
    finally:
        for p in producers:
            await p.stop()
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0
    assert_once_in_order(await read_all(kafka.bootstrap, topic), written)


def test_a_codec_this_install_lacks_is_refused_at_start():
    assert compression_codec("none") is None and compression_codec("gzip") == "gzip"
    with pytest.raises(ValueError, match="compression must be one of"):
        compression_codec("brotli")
