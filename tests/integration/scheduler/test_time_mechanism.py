"""The shared time mechanism the scheduler uses (rapport_shared.clock / rapport_shared.timers),
against real Kafka and Postgres: the simulated clock follows its topic and recovers it on start;
the timer runner wakes when a timer is armed or time moves and fires each timer once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from rapport_shared.clock import SimulatedClock, parse_delta, publish_tick
from rapport_shared.contracts.course import CourseReviewNeededV1
from rapport_shared.timers import TimerRunner, TimerStore
from rapport_testing.kafka import produce_raw
from rapport_testing.wait import until

pytestmark = pytest.mark.integration
T0 = datetime(2031, 3, 3, 9, 0, tzinfo=timezone.utc)


async def test_simulated_clock_follows_its_topic_and_catches_up_after_a_restart(kafka):
    topic = f"rapport.clock.it-{uuid.uuid4().hex[:8]}"
    clock = SimulatedClock(kafka.bootstrap, topic)
    await clock.start()
    try:
        assert not clock.ticked  # no tick yet: the system clock
        assert abs((clock.now() - datetime.now(timezone.utc)).total_seconds()) < 60
        await publish_tick(kafka.bootstrap, T0, topic)
        await until(lambda: clock.now() == T0, timeout=20, what="the first tick")
        await publish_tick(kafka.bootstrap, T0 + timedelta(weeks=3), topic)
        await publish_tick(kafka.bootstrap, T0 + timedelta(weeks=1), topic)  # backwards: ignored
        await produce_raw(kafka.bootstrap, topic, b"not json", b"clock")  # unreadable: ignored
        await publish_tick(kafka.bootstrap, T0 + timedelta(weeks=3, hours=1), topic)
        await until(lambda: clock.now() == T0 + timedelta(weeks=3, hours=1), timeout=20, what="the latest tick")
    finally:
        await clock.stop()
    again = SimulatedClock(kafka.bootstrap, topic)  # a restarted service
    await again.start()
    try:
        assert again.ticked and again.now() == T0 + timedelta(weeks=3, hours=1)
    finally:
        await again.stop()
    assert parse_delta("1w") == timedelta(weeks=1) and parse_delta("90s") == timedelta(seconds=90)


async def test_runner_loop_fires_when_simulated_time_reaches_the_due_time(kafka, sched_db):
    from rapport_shared.outbox import Outbox

    pool, schema = sched_db
    topic = f"rapport.clock.it-{uuid.uuid4().hex[:8]}"
    await publish_tick(kafka.bootstrap, T0, topic)
    clock = SimulatedClock(kafka.bootstrap, topic)
    await clock.start()
    store = TimerStore(schema)
    fired: list[str] = []
    kind = f"test.kind.{uuid.uuid4().hex[:6]}"

    async def handler(uow, timer):
        fired.append(timer.key)
        # The effect goes out with the timer's transaction (state + outbox together).
        await uow.emit(CourseReviewNeededV1(
            episode_id=uuid.UUID(timer.payload["episode"]), course_id=uuid.uuid4(), clinician_id="clin-t",
            reason="session_outcome_unrecorded", phase="middle", session_number=1, raised_at=uow.now()))

    runner = TimerRunner(pool, Outbox("/rapport/test", schema), clock, schema, {kind: handler}, poll_interval_s=30)
    task = asyncio.create_task(runner.run())
    try:
        episode = uuid.uuid4()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("UPDATE timers SET cancelled_at = now() WHERE fired_at IS NULL AND cancelled_at IS NULL")
            await store.schedule(conn, kind, "k1", T0 + timedelta(days=7), now=T0, payload={"episode": str(episode)})
            await store.schedule(conn, kind, "k2", T0 + timedelta(days=14), now=T0, payload={"episode": str(episode)})
            await store.schedule(conn, kind, "k2", T0 + timedelta(days=10), now=T0, payload={"episode": str(episode)})  # moved
            await store.schedule(conn, kind, "k3", T0 + timedelta(days=8), now=T0)
            await store.cancel(conn, kind, "k3", now=T0)
        await asyncio.sleep(0.5)
        assert fired == []
        await publish_tick(kafka.bootstrap, T0 + timedelta(days=7), topic)
        await until(lambda: fired == ["k1"], timeout=20, what="k1 fired")  # woken by the tick, not by the 30 s poll
        await publish_tick(kafka.bootstrap, T0 + timedelta(days=30), topic)
        await until(lambda: fired == ["k1", "k2"], timeout=20, what="k2 fired")
        async with pool.acquire() as conn:
            assert await store.pending(conn, "k1") == [] and await store.pending(conn, "k2") == []
            assert await conn.fetchval("SELECT count(*) FROM outbox WHERE key = $1", str(episode).encode()) == 2
            rows = await conn.fetch("SELECT key, fired_at IS NOT NULL AS fired, cancelled_at IS NOT NULL AS cancelled"
                                    " FROM timers WHERE kind = $1 ORDER BY key", kind)
        assert [(r["key"], r["fired"], r["cancelled"]) for r in rows] == [("k1", True, False), ("k2", True, False),
                                                                          ("k3", False, True)]
    finally:
        runner.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await clock.stop()


async def test_a_timer_that_keeps_failing_is_parked_and_counted_for_the_alert(sched_db):
    """After max_attempts the timer is parked (never blocking the others) and
    rapport_timers_parked{kind} shows it: the gauge RapportTimerParked alerts on."""
    from prometheus_client import REGISTRY

    from rapport_shared.clock import ManualClock
    from rapport_shared.outbox import Outbox

    pool, schema = sched_db
    clock = ManualClock(T0)
    bad, good = f"test.bad.{uuid.uuid4().hex[:6]}", f"test.good.{uuid.uuid4().hex[:6]}"

    async def broken(uow, timer):
        raise RuntimeError("the handler's dependency is down")

    async def fine(uow, timer):
        pass

    def count(name: str, kind: str) -> float:
        return REGISTRY.get_sample_value(name, {"kind": kind}) or 0.0

    runner = TimerRunner(pool, Outbox("/rapport/test", schema), clock, schema, {bad: broken, good: fine},
                         max_attempts=3, backoff_s=0.0, backoff_max_s=0.0)
    store = TimerStore(schema)
    async with pool.acquire() as conn, conn.transaction():
        await store.schedule(conn, bad, "b1", T0, now=T0)
        await store.schedule(conn, good, "g1", T0 + timedelta(seconds=1), now=T0)
    clock.advance(timedelta(minutes=1))
    for _ in range(5):
        await runner.fire_due()
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT attempts, parked_at, failed_at, last_error FROM timers WHERE kind = $1", bad)
        fired = await conn.fetchval("SELECT fired_at FROM timers WHERE kind = $1", good)
    assert row["attempts"] == 3 and row["parked_at"] is not None and "dependency is down" in row["last_error"]
    assert row["failed_at"] is None
    assert fired is not None  # the failing one did not hold the other back
    assert (count("rapport_timers_parked", bad), count("rapport_timers_fired_total", good)) == (1.0, 1.0)
    assert count("rapport_timers_fired_total", bad) == 0.0
