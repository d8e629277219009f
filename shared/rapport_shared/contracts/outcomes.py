"""Events on ``rapport.outcomes``."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ..topics import OUTCOMES
from .base import Code, EpisodeEventData, PseudonymousId


class Timepoint(StrEnum):
    baseline = "baseline"
    session = "session"
    end = "end"


class ReliableChange(StrEnum):
    improved = "improved"
    deteriorated = "deteriorated"
    no_reliable_change = "no_reliable_change"


class ScoreSubmittedV1(EpisodeEventData):
    """A validated, scored questionnaire submission. Item answers stay in outcomes."""

    event_type = "rapport.score.submitted.v1"
    topic = OUTCOMES

    episode_id: UUID
    submission_id: UUID
    instrument: Code
    loinc_code: str | None = None
    timepoint: Timepoint
    session_number: int | None = Field(default=None, ge=1)
    total: float
    band: str | None = None
    caseness: bool | None = None
    subscales: dict[str, float] = Field(default_factory=dict)
    baseline_total: float | None = None
    change_from_baseline: float | None = None
    reliable_change: ReliableChange | None = Field(
        default=None, description="null when not determinable (no baseline, or no threshold configured)"
    )
    flags: list[str] = Field(default_factory=list, description="coded flags, e.g. safety_item_positive")
    administered_at: datetime
    scored_at: datetime
    alert_ids: list[UUID] = Field(
        default_factory=list,
        description="alerts this submission raised or was linked to (a repeat positive joins the open alert)",
    )


class AlertKind(StrEnum):
    safety = "safety"  # PHQ-9 item 9 > 0
    review = "review"  # reliable deterioration, or no reliable improvement by mid-course


class AlertUrgency(StrEnum):
    urgent = "urgent"
    routine = "routine"


class AlertRaisedV1(EpisodeEventData):
    """An alert for the assigned clinician. Never carries a 'risk score': the flag and its cause."""

    event_type = "rapport.alert.raised.v1"
    topic = OUTCOMES

    episode_id: UUID
    alert_id: UUID
    kind: AlertKind
    urgency: AlertUrgency
    reason_code: Code = Field(description="e.g. safety_item_positive, reliable_deterioration, no_reliable_improvement")
    clinician_id: PseudonymousId
    submission_id: UUID | None = None
    instrument: Code | None = None
    raised_at: datetime
    session_number: int | None = Field(
        default=None, ge=1, description="the course session the cause belongs to (review: the review session)"
    )
    # Added in v1 as an optional field (older consumers ignore it).
    linked_alert_ids: list[UUID] = Field(
        default_factory=list,
        description="earlier alerts of the same cause still open when this one was raised, oldest first (domain.md"
                    " 3.3: a new positive item 9 while an earlier alert is open is a new alert, sent again and"
                    " linked to the open one); empty for a first alert",
    )


class AlertAction(StrEnum):
    safety_plan = "safety_plan"
    assessment = "assessment"
    referral = "referral"
    other = "other"


class AlertResolvedV1(EpisodeEventData):
    """A clinician resolved an alert (who by pseudonymous id, when, which action; no free text)."""

    event_type = "rapport.alert.resolved.v1"
    topic = OUTCOMES

    episode_id: UUID
    alert_id: UUID
    kind: AlertKind
    resolved_by: PseudonymousId
    action: AlertAction
    resolved_at: datetime
    linked_submission_ids: list[UUID] = Field(
        default_factory=list, description="later submissions that were linked to this alert while it was open"
    )


class InstrumentOutcome(BaseModel):
    """One instrument's paired totals at the end of a course (baseline = first, final = latest)."""

    model_config = ConfigDict(frozen=True)
    baseline_total: float
    final_total: float
    change: float = Field(description="final − baseline; negative is a fall (improvement)")
    reliable_change: ReliableChange | None = None
    caseness_at_baseline: bool | None = None
    caseness_at_end: bool | None = None
    baseline_submission_id: UUID
    final_submission_id: UUID


class OutcomeEvaluatedV1(EpisodeEventData):
    """End-of-course classification (domain.md 3.2). ``None`` = not determinable."""

    event_type = "rapport.outcome.evaluated.v1"
    topic = OUTCOMES

    episode_id: UUID
    course_id: UUID | None = None
    finished_course: bool = Field(
        description="at least 2 attended treatment sessions (domain.md 3.2; sessions of the initial, assessment,"
                    " phase do not count: see treatment_sessions)")
    caseness_at_baseline: bool | None = None
    caseness_at_end: bool | None = None
    recovery: bool | None = None
    reliable_improvement: bool | None = None
    reliable_deterioration: bool | None = None
    reliable_recovery: bool | None = None
    response: bool | None = None
    remission: bool | None = None
    baseline_totals: dict[str, float] = Field(default_factory=dict)
    final_totals: dict[str, float] = Field(default_factory=dict)
    evaluated_at: datetime
    template_id: Code | None = None
    clinician_id: PseudonymousId | None = None
    end_reason: Code | None = Field(default=None, description="rapport.course.ended.v1 reason")
    attended_sessions: int | None = Field(default=None, ge=0)
    # Added in v1 as an optional field (older consumers ignore it).
    treatment_sessions: int | None = Field(
        default=None, ge=0,
        description="attended sessions that count as treatment for finished_course: attended_sessions less those"
                    " of the assessment phase(s) (default: initial); null when outcomes did not see the course's"
                    " attendance from its start (then finished_course counts every attended session)")
    counts_toward_recovery: bool | None = Field(
        default=None, description="at caseness at baseline: only these episodes count toward recovery"
    )
    paired_measures: list[Code] = Field(default_factory=list, description="the paired measures the episode had")
    instruments: dict[str, InstrumentOutcome] = Field(default_factory=dict)
    revision: int = Field(
        default=1, ge=1,
        description="1: evaluated when the course ended; n > 1: evaluated again because a score administered"
                    " before the end was recorded after it and changed the result. The highest revision of an"
                    " episode supersedes the earlier ones (same episode, same key: they arrive in order)")
