"""(b) The consumer with its inbox, on the path the services use: an ``EventConsumer`` fed by its
``BatchSubscriber`` (``rapport_shared.kafka``): each pass takes what the broker has (up to 500
records), applies each partition's records in one transaction (inbox claims in one statement, a
savepoint per record, the handler, one COMMIT; partitions side by side), then commits the batch's
offsets once.

Handlers, each over N records produced beforehand to a 3-partition topic:

- **one INSERT**: ``PhaseChangedV1`` records (``events.model_on``: a benchmark topic) and a handler
  that inserts one row — the consumer's own cost;
- **one INSERT, set-based**: the same records (a new consumer group) and a set-based handler
  (``HandlerRegistry.handles_many``) inserting a partition's run of records in one ``executemany``;
- **outcomes' deliveries (set-based)**: ``rapport.notification.delivered.v1`` records applied by
  outcomes' own set-based ``deliveries`` handler (the FHIR record's Communications);
- **outcomes' handlers**: ``rapport.session.attended.v1`` records (16 per episode, sessions 1..16)
  applied by the outcomes service's own registry and unit of work (``rapport_outcomes``) on a
  scratch schema with its migrations, the episodes recorded beforehand: per record the episode
  locked, the attendance upserted, the course read, and at each course's review session the
  reliable-improvement check (the scores read; with none there is nothing to decide, no alert).

Timed: from the start of the first ``process_batch`` to the commit of the batch holding the N-th
record (the group join and the first fetch are before it). In the same run, on the same broker and
the same records: the bare aiokafka producer that wrote them and a bare aiokafka consumer group
reading them (``bench/bare.py``), and the ratio. Also: batches and their sizes, the consumer's CPU
share, and the benchmark process's peak RSS.
"""

from __future__ import annotations

import asyncio
import resource
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from rapport_shared import db, envelope
from rapport_shared.consumer import EventConsumer
from rapport_shared.contracts.course import SessionAttendedV1
from rapport_shared.contracts.notifications import NotificationDeliveredV1
from rapport_shared.messagebus import HandlerRegistry
from rapport_shared.envelope import KafkaRecord
from rapport_shared.kafka import BatchSubscriber, ensure_topics, make_broker, dead_letter_publisher
from rapport_shared.outbox import Outbox
from rapport_testing.fixtures import scratch_schema
from rapport_shared.topics import COURSE, NOTIFICATIONS, dlq_topic
from rapport_shared.uow import uow_maker

import bare
from events import episodes, model_on, phase_changed
from figures import Figure, distribution, percentile, rate

NAME = "consumer"
DEFAULT_N = 20000
SESSIONS = 16


class TimedSubscriber(BatchSubscriber):
    """The shared subscriber, unchanged, noting when each batch started and was committed."""

    def __init__(self, *args, target: int, **kw) -> None:
        super().__init__(*args, **kw)
        self.target, self.seen = target, 0
        self.began: float | None = None
        self.ended = 0.0
        self.cpu = 0.0
        self.batches: list[tuple[int, float]] = []  # (records, seconds from process_batch to committed)
        self.statuses: dict[str, int] = {}
        self.fetching: list[float] = []  # seconds in each getmany within the window
        self.done = asyncio.Event()
        process_batch = self.consumer.process_batch

        async def timed(records):
            self._batch_began = time.perf_counter()
            if self.began is None:
                self.began, self.cpu = self._batch_began, -time.process_time()
            outcomes = await process_batch(records)
            for o in outcomes:
                self.statuses[o.status] = self.statuses.get(o.status, 0) + 1
            return outcomes

        self.consumer.process_batch = timed

    async def _commit(self, fetched, generation) -> None:
        await super()._commit(fetched, generation)
        n = sum(len(b) for b in fetched.values())
        now = time.perf_counter()
        self.batches.append((n, now - self._batch_began))
        self.seen += n
        if self.seen >= self.target and not self.done.is_set():
            self.ended, self.cpu = now, self.cpu + time.process_time()
            self.done.set()


