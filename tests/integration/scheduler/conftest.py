"""In-process scheduler against a real Postgres: its own throw-away schema and role, migrated
with the scheduler's migrations (shared messaging + timers first). No Kafka: events are read
back from the outbox, as the relay would publish them."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import httpx
import pytest

from rapport_shared import db
from rapport_shared.clock import ManualClock
from rapport_shared.contracts import EVENT_MODELS
from rapport_shared.outbox import Outbox
from rapport_testing.fixtures import TEST_SECRET, scratch_schema
from rapport_shared.messagebus import MessageBus
from rapport_shared.uow import UnitOfWorkFactory, uow_maker
from rapport_scheduler import bootstrap
from rapport_scheduler.service_layer.handlers import handlers
from rapport_scheduler.service_layer.unit_of_work import SchedulerUnitOfWork
from rapport_scheduler.settings import SchedulerSettings


@pytest.fixture(scope="module")
async def sched_db(postgres):
    name, dsn = await scratch_schema(postgres.admin_dsn, "schedit", bootstrap.MIGRATIONS)
    pool = await db.create_pool(dsn, name, 1, 5)
    yield pool, name
    await pool.close()


class Harness:
    def __init__(self, pool, schema):
        self.pool, self.schema = pool, schema
        self.clock = ManualClock(datetime(2030, 1, 7, 9, 0, tzinfo=timezone.utc))
        self.settings = SchedulerSettings(service_name="scheduler", db_schema=schema, auth_secret=TEST_SECRET)
        self.outbox = Outbox("/rapport/scheduler", schema)
        self.uow = self.uow_for(self.settings)

    def uow_for(self, settings: SchedulerSettings) -> UnitOfWorkFactory:
        """Units of work of the scheduler's own class, with ``settings``, over the harness' pool and clock."""
        return UnitOfWorkFactory(self.pool, self.outbox, self.clock,
                                 make_uow=uow_maker(self.outbox, self.clock, SchedulerUnitOfWork, settings))

    async def fetch(self, sql, *args):
        async with self.pool.acquire() as conn:
            return await conn.fetch(sql, *args)

    async def val(self, sql, *args):
        async with self.pool.acquire() as conn:
            return await conn.fetchval(sql, *args)

    async def events(self, episode_id) -> list:
        """The course's events from the outbox, in publish order, parsed as a partner would."""
        rows = await self.fetch("SELECT event_type, value FROM outbox WHERE key = $1 ORDER BY seq", str(episode_id).encode())
        return [EVENT_MODELS[r["event_type"]].model_validate(json.loads(r["value"])) for r in rows]

    async def counts(self) -> tuple:
        return (await self.val("SELECT count(*) FROM outbox"), await self.val("SELECT count(*) FROM sessions"),
                await self.val("SELECT md5(string_agg(c::text, ',' ORDER BY course_id)) FROM courses c"),
                await self.val("SELECT md5(string_agg(s::text, ',' ORDER BY session_id)) FROM sessions s"),
                await self.val("SELECT count(*) FROM timers"))


@pytest.fixture
async def h(sched_db):
    pool, schema = sched_db
    return Harness(pool, schema)


def app_client(h, settings: SchedulerSettings | None = None) -> httpx.AsyncClient:
    """The real HTTP app over the harness' pool and manual clock (no lifespan: no Kafka needed)."""
    settings = settings or h.settings
    app = bootstrap.build(settings)
    rt = app.state.runtime
    rt.pool, rt.clock, rt.uow = h.pool, h.clock, h.uow_for(settings)
    rt.bus = MessageBus(handlers, rt.uow)  # what start() sets up
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scheduler")


@pytest.fixture
async def client(h):
    async with app_client(h) as c:
        yield c


@pytest.fixture
def make_client(h):
    """Another app over the same harness, with other settings: ``async with make_client(s) as c``."""
    return lambda settings=None: app_client(h, settings)
