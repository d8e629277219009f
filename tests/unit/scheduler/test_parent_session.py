"""IPT-A's optional mid-phase parent session (domain.md 2; issue 15 item 5), pure: the template data,
the rules for adding one, and how it lives beside the contract (no position, not counted in the
attended sessions, never replaced, cancelled when the course ends)."""

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from rapport_shared.contracts import Phase
from rapport_shared.contracts.course import (
    CancelledBy, CourseEndedV1, PhaseChangedV1, PhaseChangeReason, SessionAttendedV1, SessionCancelledV1, SessionKind,
    SessionMissedV1, SessionRescheduledV1, SessionScheduledV1,
)
from rapport_scheduler.domain import decider as D
from rapport_scheduler.domain import templates as T
from rapport_scheduler.domain.course import SessionStatus
from rapport_scheduler.domain.errors import InvalidInput, RuleViolation, SlotTaken

from .test_decider import Run, of

pytestmark = pytest.mark.unit


def in_middle(template_id="ipt-a") -> Run:
    """Sessions 1–3 attended, the checklist complete during session 3: middle from session 4.
    Sessions are on Thursdays 14:00 (London); the patient is also free on Tuesdays 09:00–12:00."""
    r = Run(template_id)
    r.attend()
    r.attend()
    r.attend()
    r.complete_checklist()
    assert r.course.phase == Phase.middle and r.course.middle_from() == 4
    return r


def tuesday_after(r: Run, number: int):
    """The Tuesday 09:00 after session ``number`` (between it and the next weekly session)."""
    return r.course.live_at(number).starts_at + timedelta(days=5) - timedelta(hours=5)


# -- the template data -------------------------------------------------------------------------

def test_the_loader_reads_ipt_as_optional_mid_phase_parent_session():
    assert T.template("ipt-a").optional_parent == T.OptionalParentSession(phase=Phase.middle, max_sessions=1)
    assert all(T.template(t).optional_parent is None for t in T.templates() if t != "ipt-a")


@pytest.mark.parametrize("parent,message", [
    ('{"positions": ["first"], "optional_in": "initial"}', "must be 'middle'"),
    ('{"optional_in": "middle", "optional_max": 0}', "at least 1"),
    ('{"optional_in": "sometime"}', "is not a phase"),
])
def test_template_data_with_an_impossible_optional_parent_session_is_refused(tmp_path, parent, message):
    bad = tmp_path / "t.json"
    bad.write_text('{"templates": {"x": {"sessions": 12, "initial": 3, "termination": 3, "cadence_days": 7,'
                   f' "min_sessions": 12, "max_sessions": 16, "parent_sessions": {parent}}}}}}}')
    with pytest.raises(T.TemplateError, match=message):
        T.load(bad)


# -- adding one ----------------------------------------------------------------------------------

def test_added_in_the_middle_phase_beside_the_contract():
    r = in_middle()
    contract_before = [(s.session_id, s.number, s.starts_at) for s in r.course.live_sessions()]
    to = tuesday_after(r, 5)
    [booked] = r.do(D.add_parent_session, to)
    assert isinstance(booked, SessionScheduledV1)
    assert (booked.kind, booked.optional_parent_session, booked.number, booked.starts_at) == (
        SessionKind.parent, True, 5, to)  # number: the contracted session it follows
    c = r.course
    assert list(c.extra_sessions) == [booked.session_id]
    # The contract does not change: same positions, dates, count; the same current session.
    assert [(s.session_id, s.number, s.starts_at) for s in c.live_sessions()] == contract_before
    assert (c.contracted, c.attended, c.current_session().number) == (12, 3, 4)
    assert D.desired_timers(c) == D.desired_timers(r.course)
    assert r.replayed() == c


@pytest.mark.parametrize("template_id", ["ipt-standard", "ipt-12", "ipt-brief", "ipt-group", "ipt-ed"])
def test_refused_in_templates_without_one(template_id):
    r = in_middle(template_id)
    with pytest.raises(RuleViolation) as e:
        r.do(D.add_parent_session, tuesday_after(r, 4))
    assert (e.value.rule, e.value.phase) == ("optional_parent_session_in_template", "middle")
    assert template_id in e.value.message


def test_refused_outside_the_middle_phase():
    r = Run("ipt-a")
    r.attend()
    with pytest.raises(RuleViolation) as e:  # initial
        r.do(D.add_parent_session, tuesday_after(r, 2))
    assert (e.value.rule, e.value.phase) == ("optional_parent_session_in_middle_phase", "initial")
    r = in_middle()
    while r.course.phase == Phase.middle:
        r.attend()
    later = tuesday_after(r, 11)
    with pytest.raises(RuleViolation) as e:  # termination
        r.do(D.add_parent_session, later)
    assert (e.value.rule, e.value.phase) == ("optional_parent_session_in_middle_phase", "termination")
    r.do(D.withdraw, PhaseChangeReason.withdrawal)
    with pytest.raises(RuleViolation) as e:  # ended
        r.do(D.add_parent_session, later)
    assert e.value.rule == "optional_parent_session_in_middle_phase"


