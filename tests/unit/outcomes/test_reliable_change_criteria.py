"""Issue 15 item 2: a reliable-change criterion for every catalogue instrument, stated in its data
with its sources, and said explicitly in every output ("no reliable-change criterion", raw
difference only) where none was found; the target condition's own measure (EDE-Q for eating
disorders, AUDIT for substance use) reported beside the PHQ-9/GAD-7 pair (domain.md 3.4)."""

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime, timedelta, timezone
from importlib import resources

import pytest
from outcomes_fakes import FakeOutcomes

from rapport_outcomes.domain import cohort
from rapport_outcomes.domain.commands import Actor, SubmitQuestionnaire, SubmitScores
from rapport_outcomes.domain.evaluation import ScorePoint, evaluate
from rapport_outcomes.domain.policy import OutcomesPolicy
from rapport_outcomes.service_layer import views
from rapport_shared.contracts import IntakeCompletedV1
from rapport_shared.contracts.course import CourseEndedV1
from rapport_shared.contracts.outcomes import (
    AlertRaisedV1,
    ConditionMeasureStatus,
    OutcomeEvaluatedV1,
    ReliableChangeCriterion,
    ScoreSubmittedV1,
)
from rapport_shared.instruments import (
    Catalogue,
    CatalogueError,
    classify_instrument,
    jacobson_truax,
    load_catalogue,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
EXPECTED = {"phq9": "threshold", "gad7": "threshold", "wsas": "jacobson_truax", "hamd17": "none", "edeq6": "none",
            "audit": "none"}


def raw(code: str) -> dict:
    path = resources.files("rapport_shared.instruments") / "data" / f"{code}.json"
    return json.loads(path.read_text(encoding="utf-8"))


# ---- the catalogue ---------------------------------------------------------------------------

def test_every_instrument_states_its_criterion_and_its_sources() -> None:
    assert sorted(EXPECTED) == sorted(load_catalogue().codes)
    for code, criterion in EXPECTED.items():
        rule = raw(code)["reliable_change"]
        assert rule["criterion"] == criterion, code  # stated in the file, not inferred
        assert rule["source"], code
        if criterion == "none":
            assert rule["source"].startswith("no reliable-change criterion") and "Searched:" in rule["source"]
            assert (rule["threshold"], rule["sd"], rule["reliability"]) == (None, None, None)
            continue
        # Every value the criterion uses is cited by value, with authors, year, sample and statistic.
        cited = {c["value"] for c in rule["citations"]}
        used = {rule["threshold"]} if criterion == "threshold" else {rule["sd"], rule["reliability"]}
        assert used <= cited, code
        for c in rule["citations"]:
            assert c["authors"] and c["year"] and c["sample"] and c["statistic"] and c["published_in"]


def test_phq9_and_gad7_keep_their_nhs_talking_therapies_thresholds() -> None:
    catalogue = load_catalogue()
    assert (catalogue.get("phq9").reliable_change_threshold, catalogue.get("gad7").reliable_change_threshold) == (6, 4)
    for code in ("phq9", "gad7"):
        [citation] = raw(code)["reliable_change"]["citations"]
        assert citation["authors"].startswith("Saunders R") and citation["year"] == 2021


def test_wsas_is_jacobson_truax_from_the_published_sd_and_retest_reliability() -> None:
    d = load_catalogue().get("wsas")
    assert (d.reliable_change.sd, d.reliable_change.reliability) == (8.9, 0.73)
    assert d.reliable_change_threshold == pytest.approx(1.96 * 8.9 * math.sqrt(2) * math.sqrt(0.27))
    assert d.reliable_change_threshold == pytest.approx(12.82, abs=0.005) == jacobson_truax(8.9, 0.73)
    assert "two different samples" in d.reliable_change.caveats
    # Integer totals: a change of 13 is reliable, 12 is not.
    assert [classify_instrument("wsas", 20, latest).reliable_change for latest in (33, 32, 7, 8)] == [
        "deteriorated", "no_reliable_change", "improved", "no_reliable_change"]


@pytest.mark.parametrize("code", ["hamd17", "edeq6", "audit"])
def test_no_criterion_decides_nothing_and_says_so(code: str) -> None:
    d = load_catalogue().get(code)
    low, high = d.total_range.min, d.total_range.max
    change = classify_instrument(code, low, high)
    assert (change.criterion, change.threshold, change.reliable_change) == ("none", None, None)
    assert change.change == high - low  # the raw difference is still reported


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ({"criterion": "none", "threshold": 5}, "does not match"),
        ({"criterion": "threshold"}, "does not match"),
        ({"criterion": "jacobson_truax", "threshold": 5}, "does not match"),
        ({"criterion": "sometimes"}, "criterion"),
    ],
)
def test_a_criterion_that_disagrees_with_its_values_is_refused(rule: dict, error: str) -> None:
    data = raw("wsas")
    data["reliable_change"] = rule
    with pytest.raises(CatalogueError, match=error):
        Catalogue.from_data([data])


