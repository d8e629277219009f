"""The scheduler's rules, scenario by scenario (pure: no database, no Kafka)."""

from datetime import datetime, timedelta, timezone
from uuid import uuid4

import pytest

from rapport_shared.contracts import Phase
from rapport_shared.contracts.course import (
    CancelledBy, ChecklistItem, CourseEndedV1, CourseReviewNeededV1, PhaseChangedV1, PhaseChangeReason, ReviewReason,
    SessionAttendedV1, SessionCancelledV1, SessionKind, SessionRescheduledV1, SessionScheduledV1,
)
from rapport_shared.contracts.intake import Focus
from rapport_shared.contracts.outcomes import OutcomeEvaluatedV1
from rapport_shared.hours import WorkingHours
from rapport_scheduler.domain import decider as D
from rapport_scheduler.domain.course import ALLOWED, SessionStatus, evolve, fold
from rapport_scheduler.domain.errors import InvalidInput, RuleViolation, SlotTaken, UnknownEntity
from rapport_testing.scheduler import intake_completed, rules_for

pytestmark = pytest.mark.unit


class Run:
    """A course driven through the decider, keeping every event (for replay checks)."""

    def __init__(self, template_id="ipt-standard", misses=3, grace=D.NoticeGrace(), **intake_kw):
        self.intake = intake_completed(template_id=template_id, **intake_kw)
        self.rules = rules_for(self.intake)
        self.misses = misses
        self.grace = grace
        self.now = self.intake.completed_at
        d = D.plan(self.intake, self.ctx())
        self.events = list(d.events)
        self.course = d.course

    def ctx(self):
        return D.Context(now=self.now, rules=self.rules, disengagement_misses=self.misses,
                         initial_notice_grace=self.grace)

    def do(self, fn, *args, **kw):
        d = fn(self.course, *args, self.ctx(), **kw)
        self.events += d.events
        self.course = d.course
        return d.events

    def at_current(self, end=True):
        cur = self.course.current_session()
        self.now = max(self.now, cur.ends_at if end else cur.starts_at)
        return cur

    def attend(self, end=True):
        return self.do(D.attend, self.at_current(end).session_id)

    def miss(self):
        return self.do(D.miss, self.at_current().session_id)

    def complete_checklist(self):
        out = []
        for item in ChecklistItem:
            out += self.do(D.record_checklist, item)
        return out

    def fire_due(self):
        out = []
        for kind, due in D.desired_timers(self.course, self.grace).items():
            if due is not None and due <= self.now:
                out += self.do(D.on_timer, kind)
        return out

    def phase_changes(self):
        return [(e.from_phase, e.to_phase, e.effective_from_session, e.reason) for e in self.events if isinstance(e, PhaseChangedV1)]

    def replayed(self):
        return fold(self.events)


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def test_planning_books_the_contract_weekly_inside_availability():
    r = Run()
    c = r.course
    assert c.phase == Phase.initial and c.contracted == 16
    assert [type(e).__name__ for e in r.events] == ["CoursePlannedV1"] + ["SessionScheduledV1"] * 16
    starts = [s.starts_at for s in c.ordered_sessions()]
    assert starts[0] >= r.intake.completed_at + timedelta(days=2)
    assert all(b - a == timedelta(days=7) for a, b in zip(starts, starts[1:]))
    assert all(r.rules.refusal(s, 50) is None for s in starts)
    assert r.events[0].planned_end_at == starts[-1] + timedelta(minutes=50)


def test_ipt_a_plans_parent_sessions_first_and_last():
    r = Run("ipt-a")
    kinds = [s.kind for s in r.course.ordered_sessions()]
    assert len(kinds) == 12 and kinds[0] == kinds[-1] == SessionKind.parent


