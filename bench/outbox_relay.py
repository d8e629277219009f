"""(a) The outbox relay: ``Outbox.add`` in transactions, ``OutboxRelay`` publishing to real Kafka
through the services' relay producer (``rapport_shared.kafka.RelayProducer``: acks=all,
idempotent, linger 5 ms, the services' batch size) and marking the rows sent. In the same run, on
the same broker, a bare aiokafka producer sends as many records of the same size
(``bench/bare.py``): the relay's drain rate is read next to it.

Three timed parts, one process, one event loop (as in a service, where HTTP handlers and the relay
share one loop):

1. **write**: N events through ``Outbox.add``, ``TXN`` per transaction, relay not running. Timed:
   first BEGIN to last COMMIT.
2. **backlog drain**: ``OutboxRelay.run()`` started on those N unsent rows. Timed: start of the
   relay task to the commit of the transaction that marked the last row sent (measured when
   ``publish_batch`` returns). Per batch, the split between locking + reading + handing the
   records to the producer, waiting for the last acknowledgement, and marking + committing.
3. **latency**: the relay running and idle; single-event transactions committed at a steady rate.
   Per event: client time just after COMMIT → the broker's acknowledgement of that record (the
   aiokafka send future resolving) and → the relay's marking transaction committed. Once with the
   relay woken by LISTEN/NOTIFY (how it runs), once with the relay listening on a channel nobody
   notifies, so only its poll interval (the services' default, 1 s) finds the rows: what latency
   becomes if notifications are lost.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timezone

from rapport_shared import db
from rapport_shared.kafka import RelayProducer, ensure_topics
from rapport_shared.listen import NotifyLoop
from rapport_shared.outbox import Outbox, OutboxRelay
from rapport_testing.fixtures import scratch_schema

from rapport_shared import envelope
from rapport_shared.settings import ServiceSettings

import bare
from events import episodes, model_on, phase_changed
from figures import Figure, distribution, percentile, rate

NAME = "relay"
DEFAULT_N = 5000
TXN = 100                  # events per writer transaction in the backlog part
BATCH = ServiceSettings.model_fields["relay_batch_size"].default  # the services' default (RAPPORT_RELAY_BATCH_SIZE)
POLL_S = ServiceSettings.model_fields["relay_poll_interval_s"].default  # RAPPORT_RELAY_POLL_INTERVAL_S
LINGER_MS = ServiceSettings.model_fields["relay_linger_ms"].default  # RAPPORT_RELAY_LINGER_MS
LATENCY_RATE = 100         # events/s, one per transaction, with NOTIFY
LATENCY_EVENTS = 400
POLL_RATE = 50             # events/s for the polling-only run
POLL_EVENTS = 100


class Timings:
    """When each record was acknowledged by the broker and when its row was marked sent; per batch,
    how long the relay spent locking + reading + sending, waiting for acks, and marking + committing."""

    def __init__(self) -> None:
        self.acked: dict[str, float] = {}
        self.marked: dict[str, float] = {}
        self.in_batch: list[str] = []
        self.batch_began = self.last_sent = 0.0
        self.phases: list[tuple[float, float, float]] = []  # (read + send, wait for acks, mark + commit)
        self.changed = asyncio.Event()

    def wrap(self, publish):
        async def timed(topic, record):
            ack = await publish(topic, record)  # an asyncio future: resolves on the broker's ack
            event_id = record.headers["ce_id"]
            self.in_batch.append(event_id)
            self.last_sent = time.perf_counter()
            ack.add_done_callback(lambda _f, e=event_id: self.acked.setdefault(e, time.perf_counter()))
            return ack

        return timed

    def batch_begins(self) -> None:
        self.in_batch.clear()
        self.batch_began = time.perf_counter()

    def batch_done(self) -> None:
        now = time.perf_counter()
        for event_id in self.in_batch:
            self.marked.setdefault(event_id, now)
        last_ack = max(self.acked[e] for e in self.in_batch)
        self.phases.append((self.last_sent - self.batch_began, last_ack - self.last_sent, now - last_ack))
        self.in_batch.clear()
        self.changed.set()

    async def wait_marked(self, ids: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ids <= self.marked.keys():
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"relay marked {len(ids & self.marked.keys())}/{len(ids)} rows in {timeout:.0f} s")
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass


class TimedRelay(OutboxRelay):
    """The shared relay, unchanged, telling ``Timings`` when each batch's marking committed."""

    def __init__(self, *args, timings: Timings, deaf: bool = False, **kw) -> None:
        super().__init__(*args, **kw)
        self.timings = timings
        if deaf:  # listen where nobody notifies: only the poll interval finds new rows
            self._loop = NotifyLoop(self.pool, f"{self.channel}_bench_deaf", poll_interval_s=self.poll_interval_s,
                                    what="outbox relay (polling only)")

    async def publish_batch(self) -> int:
        self.timings.batch_begins()
        n = await super().publish_batch()
        if n:
            self.timings.batch_done()
        return n


async def write_paced(pool, outbox: Outbox, model, keys, count: int, per_s: float) -> dict[str, float]:
    """``count`` single-event transactions at ``per_s``; returns event id → time just after COMMIT."""
    committed: dict[str, float] = {}
    interval, start = 1.0 / per_s, time.perf_counter()
    for i in range(count):
        due = start + i * interval
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        async with pool.acquire() as conn, conn.transaction():
            event = await outbox.add(conn, phase_changed(model, keys[i % len(keys)]), time=datetime.now(timezone.utc))
        committed[event.id] = time.perf_counter()
    return committed


