"""End-of-course evaluation and the configurable policy (domain.md 3.2), pure."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from rapport_outcomes.domain.evaluation import ScorePoint, evaluate, pairs_from, treatment_sessions
from rapport_outcomes.domain.policy import OutcomesPolicy

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
POLICY = OutcomesPolicy()


def series(instrument: str, totals: list[int]) -> list[ScorePoint]:
    return [ScorePoint(uuid.uuid4(), instrument, t, T0 + timedelta(weeks=i), i) for i, t in enumerate(totals)]


def test_the_issue_scenario_is_reliable_recovery() -> None:
    # baseline PHQ-9 18 and GAD-7 12; the last PHQ-9 4 and GAD-7 5
    points = series("phq9", [18, 16, 14, 11, 8, 4]) + series("gad7", [12, 11, 10, 8, 6, 5])
    ev = evaluate(points, attended_sessions=16, target_condition="depression", policy=POLICY)
    c = ev.classification
    assert ev.finished_course is True
    assert (c.caseness_at_baseline, c.caseness_at_end, c.recovery, c.reliable_improvement, c.reliable_deterioration,
            c.reliable_recovery, c.response, c.remission) == (True, False, True, True, False, True, True, True)
    out = ev.instruments()
    assert (out["phq9"].baseline_total, out["phq9"].final_total, out["phq9"].change) == (18, 4, -14)
    assert (out["gad7"].baseline_total, out["gad7"].final_total, out["gad7"].change) == (12, 5, -7)
    assert out["phq9"].baseline_submission_id == points[0].submission_id


@pytest.mark.parametrize(
    ("phq9", "gad7", "improvement", "deterioration", "recovery", "reliable_recovery"),
    [
        # two-measure rule: improvement on at least one and reliable deterioration on neither
        ([18, 12], [12, 12], True, False, False, False),  # PHQ-9 improves, GAD-7 still a case
        ([18, 12], [12, 16], False, True, False, False),  # GAD-7 deteriorates exactly at threshold
        ([18, 12], [12, 15], True, False, False, False),  # one below the GAD-7 threshold
        ([18, 9], [12, 7], True, False, True, True),  # both below caseness (9 < 10, 7 < 8)
        ([18, 10], [12, 7], True, False, False, False),  # PHQ-9 exactly at caseness at the end
        ([18, 13], [12, 7], True, False, False, False),  # fall of 5 on PHQ-9 (one below), GAD-7 improves
        ([18, 13], [12, 9], False, False, False, False),  # one below each threshold: no reliable change
        ([9, 3], [7, 2], True, False, None, None),  # not at caseness at baseline: no recovery verdict
    ],
)
def test_two_measure_rules(phq9, gad7, improvement, deterioration, recovery, reliable_recovery) -> None:
    points = series("phq9", phq9) + series("gad7", gad7)
    c = evaluate(points, attended_sessions=8, target_condition="depression", policy=POLICY).classification
    assert (c.reliable_improvement, c.reliable_deterioration, c.recovery, c.reliable_recovery) == (
        improvement, deterioration, recovery, reliable_recovery)


@pytest.mark.parametrize(("attended", "finished"), [(0, False), (1, False), (2, True), (16, True)])
def test_finished_course_needs_two_attended_sessions(attended: int, finished: bool) -> None:
    ev = evaluate(series("phq9", [18, 4]), attended_sessions=attended, target_condition=None, policy=POLICY)
    assert ev.finished_course is finished


@pytest.mark.parametrize(
    ("attended", "assessment", "treatment", "finished"),
    [
        # domain.md 3.2: "at least 2 attended treatment sessions"; the initial (assessment) phase does not count
        (4, 3, 1, False),  # sessions 1-3 initial, one middle session: one below
        (5, 3, 2, True),  # exactly two treatment sessions
        (4, 2, 2, True),  # checklist complete at session 2: middle from 3
        (3, 3, 0, False),  # ended after the initial phase: assessment only
        (6, 6, 0, False),  # checklist never completed before the end: still assessment only
        (16, 3, 13, True),
        (0, 0, 0, False),
        (3, None, None, True),  # attendance not seen from the start (before the upgrade): every session counts
        (1, None, None, False),
    ],
)
def test_finished_course_counts_treatment_sessions(attended, assessment, treatment, finished) -> None:
    assert treatment_sessions(attended, assessment) == treatment
    ev = evaluate(series("phq9", [18, 4]), attended_sessions=attended, treatment_sessions=treatment,
                  target_condition=None, policy=POLICY)
    assert (ev.finished_course, ev.treatment_sessions, ev.attended_sessions) == (finished, treatment, attended)


def test_treatment_sessions_unknown_when_attendance_was_seen_only_in_part() -> None:
    assert treatment_sessions(5, 3, seen_attended=5) == 2
    assert treatment_sessions(5, 0, seen_attended=0) is None  # only the course's end was seen here
    assert treatment_sessions(5, 3, seen_attended=4) is None


def test_assessment_phases_are_configurable_and_checked() -> None:
    assert POLICY.is_assessment("initial") and not POLICY.is_assessment("middle") and not POLICY.is_assessment(None)
    assert not OutcomesPolicy(assessment_phases=frozenset()).is_assessment("initial")
    with pytest.raises(ValueError, match="assessment_phases"):
        OutcomesPolicy(assessment_phases=frozenset({"assessment"}))


def test_pairs_are_first_and_latest_by_time_then_recording_order() -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    points = [ScorePoint(c, "phq9", 4, T0 + timedelta(weeks=2), 3), ScorePoint(a, "phq9", 18, T0, 1),
              ScorePoint(b, "phq9", 9, T0 + timedelta(weeks=2), 2)]
    pair = pairs_from(points)["phq9"]
    assert (pair.baseline.submission_id, pair.final.submission_id) == (a, c)


def test_a_single_score_is_its_own_pair() -> None:
    ev = evaluate(series("phq9", [18]), attended_sessions=3, target_condition=None, policy=POLICY)
    assert ev.classification.reliable_improvement is False and ev.classification.recovery is False


def test_no_scores_means_nothing_determinable() -> None:
    c = evaluate([], attended_sessions=3, target_condition=None, policy=POLICY).classification
    assert (c.caseness_at_baseline, c.recovery, c.reliable_improvement, c.response) == (None, None, None, None)


def test_paired_measures_per_condition_are_configurable() -> None:
    # an anxiety programme that pairs PHQ-9 with AUDIT would have no GAD-7 in its recovery rule
    policy = OutcomesPolicy(paired_measures_by_condition={"anxiety": ("phq9",)})
    points = series("phq9", [18, 4]) + series("gad7", [12, 12])
    assert evaluate(points, attended_sessions=4, target_condition="anxiety", policy=policy).classification.recovery is True
    assert evaluate(points, attended_sessions=4, target_condition="depression", policy=policy).classification.recovery is False


def test_a_paired_measure_without_caseness_is_refused_at_configuration() -> None:
    with pytest.raises(ValueError):
        OutcomesPolicy(paired_measures_by_condition={"depression": ("phq9", "wsas")})


@pytest.mark.parametrize(
    ("template", "contracted", "fraction", "by_template", "expected"),
    [
        ("ipt-standard", 16, 0.5, {}, 8),
        ("ipt-12", 12, 0.5, {}, 6),
        ("ipt-brief", 8, 0.5, {}, 4),
        ("ipt-ed", 20, 0.5, {}, 10),
        ("x", 15, 0.5, {}, 8),  # rounded up: at least half the course has happened
        ("x", 10, 0.3, {}, 3),  # exact arithmetic (0.3 × 10 is 3, not 3.0000000000000004 → 4)
        ("x", 1, 0.5, {}, 1),
        ("ipt-brief", 8, 0.5, {"ipt-brief": 3}, 3),  # a per-template session wins
        ("ipt-12", 12, 0.5, {"ipt-brief": 3}, 6),
    ],
)
def test_review_session(template, contracted, fraction, by_template, expected) -> None:
    policy = OutcomesPolicy(review_session_fraction=fraction, review_session_by_template=by_template)
    assert policy.review_session(template, contracted) == expected