def test_at_most_one_unless_it_was_cancelled_or_missed():
    r = in_middle()
    [first] = r.do(D.add_parent_session, tuesday_after(r, 4))
    with pytest.raises(RuleViolation) as e:
        r.do(D.add_parent_session, tuesday_after(r, 6))
    assert (e.value.rule, e.value.field) == ("optional_parent_session_limit", None)
    assert str(first.session_id) in e.value.message
    r.do(D.cancel, first.session_id, CancelledBy.patient, "parent_unwell")
    [second] = r.do(D.add_parent_session, tuesday_after(r, 6))  # a cancelled one did not take place
    r.now = r.course.extra_sessions[second.session_id].ends_at
    r.do(D.miss, second.session_id)
    [third] = r.do(D.add_parent_session, tuesday_after(r, 8))  # nor did a missed one
    assert third.optional_parent_session and len(r.course.extra_sessions) == 3
    assert r.replayed() == r.course


def test_the_start_must_be_bookable_in_the_middle_phase():
    r = in_middle()
    s4 = r.course.live_at(4)
    cases = [
        (tuesday_after(r, 3), InvalidInput, "after session 4, the first of the middle phase"),  # before session 4
        (tuesday_after(r, 10), InvalidInput, "end before session 10, the first of termination"),  # in termination
        (r.course.live_at(10).starts_at - timedelta(minutes=30), InvalidInput, "first of termination"),  # overlaps it
        (tuesday_after(r, 4).replace(tzinfo=None), InvalidInput, "UTC offset"),
        (r.now - timedelta(minutes=5), InvalidInput, "in the past"),
        (tuesday_after(r, 4) - timedelta(hours=3), InvalidInput, "outside the patient's availability"),
        (r.course.live_at(6).starts_at + timedelta(minutes=15), SlotTaken, "already has a session"),  # over session 6
    ]
    for to, error, message in cases:
        with pytest.raises(error, match=message) as e:
            r.do(D.add_parent_session, to)
        assert e.value.field == "starts_at"
    # A closure day and another course's session are the calendar's usual refusals.
    r.rules = replace(r.rules, closures=frozenset({tuesday_after(r, 4).date()}))
    with pytest.raises(InvalidInput, match="closure day"):
        r.do(D.add_parent_session, tuesday_after(r, 4))
    busy = ((tuesday_after(r, 5), tuesday_after(r, 5) + timedelta(hours=1)),)
    r.rules = replace(r.rules, closures=frozenset(), busy=busy)
    with pytest.raises(SlotTaken):
        r.do(D.add_parent_session, tuesday_after(r, 5))
    assert r.course.extra_sessions == {} and s4 == r.course.live_at(4)


def test_refused_before_any_attended_session():
    r = Run("ipt-a")
    r.complete_checklist()  # before session 1: middle from session 1
    assert r.course.phase == Phase.middle and r.course.attended == 0
    with pytest.raises(RuleViolation) as e:
        r.do(D.add_parent_session, tuesday_after(r, 1))
    assert e.value.rule == "optional_parent_session_after_attendance"


# -- recording it --------------------------------------------------------------------------------

def test_attended_it_is_not_a_contracted_session_and_the_course_completes_at_n():
    r = in_middle()
    [booked] = r.do(D.add_parent_session, tuesday_after(r, 4))
    r.attend()  # session 4
    r.miss()  # session 5 (a run of one miss)
    r.now = booked.starts_at + timedelta(minutes=50)
    [attended] = r.do(D.attend, booked.session_id)
    assert isinstance(attended, SessionAttendedV1) and attended.optional_parent_session
    assert (attended.number, attended.attended_sessions, attended.phase) == (4, 4, Phase.middle)
    assert r.course.attended == 4 and r.course.consecutive_missed == 0  # an attendance resets the run
    while r.course.phase in (Phase.middle, Phase.termination):
        r.attend()
    changes = r.phase_changes()
    assert changes[-2:] == [(Phase.middle, Phase.termination, 10, PhaseChangeReason.contract),
                            (Phase.termination, Phase.completed, 13, PhaseChangeReason.last_session_attended)]
    [ended] = of(r.events, CourseEndedV1)
    assert (ended.attended_sessions, ended.contracted_sessions) == (12, 12)
    contracted = [e for e in of(r.events, SessionAttendedV1) if not e.optional_parent_session]
    assert [e.attended_sessions for e in contracted] == list(range(1, 13))
    assert r.replayed() == r.course


