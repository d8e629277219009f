"""What callers ask the scheduler to do: one message per command, carrying the ids it acts on and
the actor (the token's subject; logged, and recorded where the row keeps who changed it). The
HTTP edge builds them from validated request bodies (``entrypoints/bodies.py``) and hands them to
the message bus; each has one handler (``service_layer/handlers.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

from rapport_shared.contracts.course import CancelledBy, ChecklistItem, PhaseChangeReason
from rapport_shared.contracts.intake import Focus
from rapport_shared.hours import WorkingHours


@dataclass(frozen=True)
class CourseCommand:
    course_id: UUID
    actor: str


@dataclass(frozen=True)
class AttendSession(CourseCommand):
    session_id: UUID


@dataclass(frozen=True)
class MissSession(CourseCommand):
    session_id: UUID


@dataclass(frozen=True)
class RescheduleSession(CourseCommand):
    session_id: UUID
    starts_at: datetime
    reason_code: str


@dataclass(frozen=True)
class CancelSession(CourseCommand):
    session_id: UUID
    cancelled_by: CancelledBy
    reason_code: str


@dataclass(frozen=True)
class ChangeContract(CourseCommand):
    contracted_sessions: int
    reason_code: str


@dataclass(frozen=True)
class Withdraw(CourseCommand):
    reason: PhaseChangeReason


@dataclass(frozen=True)
class RecordChecklistItem(CourseCommand):
    item: ChecklistItem
    diagnosis_code: str | None = None
    focus: Focus | None = None
    reason_code: str | None = None


@dataclass(frozen=True)
class StartMaintenance(CourseCommand):
    sessions: int
    reason_code: str


@dataclass(frozen=True)
class AddParentSession(CourseCommand):
    """IPT-A's optional mid-phase parent session, booked at ``starts_at`` beside the contract."""

    starts_at: datetime


# -- calendar configuration --------------------------------------------------------------------

@dataclass(frozen=True)
class SetWorkingHours:
    clinician_id: str
    hours: WorkingHours
    actor: str


@dataclass(frozen=True)
class AddClosureDay:
    day: date
    reason_code: str | None
    actor: str


@dataclass(frozen=True)
class RemoveClosureDay:
    day: date


__all__ = ["AddClosureDay", "AddParentSession", "AttendSession", "CancelSession", "ChangeContract", "CourseCommand", "MissSession",
           "RecordChecklistItem", "RemoveClosureDay", "RescheduleSession", "SetWorkingHours", "StartMaintenance",
           "Withdraw"]
