"""Intake's commands: what a caller asks for, validated at the edge (HTTP)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from rapport_shared.contracts import Availability, Focus, PseudonymousId, TargetCondition
from rapport_shared.contracts.base import Code


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpenReferral(Command):
    person_id: PseudonymousId = Field(description="pseudonymous person id from the caller's system")
    referral_source: Code = Field(description="coded source, e.g. gp, self, partner-clinic")
    target_condition: TargetCondition


class BaselineSubmission(Command):
    instrument: Code
    answers: dict[int, StrictInt] = Field(description="questionnaire item number → answer")
    administered_at: datetime


class CompleteIntake(Command):
    template_id: Code
    clinician_id: PseudonymousId
    focus: Focus
    availability: Availability
    baseline: list[BaselineSubmission] = Field(default_factory=list)
