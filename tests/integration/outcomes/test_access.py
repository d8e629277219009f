"""Who may see what in outcomes (architecture.md; rapport_outcomes/access.yaml), against real
Postgres: a record outside the caller's relationships answers exactly like a missing one, the
episode's own clinician, patient and organisation still reach it, safety alerts are resolved only
by the assigned clinician or the organisation's care team, and every attempt is audited."""

from __future__ import annotations

import random
import string
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from rapport_shared.consumer import EventConsumer
from rapport_shared.uow import uow_maker

pytestmark = pytest.mark.integration


def now() -> datetime:
    return datetime.now(timezone.utc)


def body(answers: dict, instrument: str = "phq9", **over) -> dict:
    return {"client_submission_id": f"app-{uuid.uuid4().hex}", "instrument": instrument, "answers": answers,
            "administered_at": now().isoformat(), **over}


async def open_episode(outcomes, h, **kw):
    data = h.intake_event(**kw)
    assert (await outcomes.deliver(data))[0].status == "processed"
    return data


async def with_alert(outcomes, h):
    """An episode whose patient just answered item 9 positively: one open safety alert."""
    data = await open_episode(outcomes, h)
    r = await outcomes.client.post(f"/v1/episodes/{data.episode_id}/submissions",
                                   headers=outcomes.auth(data.person_id, "patient_app"), json=body(h.phq9(12, item9=2)))
    assert r.status_code == 201, r.text
    [alert_id] = r.json()["alert_ids"]
    return data, alert_id


# Every refusal is RFC 9457 problem details; "not yours" and "missing" carry the same ones.
NOT_FOUND = {"type": "urn:rapport:problem:NotFound", "title": "Not Found", "status": 404, "error": "NotFound"}


def masked(response, record_id) -> tuple[int, dict]:
    """Status and body with the record id masked: what tells "not yours" from "missing", if anything."""
    return response.status_code, {k: (v.replace(str(record_id), "<id>") if isinstance(v, str) else v)
                                  for k, v in response.json().items()}


async def test_another_organisations_partner_gets_the_same_404_as_for_a_missing_episode(outcomes, h):
    data = await open_episode(outcomes, h)
    ours, theirs = outcomes.auth("epro-1", "partner"), outcomes.auth("epro-9", "partner", org=h.OTHER_ORG)
    missing = uuid.uuid4()
    count = "SELECT count(*) FROM submissions WHERE episode_id = $1"
    before = await outcomes.count(count, data.episode_id)
    for method, path, payload in (("GET", "fhir", None), ("GET", "outcome", None),
                                  ("POST", "submissions", body(h.phq9(20, item9=3)))):
        refused = await outcomes.client.request(method, f"/v1/episodes/{data.episode_id}/{path}", headers=theirs,
                                                json=payload)
        unknown = await outcomes.client.request(method, f"/v1/episodes/{missing}/{path}", headers=theirs, json=payload)
        assert masked(refused, data.episode_id) == masked(unknown, missing) == (
            404, {**NOT_FOUND, "detail": "no episode <id>", "field": "episode_id"}), (path, refused.text)
        assert dict(refused.headers).keys() == dict(unknown.headers).keys()
    # Nothing stored, no false alert raised, and every attempt is in the access audit.
    assert await outcomes.count(count, data.episode_id) == before
    assert await outcomes.events(data.episode_id, "rapport.alert.raised.v1") == []
    refusals = await outcomes.access_audit(data.episode_id, decision="refused")
    assert sorted((r["method"], r["route"], r["actor"], r["actor_org"], r["record_org"], r["status"]) for r in refusals) == [
        ("GET", "/v1/episodes/{episode_id}/fhir", "epro-9", h.OTHER_ORG, h.TEST_ORG, 404),
        ("GET", "/v1/episodes/{episode_id}/outcome", "epro-9", h.OTHER_ORG, h.TEST_ORG, 404),
        ("POST", "/v1/episodes/{episode_id}/submissions", "epro-9", h.OTHER_ORG, h.TEST_ORG, 404)]
    # The episode's own organisation's partner still exports it (coded facts only) and submits.
    r = await outcomes.client.get(f"/v1/episodes/{data.episode_id}/fhir", headers=ours)
    assert r.status_code == 200 and {e["resource"]["resourceType"] for e in r.json()["entry"]} == {"Observation"}
    assert "QuestionnaireResponse" not in r.text and "linkId" not in r.text
    assert (await outcomes.client.post(f"/v1/episodes/{data.episode_id}/submissions", headers=ours,
                                       json=body(h.phq9(9)))).status_code == 201
    # A partner never reads scores, answers or alerts, even for its own organisation.
    for path in ("scores", "alerts", f"submissions/{uuid.uuid4()}"):
        assert (await outcomes.client.get(f"/v1/episodes/{data.episode_id}/{path}", headers=ours)).status_code == 403


