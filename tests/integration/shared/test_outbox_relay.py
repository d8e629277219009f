"""The outbox relay against real Postgres and Kafka."""

import asyncio
import json
import uuid
from datetime import datetime, timezone

import pytest
from aiokafka import AIOKafkaProducer

from rapport_shared.contracts import PhaseChangedV1
from rapport_shared.envelope import KafkaRecord
from rapport_shared.outbox import Outbox, OutboxRelay
from rapport_testing.kafka import read_all

pytestmark = pytest.mark.integration


@pytest.fixture
async def producer(kafka):
    p = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=True)
    await p.start()
    yield p
    await p.stop()


def publisher_to(producer, topic_override):
    async def publish(topic, rec: KafkaRecord):
        return await producer.send(topic_override, value=rec.value, key=rec.key,
                                   headers=[(k, v.encode()) for k, v in rec.headers.items()])
    return publish


def phase_event(episode):
    return PhaseChangedV1(episode_id=episode, course_id=uuid.uuid4(), from_phase="initial", to_phase="middle",
                          effective_from_session=4, reason="checklist_complete", changed_at=datetime.now(timezone.utc))


@pytest.fixture
async def pool(scratch_pool):
    await scratch_pool.execute("DELETE FROM outbox")
    return scratch_pool


async def test_rolled_back_state_change_publishes_nothing(pool, scratch_schema, producer, kafka):
    topic = f"t.{uuid.uuid4().hex[:8]}"
    outbox = Outbox("/rapport/test", scratch_schema[0])
    with pytest.raises(RuntimeError):
        async with pool.acquire() as conn, conn.transaction():
            await outbox.add(conn, phase_event(uuid.uuid4()), time=datetime.now(timezone.utc))
            raise RuntimeError("the state change failed")
    relay = OutboxRelay(pool, publisher_to(producer, topic), scratch_schema[0])
    assert await relay.drain() == 0
    assert await read_all(kafka.bootstrap, topic) == []


async def test_outbox_refuses_writes_outside_a_transaction(pool, scratch_schema):
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            await Outbox("/rapport/test", scratch_schema[0]).add(conn, phase_event(uuid.uuid4()), time=datetime.now(timezone.utc))


async def test_concurrent_relays_publish_each_event_once_in_order(pool, scratch_schema, producer, kafka):
    topic = f"t.{uuid.uuid4().hex[:8]}"
    outbox = Outbox("/rapport/test", scratch_schema[0])
    episodes = [uuid.uuid4() for _ in range(5)]
    written: dict[str, list[str]] = {str(e): [] for e in episodes}
    for i in range(60):
        async with pool.acquire() as conn, conn.transaction():
            ep = episodes[i % len(episodes)]
            ev = await outbox.add(conn, phase_event(ep), time=datetime.now(timezone.utc))
            written[str(ep)].append(ev.id)
    relays = [OutboxRelay(pool, publisher_to(producer, topic), scratch_schema[0], batch_size=7) for _ in range(3)]

    async def drain_until_empty(relay):
        for _ in range(50):
            await relay.drain()
            if not await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"):
                return
            await asyncio.sleep(0.01)

    await asyncio.gather(*(drain_until_empty(r) for r in relays))
    records = await read_all(kafka.bootstrap, topic)
    ids = [r.headers["ce_id"] for r in records]
    assert len(ids) == 60 and len(set(ids)) == 60  # once each
    for ep, expected in written.items():  # per episode: one partition, outbox order
        got = [r.headers["ce_id"] for r in records if r.key == ep.encode()]
        assert got == expected
        assert len({r.partition for r in records if r.key == ep.encode()}) == 1
    assert all(r.headers["ce_source"] == "/rapport/test" and json.loads(r.value)["to_phase"] == "middle" for r in records)


async def test_relay_keeps_rows_when_kafka_refuses_and_publishes_later(pool, scratch_schema, producer, kafka):
    topic = f"t.{uuid.uuid4().hex[:8]}"
    outbox = Outbox("/rapport/test", scratch_schema[0])
    async with pool.acquire() as conn, conn.transaction():
        ev = await outbox.add(conn, phase_event(uuid.uuid4()), time=datetime.now(timezone.utc))

    async def failing(topic_, rec):
        raise ConnectionError("broker unavailable")

    with pytest.raises(ConnectionError):
        await OutboxRelay(pool, failing, scratch_schema[0]).drain()
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 1
    assert await OutboxRelay(pool, publisher_to(producer, topic), scratch_schema[0]).drain() == 1
    assert [r.headers["ce_id"] for r in await read_all(kafka.bootstrap, topic)] == [ev.id]


async def test_relay_wakes_on_notify(pool, scratch_schema, producer, kafka):
    topic = f"t.{uuid.uuid4().hex[:8]}"
    relay = OutboxRelay(pool, publisher_to(producer, topic), scratch_schema[0], poll_interval_s=3600)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.5)  # the relay is now waiting on LISTEN, with no poll for an hour
        async with pool.acquire() as conn, conn.transaction():
            ev = await Outbox("/rapport/test", scratch_schema[0]).add(conn, phase_event(uuid.uuid4()), time=datetime.now(timezone.utc))
        for _ in range(100):
            if not await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"):
                break
            await asyncio.sleep(0.1)
        assert [r.headers["ce_id"] for r in await read_all(kafka.bootstrap, topic)] == [ev.id]
    finally:
        relay.stop()
        await task
