"""The notifier in process against a real Postgres: its own throw-away schema and role, migrated
with the notifier's migrations. No Kafka and no network: events are handed to the handlers
directly, channels are fakes that record what they were given, emitted events are read back
from the outbox (what the relay would publish). ``api`` is its HTTP app over ASGI on the same
schema and clock, with HMAC test tokens (``TEST_ORG`` unless a test names another)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from types import SimpleNamespace

import httpx
import pytest

from rapport_notifier import bootstrap
from rapport_notifier.adapters.channels import Outgoing, SendError
from rapport_notifier.domain.rules import Templates
from rapport_notifier.service_layer import handlers
from rapport_notifier.service_layer.sender import Sender
from rapport_notifier.service_layer.unit_of_work import NotifierUnitOfWork
from rapport_notifier.settings import NotifierSettings
from rapport_shared import db, envelope
from rapport_shared.clock import ManualClock
from rapport_shared.outbox import Outbox
from rapport_shared.http.auth import TokenAuthority
from rapport_testing.fixtures import TEST_ORG, TEST_SECRET, scratch_schema
from rapport_shared.messagebus import MessageBus
from rapport_shared.uow import UnitOfWorkFactory, uow_maker


@pytest.fixture(scope="module")
async def notifier_db(postgres):
    name, dsn = await scratch_schema(postgres.admin_dsn, "notifit", bootstrap.MIGRATIONS)
    pool = await db.create_pool(dsn, name, 1, 8)
    yield pool, name
    await pool.close()


class FakeChannel:
    """Records every message; ``script`` = what each successive send does (None = accept,
    an exception = raise it, a number = hang that many seconds); when the script runs out,
    sends are accepted.

    With ``has_status_lookup`` set it also answers the sender's in-doubt question
    (``was_accepted``): each step of ``status_script`` is an answer (True/False), an exception
    to raise, or a number of seconds to hang; when the script runs out, it answers from what
    it accepted. ``lookups`` lists the notification ids asked about."""

    def __init__(self, name: str, *script: Exception | None) -> None:
        self.name, self.script, self.sent, self.accepted = name, list(script), [], []
        self.has_status_lookup = False
        self.status_script: list = []
        self.lookups: list[str] = []

    async def send(self, msg: Outgoing) -> None:
        self.sent.append(msg)
        step = self.script.pop(0) if self.script else None
        if isinstance(step, (int, float)):
            await asyncio.sleep(step)
        elif step is not None:
            raise step
        self.accepted.append(msg.notification_id)

    async def was_accepted(self, notification_id: str) -> bool:
        self.lookups.append(notification_id)
        step = self.status_script.pop(0) if self.status_script else notification_id in self.accepted
        if isinstance(step, Exception):
            raise step
        if not isinstance(step, bool):
            await asyncio.sleep(step)
        return bool(step)


class Harness:
    def __init__(self, pool, schema, **settings) -> None:
        self.pool, self.schema = pool, schema
        self.clock = ManualClock(datetime(2031, 3, 3, 12, 0, tzinfo=timezone.utc))
        self.settings = NotifierSettings(**{"service_name": "notifier", "db_schema": schema, "retry_base_s": 30,
                                            "retry_max_s": 100, "retry_for_s": 3600, **settings})
        self.templates = Templates(self.settings.templates_dir)
        self.outbox = Outbox("/rapport/notifier", schema)
        # The notifier's own unit of work (its repositories and these settings), as the runtime makes it.
        self.make_uow = uow_maker(self.outbox, self.clock, NotifierUnitOfWork, self.settings)
        self.uow = UnitOfWorkFactory(pool, self.outbox, self.clock, make_uow=self.make_uow)
        self.email, self.sms = FakeChannel("email"), FakeChannel("sms")
        self.channels = {"email": self.email, "sms": self.sms, "log": FakeChannel("log"), "webhook": FakeChannel("webhook")}

    def sender(self) -> Sender:
        rt = SimpleNamespace(pool=self.pool, outbox=self.outbox, clock=self.clock, make_uow=self.make_uow)
        return Sender(rt, self.settings, self.channels, self.templates)

    async def fetch(self, sql, *args):
        async with self.pool.acquire() as conn:
            return await conn.fetch(sql, *args)

    async def row(self, sql, *args):
        async with self.pool.acquire() as conn:
            return await conn.fetchrow(sql, *args)

    async def val(self, sql, *args):
        async with self.pool.acquire() as conn:
            return await conn.fetchval(sql, *args)

    async def exec(self, sql, *args):
        async with self.pool.acquire() as conn:
            return await conn.execute(sql, *args)

    async def handle(self, data, *, event_id: str | None = None, at: datetime | None = None) -> envelope.CloudEvent:
        """Apply one event as the consumer would (minus the inbox: the tests re-apply on purpose)."""
        event = envelope.new_event(type=data.event_type, source="/rapport/test", subject=str(data.episode_id), data=data,
                                   time=at or self.clock.now(), id=event_id)
        async with self.uow() as uow:
            uow.cause = event
            await handlers.handlers.dispatch(data, uow)
        return event

    async def fire_due(self) -> int:
        """Fire every due timer through the notifier's timer handlers (as TimedRuntime would)."""
        from rapport_shared.timers import TimerRunner

        runner = TimerRunner(pool=self.pool, outbox=self.outbox, clock=self.clock, schema=self.schema,
                             handlers=handlers.handlers.timer_handlers, make_uow=self.make_uow)
        return await runner.fire_due()

    async def outbox_events(self, event_type: str | None = None) -> list[dict]:
        rows = await self.fetch("SELECT event_id, event_type, value FROM outbox WHERE $1::text IS NULL OR event_type = $1"
                                " ORDER BY seq", event_type)
        return [{"id": str(r["event_id"]), "type": r["event_type"], **json.loads(r["value"])} for r in rows]


