"""Events on ``rapport.outcomes``."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from .topics import OUTCOMES
from .base import Code, EpisodeEventData, PseudonymousId


class Timepoint(StrEnum):
    baseline = "baseline"
    session = "session"
    end = "end"


class ReliableChange(StrEnum):
    improved = "improved"
    deteriorated = "deteriorated"
    no_reliable_change = "no_reliable_change"


class ReliableChangeCriterion(StrEnum):
    """How an instrument decides reliable change (domain.md 3.2, 3.4; docs/instruments.md)."""

    threshold = "threshold"  # a fixed number of points (PHQ-9 6, GAD-7 4: NHS Talking Therapies)
    jacobson_truax = "jacobson_truax"  # 1.96 · SD · √2 · √(1 − r) from a published SD and reliability
    none = "none"  # "no reliable-change criterion": no reliable change is decided, raw difference only


_CRITERION_DOC = ("how the instrument decides reliable change: threshold (fixed points), jacobson_truax (from a"
                  " published SD and reliability) or none = 'no reliable-change criterion' (reliable_change is then"
                  " always null and the change is the raw difference only)")
_CRITERION = _CRITERION_DOC + ". Null only from producers before this field was added"


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
        default=None, description="null when not determinable: no baseline yet, or the instrument has no"
                                  " reliable-change criterion (see reliable_change_criterion)"
    )
    flags: list[str] = Field(default_factory=list, description="coded flags, e.g. safety_item_positive")
    administered_at: datetime
    scored_at: datetime
    alert_ids: list[UUID] = Field(
        default_factory=list,
        description="alerts this submission raised or was linked to (a repeat positive joins the open alert)",
    )
    # Added in v1 as an optional field (older consumers ignore it).
    reliable_change_criterion: ReliableChangeCriterion | None = Field(default=None, description=_CRITERION)


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
    # Added in v1 as optional fields (older consumers ignore them).
    reliable_change_criterion: ReliableChangeCriterion | None = Field(default=None, description=_CRITERION)
    reliable_change_threshold: float | None = Field(
        default=None, description="the reliable-change threshold in score points; null when the criterion is none")


class ConditionMeasureStatus(StrEnum):
    paired = "paired"  # a baseline and a later score: change and reliable change are reported
    baseline_only = "baseline_only"  # no score after the baseline: missing at the end
    not_collected = "not_collected"  # no score at all


class ConditionMeasureOutcome(BaseModel):
    """A condition-specific measure reported beside the PHQ-9/GAD-7 pair (domain.md 3.4: EDE-Q for
    eating disorders, AUDIT for substance use). It does not enter the pair's classification."""

    model_config = ConfigDict(frozen=True)
    status: ConditionMeasureStatus
    reliable_change_criterion: ReliableChangeCriterion = Field(description=_CRITERION_DOC)
    reliable_change_threshold: float | None = Field(
        default=None, description="the reliable-change threshold in score points; null when the criterion is none")
    baseline_total: float | None = None
    final_total: float | None = None
    change: float | None = Field(default=None, description="final − baseline (raw difference); null unless paired")
    reliable_change: ReliableChange | None = Field(
        default=None, description="null unless paired and the instrument has a criterion; never guessed")
    caseness_at_baseline: bool | None = None
    caseness_at_end: bool | None = None
    baseline_submission_id: UUID | None = None
    final_submission_id: UUID | None = None


class InstrumentMeasurement(BaseModel):
    """One instrument of the measurement schedule (domain.md 3.4) over an episode's attended sessions."""

    model_config = ConfigDict(frozen=True)
    expected: int = Field(ge=0, description="attended sessions before which the measurement schedule expected it")
    received: int = Field(ge=0, description="of those, the sessions a score of it was recorded for")
    missing_sessions: list[int] = Field(default_factory=list, description="the session numbers it is missing for")


class MeasurementRecord(BaseModel):
    """Which instruments the measurement schedule (domain.md 3.4, per target condition) expected
    before the episode's attended sessions and which are missing. Optional instruments (HAM-D-17
    when a clinician rates it) are never expected."""

    model_config = ConfigDict(frozen=True)
    contracted_sessions: int | None = Field(
        default=None, ge=1, description="n, which places mid-course (session ceil(n/2)) and the end (session n)")
    sessions: list[int] = Field(default_factory=list, description="the attended sessions counted, by number")
    instruments: dict[str, InstrumentMeasurement] = Field(
        default_factory=dict, description="per instrument code expected at least once")
    missing: list[Code] = Field(default_factory=list,
                                description="the instruments missing for at least one session; empty when complete")


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
    # Added in v1 as an optional field (older consumers ignore it): a reader of this topic alone
    # cannot count on having read the course's end from rapport.course first.
    course_ended_at: datetime | None = Field(default=None, description="rapport.course.ended.v1 ended_at")
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
    # Added in v1 as an optional field (older consumers ignore it).
    condition_measures: dict[str, ConditionMeasureOutcome] = Field(
        default_factory=dict,
        description="the condition-specific measures of the episode's target condition, by instrument code, reported"
                    " beside the paired measures (domain.md 3.4: eating_disorder → edeq6, substance_use → audit);"
                    " each says whether it was collected and its reliable-change criterion")
    # Added in v1 as an optional field (older consumers ignore it).
    measurement: MeasurementRecord | None = Field(
        default=None, description="what the measurement schedule expected of the episode's attended sessions and"
                                  " which instruments are missing (domain.md 3.4); null from producers before it")
    revision: int = Field(
        default=1, ge=1,
        description="1: evaluated when the course ended; n > 1: evaluated again because a score administered"
                    " before the end was recorded after it and changed the result. The highest revision of an"
                    " episode supersedes the earlier ones (same episode, same key: they arrive in order)")
