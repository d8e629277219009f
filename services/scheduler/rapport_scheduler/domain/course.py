"""The course aggregate (pure): its state, and how each of its own events changes it.

The state is a fold of the course's events (``evolve``): the live service applies the events a
command decides to the state it loaded, and a replay of the same events from ``rapport.course``
(plus ``rapport.outcome.evaluated.v1`` for the remission flag) rebuilds an equal state.

Numbering: a session's ``number`` is its position in the contract (1..n, then n+1.. for
maintenance). Exactly one *live* session (scheduled or attended) holds each position; a missed
or cancelled one keeps its number and a replacement takes the position (``decider``). Outcomes
are recorded in order, so after recording position k attended, ``attended == k``.

IPT-A's optional mid-phase parent session is kept apart, in ``extra_sessions``: it holds no
position (its ``number`` is the position of the contracted session it follows), is not counted in
``attended`` and takes no part in the contract's order or calendar shifts; its events carry
``optional_parent_session``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from rapport_shared.contracts import Phase
from rapport_shared.contracts.base import EventData
from rapport_shared.contracts.course import (
    CancelledBy,
    ChecklistItem,
    ContractKind,
    CourseChecklistUpdatedV1,
    CourseContractChangedV1,
    CourseEndedV1,
    CourseEndReason,
    CoursePlannedV1,
    CourseReviewNeededV1,
    PhaseChangedV1,
    PhaseChangeReason,
    ReviewReason,
    SessionAttendedV1,
    SessionCancelledV1,
    SessionKind,
    SessionMissedV1,
    SessionRescheduledV1,
    SessionScheduledV1,
)
from rapport_shared.contracts.intake import Focus
from rapport_shared.contracts.outcomes import OutcomeEvaluatedV1

from .templates import Template, template

ACUTE = frozenset({Phase.initial, Phase.middle, Phase.termination})
# Phases in which sessions take place (calendar operations are allowed).
WITH_SESSIONS = ACUTE | {Phase.maintenance}

# The allowed edges of the phase state machine (domain.md 2; issue 4).
ALLOWED = frozenset({
    (Phase.initial, Phase.middle),
    (Phase.initial, Phase.termination),
    (Phase.middle, Phase.termination),
    (Phase.termination, Phase.completed),
    (Phase.initial, Phase.ended_early),
    (Phase.middle, Phase.ended_early),
    (Phase.termination, Phase.ended_early),
    (Phase.completed, Phase.maintenance),
})


class SessionStatus(StrEnum):
    scheduled = "scheduled"
    attended = "attended"
    missed = "missed"
    cancelled = "cancelled"


@dataclass(frozen=True)
class Session:
    session_id: UUID
    number: int
    starts_at: datetime
    duration_minutes: int
    kind: SessionKind = SessionKind.individual
    status: SessionStatus = SessionStatus.scheduled
    recorded_at: datetime | None = None  # when the outcome (attended/missed/cancelled) was recorded
    cancelled_by: CancelledBy | None = None
    reason_code: str | None = None

    @property
    def ends_at(self) -> datetime:
        return self.starts_at + timedelta(minutes=self.duration_minutes)

    @property
    def live(self) -> bool:
        return self.status in (SessionStatus.scheduled, SessionStatus.attended)


@dataclass(frozen=True)
class PhaseEntry:
    phase: Phase
    from_session: int
    reason: PhaseChangeReason | None
    at: datetime


@dataclass(frozen=True)
class ChecklistEntry:
    session_number: int | None
    recorded_at: datetime
    diagnosis_code: str | None = None
    focus: Focus | None = None
    focus_changed: bool = False
    reason_code: str | None = None


def notice_key(reason: ReviewReason, session_id: UUID | None = None) -> str:
    """Review notices are raised once: per course, or per session for unrecorded outcomes."""
    return f"{reason.value}:{session_id}" if reason == ReviewReason.session_outcome_unrecorded else reason.value


@dataclass(frozen=True)
class Course:
    course_id: UUID
    episode_id: UUID
    person_id: str
    template_id: str
    clinician_id: str
    contracted: int
    planned_at: datetime
    focus: Focus | None = None
    phase: Phase = Phase.initial
    phase_history: tuple[PhaseEntry, ...] = ()
    sessions: dict[UUID, Session] = field(default_factory=dict)  # the contracted positions
    extra_sessions: dict[UUID, Session] = field(default_factory=dict)  # beside the contract (IPT-A parent)
    checklist: dict[ChecklistItem, ChecklistEntry] = field(default_factory=dict)
    attended: int = 0
    consecutive_missed: int = 0
    notices: frozenset[str] = frozenset()
    maintenance_contracted: int = 0
    remission: bool | None = None
    ended_reason: CourseEndReason | None = None
    ended_at: datetime | None = None

    # -- derived views ---------------------------------------------------------------------
    @property
    def template(self) -> Template:
        return template(self.template_id)

    @property
    def total_contracted(self) -> int:
        return self.contracted + self.maintenance_contracted

    def ordered_sessions(self) -> list[Session]:
        return sorted(self.sessions.values(), key=lambda s: (s.number, s.starts_at, str(s.session_id)))

    def live_sessions(self) -> list[Session]:
        return [s for s in self.ordered_sessions() if s.live]

    def any_session(self, session_id: UUID) -> Session | None:
        """A session of the course by id: a contracted one or one beside the contract."""
        return self.sessions.get(session_id) or self.extra_sessions.get(session_id)

    def live_extras(self) -> list[Session]:
        return sorted((s for s in self.extra_sessions.values() if s.live), key=lambda s: s.starts_at)

    def ordered_extras(self) -> list[Session]:
        return sorted(self.extra_sessions.values(), key=lambda s: (s.starts_at, str(s.session_id)))

    def live_at(self, number: int) -> Session | None:
        return next((s for s in self.sessions.values() if s.live and s.number == number), None)

    def scheduled(self) -> list[Session]:
        return [s for s in self.ordered_sessions() if s.status == SessionStatus.scheduled]

    def current_session(self) -> Session | None:
        """The next session whose outcome is due: the lowest-numbered scheduled one."""
        pending = self.scheduled()
        return pending[0] if pending else None

    def last_started(self, now: datetime) -> int:
        """The highest position whose live session has started by ``now`` (0 if none)."""
        return max((s.number for s in self.sessions.values() if s.live and s.starts_at <= now), default=0)

    @property
    def checklist_complete(self) -> bool:
        return all(i in self.checklist for i in ChecklistItem)

    def missing_items(self) -> list[ChecklistItem]:
        return [i for i in ChecklistItem if i not in self.checklist]

    def phase_of(self, number: int) -> Phase:
        """The phase session ``number`` belongs to (the last change effective at or before it)."""
        phase = Phase.initial
        for entry in self.phase_history:
            if entry.from_session <= number:
                phase = entry.phase
        return phase

    def middle_from(self) -> int | None:
        return next((e.from_session for e in self.phase_history if e.phase == Phase.middle), None)

    def cadence_for(self, number: int) -> int:
        return self.template.maintenance.cadence_days if number > self.contracted else self.template.cadence_days


# -- evolve: one event → the next state --------------------------------------------------------

def _with_session(c: Course, s: Session) -> Course:
    if s.session_id in c.extra_sessions:
        return replace(c, extra_sessions={**c.extra_sessions, s.session_id: s})
    return replace(c, sessions={**c.sessions, s.session_id: s})


def evolve(c: Course | None, e: EventData) -> Course:
    if isinstance(e, CoursePlannedV1):
        if c is not None:
            raise ValueError("course already planned")
        return Course(
            course_id=e.course_id, episode_id=e.episode_id, person_id=e.person_id, template_id=e.template_id,
            clinician_id=e.clinician_id, contracted=e.contracted_sessions, planned_at=e.planned_at, focus=e.focus,
            phase_history=(PhaseEntry(Phase.initial, 1, None, e.planned_at),),
        )
    if c is None:
        raise ValueError(f"{type(e).__name__} before the course was planned")
    if isinstance(e, SessionScheduledV1):
        s = Session(e.session_id, e.number, e.starts_at, e.duration_minutes, e.kind)
        if e.optional_parent_session:
            return replace(c, extra_sessions={**c.extra_sessions, s.session_id: s})
        return _with_session(c, s)
    if isinstance(e, SessionRescheduledV1):
        # ``number``: a session beside the contract follows another contracted session once moved.
        return _with_session(c, replace(c.any_session(e.session_id), starts_at=e.starts_at, number=e.number))
    if isinstance(e, SessionCancelledV1):
        s = replace(c.any_session(e.session_id), status=SessionStatus.cancelled, recorded_at=e.cancelled_at,
                    cancelled_by=e.cancelled_by, reason_code=e.reason_code)
        return _with_session(c, s)
    if isinstance(e, SessionAttendedV1):
        s = replace(c.any_session(e.session_id), status=SessionStatus.attended, recorded_at=e.attended_at)
        # Beside the contract: the attended count stays (it counts contracted sessions).
        attended = c.attended if e.session_id in c.extra_sessions else e.attended_sessions
        return replace(_with_session(c, s), attended=attended, consecutive_missed=0)
    if isinstance(e, SessionMissedV1):
        s = replace(c.any_session(e.session_id), status=SessionStatus.missed, recorded_at=e.missed_at)
        return replace(_with_session(c, s), consecutive_missed=e.consecutive_missed)
    if isinstance(e, PhaseChangedV1):
        entry = PhaseEntry(e.to_phase, e.effective_from_session, e.reason, e.changed_at)
        return replace(c, phase=e.to_phase, phase_history=(*c.phase_history, entry))
    if isinstance(e, CourseEndedV1):
        return replace(c, ended_reason=e.reason, ended_at=e.ended_at)
    if isinstance(e, CourseContractChangedV1):
        if e.contract == ContractKind.maintenance:
            return replace(c, maintenance_contracted=e.contracted_sessions)
        return replace(c, contracted=e.contracted_sessions)
    if isinstance(e, CourseChecklistUpdatedV1):
        entry = ChecklistEntry(e.session_number, e.recorded_at, e.diagnosis_code, e.focus, e.focus_changed, e.reason_code)
        return replace(c, checklist={**c.checklist, e.item: entry}, focus=e.focus if e.focus is not None else c.focus)
    if isinstance(e, CourseReviewNeededV1):
        return replace(c, notices=c.notices | {notice_key(e.reason, e.session_id)})
    if isinstance(e, OutcomeEvaluatedV1):
        return replace(c, remission=e.remission)
    return c  # an event that does not change the course (forward compatible)


def fold(events, state: Course | None = None) -> Course | None:
    for e in events:
        state = evolve(state, e)
    return state
