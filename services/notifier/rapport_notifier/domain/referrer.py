"""The end-of-course summary for the referrer (domain.md 4; issue 15 item 5): what it carries and
who may receive it. Pure: no I/O.

The summary goes, with the person's consent recorded at intake
(``rapport.intake.completed.v1`` ``share_outcomes_with_referrer``), to the organisation the episode
belongs to through its webhook subscriptions, once per episode, from the first evaluation only;
the same rule (``may_share``) decides whether ``rapport.outcome.evaluated.v1`` itself is pushed to
that organisation's subscriptions.
It carries pseudonymous ids, coded facts, totals, counts and dates: never a name, a contact
detail or free text (docs/partners.md, "The referrer summary")."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from rapport_shared.contracts.outcomes import OutcomeEvaluatedV1
from rapport_shared.envelope import format_time

from .rules import NAMESPACE

REFERRER_SUMMARY_TYPE = "rapport.referrer.summary.v1"  # the body's CloudEvents type (webhooks only)
SOURCE = "/rapport/notifier"
NO_REFERRER_CHANNEL = "no_referrer_channel"
# Referral sources whose referrer is the person themself: there is nobody else to tell.
SELF_REFERRAL = frozenset({"self"})


class Measure(BaseModel):
    """One instrument's totals at baseline and at the end, and how it changed (coded)."""

    model_config = ConfigDict(frozen=True)
    baseline_total: float | None = None
    final_total: float | None = None
    change: float | None = None
    reliable_change: str | None = None  # improved | deteriorated | no_reliable_change; null: not determinable
    caseness_at_baseline: bool | None = None
    caseness_at_end: bool | None = None


class ConditionMeasure(Measure):
    status: str  # paired | baseline_only | not_collected
    reliable_change_criterion: str  # threshold | jacobson_truax | none


class ReferrerSummary(BaseModel):
    """The ``data`` of the referrer summary (docs/partners.md lists each field)."""

    model_config = ConfigDict(frozen=True)
    episode_id: uuid.UUID
    person_id: str | None
    organisation_id: str | None
    course_id: uuid.UUID | None
    revision: int
    finished_course: bool
    caseness_at_baseline: bool | None
    caseness_at_end: bool | None
    recovery: bool | None
    reliable_improvement: bool | None
    reliable_deterioration: bool | None
    reliable_recovery: bool | None
    response: bool | None
    remission: bool | None
    end_reason: str | None
    attended_sessions: int | None
    treatment_sessions: int | None
    course_ended_at: str | None
    evaluated_at: str
    measures: dict[str, Measure]
    condition_measures: dict[str, ConditionMeasure]


def first_evaluation(data: OutcomeEvaluatedV1) -> bool:
    """The summary follows the first evaluation only: a revision never sends a second one."""
    return data.revision == 1


def organisation_is_referrer(referral_source: str | None) -> bool:
    """Whether the episode's organisation stands for its referrer: not for a self-referral, whose
    only referrer is the person (whatever organisation's form it came through)."""
    return referral_source not in SELF_REFERRAL


def may_share(episode: dict | None) -> bool:
    """Whether the episode's outcome may go to its organisation's partner webhooks (the summary,
    and ``rapport.outcome.evaluated.v1`` itself): the person consented at intake and the
    organisation is the referrer. An episode the notifier has no intake for: not given."""
    return bool(episode and episode["share_outcomes_with_referrer"]
                and organisation_is_referrer(episode["referral_source"]))


def summary(data: OutcomeEvaluatedV1, *, person_id: str | None, organisation_id: str | None,
            ended_at: datetime | None) -> ReferrerSummary:
    measures = {code: Measure(baseline_total=m.baseline_total, final_total=m.final_total, change=m.change,
                              reliable_change=m.reliable_change and m.reliable_change.value,
                              caseness_at_baseline=m.caseness_at_baseline, caseness_at_end=m.caseness_at_end)
                for code, m in data.instruments.items()}
    # An older producer's evaluation has totals without per-instrument detail.
    for code in sorted(set(data.baseline_totals) | set(data.final_totals)):
        measures.setdefault(code, Measure(baseline_total=data.baseline_totals.get(code),
                                          final_total=data.final_totals.get(code)))
    conditions = {code: ConditionMeasure(status=m.status.value, reliable_change_criterion=m.reliable_change_criterion.value,
                                         baseline_total=m.baseline_total, final_total=m.final_total, change=m.change,
                                         reliable_change=m.reliable_change and m.reliable_change.value,
                                         caseness_at_baseline=m.caseness_at_baseline,
                                         caseness_at_end=m.caseness_at_end)
                  for code, m in data.condition_measures.items()}
    return ReferrerSummary(
        episode_id=data.episode_id, person_id=person_id, organisation_id=organisation_id, course_id=data.course_id,
        revision=data.revision, finished_course=data.finished_course, caseness_at_baseline=data.caseness_at_baseline,
        caseness_at_end=data.caseness_at_end, recovery=data.recovery, reliable_improvement=data.reliable_improvement,
        reliable_deterioration=data.reliable_deterioration, reliable_recovery=data.reliable_recovery,
        response=data.response, remission=data.remission, end_reason=data.end_reason,
        attended_sessions=data.attended_sessions, treatment_sessions=data.treatment_sessions,
        course_ended_at=format_time(ended_at) if ended_at else None, evaluated_at=format_time(data.evaluated_at),
        measures=dict(sorted(measures.items())), condition_measures=dict(sorted(conditions.items())))


def summary_id(episode_id: uuid.UUID) -> str:
    """The summary's id: one per episode, the same at every endpoint (a partner dedupes on it)."""
    return str(uuid.uuid5(NAMESPACE, f"referrer_summary/{episode_id}"))


def body(s: ReferrerSummary) -> str:
    """The webhook body: a CloudEvent in structured JSON like every partner webhook (identical on
    every retry), of a type that exists only on webhooks (no schema in the event catalogue)."""
    return json.dumps({"specversion": "1.0", "id": summary_id(s.episode_id), "source": SOURCE,
                       "type": REFERRER_SUMMARY_TYPE, "subject": str(s.episode_id), "time": s.evaluated_at,
                       "datacontenttype": "application/json", "data": s.model_dump(mode="json")},
                      separators=(",", ":"), sort_keys=True)
