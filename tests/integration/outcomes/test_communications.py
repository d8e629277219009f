"""Issue 15 item 4 against real Postgres: the notifier's deliveries (rapport.notifications, through
the real consumer) stored as facts (migration 0008) and exported as FHIR ``Communication``s linked
to the session, the score and the course in the episode's record; the partner's view keeps kind,
status and time only; the replay projection hashes the new tables."""

from __future__ import annotations

import importlib
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from rapport_outcomes.projection import PROJECTION
from rapport_shared.contracts.course import CoursePlannedV1, SessionAttendedV1
from rapport_shared.contracts.notifications import NotificationDeliveredV1, NotificationFailedV1
from rapport_tools import replay as R

pytestmark = pytest.mark.integration


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


async def deliver(outcomes, data):
    result, event = await outcomes.deliver(data)
    assert result.status == "processed"
    return event


def validated(bundle: dict) -> dict[str, list[dict]]:
    model("Bundle").model_validate(bundle)
    assert set(references(bundle)) <= {e["fullUrl"] for e in bundle["entry"]}
    by_type: dict[str, list[dict]] = {}
    for e in bundle["entry"]:
        model(e["resource"]["resourceType"]).model_validate(e["resource"])
        by_type.setdefault(e["resource"]["resourceType"], []).append(e["resource"])
    return by_type


