"""Every record ends somewhere (issue 11, item 1): EventConsumer fed by its BatchSubscriber from
real Kafka, with real Postgres. A hostile record is dead-lettered once, the partition
keeps moving (a valid record after it on the same partition is applied) and nothing loops."""

import asyncio
import json
import time
import uuid
from datetime import datetime, timezone

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from rapport_shared import envelope
from rapport_shared.consumer import EventConsumer
from rapport_shared.contracts import IntakeCompletedV1, PhaseChangedV1, ScoreSubmittedV1
from rapport_shared.kafka import BatchSubscriber, dead_letter_publisher, ensure_topics, make_broker
from rapport_shared.outbox import Outbox
from rapport_testing.kafka import read_all
from rapport_tools.kafka_ops import Conn, partitions_of
from rapport_shared.topics import COURSE, OUTCOMES, dlq_topic

pytestmark = pytest.mark.integration

NESTED = b"[" * 200_000 + b"]" * 200_000  # 400 KB: json.loads raises RecursionError


def ce_headers(event_type: str, subject: str, **override) -> list[tuple[str, bytes | None]]:
    h = {"content-type": b"application/json", "ce_specversion": b"1.0", "ce_id": str(uuid.uuid4()).encode(),
         "ce_source": b"/rapport/test", "ce_type": event_type.encode(), "ce_time": b"2026-11-26T10:00:00Z",
         "ce_subject": subject.encode(), **override}
    return list(h.items())


def phase_data(episode: str) -> dict:
    return {"episode_id": episode, "course_id": str(uuid.uuid4()), "from_phase": "initial", "to_phase": "middle",
            "effective_from_session": 4, "reason": "checklist_complete", "changed_at": "2026-11-26T10:00:00Z"}


class Harness:
    """One consumer group on rapport.course + rapport.outcomes, started at the current end of both."""

    def __init__(self, kafka, pool, schema, *, max_attempts=3):
        self.kafka, self.pool = kafka, pool
        self.group = f"g-poison-{uuid.uuid4().hex[:8]}"
        self.broker = make_broker(kafka.bootstrap, client_id="rapport-test-poison")
        self.consumer = EventConsumer(pool=pool, group_id=self.group, dead_letter=dead_letter_publisher(self.broker),
                                      outbox=Outbox("/rapport/test", schema), max_attempts=max_attempts,
                                      backoff_s=0.02, backoff_max_s=0.1)
        self.calls: dict[tuple[str, int, int], int] = {}  # deliveries to the consumer per record
        self.handler_calls: dict[str, int] = {}  # handler calls per ce_id
        self.failing: dict[str, BaseException] = {}  # ce_id -> what the handler raises
        process_batch = self.consumer.process_batch

        async def counting(records):
            for record in records:
                k = (record.topic, record.partition, record.offset)
                self.calls[k] = self.calls.get(k, 0) + 1
            return await process_batch(records)

        self.consumer.process_batch = counting
        self.subscriber = BatchSubscriber(self.consumer, kafka.bootstrap, client_id="rapport-test-poison")

        async def apply(uow, event, data):
            self.handler_calls[event.id] = self.handler_calls.get(event.id, 0) + 1
            if event.id in self.failing:
                raise self.failing[event.id]
            await uow.conn.execute("INSERT INTO effects VALUES ($1, 'x')", uuid.UUID(event.id))

        self.consumer.register(PhaseChangedV1, apply)
        self.consumer.register(ScoreSubmittedV1, apply)

    async def start(self):
        topics = self.consumer.topics
        await ensure_topics(self.kafka.bootstrap, topics + [dlq_topic(t, self.group) for t in topics], 3, 1)
        # Commit the group at the current end, so it sees only what this test produces.
        c = AIOKafkaConsumer(bootstrap_servers=self.kafka.bootstrap, group_id=self.group, enable_auto_commit=False)
        await c.start()
        try:
            parts = await partitions_of(Conn(self.kafka.bootstrap), topics)
            tps = [TopicPartition(t, p) for t in topics for p in parts[t]]
            c.assign(tps)
            end = await c.end_offsets(tps)
            await c.commit({tp: off for tp, off in end.items()})
        finally:
            await c.stop()
        await self.broker.start()
        await self.subscriber.start()

    async def stop(self):
        await self.subscriber.stop()
        await self.broker.stop()

    async def dead_letters(self, topic):
        return await read_all(self.kafka.bootstrap, dlq_topic(topic, self.group))


@pytest.fixture
async def pool(scratch_pool):
    await scratch_pool.execute("CREATE TABLE IF NOT EXISTS effects (event_id uuid, note text)")
    return scratch_pool


@pytest.fixture
async def harness(kafka, pool, scratch_schema):
    h = Harness(kafka, pool, scratch_schema[0])
    await h.start()
    yield h
    await h.stop()


@pytest.fixture
async def producer(kafka):
    p = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", max_request_size=2_000_000)
    await p.start()
    yield p
    await p.stop()


async def send(producer, topic, value, headers, key=b"episode-key", partition=0):
    md = await (await producer.send(topic, value=value, key=key, headers=headers, partition=partition))
    return md.offset


async def effect_count(pool, event_id: str) -> int:
    return await pool.fetchval("SELECT count(*) FROM effects WHERE event_id = $1", uuid.UUID(event_id))


async def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.1)
    return False


