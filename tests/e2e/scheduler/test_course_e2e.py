"""The scheduler as a separate process over real Kafka and Postgres, in simulated time.

The scheduler is restarted in simulation mode (``RAPPORT_CLOCK=simulated``) on a clock topic of
this module's own; the test is the driver that advances simulated time (``publish_tick``), so a
16-week course runs in seconds. Intake completions are published on ``rapport.intake`` exactly as
the intake service would (CloudEvents binary mode), and everything on ``rapport.course`` is read
back by a plain aiokafka consumer and validated against the committed JSON Schemas.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
import httpx
import pytest

from rapport_shared.clock import publish_tick
from rapport_shared.envelope import encode, new_event
from rapport_testing.fixtures import OTHER_ORG, TEST_ORG
from rapport_testing.kafka import produce_raw, read_all, wait_for_records, validate_partner_view
from rapport_shared.topics import COURSE, INTAKE
from rapport_shared.contracts import EVENT_MODELS
from rapport_scheduler.adapters.repository import CourseRepository
from rapport_scheduler.domain.course import fold
from rapport_scheduler.domain.decider import NoticeGrace
from rapport_testing.scheduler import intake_completed

pytestmark = pytest.mark.e2e
CHECKLIST = ("diagnosis", "sick_role_explained", "inventory_complete", "formulation_agreed", "focus_confirmed", "contract_set")
SIM_ENV = {"RAPPORT_CLOCK": "simulated", "RAPPORT_TIMER_POLL_INTERVAL_S": "0.5"}


class Sim:
    """The test's view: drives simulated time, calls the scheduler's API, reads rapport.course."""

    def __init__(self, system, kafka, tokens, topic):
        self.system, self.kafka, self.topic, self.tokens = system, kafka, topic, tokens
        # The clock is operations; a course is its own clinician's (access.yaml): calls on a course
        # carry the token of the clinician it was planned for (organisation TEST_ORG).
        self.ops = self.bearer("op-e2e", "operator")
        self.clinician_of: dict[str, str] = {}  # course id → its clinician
        self.now = datetime.now(timezone.utc).replace(microsecond=0)

    def bearer(self, sub: str, *roles: str, **kw) -> dict:
        return {"Authorization": f"Bearer {self.tokens.issue(sub, roles, **kw)}"}

    def auth_for(self, path: str) -> dict:
        m = re.match(r"/v1/courses/([0-9a-f-]{36})", path)
        return self.bearer(self.clinician_of[m.group(1)], "clinician") if m else self.ops

    @property
    def url(self) -> str:
        return self.system["scheduler"].url

    def env(self) -> dict:
        return {**SIM_ENV, "RAPPORT_CLOCK_TOPIC": self.topic}

    async def advance_to(self, t: datetime) -> None:
        """Publish a tick and wait until the scheduler's clock shows it."""
        if t > self.now:
            self.now = t
            await publish_tick(self.kafka.bootstrap, t, self.topic)
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(timeout=10) as c:
            while True:
                seen = datetime.fromisoformat((await c.get(f"{self.url}/v1/clock", headers=self.ops)).json()["now"])
                if seen >= self.now:
                    return
                assert time.monotonic() < deadline, f"scheduler clock stuck at {seen}, want {self.now}"
                await asyncio.sleep(0.05)

    async def call(self, method: str, path: str, *, headers: dict | None = None, **kw) -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as c:
            return await c.request(method, f"{self.url}{path}", headers=headers or self.auth_for(path), **kw)

    async def complete_intake(self, **kw) -> tuple[str, str]:
        """Publish intake.completed as the intake service would; wait for the planned course."""
        clinician = f"clin-t{uuid.uuid4().hex[:8]}"
        ik = intake_completed(completed_at=self.now, clinician_id=clinician, **kw)  # organisation TEST_ORG
        event = new_event(type=ik.event_type, source="/rapport/intake", subject=str(ik.episode_id), data=ik, time=self.now)
        rec = encode(event)
        await produce_raw(self.kafka.bootstrap, INTAKE, rec.value, rec.key, rec.headers)
        episode = str(ik.episode_id)
        [planned] = await wait_for_records(self.kafka.bootstrap, COURSE, lambda r: r.headers.get("ce_subject") == episode
                                           and r.headers["ce_type"] == "rapport.course.planned.v1")
        course_id = json.loads(planned.value)["course_id"]
        self.clinician_of[course_id] = clinician
        return episode, course_id

    async def course(self, course_id: str) -> dict:
        r = await self.call("GET", f"/v1/courses/{course_id}")
        assert r.status_code == 200, r.text
        return r.json()

    async def episode_records(self, episode: str) -> list:
        return [r for r in await read_all(self.kafka.bootstrap, COURSE) if r.headers.get("ce_subject") == episode]


