"""The safety lane (issue 13, item 4) in a real ServiceRuntime over real Kafka and Postgres: with
``priority=[AlertRaisedV1]`` an alert produced behind a backlog of routine records on the same
topic is applied while that backlog is still waiting, once; the routine records are all applied by
the main consumer, once; nothing is dead-lettered."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from rapport_shared import envelope
from rapport_shared.contracts.outcomes import AlertRaisedV1, AlertResolvedV1
from rapport_shared.kafka import ensure_topics
from rapport_shared.runtime import ServiceRuntime
from rapport_shared.settings import ServiceSettings
from rapport_shared.topics import OUTCOMES, dlq_topic

pytestmark = pytest.mark.integration

BACKLOG = 3000


async def start_at_end(bootstrap: str, groups: list[str], topic: str) -> None:
    """Commit each group at the current end of ``topic`` (other tests' records are not ours)."""
    for group in groups:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await c.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(3)]
            c.assign(tps)
            await c.commit(await c.end_offsets(tps))
        finally:
            await c.stop()


async def produce(bootstrap: str, events: list) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        acks = []
        for data in events:
            rec = envelope.encode(envelope.new_event(type=data.event_type, source="/rapport/test",
                                                     subject=str(data.episode_id), data=data, time=datetime.now(timezone.utc)))
            acks.append(await producer.send(data.topic, value=rec.value, key=rec.key,
                                             headers=[(k, v.encode()) for k, v in rec.headers.items()]))
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


async def test_an_alert_behind_a_backlog_is_applied_before_the_backlog_once(kafka, scratch_schema):
    schema, dsn = scratch_schema
    group = f"g-lane-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka.bootstrap, [OUTCOMES, dlq_topic(OUTCOMES, group)], 3, 1)
    await start_at_end(kafka.bootstrap, [group, f"{group}-priority"], OUTCOMES)
    admin = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    await admin.execute("CREATE TABLE IF NOT EXISTS lane_effects (event_id uuid PRIMARY KEY, kind text NOT NULL,"
                        " at timestamptz NOT NULL DEFAULT clock_timestamp())")

    def register(runtime, consumer):
        async def routine(uow, event, data):
            await asyncio.sleep(0.002)  # a routine handler's own work
            await uow.conn.execute("INSERT INTO lane_effects (event_id, kind) VALUES ($1, 'routine')", uuid.UUID(event.id))

        async def alert(uow, event, data):
            await uow.conn.execute("INSERT INTO lane_effects (event_id, kind) VALUES ($1, 'alert')", uuid.UUID(event.id))

        consumer.register(AlertResolvedV1, routine)
        consumer.register(AlertRaisedV1, alert)

    settings = ServiceSettings(service_name="lanetest", db_schema=schema, database_dsn=dsn, kafka_bootstrap=kafka.bootstrap,
                               consumer_group=group, relay_enabled=False, consumer_batch_max_records=100)
    runtime = ServiceRuntime(settings=settings, migrations_dir=Path("/nonexistent"), register_handlers=register,
                             priority=[AlertRaisedV1])
    now = datetime.now(timezone.utc)
    routine = [AlertResolvedV1(episode_id=uuid.uuid4(), alert_id=uuid.uuid4(), kind="review", resolved_by="clin-1",
                               action="other", resolved_at=now) for _ in range(BACKLOG)]
    raised = AlertRaisedV1(episode_id=uuid.uuid4(), alert_id=uuid.uuid4(), kind="safety", urgency="urgent",
                           reason_code="safety_item_positive", clinician_id="clin-1", raised_at=now, session_number=1)
    await produce(kafka.bootstrap, routine)
    await runtime.start()
    try:
        assert runtime.priority_consumer is not None and runtime.consumer.leaves == {AlertRaisedV1.event_type}
        await asyncio.sleep(1.0)  # the main consumer is busy with the backlog
        await produce(kafka.bootstrap, [raised])
        deadline = time.monotonic() + 60
        while not await admin.fetchval("SELECT count(*) FROM lane_effects WHERE kind = 'alert'"):
            assert time.monotonic() < deadline, "the alert was never applied"
            await asyncio.sleep(0.02)
        waiting = BACKLOG - await admin.fetchval("SELECT count(*) FROM lane_effects WHERE kind = 'routine'")
        assert waiting > 0, "the backlog was done before the alert: it did not overtake anything"
        while await admin.fetchval("SELECT count(*) FROM lane_effects WHERE kind = 'routine'") < BACKLOG:
            assert time.monotonic() < deadline + 120, "the backlog was never applied"
            await asyncio.sleep(0.1)
    finally:
        await runtime.stop()
    try:
        assert await admin.fetchval("SELECT count(*) FROM lane_effects WHERE kind = 'alert'") == 1
        inbox = await admin.fetchval("SELECT count(*) FROM inbox WHERE topic = $1 AND event_type = ANY($2)", OUTCOMES,
                                     [AlertRaisedV1.event_type, AlertResolvedV1.event_type])
        effects = await admin.fetchval("SELECT count(*) FROM lane_effects")
    finally:
        await admin.close()
    assert effects == BACKLOG + 1 and inbox >= BACKLOG + 1
    print(f"alert applied with {waiting} routine record(s) of {BACKLOG} still waiting behind it")