def test_planning_refuses_unknown_template_and_no_availability():
    ik = intake_completed(template_id="ipt-x")
    with pytest.raises(InvalidInput) as e:
        D.plan(ik, D.Context(now=ik.completed_at, rules=rules_for(ik)))
    assert e.value.field == "template_id"
    ik = intake_completed(slots=[{"weekday": 7, "start": "09:00", "end": "12:00"}])  # Sundays only
    rules = rules_for(ik, clinician=WorkingHours.from_weekday_slots("Europe/London", [{"weekday": 1, "start": "09:00", "end": "17:00"}]))
    with pytest.raises(InvalidInput) as e:
        D.plan(ik, D.Context(now=ik.completed_at, rules=rules))
    assert e.value.field == "availability"


def test_standard_course_moves_through_its_phases_and_ends():
    r = Run()
    r.attend()
    r.attend(end=False)  # the checklist is completed during session 2 ...
    r.complete_checklist()
    assert r.phase_changes() == [(Phase.initial, Phase.middle, 3, PhaseChangeReason.checklist_complete)]
    for _ in range(14):
        r.attend()
    attended = of(r.events, SessionAttendedV1)
    assert [e.phase for e in attended[:3]] == [Phase.initial, Phase.initial, Phase.middle]  # ... effective from session 3
    assert attended[13].phase == Phase.termination and attended[12].phase == Phase.middle
    assert r.phase_changes() == [
        (Phase.initial, Phase.middle, 3, PhaseChangeReason.checklist_complete),
        (Phase.middle, Phase.termination, 14, PhaseChangeReason.contract),
        (Phase.termination, Phase.completed, 17, PhaseChangeReason.last_session_attended),
    ]
    [ended] = of(r.events, CourseEndedV1)
    assert (ended.reason, ended.final_phase, ended.attended_sessions) == ("completed", Phase.termination, 16)
    assert r.events[-1] is ended
    assert r.replayed() == r.course
    assert D.desired_timers(r.course) == dict.fromkeys(D.TIMER_KINDS)


def test_checklist_completed_at_session_two_starts_middle_at_three():
    r = Run()
    r.attend()
    r.attend()
    r.complete_checklist()
    assert r.phase_changes()[0][2] == 3


def test_incomplete_checklist_at_end_of_initial_window_raises_one_review_notice_by_timer():
    r = Run()
    for _ in range(2):
        r.attend()
    r.attend(end=False)  # session 3 (= i) recorded attended while it runs
    s3 = r.course.live_at(3)
    assert D.desired_timers(r.course)[D.INITIAL_WINDOW] == s3.ends_at
    assert r.fire_due() == []  # not before the window ends
    r.now = s3.ends_at
    [notice] = r.fire_due()
    assert isinstance(notice, CourseReviewNeededV1) and notice.reason == ReviewReason.initial_checklist_incomplete
    assert notice.session_number == 3 and len(notice.missing_items) == 6
    assert r.course.phase == Phase.initial  # stays initial
    assert D.desired_timers(r.course)[D.INITIAL_WINDOW] is None and r.fire_due() == []
    assert r.replayed() == r.course


def test_checklist_completed_before_window_end_cancels_the_notice():
    r = Run()
    for _ in range(3):
        r.attend(end=False)
    r.complete_checklist()
    r.now = r.course.live_at(3).ends_at
    assert r.fire_due() == []
    assert r.phase_changes() == [(Phase.initial, Phase.middle, 4, PhaseChangeReason.checklist_complete)]


END_OF_DAY = D.NoticeGrace(end_of_day=True, timezone="Europe/London")


def _through_initial_window(r):
    """Sessions 1..i attended (each recorded at its end); returns session i."""
    for _ in range(r.course.template.initial):
        r.attend()
    return r.course.live_at(r.course.template.initial)


