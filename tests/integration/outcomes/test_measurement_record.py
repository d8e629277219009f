"""Issue 15 item 1 against real Postgres: which instruments the measurement schedule (domain.md
3.4) expected of an episode's attended sessions and which are missing — from the sessions kept
from rapport.course and the stored submissions — in the evaluation event (outbox), the outcome
and scores views and the cohort report over HTTP."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from rapport_shared.contracts.course import CourseEndedV1, CoursePlannedV1, SessionAttendedV1, SessionMissedV1

pytestmark = pytest.mark.integration

AUDIT_12 = {1: 2, 2: 2, 3: 2, 4: 1, 5: 1, 6: 1, 7: 1, 8: 0, 9: 2, 10: 0}
WSAS_20 = {1: 4, 2: 4, 3: 4, 4: 4, 5: 4}


def now() -> datetime:
    return datetime.now(timezone.utc)


async def deliver(outcomes, data) -> None:
    assert (await outcomes.deliver(data))[0].status == "processed"


async def test_a_substance_use_course_names_the_missing_gad7_and_counts_the_intakes_audit(outcomes, h):
    data = h.intake_event(baseline={"phq9": h.PHQ9_18, "gad7": h.GAD7_12, "audit": AUDIT_12},
                          target_condition="substance_use", template_id="ipt-brief",
                          referred_at=now() - timedelta(days=30))
    await deliver(outcomes, data)
    course_id, first = uuid.uuid4(), now() - timedelta(days=25)
    sessions = [{"session_id": uuid.uuid4(), "number": n, "starts_at": first + timedelta(days=5 * (n - 1)),
                 "duration_minutes": 50} for n in range(1, 5)]
    common = dict(episode_id=data.episode_id, course_id=course_id)
    await deliver(outcomes, CoursePlannedV1(
        **common, person_id=data.person_id, template_id="ipt-brief", clinician_id=data.clinician_id,
        contracted_sessions=4, sessions=sessions, first_session_at=first, planned_end_at=first + timedelta(days=20),
        planned_at=first - timedelta(days=1),
        phase_plan=[{"phase": "initial", "first_session": 1, "last_session": 1},
                    {"phase": "middle", "first_session": 2, "last_session": 3},
                    {"phase": "termination", "first_session": 4, "last_session": 4}]))
    given = {1: ("phq9", "gad7", "wsas"), 2: ("phq9", "wsas"), 4: ("phq9", "gad7", "wsas", "audit")}  # no GAD-7 at 2
    answers = {"phq9": h.phq9(12), "gad7": h.gad7(9), "wsas": WSAS_20, "audit": AUDIT_12}
    clinician = outcomes.auth(data.clinician_id, "clinician")
    attended = 0
    for s in sessions:
        n, at = s["number"], s["starts_at"]
        if n == 3:  # missed: nothing is expected of it
            await deliver(outcomes, SessionMissedV1(**common, session_id=s["session_id"], number=3,
                                                    consecutive_missed=1, missed_at=at + timedelta(hours=1)))
            continue
        for code in given[n]:
            # AUDIT at the end given as "end" with no session number: it still fills session 4's end.
            where = {"timepoint": "end"} if code == "audit" else {"session_number": n}
            r = await outcomes.client.post(
                f"/v1/episodes/{data.episode_id}/submissions", headers=outcomes.auth(data.person_id, "patient_app"),
                json={"client_submission_id": f"k-{uuid.uuid4().hex}", "instrument": code,
                      "answers": {str(k): v for k, v in answers[code].items()},
                      "administered_at": (at - timedelta(hours=2)).isoformat(), **where})
            assert r.status_code == 201, r.text
        attended += 1
        await deliver(outcomes, SessionAttendedV1(**common, session_id=s["session_id"], number=n,
                                                  attended_sessions=attended, contracted_sessions=4,
                                                  phase="initial" if n == 1 else "middle", attended_at=at))
        if n == 2:  # mid-course, the scores view already names the gap
            r = await outcomes.client.get(f"/v1/episodes/{data.episode_id}/scores", headers=clinician)
            live = r.json()["measurement"]
            assert (live["sessions"], live["missing"]) == ([1, 2], ["gad7"])
            assert live["instruments"]["audit"] == {"expected": 1, "received": 1, "missing_sessions": []}
    await deliver(outcomes, CourseEndedV1(**common, template_id="ipt-brief", clinician_id=data.clinician_id,
                                          reason="completed", final_phase="completed", attended_sessions=3,
                                          contracted_sessions=4, ended_at=now()))

    expected = {"contracted_sessions": 4, "sessions": [1, 2, 4], "missing": ["gad7"], "instruments": {
        "phq9": {"expected": 3, "received": 3, "missing_sessions": []},
        "gad7": {"expected": 3, "received": 2, "missing_sessions": [2]},
        "wsas": {"expected": 3, "received": 3, "missing_sessions": []},  # 1, mid = 2, end = 4
        "audit": {"expected": 2, "received": 2, "missing_sessions": []}}}  # intake's baseline + the end
    [ev] = await outcomes.events(data.episode_id, "rapport.outcome.evaluated.v1")
    assert ev["measurement"] == expected
    assert ev["condition_measures"]["audit"]["reliable_change_criterion"] == "none"

    r = await outcomes.client.get(f"/v1/episodes/{data.episode_id}/outcome", headers=clinician)
    assert r.status_code == 200, r.text
    assert r.json()["measurement"] == expected

    r = await outcomes.client.get("/v1/reports/cohort", headers=clinician,
                                  params={"group_by": "clinician", "clinician_id": data.clinician_id})
    assert r.status_code == 200, r.text
    assert r.json()["total"]["measurement"] == {"episodes": 1, "instruments": {
        "audit": {"expected": 2, "received": 2, "missing": 0, "episodes_missing": 0, "rate": 1.0},
        "gad7": {"expected": 3, "received": 2, "missing": 1, "episodes_missing": 1, "rate": 0.6667},
        "phq9": {"expected": 3, "received": 3, "missing": 0, "episodes_missing": 0, "rate": 1.0},
        "wsas": {"expected": 3, "received": 3, "missing": 0, "episodes_missing": 0, "rate": 1.0}}}
