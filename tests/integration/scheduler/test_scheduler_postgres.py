"""Scheduler use cases against a real Postgres: planning (once per episode, no double booking,
closure days), commands over HTTP with their refusals (nothing written), durable timers, and the
replay of a course from its own events."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from rapport_shared.consumer import EventConsumer
from rapport_shared.contracts.course import CourseReviewNeededV1, ReviewReason
from rapport_shared.contracts.outcomes import OutcomeEvaluatedV1
from rapport_shared.envelope import encode, new_event
from rapport_shared.http.auth import TokenAuthority
from rapport_testing.fixtures import TEST_ORG, TEST_SECRET
from rapport_shared.timers import TimerRunner
from rapport_shared.topics import INTAKE
from rapport_scheduler.domain import decider as D
from rapport_scheduler.domain.course import fold
from rapport_scheduler.service_layer import handlers
from rapport_testing.scheduler import intake_completed

pytestmark = pytest.mark.integration
TOKENS = TokenAuthority(TEST_SECRET, org=TEST_ORG)  # the harness' app verifies development HMAC tokens


def bearer(sub: str, *roles: str, org: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS.issue(sub, roles, org=org)}"}


# Course commands and reads are the course's clinician's (access.yaml): each test acts as the
# clinician its course was planned for (``bearer(course.clinician_id, "clinician")``).
ADMIN = bearer("adm-1", "admin")


def clinician() -> str:
    return f"clin-t{uuid.uuid4().hex[:8]}"


async def plan(h, **kw):
    ik = intake_completed(completed_at=h.clock.now(), **kw)
    async with h.uow() as uow:
        await handlers.plan_course(ik, uow)
    async with h.uow() as uow:
        return ik, await uow.courses.get_by_episode(ik.episode_id)


class Record:
    def __init__(self, topic, rec, offset):
        self.topic, self.partition, self.offset = topic, 0, offset
        self.key, self.value, self.timestamp = rec.key, rec.value, 0
        self.headers = [(k, v.encode()) for k, v in rec.headers.items()]


async def test_same_intake_twice_plans_one_course(h):
    consumer = EventConsumer(pool=h.pool, group_id="t", dead_letter=None, outbox=h.outbox, clock=h.clock,
                             make_uow=h.uow.make_uow)
    handlers.handlers.subscribe(consumer)
    ik = intake_completed(completed_at=h.clock.now(), clinician_id=clinician())
    waits = lambda: REGISTRY.get_sample_value("rapport_scheduler_first_session_wait_days_count",  # noqa: E731
                                              {"template_id": ik.template_id}) or 0.0
    before = waits()
    rec = encode(new_event(type=ik.event_type, source="/rapport/intake", subject=str(ik.episode_id), data=ik, time=h.clock.now()))
    assert (await consumer.process(Record(INTAKE, rec, 1))).status == "processed"
    assert (await consumer.process(Record(INTAKE, rec, 2))).status == "duplicate"  # same ce_id: the inbox
    again = encode(new_event(type=ik.event_type, source="/rapport/intake", subject=str(ik.episode_id), data=ik, time=h.clock.now()))
    assert (await consumer.process(Record(INTAKE, again, 3))).status == "processed"  # new id: the episode guard
    assert await h.val("SELECT count(*) FROM courses WHERE episode_id = $1", ik.episode_id) == 1
    events = await h.events(ik.episode_id)
    assert [e.event_type for e in events] == ["rapport.course.planned.v1"] + ["rapport.session.scheduled.v1"] * 16
    assert waits() == before + 1  # the wait for the first session, observed once per planned course


async def test_no_double_booking_and_no_session_on_a_closure_day(h, client):
    clin = clinician()
    r = await client.put(f"/v1/clinicians/{clin}/working-hours", headers=ADMIN, json={
        "timezone": "Europe/London", "slots": [{"weekday": 2, "start": "09:00", "end": "11:00"}]})
    assert r.status_code == 200
    closed = date(2030, 1, 22)  # a Tuesday
    assert (await client.put(f"/v1/closures/{closed}", headers=ADMIN, json={"reason_code": "training_day"})).status_code == 200
    courses = [(await plan(h, clinician_id=clin))[1] for _ in range(3)]
    starts = sorted((s.starts_at, s.ends_at) for c in courses for s in c.live_sessions())
    assert len(starts) == 48
    for (a_start, a_end), (b_start, _) in zip(starts, starts[1:]):
        assert a_end <= b_start, "clinician double booked"
    assert all(s.astimezone(h.settings.default_hours().tz).date() != closed for s, _ in starts)
    assert (await client.delete(f"/v1/closures/{closed}", headers=ADMIN)).status_code == 200
    # Only admins configure the calendar.
    assert (await client.put(f"/v1/closures/{closed}", headers=bearer(clin, "clinician"), json={})).status_code == 403


async def test_commands_over_http_and_replay_equals_live_state(h, client):
    ik, course = await plan(h, clinician_id=clinician())
    cid = course.course_id
    base = f"/v1/courses/{cid}"
    auth = bearer(course.clinician_id, "clinician")  # the course's own clinician
    # Session 1, then the checklist during session 2: middle from session 3.
    for k in (1, 2):
        cur = (await client.get(base, headers=auth)).json()["current_session"]
        h.clock.set(datetime.fromisoformat(cur["ends_at"]))
        r = await client.post(f"{base}/sessions/{cur['session_id']}/attend", headers=auth)
        assert r.status_code == 200, r.text
    for item in ("diagnosis", "sick_role_explained", "inventory_complete", "formulation_agreed", "contract_set"):
        assert (await client.put(f"{base}/checklist/{item}", headers=auth, json={})).status_code == 200
    r = await client.put(f"{base}/checklist/focus_confirmed", headers=auth,
                         json={"focus": {"primary": "grief"}, "reason_code": "bereavement_disclosed"})
    assert r.status_code == 200 and r.json()["course"]["phase"] == "middle"
    assert "rapport.course.phase_changed.v1" in r.json()["events"]
    # A miss moves the calendar, a cancellation too, a reschedule, a contract change.
    cur = r.json()["course"]["current_session"]
    h.clock.set(datetime.fromisoformat(cur["ends_at"]))
    r = await client.post(f"{base}/sessions/{cur['session_id']}/miss", headers=auth)
    assert r.status_code == 200 and r.json()["course"]["consecutive_missed"] == 1
    sessions = [s for s in r.json()["course"]["sessions"] if s["status"] == "scheduled"]
    r = await client.post(f"{base}/sessions/{sessions[3]['session_id']}/cancel", headers=auth,
                          json={"cancelled_by": "patient", "reason_code": "holiday"})
    assert r.status_code == 200
    target = sessions[1]
    new_start = datetime.fromisoformat(target["starts_at"]) + timedelta(hours=1)
    r = await client.post(f"{base}/sessions/{target['session_id']}/reschedule", headers=auth,
                          json={"starts_at": new_start.isoformat(), "reason_code": "patient_request"})
    assert r.status_code == 200, r.text
    r = await client.post(f"{base}/contract", headers=auth, json={"contracted_sessions": 14, "reason_code": "good_progress"})
    assert r.status_code == 200 and r.json()["course"]["contracted_sessions"] == 14
    # Outcomes' evaluation is an input the course records (for maintenance later).
    async with h.uow() as uow:
        await handlers.record_outcome(OutcomeEvaluatedV1(episode_id=ik.episode_id, course_id=cid, finished_course=False,
                                                         remission=False, evaluated_at=h.clock.now()), uow)
    live = (await client.get(base, headers=auth)).json()
    assert [s["number"] for s in live["sessions"] if s["status"] in ("scheduled", "attended")] == list(range(1, 15))

    async with h.uow() as uow:
        state = await uow.courses.get(cid)
    replayed = fold([*await h.events(ik.episode_id),
                     OutcomeEvaluatedV1(episode_id=ik.episode_id, course_id=cid, finished_course=False, remission=False,
                                        evaluated_at=h.clock.now())])
    assert replayed == state


async def test_bad_input_is_a_clear_4xx_and_writes_nothing(h, client):
    ik, course = await plan(h, clinician_id=clinician())
    base = f"/v1/courses/{course.course_id}"
    auth = bearer(course.clinician_id, "clinician")  # the course's own clinician
    s1, s2 = course.live_at(1), course.live_at(2)
    h.clock.set(s1.starts_at - timedelta(days=1))
    future = course.live_at(5)
    assert (await client.post(f"{base}/sessions/{future.session_id}/cancel", headers=auth,
                              json={"cancelled_by": "clinic", "reason_code": "clinician_unwell"})).status_code == 200
    before = await h.counts()
    cases = [
        ("post", f"{base}/sessions/{uuid.uuid4()}/attend", None, 404, "session_id"),
        ("post", f"/v1/courses/{uuid.uuid4()}/sessions/{s1.session_id}/attend", None, 404, "course_id"),
        ("post", f"{base}/sessions/{future.session_id}/attend", None, 409, "session_id"),  # cancelled
        ("post", f"{base}/sessions/{s2.session_id}/reschedule",
         {"starts_at": (h.clock.now() - timedelta(days=2)).isoformat(), "reason_code": "x"}, 422, "starts_at"),
        ("post", f"{base}/sessions/{s2.session_id}/reschedule",  # a Sunday
         {"starts_at": (s2.starts_at - timedelta(days=4)).isoformat(), "reason_code": "x"}, 422, "starts_at"),
        ("post", f"{base}/sessions/{s2.session_id}/reschedule",
         {"starts_at": s2.starts_at.replace(tzinfo=None).isoformat(), "reason_code": "x"}, 422, "starts_at"),
        ("post", f"{base}/contract", {"contracted_sessions": 20, "reason_code": "x"}, 422, "contracted_sessions"),
        ("post", f"{base}/contract", {"contracted_sessions": 14}, 422, "reason_code"),
        ("post", f"{base}/contract", {"contracted_sessions": 14, "reason_code": "Free text!"}, 422, "reason_code"),
        ("put", f"{base}/checklist/mood", {}, 422, "path.item"),
        ("put", f"{base}/checklist/focus_confirmed", {"focus": {"primary": "grief"}}, 422, "reason_code"),
        ("post", f"{base}/maintenance", {"sessions": 3}, 409, None),
        ("post", f"{base}/withdraw", {"reason": "bored"}, 422, "reason"),
        ("post", f"{base}/sessions/{s1.session_id}/attend", None, 409, "session_id"),  # not started yet
    ]
    for method, url, body, status, field in cases:
        r = await getattr(client, method)(url, headers=auth, **({"json": body} if body is not None else {}))
        assert r.status_code == status, (url, body, r.text)
        got = r.json()
        assert got.get("field", (got.get("errors") or [{}])[0].get("field")) == field, (url, got)
        assert got["detail"]
    r = await client.post(f"{base}/maintenance", headers=auth, json={"sessions": 3})
    assert r.json()["phase"] == "initial" and r.json()["rule"] == "maintenance_after_completed"
    assert "phase initial" in r.json()["detail"]
    assert await h.counts() == before  # nothing written by any refused request
    assert (await client.post(f"{base}/sessions/{s1.session_id}/attend")).status_code == 401
    nurse = bearer("p-1", "patient_app")
    assert (await client.post(f"{base}/sessions/{s1.session_id}/attend", headers=nurse)).status_code == 403


async def test_timer_fires_once_in_a_transaction_and_survives_a_restart(h, client):
    ik, course = await plan(h, clinician_id=clinician())
    base = f"/v1/courses/{course.course_id}"
    auth = bearer(course.clinician_id, "clinician")  # the course's own clinician
    for k in (1, 2, 3):
        cur = course.live_at(k)
        h.clock.set(cur.starts_at + timedelta(minutes=10))  # recorded while session 3 is still running
        assert (await client.post(f"{base}/sessions/{cur.session_id}/attend", headers=auth)).status_code == 200
    timers = (await client.get(f"{base}/timers", headers=auth)).json()["timers"]
    # Due when the grace after session 3 ends (default: the end of that day in the clinic's time zone).
    due = h.settings.notice_grace().due(course.live_at(3).ends_at)
    assert h.settings.notice_grace().end_of_day and due > course.live_at(3).ends_at
    assert {t["kind"]: t["due_at"] for t in timers}[D.INITIAL_WINDOW] == due.isoformat()

    # Other tests' courses share this schema: keep their timers out of the counts below.
    async with h.pool.acquire() as conn:
        await conn.execute("UPDATE timers SET cancelled_at = now() WHERE key <> $1", f"course:{course.course_id}")
    calls = []

    async def failing(uow, timer):
        calls.append(timer.kind)
        await handlers.on_timer(timer, uow)  # writes state + outbox ...
        raise RuntimeError("crash before commit")  # ... and dies: all of it rolls back

    handlers_map = handlers.handlers.timer_handlers
    runner = TimerRunner(h.pool, h.outbox, h.clock, h.schema, {**handlers_map, D.INITIAL_WINDOW: failing}, backoff_s=60,
                         make_uow=h.uow.make_uow)
    assert await runner.fire_due() == 0  # not due yet
    h.clock.set(course.live_at(3).ends_at)
    assert await runner.fire_due() == 0  # session 3 is over, the grace is not
    h.clock.set(due)
    assert await runner.fire_due() == 1 and calls == [D.INITIAL_WINDOW]
    notices = lambda evs: [e for e in evs if isinstance(e, CourseReviewNeededV1)]
    assert notices(await h.events(ik.episode_id)) == []
    assert await h.val("SELECT attempts FROM timers WHERE key = $1 AND kind = $2 AND fired_at IS NULL",
                       f"course:{course.course_id}", D.INITIAL_WINDOW) == 1

    restarted = TimerRunner(h.pool, h.outbox, h.clock, h.schema, handlers_map, make_uow=h.uow.make_uow)  # a new process
    assert await restarted.fire_due() == 1
    assert await restarted.fire_due() == 0  # fired once, never again
    [notice] = notices(await h.events(ik.episode_id))
    assert notice.reason == ReviewReason.initial_checklist_incomplete and notice.session_number == 3
    view = (await client.get(base, headers=auth)).json()
    assert view["phase"] == "initial" and view["review_notices"] == ["initial_checklist_incomplete"]
    assert D.INITIAL_WINDOW not in {t["kind"] for t in (await client.get(f"{base}/timers", headers=auth)).json()["timers"]}


@pytest.mark.parametrize("minutes_after_grace", [-1, 1])
async def test_checklist_recorded_around_the_end_of_the_grace(h, client, minutes_after_grace):
    """Issue 15 item 7: a checklist recorded within the grace after session i sends no review
    notice; one recorded after it comes after the notice."""
    ik, course = await plan(h, clinician_id=clinician())
    base, auth = f"/v1/courses/{course.course_id}", bearer(course.clinician_id, "clinician")
    for k in (1, 2, 3):
        cur = course.live_at(k)
        h.clock.set(cur.ends_at)
        assert (await client.post(f"{base}/sessions/{cur.session_id}/attend", headers=auth)).status_code == 200
    due = h.settings.notice_grace().due(course.live_at(3).ends_at)
    async with h.pool.acquire() as conn:  # other tests' courses share this schema
        await conn.execute("UPDATE timers SET cancelled_at = now() WHERE key <> $1 AND fired_at IS NULL",
                           f"course:{course.course_id}")
    runner = TimerRunner(h.pool, h.outbox, h.clock, h.schema, handlers.handlers.timer_handlers,
                         make_uow=h.uow.make_uow)
    h.clock.set(course.live_at(3).ends_at + timedelta(minutes=1))  # a minute after session i
    assert await runner.fire_due() == 0
    h.clock.set(due + timedelta(minutes=minutes_after_grace))
    await runner.fire_due()
    for item in ("diagnosis", "sick_role_explained", "inventory_complete", "formulation_agreed", "contract_set",
                 "focus_confirmed"):
        assert (await client.put(f"{base}/checklist/{item}", headers=auth, json={})).status_code == 200
    h.clock.set(due + timedelta(days=1))
    await runner.fire_due()
    notices = [e for e in await h.events(ik.episode_id) if isinstance(e, CourseReviewNeededV1)]
    if minutes_after_grace < 0:
        assert notices == []
    else:
        assert [(n.reason, n.session_number) for n in notices] == [(ReviewReason.initial_checklist_incomplete, 3)]
    view = (await client.get(base, headers=auth)).json()
    assert view["phase"] == "middle"


async def test_maintenance_after_remission_reported_by_outcomes(h, client):
    ik, course = await plan(h, clinician_id=clinician(), template_id="ipt-brief")
    base = f"/v1/courses/{course.course_id}"
    auth = bearer(course.clinician_id, "clinician")  # the course's own clinician
    for item in ("diagnosis", "sick_role_explained", "inventory_complete", "formulation_agreed", "focus_confirmed", "contract_set"):
        await client.put(f"{base}/checklist/{item}", headers=auth, json={})
    for _ in range(8):
        cur = (await client.get(base, headers=auth)).json()["current_session"]
        h.clock.set(datetime.fromisoformat(cur["ends_at"]))
        assert (await client.post(f"{base}/sessions/{cur['session_id']}/attend", headers=auth)).status_code == 200
    r = await client.post(f"{base}/maintenance", headers=auth, json={"sessions": 4})
    assert r.status_code == 409 and r.json()["rule"] == "maintenance_needs_remission" and r.json()["phase"] == "completed"
    async with h.uow() as uow:
        await handlers.record_outcome(OutcomeEvaluatedV1(episode_id=ik.episode_id, course_id=course.course_id,
                                                         finished_course=True, remission=True, evaluated_at=h.clock.now()),
                                      uow)
    r = await client.post(f"{base}/maintenance", headers=auth, json={"sessions": 4})
    assert r.status_code == 200 and r.json()["course"]["phase"] == "maintenance"
    assert r.json()["events"][:2] == ["rapport.course.phase_changed.v1", "rapport.course.contract_changed.v1"]
    kinds = [s["kind"] for s in r.json()["course"]["sessions"] if s["number"] > 8]
    assert kinds == ["maintenance"] * 4


async def test_an_evaluation_read_before_its_course_is_applied_when_the_course_is_planned(h):
    """A replay reads rapport.outcomes and rapport.intake in no set order across topics; the result
    must not depend on it. Course ids derive from the episode, so the evaluation names the course
    the replay will plan."""
    ik = intake_completed(completed_at=h.clock.now(), clinician_id=clinician())
    course_id = handlers.planned_ids(ik.episode_id)()
    async with h.uow() as uow:
        await handlers.record_outcome(OutcomeEvaluatedV1(episode_id=ik.episode_id, course_id=course_id,
                                                         finished_course=True, remission=True,
                                                         evaluated_at=h.clock.now()), uow)
    assert await h.val("SELECT count(*) FROM early_outcomes WHERE episode_id = $1", ik.episode_id) == 1
    async with h.uow() as uow:
        await handlers.plan_course(ik, uow)
    async with h.uow() as uow:
        course = await uow.courses.get_by_episode(ik.episode_id)
    assert course.course_id == course_id and course.remission is True
    assert await h.val("SELECT count(*) FROM early_outcomes WHERE episode_id = $1", ik.episode_id) == 0