@pytest.mark.parametrize("grace", [
    END_OF_DAY,  # until local midnight of the day session i ended
    D.NoticeGrace(after=timedelta(hours=2)),  # a duration after its end
])
def test_checklist_recorded_within_the_grace_sends_no_notice(grace):
    r = Run(grace=grace)
    s3 = _through_initial_window(r)
    due = D.desired_timers(r.course, grace)[D.INITIAL_WINDOW]
    assert due == grace.due(s3.ends_at) and due > s3.ends_at
    r.now = s3.ends_at + timedelta(minutes=1)  # a minute after session i: the issue's case
    assert r.fire_due() == []
    r.now = due - timedelta(seconds=1)  # the last moment of the grace
    r.complete_checklist()
    assert D.desired_timers(r.course, grace)[D.INITIAL_WINDOW] is None
    r.now = due + timedelta(days=1)
    assert r.fire_due() == [] and of(r.events, CourseReviewNeededV1) == []
    assert r.phase_changes() == [(Phase.initial, Phase.middle, 4, PhaseChangeReason.checklist_complete)]


@pytest.mark.parametrize("grace", [END_OF_DAY, D.NoticeGrace(after=timedelta(hours=2))])
def test_checklist_still_incomplete_when_the_grace_ends_sends_the_notice(grace):
    r = Run(grace=grace)
    s3 = _through_initial_window(r)
    due = grace.due(s3.ends_at)
    r.now = due - timedelta(seconds=1)
    assert r.fire_due() == []  # not a second early
    r.now = due
    [notice] = r.fire_due()
    assert notice.reason == ReviewReason.initial_checklist_incomplete and notice.session_number == 3
    r.complete_checklist()  # recorded after the grace: the notice has gone; the course still moves on
    assert len(of(r.events, CourseReviewNeededV1)) == 1
    assert r.phase_changes() == [(Phase.initial, Phase.middle, 4, PhaseChangeReason.checklist_complete)]


def test_no_grace_is_the_end_of_session_i():
    r = Run()
    s3 = _through_initial_window(r)
    assert D.desired_timers(r.course)[D.INITIAL_WINDOW] == s3.ends_at


@pytest.mark.parametrize(("session_end", "due"), [
    # winter (GMT): local midnight is 00:00 UTC
    (datetime(2030, 1, 8, 10, 50, tzinfo=timezone.utc), datetime(2030, 1, 9, 0, 0, tzinfo=timezone.utc)),
    # summer (BST): local midnight is 23:00 UTC the same UTC day
    (datetime(2030, 6, 4, 16, 50, tzinfo=timezone.utc), datetime(2030, 6, 4, 23, 0, tzinfo=timezone.utc)),
    # 23:30 UTC in summer is already 00:30 local on the next day: that day's end
    (datetime(2030, 6, 4, 23, 30, tzinfo=timezone.utc), datetime(2030, 6, 5, 23, 0, tzinfo=timezone.utc)),
    # the day the clocks go forward (2030-03-31): a 23-hour day, midnight after it is BST
    (datetime(2030, 3, 31, 10, 50, tzinfo=timezone.utc), datetime(2030, 3, 31, 23, 0, tzinfo=timezone.utc)),
    # the day the clocks go back (2030-10-27): midnight after it is GMT
    (datetime(2030, 10, 27, 10, 50, tzinfo=timezone.utc), datetime(2030, 10, 28, 0, 0, tzinfo=timezone.utc)),
])
def test_end_of_day_grace_is_local_midnight_in_the_clinic_time_zone(session_end, due):
    assert END_OF_DAY.due(session_end) == due


def test_contract_runs_out_before_checklist_completes_termination_anyway_with_notice():
    r = Run("ipt-brief")  # n = 8, t = 2
    for _ in range(6):
        r.attend()
    assert r.phase_changes() == [(Phase.initial, Phase.termination, 7, PhaseChangeReason.contract)]
    notices = of(r.events, CourseReviewNeededV1)
    assert [n.reason for n in notices][-1] == ReviewReason.termination_with_incomplete_checklist
    r.complete_checklist()  # late completion: no move back, no middle
    assert r.course.phase == Phase.termination and len(r.phase_changes()) == 1


