"""Batch consumption over real Kafka and Postgres: nothing lost, nothing doubled, when the consumer
dies at each point of a batch (inside its transaction, after it, before the one offset commit),
and when two replicas of a consumer rebalance in the middle of a load.

A death is simulated in-process: the crash point raises a ``BaseException`` that kills the
subscriber's loop (the transaction in flight rolls back, as Postgres does for a dead client), the
dead member leaves the group without committing, and a fresh subscriber of the same group takes
over. tests/e2e/test_crash_points.py does the same with real process deaths.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from rapport_shared import consumer as consumer_module
from rapport_shared import envelope
from rapport_shared import kafka as kafka_module
from rapport_shared.consumer import EventConsumer
from rapport_shared.contracts import PhaseChangedV1
from rapport_shared.kafka import BatchSubscriber, ensure_topics
from rapport_shared.outbox import Outbox
from rapport_testing.kafka import wait_caught_up

pytestmark = pytest.mark.integration


class Crash(BaseException):
    """The process dies here (not an Exception: nothing may catch it)."""


def model_on(topic: str) -> type[PhaseChangedV1]:
    return type(f"Phase_{uuid.uuid4().hex[:6]}", (PhaseChangedV1,), {"topic": topic, "__module__": __name__})


@pytest.fixture
async def pool(scratch_pool):
    await scratch_pool.execute("CREATE TABLE IF NOT EXISTS kafka_effects (event_id uuid NOT NULL, member text NOT NULL)")
    return scratch_pool


async def produce(bootstrap: str, model, n: int, keys: int = 60) -> list[str]:
    episodes = [uuid.uuid4() for _ in range(keys)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    ids, acks = [], []
    try:
        for i in range(n):
            ep = episodes[i % keys]
            data = model(episode_id=ep, course_id=uuid.uuid5(ep, "c"), from_phase="initial", to_phase="middle",
                         effective_from_session=4, reason="checklist_complete", changed_at="2026-11-26T10:00:00Z")
            ev = envelope.new_event(type=model.event_type, source="/rapport/test", subject=str(ep), data=data,
                                    time=data.changed_at)
            rec = envelope.encode(ev)
            ids.append(ev.id)
            acks.append(await producer.send(model.topic, value=rec.value, key=rec.key,
                                             headers=[(k, v.encode()) for k, v in rec.headers.items()]))
        await asyncio.gather(*acks)
    finally:
        await producer.stop()
    return ids


def member(kafka, pool, schema, model, group, name, handled, *, delay_s=0.0):
    async def dead_letter(topic, rec):
        raise AssertionError(f"nothing here should be dead-lettered: {rec.headers}")

    consumer = EventConsumer(pool=pool, group_id=group, dead_letter=dead_letter, outbox=Outbox("/rapport/test", schema),
                             concurrency=3)

    async def apply(uow, event, data):
        if delay_s:
            await asyncio.sleep(delay_s)
        await uow.conn.execute("INSERT INTO kafka_effects VALUES ($1, $2)", uuid.UUID(event.id), name)

    consumer.register(model, apply)
    process_batch = consumer.process_batch

    async def counting(records):
        outcomes = await process_batch(records)
        for o in outcomes:
            handled[o.status] = handled.get(o.status, 0) + 1
        return outcomes

    consumer.process_batch = counting
    return BatchSubscriber(consumer, kafka.bootstrap, client_id=f"test-{name}", max_records=100)


async def counts(pool, ids) -> tuple[int, int]:
    row = await pool.fetchrow("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM kafka_effects"
                              " WHERE event_id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids])
    inbox = await pool.fetchval("SELECT count(*) FROM inbox WHERE event_id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids])
    assert row["n"] == row["d"], f"doubled: {row['n'] - row['d']} effect(s) applied twice"
    return row["n"], inbox


async def wait_until(predicate, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("condition not reached")


@pytest.mark.parametrize("point", ["consumer.mid_batch", "consumer.after_effect", "consumer.before_offset_commit"])
async def test_a_death_at_each_point_of_a_batch_loses_nothing_and_doubles_nothing(kafka, pool, scratch_schema,
                                                                                  monkeypatch, point):
    topic, group = f"t.batch.{uuid.uuid4().hex[:8]}", f"g-crash-{uuid.uuid4().hex[:8]}"
    model = model_on(topic)
    await ensure_topics(kafka.bootstrap, [topic], 3, 1)
    ids = await produce(kafka.bootstrap, model, 600)
    passes = {"n": 0}
    real = consumer_module.crash_point

    dies_at = 150 if point == "consumer.mid_batch" else 3  # records / transactions / batches in

    def crash_at(name, about=""):
        if name == point:
            passes["n"] += 1
            if passes["n"] == dies_at:
                raise Crash(name)
        real(name, about)

    monkeypatch.setattr(consumer_module, "crash_point", crash_at)
    monkeypatch.setattr(kafka_module, "crash_point", crash_at)
    first: dict[str, int] = {}
    dying = member(kafka, pool, scratch_schema[0], model, group, "dying", first)
    await dying.start()
    await wait_until(lambda: _done(dying))
    assert isinstance(dying._task.exception(), BaseExceptionGroup | Crash)
    await dying._kc.stop()  # the dead member's connections close; it committed nothing more
    before, _ = await counts(pool, ids)
    assert 0 < before < len(ids)

    monkeypatch.setattr(consumer_module, "crash_point", real)
    monkeypatch.setattr(kafka_module, "crash_point", real)
    second: dict[str, int] = {}
    heir = member(kafka, pool, scratch_schema[0], model, group, "heir", second)
    await heir.start()
    try:
        await wait_caught_up(kafka.bootstrap, group, topic, timeout=90)
    finally:
        await heir.stop()
    applied, inbox = await counts(pool, ids)
    assert applied == inbox == len(ids)  # lost nothing, doubled nothing
    # What the dead member committed is not delivered again; what it applied but did not commit is,
    # and the inbox skips it.
    assert second.get("processed", 0) == len(ids) - before
    if point == "consumer.mid_batch":
        assert second.get("duplicate", 0) < 600  # its transaction in flight rolled back
    else:
        assert second.get("duplicate", 0) > 0  # applied, not committed: skipped by the inbox


async def test_two_replicas_through_rebalances_in_the_middle_of_a_load(kafka, pool, scratch_schema):
    """Replica a starts alone while records keep coming; b joins (rebalance); a leaves
    (rebalance); a comes back (rebalance). Every record applied exactly once, by whichever replica
    had it, and no record handed over in a rebalance applied twice."""
    topic, group = f"t.replicas.{uuid.uuid4().hex[:8]}", f"g-replicas-{uuid.uuid4().hex[:8]}"
    model = model_on(topic)
    await ensure_topics(kafka.bootstrap, [topic], 6, 1)
    handled = {"a": {}, "b": {}, "a2": {}}
    a, b, a2 = (member(kafka, pool, scratch_schema[0], model, group, name, handled[name], delay_s=0.003)
                for name in ("a", "b", "a2"))
    ids: list[str] = []
    rounds, per_round = 16, 250

    async def load():
        for _ in range(rounds):
            ids.extend(await produce(kafka.bootstrap, model, per_round))
            await asyncio.sleep(0.5)

    producing = asyncio.create_task(load())
    rebalanced_under_load = []

    async def took_part(name):
        return handled[name].get("processed", 0) > 0

    await a.start()
    try:
        await wait_until(lambda: _applied_at_least(pool, 300))
        await b.start()  # rebalance: a hands partitions over, its batch in flight committed first
        await wait_until(lambda: took_part("b"))
        rebalanced_under_load.append(not producing.done())
        await a.stop()  # rebalance: b takes everything
        applied = await pool.fetchval("SELECT count(*) FROM kafka_effects WHERE member IN ('a', 'b', 'a2')")
        await wait_until(lambda: _applied_at_least(pool, applied + 300))
        await a2.start()  # rebalance again
        await wait_until(lambda: took_part("a2"))
        rebalanced_under_load.append(not producing.done())
        await producing
        await wait_caught_up(kafka.bootstrap, group, topic, timeout=120)
    finally:
        producing.cancel()
        for sub in (a2, b, a):
            await sub.stop()
    assert rebalanced_under_load[0], "b joined after the load: no rebalance in the middle of it"
    applied, inbox = await counts(pool, ids)
    assert applied == inbox == len(ids) == rounds * per_round
    members = {r["member"]: r["n"] for r in await pool.fetch(
        "SELECT member, count(*) AS n FROM kafka_effects WHERE event_id = ANY($1::uuid[]) GROUP BY member",
        [uuid.UUID(i) for i in ids])}
    assert all(members.get(m, 0) > 0 for m in ("a", "b", "a2")), members
    processed = sum(h.get("processed", 0) for h in handled.values())
    assert processed == len(ids), handled  # a record handed over in a rebalance is not applied twice


async def _applied_at_least(pool, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM kafka_effects WHERE member IN ('a', 'b', 'a2')") >= n


async def _done(subscriber: BatchSubscriber) -> bool:
    return subscriber._task is not None and subscriber._task.done()