async def valid_after(harness, producer, topic=COURSE):
    """Produce a valid record on the same partition and wait for its effect."""
    episode = str(uuid.uuid4())
    headers = ce_headers(PhaseChangedV1.event_type, episode)
    ce_id = dict(headers)["ce_id"].decode()
    await send(producer, topic, json.dumps(phase_data(episode)).encode(), headers)

    async def applied():
        return await effect_count(harness.pool, ce_id) == 1

    assert await wait_for(applied), "the valid record after the bad one was never applied: partition blocked"
    return ce_id


async def test_nested_array_record_is_dead_lettered_once_and_the_partition_moves_on(harness, producer):
    episode = str(uuid.uuid4())
    bad_headers = ce_headers(PhaseChangedV1.event_type, episode)
    bad_offset = await send(producer, COURSE, NESTED, bad_headers)

    await valid_after(harness, producer)
    await asyncio.sleep(1.0)  # a looping consumer would keep re-reading the bad record meanwhile

    assert harness.calls[(COURSE, 0, bad_offset)] == 1  # read once, not in a loop
    [dl] = await harness.dead_letters(COURSE)
    assert dl.value == NESTED and dl.key == b"episode-key"
    assert dl.headers["dlq_reason"] == "envelope" and "nested too deeply" in dl.headers["dlq_error"]
    assert dl.headers["dlq_original_offset"] == str(bad_offset) and dl.headers["dlq_original_partition"] == "0"
    assert dl.headers["ce_id"] == dict(bad_headers)["ce_id"].decode()
    assert harness.handler_calls.get(dl.headers["ce_id"]) is None


@pytest.mark.parametrize("case", ["non_utf8_header", "null_header", "duplicate_ce_type", "missing_ce_id",
                                  "not_utf8_value", "nan", "huge_key"])
async def test_hostile_shapes_are_dead_lettered_and_do_not_block(harness, producer, case):
    episode = str(uuid.uuid4())
    value = json.dumps(phase_data(episode)).encode()
    headers = ce_headers(PhaseChangedV1.event_type, episode)
    key = b"episode-key"
    if case == "non_utf8_header":
        headers = [(k, b"\xff\xfe" if k == "ce_source" else v) for k, v in headers]
    elif case == "null_header":
        headers = [(k, None if k == "ce_source" else v) for k, v in headers]
    elif case == "duplicate_ce_type":
        headers.append(("ce_type", ScoreSubmittedV1.event_type.encode()))
    elif case == "missing_ce_id":
        headers = [(k, v) for k, v in headers if k != "ce_id"]
    elif case == "not_utf8_value":
        value = b'{"episode_id": "\xff"}'
    elif case == "nan":
        value = value[:-1] + b',"score":NaN}'
    elif case == "huge_key":
        key = b"\xff" * 100_000
        value = b"[" * 100_000
    bad_offset = await send(producer, COURSE, value, headers, key=key)

    await valid_after(harness, producer)
    assert harness.calls[(COURSE, 0, bad_offset)] == 1
    [dl] = await harness.dead_letters(COURSE)
    assert dl.headers["dlq_reason"] == "envelope" and dl.headers["dlq_error"], dl.headers


async def test_a_type_from_another_topic_is_dead_lettered(harness, producer):
    episode = str(uuid.uuid4())
    # handled by this consumer, but phase_changed belongs to rapport.course, not rapport.outcomes
    wrong = ce_headers(PhaseChangedV1.event_type, episode)
    off1 = await send(producer, OUTCOMES, json.dumps(phase_data(episode)).encode(), wrong)
    # not handled here, but the catalogue says rapport.intake
    foreign = ce_headers(IntakeCompletedV1.event_type, episode)
    off2 = await send(producer, OUTCOMES, b"{}", foreign)

    await valid_after(harness, producer, topic=COURSE)

    async def both_dead():
        return len(await harness.dead_letters(OUTCOMES)) == 2

    assert await wait_for(both_dead)
    dls = await harness.dead_letters(OUTCOMES)
    assert [d.headers["dlq_reason"] for d in dls] == ["type_topic_mismatch"] * 2
    assert "belongs to rapport.course" in dls[0].headers["dlq_error"]
    assert "belongs to rapport.intake" in dls[1].headers["dlq_error"]
    assert harness.calls[(OUTCOMES, 0, off1)] == 1 and harness.calls[(OUTCOMES, 0, off2)] == 1
    assert harness.handler_calls.get(dict(wrong)["ce_id"].decode()) is None  # never applied


async def test_a_handler_oserror_is_retried_a_bounded_number_of_times_then_dead_lettered(harness, producer):
    episode = str(uuid.uuid4())
    headers = ce_headers(PhaseChangedV1.event_type, episode)
    ce_id = dict(headers)["ce_id"].decode()
    harness.failing[ce_id] = OSError("handler's own I/O failed")
    off = await send(producer, COURSE, json.dumps(phase_data(episode)).encode(), headers)

    await valid_after(harness, producer)
    await asyncio.sleep(0.5)

    assert harness.handler_calls[ce_id] == 3  # max_attempts, not forever
    assert harness.calls[(COURSE, 0, off)] == 1
    assert await effect_count(harness.pool, ce_id) == 0
    [dl] = await harness.dead_letters(COURSE)
    assert dl.headers["dlq_reason"] == "handler" and dl.headers["dlq_attempts"] == "3"
    assert "OSError" in dl.headers["dlq_error"]