def test_disengagement_after_configured_consecutive_misses_ends_early():
    r = Run(misses=3)
    r.attend()
    r.miss(); r.miss()
    r.attend()  # an attendance resets the run
    r.miss(); r.miss()
    assert r.course.phase == Phase.initial
    events = r.miss()
    assert r.course.phase == Phase.ended_early
    assert r.phase_changes()[-1] == (Phase.initial, Phase.ended_early, 3, PhaseChangeReason.disengagement)
    cancelled = of(events, SessionCancelledV1)
    assert len(cancelled) == 13 and all(  # positions 4..16
        c.cancelled_by == CancelledBy.clinic for c in cancelled)
    assert of(events, CourseEndedV1)[0].reason == "disengagement" and isinstance(events[-1], CourseEndedV1)
    assert not r.course.scheduled()
    assert r.replayed() == r.course


def test_disengagement_threshold_is_configurable():
    r = Run(misses=2)
    r.miss()
    r.miss()
    assert r.course.phase == Phase.ended_early


def test_missed_session_moves_the_calendar_not_the_contract():
    r = Run()
    before = {s.number: s for s in r.course.live_sessions()}
    cur = r.at_current()
    events = r.miss()
    after = {s.number: s for s in r.course.live_sessions()}
    assert sorted(after) == list(range(1, 17))  # still 16 positions
    assert after[1].session_id != cur.session_id and after[1].starts_at == before[2].starts_at
    for k in range(2, 16):
        assert after[k].session_id == before[k].session_id and after[k].starts_at == before[k + 1].starts_at
    assert after[16].starts_at == before[16].starts_at + timedelta(days=7)  # the end date moved a week
    assert len(of(events, SessionRescheduledV1)) == 15 and len(of(events, SessionScheduledV1)) == 1
    assert r.course.sessions[cur.session_id].status == SessionStatus.missed
    assert r.replayed() == r.course


def test_cancel_by_patient_or_clinic_moves_the_calendar_and_does_not_count_as_a_miss():
    r = Run(misses=2)
    r.miss()
    target = r.course.live_at(5)
    r.do(D.cancel, target.session_id, CancelledBy.clinic, "clinician_unwell")
    r.do(D.cancel, r.course.live_at(6).session_id, CancelledBy.patient, "patient_request")
    assert r.course.consecutive_missed == 1 and r.course.phase == Phase.initial
    assert sorted(s.number for s in r.course.live_sessions()) == list(range(1, 17))
    with pytest.raises(RuleViolation) as e:  # cancelling twice
        r.do(D.cancel, target.session_id, CancelledBy.clinic, "x")
    assert e.value.rule == "cancel_scheduled_only"


def test_recording_refusals_name_the_rule_and_change_nothing():
    r = Run()
    cur = r.course.current_session()
    with pytest.raises(UnknownEntity) as e:
        r.do(D.attend, uuid4())
    assert e.value.field == "session_id"
    with pytest.raises(RuleViolation) as e:
        r.do(D.attend, cur.session_id)  # before it starts
    assert e.value.rule == "record_after_start"
    r.now = cur.ends_at
    with pytest.raises(RuleViolation) as e:
        r.do(D.attend, next(s.session_id for s in r.course.sessions.values() if s.number == 2))
    assert e.value.rule == "record_in_order"
    future = r.course.live_at(4)
    r.do(D.cancel, future.session_id, CancelledBy.patient, "holiday")
    snapshot = r.course
    with pytest.raises(RuleViolation) as e:
        r.do(D.attend, future.session_id)
    assert e.value.rule == "cancelled_not_recordable" and "initial" in e.value.message
    assert r.course == snapshot


