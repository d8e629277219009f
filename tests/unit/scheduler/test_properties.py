"""Property-based tests: random sequences of attend / miss / reschedule / cancel / contract change /
withdraw (plus checklist items, time passing with its timers, outcome evaluations and maintenance)
driven through the pure state machine, checking the invariants after every step."""

import copy
from datetime import timedelta
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rapport_shared.contracts import Phase
from rapport_shared.contracts.course import (
    CancelledBy, ChecklistItem, CourseEndedV1, PhaseChangedV1, PhaseChangeReason, SessionAttendedV1,
)
from rapport_shared.contracts.intake import Focus
from rapport_shared.contracts.outcomes import OutcomeEvaluatedV1
from rapport_scheduler.domain import decider as D
from rapport_scheduler.domain.course import ACUTE, ALLOWED, SessionStatus, evolve, fold
from rapport_scheduler.domain.errors import SchedulerError
from rapport_scheduler.domain.templates import templates
from rapport_testing.scheduler import ALL_WEEK, intake_completed, rules_for

pytestmark = pytest.mark.unit

# Weighted by repetition: attendance dominates so that courses get through all their phases.
ACTIONS = ["attend"] * 10 + ["miss", "reschedule", "reschedule", "cancel", "cancel", "contract", "withdraw",
                             "checklist", "checklist_all", "time", "evaluated", "maintenance", "attend_any"]


class Model:
    def __init__(self, template_id, misses):
        self.intake = intake_completed(template_id=template_id, slots=ALL_WEEK)
        self.rules = rules_for(self.intake)
        self.now = self.intake.completed_at
        self.misses = misses
        d = D.plan(self.intake, self.ctx())
        self.events = list(d.events)
        self.course = d.course
        self.t = self.course.template

    def ctx(self):
        return D.Context(now=self.now, rules=self.rules, disengagement_misses=self.misses)


def perform(m: Model, action: str, data) -> list:
    c = m.course
    sessions = c.ordered_sessions()
    pick = lambda: data.draw(st.sampled_from(sessions)).session_id if sessions and data.draw(st.booleans()) else (
        c.current_session().session_id if c.current_session() else uuid4())
    if action in ("attend", "miss"):
        cur = c.current_session()
        if cur is not None:  # move time into the session (or not quite, sometimes)
            m.now = max(m.now, cur.starts_at + timedelta(minutes=data.draw(st.integers(-30, 24 * 60))))
        return (D.attend if action == "attend" else D.miss)(c, pick(), m.ctx()).events
    if action == "attend_any":
        return D.attend(c, data.draw(st.sampled_from(sessions)).session_id, m.ctx()).events
    if action == "reschedule":
        s = data.draw(st.sampled_from(sessions))
        to = s.starts_at + timedelta(minutes=15 * data.draw(st.integers(-7 * 96, 7 * 96)))
        return D.reschedule(c, s.session_id, to, "patient_request", m.ctx()).events
    if action == "cancel":
        by = data.draw(st.sampled_from(list(CancelledBy)))
        return D.cancel(c, pick(), by, "holiday", m.ctx()).events
    if action == "contract":
        n = data.draw(st.integers(m.t.min_sessions - 2, m.t.max_sessions + 2))
        return D.change_contract(c, n, "review", m.ctx()).events
    if action == "withdraw":
        if data.draw(st.integers(0, 4)):  # rarer still: it ends the course
            return []
        reason = data.draw(st.sampled_from([PhaseChangeReason.withdrawal, PhaseChangeReason.referral_on]))
        return D.withdraw(c, reason, m.ctx()).events
    if action == "checklist":
        item = data.draw(st.sampled_from(list(ChecklistItem)))
        kw = {}
        if item == ChecklistItem.focus_confirmed and data.draw(st.booleans()):
            kw = {"focus": Focus(primary=data.draw(st.sampled_from(["grief", "role_dispute"]))), "reason_code": "new_information"}
        return D.record_checklist(c, item, m.ctx(), **kw).events
    if action == "checklist_all":
        d = D.Decision(c)
        for item in ChecklistItem:
            d.events += D.record_checklist(d.course, item, m.ctx()).events
            d.course = fold(d.events, c)
        return d.events
    if action == "time":
        m.now += timedelta(hours=data.draw(st.integers(1, 24 * 21)))
        out = []
        for kind, due in D.desired_timers(m.course).items():
            if due is not None and due <= m.now:
                d = D.on_timer(m.course, kind, m.ctx())
                out += d.events
                m.course = d.course  # applied here; the caller must not fold them again
        m.events += out
        return []
    if action == "evaluated":
        ev = OutcomeEvaluatedV1(episode_id=c.episode_id, course_id=c.course_id, finished_course=True,
                                remission=data.draw(st.booleans()), evaluated_at=m.now)
        m.events.append(ev)
        m.course = evolve(c, ev)
        return []
    if action == "maintenance":
        return D.start_maintenance(c, data.draw(st.integers(0, 4)), "remission_at_end", m.ctx()).events
    raise AssertionError(action)


