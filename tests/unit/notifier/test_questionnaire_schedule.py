"""Questionnaire requests follow the measurement schedule (issue 15 item 1; domain.md §3.4), on a
fake unit of work: what each request before a session asks for comes from the episode's target
condition (``intake.completed``) and the session's place in the contracted course
(``course.planned``, then acute ``course.contract_changed``). PHQ-9 (the risk screen) and GAD-7
before every session of every programme, WSAS at baseline, mid-course (⌈n/2⌉) and the end,
EDE-Q every 4th session and at those time points, AUDIT at baseline and end only."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from pydantic import ValidationError

from rapport_notifier.domain import rules
from rapport_notifier.domain.questionnaires import request_instruments
from rapport_notifier.service_layer.handlers import T_QREMINDER
from rapport_shared.contracts.course import CourseContractChangedV1, CoursePlannedV1, PhaseSpan, PlannedSession
from rapport_shared.contracts.intake import IntakeCompletedV1
from rapport_shared.programmes import packaged_schedule

from .fakes import FakeNotifierUnitOfWork, settings

pytestmark = pytest.mark.unit

EVERY = ["phq9", "gad7"]


@pytest.fixture
def uow() -> FakeNotifierUnitOfWork:
    u = FakeNotifierUnitOfWork()
    u.patients.add("P-1", email="p1@patients.test", consent={"email": True})
    return u


def course(uow, n: int) -> CoursePlannedV1:
    """n weekly sessions, the first three days on."""
    t = uow.now()
    starts = [t + timedelta(days=3 + 7 * i) for i in range(n)]
    return CoursePlannedV1(
        episode_id=uuid.uuid4(), course_id=uuid.uuid4(), person_id="P-1", template_id="ipt-12", clinician_id="c1",
        contracted_sessions=n, phase_plan=[PhaseSpan(phase="initial", first_session=1, last_session=n)],
        sessions=[PlannedSession(session_id=uuid.uuid4(), number=k + 1, starts_at=s, duration_minutes=50)
                  for k, s in enumerate(starts)],
        first_session_at=starts[0], planned_end_at=starts[-1], planned_at=t)


def intake(c: CoursePlannedV1, condition: str, baseline: tuple[str, ...] = ()) -> IntakeCompletedV1:
    at = c.planned_at - timedelta(days=1)
    return IntakeCompletedV1(
        episode_id=c.episode_id, person_id=c.person_id, target_condition=condition, template_id=c.template_id,
        focus={"primary": "grief"}, clinician_id=c.clinician_id,
        availability={"timezone": "Europe/London", "slots": [{"weekday": 2, "start": "09:00", "end": "12:00"}]},
        baseline_scores=[{"instrument": code, "answers": {1: 0}, "total": 0, "administered_at": at} for code in baseline],
        referred_at=at, completed_at=at, organisation_id="org-a")


async def run_course(uow, c: CoursePlannedV1) -> dict[int, list[str]]:
    """Every session's questionnaire request (its time reached in order): session → instruments."""
    for s in c.sessions:
        await uow.advance_to(s.starts_at - uow.settings.questionnaire_lead)
    return requested(uow, c)


def requested(uow, c: CoursePlannedV1, kind: str = rules.QUESTIONNAIRE_REQUEST) -> dict[int, list[str]]:
    out = {}
    for row in uow.deliveries.of(kind, episode_id=c.episode_id):
        p = row["params"]
        assert p["instruments"] == ", ".join(p["instrument_codes"])  # what the template shows
        out[p["session_number"]] = p["instrument_codes"]
    return out


async def test_an_anxiety_course_asks_phq9_and_gad7_before_every_session_and_wsas_at_baseline_mid_and_end(uow):
    c = course(uow, 8)
    await uow.handle(intake(c, "anxiety", baseline=("gad7",)))
    await uow.handle(c)
    got = await run_course(uow, c)
    assert sorted(got) == list(range(1, 9))
    for k, codes in got.items():
        assert codes[:2] == EVERY, (k, codes)  # the risk screen first, before every session
    assert [k for k, codes in got.items() if "wsas" in codes] == [1, 4, 8]
    assert got[2] == EVERY and got[4] == EVERY + ["wsas"]