def test_reschedule_rules():
    r = Run()
    s2 = r.course.live_at(2)
    s3 = r.course.live_at(3)
    with pytest.raises(InvalidInput) as e:
        r.do(D.reschedule, s2.session_id, r.now - timedelta(days=1), "x")
    assert e.value.field == "starts_at" and "past" in e.value.message
    with pytest.raises(InvalidInput) as e:  # a Wednesday: outside the patient's availability
        r.do(D.reschedule, s2.session_id, s2.starts_at + timedelta(days=-1), "x")
    assert "availability" in e.value.message
    with pytest.raises(InvalidInput) as e:  # past the next session
        r.do(D.reschedule, s2.session_id, s3.starts_at, "x")
    assert "session 3" in e.value.message
    busy_rules = rules_for(r.intake, busy=[(s2.starts_at + timedelta(hours=1), s2.starts_at + timedelta(hours=2))])
    r.rules = busy_rules
    with pytest.raises(SlotTaken):
        r.do(D.reschedule, s2.session_id, s2.starts_at + timedelta(hours=1), "x")
    [moved] = r.do(D.reschedule, s2.session_id, s2.starts_at + timedelta(hours=2), "patient_request")
    assert moved.previous_starts_at == s2.starts_at and r.course.live_at(2).starts_at == moved.starts_at
    r.now = r.course.live_at(1).starts_at
    with pytest.raises(RuleViolation) as e:  # session 1 has started
        r.do(D.reschedule, r.course.live_at(1).session_id, r.course.live_at(1).starts_at + timedelta(hours=1), "x")
    assert e.value.rule == "reschedule_before_start"


def test_contract_change_within_bounds_with_reason():
    r = Run()  # ipt-standard: 12..16
    with pytest.raises(InvalidInput) as e:
        r.do(D.change_contract, 20, "x")
    assert e.value.field == "contracted_sessions" and "12-16" in e.value.message
    events = r.do(D.change_contract, 12, "faster_progress")
    assert r.course.contracted == 12 and len(of(events, SessionCancelledV1)) == 4
    assert sorted(s.number for s in r.course.live_sessions()) == list(range(1, 13))
    events = r.do(D.change_contract, 14, "needs_more_time")
    assert len(of(events, SessionScheduledV1)) == 2 and sorted(s.number for s in r.course.live_sessions()) == list(range(1, 15))
    assert r.replayed() == r.course


def test_contract_change_that_leaves_exactly_the_termination_starts_it_and_too_few_is_refused():
    r = Run()
    r.complete_checklist()
    for _ in range(9):
        r.attend()
    with pytest.raises(InvalidInput):
        r.do(D.change_contract, 11, "x")  # below the template minimum anyway
    r2 = Run("ipt-ed")  # 15..20, t = 4
    r2.complete_checklist()
    for _ in range(12):
        r2.attend()
    with pytest.raises(InvalidInput) as e:
        r2.do(D.change_contract, 15, "x")  # 12 attended + 4 > 15
    assert "at least 16" in e.value.message
    events = r2.do(D.change_contract, 16, "x")
    assert r2.phase_changes()[-1] == (Phase.middle, Phase.termination, 13, PhaseChangeReason.contract)
    assert of(events, PhaseChangedV1)[0].sessions_remaining == 4
    with pytest.raises(RuleViolation) as e:
        r2.do(D.change_contract, 18, "x")
    assert e.value.phase == "termination" and e.value.rule == "contract_change_before_termination"


def test_withdrawal_and_referral_on_end_early_once():
    r = Run()
    r.complete_checklist()
    r.attend()
    events = r.do(D.withdraw, PhaseChangeReason.withdrawal)
    assert r.phase_changes()[-1] == (Phase.middle, Phase.ended_early, 2, PhaseChangeReason.withdrawal)
    assert all(c.cancelled_by == CancelledBy.patient for c in of(events, SessionCancelledV1))
    with pytest.raises(RuleViolation) as e:
        r.do(D.withdraw, PhaseChangeReason.withdrawal)
    assert e.value.phase == "ended_early" and "active phase" in e.value.message
    with pytest.raises(RuleViolation) as e:
        r.do(D.attend, next(s.session_id for s in r.course.sessions.values() if s.number == 2))
    assert e.value.rule == "record_only_with_sessions"
    r2 = Run()
    r2.do(D.withdraw, PhaseChangeReason.referral_on)
    assert of(r2.events, CourseEndedV1)[0].reason == "referral_on"


