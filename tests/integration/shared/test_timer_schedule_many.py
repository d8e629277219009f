"""``TimerStore.schedule_many`` against real Postgres (``schedule`` is it for one timer): a live
timer moved (attempts, error and parking reset when it changes; untouched when armed as it was), a
new one inserted beside a fired one of the same (kind, key), the runner woken — for many timers at
once in three statements, as for each alone (the notifier arms a planned course's timers with it)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from rapport_shared.timers import Plan, TimerStore

pytestmark = pytest.mark.integration
T0 = datetime(2031, 3, 3, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def pool(scratch_pool):
    return scratch_pool


async def scenario(pool, store: TimerStore, kind: str) -> None:
    """moved (was parked after 3 attempts), same (2 attempts), refired (fired before), fresh (none)."""
    async with pool.acquire() as conn, conn.transaction():
        for key in ("moved", "same", "refired"):
            await store.schedule(conn, kind, key, T0, now=T0, payload={"k": key})
        await conn.execute("UPDATE timers SET attempts = 3, last_error = 'boom', parked_at = $3"
                           " WHERE kind = $1 AND key = $2", kind, "moved", T0)
        await conn.execute("UPDATE timers SET attempts = 2, last_error = 'blip' WHERE kind = $1 AND key = $2",
                           kind, "same")
        await conn.execute("UPDATE timers SET fired_at = $3 WHERE kind = $1 AND key = $2", kind, "refired", T0)


def plans(kind: str) -> list[Plan]:
    later = T0 + timedelta(hours=1)
    return [Plan(kind, "moved", later, {"k": "moved"}), Plan(kind, "same", T0, {"k": "same"}),
            Plan(kind, "refired", later, {"k": "refired"}), Plan(kind, "fresh", later, {"k": "fresh"})]


async def rows(pool, kind: str) -> list[tuple]:
    return [tuple(r) for r in await pool.fetch(
        "SELECT key, due_at, payload::text, attempts, last_error, parked_at IS NOT NULL, fired_at IS NOT NULL"
        " FROM timers WHERE kind = $1 ORDER BY key, fired_at NULLS LAST", kind)]


async def test_many_at_once_as_each_alone_moved_kept_or_inserted(pool, scratch_schema):
    store = TimerStore(scratch_schema[0])
    one, many = f"test.one.{uuid.uuid4().hex[:6]}", f"test.many.{uuid.uuid4().hex[:6]}"
    for kind in (one, many):
        await scenario(pool, store, kind)
    async with pool.acquire() as conn, conn.transaction():
        for p in plans(one):
            await store.schedule(conn, p.kind, p.key, p.due_at, now=T0, payload=p.payload)
    async with pool.acquire() as conn, conn.transaction():
        await store.schedule_many(conn, plans(many), now=T0)
    expected = await rows(pool, one)
    assert await rows(pool, many) == expected
    later = T0 + timedelta(hours=1)
    assert [r for r in expected if r[0] in ("moved", "same")] == [
        ("moved", later, '{"k": "moved"}', 0, None, False, False),  # changed: attempts, error, parking reset
        ("same", T0, '{"k": "same"}', 2, "blip", False, False)]     # armed as it was: untouched
    assert [r[0] for r in expected].count("refired") == 2  # the fired one stays; a new live one beside it


async def test_it_wakes_the_runner_once_the_transaction_commits(pool, scratch_schema):
    store = TimerStore(scratch_schema[0])
    woken: asyncio.Queue = asyncio.Queue()

    def wake(*args) -> None:
        woken.put_nowait(args)

    listener = await pool.acquire()
    await listener.add_listener(store.channel, wake)
    try:
        kind = f"test.wake.{uuid.uuid4().hex[:6]}"
        async with pool.acquire() as conn, conn.transaction():
            await store.schedule_many(conn, [Plan(kind, "a", T0), Plan(kind, "b", T0)], now=T0)
            await asyncio.sleep(0.2)
            assert woken.empty()  # not before the commit
        await asyncio.wait_for(woken.get(), timeout=5)
    finally:
        await listener.remove_listener(store.channel, wake)
        await pool.release(listener)


async def test_each_timer_once_and_aware_times_only(pool, scratch_schema):
    store = TimerStore(scratch_schema[0])
    async with pool.acquire() as conn:
        with pytest.raises(ValueError, match="once"):
            await store.schedule_many(conn, [Plan("k", "a", T0), Plan("k", "a", T0)], now=T0)
        with pytest.raises(ValueError, match="timezone"):
            await store.schedule_many(conn, [Plan("k", "a", datetime(2031, 3, 3, 9, 0))], now=T0)
        await store.schedule_many(conn, [], now=T0)  # nothing to do: no statement