async def test_a_patient_app_gets_the_same_404_for_someone_elses_episode_as_for_a_missing_one(outcomes, h):
    data = await open_episode(outcomes, h)
    other_app = outcomes.auth(f"P-t{uuid.uuid4().hex[:10]}", "patient_app")
    missing = uuid.uuid4()
    payload = body(h.phq9(5))
    someone_elses = await outcomes.client.post(f"/v1/episodes/{data.episode_id}/submissions", headers=other_app,
                                               json=payload)
    unknown = await outcomes.client.post(f"/v1/episodes/{missing}/submissions", headers=other_app, json=payload)
    assert masked(someone_elses, data.episode_id) == masked(unknown, missing)
    assert someone_elses.status_code == 404
    # A malformed id is a missing one too, not a validation error that would tell them apart.
    r = await outcomes.client.post("/v1/episodes/not-a-uuid/submissions", headers=other_app, json=payload)
    assert masked(r, "not-a-uuid") == masked(unknown, missing)


async def test_a_clinician_not_assigned_to_the_episode_reaches_nothing_of_it(outcomes, h):
    data, alert_id = await with_alert(outcomes, h)
    stranger = outcomes.auth(f"clin-t{uuid.uuid4().hex[:8]}", "clinician")
    # The assigned clinician's id in a token of another organisation is not the assigned clinician.
    impostor = outcomes.auth(data.clinician_id, "clinician", org=h.OTHER_ORG)
    [submission_id] = [e["submission_id"] for e in await outcomes.events(data.episode_id, "rapport.alert.raised.v1")]
    for who in (stranger, impostor):
        for path in ("scores", f"submissions/{submission_id}", "alerts", "outcome", "fhir"):
            r = await outcomes.client.get(f"/v1/episodes/{data.episode_id}/{path}", headers=who)
            assert masked(r, data.episode_id) == (404, {**NOT_FOUND, "detail": "no episode <id>",
                                                        "field": "episode_id"}), (path, r.text)
        r = await outcomes.client.get(f"/v1/alerts/{alert_id}", headers=who)
        assert masked(r, alert_id) == (404, {**NOT_FOUND, "detail": "no alert <id>", "field": "alert_id"})
        missing = uuid.uuid4()
        refused = await outcomes.client.post(f"/v1/alerts/{alert_id}/resolve", headers=who, json={"action": "safety_plan"})
        unknown = await outcomes.client.post(f"/v1/alerts/{missing}/resolve", headers=who, json={"action": "safety_plan"})
        assert masked(refused, alert_id) == masked(unknown, missing) == (
            404, {**NOT_FOUND, "detail": "no alert <id>", "field": "alert_id"})
    # The alert is still open: no one outside the care team stopped its escalation.
    assert await outcomes.count("SELECT count(*) FROM alerts WHERE alert_id = $1 AND status = 'open'",
                                uuid.UUID(alert_id)) == 1
    assert await outcomes.events(data.episode_id, "rapport.alert.resolved.v1") == []
    # Every attempt is in the access audit, refused, with who tried and whose record it was.
    refused = await outcomes.access_audit(alert_id, decision="refused")
    assert [(r["method"], r["route"], r["actor_org"], r["record_org"]) for r in refused if r["method"] == "POST"] == [
        ("POST", "/v1/alerts/{alert_id}/resolve", h.TEST_ORG, h.TEST_ORG),
        ("POST", "/v1/alerts/{alert_id}/resolve", h.OTHER_ORG, h.TEST_ORG)]
    assert len(await outcomes.access_audit(data.episode_id, decision="refused")) == 10

    # The assigned clinician reads it all, and each read of health data leaves an audit row.
    mine = outcomes.auth(data.clinician_id, "clinician")
    assert (await outcomes.client.get(f"/v1/episodes/{data.episode_id}/scores", headers=mine)).status_code == 200
    r = await outcomes.client.get(f"/v1/episodes/{data.episode_id}/submissions/{submission_id}", headers=mine)
    assert r.status_code == 200 and r.json()["answers"]["9"] == 2
    assert (await outcomes.client.get(f"/v1/alerts/{alert_id}", headers=mine)).status_code == 200
    allowed = await outcomes.access_audit(data.episode_id, decision="allowed", actor=data.clinician_id)
    assert [(r["route"], r["record_org"], r["status"]) for r in allowed] == [
        ("/v1/episodes/{episode_id}/scores", h.TEST_ORG, 200),
        ("/v1/episodes/{episode_id}/submissions/{submission_id}", h.TEST_ORG, 200)]
    assert [r["route"] for r in await outcomes.access_audit(alert_id, decision="allowed")] == ["/v1/alerts/{alert_id}"]
    r = await outcomes.client.post(f"/v1/alerts/{alert_id}/resolve", headers=mine, json={"action": "assessment"})
    assert r.status_code == 200 and r.json()["resolution"]["resolved_by"] == data.clinician_id


