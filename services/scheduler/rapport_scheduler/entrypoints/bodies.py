"""The bodies of the scheduler's HTTP requests, validated at the edge (unknown fields refused).

The routes turn them, with the ids from the path and the caller, into ``domain.commands``.
The class names are the OpenAPI schema names."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rapport_shared.contracts.base import Code
from rapport_shared.contracts.course import CancelledBy
from rapport_shared.contracts.intake import Focus
from rapport_shared.inputs import Integer, Timestamp, TimeZoneName, WeeklySlotIn

# More sessions than any contract could hold: refused at the edge (the template's bounds are the
# course's rule, answered by the domain).
MAX_SESSIONS = 100


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RescheduleSession(Body):
    starts_at: Timestamp = Field(description="the new start, with a UTC offset")
    reason_code: Code = Field(description="coded reason, e.g. patient_request, clinician_unwell")


class CancelSession(Body):
    cancelled_by: CancelledBy
    reason_code: Code


class ChangeContract(Body):
    contracted_sessions: Integer = Field(ge=1, le=MAX_SESSIONS,
                                         description="the new session count, within the template's bounds")
    reason_code: Code = Field(description="coded reason for the new contract, e.g. slower_progress")


class Withdraw(Body):
    reason: Literal["withdrawal", "referral_on"] = "withdrawal"


class RecordChecklistItem(Body):
    diagnosis_code: Code | None = Field(default=None, description="diagnosis item: a coded diagnosis, e.g. f32.1")
    focus: Focus | None = Field(default=None, description="focus_confirmed item: the focus (default: the provisional one)")
    reason_code: Code | None = Field(default=None, description="focus_confirmed item: why the focus changed")


class StartMaintenance(Body):
    sessions: Integer = Field(ge=1, le=MAX_SESSIONS, description="monthly maintenance sessions in the new contract")
    reason_code: Code = "remission_at_end"


class AddParentSession(Body):
    starts_at: Timestamp = Field(description="the start, with a UTC offset: in the middle phase, bookable")


class WorkingHours(Body):
    timezone: TimeZoneName
    slots: list[WeeklySlotIn] = Field(min_length=1)

    @field_validator("slots")
    @classmethod
    def _ordered(cls, v: list[WeeklySlotIn]) -> list[WeeklySlotIn]:
        for i, s in enumerate(v):
            if s.start >= s.end:
                raise ValueError(f"slot {i}: start {s.start} must be before end {s.end}")
        return v


class ClosureDay(Body):
    reason_code: Code | None = Field(default=None, description="e.g. bank_holiday, training_day")


__all__ = ["AddParentSession", "CancelSession", "ChangeContract", "ClosureDay", "RecordChecklistItem", "RescheduleSession",
           "StartMaintenance", "Withdraw", "WorkingHours"]
