"""(b) The consumer with its inbox, on the path the services use: a FastStream ``KafkaBroker``
from ``rapport_shared.kafka.make_broker``, the ``EventConsumer`` attached with
``rapport_shared.kafka.attach`` (``AckPolicy.MANUAL``: one record at a time, the offset committed
after the effect), and per record: decode + validate the CloudEvent and the contract, one
transaction with the inbox row and a trivial effect (one INSERT), COMMIT, then the offset commit.

Set-up (not timed): N records encoded as the relay writes them (``envelope.encode``) produced to a
3-partition topic with a plain aiokafka producer. Timed: from the start of the first
``EventConsumer.process`` call to the end of the N-th (the group join and the first fetch are
before it; the N-1 offset commits in between are in it). The time inside ``process`` and the gap
between two records (offset commit, FastStream dispatch, fetch) are reported too, and the offset
commit alone (``AIOKafkaConsumer.commit``, which FastStream's ``msg.ack()`` awaits, wrapped with a
timer for the run).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import contextmanager
from typing import Iterator

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from rapport_shared import db, envelope
from rapport_shared.consumer import EventConsumer
from rapport_shared.kafka import attach, dead_letter_publisher, ensure_topics, make_broker
from rapport_shared.outbox import Outbox
from rapport_shared.testing.fixtures import scratch_schema
from rapport_shared.testing.kafka import wait_caught_up
from rapport_shared.topics import dlq_topic

from events import episodes, model_on, phase_changed
from figures import Figure, distribution, rate

NAME = "consumer"
DEFAULT_N = 2000


@contextmanager
def timed_offset_commits() -> Iterator[list[float]]:
    """Time every ``AIOKafkaConsumer.commit`` (what FastStream's ``msg.ack()`` awaits) while inside."""
    durations: list[float] = []
    original = AIOKafkaConsumer.commit

    async def commit(self, *args, **kw):
        began = time.perf_counter()
        try:
            return await original(self, *args, **kw)
        finally:
            durations.append(time.perf_counter() - began)

    AIOKafkaConsumer.commit = commit
    try:
        yield durations
    finally:
        AIOKafkaConsumer.commit = original


class TimedConsumer(EventConsumer):
    """The shared consumer, unchanged, timing each ``process`` call."""

    def __init__(self, *args, target: int, **kw) -> None:
        super().__init__(*args, **kw)
        self.target = target
        self.spans: list[tuple[float, float]] = []
        self.statuses: dict[str, int] = {}
        self.done = asyncio.Event()
        self.cpu = 0.0

    async def process(self, record):
        if not self.spans:
            self.cpu = -time.process_time()
        began = time.perf_counter()
        outcome = await super().process(record)
        self.spans.append((began, time.perf_counter()))
        self.statuses[outcome.status] = self.statuses.get(outcome.status, 0) + 1
        if len(self.spans) == self.target:
            self.cpu += time.process_time()  # this process's CPU seconds over the timed window
            self.done.set()
        return outcome


async def produce(bootstrap: str, model, n: int) -> None:
    keys = episodes()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        acks = []
        for i in range(n):
            data = phase_changed(model, keys[i % len(keys)])
            event = envelope.new_event(type=model.event_type, source="/rapport/bench", subject=str(data.episode_id),
                                       data=data, time=data.changed_at)
            rec = envelope.encode(event)
            acks.append(await producer.send(model.topic, value=rec.value, key=rec.key,
                                             headers=[(k, v.encode()) for k, v in rec.headers.items()]))
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


async def run(stack, n: int | None = None) -> list[Figure]:
    n = n or DEFAULT_N
    schema, dsn = await scratch_schema(stack.admin_dsn, "bench_consumer")
    pool = await db.create_pool(dsn, schema, 1, 10)
    await pool.execute("CREATE TABLE effects (event_id uuid PRIMARY KEY, episode_id uuid NOT NULL, to_phase text NOT NULL)")
    topic, group = f"bench.consumer.{uuid.uuid4().hex[:8]}", f"bench-consumer-{uuid.uuid4().hex[:6]}"
    model = model_on(topic)
    await ensure_topics(stack.bootstrap, [topic, dlq_topic(topic, group)], 3, 1)
    await produce(stack.bootstrap, model, n)

    broker = make_broker(stack.bootstrap, client_id="bench-consumer")
    consumer = TimedConsumer(pool=pool, group_id=group, dead_letter=dead_letter_publisher(broker),
                             outbox=Outbox("/rapport/bench", schema), target=n)

    @consumer.on(model)
    async def apply(uow, event, data) -> None:  # the trivial effect, in the inbox's transaction
        await uow.conn.execute("INSERT INTO effects VALUES ($1, $2, $3)", uuid.UUID(event.id), data.episode_id,
                               data.to_phase)

    attach(broker, consumer, auto_offset_reset="earliest")
    with timed_offset_commits() as commits:
        try:
            await broker.start()
            await asyncio.wait_for(consumer.done.wait(), timeout=600)
            await wait_caught_up(stack.bootstrap, group, topic, timeout=60)  # every offset committed (not timed)
        finally:
            await broker.stop()
    try:
        inbox = await pool.fetchval("SELECT count(*) FROM inbox")
        effects = await pool.fetchval("SELECT count(*) FROM effects")
    finally:
        await pool.close()
    assert consumer.statuses == {"processed": n} and inbox == effects == n, (consumer.statuses, inbox, effects)

    spans = sorted(consumer.spans)
    elapsed = spans[-1][1] - spans[0][0]
    inside = [end - began for began, end in spans]
    gaps = [nxt[0] - prev[1] for prev, nxt in zip(spans, spans[1:])]
    return [
        rate(NAME, "records processed + offsets committed, 1 subscriber", n, elapsed,
             note="first process() start to last process() end; one record at a time across 3 partitions; "
                  f"the consumer's process busy on a CPU {consumer.cpu / elapsed:.0%} of that time"),
        distribution(NAME, "per record: inside EventConsumer.process", inside,
                     note="decode + validate, BEGIN, inbox INSERT, effect INSERT, COMMIT"),
        distribution(NAME, "per record: between two process() calls", gaps,
                     note="offset commit + FastStream dispatch + fetch"),
        distribution(NAME, "per record: offset commit (msg.ack)", commits[:n],
                     note="AIOKafkaConsumer.commit: one broker round trip per record"),
    ]