@pytest.fixture(scope="module")
async def sim(system, kafka, tokens):
    s = Sim(system, kafka, tokens, f"rapport.clock.e2e-{uuid.uuid4().hex[:8]}")
    await publish_tick(kafka.bootstrap, s.now, s.topic)
    system.restart("scheduler", s.env())
    yield s
    system.restart("scheduler")  # back to the system clock for the other e2e tests


async def test_sixteen_sessions_in_simulated_time_phase_changes_and_end_in_order(sim, service_dsns):
    episode, course_id = await sim.complete_intake()
    for k in range(1, 17):
        cur = (await sim.course(course_id))["current_session"]
        assert cur["number"] == k
        await sim.advance_to(datetime.fromisoformat(cur["ends_at"]))
        if k == 2:  # the clinician completes the initial-phase checklist at session 2
            for item in CHECKLIST:
                r = await sim.call("PUT", f"/v1/courses/{course_id}/checklist/{item}", json={})
                assert r.status_code == 200, r.text
        r = await sim.call("POST", f"/v1/courses/{course_id}/sessions/{cur['session_id']}/attend")
        assert r.status_code == 200, r.text

    await wait_for_records(sim.kafka.bootstrap, COURSE, lambda r: r.headers.get("ce_subject") == episode
                           and r.headers["ce_type"] == "rapport.course.ended.v1")
    records = await sim.episode_records(episode)
    data = [(r.headers["ce_type"], validate_partner_view(r)) for r in records]  # every record, against its committed schema
    types = [t for t, _ in data]
    assert types[0] == "rapport.course.planned.v1"
    assert types.count("rapport.session.scheduled.v1") == 16
    attended = [d["number"] for t, d in data if t == "rapport.session.attended.v1"]
    assert attended == list(range(1, 17))
    milestones = [(t, d) for t, d in data if t in ("rapport.course.phase_changed.v1", "rapport.course.ended.v1")]
    assert [(d.get("from_phase"), d.get("to_phase"), d.get("effective_from_session"), d["reason"]) for _, d in milestones] == [
        ("initial", "middle", 3, "checklist_complete"),
        ("middle", "termination", 14, "contract"),
        ("termination", "completed", 17, "last_session_attended"),
        (None, None, None, "completed"),
    ]
    assert milestones[-1][0] == "rapport.course.ended.v1" and types[-1] == "rapport.course.ended.v1"
    assert milestones[1][1]["sessions_remaining"] == 3 and milestones[-1][1]["attended_sessions"] == 16
    # Each phase change comes right after the fact that caused it, in the same transaction.
    i = types.index("rapport.course.phase_changed.v1", types.index("rapport.course.checklist_updated.v1"))
    assert types[i - 1] == "rapport.course.checklist_updated.v1"
    ends = [k for k, t in enumerate(types) if t == "rapport.course.phase_changed.v1"][1:]
    assert all(types[k - 1] == "rapport.session.attended.v1" for k in ends)
    assert len({r.headers["ce_id"] for r in records}) == len(records)  # no duplicate event
    course = await sim.course(course_id)
    assert course["phase"] == "completed" and course["ended"]["reason"] == "completed"

    # Replay: the course rebuilt from its own events on rapport.course equals the live state.
    replayed = fold(EVENT_MODELS[t].model_validate(d) for t, d in data)
    conn = await asyncpg.connect(service_dsns["scheduler"])
    try:
        live = await CourseRepository(conn).get(uuid.UUID(course_id))
    finally:
        await conn.close()
    assert replayed == live


async def test_review_notice_timer_survives_a_crash_and_fires_in_simulated_time(sim, service_dsns):
    episode, course_id = await sim.complete_intake(template_id="ipt-brief")  # i = 2
    course = await sim.course(course_id)
    s1, s2 = course["sessions"][0], course["sessions"][1]
    await sim.advance_to(datetime.fromisoformat(s1["ends_at"]))
    assert (await sim.call("POST", f"/v1/courses/{course_id}/sessions/{s1['session_id']}/attend")).status_code == 200
    await sim.advance_to(datetime.fromisoformat(s2["starts_at"]) + timedelta(minutes=5))
    assert (await sim.call("POST", f"/v1/courses/{course_id}/sessions/{s2['session_id']}/attend")).status_code == 200
    timers = (await sim.call("GET", f"/v1/courses/{course_id}/timers")).json()["timers"]
    # Due when the grace after session i ends: by default the end of that day in the clinic's zone.
    due = NoticeGrace(end_of_day=True, timezone="Europe/London").due(datetime.fromisoformat(s2["ends_at"]))
    assert datetime.fromisoformat({t["kind"]: t["due_at"] for t in timers}["scheduler.initial_window"]) == due

    sim.system["scheduler"].kill()  # SIGKILL: the timer lives in Postgres, simulated time on Kafka
    sim.system["scheduler"].start(sim.env())
    assert datetime.fromisoformat((await sim.call("GET", "/v1/clock")).json()["now"]) == sim.now  # caught up

    await sim.advance_to(due)
    [notice] = await wait_for_records(sim.kafka.bootstrap, COURSE, lambda r: r.headers.get("ce_subject") == episode
                                      and r.headers["ce_type"] == "rapport.course.review_needed.v1")
    body = validate_partner_view(notice)
    assert (body["reason"], body["session_number"], body["phase"]) == ("initial_checklist_incomplete", 2, "initial")
    assert len(body["missing_items"]) == 6
    conn = await asyncpg.connect(service_dsns["scheduler"])
    try:
        fired = await conn.fetch("SELECT fired_at FROM timers WHERE key = $1 AND kind = 'scheduler.initial_window'",
                                 f"course:{course_id}")
    finally:
        await conn.close()
    assert len(fired) == 1 and fired[0]["fired_at"] is not None
    await asyncio.sleep(1.5)  # a few runner passes: it must not fire again
    notices = [r for r in await sim.episode_records(episode) if r.headers["ce_type"] == "rapport.course.review_needed.v1"]
    assert len(notices) == 1