async def start_at_end(bootstrap: str, group: str, topics: list[str]) -> None:
    """Commit ``group`` at the current end of ``topics``: it reads only what is produced next."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in (c.partitions_for_topic(t) or ())]
        if not tps:
            await c._client.force_metadata_update()
            tps = [TopicPartition(t, p) for t in topics for p in (c.partitions_for_topic(t) or ())]
        c.assign(tps)
        await c.commit(await c.end_offsets(tps))
    finally:
        await c.stop()


async def consume(stack, consumer: EventConsumer, n: int) -> TimedSubscriber:
    subscriber = TimedSubscriber(consumer, stack.bootstrap, client_id="bench-consumer", target=n)
    await subscriber.start()
    getmany = subscriber._kc.getmany

    async def timed_getmany(*args, **kw):  # time spent waiting for records, once the timed window began
        began = time.perf_counter()
        fetched = await getmany(*args, **kw)
        if subscriber.began is not None and not subscriber.done.is_set():
            subscriber.fetching.append(time.perf_counter() - began)
        return fetched

    subscriber._kc.getmany = timed_getmany
    try:
        await asyncio.wait_for(subscriber.done.wait(), timeout=1800)
    finally:
        await subscriber.stop()
    return subscriber


def figures_of(label: str, sub: TimedSubscriber, n: int, bare_s: float, note: str) -> list[Figure]:
    elapsed = sub.ended - sub.began
    ours = rate(NAME, f"{label}: records processed + offsets committed", n, elapsed,
                note=f"{note}; {len(sub.batches)} batches (median {percentile([b for b, _ in sub.batches], 50)} records); "
                     f"the consumer's process busy on a CPU {sub.cpu / elapsed:.0%} of that time; outcomes {sub.statuses}")
    ratio = Figure(NAME, f"{label}: rate ÷ bare aiokafka consumer's", n, rate=bare_s / elapsed, unit="×",
                   note="same broker, same run; the bare consumer touches nothing in the records")
    per_batch = distribution(NAME, f"{label}: per batch, process_batch start → offsets committed",
                             [s for _, s in sub.batches])
    fetch = distribution(NAME, f"{label}: per batch, waiting in getmany", sub.fetching or [0.0],
                         note=f"{sum(sub.fetching):.2f} s of the {elapsed:.2f} s window")
    return [ours, ratio, per_batch, fetch]


async def one_insert(stack, n: int) -> list[Figure]:
    schema, dsn = await scratch_schema(stack.admin_dsn, "bench_consumer")
    pool = await db.create_pool(dsn, schema, 1, 10)
    await pool.execute("CREATE TABLE effects (event_id uuid PRIMARY KEY, episode_id uuid NOT NULL, to_phase text NOT NULL)")
    topic, group = f"bench.consumer.{uuid.uuid4().hex[:8]}", f"bench-consumer-{uuid.uuid4().hex[:6]}"
    model, keys = model_on(topic), episodes()
    await ensure_topics(stack.bootstrap, [topic, dlq_topic(topic, group)], 3, 1)
    records = []
    for i in range(n):
        data = phase_changed(model, keys[i % len(keys)])
        records.append(envelope.encode(envelope.new_event(type=model.event_type, source="/rapport/bench",
                                                          subject=str(data.episode_id), data=data, time=data.changed_at)))
    produced_s = await bare.produce(stack.bootstrap, topic, records)
    bare_s = await bare.consume(stack.bootstrap, [topic], n)

    broker = make_broker(stack.bootstrap, client_id="bench-consumer")
    await broker.start()
    consumer = EventConsumer(pool=pool, group_id=group, dead_letter=dead_letter_publisher(broker),
                             outbox=Outbox("/rapport/bench", schema))

    @consumer.on(model)
    async def apply(uow, event, data) -> None:  # the trivial effect, in the inbox's transaction
        await uow.conn.execute("INSERT INTO effects VALUES ($1, $2, $3)", uuid.UUID(event.id), data.episode_id,
                               data.to_phase)

    # The same effect, set-based: a second group over the same records, into a second schema.
    set_schema, set_dsn = await scratch_schema(stack.admin_dsn, "bench_consumer_set")
    set_pool = await db.create_pool(set_dsn, set_schema, 1, 10)
    await set_pool.execute("CREATE TABLE effects (episode_id uuid NOT NULL, to_phase text NOT NULL)")
    set_consumer = EventConsumer(pool=set_pool, group_id=f"{group}-set", dead_letter=dead_letter_publisher(broker),
                                 outbox=Outbox("/rapport/bench", set_schema))
    registry = HandlerRegistry()

    @registry.handles_many(model)
    async def apply_many(msgs, uow) -> None:
        await uow.conn.executemany("INSERT INTO effects VALUES ($1, $2)", [(m.episode_id, m.to_phase) for m in msgs])

    registry.subscribe(set_consumer)
    try:
        sub = await consume(stack, consumer, n)
        set_sub = await consume(stack, set_consumer, n)
    finally:
        await broker.stop()
    try:
        inbox = await pool.fetchval("SELECT count(*) FROM inbox")
        effects = await pool.fetchval("SELECT count(*) FROM effects")
        set_inbox = await set_pool.fetchval("SELECT count(*) FROM inbox")
        set_effects = await set_pool.fetchval("SELECT count(*) FROM effects")
    finally:
        await pool.close()
        await set_pool.close()
    assert sub.statuses == {"processed": n} and inbox == effects == n, (sub.statuses, inbox, effects)
    assert set_sub.statuses == {"processed": n} and set_inbox == set_effects == n, (set_sub.statuses, set_inbox)
    return [
        rate(NAME, "bare aiokafka producer (acks=all, idempotent, linger 5 ms)", n, produced_s,
             note="wrote the records both consumers read"),
        rate(NAME, "bare aiokafka consumer group: getmany + one commit per batch", n, bare_s),
        *figures_of("one INSERT", sub, n, bare_s, "handler: one INSERT; 3 partitions"),
        *figures_of("one INSERT, set-based", set_sub, n, bare_s,
                    "set-based handler: one executemany per partition's run; 3 partitions"),
    ]


@dataclass
class OutcomesScratch:
    """Outcomes on a scratch schema (its migrations) and a fresh group at the end of its topics."""

    schema: str
    pool: asyncpg.Pool
    group: str


async def outcomes_scratch(stack, prefix: str) -> OutcomesScratch:
    from rapport_outcomes.bootstrap import MIGRATIONS  # noqa: PLC0415 - a service, only for this benchmark
    from rapport_outcomes.service_layer.handlers import handlers  # noqa: PLC0415

    schema, dsn = await scratch_schema(stack.admin_dsn, prefix, Path(MIGRATIONS))
    group = f"{prefix.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    topics = sorted({m.topic for m in handlers.event_models})  # the group subscribes to all of them
    await ensure_topics(stack.bootstrap, topics + [dlq_topic(t, group) for t in topics], 3, 1)
    await start_at_end(stack.bootstrap, group, topics)
    return OutcomesScratch(schema, await db.create_pool(dsn, schema, 1, 10), group)


async def consume_with_outcomes(stack, o: OutcomesScratch, n: int) -> TimedSubscriber:
    """N records through outcomes' own registry and unit of work, as the service consumes."""
    from rapport_outcomes.service_layer.handlers import handlers  # noqa: PLC0415
    from rapport_outcomes.service_layer.unit_of_work import OutcomesUnitOfWork  # noqa: PLC0415
    from rapport_outcomes.settings import OutcomesSettings  # noqa: PLC0415

    settings = OutcomesSettings(service_name="outcomes", db_schema=o.schema)
    outbox = Outbox("/rapport/outcomes", o.schema)
    broker = make_broker(stack.bootstrap, client_id=o.group)
    await broker.start()
    consumer = EventConsumer(pool=o.pool, group_id=o.group, dead_letter=dead_letter_publisher(broker), outbox=outbox,
                             make_uow=uow_maker(outbox, settings_clock(), OutcomesUnitOfWork, settings))
    handlers.subscribe(consumer)
    try:
        return await consume(stack, consumer, n)
    finally:
        await broker.stop()


