"""Issue 15 items 2 and 4 against real Postgres: the course record kept from rapport.course (the
0007 tables and their upserts) exported as the episode's FHIR record over HTTP, and the
condition-specific measure with its reliable-change criterion in the evaluation event, the
stored outcome and the cohort report."""

from __future__ import annotations

import importlib
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from rapport_shared.contracts.course import (
    CourseChecklistUpdatedV1,
    CourseEndedV1,
    CoursePlannedV1,
    SessionAttendedV1,
    SessionMissedV1,
    SessionRescheduledV1,
    SessionScheduledV1,
)

pytestmark = pytest.mark.integration

EDEQ_ITEMS = [*range(1, 13), *range(19, 29)]


def now() -> datetime:
    return datetime.now(timezone.utc)


def model(resource_type: str):
    return getattr(importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}"), resource_type)


def references(node) -> list[str]:
    if isinstance(node, dict):
        out = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return out + [r for v in node.values() for r in references(v)]
    if isinstance(node, list):
        return [r for v in node for r in references(v)]
    return []


async def deliver(outcomes, data) -> None:
    assert (await outcomes.deliver(data))[0].status == "processed"


async def course(outcomes, data, *, contracted: int = 4) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """Plan a short course, confirm the focus, attend 1, 3 and 4, miss 2 (after moving it)."""
    course_id, first = uuid.uuid4(), now() - timedelta(days=20)
    sessions = [{"session_id": uuid.uuid4(), "number": n, "starts_at": first + timedelta(weeks=n - 1),
                 "duration_minutes": 50} for n in range(1, contracted + 1)]
    ids = [s["session_id"] for s in sessions]
    common = dict(episode_id=data.episode_id, course_id=course_id)
    await deliver(outcomes, CoursePlannedV1(
        **common, person_id=data.person_id, template_id=data.template_id, clinician_id=data.clinician_id,
        contracted_sessions=contracted, sessions=sessions, first_session_at=first,
        planned_end_at=first + timedelta(weeks=contracted), planned_at=first - timedelta(days=1),
        phase_plan=[{"phase": "initial", "first_session": 1, "last_session": 1},
                    {"phase": "middle", "first_session": 2, "last_session": contracted - 1},
                    {"phase": "termination", "first_session": contracted, "last_session": contracted}]))
    await deliver(outcomes, CourseChecklistUpdatedV1(
        **common, item="focus_confirmed", session_number=1, focus={"primary": "role_dispute"},
        focus_changed=True, reason_code="formulation", checklist_complete=False, recorded_at=first))
    await deliver(outcomes, SessionAttendedV1(**common, session_id=ids[0], number=1, attended_sessions=1,
                                              contracted_sessions=contracted, phase="initial", attended_at=first))
    await deliver(outcomes, SessionRescheduledV1(**common, session_id=ids[1], number=2,
                                                 previous_starts_at=sessions[1]["starts_at"],
                                                 starts_at=sessions[1]["starts_at"] + timedelta(hours=2),
                                                 reason_code="patient", rescheduled_at=first))
    await deliver(outcomes, SessionMissedV1(**common, session_id=ids[1], number=2, consecutive_missed=1,
                                            missed_at=sessions[1]["starts_at"] + timedelta(hours=3)))
    # A replayed "scheduled" never undoes the miss.
    await deliver(outcomes, SessionScheduledV1(**common, session_id=ids[1], number=2, starts_at=sessions[1]["starts_at"],
                                               duration_minutes=50, scheduled_at=first))
    for n in (3, 4):
        await deliver(outcomes, SessionAttendedV1(**common, session_id=ids[n - 1], number=n, attended_sessions=n - 1,
                                                  contracted_sessions=contracted, phase="middle" if n < 4 else "termination",
                                                  attended_at=sessions[n - 1]["starts_at"]))
    return course_id, ids


async def submit(outcomes, data, instrument: str, answers: dict, **over) -> dict:
    r = await outcomes.client.post(
        f"/v1/episodes/{data.episode_id}/submissions", headers=outcomes.auth(data.person_id, "patient_app"),
        json={"client_submission_id": f"k-{uuid.uuid4().hex}", "instrument": instrument,
              "answers": {str(k): v for k, v in answers.items()},
              "administered_at": (now() - timedelta(minutes=5)).isoformat(), **over})
    assert r.status_code == 201, r.text
    return r.json()