async def test_deliveries_become_communications_in_the_episode_record(outcomes, h):
    # A baseline PHQ-9 with item 9 positive: a safety alert the notifier pages.
    data = h.intake_event(baseline={"phq9": {**h.PHQ9_18, 9: 1}}, referred_at=now() - timedelta(days=20))
    await deliver(outcomes, data)
    [raised] = await outcomes.events(data.episode_id, "rapport.alert.raised.v1")
    course_id, first = uuid.uuid4(), now() - timedelta(days=10)
    sessions = [{"session_id": uuid.uuid4(), "number": n, "starts_at": first + timedelta(weeks=n - 1),
                 "duration_minutes": 50} for n in (1, 2, 3)]
    planned = await deliver(outcomes, CoursePlannedV1(
        episode_id=data.episode_id, course_id=course_id, person_id=data.person_id, template_id=data.template_id,
        clinician_id=data.clinician_id, contracted_sessions=3, sessions=sessions, first_session_at=first,
        planned_end_at=first + timedelta(weeks=3), planned_at=first - timedelta(days=1),
        phase_plan=[{"phase": "initial", "first_session": 1, "last_session": 1},
                    {"phase": "middle", "first_session": 2, "last_session": 2},
                    {"phase": "termination", "first_session": 3, "last_session": 3}]))
    await deliver(outcomes, SessionAttendedV1(
        episode_id=data.episode_id, course_id=course_id, session_id=sessions[0]["session_id"], number=1,
        attended_sessions=1, contracted_sessions=3, phase="initial", attended_at=first + timedelta(minutes=50)))

    patient, clinician = f"patient:{data.person_id}", f"clinician:{data.clinician_id}"
    reminder, page, request = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    common = dict(episode_id=data.episode_id, organisation_id=h.TEST_ORG)
    await deliver(outcomes, NotificationDeliveredV1(
        **common, notification_id=reminder, kind="session_reminder", recipient_ref=patient, channel="email",
        cause_event_id=planned.id, delivered_at=first - timedelta(days=1)))
    await deliver(outcomes, NotificationDeliveredV1(
        **common, notification_id=page, kind="safety_alert", recipient_ref=clinician, channel="log",
        cause_event_id=raised["ce_id"], delivered_at=now() - timedelta(days=19)))
    failed = NotificationFailedV1(**common, notification_id=request, kind="questionnaire_request",
                                  recipient_ref=patient, channel="sms", cause_event_id=planned.id,
                                  error_code="no_contact_or_consent", attempts=1, failed_at=first - timedelta(days=3))
    await deliver(outcomes, failed)
    await deliver(outcomes, failed)  # re-sent under a new event id: one row
    # A partner's webhook: its recipient role only (the subscription id is not kept).
    await deliver(outcomes, NotificationDeliveredV1(
        **common, notification_id=uuid.uuid4(), kind="partner_event", recipient_ref=f"partner:{uuid.uuid4()}",
        channel="webhook", cause_event_id=planned.id, delivered_at=first - timedelta(days=8)))

    rows = await outcomes.pool.fetch("SELECT * FROM communications WHERE episode_id = $1 ORDER BY at", data.episode_id)
    assert [(r["kind"], r["recipient_role"], r["status"]) for r in rows] == [
        ("safety_alert", "clinician", "delivered"), ("partner_event", "partner", "delivered"),
        ("questionnaire_request", "patient", "failed"), ("session_reminder", "patient", "delivered")]
    assert not any(data.person_id in str(dict(r)) or data.clinician_id in str(dict(r)) for r in rows)
    # A delivery after a failure wins; a failure after a delivery changes nothing.
    await deliver(outcomes, NotificationDeliveredV1(
        **common, notification_id=request, kind="questionnaire_request", recipient_ref=patient, channel="sms",
        cause_event_id=planned.id, delivered_at=first - timedelta(days=2)))
    await deliver(outcomes, failed.model_copy(update={"notification_id": reminder}))
    status = {r["notification_id"]: r["status"] for r in await outcomes.pool.fetch(
        "SELECT notification_id, status FROM communications WHERE episode_id = $1", data.episode_id)}
    assert (status[request], status[reminder]) == ("delivered", "delivered")
    await deliver(outcomes, failed.model_copy(update={"notification_id": uuid.uuid4()}))  # one that failed for good

    clinician_auth = outcomes.auth(data.clinician_id, "clinician")
    r = await outcomes.client.get(f"/v1/episodes/{data.episode_id}/fhir", params={"content": "episode"},
                                  headers=clinician_auth)
    assert r.status_code == 200, r.text
    bundle = r.json()
    by_type = validated(bundle)
    full = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}
    comms = {c["identifier"][0]["value"]: c for c in by_type["Communication"]}
    assert len(comms) == 5 and len(by_type["CodeSystem"]) == 4
    assert sorted(c["status"] for c in comms.values()) == ["completed"] * 4 + ["not-done"]
    first_session = str(sessions[0]["session_id"])
    c = comms[str(reminder)]
    assert [a["reference"] for a in c["about"]] == [f"urn:uuid:{first_session}"]  # the Appointment
    assert full[c["encounter"]["reference"].removeprefix("urn:uuid:")]["resourceType"] == "Encounter"
    assert c["medium"][0]["coding"][0]["code"] == "email" and c["recipient"][0]["type"] == "Patient"
    [score] = comms[str(page)]["about"]
    assert full[score["reference"].removeprefix("urn:uuid:")]["code"]["coding"][0]["code"] == "44261-6"
    webhook = next(c for c in comms.values() if c["category"][0]["coding"][0]["code"] == "partner_event")
    assert webhook["recipient"] == [{"type": "Organization", "display": "a partner's webhook subscription"}]
    assert full[webhook["about"][0]["reference"].removeprefix("urn:uuid:")]["resourceType"] == "CarePlan"
    assert not any(k in c for c in comms.values() for k in ("payload", "note", "sender"))

    partner = await outcomes.client.get(f"/v1/episodes/{data.episode_id}/fhir", params={"content": "episode"},
                                        headers=outcomes.auth("partner-1", "partner"))
    assert partner.status_code == 200
    partner_comms = validated(partner.json())["Communication"]
    assert len(partner_comms) == 5 and not any(
        k in c for c in partner_comms for k in ("medium", "recipient", "about", "encounter"))
    assert "no_contact_or_consent" not in partner.text

    # The replay projection hashes the new tables (the columns it names exist).
    async with outcomes.pool.acquire() as conn:
        schema = await conn.fetchval("SELECT current_schema()")
        checks = {c.table: c for c in await R.verify(conn, PROJECTION, schema, schema)}
    assert checks["communications"].equal and checks["session_events"].equal
