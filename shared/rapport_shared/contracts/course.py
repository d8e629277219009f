"""Events on ``rapport.course``."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ..topics import COURSE
from .base import Code, EventData, Phase, PseudonymousId


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


class CoursePlannedV1(EventData):
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


class PhaseChangeReason(StrEnum):
    checklist_complete = "checklist_complete"  # initial → middle
    contract = "contract"  # → termination because the contract says so
    last_session_attended = "last_session_attended"  # → completed
    withdrawal = "withdrawal"
    disengagement = "disengagement"
    referral_on = "referral_on"
    maintenance_contract = "maintenance_contract"  # completed → maintenance


class PhaseChangedV1(EventData):
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


class SessionKind(StrEnum):
    individual = "individual"
    parent = "parent"  # IPT-A: a parent joins
    group = "group"
    maintenance = "maintenance"


class SessionScheduledV1(EventData):
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


class SessionRescheduledV1(EventData):
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


class CancelledBy(StrEnum):
    patient = "patient"
    clinic = "clinic"


class SessionCancelledV1(EventData):
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


class SessionAttendedV1(EventData):
    event_type = "rapport.session.attended.v1"
    topic = COURSE

    episode_id: UUID
    course_id: UUID
    session_id: UUID
    number: int = Field(ge=1)
    attended_sessions: int = Field(ge=1, description="attended so far, this one included")
    contracted_sessions: int = Field(ge=1)
    phase: Phase = Field(description="the phase this session belonged to")
    attended_at: datetime


class SessionMissedV1(EventData):
    event_type = "rapport.session.missed.v1"
    topic = COURSE

    episode_id: UUID
    course_id: UUID
    session_id: UUID
    number: int = Field(ge=1)
    consecutive_missed: int = Field(ge=1)
    missed_at: datetime


class CourseEndReason(StrEnum):
    completed = "completed"
    withdrawal = "withdrawal"
    disengagement = "disengagement"
    referral_on = "referral_on"


class CourseEndedV1(EventData):
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
