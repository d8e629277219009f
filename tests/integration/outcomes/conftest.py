"""Outcomes in-process against a real Postgres: the HTTP app over ASGI, and events fed through the
real ``EventConsumer`` (envelope decoding, contract validation, inbox) as Kafka records would be.
Kafka itself is not needed here; the e2e tests cover it. Emitted events are read from the outbox."""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from rapport_outcomes import bootstrap
from rapport_outcomes.settings import OutcomesSettings
from rapport_shared import db, envelope
from rapport_shared.consumer import EventConsumer
from rapport_shared.contracts.base import EventData
from rapport_testing.fixtures import OTHER_ORG, TEST_ORG, TEST_SECRET, scratch_schema
from rapport_shared.messagebus import MessageBus
from rapport_testing.flows import gad7, phq9
from rapport_shared.uow import UnitOfWorkFactory

PHQ9_18 = {1: 2, 2: 2, 3: 2, 4: 2, 5: 2, 6: 2, 7: 3, 8: 3, 9: 0}
GAD7_12 = {1: 2, 2: 2, 3: 2, 4: 2, 5: 2, 6: 1, 7: 1}


@dataclass
class FakeRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list
    timestamp: int = 0


@dataclass
class Outcomes:
    app: object
    client: httpx.AsyncClient
    consumer: EventConsumer
    pool: object
    tokens: object
    dead: list = field(default_factory=list)
    _offsets: itertools.count = field(default_factory=itertools.count)

    def auth(self, sub: str, *roles: str, org: str | None = None) -> dict:
        """A bearer token of ``TEST_ORG`` (the organisation ``intake_event`` opens episodes for)
        unless ``org`` names another."""
        return {"Authorization": f"Bearer {self.tokens.issue(sub, roles, org=org)}"}

    async def access_audit(self, record_id, **where) -> list[dict]:
        """The access-audit rows about a record (the service's append-only audit table)."""
        table = self.app.state.access.audit_table
        rows = await self.pool.fetch(f"SELECT * FROM {table} WHERE record_id = $1 ORDER BY seq", str(record_id))
        return [dict(r) for r in rows if all(r[k] == v for k, v in where.items())]

    async def deliver(self, data: EventData, *, event_id: str | None = None, correlation_id: str | None = None):
        """Hand an event to the service's consumer as the Kafka subscription would."""
        event = envelope.new_event(type=data.event_type, source="/rapport/test", subject=str(data.episode_id), data=data,
                                   time=datetime.now(timezone.utc), id=event_id, correlation_id=correlation_id)
        rec = envelope.encode(event)
        record = FakeRecord(data.topic, 0, next(self._offsets), rec.key, rec.value,
                            [(k, v.encode()) for k, v in rec.headers.items()])
        return await self.consumer.process(record), event

    async def events(self, episode_id, event_type: str | None = None) -> list[dict]:
        """The episode's events in the outbox, in publish order (data + ce_type + ce_id)."""
        rows = await self.pool.fetch("SELECT headers, value FROM outbox WHERE key = $1 ORDER BY seq", str(episode_id).encode())
        out = []
        for r in rows:
            h = json.loads(r["headers"])
            if event_type is None or h["ce_type"] == event_type:
                out.append({**json.loads(r["value"]), "ce_type": h["ce_type"], "ce_id": h["ce_id"],
                            "correlation_id": h.get("correlation_id")})
        return out

    async def count(self, sql: str, *args) -> int:
        return await self.pool.fetchval(sql, *args)


@pytest.fixture(scope="session")
async def outcomes(postgres, hmac_tokens):
    # A schema of its own: the e2e system's outcomes (same Postgres, alive for the whole session)
    # would otherwise relay this harness's outbox and store what the real notifier makes of it.
    schema, dsn = await scratch_schema(postgres.admin_dsn, "outcomesit", bootstrap.MIGRATIONS)
    settings = OutcomesSettings(database_dsn=dsn, db_schema=schema, auth_secret=TEST_SECRET, environment="test")
    app = bootstrap.build(settings)
    runtime = app.state.runtime
    runtime.pool = await db.create_pool(settings.database_dsn, settings.db_schema, 1, 8)
    async with runtime.pool.acquire() as conn:
        await db.migrate(conn, settings.db_schema, runtime.migrations)
    # What runtime.start() wires, minus Kafka: outcomes' units of work (runtime.make_uow) and the bus.
    runtime.uow = UnitOfWorkFactory(runtime.pool, runtime.outbox, runtime.clock, make_uow=runtime.make_uow)
    runtime.bus = MessageBus(runtime.handlers, runtime.uow)
    dead: list = []

    async def dead_letter(topic, record):
        dead.append((topic, record))

    consumer = EventConsumer(pool=runtime.pool, group_id="it-outcomes", dead_letter=dead_letter, outbox=runtime.outbox,
                             clock=runtime.clock, max_attempts=1, backoff_s=0.01, make_uow=runtime.make_uow)
    runtime.handlers.subscribe(consumer)
    transport = httpx.ASGITransport(app=app)  # no lifespan: the runtime above stands in for start()
    async with httpx.AsyncClient(transport=transport, base_url="http://outcomes") as client:
        yield Outcomes(app, client, consumer, runtime.pool, hmac_tokens, dead)
    await runtime.pool.close()


def intake_event(*, baseline: dict[str, dict[int, int]] | None = None, clinician_id: str | None = None,
                 template_id: str = "ipt-standard", referred_at: datetime | None = None, target_condition="depression",
                 organisation_id: str | None = TEST_ORG):
    from rapport_shared.contracts import IntakeCompletedV1

    now = datetime.now(timezone.utc)
    referred = referred_at or now - timedelta(days=1)
    return IntakeCompletedV1(
        episode_id=uuid.uuid4(), person_id=f"P-t{uuid.uuid4().hex[:10]}", target_condition=target_condition,
        template_id=template_id, focus={"primary": "grief"}, clinician_id=clinician_id or f"clin-t{uuid.uuid4().hex[:8]}",
        availability={"timezone": "Europe/London", "slots": [{"weekday": 2, "start": "09:00", "end": "12:00"}]},
        baseline_scores=[{"instrument": code, "answers": answers, "total": float(sum(answers.values())),
                          "administered_at": referred + timedelta(hours=1)}
                         for code, answers in (baseline if baseline is not None else {"phq9": PHQ9_18}).items()],
        referred_at=referred, completed_at=referred + timedelta(hours=2), organisation_id=organisation_id,
    )


@pytest.fixture(scope="session")
def h():
    """The helpers above (test modules cannot import a conftest under --import-mode=importlib)."""
    from types import SimpleNamespace

    return SimpleNamespace(phq9=phq9, gad7=gad7, intake_event=intake_event, PHQ9_18=PHQ9_18, GAD7_12=GAD7_12,
                           TEST_ORG=TEST_ORG, OTHER_ORG=OTHER_ORG)