async def test_a_substance_use_course_gets_phq9_before_every_session_and_audit_at_the_end(uow):
    c = course(uow, 6)
    await uow.handle(intake(c, "substance_use", baseline=("audit",)))
    await uow.handle(c)
    got = await run_course(uow, c)
    assert all(codes[0] == "phq9" for codes in got.values()) and len(got) == 6
    # AUDIT's baseline is the intake's; the end asks it again; mid-course (session 3) only WSAS
    assert got == {1: EVERY + ["wsas"], 2: EVERY, 3: EVERY + ["wsas"], 4: EVERY, 5: EVERY,
                   6: EVERY + ["wsas", "audit"]}


async def test_a_baseline_instrument_the_intake_did_not_collect_is_asked_before_session_1(uow):
    c = course(uow, 6)
    await uow.handle(intake(c, "substance_use"))  # no baseline scores on the event
    await uow.handle(c)
    got = await run_course(uow, c)
    assert got[1] == EVERY + ["wsas", "audit"] and got[6] == EVERY + ["wsas", "audit"]
    assert [k for k, codes in got.items() if "audit" in codes] == [1, 6]


async def test_an_eating_disorder_course_gets_edeq_every_4th_session_and_at_baseline_mid_and_end(uow):
    c = course(uow, 12)
    await uow.handle(intake(c, "eating_disorder", baseline=("edeq6",)))
    await uow.handle(c)
    got = await run_course(uow, c)
    assert all(codes[:2] == EVERY for codes in got.values()) and len(got) == 12
    # 1: baseline, given at intake; 4, 8, 12: every 4th; 6: mid (⌈12/2⌉); 12: the end too
    assert [k for k, codes in got.items() if "edeq6" in codes] == [4, 6, 8, 12]
    assert [k for k, codes in got.items() if "wsas" in codes] == [1, 6, 12]
    assert got[12] == EVERY + ["wsas", "edeq6"] and got[5] == EVERY


async def test_a_depression_course_keeps_phq9_and_gad7_and_never_asks_the_patient_for_hamd(uow):
    c = course(uow, 4)
    await uow.handle(intake(c, "depression", baseline=("phq9", "gad7")))
    await uow.handle(c)
    got = await run_course(uow, c)
    assert got == {1: EVERY + ["wsas"], 2: EVERY + ["wsas"], 3: EVERY, 4: EVERY + ["wsas"]}
    assert not any("hamd17" in codes for codes in got.values())


async def test_the_reminder_asks_for_what_its_request_asked(uow):
    c = course(uow, 4)
    await uow.handle(intake(c, "eating_disorder"))
    await uow.handle(c)
    first = c.sessions[0]
    await uow.advance_to(first.starts_at - uow.settings.questionnaire_lead)
    assert uow.timers.due(T_QREMINDER, f"session:{first.session_id}")
    # the contract changes between the request and its reminder: the reminder still repeats the request
    await uow.handle(CourseContractChangedV1(episode_id=c.episode_id, course_id=c.course_id, previous_sessions=4,
                                             contracted_sessions=12, reason_code="extended", changed_at=uow.now()))
    await uow.advance(uow.settings.questionnaire_reminder_after)
    assert requested(uow, c, rules.QUESTIONNAIRE_REMINDER) == {1: EVERY + ["wsas", "edeq6"]}
    assert requested(uow, c) == {1: EVERY + ["wsas", "edeq6"]}
    assert uow.sessions.requests[first.session_id]["instruments"] == EVERY + ["wsas", "edeq6"]


