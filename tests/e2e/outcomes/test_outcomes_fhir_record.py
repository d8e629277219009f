"""Issue 15 items 2 and 4 end to end: an eating-disorder episode through the four services over
real Kafka and Postgres — intake with PHQ-9, GAD-7 and EDE-Q baselines, the scheduler's plan, the
end-of-course scores, attendance and the end (published here as rapport.course events, as in
test_outcomes_flow) — gives an evaluation with EDE-Q beside the pair and its "no reliable-change
criterion", and a FHIR record of the finished episode that validates with references resolving
inside the Bundle, for the clinician (with answers) and the organisation's partner (without),
with a ``Communication`` for each message the notifier delivered or gave up on (read by outcomes
from rapport.notifications)."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
import uuid
from datetime import datetime, timezone

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from rapport_shared import envelope
from rapport_shared.contracts.course import CourseEndedV1, SessionAttendedV1
from rapport_shared.topics import COURSE, NOTIFICATIONS, OUTCOMES
from rapport_testing.flows import gad7, intake_completion, phq9
from rapport_testing.kafka import validate_partner_view, wait_for_records

pytestmark = pytest.mark.e2e

EDEQ_ITEMS = [*range(1, 13), *range(19, 29)]


def now() -> datetime:
    return datetime.now(timezone.utc)


def of(episode: str, ce_type: str):
    return lambda r: r.headers.get("ce_subject") == episode and r.headers.get("ce_type") == ce_type


def model(resource_type: str):
    return getattr(importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}"), resource_type)


def references(node) -> list[str]:
    if isinstance(node, dict):
        out = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return out + [r for v in node.values() for r in references(v)]
    if isinstance(node, list):
        return [r for v in node for r in references(v)]
    return []


def validated(bundle: dict) -> dict[str, list[dict]]:
    model("Bundle").model_validate(bundle)
    assert set(references(bundle)) <= {e["fullUrl"] for e in bundle["entry"]}
    by_type: dict[str, list[dict]] = {}
    for e in bundle["entry"]:
        model(e["resource"]["resourceType"]).model_validate(e["resource"])
        by_type.setdefault(e["resource"]["resourceType"], []).append(e["resource"])
    return by_type


async def test_an_eating_disorder_episode_ends_with_edeq_beside_the_pair_and_a_valid_fhir_record(system, kafka, tokens):
    clinician_id = f"clin-t{uuid.uuid4().hex[:8]}"
    intake_auth = {"Authorization": f"Bearer {tokens.issue('ic-1', ['intake_clinician'])}"}
    person = f"P-t{uuid.uuid4().hex[:12]}"
    app = {"Authorization": f"Bearer {tokens.issue(person, ['patient_app'])}"}
    clinician = {"Authorization": f"Bearer {tokens.issue(clinician_id, ['clinician'])}"}
    partner = {"Authorization": f"Bearer {tokens.issue('partner-1', ['partner'])}"}
    outcomes_url = system["outcomes"].url
    http = httpx.Client(timeout=30)

    r = http.post(f"{system['intake'].url}/v1/referrals", headers=intake_auth, json={
        "person_id": person, "referral_source": "gp", "target_condition": "eating_disorder"})
    r.raise_for_status()
    episode = r.json()["episode_id"]
    completion = intake_completion(clinician_id, template_id="ipt-ed")
    completion["baseline"] = [{"instrument": code, "answers": answers, "administered_at": now().isoformat()}
                              for code, answers in (("phq9", phq9(18)), ("gad7", gad7(12)),
                                                    ("edeq6", {n: 5 for n in EDEQ_ITEMS}))]
    r = http.post(f"{system['intake'].url}/v1/referrals/{episode}/complete", headers=intake_auth, json=completion)
    assert r.status_code in (200, 201), r.text
    [planned] = await wait_for_records(kafka.bootstrap, COURSE, of(episode, "rapport.course.planned.v1"))
    plan = validate_partner_view(planned)
    contracted = plan["contracted_sessions"]

    for instrument, answers in (("edeq6", {n: 1 for n in EDEQ_ITEMS}), ("phq9", phq9(4)), ("gad7", gad7(5))):
        r = http.post(f"{outcomes_url}/v1/episodes/{episode}/submissions", headers=app, json={
            "client_submission_id": f"app-{uuid.uuid4().hex}", "instrument": instrument, "answers": answers,
            "administered_at": now().isoformat(), "session_number": contracted, "timepoint": "end"})
        assert r.status_code == 201, r.text
        if instrument == "edeq6":
            assert (r.json()["reliable_change_criterion"], r.json()["reliable_change"]) == ("none", None)

    def phase(n: int) -> str:
        return next((s["phase"] for s in plan["phase_plan"] if s["first_session"] <= n <= s["last_session"]), "middle")

    planned_ids = {s["number"]: s["session_id"] for s in plan["sessions"]}
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        async def publish(data) -> None:
            rec = envelope.encode(envelope.new_event(type=data.event_type, source="/rapport/test-driver",
                                                     subject=str(data.episode_id), data=data, time=now()))
            await producer.send_and_wait(data.topic, value=rec.value, key=rec.key,
                                         headers=[(k, v.encode()) for k, v in rec.headers.items()])

        for n in range(1, contracted + 1):
            await publish(SessionAttendedV1(
                episode_id=episode, course_id=plan["course_id"], session_id=planned_ids.get(n, uuid.uuid4()), number=n,
                attended_sessions=n, contracted_sessions=contracted, phase=phase(n), attended_at=now()))
        await publish(CourseEndedV1(
            episode_id=episode, course_id=plan["course_id"], template_id=plan["template_id"], clinician_id=clinician_id,
            reason="completed", final_phase="completed", attended_sessions=contracted, contracted_sessions=contracted,
            ended_at=now()))
    finally:
        await producer.stop()

    [evaluated] = await wait_for_records(kafka.bootstrap, OUTCOMES, of(episode, "rapport.outcome.evaluated.v1"),
                                         timeout=120)
    ev = validate_partner_view(evaluated)
    assert ev["paired_measures"] == ["phq9", "gad7"] and ev["reliable_recovery"] is True
    edeq = ev["condition_measures"]["edeq6"]
    assert (edeq["status"], edeq["reliable_change_criterion"], edeq["change"], edeq["reliable_change"]) == (
        "paired", "none", -4.0, None)

    r = http.get(f"{outcomes_url}/v1/episodes/{episode}/fhir", params={"content": "episode"}, headers=clinician)
    assert r.status_code == 200, r.text
    by_type = validated(r.json())
    [eoc] = by_type["EpisodeOfCare"]
    [condition] = by_type["Condition"]
    assert eoc["status"] == "finished" and condition["code"]["coding"][0]["code"] == "72366004"
    assert {"Goal", "CarePlan", "CodeSystem", "QuestionnaireResponse"} <= set(by_type)
    assert len(by_type["Encounter"]) == contracted
    assert sum(a["status"] == "fulfilled" for a in by_type.get("Appointment", [])) == len(
        [n for n in planned_ids if n <= contracted])
    assert any(o["code"]["coding"][0]["code"] == "44260-8" for o in by_type["Observation"])  # PHQ-9 item 9
    change = next(o for o in by_type["Observation"] if o["code"].get("text") == "EDE-Q 6.0 reliable change from baseline")
    assert change["valueCodeableConcept"]["coding"][0]["code"] == "no-criterion"

    # The notifier's deliveries for the episode (the course-planned notice at least), each a
    # Communication once outcomes has read it from rapport.notifications.
    sent = await wait_for_records(kafka.bootstrap, NOTIFICATIONS, lambda r: r.headers.get("ce_subject") == episode
                                  and r.headers.get("ce_type", "").startswith("rapport.notification."), timeout=120)
    ids = {validate_partner_view(rec)["notification_id"] for rec in sent}
    deadline = time.monotonic() + 60
    while True:
        r = http.get(f"{outcomes_url}/v1/episodes/{episode}/fhir", params={"content": "episode"}, headers=clinician)
        comms = {c["identifier"][0]["value"]: c for c in validated(r.json()).get("Communication", [])}
        if ids <= set(comms) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert ids <= set(comms), (ids, set(comms))
    kinds = {c["identifier"][0]["value"]: c["category"][0] for c in comms.values()}
    planned_notice = next(c for i, c in comms.items() if kinds[i].get("coding", [{}])[0].get("code") == "course_planned")
    assert planned_notice["status"] in ("completed", "not-done") and "payload" not in planned_notice
    assert planned_notice["subject"]["identifier"]["value"] == person
    assert "@" not in json.dumps(list(comms.values()))  # no address

    r = http.get(f"{outcomes_url}/v1/episodes/{episode}/fhir", params={"content": "episode"}, headers=partner)
    assert r.status_code == 200, r.text
    assert "QuestionnaireResponse" not in validated(r.json()) and "linkId" not in r.text and "44260-8" not in r.text
    partner_comms = validated(r.json())["Communication"]
    assert len(partner_comms) >= len(ids) and not any("medium" in c or "recipient" in c for c in partner_comms)