def test_a_clinics_older_data_without_a_criterion_infers_it() -> None:
    data = raw("audit")
    data["reliable_change"] = {"threshold": None, "sd": 5, "reliability": 0.8, "source": "clinic"}
    assert Catalogue.from_data([data]).get("audit").reliable_change_criterion == "jacobson_truax"
    data["reliable_change"] = {"source": "clinic"}
    assert Catalogue.from_data([data]).get("audit").reliable_change_criterion == "none"


# ---- the evaluation: condition-specific measures beside the pair --------------------------------

def series(instrument: str, totals: list[float]) -> list[ScorePoint]:
    return [ScorePoint(uuid.uuid4(), instrument, t, T0 + timedelta(weeks=i), i) for i, t in enumerate(totals)]


def test_eating_disorders_report_edeq_beside_the_pair_with_no_criterion() -> None:
    points = series("phq9", [18, 4]) + series("gad7", [12, 5]) + series("edeq6", [4.5, 1.0])
    ev = evaluate(points, attended_sessions=16, target_condition="eating_disorder", policy=OutcomesPolicy())
    assert ev.classification.paired_measures == ("phq9", "gad7")  # the pair still decides the classification
    [(code, m)] = ev.condition_measures().items()
    assert code == "edeq6" and m.status == ConditionMeasureStatus.paired
    assert (m.reliable_change_criterion, m.reliable_change_threshold, m.reliable_change) == (
        ReliableChangeCriterion.none, None, None)
    assert (m.baseline_total, m.final_total, m.change, m.caseness_at_baseline, m.caseness_at_end) == (
        4.5, 1.0, -3.5, True, False)
    assert ev.instruments()["edeq6"].reliable_change_criterion == ReliableChangeCriterion.none


@pytest.mark.parametrize(
    ("points", "status", "baseline"),
    [
        (series("audit", [24]), ConditionMeasureStatus.baseline_only, 24),  # missing at the end
        ([], ConditionMeasureStatus.not_collected, None),
    ],
)
def test_a_missing_condition_measure_is_named_not_counted_as_no_change(points, status, baseline) -> None:
    ev = evaluate(series("phq9", [18, 4]) + points, attended_sessions=8, target_condition="substance_use",
                  policy=OutcomesPolicy())
    m = ev.condition_measures()["audit"]
    assert (m.status, m.baseline_total, m.change, m.reliable_change, m.reliable_change_criterion) == (
        status, baseline, None, None, ReliableChangeCriterion.none)


def test_depression_and_anxiety_have_no_condition_measure_unless_configured() -> None:
    points = series("phq9", [18, 4]) + series("wsas", [30, 10])
    for condition in ("depression", "anxiety", None):
        assert evaluate(points, attended_sessions=8, target_condition=condition,
                        policy=OutcomesPolicy()).condition_measures() == {}
    policy = OutcomesPolicy(condition_measures_by_condition={"anxiety": ("wsas",)})
    m = evaluate(points, attended_sessions=8, target_condition="anxiety", policy=policy).condition_measures()["wsas"]
    assert (m.reliable_change_criterion, m.reliable_change) == (ReliableChangeCriterion.jacobson_truax, "improved")


def test_a_condition_measure_must_exist_and_not_be_a_paired_one() -> None:
    with pytest.raises(LookupError):
        OutcomesPolicy(condition_measures_by_condition={"eating_disorder": ("edeq7",)})
    with pytest.raises(ValueError, match="paired"):
        OutcomesPolicy(condition_measures_by_condition={"eating_disorder": ("gad7",)})