async def latency_run(pool, schema, broker, outbox, model, keys, *, deaf: bool, count: int, per_s: float):
    timings = Timings()
    relay = TimedRelay(pool, timings.wrap(broker.publish), schema, batch_size=BATCH, poll_interval_s=POLL_S,
                       timings=timings, deaf=deaf)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(1.5)  # the relay has drained what was there and sits idle, listening
        committed = await write_paced(pool, outbox, model, keys, count, per_s)
        await timings.wait_marked(set(committed), timeout=60)
    finally:
        relay.stop()
        await task
    to_ack = [timings.acked[e] - t for e, t in committed.items()]
    to_mark = [timings.marked[e] - t for e, t in committed.items()]
    return to_ack, to_mark


async def run(stack, n: int | None = None) -> list[Figure]:
    n = n or DEFAULT_N
    schema, dsn = await scratch_schema(stack.admin_dsn, "bench_relay")
    pool = await db.create_pool(dsn, schema, 1, 10)  # as a service's pool (RAPPORT_DB_POOL_MAX=10)
    topic = f"bench.relay.{uuid.uuid4().hex[:8]}"
    await ensure_topics(stack.bootstrap, [topic], 3, 1)  # 3 partitions, as the services' topics
    broker = RelayProducer(stack.bootstrap, client_id="bench-relay", linger_ms=LINGER_MS)
    await broker.start()
    model, keys = model_on(topic), episodes()
    outbox = Outbox("/rapport/bench", schema)
    figures: list[Figure] = []
    try:
        # 1. write the backlog
        started = time.perf_counter()
        for first in range(0, n, TXN):
            async with pool.acquire() as conn, conn.transaction():
                for i in range(first, min(n, first + TXN)):
                    await outbox.add(conn, phase_changed(model, keys[i % len(keys)]), time=datetime.now(timezone.utc))
        figures.append(rate(NAME, f"Outbox.add, {TXN} per transaction", n, time.perf_counter() - started,
                            note="INSERT + pg_notify per event; commit per transaction"))

        # 2. drain it
        timings = Timings()
        relay = TimedRelay(pool, timings.wrap(broker.publish), schema, batch_size=BATCH, poll_interval_s=POLL_S,
                           timings=timings)
        ids = {str(r["event_id"]) for r in await pool.fetch("SELECT event_id FROM outbox WHERE sent_at IS NULL")}
        started, cpu = time.perf_counter(), time.process_time()
        task = asyncio.create_task(relay.run())
        try:
            await timings.wait_marked(ids, timeout=600)
            drained, cpu = time.perf_counter() - started, time.process_time() - cpu
        finally:
            relay.stop()
            await task
        unsent = await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        assert unsent == 0 and len(ids) == n, (unsent, len(ids))
        read_send, wait_acks, mark = (percentile([p[i] * 1000 for p in timings.phases], 50) for i in range(3))
        figures.append(rate(NAME, f"backlog drain: publish (acks=all) + mark, batch {BATCH}", n, drained,
                            note=f"{len(timings.phases)} batches; per batch (median) {read_send:.0f} ms to lock, read"
                                 f" and send, {wait_acks:.0f} ms more until the last ack, {mark:.0f} ms to UPDATE and"
                                 f" COMMIT; the relay's process busy on a CPU {cpu / drained:.0%} of the time"))

        # the bare producer, same broker, as many records of the same kind (not through Postgres)
        records = [envelope.encode(envelope.new_event(type=model.event_type, source="/rapport/bench",
                                                      subject=str(d.episode_id), data=d, time=d.changed_at))
                   for d in (phase_changed(model, keys[i % len(keys)]) for i in range(n))]
        bare_s = await bare.produce(stack.bootstrap, topic, records)
        figures.append(rate(NAME, f"bare aiokafka producer (acks=all, idempotent, linger {LINGER_MS} ms)", n, bare_s,
                            note="the same number of records of the same size, handed over at once"))
        figures.append(Figure(NAME, "backlog drain ÷ bare producer", n, rate=bare_s / drained, unit="×",
                              note="same broker, same run"))

        # 3. latency, woken by NOTIFY, then by polling only
        to_ack, to_mark = await latency_run(pool, schema, broker, outbox, model, keys, deaf=False,
                                            count=min(n, LATENCY_EVENTS), per_s=LATENCY_RATE)
        figures.append(distribution(NAME, f"commit → broker ack, NOTIFY wake-up ({LATENCY_RATE}/s)", to_ack))
        figures.append(distribution(NAME, f"commit → marked sent, NOTIFY wake-up ({LATENCY_RATE}/s)", to_mark))
        to_ack, _ = await latency_run(pool, schema, broker, outbox, model, keys, deaf=True,
                                      count=min(n, POLL_EVENTS), per_s=POLL_RATE)
        figures.append(distribution(NAME, f"commit → broker ack, polling only ({POLL_S:g} s)", to_ack,
                                    note="no NOTIFY reaches the relay: what a lost notification costs"))
    finally:
        await broker.stop()
        await pool.close()
    return figures
