"""End-of-course evaluation (domain.md 3.2): paired scores → the episode's classification.

Paired scores per instrument: the first score of the episode (baseline) and the latest. The
classification rules (caseness, recovery, reliable improvement/deterioration with the two-measure
rules, response, remission) are the shared ``classify_episode``; this module picks the pairs,
the programme's paired measures and the finished-course flag, and reports the target condition's
own measures beside the pair (domain.md 3.4: EDE-Q for eating disorders, AUDIT for substance use),
each with its reliable-change criterion ("none": raw difference only, never a silent null).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Mapping
from uuid import UUID

from rapport_shared.contracts.outcomes import (
    ConditionMeasureOutcome,
    ConditionMeasureStatus,
    InstrumentOutcome,
    ReliableChange,
    ReliableChangeCriterion,
)
from rapport_shared.instruments import Catalogue, EpisodeClassification, InstrumentChange, classify_episode

from .policy import OutcomesPolicy


@dataclass(frozen=True)
class ScorePoint:
    submission_id: UUID
    instrument: str
    total: int | float
    administered_at: datetime
    recorded_seq: int = 0


@dataclass(frozen=True)
class Pair:
    instrument: str
    baseline: ScorePoint
    final: ScorePoint


def pairs_from(points: Iterable[ScorePoint]) -> dict[str, Pair]:
    """First and latest score of each instrument (ties on time broken by recording order)."""
    by_instrument: dict[str, list[ScorePoint]] = {}
    for p in points:
        by_instrument.setdefault(p.instrument, []).append(p)
    pairs = {}
    for code, pts in sorted(by_instrument.items()):
        pts.sort(key=lambda p: (p.administered_at, p.recorded_seq))
        pairs[code] = Pair(code, pts[0], pts[-1])
    return pairs


def _reliable(change: InstrumentChange) -> ReliableChange | None:
    return ReliableChange(change.reliable_change) if change.reliable_change else None


@dataclass(frozen=True)
class Evaluation:
    finished_course: bool
    attended_sessions: int
    treatment_sessions: int | None
    classification: EpisodeClassification
    pairs: Mapping[str, Pair]
    condition_measure_codes: tuple[str, ...] = ()
    catalogue: Catalogue | None = None

    def instruments(self) -> dict[str, InstrumentOutcome]:
        out = {}
        for code, change in self.classification.instruments.items():
            pair = self.pairs[code]
            out[code] = InstrumentOutcome(
                baseline_total=change.baseline, final_total=change.latest, change=change.change,
                reliable_change=_reliable(change),
                caseness_at_baseline=change.caseness_at_baseline, caseness_at_end=change.caseness_at_end,
                baseline_submission_id=pair.baseline.submission_id, final_submission_id=pair.final.submission_id,
                reliable_change_criterion=ReliableChangeCriterion(change.criterion),
                reliable_change_threshold=change.threshold,
            )
        return out

    def condition_measures(self) -> dict[str, ConditionMeasureOutcome]:
        """The target condition's own measures, beside the pair: paired (baseline and a later score),
        baseline only (missing at the end: no change is reported, not "no change"), or not collected."""
        out = {}
        for code in self.condition_measure_codes:
            change = self.classification.instruments.get(code)
            pair = self.pairs.get(code)
            if change is None or pair is None:
                assert self.catalogue is not None, "an evaluation with condition measures carries its catalogue"
                d = self.catalogue.get(code)
                out[code] = ConditionMeasureOutcome(
                    status=ConditionMeasureStatus.not_collected,
                    reliable_change_criterion=ReliableChangeCriterion(d.reliable_change_criterion),
                    reliable_change_threshold=d.reliable_change_threshold)
                continue
            criterion = ReliableChangeCriterion(change.criterion)
            if pair.baseline.submission_id == pair.final.submission_id:
                out[code] = ConditionMeasureOutcome(
                    status=ConditionMeasureStatus.baseline_only, reliable_change_criterion=criterion,
                    reliable_change_threshold=change.threshold, baseline_total=change.baseline,
                    caseness_at_baseline=change.caseness_at_baseline,
                    baseline_submission_id=pair.baseline.submission_id)
                continue
            out[code] = ConditionMeasureOutcome(
                status=ConditionMeasureStatus.paired, reliable_change_criterion=criterion,
                reliable_change_threshold=change.threshold, baseline_total=change.baseline,
                final_total=change.latest, change=change.change, reliable_change=_reliable(change),
                caseness_at_baseline=change.caseness_at_baseline, caseness_at_end=change.caseness_at_end,
                baseline_submission_id=pair.baseline.submission_id, final_submission_id=pair.final.submission_id)
        return out


def classify(points: Iterable[ScorePoint], target_condition: str | None, policy: OutcomesPolicy) -> tuple[dict[str, Pair], EpisodeClassification]:
    pairs = pairs_from(points)
    classification = classify_episode(
        {code: (p.baseline.total, p.final.total) for code, p in pairs.items()},
        paired_measures=policy.paired_measures(target_condition),
        catalogue=policy.catalogue,
    )
    return pairs, classification


def treatment_sessions(attended_sessions: int, assessment_sessions: int | None, seen_attended: int | None = None) -> int | None:
    """Attended treatment sessions (domain.md 3.2) from the course's attended count and the highest
    position attended in an assessment phase (positions are attended in order, 1..k, and the
    assessment phase comes first, so those are the first ones). None when that is unknown: no
    record, or fewer attended sessions seen here (``seen_attended``) than the course reports."""
    if assessment_sessions is None or (seen_attended is not None and seen_attended < attended_sessions):
        return None
    return max(0, attended_sessions - assessment_sessions)


def evaluate(points: Iterable[ScorePoint], *, attended_sessions: int, target_condition: str | None,
             policy: OutcomesPolicy, treatment_sessions: int | None = None) -> Evaluation:
    """``treatment_sessions``: attended sessions less the assessment ones (domain.md 3.2, "at least 2
    attended treatment sessions"); None when not known (then every attended session counts)."""
    pairs, classification = classify(points, target_condition, policy)
    return Evaluation(
        finished_course=policy.is_finished_course(attended_sessions if treatment_sessions is None else treatment_sessions),
        attended_sessions=attended_sessions,
        treatment_sessions=treatment_sessions,
        classification=classification,
        pairs=pairs,
        condition_measure_codes=policy.condition_measures(target_condition),
        catalogue=policy.catalogue,
    )
