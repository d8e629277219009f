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
