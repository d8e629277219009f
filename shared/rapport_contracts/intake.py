"""Events on ``rapport.intake``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from .topics import INTAKE
from .base import Code, EventData, ProblemArea, PseudonymousId, TargetCondition

HHMM = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class Focus(BaseModel):
    model_config = ConfigDict(frozen=True)
    primary: ProblemArea
    secondary: ProblemArea | None = None


class WeeklySlot(BaseModel):
    """A window in which the patient can attend a weekly session (local time of ``timezone``)."""

    model_config = ConfigDict(frozen=True)
    weekday: int = Field(ge=1, le=7, description="ISO weekday, 1 = Monday")
    start: HHMM
    end: HHMM


class Availability(BaseModel):
    model_config = ConfigDict(frozen=True)
    timezone: str = Field(description="IANA time zone, e.g. Europe/London")
    slots: list[WeeklySlot] = Field(min_length=1)


class BaselineScore(BaseModel):
    model_config = ConfigDict(frozen=True)
    instrument: Code = Field(description="instrument code in the catalogue, e.g. phq9")
    answers: dict[int, StrictInt] = Field(description="questionnaire item number → answer (coded integers)")
    total: float
    band: str | None = None
    caseness: bool | None = None
    flags: list[str] = Field(default_factory=list, description="coded flags, e.g. safety_item_positive")
    administered_at: datetime


class RiskReviewSummary(BaseModel):
    """A clinician's risk review at intake that cleared a positive safety item (coded; no notes)."""

    model_config = ConfigDict(frozen=True)
    decision: Code = Field(description="proceed (a 'decline: crisis referral' decision declines the intake instead)")
    reviewed_at: datetime


class IntakeCompletedV1(EventData):
    """Intake finished; the person is eligible; a course can be planned."""

    event_type = "rapport.intake.completed.v1"
    topic = INTAKE

    episode_id: UUID
    person_id: PseudonymousId
    target_condition: TargetCondition
    template_id: Code
    focus: Focus
    clinician_id: PseudonymousId
    availability: Availability
    baseline_scores: list[BaselineScore] = Field(default_factory=list)
    referred_at: datetime
    completed_at: datetime
    # Added in v1 as optional fields (older consumers ignore them; older producers omit them).
    referral_source: Code | None = Field(default=None, description="coded referral source, e.g. gp, self")
    risk_review: RiskReviewSummary | None = Field(
        default=None, description="present when a baseline safety item was positive and a clinician reviewed it")
    organisation_id: PseudonymousId | None = Field(
        default=None, description="the organisation the episode belongs to (pseudonymous code; scopes who may see "
                                  "its records). Optional in v1 for older producers; Rapport always sets it")
    intake_clinician_id: PseudonymousId | None = Field(
        default=None, description="who carried out the intake (care-team relation 'assigned' for the intake record)")
    share_outcomes_with_referrer: bool = Field(
        default=False, description="the person consented at intake to the end-of-course outcome summary going to "
                                   "the referrer (domain.md 4); absent in older records: not given")


class IntakeDeclinedV1(EventData):
    """Excluded or withdrawn at intake; no course may start for this episode."""

    event_type = "rapport.intake.declined.v1"
    topic = INTAKE

    episode_id: UUID
    person_id: PseudonymousId
    reason_code: Code
    declined_at: datetime
    # Added in v1 as optional fields.
    reason_codes: list[Code] = Field(default_factory=list, description="every reason, reason_code first")
    template_id: Code | None = Field(default=None, description="the template eligibility was decided against, if chosen")
    organisation_id: PseudonymousId | None = Field(
        default=None, description="the organisation the episode belongs to (pseudonymous code). Optional in v1 for "
                                  "older producers; Rapport always sets it")