def finished(template_id="ipt-brief"):
    r = Run(template_id)
    r.complete_checklist()
    while r.course.phase != Phase.completed:
        r.attend()
    return r


def evaluated(r, remission):
    ev = OutcomeEvaluatedV1(episode_id=r.course.episode_id, course_id=r.course.course_id, finished_course=True,
                            remission=remission, evaluated_at=r.now)
    r.events.append(ev)
    r.course = evolve(r.course, ev)


def test_maintenance_only_after_completion_in_remission():
    r = Run()
    with pytest.raises(RuleViolation) as e:
        r.do(D.start_maintenance, 6, "remission_at_end")
    assert e.value.rule == "maintenance_after_completed"
    r = finished()
    with pytest.raises(RuleViolation) as e:
        r.do(D.start_maintenance, 6, "remission_at_end")
    assert e.value.rule == "maintenance_needs_remission" and "no rapport.outcome.evaluated.v1" in e.value.message
    evaluated(r, False)
    with pytest.raises(RuleViolation):
        r.do(D.start_maintenance, 6, "remission_at_end")
    evaluated(r, True)
    with pytest.raises(InvalidInput) as e:
        r.do(D.start_maintenance, 0, "x")
    events = r.do(D.start_maintenance, 3, "remission_at_end")
    assert r.phase_changes()[-1] == (Phase.completed, Phase.maintenance, 9, PhaseChangeReason.maintenance_contract)
    new = of(events, SessionScheduledV1)
    assert [s.number for s in new] == [9, 10, 11] and {s.kind for s in new} == {SessionKind.maintenance}
    assert new[1].starts_at - new[0].starts_at == timedelta(days=28)
    r.attend()
    assert r.course.phase == Phase.maintenance and r.course.attended == 9
    assert r.replayed() == r.course


def test_focus_change_needs_a_reason():
    r = Run()
    with pytest.raises(InvalidInput) as e:
        r.do(D.record_checklist, ChecklistItem.focus_confirmed, focus=Focus(primary="grief"))
    assert e.value.field == "reason_code"
    [ev] = r.do(D.record_checklist, ChecklistItem.focus_confirmed, focus=Focus(primary="grief"), reason_code="bereavement_disclosed")
    assert ev.focus_changed and r.course.focus.primary == "grief"
    assert r.do(D.record_checklist, ChecklistItem.focus_confirmed) == []  # confirming the same focus again: nothing
    with pytest.raises(InvalidInput) as e:
        r.do(D.record_checklist, ChecklistItem.diagnosis, focus=Focus(primary="grief"))
    assert e.value.field == "focus"


def test_unrecorded_session_raises_a_review_notice_one_cadence_later():
    r = Run()
    cur = r.course.current_session()
    r.now = cur.ends_at + timedelta(days=6)
    assert r.fire_due() == []
    r.now = cur.ends_at + timedelta(days=7)
    [notice] = r.fire_due()
    assert notice.reason == ReviewReason.session_outcome_unrecorded and notice.session_id == cur.session_id
    assert r.fire_due() == []
    r.attend()
    assert D.desired_timers(r.course)[D.OUTCOME_OVERDUE] == r.course.current_session().ends_at + timedelta(days=7)


def test_allowed_edges_are_exactly_the_issue_list():
    assert len(ALLOWED) == 8
    assert (Phase.middle, Phase.initial) not in ALLOWED and (Phase.completed, Phase.ended_early) not in ALLOWED