@pytest.fixture
async def h(notifier_db):
    pool, schema = notifier_db
    harness = Harness(pool, schema)
    async with pool.acquire() as conn:  # each test starts from an empty schema
        await conn.execute("TRUNCATE notifications, patients, patient_preferences, clinicians, oncall, episodes, sessions,"
                           " questionnaire_requests, alerts, subscriptions, timers, outbox, inbox, access_care_team")
    return harness


@pytest.fixture
def make_harness(notifier_db, h):  # after h: the schema is emptied first
    def make(**settings) -> Harness:
        return Harness(*notifier_db, **settings)
    return make


class Api:
    """The notifier's HTTP app in process (its runtime stands on the harness's pool, unit of work
    and clock), with test tokens: ``call(sub, roles, method, path, org=...)``."""

    def __init__(self, h: Harness, app, client: httpx.AsyncClient) -> None:
        self.h, self.app, self.client = h, app, client
        self.tokens = TokenAuthority(TEST_SECRET, org=TEST_ORG)

    def auth(self, sub: str, *roles: str, org: str | None = None) -> dict:
        return {"Authorization": f"Bearer {self.tokens.issue(sub, roles, org=org)}"}

    async def call(self, sub: str, roles, method: str, path: str, *, org: str | None = None, **kw) -> httpx.Response:
        roles = [roles] if isinstance(roles, str) else list(roles)
        return await self.client.request(method, path, headers=self.auth(sub, *roles, org=org), **kw)

    async def audit(self, **where) -> list[dict]:
        """Access-audit rows (the service's append-only table) matching ``where``, oldest first."""
        table = self.app.state.access.audit_table
        rows = await self.h.fetch(f"SELECT * FROM {table} ORDER BY seq")
        return [dict(r) for r in rows if all(r[k] == v for k, v in where.items())]


@pytest.fixture
async def api(h):
    settings = NotifierSettings(service_name="notifier", db_schema=h.schema, auth_secret=TEST_SECRET,
                                environment="test", contacts_enabled=False)
    app = bootstrap.build(settings)
    rt = app.state.runtime
    rt.pool, rt.clock, rt.uow = h.pool, h.clock, h.uow  # no lifespan: the harness stands in for start()
    rt.bus = MessageBus(handlers.handlers, h.uow)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notifier") as client:
        yield Api(h, app, client)


__all__ = ["Api", "FakeChannel", "Harness", "SendError"]