# ---- the service: events, alerts, views, cohort ----------------------------------------------


def answers(code: str, value: int) -> dict[str, int]:
    """Every item at ``value`` (within its range); PHQ-9 item 9 always 0: no safety alert here."""
    d = load_catalogue().get(code)
    out = {str(i.number): min(max(value, i.lowest), i.highest) if i.allowed is None else
           max(v for v in i.allowed if v <= max(value, i.allowed[0])) for i in d.items}
    return {**out, "9": 0} if code == "phq9" else out


def intake(fake: FakeOutcomes, condition: str, baseline: dict[str, dict[str, int]]) -> IntakeCompletedV1:
    referred = fake.clock.now() - timedelta(days=30)
    return IntakeCompletedV1(
        episode_id=uuid.uuid4(), person_id=f"P-{uuid.uuid4().hex[:10]}", target_condition=condition,
        template_id="ipt-ed" if condition == "eating_disorder" else "ipt-standard", focus={"primary": "role_dispute"},
        clinician_id="clin-1",
        availability={"timezone": "Europe/London", "slots": [{"weekday": 2, "start": "09:00", "end": "12:00"}]},
        baseline_scores=[{"instrument": code, "answers": a, "total": 0.0, "administered_at": referred + timedelta(hours=1)}
                         for code, a in baseline.items()],
        referred_at=referred, completed_at=referred + timedelta(hours=2), organisation_id="org-test")


def submit(data: IntakeCompletedV1, code: str, a: dict[str, int], at: datetime, **over) -> SubmitQuestionnaire:
    return SubmitQuestionnaire(episode_id=data.episode_id, actor=Actor(data.person_id, frozenset({"patient_app"})),
                               scores=SubmitScores(client_submission_id=f"app-{uuid.uuid4().hex}", instrument=code,
                                                   answers=a, administered_at=at, **over))


def ended(data: IntakeCompletedV1, at: datetime, attended: int = 16) -> CourseEndedV1:
    return CourseEndedV1(episode_id=data.episode_id, course_id=uuid.uuid4(), template_id=data.template_id,
                         clinician_id="clin-1", reason="completed", final_phase="completed",
                         attended_sessions=attended, contracted_sessions=16, ended_at=at)


async def test_an_eating_disorder_course_reports_edeq_beside_the_pair_in_every_output() -> None:
    fake = FakeOutcomes()
    data = intake(fake, "eating_disorder", {"phq9": answers("phq9", 2), "gad7": answers("gad7", 2),
                                             "edeq6": answers("edeq6", 5), "wsas": answers("wsas", 2)})
    await fake.deliver(data)
    now = fake.clock.now()
    for code, value in (("phq9", 0), ("gad7", 0), ("edeq6", 1), ("wsas", 6)):
        await fake.handle(submit(data, code, answers(code, value), now - timedelta(hours=2), timepoint="end"))
    await fake.deliver(ended(data, now - timedelta(hours=1)))

    # The score events name the criterion, the EDE-Q's "none".
    by_code = {(e.instrument, e.timepoint): e for e in fake.of_type(ScoreSubmittedV1)}
    assert by_code[("edeq6", "end")].reliable_change_criterion == ReliableChangeCriterion.none
    assert (by_code[("edeq6", "end")].reliable_change, by_code[("edeq6", "end")].change_from_baseline) == (None, -4.0)
    assert by_code[("phq9", "end")].reliable_change_criterion == ReliableChangeCriterion.threshold
    # WSAS 10 → 30: a rise of 20 ≥ 12.82, a reliable deterioration, so the review notice the pair gives.
    assert by_code[("wsas", "end")].reliable_change == "deteriorated"
    [review] = fake.of_type(AlertRaisedV1)
    assert (review.kind, review.reason_code, review.instrument) == ("review", "reliable_deterioration", "wsas")

    [ev] = fake.of_type(OutcomeEvaluatedV1)
    assert ev.paired_measures == ["phq9", "gad7"] and ev.reliable_improvement is True
    edeq = ev.condition_measures["edeq6"]
    assert (edeq.status, edeq.reliable_change_criterion, edeq.change, edeq.reliable_change) == (
        "paired", "none", -4.0, None)
    assert ev.instruments["wsas"].reliable_change_criterion == "jacobson_truax"
    assert ev.instruments["wsas"].reliable_change_threshold == pytest.approx(12.82, abs=0.005)
    OutcomeEvaluatedV1.model_validate(json.loads(ev.model_dump_json()))

    uow = fake.unit()
    scores = await views.scores(uow, data.episode_id)
    assert scores["instruments"]["edeq6"]["reliable_change_criterion"] == "none"
    assert scores["instruments"]["edeq6"]["reliable_change_note"].startswith("no reliable-change criterion")
    assert scores["instruments"]["phq9"]["reliable_change_criterion"] == "threshold"
    assert "reliable_change_note" not in scores["instruments"]["phq9"]
    assert {s["reliable_change_criterion"] for s in scores["instruments"]["edeq6"]["scores"]} == {"none"}
    outcome = await views.outcome(uow, data.episode_id)
    assert outcome["condition_measures"]["edeq6"]["reliable_change_criterion"] == "none"
    assert outcome["instruments"]["edeq6"]["reliable_change_criterion"] == "none"

    report = await views.cohort_report(uow, group_by="template", template_id=None, clinician_id=None,
                                       ended_from=None, ended_to=None, scope=None)
    measures = report["total"]["condition_measures"]
    assert measures == {"edeq6": {"reliable_change_criterion": "none", "episodes": 1, "paired": 1, "missing": 0,
                                  "mean_change": -4.0,
                                  "reliable_change_note": "no reliable-change criterion: raw change only",
                                  "reliable_improvement": None, "reliable_deterioration": None}}


