"""The scheduler's handlers with a fake unit of work (no Postgres, no Kafka): an intake plans a
course, sessions are attended, missed and moved, phases change with their events, a refused
command changes nothing, timers fire once, and the calendar configuration applies to bookings."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import date, timedelta

import pytest

from rapport_shared.consumer import PoisonEvent
from rapport_shared.contracts import Phase
from rapport_shared.contracts.course import (
    CancelledBy,
    ChecklistItem,
    CourseEndedV1,
    CoursePlannedV1,
    CourseReviewNeededV1,
    PhaseChangedV1,
    PhaseChangeReason,
    ReviewReason,
    SessionAttendedV1,
    SessionMissedV1,
    SessionRescheduledV1,
    SessionScheduledV1,
)
from rapport_shared.contracts.outcomes import OutcomeEvaluatedV1
from rapport_shared.hours import WorkingHours
from rapport_shared.http.errors import error_body, status_for
from rapport_scheduler.domain import commands
from rapport_scheduler.domain import decider as D
from rapport_scheduler.domain.course import SessionStatus
from rapport_scheduler.domain.errors import InvalidInput, RuleViolation, UnknownEntity
from rapport_scheduler.service_layer import handlers
from rapport_testing.scheduler import intake_completed

from .fakes import FakeBus

pytestmark = pytest.mark.unit
CLINICIAN = "clin-1"


async def planned(bus: FakeBus, **kw):
    ik = intake_completed(completed_at=bus.clock.now(), clinician_id=CLINICIAN, **kw)
    await bus.handle(ik)
    course = next(c for c in bus.db.courses.values() if c.episode_id == ik.episode_id)
    return ik, course


async def attend(bus: FakeBus, course_id, number: int):
    """Attend the session at ``number`` once it has ended."""
    s = bus.db.courses[course_id].live_at(number)
    bus.clock.set(s.ends_at)
    return await bus.handle(commands.AttendSession(course_id, CLINICIAN, s.session_id))


def of_type(events, model):
    return [e for e in events if isinstance(e, model)]


def snapshot(bus: FakeBus):
    return (dict(bus.db.courses), dict(bus.db.timers), len(bus.emitted))


async def test_intake_completed_plans_a_course_with_its_sessions_once_per_episode():
    bus = FakeBus()
    ik, course = await planned(bus)
    assert [type(e) for e in bus.emitted] == [CoursePlannedV1] + [SessionScheduledV1] * 16
    assert all(e.organisation_id == "org-test" for e in bus.emitted)  # the episode's organisation on every event
    assert course.phase == Phase.initial and course.contracted == 16
    assert [s.number for s in course.live_sessions()] == list(range(1, 17))
    first = course.live_at(1).starts_at
    assert first >= ik.completed_at + timedelta(days=bus.settings.first_session_lead_days)
    assert bus.db.locked == [CLINICIAN]  # booked under the clinician's lock
    # The next session's outcome is watched from the start.
    assert [t.kind for t in await bus.unit().timers.pending(course.course_id)] == [D.OUTCOME_OVERDUE]
    # The same intake again (a new event id): still one course, nothing emitted.
    assert await bus.handle(ik) is None
    assert len(bus.db.courses) == 1 and len(bus.emitted) == 17


async def test_an_intake_that_can_never_be_planned_is_poison_and_writes_nothing():
    bus = FakeBus()
    with pytest.raises(PoisonEvent, match="template_id"):
        await bus.handle(intake_completed(completed_at=bus.clock.now(), template_id="no-such-template"))
    assert bus.db.courses == {} and bus.emitted == [] and bus.db.timers == {}


async def test_attend_miss_and_reschedule_move_the_calendar():
    bus = FakeBus()
    _, course = await planned(bus)
    cid = course.course_id
    d = await attend(bus, cid, 1)
    assert [type(e) for e in d.events] == [SessionAttendedV1] and d.course.attended == 1
    assert bus.db.courses[cid].attended == 1

    # Session 2 missed: it keeps its number, a replacement takes its date, the last one moves later.
    s2, last = bus.db.courses[cid].live_at(2), bus.db.courses[cid].live_at(16)
    bus.clock.set(s2.ends_at)
    d = await bus.handle(commands.MissSession(cid, CLINICIAN, s2.session_id))
    assert [type(e) for e in d.events][0] == SessionMissedV1
    after = bus.db.courses[cid]
    assert after.sessions[s2.session_id].status == SessionStatus.missed and after.consecutive_missed == 1
    assert [s.number for s in after.live_sessions()] == list(range(1, 17))  # the contract is unchanged
    assert after.live_at(2).starts_at == course.live_at(3).starts_at
    assert after.live_at(16).starts_at > last.starts_at

    # A scheduled session moved an hour later (still inside availability and working hours).
    target = after.live_at(5)
    to = target.starts_at + timedelta(hours=1)
    d = await bus.handle(commands.RescheduleSession(cid, CLINICIAN, target.session_id, to, "patient_request"))
    [moved] = d.events
    assert isinstance(moved, SessionRescheduledV1) and moved.starts_at == to
    assert bus.db.courses[cid].sessions[target.session_id].starts_at == to

    # Cancelled by the patient: the calendar moves as for a miss, the miss run is not reset.
    s6 = bus.db.courses[cid].live_at(6)
    await bus.handle(commands.CancelSession(cid, CLINICIAN, s6.session_id, CancelledBy.patient, "holiday"))
    assert bus.db.courses[cid].sessions[s6.session_id].status == SessionStatus.cancelled
    assert bus.db.courses[cid].consecutive_missed == 1


async def test_phase_transitions_emit_phase_events_in_order():
    bus = FakeBus()
    _, course = await planned(bus)
    cid = course.course_id
    await attend(bus, cid, 1)
    await attend(bus, cid, 2)
    for item in ChecklistItem:
        d = await bus.handle(commands.RecordChecklistItem(cid, CLINICIAN, item))
    assert [type(e) for e in d.events][-1] == PhaseChangedV1  # the last item completes the checklist
    assert bus.db.courses[cid].phase == Phase.middle
    for k in range(3, 17):
        await attend(bus, cid, k)
    changes = [(e.from_phase, e.to_phase, e.effective_from_session, e.reason)
               for e in of_type(bus.emitted, PhaseChangedV1)]
    assert changes == [
        (Phase.initial, Phase.middle, 3, PhaseChangeReason.checklist_complete),
        (Phase.middle, Phase.termination, 14, PhaseChangeReason.contract),
        (Phase.termination, Phase.completed, 17, PhaseChangeReason.last_session_attended),
    ]
    assert isinstance(bus.emitted[-1], CourseEndedV1) and bus.db.courses[cid].phase == Phase.completed
    assert {k for c, k in bus.db.timers if c == cid} == set()  # nothing left to watch

    # Maintenance needs remission reported by outcomes (a consumed event) first.
    with pytest.raises(RuleViolation) as refused:
        await bus.handle(commands.StartMaintenance(cid, CLINICIAN, 3, "remission_at_end"))
    assert refused.value.rule == "maintenance_needs_remission"
    await bus.handle(OutcomeEvaluatedV1(episode_id=course.episode_id, course_id=cid, finished_course=True,
                                        remission=True, evaluated_at=bus.clock.now()))
    d = await bus.handle(commands.StartMaintenance(cid, CLINICIAN, 3, "remission_at_end"))
    assert d.course.phase == Phase.maintenance and d.course.maintenance_contracted == 3


async def test_a_refused_command_changes_nothing_and_answers_in_the_shared_vocabulary():
    bus = FakeBus()
    _, course = await planned(bus)
    cid = course.course_id
    before = snapshot(bus)
    with pytest.raises(RuleViolation) as refused:
        await bus.handle(commands.StartMaintenance(cid, CLINICIAN, 3, "remission_at_end"))
    assert status_for(refused.value) == 409
    assert error_body(refused.value) == {
        "type": "urn:rapport:problem:illegal_transition", "title": "Conflict", "status": 409,
        "error": "illegal_transition", "detail": refused.value.message, "phase": "initial",
        "rule": "maintenance_after_completed"}
    assert "phase initial" in refused.value.message
    s1 = course.live_at(1)
    with pytest.raises(RuleViolation, match="can be recorded from its start"):  # not started yet
        await bus.handle(commands.AttendSession(cid, CLINICIAN, s1.session_id))
    with pytest.raises(InvalidInput) as bad:
        await bus.handle(commands.ChangeContract(cid, CLINICIAN, 20, "more"))
    assert status_for(bad.value) == 422 and error_body(bad.value)["error"] == "Invalid"
    assert bad.value.field == "contracted_sessions"
    with pytest.raises(UnknownEntity) as missing:
        await bus.handle(commands.Withdraw(uuid.uuid4(), CLINICIAN, PhaseChangeReason.withdrawal))
    assert status_for(missing.value) == 404 and error_body(missing.value)["error"] == "NotFound"
    assert error_body(missing.value)["field"] == "course_id"
    assert snapshot(bus) == before
    assert [u.committed for u in bus.units[1:]] == [False] * 4


async def test_a_refusal_after_an_earlier_write_rolls_the_whole_unit_back():
    bus = FakeBus()
    _, course = await planned(bus)
    before = snapshot(bus)

    async def half_done(uow):
        await uow.courses.save(replace(course, attended=5), before=course, now=uow.now())
        raise InvalidInput("no", field="x")

    with pytest.raises(InvalidInput):
        await bus.run(half_done)
    assert snapshot(bus) == before


async def test_the_initial_window_timer_fires_once_a_review_notice():
    bus = FakeBus()
    _, course = await planned(bus)
    cid = course.course_id
    for k in (1, 2, 3):
        await attend(bus, cid, k)
    grace = bus.settings.notice_grace()
    due = grace.due(course.live_at(3).ends_at)
    assert bus.db.timers[(cid, D.INITIAL_WINDOW)] == due
    assert await bus.fire_due() == 0  # not due yet
    bus.clock.set(due)
    assert await bus.fire_due() >= 1
    [notice] = of_type(bus.emitted, CourseReviewNeededV1)
    assert notice.reason == ReviewReason.initial_checklist_incomplete and notice.session_number == 3
    assert len(notice.missing_items) == len(ChecklistItem)
    assert (cid, D.INITIAL_WINDOW) not in bus.db.timers  # raised once: not armed again
    assert "initial_checklist_incomplete" in bus.db.courses[cid].notices
    bus.clock.set(due + timedelta(days=1))
    await bus.fire_due()
    assert len(of_type(bus.emitted, CourseReviewNeededV1)) == 1


async def test_a_timer_whose_course_moved_on_emits_nothing():
    bus = FakeBus()
    _, course = await planned(bus)
    cid = course.course_id
    due = bus.db.timers[(cid, D.OUTCOME_OVERDUE)]
    timer = (await bus.unit().timers.pending(cid))[0]
    await attend(bus, cid, 1)  # the outcome it watched is recorded
    bus.clock.set(due)
    n = len(bus.emitted)
    await bus.run(lambda uow: handlers.handlers.timer_handlers[D.OUTCOME_OVERDUE](uow, timer))
    assert len(bus.emitted) == n


async def test_an_evaluation_before_its_course_is_applied_when_the_course_is_planned():
    bus = FakeBus()
    ik = intake_completed(completed_at=bus.clock.now(), clinician_id=CLINICIAN)
    course_id = handlers.planned_ids(ik.episode_id)()
    await bus.handle(OutcomeEvaluatedV1(episode_id=ik.episode_id, course_id=course_id, finished_course=True,
                                        remission=True, evaluated_at=bus.clock.now()))
    assert set(bus.db.early_outcomes) == {ik.episode_id} and bus.db.courses == {}
    await bus.handle(ik)
    assert bus.db.courses[course_id].remission is True and bus.db.early_outcomes == {}


async def test_working_hours_and_closure_days_apply_to_bookings():
    bus = FakeBus()
    thursdays = WorkingHours.from_weekday_slots("Europe/London", [{"weekday": 4, "start": "15:00", "end": "17:00"}])
    hours = await bus.handle(commands.SetWorkingHours(CLINICIAN, thursdays, "adm-1"))
    assert hours.to_weekday_slots() == [{"weekday": 4, "start": "15:00", "end": "17:00"}]
    closed = date(2030, 1, 10)  # the first Thursday after the lead time
    await bus.handle(commands.AddClosureDay(closed, "training_day", "adm-1"))
    _, course = await planned(bus)
    local = [s.starts_at.astimezone(thursdays.tz) for s in course.live_sessions()]
    assert all(t.isoweekday() == 4 and t.hour >= 15 for t in local)
    assert all(t.date() != closed for t in local) and local[0].date() == date(2030, 1, 17)
    await bus.handle(commands.RemoveClosureDay(closed))
    with pytest.raises(UnknownEntity) as missing:
        await bus.handle(commands.RemoveClosureDay(closed))
    assert error_body(missing.value) == {"type": "urn:rapport:problem:NotFound", "title": "Not Found", "status": 404,
                                         "error": "NotFound", "detail": "2030-01-10 is not a closure day",
                                         "field": "day"}


# -- IPT-A's optional mid-phase parent session ---------------------------------------------------

async def in_middle_phase(bus: FakeBus, template_id: str = "ipt-a"):
    """A course of ``template_id`` with sessions 1–3 attended and the checklist complete: middle from 4."""
    _, course = await planned(bus, template_id=template_id)
    cid = course.course_id
    for k in (1, 2, 3):
        await attend(bus, cid, k)
    for item in ChecklistItem:
        await bus.handle(commands.RecordChecklistItem(cid, CLINICIAN, item))
    assert bus.db.courses[cid].phase == Phase.middle
    return cid


def tuesday_after(bus: FakeBus, cid, number: int):
    """09:00 on the Tuesday after session ``number`` (Thursdays 14:00; the patient is free Tuesdays 09–12)."""
    return bus.db.courses[cid].live_at(number).starts_at + timedelta(days=5) - timedelta(hours=5)


async def test_the_clinician_adds_ipt_as_optional_parent_session_in_the_middle_phase():
    bus = FakeBus()
    cid = await in_middle_phase(bus)
    to = tuesday_after(bus, cid, 5)
    d = await bus.handle(commands.AddParentSession(cid, CLINICIAN, to))
    [booked] = d.events
    assert isinstance(booked, SessionScheduledV1) and booked.optional_parent_session and booked.kind == "parent"
    assert booked.number == 5 and booked.starts_at == to
    assert bus.emitted[-1].organisation_id == "org-test"  # stamped like every event of the course
    saved = bus.db.courses[cid]
    assert list(saved.extra_sessions) == [booked.session_id] and saved.contracted == 12
    assert [s.number for s in saved.live_sessions()] == list(range(1, 13))  # the contract is as it was
    assert bus.db.locked[-1] == CLINICIAN  # booked under the clinician's lock, like every booking
    # It blocks the clinician's calendar for their other courses too.
    busy = await bus.unit().calendar.busy(CLINICIAN, since=bus.clock.now(), exclude_course=None)
    assert (to, to + timedelta(minutes=50)) in busy

    # Attended: not a contracted session (the count stays at 3 until session 4 is recorded).
    bus.clock.set(to + timedelta(minutes=50))
    d = await bus.handle(commands.AttendSession(cid, CLINICIAN, booked.session_id))
    [attended] = d.events
    assert attended.optional_parent_session and attended.attended_sessions == 3
    assert bus.db.courses[cid].attended == 3 and bus.db.courses[cid].current_session().number == 4


async def test_a_refused_parent_session_changes_nothing_and_names_the_rule():
    bus = FakeBus()
    cid = await in_middle_phase(bus, "ipt-standard")
    before = snapshot(bus)
    with pytest.raises(RuleViolation) as refused:
        await bus.handle(commands.AddParentSession(cid, CLINICIAN, tuesday_after(bus, cid, 4)))
    assert status_for(refused.value) == 409
    body = error_body(refused.value)
    assert (body["error"], body["phase"], body["rule"]) == (
        "illegal_transition", "middle", "optional_parent_session_in_template")
    assert snapshot(bus) == before

    bus = FakeBus()
    cid = await in_middle_phase(bus)
    before = snapshot(bus)
    with pytest.raises(InvalidInput) as bad:  # outside the middle phase's dates
        await bus.handle(commands.AddParentSession(cid, CLINICIAN, tuesday_after(bus, cid, 11)))
    assert status_for(bad.value) == 422 and error_body(bad.value)["field"] == "starts_at"
    assert snapshot(bus) == before
    await bus.handle(commands.AddParentSession(cid, CLINICIAN, tuesday_after(bus, cid, 4)))
    before = snapshot(bus)
    with pytest.raises(RuleViolation) as refused:  # one already exists
        await bus.handle(commands.AddParentSession(cid, CLINICIAN, tuesday_after(bus, cid, 6)))
    assert status_for(refused.value) == 409 and error_body(refused.value)["rule"] == "optional_parent_session_limit"
    assert snapshot(bus) == before