async def test_bad_input_over_http_is_a_clear_4xx_and_writes_nothing(sim, service_dsns):
    episode, course_id = await sim.complete_intake()
    course = await sim.course(course_id)
    s2, s5 = course["sessions"][1], course["sessions"][4]
    r = await sim.call("POST", f"/v1/courses/{course_id}/sessions/{s5['session_id']}/cancel",
                       json={"cancelled_by": "patient", "reason_code": "holiday"})
    assert r.status_code == 200
    await wait_for_records(sim.kafka.bootstrap, COURSE, lambda r: r.headers.get("ce_subject") == episode
                           and r.headers["ce_type"] == "rapport.session.cancelled.v1")

    async def snapshot():
        conn = await asyncpg.connect(service_dsns["scheduler"])
        try:
            ep = uuid.UUID(episode)
            return (await conn.fetchval("SELECT count(*) FROM outbox WHERE key = $1", episode.encode()),
                    await conn.fetchval("SELECT md5(string_agg(s::text, ',' ORDER BY session_id)) FROM sessions s"
                                        " JOIN courses USING (course_id) WHERE episode_id = $1", ep),
                    await conn.fetchval("SELECT md5(c::text) FROM courses c WHERE episode_id = $1", ep))
        finally:
            await conn.close()

    before = await snapshot()
    past = (sim.now - timedelta(days=1)).isoformat()
    sunday = (datetime.fromisoformat(s2["starts_at"]) - timedelta(days=2)).isoformat()
    cases = [
        ("POST", f"/sessions/{uuid.uuid4()}/attend", None, 404, "session_id"),
        ("POST", f"/sessions/{s5['session_id']}/attend", None, 409, "session_id"),
        ("POST", f"/sessions/{s2['session_id']}/reschedule", {"starts_at": past, "reason_code": "x"}, 422, "starts_at"),
        ("POST", f"/sessions/{s2['session_id']}/reschedule", {"starts_at": sunday, "reason_code": "x"}, 422, "starts_at"),
        ("POST", "/contract", {"contracted_sessions": 30, "reason_code": "x"}, 422, "contracted_sessions"),
    ]
    for method, path, body, status, field in cases:
        r = await sim.call(method, f"/v1/courses/{course_id}{path}", **({"json": body} if body else {}))
        assert r.status_code == status, (path, r.text)
        assert r.json()["field"] == field and r.json()["detail"], r.json()
    # Another clinician of the organisation (no care-team duty), and the course's own clinician
    # acting for another organisation: the 404 of a course that does not exist; nothing written.
    owner = sim.clinician_of[course_id]
    stranger, elsewhere = sim.bearer("clin-stranger", "clinician"), sim.bearer(owner, "clinician", org=OTHER_ORG)
    missing = str(uuid.uuid4())
    for headers in (stranger, elsewhere):
        for method, path, body in (("GET", "", None), ("POST", "/withdraw", {"reason": "withdrawn"}),
                                   ("POST", f"/sessions/{s2['session_id']}/attend", None)):
            r = await sim.call(method, f"/v1/courses/{course_id}{path}", headers=headers, **({"json": body} if body else {}))
            m = await sim.call(method, f"/v1/courses/{missing}{path}", headers=headers, **({"json": body} if body else {}))
            assert r.status_code == m.status_code == 404, (path, r.text)
            assert r.json() == {**m.json(), "detail": m.json()["detail"].replace(missing, course_id)}
    assert await snapshot() == before
    # The reads and the refusals are in the scheduler's access audit.
    conn = await asyncpg.connect(service_dsns["scheduler"])
    try:
        rows = await conn.fetch("SELECT actor, actor_org, decision FROM scheduler_audit.access_audit"
                                " WHERE record_id = $1 ORDER BY seq", course_id)
    finally:
        await conn.close()
    decisions = {(r["actor"], r["actor_org"], r["decision"]) for r in rows}
    assert {("clin-stranger", TEST_ORG, "refused"), (owner, OTHER_ORG, "refused"), (owner, TEST_ORG, "allowed")} <= decisions