async def test_an_eating_disorder_episode_exports_its_fhir_record_and_reports_edeq(outcomes, h):
    data = h.intake_event(baseline={"phq9": h.PHQ9_18, "gad7": h.GAD7_12, "edeq6": {n: 5 for n in EDEQ_ITEMS}},
                          target_condition="eating_disorder", template_id="ipt-ed",
                          referred_at=now() - timedelta(days=30))
    await deliver(outcomes, data)
    course_id, sessions = await course(outcomes, data)
    edeq = await submit(outcomes, data, "edeq6", {n: 1 for n in EDEQ_ITEMS}, timepoint="end", session_number=4)
    assert (edeq["reliable_change"], edeq["change_from_baseline"], edeq["reliable_change_criterion"]) == (
        None, -4.0, "none")
    await submit(outcomes, data, "phq9", h.phq9(4), timepoint="end", session_number=4)
    await submit(outcomes, data, "gad7", h.gad7(5), timepoint="end", session_number=4)
    await deliver(outcomes, CourseEndedV1(episode_id=data.episode_id, course_id=course_id, template_id="ipt-ed",
                                          clinician_id=data.clinician_id, reason="completed", final_phase="completed",
                                          attended_sessions=3, contracted_sessions=4, ended_at=now()))

    [ev] = await outcomes.events(data.episode_id, "rapport.outcome.evaluated.v1")
    assert ev["condition_measures"]["edeq6"] == {
        "status": "paired", "reliable_change_criterion": "none", "reliable_change_threshold": None,
        "baseline_total": 5.0, "final_total": 1.0, "change": -4.0, "reliable_change": None,
        "caseness_at_baseline": True, "caseness_at_end": False,
        "baseline_submission_id": ev["instruments"]["edeq6"]["baseline_submission_id"],
        "final_submission_id": edeq["submission_id"]}
    assert ev["instruments"]["phq9"]["reliable_change_criterion"] == "threshold"
    clinician = outcomes.auth(data.clinician_id, "clinician")
    outcome = (await outcomes.client.get(f"/v1/episodes/{data.episode_id}/outcome", headers=clinician)).json()
    assert outcome["condition_measures"]["edeq6"]["reliable_change_criterion"] == "none"
    report = (await outcomes.client.get("/v1/reports/cohort", headers=clinician,
                                        params={"clinician_id": data.clinician_id})).json()
    assert report["total"]["condition_measures"]["edeq6"]["reliable_change_note"].startswith(
        "no reliable-change criterion")

    r = await outcomes.client.get(f"/v1/episodes/{data.episode_id}/fhir", params={"content": "episode"},
                                  headers=clinician)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    bundle = r.json()
    model("Bundle").model_validate(bundle)
    urls = {e["fullUrl"] for e in bundle["entry"]}
    assert set(references(bundle)) <= urls
    by_type: dict[str, list[dict]] = {}
    for e in bundle["entry"]:
        model(e["resource"]["resourceType"]).model_validate(e["resource"])
        by_type.setdefault(e["resource"]["resourceType"], []).append(e["resource"])
    [goal] = by_type["Goal"]
    assert (goal["description"]["coding"][0]["code"], goal["lifecycleStatus"]) == ("role_dispute", "completed")
    appointments = {a["identifier"][0]["value"]: a for a in by_type["Appointment"]}
    assert [appointments[str(s)]["status"] for s in sessions] == ["fulfilled", "noshow", "fulfilled", "fulfilled"]
    assert len(by_type["Encounter"]) == 3 and len(by_type["CarePlan"]) == 4
    change = next(o for o in by_type["Observation"] if o["code"].get("text") == "EDE-Q 6.0 reliable change from baseline")
    assert change["valueCodeableConcept"]["text"] == "no reliable-change criterion: raw difference only"

    # A partner of the organisation: the record without answers.
    partner = await outcomes.client.get(f"/v1/episodes/{data.episode_id}/fhir", params={"content": "episode"},
                                        headers=outcomes.auth("partner-1", "partner"))
    assert partner.status_code == 200
    kinds = {e["resource"]["resourceType"] for e in partner.json()["entry"]}
    assert "QuestionnaireResponse" not in kinds and {"EpisodeOfCare", "CarePlan", "Encounter"} <= kinds
    assert "linkId" not in partner.text and "44260-8" not in partner.text
    # The default stays the results Bundle.
    default = (await outcomes.client.get(f"/v1/episodes/{data.episode_id}/fhir", headers=clinician)).json()
    assert {e["resource"]["resourceType"] for e in default["entry"]} == {"QuestionnaireResponse", "Observation"}
    bad = await outcomes.client.get(f"/v1/episodes/{data.episode_id}/fhir", params={"content": "all"}, headers=clinician)
    assert bad.status_code == 422
    stored = await outcomes.pool.fetch("SELECT status FROM course_sessions WHERE episode_id = $1 ORDER BY number",
                                       data.episode_id)
    assert [r["status"] for r in stored] == ["attended", "missed", "attended", "attended"]
    assert json.loads(await outcomes.pool.fetchval("SELECT phase_plan FROM courses WHERE episode_id = $1",
                                                   data.episode_id))[0]["phase"] == "initial"


async def test_wsas_deterioration_raises_the_review_notice_audit_never_does(outcomes, h):
    data = h.intake_event(baseline={"phq9": h.PHQ9_18, "audit": {**{n: 1 for n in range(1, 9)}, 9: 0, 10: 0},
                                    "wsas": {n: 2 for n in range(1, 6)}}, target_condition="substance_use")
    await deliver(outcomes, data)
    audit = await submit(outcomes, data, "audit", {**{n: 4 for n in range(1, 9)}, 9: 4, 10: 4}, session_number=2)
    assert (audit["change_from_baseline"], audit["reliable_change"], audit["alert_ids"]) == (32, None, [])
    wsas = await submit(outcomes, data, "wsas", {n: 5 for n in range(1, 6)}, session_number=2)  # 10 → 25: rise 15
    assert wsas["reliable_change"] == "deteriorated" and wsas["reliable_change_criterion"] == "jacobson_truax"
    [alert] = await outcomes.events(data.episode_id, "rapport.alert.raised.v1")
    assert (alert["kind"], alert["reason_code"], alert["instrument"]) == ("review", "reliable_deterioration", "wsas")
    scores = (await outcomes.client.get(f"/v1/episodes/{data.episode_id}/scores",
                                        headers=outcomes.auth(data.clinician_id, "clinician"))).json()
    assert scores["instruments"]["audit"]["reliable_change_note"] == (
        "no reliable-change criterion: change is the raw difference only")
    assert scores["instruments"]["wsas"]["reliable_change_threshold"] == pytest.approx(12.82, abs=0.005)