def check_step(m: Model, before, events):
    t = m.t
    # Phases only move along the allowed edges, each transition exactly one event, and
    # termination starts exactly when the remaining sessions equal its length.
    state = before
    for e in events:
        if isinstance(e, PhaseChangedV1):
            assert e.from_phase == state.phase, (e, state.phase)
            assert (e.from_phase, e.to_phase) in ALLOWED, (e.from_phase, e.to_phase)
            if e.to_phase == Phase.termination:
                assert state.contracted - state.attended == t.termination
                assert e.effective_from_session == state.contracted - t.termination + 1
                assert e.sessions_remaining == t.termination
            if e.to_phase == Phase.middle:
                assert state.checklist_complete
            if e.to_phase == Phase.completed:
                assert state.attended == state.contracted
        if isinstance(e, SessionAttendedV1):
            assert e.number == e.attended_sessions == state.attended + 1
        state = evolve(state, e)
    assert state == m.course
    changes = [e for e in events if isinstance(e, PhaseChangedV1)]
    assert len(changes) == len(m.course.phase_history) - len(before.phase_history)
    assert (m.course.phase != before.phase) <= bool(changes)
    ended = [e for e in events if isinstance(e, CourseEndedV1)]
    assert len(ended) <= 1 and (not ended or events[-1] is ended[0])


def check_state(m: Model):
    c = m.course
    n, t = c.contracted, m.t.termination
    assert m.t.min_sessions <= n <= m.t.max_sessions
    assert c.attended <= c.total_contracted
    assert c.attended == sum(1 for s in c.sessions.values() if s.status == SessionStatus.attended)
    if c.phase in (Phase.initial, Phase.middle):
        assert c.attended < n - t
    if c.phase == Phase.termination:
        assert n - t <= c.attended < n
    if c.phase in (Phase.completed, Phase.maintenance):
        assert c.attended >= n and c.ended_reason == "completed"
    if c.phase == Phase.ended_early:
        assert c.ended_reason is not None and not c.scheduled() and c.attended < n
    if Phase.middle in [p.phase for p in c.phase_history]:
        assert c.checklist_complete
    if c.phase in ACUTE:
        assert c.consecutive_missed < m.misses and c.ended_reason is None
    # The calendar: exactly one live session per contracted position, in time order, no overlap.
    live = c.live_sessions()
    expected = c.total_contracted if c.phase != Phase.ended_early else c.attended
    assert [s.number for s in live] == list(range(1, expected + 1))
    for a, b in zip(live, live[1:]):
        assert a.ends_at <= b.starts_at
    ended = [e for e in m.events if isinstance(e, CourseEndedV1)]
    assert len(ended) == (1 if c.phase in (Phase.completed, Phase.maintenance, Phase.ended_early) else 0)
    # Replay: the state rebuilt from the course's own events equals the live state.
    assert fold(m.events) == c


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(template_id=st.sampled_from(sorted(templates())), misses=st.integers(2, 4), data=st.data())
def test_random_calendar_operations_keep_the_invariants(template_id, misses, data):
    m = Model(template_id, misses)
    check_state(m)
    for _ in range(data.draw(st.integers(1, 120), label="steps")):
        action = data.draw(st.sampled_from(ACTIONS), label="action")
        before = m.course
        frozen = copy.deepcopy(before)
        try:
            events = perform(m, action, data)
        except SchedulerError:
            assert m.course is before and before == frozen  # refused: nothing changed
            continue
        if action not in ("time", "evaluated"):  # those two applied their events themselves
            m.events += events
            m.course = fold(events, before)
            check_step(m, before, events)
        check_state(m)
    event(f"final phase {m.course.phase.value}")
    event(f"phases visited {'>'.join(p.phase.value for p in m.course.phase_history)}")


@settings(max_examples=60, deadline=None)
@given(template_id=st.sampled_from(sorted(templates())), data=st.data())
def test_attending_every_session_walks_initial_middle_termination_completed(template_id, data):
    m = Model(template_id, 3)
    complete_at = data.draw(st.integers(0, m.t.initial))  # checklist done after this many sessions
    while m.course.phase in ACUTE:
        if m.course.attended == complete_at:
            for item in ChecklistItem:
                m.events += D.record_checklist(m.course, item, m.ctx()).events
                m.course = fold(m.events)
        cur = m.course.current_session()
        m.now = max(m.now, cur.ends_at)
        d = D.attend(m.course, cur.session_id, m.ctx())
        m.events += d.events
        m.course = d.course
    n, t = m.t.sessions, m.t.termination
    changes = [(e.from_phase, e.to_phase, e.effective_from_session) for e in m.events if isinstance(e, PhaseChangedV1)]
    assert changes == [(Phase.initial, Phase.middle, complete_at + 1), (Phase.middle, Phase.termination, n - t + 1),
                       (Phase.termination, Phase.completed, n + 1)]
    assert isinstance(m.events[-1], CourseEndedV1) and m.course.attended == n
