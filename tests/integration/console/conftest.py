"""The console in-process against a real Postgres: the pages over ASGI (with the session cookie,
as a browser sends it), events fed through the real ``EventConsumer`` (envelope decoding, contract
validation, inbox) as Kafka records would be, and the owning services' APIs replaced by an
``httpx.MockTransport`` that records what the console sent them. Kafka is not needed here; the
e2e tests (tests/e2e/console) run the real services."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from rapport_console import bootstrap
from rapport_console.adapters.owners import OwnerServices
from rapport_console.service_layer import unit_of_work
from rapport_console.settings import ConsoleSettings
from rapport_shared import db, envelope
from rapport_shared.consumer import EventConsumer
from rapport_shared.contracts.base import EventData
from rapport_shared.messagebus import MessageBus
from rapport_testing.fixtures import OTHER_ORG, TEST_ORG, TEST_SECRET
from rapport_testing.services import role_dsn
from rapport_shared.uow import UnitOfWorkFactory


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
class Owners:
    """The notifier and outcomes as the console sees them: what they were asked, what they answer."""

    calls: list = field(default_factory=list)
    status: int = 200

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.method, str(request.url), request.headers.get("authorization"),
                           json.loads(request.content or b"{}")))
        if self.status != 200:
            return httpx.Response(self.status, json={"error": "NotFound", "detail": "no alert", "field": "alert_id"})
        if request.url.path.endswith("/acknowledge"):
            return httpx.Response(200, json={"alert_id": request.url.path.split("/")[-2], "escalated": False,
                                             "acknowledged_at": "2026-11-26T10:00:00+00:00",
                                             "acknowledged_by": "clin-from-notifier"})
        return httpx.Response(200, json={"status": "resolved"})


@dataclass
class Console:
    app: object
    pool: object
    consumer: EventConsumer
    tokens: object
    owners: Owners
    feed_task: asyncio.Task
    _offsets: itertools.count = field(default_factory=itertools.count)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://console.test")

    def token(self, sub: str, *roles: str, org: str | None = None) -> str:
        return self.tokens.issue(sub, roles or ("clinician",), org=org)

    async def signed_in(self, sub: str, *roles: str, org: str | None = None) -> httpx.AsyncClient:
        """A browser-like client signed in through the form (cookies kept)."""
        c = self.client()
        form = await c.get("/sign-in")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        r = await c.post("/sign-in", data={"csrf_token": csrf, "token": self.token(sub, *roles, org=org)})
        assert r.status_code == 303, r.text
        return c

    async def deliver(self, data: EventData, *, event_id: str | None = None) -> str:
        event = envelope.new_event(type=data.event_type, source="/rapport/test", subject=str(data.episode_id),
                                   data=data, time=datetime.now(timezone.utc), id=event_id)
        rec = envelope.encode(event)
        outcome = await self.consumer.process(FakeRecord(data.topic, 0, next(self._offsets), rec.key, rec.value,
                                                         [(k, v.encode()) for k, v in rec.headers.items()]))
        assert outcome.status == "processed", outcome
        return event.id

    async def audit(self, record_id) -> list[dict]:
        rows = await self.pool.fetch(f"SELECT * FROM {self.app.state.access.audit_table} WHERE record_id = $1"
                                     " ORDER BY seq", str(record_id))
        return [dict(r) for r in rows]


@pytest.fixture(scope="session")
async def console(postgres, hmac_tokens):
    password = secrets.token_urlsafe(12)
    # Its own schema and role: the e2e system's console (same Postgres) keeps "console" and its password.
    await db.provision(postgres.admin_dsn, "rapport", "console_it", password)
    settings = ConsoleSettings(database_dsn=role_dsn(postgres.admin_dsn, "console_it", password), db_schema="console_it",
                               auth_secret=TEST_SECRET,
                               environment="test", cookie_secure=False, session_secret="it-session-secret",
                               sse_stream_s=3, sse_keepalive_s=1)
    app = bootstrap.build(settings)
    runtime = app.state.runtime
    runtime.pool = await db.create_pool(settings.database_dsn, settings.db_schema, 1, 8)
    async with runtime.pool.acquire() as conn:
        await db.migrate(conn, settings.db_schema, runtime.migrations)
    # What runtime.start() wires, minus Kafka: the console's units of work and the bus.
    runtime.uow = UnitOfWorkFactory(runtime.pool, runtime.outbox, runtime.clock, make_uow=runtime.make_uow)
    runtime.bus = MessageBus(runtime.handlers, runtime.uow)

    async def dead_letter(topic, record):
        raise AssertionError(f"dead-lettered on {topic}: {record}")

    consumer = EventConsumer(pool=runtime.pool, group_id="it-console", dead_letter=dead_letter, outbox=runtime.outbox,
                             clock=runtime.clock, max_attempts=1, backoff_s=0.01, make_uow=runtime.make_uow)
    runtime.handlers.subscribe(consumer)
    owners = Owners()
    original = unit_of_work.owners_for
    unit_of_work.owners_for = lambda s: OwnerServices(outcomes_url="http://outcomes.test",
                                                      notifier_url="http://notifier.test",
                                                      transport=httpx.MockTransport(owners.handler))
    feed_task = asyncio.create_task(app.state.changes.run(runtime.pool))
    try:
        yield Console(app, runtime.pool, consumer, hmac_tokens, owners, feed_task)
    finally:
        feed_task.cancel()
        await asyncio.gather(feed_task, return_exceptions=True)
        unit_of_work.owners_for = original
        await runtime.pool.close()


# ---- events of one episode ----------------------------------------------------------------------

def episode_events(*, clinician: str, org: str | None = TEST_ORG, start: datetime | None = None,
                   sessions: int = 4) -> dict:
    """An intake, a planned course of ``sessions`` weekly sessions and its phase plan (models)."""
    from rapport_shared.contracts import CoursePlannedV1, IntakeCompletedV1

    t0 = start or datetime.now(timezone.utc) - timedelta(days=10)
    episode, course = uuid.uuid4(), uuid.uuid4()
    person = f"P-t{uuid.uuid4().hex[:10]}"
    intake = IntakeCompletedV1(
        episode_id=episode, person_id=person, target_condition="depression", template_id="ipt-standard",
        focus={"primary": "role_transition", "secondary": "grief"}, clinician_id=clinician,
        availability={"timezone": "Europe/London", "slots": [{"weekday": 2, "start": "09:00", "end": "12:00"}]},
        baseline_scores=[], referred_at=t0, completed_at=t0 + timedelta(hours=1), organisation_id=org)
    plan = [{"phase": "initial", "first_session": 1, "last_session": 1},
            {"phase": "middle", "first_session": 2, "last_session": sessions - 1},
            {"phase": "termination", "first_session": sessions, "last_session": sessions}]
    booked = [{"session_id": uuid.uuid4(), "number": n, "starts_at": t0 + timedelta(days=1 + 7 * (n - 1)),
               "duration_minutes": 50} for n in range(1, sessions + 1)]
    planned = CoursePlannedV1(
        episode_id=episode, course_id=course, person_id=person, template_id="ipt-standard", clinician_id=clinician,
        contracted_sessions=sessions, phase_plan=plan, sessions=booked, first_session_at=booked[0]["starts_at"],
        planned_end_at=booked[-1]["starts_at"], planned_at=t0 + timedelta(hours=2), organisation_id=org)
    return {"episode": episode, "course": course, "person": person, "intake": intake, "planned": planned,
            "sessions": booked, "t0": t0, "org": org}


def score(ep: dict, total: float, at: datetime, *, instrument: str = "phq9", baseline: float | None = None,
          band: str = "moderate", timepoint: str = "session", session_number: int | None = None, flags=()):
    from rapport_shared.contracts.outcomes import ScoreSubmittedV1

    change = None if baseline is None else total - baseline
    return ScoreSubmittedV1(
        episode_id=ep["episode"], submission_id=uuid.uuid4(), instrument=instrument, timepoint=timepoint,
        session_number=session_number, total=total, band=band, caseness=total >= 10, baseline_total=baseline,
        change_from_baseline=change, reliable_change=None if change is None else (
            "improved" if change <= -6 else "no_reliable_change"),
        flags=list(flags), administered_at=at, scored_at=at, organisation_id=ep["org"])


@pytest.fixture(scope="session")
def h():
    """The helpers above (test modules cannot import a conftest under --import-mode=importlib)."""
    from types import SimpleNamespace

    return SimpleNamespace(episode_events=episode_events, score=score, TEST_ORG=TEST_ORG, OTHER_ORG=OTHER_ORG)