async def outcomes_handlers(stack, n: int) -> list[Figure]:
    """The outcomes service's real handlers over session.attended records."""
    from rapport_outcomes.domain.model import Episode  # noqa: PLC0415 - a service, only for this benchmark
    from rapport_outcomes.adapters.repository import EpisodeRepository  # noqa: PLC0415

    o = await outcomes_scratch(stack, "bench_outcomes")
    pool = o.pool

    count = -(-n // SESSIONS)
    now = datetime.now(timezone.utc)
    eps = [uuid.uuid4() for _ in range(count)]
    async with pool.acquire() as conn:  # the episodes, as outcomes records them from intake (not timed)
        repo = EpisodeRepository(conn)
        for e in eps:
            await repo.add(Episode(episode_id=e, person_id=f"P-bench-{e.hex[:10]}", clinician_id="clin-bench",
                                   template_id="ipt-standard", target_condition="depression", began_at=now,
                                   organisation_id="org-bench"), now)
    records: list[KafkaRecord] = []
    for number in range(1, SESSIONS + 1):  # session k of every episode, then k + 1: as courses go
        for e in eps:
            if len(records) == n:
                break
            data = SessionAttendedV1(episode_id=e, course_id=uuid.uuid5(e, "course"), session_id=uuid.uuid5(e, str(number)),
                                     number=number, attended_sessions=number, contracted_sessions=SESSIONS,
                                     phase="initial" if number <= 3 else "middle",
                                     attended_at=now + timedelta(days=7 * number), organisation_id="org-bench")
            records.append(envelope.encode(envelope.new_event(type=data.event_type, source="/rapport/scheduler",
                                                              subject=str(e), data=data, time=now)))
    await bare.produce(stack.bootstrap, COURSE, records)
    sub = await consume_with_outcomes(stack, o, n)
    try:
        attended = await pool.fetchval("SELECT coalesce(sum(attended_sessions), 0) FROM courses")
        alerts = await pool.fetchval("SELECT count(*) FROM alerts")
        events = await pool.fetchval("SELECT count(*) FROM outbox")
    finally:
        await pool.close()
    bare_s = await bare.consume(stack.bootstrap, [COURSE], n)
    assert sub.statuses == {"processed": n}, sub.statuses
    return figures_of("outcomes' handlers", sub, n, bare_s,
                      f"rapport.session.attended.v1 × {n} ({count} episodes × sessions 1..{SESSIONS}) through outcomes' "
                      f"registry and unit of work; attendances counted {attended}, review alerts raised {alerts}, "
                      f"outbox events {events}")


async def outcomes_deliveries(stack, n: int) -> list[Figure]:
    """Outcomes' set-based ``deliveries`` handler over notification.delivered records."""
    o = await outcomes_scratch(stack, "bench_outcomes_dl")
    now = datetime.now(timezone.utc)
    records: list[KafkaRecord] = []
    for i in range(n):  # ~36 deliveries an episode, as a course makes
        e = uuid.uuid5(uuid.NAMESPACE_OID, f"bench-episode-{i // 36}")
        data = NotificationDeliveredV1(episode_id=e, notification_id=uuid.uuid4(), kind="session_reminder",
                                       recipient_ref=f"patient:P-bench-{e.hex[:8]}", channel="email",
                                       cause_event_id=uuid.uuid4(), delivered_at=now, organisation_id="org-bench")
        records.append(envelope.encode(envelope.new_event(type=data.event_type, source="/rapport/notifier",
                                                          subject=str(e), data=data, time=now)))
    await bare.produce(stack.bootstrap, NOTIFICATIONS, records)
    sub = await consume_with_outcomes(stack, o, n)
    try:
        stored = await o.pool.fetchval("SELECT count(*) FROM communications")
    finally:
        await o.pool.close()
    bare_s = await bare.consume(stack.bootstrap, [NOTIFICATIONS], n)
    assert sub.statuses == {"processed": n} and stored == n, (sub.statuses, stored)
    return figures_of("outcomes' deliveries (set-based)", sub, n, bare_s,
                      f"rapport.notification.delivered.v1 × {n} through outcomes' registry (set-based deliveries "
                      f"handler: one executemany per run); communications stored {stored}")


def settings_clock():
    from rapport_shared.clock import SystemClock  # noqa: PLC0415

    return SystemClock()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(stack, n: int | None = None) -> list[Figure]:
    n = n or DEFAULT_N
    figures = await one_insert(stack, n)
    figures += await outcomes_handlers(stack, n)
    figures += await outcomes_deliveries(stack, n)
    figures[0].extra["bench_peak_rss_mib"] = round(peak_rss_mib(), 1)
    figures.append(Figure(NAME, "benchmark process peak RSS (producer, consumers, handlers in one process)", n,
                          rate=peak_rss_mib(), unit="MiB"))
    return figures