def test_recorded_out_of_the_contracts_order_once_it_has_started():
    r = in_middle()
    [booked] = r.do(D.add_parent_session, tuesday_after(r, 4))
    r.now = booked.starts_at - timedelta(minutes=1)
    with pytest.raises(RuleViolation) as e:
        r.do(D.attend, booked.session_id)
    assert e.value.rule == "record_after_start"
    r.now = booked.starts_at + timedelta(minutes=50)  # session 4 (before it) is not recorded yet
    r.do(D.attend, booked.session_id)
    with pytest.raises(RuleViolation) as e:
        r.do(D.attend, booked.session_id)
    assert e.value.rule == "outcome_recorded_once"
    assert r.course.current_session().number == 4


def test_missed_it_moves_nothing_and_counts_in_the_run_of_misses():
    r = in_middle()
    [booked] = r.do(D.add_parent_session, tuesday_after(r, 5))
    r.miss()  # session 4
    r.miss()  # session 5 (its replacement took session 6's date, and so on)
    contract = [(s.session_id, s.starts_at) for s in r.course.live_sessions()]
    r.now = booked.starts_at + timedelta(minutes=50)
    events = r.do(D.miss, booked.session_id)
    # The third consecutive miss: the course ends early (disengagement), nothing is replaced.
    assert [type(e) for e in events][:2] == [SessionMissedV1, PhaseChangedV1]
    assert events[0].optional_parent_session and events[0].consecutive_missed == 3
    assert r.course.phase == Phase.ended_early and r.course.ended_reason == "disengagement"
    assert not of(events, SessionScheduledV1) and not of(events, SessionRescheduledV1)
    assert [s for s, _ in contract if r.course.sessions[s].status == SessionStatus.scheduled] == []
    assert r.replayed() == r.course


def test_missed_alone_it_is_not_replaced():
    r = in_middle()
    [booked] = r.do(D.add_parent_session, tuesday_after(r, 4))
    contract = [(s.session_id, s.starts_at) for s in r.course.live_sessions()]
    r.now = booked.starts_at + timedelta(minutes=50)
    [missed] = r.do(D.miss, booked.session_id)
    assert missed.optional_parent_session and r.course.consecutive_missed == 1
    assert [(s.session_id, s.starts_at) for s in r.course.live_sessions()] == contract


def test_rescheduled_within_the_middle_phase_and_cancelled_without_a_replacement():
    r = in_middle()
    [booked] = r.do(D.add_parent_session, tuesday_after(r, 4))
    to = tuesday_after(r, 6) + timedelta(hours=1)
    [moved] = r.do(D.reschedule, booked.session_id, to, "parent_request")
    # Now between sessions 6 and 7: its number follows.
    assert isinstance(moved, SessionRescheduledV1) and moved.optional_parent_session and moved.number == 6
    assert r.course.extra_sessions[booked.session_id].number == 6
    with pytest.raises(InvalidInput, match="first of termination"):
        r.do(D.reschedule, booked.session_id, tuesday_after(r, 10), "parent_request")
    # A contracted session cannot be moved onto it (its own calendar counts for the clinician).
    s7 = r.course.live_at(7)
    with pytest.raises(SlotTaken):
        r.do(D.reschedule, s7.session_id, to - timedelta(minutes=15), "patient_request")
    contract = [(s.session_id, s.starts_at) for s in r.course.live_sessions()]
    [cancelled] = r.do(D.cancel, booked.session_id, CancelledBy.clinic, "clinician_unwell")
    assert isinstance(cancelled, SessionCancelledV1) and cancelled.optional_parent_session
    assert [(s.session_id, s.starts_at) for s in r.course.live_sessions()] == contract
    assert r.replayed() == r.course


def test_still_scheduled_when_the_course_ends_it_is_cancelled():
    r = in_middle()
    [booked] = r.do(D.add_parent_session, tuesday_after(r, 8))
    events = r.do(D.withdraw, PhaseChangeReason.withdrawal)
    [gone] = [e for e in of(events, SessionCancelledV1) if e.session_id == booked.session_id]
    assert gone.optional_parent_session and gone.cancelled_by == CancelledBy.patient
    assert isinstance(events[-1], CourseEndedV1)
    # Completing the course with one never recorded: cancelled before course.ended.
    r = in_middle()
    [booked] = r.do(D.add_parent_session, tuesday_after(r, 8))
    while r.course.phase in (Phase.middle, Phase.termination):
        r.attend()
    [gone] = [e for e in of(r.events, SessionCancelledV1) if e.session_id == booked.session_id]
    assert (gone.reason_code, gone.cancelled_by) == (D.COURSE_COMPLETED, CancelledBy.clinic)
    assert isinstance(r.events[-1], CourseEndedV1) and r.course.attended == 12
    assert r.replayed() == r.course


def test_an_event_recorded_before_the_field_existed_reads_as_a_contracted_session():
    r = in_middle()
    [booked] = r.do(D.add_parent_session, tuesday_after(r, 4))
    old = json.loads(booked.model_dump_json())
    del old["optional_parent_session"]
    assert SessionScheduledV1.model_validate(old).optional_parent_session is False
