"""Durable timers that do not give up on a blip (shared/rapport_shared/timers.py; issue 11 item 3),
against a real Postgres:

- a firing that meets a Postgres outage (the backend terminated mid-transaction; no connection to
  be had at all) stays pending and is retried — however often, with max_attempts 1 — until the
  database answers, then fires once;
- a handler error (a plain ValueError) is retried a bounded number of times, then the timer is
  PARKED: parked_at and last_error in the table, the rapport_timers_parked gauge, skipped without
  holding the others back; `rapport timers parked|show|retry|cancel` lists it, fires it again or
  cancels it (dry run by default).

Before this, both were "failed for good" after 5 attempts in about 8 s (failed_at), a database blip
included, so a safety escalation could be lost to a restart of Postgres."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from rapport_shared.clock import ManualClock
from rapport_shared.outbox import Outbox
from rapport_testing.wait import until
from rapport_shared.timers import TimerRunner, TimerStore
from rapport_tools.cli import app as cli_app

pytestmark = pytest.mark.integration
T0 = datetime(2031, 3, 3, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
async def pool(scratch_pool):
    await scratch_pool.execute("TRUNCATE timers")
    return scratch_pool


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def kind_of(what: str) -> str:
    return f"test.{what}.{uuid.uuid4().hex[:6]}"


async def arm(pool, schema: str, kind: str, key: str, due: datetime = T0) -> uuid.UUID:
    async with pool.acquire() as conn, conn.transaction():
        await TimerStore(schema).schedule(conn, kind, key, due, now=T0, payload={"k": key})
    return await pool.fetchval("SELECT timer_id FROM timers WHERE kind = $1 AND key = $2 AND fired_at IS NULL"
                               " AND cancelled_at IS NULL", kind, key)


def runner(pool, schema, clock, handlers, **kw) -> TimerRunner:
    return TimerRunner(pool, Outbox("/rapport/test", schema), clock, schema, handlers,
                       **{"backoff_s": 0.0, "backoff_max_s": 0.0, **kw})


async def test_a_firing_that_loses_its_postgres_connection_retries_until_the_database_answers(pool, scratch_schema):
    """pg_terminate_backend mid-handler, 12 times in a row with max_attempts 1: every one is an
    outage (the connection is gone), none counts against the timer; the 13th firing commits."""
    schema = scratch_schema[0]
    kind = kind_of("outage")
    calls: list[int] = []

    async def handler(uow, timer):
        calls.append(1)
        if len(calls) <= 12:
            await uow.conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    clock = ManualClock(T0 + timedelta(minutes=1))
    r = runner(pool, schema, clock, {kind: handler}, max_attempts=1)
    timer_id = await arm(pool, schema, kind, "k1")
    outages_before = sample("rapport_timers_retried_total", kind=kind, cause="outage")
    for _ in range(40):
        await r.fire_due()
        if await pool.fetchval("SELECT fired_at IS NOT NULL FROM timers WHERE timer_id = $1", timer_id):
            break
    row = await pool.fetchrow("SELECT fired_at, parked_at, failed_at, attempts FROM timers WHERE timer_id = $1", timer_id)
    assert len(calls) == 13
    assert row["fired_at"] is not None and row["parked_at"] is None and row["failed_at"] is None
    assert row["attempts"] == 1  # only the firing that committed: outages never count
    assert sample("rapport_timers_retried_total", kind=kind, cause="outage") == outages_before + 12
    assert sample("rapport_timers_fired_total", kind=kind) == 1.0


class _Refused:
    """What ``pool.acquire()`` gives while the database cannot be reached."""

    def __await__(self):
        async def refuse():
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
        return refuse().__await__()

    async def __aenter__(self):
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")

    async def __aexit__(self, *exc):
        return False


class UnreachablePool:
    """The real pool, except that while ``down`` no connection can be had (Postgres stopped or
    the network cut): the runner meets it both when reading the table and when firing."""

    def __init__(self, pool) -> None:
        self.pool, self.down, self.refused = pool, False, 0

    def acquire(self):
        if self.down:
            self.refused += 1
            return _Refused()
        return self.pool.acquire()

    async def release(self, conn) -> None:
        await self.pool.release(conn)


async def test_the_running_runner_waits_out_an_unreachable_database_and_then_fires(pool, scratch_schema):
    schema = scratch_schema[0]
    kind = kind_of("down")
    fired: list[str] = []

    async def handler(uow, timer):
        fired.append(timer.key)

    flaky = UnreachablePool(pool)
    clock = ManualClock(T0 + timedelta(minutes=1))
    r = runner(flaky, schema, clock, {kind: handler}, max_attempts=1, poll_interval_s=0.05)
    r._loop.max_backoff_s = 0.2
    await arm(pool, schema, kind, "k1")
    flaky.down = True
    task = asyncio.create_task(r.run())
    try:
        await until(lambda: flaky.refused >= 5, timeout=20, what="the runner retrying an unreachable database")
        assert fired == []
        flaky.down = False  # the database is back
        await until(lambda: fired == ["k1"], timeout=20, what="the timer fired once the database answered")
    finally:
        r.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    row = await pool.fetchrow("SELECT fired_at, parked_at, attempts FROM timers WHERE kind = $1", kind)
    assert row["fired_at"] is not None and row["parked_at"] is None and row["attempts"] == 1


def cli(*args: str):
    return CliRunner().invoke(cli_app, list(args), catch_exceptions=False)


async def test_a_handler_error_parks_the_timer_visibly_and_the_operator_retries_or_cancels_it(pool, scratch_schema):
    schema, dsn = scratch_schema
    bad, good = kind_of("bad"), kind_of("good")
    broken = {"on": True}
    calls: list[str] = []

    async def flaky_handler(uow, timer):
        calls.append(timer.key)
        if broken["on"]:
            raise ValueError("item9 threshold missing from the instrument data")

    async def fine(uow, timer):
        calls.append(timer.key)

    clock = ManualClock(T0 + timedelta(minutes=1))
    r = runner(pool, schema, clock, {bad: flaky_handler, good: fine}, max_attempts=3)
    parked_before = sample("rapport_timers_parkings_total", kind=bad, reason="attempts")
    b1 = await arm(pool, schema, bad, "b1")
    b2 = await arm(pool, schema, bad, "b2")
    await arm(pool, schema, good, "g1", T0 + timedelta(seconds=1))
    for _ in range(6):
        await r.fire_due()
    assert calls.count("b1") == calls.count("b2") == 3 and calls.count("g1") == 1  # bounded; the others flow
    rows = {r_["key"]: r_ for r_ in await pool.fetch(
        "SELECT key, attempts, parked_at, failed_at, fired_at, last_error FROM timers WHERE kind = $1", bad)}
    for key in ("b1", "b2"):
        assert rows[key]["attempts"] == 3 and rows[key]["parked_at"] is not None and rows[key]["fired_at"] is None
        assert rows[key]["failed_at"] is None and rows[key]["last_error"].startswith("ValueError: item9 threshold")
    assert sample("rapport_timers_parked", kind=bad) == 2.0
    assert sample("rapport_timers_parkings_total", kind=bad, reason="attempts") == parked_before + 2
    await r.fire_due()
    assert calls.count("b1") == 3  # parked: skipped, not retried

    # The operator: list, show, retry one (after fixing the cause), cancel the other.
    res = await asyncio.to_thread(cli, "timers", "parked", "--dsn", dsn, "--schema", schema, "--json")
    assert res.exit_code == 0, res.output
    listed = [json.loads(line) for line in res.stdout.splitlines()]
    assert {(t["timer_id"], t["kind"], t["attempts"]) for t in listed} == {(str(b1), bad, 3), (str(b2), bad, 3)}
    assert all(t["last_error"].startswith("ValueError") and t["parked_at"] for t in listed)
    res = await asyncio.to_thread(cli, "timers", "parked", "--dsn", dsn, "--schema", schema)
    assert res.exit_code == 0 and "2 parked" in res.stderr and str(b1) in res.stdout
    res = await asyncio.to_thread(cli, "timers", "show", str(b1), "--dsn", dsn, "--schema", schema)
    assert json.loads(res.stdout)["payload"] == {"k": "b1"}

    broken["on"] = False
    res = await asyncio.to_thread(cli, "timers", "retry", str(b1), "--dsn", dsn, "--schema", schema)
    assert res.exit_code == 0 and "1 timer(s) unparked" in res.stderr, res.output
    assert await pool.fetchval("SELECT attempts FROM timers WHERE timer_id = $1", b1) == 0
    await r.fire_due()
    assert calls.count("b1") == 4
    assert await pool.fetchval("SELECT fired_at IS NOT NULL FROM timers WHERE timer_id = $1", b1)
    assert sample("rapport_timers_parked", kind=bad) == 1.0

    res = await asyncio.to_thread(cli, "timers", "cancel", str(b2), "--dsn", dsn, "--schema", schema)
    assert res.exit_code == 0 and "dry run" in res.stderr
    assert await pool.fetchval("SELECT parked_at IS NOT NULL AND cancelled_at IS NULL FROM timers WHERE timer_id = $1",
                               b2)
    res = await asyncio.to_thread(cli, "timers", "cancel", str(b2), "--dsn", dsn, "--schema", schema, "--apply")
    assert res.exit_code == 0 and "cancelled" in res.stderr, res.output
    await r.fire_due()
    assert calls.count("b2") == 3  # never fired
    assert sample("rapport_timers_parked", kind=bad) == 0.0
    res = await asyncio.to_thread(cli, "timers", "retry", str(b2), "--dsn", dsn, "--schema", schema)
    assert res.exit_code == 1  # no longer parked


async def test_a_parked_timer_is_still_the_one_of_its_key_for_the_service(pool, scratch_schema):
    """Re-armed as it was (a replay) it stays parked; moved by the state it is unparked and fires;
    cancelled by the state (an alert acknowledged) it is cancelled."""
    schema = scratch_schema[0]
    kind = kind_of("state")
    broken = {"on": True}

    async def handler(uow, timer):
        if broken["on"]:
            raise ValueError("boom")

    clock = ManualClock(T0 + timedelta(minutes=1))
    r = runner(pool, schema, clock, {kind: handler}, max_attempts=1)
    store = TimerStore(schema)
    await arm(pool, schema, kind, "a")
    await arm(pool, schema, kind, "b")
    await r.fire_due()
    assert await pool.fetchval("SELECT count(*) FROM timers WHERE kind = $1 AND parked_at IS NOT NULL", kind) == 2
    async with pool.acquire() as conn, conn.transaction():
        await store.schedule(conn, kind, "a", T0, now=T0, payload={"k": "a"})  # the same again: still parked
        assert await store.cancel(conn, kind, "b", now=T0)
    assert await pool.fetchval("SELECT parked_at IS NOT NULL FROM timers WHERE kind = $1 AND key = 'a'", kind)
    assert await pool.fetchval("SELECT cancelled_at IS NOT NULL FROM timers WHERE kind = $1 AND key = 'b'", kind)
    broken["on"] = False
    async with pool.acquire() as conn, conn.transaction():
        await store.schedule(conn, kind, "a", T0 + timedelta(seconds=30), now=T0, payload={"k": "a"})  # moved
    assert await r.fire_due() == 1
    assert await pool.fetchval("SELECT count(*) FROM timers WHERE kind = $1", kind) == 2  # no second row for "a"
    assert await pool.fetchval("SELECT fired_at IS NOT NULL FROM timers WHERE kind = $1 AND key = 'a'", kind)


async def test_no_hot_loop_while_a_timer_waits_for_its_retry(pool, scratch_schema):
    """A held-back timer is due, but the runner sleeps until its retry time, not 0 s."""
    schema = scratch_schema[0]
    kind = kind_of("sleep")

    async def handler(uow, timer):
        raise ValueError("not yet")

    r = runner(pool, schema, ManualClock(T0 + timedelta(minutes=1)), {kind: handler}, max_attempts=5,
               backoff_s=2.0, backoff_max_s=2.0, poll_interval_s=5.0)
    await arm(pool, schema, kind, "k")
    await r.fire_due()
    assert 1.0 < await r._sleep_time() <= 5.0