async def test_clinician_id_in_the_alert_list_never_widens_it(outcomes, h):
    data, alert_id = await with_alert(outcomes, h)
    stranger = f"clin-t{uuid.uuid4().hex[:8]}"
    for params in ({"clinician_id": data.clinician_id}, {"clinician_id": data.clinician_id, "status": "all"},
                   {"status": "all"}):
        r = await outcomes.client.get("/v1/alerts", params=params, headers=outcomes.auth(stranger, "clinician"))
        assert r.status_code == 200 and r.json()["alerts"] == [], params
    # Nor does another organisation's admin or clinician of the same id see them.
    for who in (outcomes.auth("adm-9", "admin", org=h.OTHER_ORG), outcomes.auth(data.clinician_id, "clinician", org=h.OTHER_ORG)):
        r = await outcomes.client.get("/v1/alerts", params={"clinician_id": data.clinician_id}, headers=who)
        assert r.json()["alerts"] == []
    # The assigned clinician sees it; so does the organisation's admin (oversight), asked by clinician.
    r = await outcomes.client.get("/v1/alerts", headers=outcomes.auth(data.clinician_id, "clinician"))
    assert [a["alert_id"] for a in r.json()["alerts"]] == [alert_id]
    r = await outcomes.client.get("/v1/alerts", params={"clinician_id": data.clinician_id},
                                  headers=outcomes.auth("adm-1", "admin"))
    assert [a["alert_id"] for a in r.json()["alerts"]] == [alert_id]
    # An admin reads no record (scores, alerts of an episode, FHIR) and resolves nothing.
    admin = outcomes.auth("adm-1", "admin")
    for path in ("scores", "alerts", "fhir"):
        assert (await outcomes.client.get(f"/v1/episodes/{data.episode_id}/{path}", headers=admin)).status_code == 403
    assert (await outcomes.client.post(f"/v1/alerts/{alert_id}/resolve", headers=admin,
                                       json={"action": "safety_plan"})).status_code == 403


async def test_the_organisations_supervisor_and_on_call_clinician_may_resolve(outcomes, h):
    data, alert_id = await with_alert(outcomes, h)
    # Letters only after the prefix: a hex suffix of digits alone would look like a record number,
    # which the care team rightly refuses (a pseudonymous id is an opaque code).
    supervisor, on_call, off_duty = (f"{k}-{''.join(random.choices(string.ascii_lowercase, k=8))}"
                                     for k in ("sup", "oncall", "offduty"))
    admin = outcomes.auth("adm-1", "admin")
    t = now()
    r = await outcomes.client.put("/v1/care-team", headers=admin, json={"entries": [
        {"clinician_id": supervisor, "duty": "supervisor"},
        {"clinician_id": on_call, "duty": "on_call", "starts_at": (t - timedelta(hours=1)).isoformat(),
         "ends_at": (t + timedelta(hours=8)).isoformat()},
        {"clinician_id": off_duty, "duty": "on_call", "starts_at": (t - timedelta(hours=9)).isoformat(),
         "ends_at": (t - timedelta(hours=1)).isoformat()}]})
    assert r.status_code == 200, r.text
    # Another organisation's supervisor of the same id is nobody's supervisor here.
    other_admin = outcomes.auth("adm-9", "admin", org=h.OTHER_ORG)
    r = await outcomes.client.put("/v1/care-team", headers=other_admin,
                                  json={"entries": [{"clinician_id": "sup-elsewhere", "duty": "supervisor"}]})
    assert r.status_code == 200
    url = f"/v1/alerts/{alert_id}/resolve"
    for who in (outcomes.auth(off_duty, "clinician"), outcomes.auth("sup-elsewhere", "clinician", org=h.OTHER_ORG)):
        assert (await outcomes.client.post(url, headers=who, json={"action": "safety_plan"})).status_code == 404
    # The on-call clinician reads the alert; the supervisor sees it in the list and resolves it.
    assert (await outcomes.client.get(f"/v1/alerts/{alert_id}", headers=outcomes.auth(on_call, "clinician"))).status_code == 200
    sup = outcomes.auth(supervisor, "clinician")
    listed = await outcomes.client.get("/v1/alerts", params={"clinician_id": data.clinician_id}, headers=sup)
    assert [a["alert_id"] for a in listed.json()["alerts"]] == [alert_id]
    r = await outcomes.client.post(url, headers=sup, json={"action": "safety_plan", "action_text": "called the patient"})
    assert r.status_code == 200, r.text
    assert r.json()["resolution"]["resolved_by"] == supervisor
    [resolved] = await outcomes.events(data.episode_id, "rapport.alert.resolved.v1")
    assert resolved["resolved_by"] == supervisor
    audit = await outcomes.access_audit(alert_id)
    assert [(r["actor"], r["decision"]) for r in audit if r["method"] == "POST"] == [
        (off_duty, "refused"), ("sup-elsewhere", "refused"), (supervisor, "allowed")]


