"""Cohort report and FHIR export (pure)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from rapport_outcomes.domain import cohort, fhir
from rapport_shared.instruments import load_catalogue

pytestmark = pytest.mark.unit


def row(template="ipt-standard", clinician="clin-1", finished=True, case=True, recovery=True, rel_rec=True,
        improved=True, deteriorated=False, response=True, remission=True) -> cohort.EvaluationRow:
    return cohort.EvaluationRow(template, clinician, finished, case, recovery if case else None, rel_rec if case else None,
                                improved, deteriorated, response, remission)


def test_rates_use_the_nhs_talking_therapies_denominators() -> None:
    rows = [
        row(),  # recovered, reliably improved
        row(recovery=False, rel_rec=False, improved=True, response=False, remission=False),
        row(case=False, improved=True),  # not a case at baseline: not in the recovery denominator
        row(finished=False, recovery=False, rel_rec=False, improved=False, deteriorated=True),  # 1 session: no rate
        row(improved=False, deteriorated=True, recovery=False, rel_rec=False, response=False, remission=False),
        row(improved=None, deteriorated=None, recovery=True, rel_rec=None),  # not determinable: not counted
    ]
    s = cohort.summarise(rows)
    assert (s["episodes_ended"], s["episodes_finished"], s["finished_at_caseness"]) == (6, 5, 4)
    assert s["recovery"] == {"count": 2, "denominator": 4, "rate": 0.5}
    assert s["reliable_recovery"] == {"count": 1, "denominator": 3, "rate": 0.3333}
    assert s["reliable_improvement"] == {"count": 3, "denominator": 4, "rate": 0.75}
    assert s["reliable_deterioration"] == {"count": 1, "denominator": 4, "rate": 0.25}
    assert s["response"]["denominator"] == 5


def test_empty_cohort_has_no_rates() -> None:
    s = cohort.summarise([])
    assert s["recovery"] == {"count": 0, "denominator": 0, "rate": None}


@pytest.mark.parametrize(("group_by", "keys"), [("template", ["ipt-12", "ipt-standard"]), ("clinician", ["clin-1", "clin-2"])])
def test_grouping(group_by: str, keys: list[str]) -> None:
    report = cohort.cohort_report([row(), row(template="ipt-12", clinician="clin-2"), row(clinician="clin-2")], group_by)
    assert [g[f"{group_by}_id"] for g in report["groups"]] == keys
    assert report["total"]["episodes_ended"] == 3


T = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def test_fhir_bundle_links_each_observation_to_its_response() -> None:
    ep, s1, s2, s3 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    subs = [
        fhir.ExportedSubmission(s1, "phq9", {n: 2 for n in range(1, 10)}, 18, "moderately_severe", {}, T, T),
        fhir.ExportedSubmission(s2, "wsas", {n: 1 for n in range(1, 6)}, 5, "subclinical", {}, T, T),
        fhir.ExportedSubmission(s3, "edeq6", {n: 1 for n in [*range(1, 13), *range(19, 29)]}, 1.0, None,
                                {"restraint": 1.0, "eating_concern": 1.0, "shape_concern": 1.0, "weight_concern": 1.0}, T, T),
    ]
    bundle = fhir.episode_bundle(episode_id=ep, person_id="P-1", submissions=subs, catalogue=load_catalogue(), generated_at=T)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    qrs = [r for r in by_url.values() if r["resourceType"] == "QuestionnaireResponse"]
    obs = [r for r in by_url.values() if r["resourceType"] == "Observation"]
    assert len(qrs) == len(obs) == 3
    for o in obs:
        assert o["category"][0]["coding"][0] == {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey", "display": "Survey"}
        [ref] = o["derivedFrom"]
        assert by_url[ref["reference"]]["resourceType"] == "QuestionnaireResponse"
        assert o["status"] == "final" and o["subject"]["identifier"]["value"] == "P-1"
    phq = next(o for o in obs if o["derivedFrom"][0]["reference"] == f"urn:uuid:{s1}")
    assert phq["code"]["coding"][0] == {"system": "http://loinc.org", "code": "44261-6", "display": "PHQ-9 total score"}
    assert phq["valueInteger"] == 18 and phq["interpretation"][0]["coding"][0]["code"] == "moderately_severe"
    wsas = next(o for o in obs if o["derivedFrom"][0]["reference"] == f"urn:uuid:{s2}")
    assert wsas["code"]["coding"][0]["system"] != "http://loinc.org"  # no LOINC in the catalogue: a local code
    edeq = next(o for o in obs if o["derivedFrom"][0]["reference"] == f"urn:uuid:{s3}")
    assert edeq["valueQuantity"]["value"] == 1.0 and len(edeq["component"]) == 4
    qr = next(q for q in qrs if q["id"] == str(s1))
    assert qr["questionnaire"] == "http://loinc.org/q/44249-1" and qr["status"] == "completed"
    assert [i["linkId"] for i in qr["item"]] == [str(n) for n in range(1, 10)]
    assert qr["item"][8]["answer"] == [{"valueInteger": 2}]


def test_the_partners_fhir_bundle_holds_the_totals_and_no_answers() -> None:
    """access.yaml: a partner's export is the coded facts only (no QuestionnaireResponse, so no
    item answers, item 9 included), and nothing refers to a resource the Bundle does not hold."""
    ep, s1 = uuid.uuid4(), uuid.uuid4()
    subs = [fhir.ExportedSubmission(s1, "phq9", {**{n: 2 for n in range(1, 9)}, 9: 3}, 19, "moderately_severe", {}, T, T)]
    full = fhir.episode_bundle(episode_id=ep, person_id="P-1", submissions=subs, catalogue=load_catalogue(), generated_at=T)
    minimal = fhir.episode_bundle(episode_id=ep, person_id="P-1", submissions=subs, catalogue=load_catalogue(),
                                  generated_at=T, answers=False)
    assert [e["resource"]["resourceType"] for e in minimal["entry"]] == ["Observation"]
    [obs] = [e["resource"] for e in full["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert minimal["entry"][0]["resource"] == {k: v for k, v in obs.items() if k != "derivedFrom"}
    assert minimal["entry"][0]["resource"]["valueInteger"] == 19
    assert "item" not in str(minimal) and "linkId" not in str(minimal)
