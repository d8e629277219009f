"""Intake's HTTP app in-process against a real Postgres (its own schema ``intake_it``), no Kafka:
requests go through FastAPI, handlers and SQL exactly as in the service; events stop in the
outbox table, where the tests read them."""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import asyncpg
import httpx
import pytest

from rapport_shared import db
from rapport_shared.clock import ManualClock
from rapport_shared.http.auth import TokenAuthority
from rapport_testing.fixtures import TEST_ORG
from rapport_testing.services import role_dsn
from rapport_shared.messagebus import MessageBus
from rapport_shared.uow import UnitOfWorkFactory, uow_maker
from rapport_intake.bootstrap import build
from rapport_intake.settings import IntakeSettings

SCHEMA = "intake_it"
SECRET = "intake-it-" + secrets.token_hex(16)
START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
# TEST_ORG's care team in intake (PUT /v1/care-team): supervisors reach every referral of the
# organisation. Tests where another clinician than the opener (ic-1) acts use one of these; a
# clinician not named here reaches only the referrals it opened or is assigned to.
SUPERVISORS = ("ic-7", "ic-42", "clin-9")


@dataclass
class IntakeHarness:
    client: httpx.AsyncClient
    pool: asyncpg.Pool
    clock: ManualClock
    authority: TokenAuthority
    dsn: str

    def auth(self, role: str = "intake_clinician", sub: str = "ic-1", org: str | None = None) -> dict[str, str]:
        """A token of ``org`` (default: TEST_ORG, the organisation every test referral belongs to;
        ``org=""`` a token naming none)."""
        token = self.authority.issue(sub, [role], now=datetime.now(timezone.utc), org=org)
        return {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body=None, *, role: str = "intake_clinician", sub: str = "ic-1",
                   org: str | None = None) -> httpx.Response:
        self.clock.advance(timedelta(seconds=1))  # each request a moment later; no real waiting
        return await self.client.request(method, path, json=body, headers=self.auth(role, sub, org))

    async def open(self, person_id: str | None = None, condition: str = "depression") -> tuple[str, str]:
        person = person_id or f"P-t{uuid.uuid4().hex[:10]}"
        r = await self.call("POST", "/v1/referrals", {"person_id": person, "referral_source": "gp",
                                                       "target_condition": condition})
        assert r.status_code == 201, r.text
        return r.json()["episode_id"], person

    async def outbox(self, episode_id: str) -> list[dict]:
        rows = await self.pool.fetch("SELECT event_id, event_type, headers, value FROM outbox WHERE key = $1 ORDER BY seq",
                                     episode_id.encode())
        return [{"event_id": str(r["event_id"]), "type": r["event_type"], "headers": json.loads(r["headers"]),
                 "data": json.loads(bytes(r["value"]))} for r in rows]

    async def snapshot(self, episode_id: str) -> tuple:
        """Everything a request could write for this referral (to prove a refusal wrote nothing)."""
        ep = uuid.UUID(episode_id)
        row = await self.pool.fetchrow("SELECT * FROM referrals WHERE episode_id = $1", ep)
        counts = [await self.pool.fetchval(f"SELECT count(*) FROM {t} WHERE episode_id = $1", ep)
                  for t in ("baseline_scores", "risk_reviews", "audit_log")]
        person = row["person_id"]
        others = [await self.pool.fetchval("SELECT count(*) FROM outbox WHERE key = $1", episode_id.encode()),
                  await self.pool.fetchval("SELECT count(*) FROM contacts WHERE person_id = $1", person),
                  await self.pool.fetchval("SELECT count(*) FROM contact_publications WHERE person_id = $1", person)]
        return dict(row), counts, others


@pytest.fixture(scope="session")
async def intake_it(postgres) -> IntakeHarness:
    password = secrets.token_urlsafe(12)
    await db.provision(postgres.admin_dsn, "rapport", SCHEMA, password)
    dsn = role_dsn(postgres.admin_dsn, SCHEMA, password)
    settings = IntakeSettings(database_dsn=dsn, db_schema=SCHEMA, auth_secret=SECRET, environment="test")
    app = build(settings)
    runtime = app.state.runtime
    pool = await db.create_pool(dsn, SCHEMA, 1, 5)
    async with pool.acquire() as conn:
        await db.migrate(conn, SCHEMA, runtime.migrations)
    clock = ManualClock(START)
    runtime.pool, runtime.clock = pool, clock
    # What runtime.start() wires, minus Kafka: intake's units of work on this clock, and the bus.
    runtime.make_uow = uow_maker(runtime.outbox, clock, runtime.uow_class, settings)
    runtime.uow = UnitOfWorkFactory(pool, runtime.outbox, clock, make_uow=runtime.make_uow)
    runtime.bus = MessageBus(runtime.handlers, runtime.uow)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake")
    harness = IntakeHarness(client, pool, clock, TokenAuthority(SECRET, org=TEST_ORG), dsn)
    r = await harness.call("PUT", "/v1/care-team", {"entries": [{"clinician_id": c, "duty": "supervisor"}
                                                                for c in SUPERVISORS]}, role="admin", sub="admin-1")
    assert r.status_code == 200, r.text
    yield harness
    await client.aclose()
    await pool.close()