async def test_an_acute_contract_change_moves_mid_course_and_the_end_a_maintenance_one_does_not(uow):
    c = course(uow, 12)
    await uow.handle(intake(c, "substance_use", baseline=("audit",)))
    await uow.handle(c)
    # 12 → 8 sessions (the events' times in order): mid is now session 4 and the end session 8
    await uow.handle(CourseContractChangedV1(episode_id=c.episode_id, course_id=c.course_id, previous_sessions=12,
                                             contracted_sessions=8, reason_code="shortened", changed_at=uow.now()),
                     at=uow.now() + timedelta(seconds=1))
    await uow.handle(CourseContractChangedV1(episode_id=c.episode_id, course_id=c.course_id, contract="maintenance",
                                             previous_sessions=0, contracted_sessions=4, reason_code="ipt_m",
                                             changed_at=uow.now()), at=uow.now() + timedelta(seconds=2))
    got = await run_course(uow, c)
    assert [k for k, codes in got.items() if "wsas" in codes] == [1, 4, 8]
    assert [k for k, codes in got.items() if "audit" in codes] == [8]
    assert got[12] == EVERY  # past the contracted course: what every session asks


async def test_an_older_contract_processed_again_does_not_put_its_count_back(uow):
    c = course(uow, 12)
    await uow.handle(intake(c, "anxiety"))
    planned = await uow.handle(c)
    later = planned.time + timedelta(hours=1)
    await uow.handle(CourseContractChangedV1(episode_id=c.episode_id, course_id=c.course_id, previous_sessions=12,
                                             contracted_sessions=16, reason_code="extended", changed_at=later), at=later)
    await uow.handle(c, at=planned.time, event_id=planned.id)  # course.planned again (n = 12, older)
    assert uow.episodes.rows[c.episode_id]["contracted_sessions"] == 16


async def test_without_a_known_target_condition_the_request_is_as_before(uow):
    c = course(uow, 2)
    await uow.handle(c)  # no intake.completed seen
    assert await run_course(uow, c) == {1: ["phq9"], 2: ["phq9"]}  # DEFAULT_INSTRUMENTS


async def test_the_condition_is_read_when_the_request_is_due_so_a_late_intake_still_counts(uow):
    c = course(uow, 2)
    await uow.handle(c)  # course.planned read before intake.completed (another topic)
    await uow.handle(intake(c, "substance_use", baseline=("audit",)))
    assert await run_course(uow, c) == {1: EVERY + ["wsas"], 2: EVERY + ["wsas", "audit"]}


def test_the_fallback_never_lacks_the_risk_screen():
    s = packaged_schedule()
    assert request_instruments(s, target_condition=None, session_number=1, contracted_sessions=None,
                               intake_instruments=None, default=["gad7"]) == ["phq9", "gad7"]
    assert request_instruments(s, target_condition=None, session_number=3, contracted_sessions=12,
                               intake_instruments=["gad7", "phq9"], default=["phq9"]) == ["phq9", "gad7"]
    for condition in ("depression", "anxiety", "eating_disorder", "substance_use"):
        for k in range(1, 22):
            got = request_instruments(s, target_condition=condition, session_number=k, contracted_sessions=20,
                                      intake_instruments=["phq9", "gad7", "edeq6", "audit", "wsas"], default=["phq9"])
            assert got[0] == "phq9", (condition, k)


async def test_a_clinic_override_adds_to_the_requests(tmp_path):
    f = tmp_path / "clinic.yaml"
    f.write_text("add:\n  anxiety:\n    - instrument: audit\n      every_nth_session: 2\n", encoding="utf-8")
    uow = FakeNotifierUnitOfWork(settings=settings(measurement_overrides=str(f)))
    uow.patients.add("P-1", email="p1@patients.test", consent={"email": True})
    c = course(uow, 4)
    await uow.handle(intake(c, "anxiety"))
    await uow.handle(c)
    got = await run_course(uow, c)
    assert got == {1: EVERY + ["wsas"], 2: EVERY + ["wsas", "audit"], 3: EVERY, 4: EVERY + ["wsas", "audit"]}


def test_an_override_that_removes_the_risk_screen_refuses_the_settings(tmp_path):
    f = tmp_path / "clinic.yaml"
    f.write_text("remove:\n  all: [phq9]\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="RAPPORT_MEASUREMENT_OVERRIDES refused.*risk screen"):
        settings(measurement_overrides=str(f))
    with pytest.raises(ValidationError, match="cannot read"):
        settings(measurement_overrides=str(tmp_path / "absent.yaml"))