async def test_the_cohort_report_covers_only_what_the_caller_reaches(outcomes, h):
    clinician_id = f"clin-t{uuid.uuid4().hex[:8]}"
    data = await open_episode(outcomes, h, clinician_id=clinician_id)
    from rapport_shared.contracts.course import CourseEndedV1

    await outcomes.deliver(CourseEndedV1(
        episode_id=data.episode_id, course_id=uuid.uuid4(), template_id=data.template_id, clinician_id=clinician_id,
        reason="completed", final_phase="completed", attended_sessions=12, contracted_sessions=16, ended_at=now()))
    params = {"group_by": "clinician", "clinician_id": clinician_id}

    async def groups(who) -> list:
        r = await outcomes.client.get("/v1/reports/cohort", params=params, headers=who)
        assert r.status_code == 200, r.text
        return [g["clinician_id"] for g in r.json()["groups"]]

    assert await groups(outcomes.auth(clinician_id, "clinician")) == [clinician_id]
    assert await groups(outcomes.auth("adm-1", "admin")) == [clinician_id]
    assert await groups(outcomes.auth(f"clin-t{uuid.uuid4().hex[:8]}", "clinician")) == []
    assert await groups(outcomes.auth(clinician_id, "clinician", org=h.OTHER_ORG)) == []
    assert await groups(outcomes.auth("adm-9", "admin", org=h.OTHER_ORG)) == []


async def test_an_episode_from_an_older_producer_takes_the_default_organisation(outcomes, h):
    """An intake event with no organisation_id: the configured default organisation's, else none
    (then only its own patient reaches it)."""
    async def deliver(data, default: str):
        runtime = outcomes.app.state.runtime
        settings = runtime.settings.model_copy(update={"default_organisation": default})
        consumer = EventConsumer(pool=outcomes.pool, group_id=f"it-outcomes-{uuid.uuid4().hex[:6]}",
                                 dead_letter=None, outbox=runtime.outbox, clock=runtime.clock, max_attempts=1,
                                 backoff_s=0.01,
                                 make_uow=uow_maker(runtime.outbox, runtime.clock, runtime.uow_class, settings))
        runtime.handlers.subscribe(consumer)
        saved, outcomes.consumer = outcomes.consumer, consumer
        try:
            assert (await outcomes.deliver(data))[0].status == "processed"
        finally:
            outcomes.consumer = saved

    defaulted = h.intake_event(organisation_id=None)
    await deliver(defaulted, h.TEST_ORG)
    orphan = h.intake_event(organisation_id=None)
    await deliver(orphan, "")
    assert await outcomes.count("SELECT count(*) FROM episodes WHERE episode_id = $1 AND organisation_id = $2",
                                defaulted.episode_id, h.TEST_ORG) == 1
    assert await outcomes.count("SELECT count(*) FROM episodes WHERE episode_id = $1 AND organisation_id IS NULL",
                                orphan.episode_id) == 1
    for data, status in ((defaulted, 200), (orphan, 404)):
        r = await outcomes.client.get(f"/v1/episodes/{data.episode_id}/scores",
                                      headers=outcomes.auth(data.clinician_id, "clinician"))
        assert r.status_code == status
    r = await outcomes.client.post(f"/v1/episodes/{orphan.episode_id}/submissions",
                                   headers=outcomes.auth(orphan.person_id, "patient_app"), json=body(h.phq9(5)))
    assert r.status_code == 201, r.text
