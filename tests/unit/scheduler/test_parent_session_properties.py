"""Property-based: IPT-A courses under random calendar operations (those of ``test_properties``)
mixed with adding, recording, moving and cancelling the optional mid-phase parent session. The
contract's invariants hold as without it, and the parent session stays beside the contract."""

import copy
from datetime import timedelta
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rapport_shared.contracts import Phase
from rapport_shared.contracts.course import CancelledBy, CourseEndedV1, PhaseChangedV1, SessionAttendedV1
from rapport_scheduler.domain import decider as D
from rapport_scheduler.domain.course import ALLOWED, SessionStatus, evolve, fold
from rapport_scheduler.domain.errors import SchedulerError

from .test_properties import ACTIONS, Model, check_state, perform

pytestmark = pytest.mark.unit

PARENT_ACTIONS = ["parent_add"] * 4 + ["parent_attend", "parent_miss", "parent_cancel", "parent_reschedule"]


def perform_parent(m: Model, action: str, data) -> list:
    c = m.course
    extras = c.ordered_extras()
    pick = lambda: data.draw(st.sampled_from(extras)) if extras else None  # noqa: E731
    if action == "parent_add":
        base = data.draw(st.sampled_from(c.ordered_sessions())).starts_at
        to = base + timedelta(minutes=15 * data.draw(st.integers(-2 * 96, 7 * 96)))
        return D.add_parent_session(c, to, m.ctx()).events
    s = pick()
    sid = s.session_id if s else uuid4()
    if action in ("parent_attend", "parent_miss"):
        if s is not None:
            m.now = max(m.now, s.starts_at + timedelta(minutes=data.draw(st.integers(-30, 24 * 60))))
        return (D.attend if action == "parent_attend" else D.miss)(c, sid, m.ctx()).events
    if action == "parent_cancel":
        return D.cancel(c, sid, data.draw(st.sampled_from(list(CancelledBy))), "parent_unwell", m.ctx()).events
    if action == "parent_reschedule":
        to = (s.starts_at if s else m.now) + timedelta(minutes=15 * data.draw(st.integers(-7 * 96, 7 * 96)))
        return D.reschedule(c, sid, to, "parent_request", m.ctx()).events
    raise AssertionError(action)


def check_step(m: Model, before, events):
    state = before
    for e in events:
        if isinstance(e, PhaseChangedV1):
            assert e.from_phase == state.phase and (e.from_phase, e.to_phase) in ALLOWED
            if e.to_phase == Phase.termination:
                assert state.contracted - state.attended == m.t.termination
            if e.to_phase == Phase.completed:
                assert state.attended == state.contracted and e.effective_from_session == state.contracted + 1
        if isinstance(e, SessionAttendedV1):
            if e.optional_parent_session:  # beside the contract: not counted
                assert e.session_id in state.extra_sessions and e.attended_sessions == state.attended
            else:
                assert e.number == e.attended_sessions == state.attended + 1
        state = evolve(state, e)
    assert state == m.course
    ended = [e for e in events if isinstance(e, CourseEndedV1)]
    assert len(ended) <= 1 and (not ended or events[-1] is ended[0])


def check_extras(m: Model):
    c = m.course
    limit = m.t.optional_parent.max_sessions
    assert len(c.live_extras()) <= limit
    assert not set(c.sessions) & set(c.extra_sessions)
    assert all(s.status != SessionStatus.scheduled for s in c.extra_sessions.values()) or c.phase in (
        Phase.initial, Phase.middle, Phase.termination)  # a course that ended keeps none scheduled
    # No live session of the course overlaps another (the clinician is never double booked).
    live = sorted([*c.live_sessions(), *c.live_extras()], key=lambda s: s.starts_at)
    for a, b in zip(live, live[1:]):
        assert a.ends_at <= b.starts_at, (a, b)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(misses=st.integers(2, 4), data=st.data())
def test_random_operations_with_the_optional_parent_session_keep_the_invariants(misses, data):
    m = Model("ipt-a", misses)
    for _ in range(data.draw(st.integers(1, 120), label="steps")):
        # The checklist more often than in test_properties: the parent session needs the middle phase.
        action = data.draw(st.sampled_from(ACTIONS + ["checklist_all"] * 2 + PARENT_ACTIONS * 2), label="action")
        before = m.course
        frozen = copy.deepcopy(before)
        try:
            events = perform_parent(m, action, data) if action.startswith("parent_") else perform(m, action, data)
        except SchedulerError:
            assert m.course is before and before == frozen  # refused: nothing changed
            continue
        if action not in ("time", "evaluated"):
            m.events += events
            m.course = fold(events, before)
            check_step(m, before, events)
        check_state(m)  # the contract's invariants, and the replay of every event
        check_extras(m)
    event(f"parent sessions {sorted(s.status.value for s in m.course.extra_sessions.values())}")
    event(f"final phase {m.course.phase.value}")
