"""Re-arming a timer while the runner is firing it (shared/rapport_shared/timers.py, schedule)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from rapport_testing.fixtures import scratch_schema
from rapport_shared.timers import TimerStore

pytestmark = pytest.mark.integration


async def test_a_rearm_during_a_firing_waits_for_it_and_leaves_a_new_pending_timer(postgres):
    """The runner holds the timer's lock while its handler reads state; an event re-arming the same
    timer with the same time and payload must not conclude "already armed" (the firing read the
    state from before the event): it waits, then arms a new timer that fires with the new state."""
    schema, dsn = await scratch_schema(postgres.admin_dsn, "timer_race")
    store = TimerStore(schema)
    now = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
    runner, event = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        await store.schedule(runner, "reminder", "session:1", now - timedelta(minutes=1), now=now, payload={"s": 1})
        first = await runner.fetchval("SELECT timer_id FROM timers")
        tx_runner = runner.transaction()
        await tx_runner.start()
        await runner.fetchrow("SELECT * FROM timers WHERE timer_id = $1 FOR UPDATE", first)  # the runner claims it
        tx_event = event.transaction()
        await tx_event.start()
        rearm = asyncio.create_task(store.schedule(event, "reminder", "session:1", now - timedelta(minutes=1), now=now,
                                                   payload={"s": 1}))
        await asyncio.sleep(0.5)
        assert not rearm.done()  # it waits for the firing instead of deciding on the row it sees
        await runner.execute("UPDATE timers SET fired_at = $2 WHERE timer_id = $1", first, now)
        await tx_runner.commit()
        await asyncio.wait_for(rearm, 10)
        await tx_event.commit()
        pending = await runner.fetch("SELECT timer_id FROM timers WHERE fired_at IS NULL AND cancelled_at IS NULL")
        assert len(pending) == 1 and pending[0]["timer_id"] != first
    finally:
        await runner.close()
        await event.close()
        admin = await asyncpg.connect(postgres.admin_dsn)
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()