async def test_substance_use_audit_rising_has_no_reliable_deterioration_and_no_review() -> None:
    """AUDIT 8 → 40: no reliable-change criterion, so no reliable deterioration and no review
    notice from it (domain.md 3.4) — said so in the event, not a silent null."""
    fake = FakeOutcomes()
    data = intake(fake, "substance_use", {"phq9": answers("phq9", 1), "audit": answers("audit", 1)})
    await fake.deliver(data)
    now = fake.clock.now()
    end = await fake.handle(submit(data, "audit", answers("audit", 4), now - timedelta(hours=2), timepoint="end"))
    assert (end.submission.change_from_baseline, end.submission.reliable_change) == (32, None)
    assert fake.of_type(AlertRaisedV1) == []
    await fake.deliver(ended(data, now - timedelta(hours=1)))
    [ev] = fake.of_type(OutcomeEvaluatedV1)
    audit = ev.condition_measures["audit"]
    assert (audit.status, audit.reliable_change_criterion, audit.change, audit.reliable_change) == (
        "paired", "none", 32.0, None)


def test_the_cohort_report_gives_rates_where_a_criterion_exists() -> None:
    def row(**measures) -> cohort.EvaluationRow:
        return cohort.EvaluationRow(template_id="t", clinician_id="c", finished_course=True,
                                    counts_toward_recovery=True, recovery=True, reliable_recovery=True,
                                    reliable_improvement=True, reliable_deterioration=False, response=True,
                                    remission=True, condition_measures=measures)

    jt = {"reliable_change_criterion": "jacobson_truax"}
    rows = [row(wsas={**jt, "status": "paired", "change": -20, "reliable_change": "improved"}),
            row(wsas={**jt, "status": "paired", "change": 2, "reliable_change": "no_reliable_change"}),
            row(wsas={**jt, "status": "baseline_only", "change": None, "reliable_change": None}),
            row()]
    [group] = cohort.cohort_report(rows, "template")["groups"]
    assert group["condition_measures"]["wsas"] == {
        "reliable_change_criterion": "jacobson_truax", "episodes": 3, "paired": 2, "missing": 1, "mean_change": -9.0,
        "reliable_improvement": {"count": 1, "denominator": 2, "rate": 0.5},
        "reliable_deterioration": {"count": 0, "denominator": 2, "rate": 0.0}}
    assert "condition_measures" not in cohort.cohort_report([row()], "template")["total"]
