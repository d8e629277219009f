"""Questionnaire requests follow the measurement schedule on a real Postgres (issue 15 item 1;
domain.md §3.4): the episode's target condition and contracted sessions are recorded from the
events (migration 0009), each request keeps what it asked for, the patient's message names the
instruments, and the delivery log lists them. A substance-use course: PHQ-9 (the risk screen) and
GAD-7 before every session, WSAS at baseline, mid and end, AUDIT at the end (its baseline was the
intake's)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from rapport_notifier.domain import rules
from rapport_shared.contracts.course import CourseContractChangedV1, CoursePlannedV1, PhaseSpan, PlannedSession
from rapport_shared.contracts.intake import IntakeCompletedV1

pytestmark = pytest.mark.integration

EVERY = ["phq9", "gad7"]


async def test_a_substance_use_course_is_asked_phq9_before_every_session_and_its_schedule(h, api):
    person = "P-qs-1"
    await h.exec("INSERT INTO patients (person_id, email, channel_consent, updated_at)"
                 " VALUES ($1, $2, '{\"email\": true}', now())", person, f"{person}@patients.test")
    t = h.clock.now()
    episode, n = uuid.uuid4(), 6
    starts = [t + timedelta(days=3 + 7 * k) for k in range(n)]
    sessions = [uuid.uuid4() for _ in starts]
    await h.handle(IntakeCompletedV1(
        episode_id=episode, person_id=person, target_condition="substance_use", template_id="ipt-brief",
        focus={"primary": "role_transition"}, clinician_id="c1",
        availability={"timezone": "Europe/London", "slots": [{"weekday": 2, "start": "09:00", "end": "12:00"}]},
        baseline_scores=[{"instrument": "audit", "answers": {1: 2}, "total": 12, "administered_at": t},
                         {"instrument": "phq9", "answers": {1: 1}, "total": 9, "administered_at": t}],
        referred_at=t - timedelta(days=2), completed_at=t - timedelta(days=1), organisation_id="org-test"),
        at=t - timedelta(days=1))
    planned = CoursePlannedV1(
        episode_id=episode, course_id=uuid.uuid4(), person_id=person, template_id="ipt-brief", clinician_id="c1",
        contracted_sessions=8, phase_plan=[PhaseSpan(phase="initial", first_session=1, last_session=8)],
        sessions=[PlannedSession(session_id=s, number=k + 1, starts_at=at, duration_minutes=50)
                  for k, (s, at) in enumerate(zip(sessions, starts))],
        first_session_at=starts[0], planned_end_at=starts[-1], planned_at=t)
    p = await h.handle(planned, at=t)
    # The contract becomes 6 sessions (mid 3, end 6); the older plan processed again changes nothing.
    changed = t + timedelta(minutes=5)
    await h.handle(CourseContractChangedV1(episode_id=episode, course_id=planned.course_id, previous_sessions=8,
                                           contracted_sessions=n, reason_code="shortened", changed_at=changed), at=changed)
    await h.handle(planned, event_id=p.id, at=p.time)
    row = await h.row("SELECT target_condition, contracted_sessions, instruments FROM episodes WHERE episode_id = $1",
                      episode)
    assert dict(row) == {"target_condition": "substance_use", "contracted_sessions": n, "instruments": ["audit", "phq9"]}

    for at in starts:
        h.clock.set(at - h.settings.questionnaire_lead)
        await h.fire_due()
    asked = {r["number"]: r["instruments"] for r in await h.fetch(
        "SELECT s.number, q.instruments FROM questionnaire_requests q JOIN sessions s USING (session_id)"
        " WHERE q.episode_id = $1", episode)}
    assert asked == {1: EVERY + ["wsas"], 2: EVERY, 3: EVERY + ["wsas"], 4: EVERY, 5: EVERY,
                     6: EVERY + ["wsas", "audit"]}

    # The patient's messages name them (the template's ${instruments}).
    sender = h.sender()
    for r in await sender.claim():
        await sender.deliver(r)
    bodies = [m.body for m in h.email.sent if m.address == f"{person}@patients.test"]
    assert len(bodies) == n and all("phq9, gad7" in b for b in bodies)
    assert sum("audit" in b for b in bodies) == 1

    # The delivery log lists what each request asked for.
    r = await api.call("admin-1", "admin", "GET", "/v1/deliveries",
                       params={"episode_id": str(episode), "kind": rules.QUESTIONNAIRE_REQUEST})
    assert r.status_code == 200, r.text
    logged = [d["instruments"] for d in r.json()["deliveries"]]
    assert sorted(logged, key=len) == sorted(asked.values(), key=len)
    assert all(codes[0] == "phq9" for codes in logged)
