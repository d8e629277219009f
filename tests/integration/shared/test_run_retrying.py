"""A unit of work aborted by Postgres as a deadlock victim is run again (shared/rapport_shared/uow.py)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from rapport_shared.outbox import Outbox
from rapport_shared.clock import SystemClock
from rapport_testing.fixtures import scratch_schema
from rapport_shared.uow import UnitOfWorkFactory, run_retrying

pytestmark = pytest.mark.integration


async def test_a_deadlock_victim_is_run_again_and_succeeds(postgres):
    schema, dsn = await scratch_schema(postgres.admin_dsn, "uow_retry")
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=3, server_settings={"search_path": schema})
    other = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        await other.execute("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0), (2, 0)")
        factory = UnitOfWorkFactory(pool, Outbox(source="/test", schema=schema), SystemClock())
        holding = asyncio.Event()
        runs = 0

        async def rival():  # locks row 2, then wants row 1: the opposite order
            async with other.transaction():
                await other.execute("UPDATE t SET v = v + 10 WHERE id = 2")
                holding.set()
                await asyncio.sleep(0.3)
                await other.execute("UPDATE t SET v = v + 10 WHERE id = 1")

        async def work(uow):  # locks row 1, then wants row 2
            nonlocal runs
            runs += 1
            await uow.conn.execute("UPDATE t SET v = v + 1 WHERE id = 1")
            if runs == 1:
                await holding.wait()
            await uow.conn.execute("UPDATE t SET v = v + 1 WHERE id = 2")
            return runs

        rival_task = asyncio.create_task(rival())
        await holding.wait()
        # We wait for row 2 first, so our deadlock check (deadlock_timeout after we start waiting)
        # finds the cycle first: we are the victim, run again, and then wait for the rival to finish.
        assert await run_retrying(factory, work) == 2
        await rival_task
        rows = dict(await other.fetch("SELECT id, v FROM t"))
        assert rows == {1: 11, 2: 11}  # each side's work applied exactly once
    finally:
        await other.close()
        await pool.close()
        admin = await asyncpg.connect(postgres.admin_dsn)
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()
