"""Events on ``rapport.course``."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from .topics import COURSE
from .base import Code, EpisodeEventData, Phase, PseudonymousId
from .intake import Focus


class PhaseSpan(BaseModel):
    model_config = ConfigDict(frozen=True)
    phase: Phase
    first_session: int = Field(ge=1)
    last_session: int = Field(ge=1)


class PlannedSession(BaseModel):
    model_config = ConfigDict(frozen=True)
    session_id: UUID
    number: int = Field(ge=1)
    starts_at: datetime
    duration_minutes: int = Field(gt=0)


class CoursePlannedV1(EpisodeEventData):
    """A course was created from a template: contract, phase plan and first dates."""

    event_type = "rapport.course.planned.v1"
    topic = COURSE

    episode_id: UUID
    course_id: UUID
    person_id: PseudonymousId
    template_id: Code
    clinician_id: PseudonymousId
    contracted_sessions: int = Field(ge=1)
    phase_plan: list[PhaseSpan]
    sessions: list[PlannedSession]
    first_session_at: datetime
    planned_end_at: datetime
    planned_at: datetime
    # Added in v1 as an optional field (older consumers ignore it).
    focus: Focus | None = Field(default=None, description="the provisional focus from intake, to be confirmed in the initial phase")


class PhaseChangeReason(StrEnum):
    checklist_complete = "checklist_complete"  # initial → middle
    contract = "contract"  # → termination because the contract says so
    last_session_attended = "last_session_attended"  # → completed
    withdrawal = "withdrawal"
    disengagement = "disengagement"
    referral_on = "referral_on"
    maintenance_contract = "maintenance_contract"  # completed → maintenance


class PhaseChangedV1(EpisodeEventData):
    """One phase transition of a course, effective from a session number."""

    event_type = "rapport.course.phase_changed.v1"
    topic = COURSE

    episode_id: UUID
    course_id: UUID
    from_phase: Phase
    to_phase: Phase
    effective_from_session: int = Field(ge=1)
    reason: PhaseChangeReason
    sessions_remaining: int | None = Field(default=None, ge=0)
    changed_at: datetime


# IPT-A's optional mid-phase parent session (domain.md 2) is booked beside the contract: it holds no
# contract position and is not one of the patient's contracted sessions. Added in v1 as an optional
# field of every session event (older consumers ignore it; older records lack it: false).
OPTIONAL_PARENT_SESSION = (
    "IPT-A's optional mid-phase parent session, booked beside the contract: it holds no contract position "
    "(`number` is the position of the contracted session it follows), is not counted in `attended_sessions` "
    "and is not a treatment session of the contract")


class SessionKind(StrEnum):
    individual = "individual"
    parent = "parent"  # IPT-A: a parent joins
    group = "group"
    maintenance = "maintenance"


class SessionScheduledV1(EpisodeEventData):
    """A session was booked (at planning, as a replacement, or under a new contract)."""

    event_type = "rapport.session.scheduled.v1"
    topic = COURSE

    episode_id: UUID
    course_id: UUID
    session_id: UUID
    number: int = Field(ge=1, description="position in the contracted course")
    starts_at: datetime
    duration_minutes: int = Field(gt=0)
    kind: SessionKind = SessionKind.individual
    scheduled_at: datetime
    optional_parent_session: bool = Field(default=False, description=OPTIONAL_PARENT_SESSION)


class SessionRescheduledV1(EpisodeEventData):
    event_type = "rapport.session.rescheduled.v1"
    topic = COURSE

    episode_id: UUID
    course_id: UUID
    session_id: UUID
    number: int = Field(ge=1)
    previous_starts_at: datetime
    starts_at: datetime
    reason_code: Code
    rescheduled_at: datetime
    optional_parent_session: bool = Field(default=False, description=OPTIONAL_PARENT_SESSION)


class CancelledBy(StrEnum):
    patient = "patient"
    clinic = "clinic"


class SessionCancelledV1(EpisodeEventData):
    """A session will not take place; the contracted count stays, so a later one replaces it."""

    event_type = "rapport.session.cancelled.v1"
    topic = COURSE

    episode_id: UUID
    course_id: UUID
    session_id: UUID
    number: int = Field(ge=1)
    cancelled_by: CancelledBy
    reason_code: Code
    cancelled_at: datetime
    optional_parent_session: bool = Field(default=False, description=OPTIONAL_PARENT_SESSION)


class SessionAttendedV1(EpisodeEventData):
    event_type = "rapport.session.attended.v1"
    topic = COURSE

    episode_id: UUID
    course_id: UUID
    session_id: UUID
    number: int = Field(ge=1)
    attended_sessions: int = Field(ge=1, description="contracted sessions attended so far, this one included "
                                                     "(an optional parent session is not one of them)")
    contracted_sessions: int = Field(ge=1)
    phase: Phase = Field(description="the phase this session belonged to")
    attended_at: datetime
    optional_parent_session: bool = Field(default=False, description=OPTIONAL_PARENT_SESSION)


class SessionMissedV1(EpisodeEventData):
    event_type = "rapport.session.missed.v1"
    topic = COURSE

    episode_id: UUID
    course_id: UUID
    session_id: UUID
    number: int = Field(ge=1)
    consecutive_missed: int = Field(ge=1)
    missed_at: datetime
    optional_parent_session: bool = Field(default=False, description=OPTIONAL_PARENT_SESSION)


class CourseEndReason(StrEnum):
    completed = "completed"
    withdrawal = "withdrawal"
    disengagement = "disengagement"
    referral_on = "referral_on"


class CourseEndedV1(EpisodeEventData):
    """The acute course is over: completed, or ended early with a reason."""

    event_type = "rapport.course.ended.v1"
    topic = COURSE

    episode_id: UUID
    course_id: UUID
    template_id: Code
    clinician_id: PseudonymousId
    reason: CourseEndReason
    final_phase: Phase
    attended_sessions: int = Field(ge=0)
    contracted_sessions: int = Field(ge=1)
    ended_at: datetime


class ContractKind(StrEnum):
    acute = "acute"  # the 12–20 session course of the template
    maintenance = "maintenance"  # IPT-M after a completed course in remission


class CourseContractChangedV1(EpisodeEventData):
    """A new contract: the session count changed (acute, within the template's bounds) or a
    maintenance contract was agreed. Sessions added or removed follow as session events."""

    event_type = "rapport.course.contract_changed.v1"
    topic = COURSE

    episode_id: UUID
    course_id: UUID
    contract: ContractKind = ContractKind.acute
    previous_sessions: int = Field(ge=0, description="sessions in the previous contract of this kind (0 = none)")
    contracted_sessions: int = Field(ge=1)
    reason_code: Code
    phase_plan: list[PhaseSpan] = Field(default_factory=list, description="the acute phase plan under the new contract")
    changed_at: datetime


class ChecklistItem(StrEnum):
    """The initial-phase checklist (domain.md 2): all six gate the move to the middle phase."""

    diagnosis = "diagnosis"
    sick_role_explained = "sick_role_explained"
    inventory_complete = "inventory_complete"
    formulation_agreed = "formulation_agreed"
    focus_confirmed = "focus_confirmed"
    contract_set = "contract_set"


class CourseChecklistUpdatedV1(EpisodeEventData):
    """One initial-phase checklist item recorded (coded facts only; notes stay out of events)."""

    event_type = "rapport.course.checklist_updated.v1"
    topic = COURSE

    episode_id: UUID
    course_id: UUID
    item: ChecklistItem
    session_number: int | None = Field(default=None, ge=1, description="the session it was recorded at (none before session 1)")
    diagnosis_code: Code | None = Field(default=None, description="coded diagnosis (e.g. an ICD-10 code), diagnosis item only")
    focus: Focus | None = Field(default=None, description="the focus confirmed or changed to, focus item only")
    focus_changed: bool = False
    reason_code: Code | None = Field(default=None, description="why the focus changed (required when it did)")
    checklist_complete: bool = Field(description="whether every item is now recorded")
    recorded_at: datetime


class ReviewReason(StrEnum):
    initial_checklist_incomplete = "initial_checklist_incomplete"  # session i attended, window over
    termination_with_incomplete_checklist = "termination_with_incomplete_checklist"  # initial → termination
    session_outcome_unrecorded = "session_outcome_unrecorded"  # a session a cadence overdue, no outcome


class CourseReviewNeededV1(EpisodeEventData):
    """A notice to the assigned clinician that the course needs their review (not a phase change)."""

    event_type = "rapport.course.review_needed.v1"
    topic = COURSE

    episode_id: UUID
    course_id: UUID
    clinician_id: PseudonymousId
    reason: ReviewReason
    phase: Phase = Field(description="the course's phase when the notice was raised")
    session_number: int = Field(ge=1, description="the session the notice is about")
    session_id: UUID | None = Field(default=None, description="that session, for session_outcome_unrecorded")
    missing_items: list[ChecklistItem] = Field(default_factory=list, description="checklist items still missing")
    raised_at: datetime
