"""Who may see what in the notifier (architecture.md, issue 10), through its HTTP app in process:
safety-alert acknowledgement only by the assigned clinician or the organisation's care team (every
attempt audited, refusals answering like an unknown alert), the delivery log scoped to the caller's
episodes, recipients and patients scoped to the admin's organisation, partner webhooks carrying
only their own organisation's events, on-call paging within the alert's organisation."""

from __future__ import annotations

import uuid
from datetime import timedelta

from rapport_notifier.service_layer import handlers
from rapport_shared.contracts import IntakeCompletedV1
from rapport_shared.contracts.outcomes import AlertRaisedV1
from rapport_testing.fixtures import OTHER_ORG, TEST_ORG


def intake(h, *, clinician: str, org: str | None = TEST_ORG, person: str | None = None) -> IntakeCompletedV1:
    at = h.clock.now() - timedelta(days=1)
    return IntakeCompletedV1(
        episode_id=uuid.uuid4(), person_id=person or f"P-t{uuid.uuid4().hex[:8]}", target_condition="depression",
        template_id="ipt-standard", focus={"primary": "grief"}, clinician_id=clinician,
        availability={"timezone": "Europe/London", "slots": [{"weekday": 2, "start": "09:00", "end": "12:00"}]},
        referred_at=at, completed_at=at + timedelta(hours=1), organisation_id=org)


def raised(episode_id, clinician: str, kind: str = "safety", at=None) -> AlertRaisedV1:
    return AlertRaisedV1(episode_id=episode_id, alert_id=uuid.uuid4(), kind=kind,
                         urgency="urgent" if kind == "safety" else "routine",
                         reason_code="safety_item_positive" if kind == "safety" else "deterioration",
                         clinician_id=clinician, instrument="phq9", raised_at=at)


async def episode_with_alert(h, clinician: str, org: str = TEST_ORG):
    ep = intake(h, clinician=clinician, org=org)
    await h.handle(ep)
    alert = raised(ep.episode_id, clinician, at=h.clock.now())
    await h.handle(alert)
    return ep, alert


def same_body(a, b) -> bool:
    """The core's 404 for 'not yours' and for 'missing' differ only by the id in the detail."""
    ja, jb = a.json(), b.json()
    return a.status_code == b.status_code == 404 and {k: v for k, v in ja.items() if k != "detail"} == \
        {k: v for k, v in jb.items() if k != "detail"} and ja["detail"].rsplit(" ", 1)[0] == jb["detail"].rsplit(" ", 1)[0]


async def escalation_armed(h, alert_id) -> bool:
    return bool(await h.val("SELECT true FROM timers WHERE kind = $1 AND key = $2 AND fired_at IS NULL"
                            " AND cancelled_at IS NULL", handlers.T_ESCALATION, f"alert:{alert_id}"))


# ---------------------------------------------------------------- safety alerts
async def test_a_clinician_not_assigned_cannot_acknowledge_and_the_attempt_is_audited(h, api):
    ep, alert = await episode_with_alert(h, "clin-a")
    path = f"/v1/alerts/{alert.alert_id}/acknowledge"
    unknown = await api.call("clin-b", "clinician", "POST", f"/v1/alerts/{uuid.uuid4()}/acknowledge")

    refused = await api.call("clin-b", "clinician", "POST", path)  # same organisation, not assigned, no duty
    assert refused.status_code == 404 and same_body(refused, unknown), refused.text
    assert refused.json()["field"] == "alert_id"
    # the assigned clinician's id in another organisation's token is not the assigned clinician
    other_org = await api.call("clin-a", "clinician", "POST", path, org=OTHER_ORG)
    assert same_body(other_org, unknown)
    assert (await api.call("admin-1", "admin", "POST", path)).status_code == 403  # admins do not acknowledge
    garbage = await api.call("clin-b", "clinician", "POST", "/v1/alerts/not-a-uuid/acknowledge")
    assert garbage.status_code in (404, 422)

    row = await h.row("SELECT acknowledged_at, acknowledged_by FROM alerts WHERE alert_id = $1", alert.alert_id)
    assert row["acknowledged_at"] is None and row["acknowledged_by"] is None
    assert await escalation_armed(h, alert.alert_id)  # the escalation to on-call still runs
    audit = await api.audit(record_id=str(alert.alert_id))
    assert [(a["actor"], a["actor_org"], a["decision"], a["status"]) for a in audit] == [
        ("clin-b", TEST_ORG, "refused", 404), ("clin-a", OTHER_ORG, "refused", 404)]
    assert audit[0]["route"] == "/v1/alerts/{alert_id}/acknowledge" and audit[0]["record_org"] == TEST_ORG
    assert await api.audit(decision="not_found", actor="clin-b")  # the unknown alert too

    ok = await api.call("clin-a", "clinician", "POST", path)  # the assigned clinician
    assert ok.status_code == 200, ok.text
    assert ok.json()["acknowledged_by"] == "clin-a" and not await escalation_armed(h, alert.alert_id)
    assert [a["decision"] for a in await api.audit(record_id=str(alert.alert_id), actor="clin-a")] == ["refused", "allowed"]


async def test_the_organisations_on_call_and_supervisor_from_the_care_team_can_acknowledge(h, api):
    _, alert = await episode_with_alert(h, "clin-a")
    _, alert2 = await episode_with_alert(h, "clin-a")
    path = f"/v1/alerts/{alert.alert_id}/acknowledge"
    assert (await api.call("oncall-1", "clinician", "POST", path)).status_code == 404
    now = h.clock.now()
    team = {"entries": [
        {"clinician_id": "oncall-1", "duty": "on_call", "starts_at": (now - timedelta(hours=1)).isoformat(),
         "ends_at": (now + timedelta(hours=1)).isoformat()},
        {"clinician_id": "oncall-later", "duty": "on_call", "starts_at": (now + timedelta(hours=1)).isoformat(),
         "ends_at": (now + timedelta(hours=9)).isoformat()},
        {"clinician_id": "super-1", "duty": "supervisor"}]}
    r = await api.call("admin-1", "admin", "PUT", "/v1/care-team", json=team)
    assert r.status_code == 200, r.text
    # another organisation's on-call clinician (same id, other org) still cannot
    assert (await api.call("oncall-1", "clinician", "POST", path, org=OTHER_ORG)).status_code == 404
    assert (await api.call("oncall-later", "clinician", "POST", path)).status_code == 404  # not on call now

    ok = await api.call("oncall-1", "clinician", "POST", path)
    assert ok.status_code == 200 and ok.json()["acknowledged_by"] == "oncall-1", ok.text
    assert not await escalation_armed(h, alert.alert_id)
    ok2 = await api.call("super-1", "clinician", "POST", f"/v1/alerts/{alert2.alert_id}/acknowledge")
    assert ok2.status_code == 200 and ok2.json()["acknowledged_by"] == "super-1"
    assert [a["decision"] for a in await api.audit(record_id=str(alert.alert_id), actor="oncall-1")] == \
        ["refused", "refused", "allowed"]


async def test_the_on_call_clinician_paged_about_an_alert_may_acknowledge_it(h, api):
    """Paged by the organisation's rota (PUT /v1/oncall) when the escalation fired: asked to act."""
    now = h.clock.now()
    r = await api.call("admin-1", "admin", "PUT", "/v1/oncall", json={"slots": [
        {"clinician_id": "rota-1", "starts_at": (now - timedelta(days=1)).isoformat(),
         "ends_at": (now + timedelta(days=1)).isoformat()}]})
    assert r.status_code == 200
    _, alert = await episode_with_alert(h, "clin-a")
    path = f"/v1/alerts/{alert.alert_id}/acknowledge"
    assert (await api.call("rota-1", "clinician", "POST", path)).status_code == 404  # not paged yet
    h.clock.advance(timedelta(minutes=20))
    await h.fire_due()
    assert await h.val("SELECT count(*) FROM notifications WHERE alert_id = $1 AND recipient_ref = 'oncall:rota-1'",
                       alert.alert_id)
    ok = await api.call("rota-1", "clinician", "POST", path)
    assert ok.status_code == 200 and ok.json()["escalated"] is True, ok.text


async def test_an_escalation_pages_only_the_on_call_clinicians_of_the_alerts_organisation(h, api):
    now = h.clock.now()
    for org, who in ((TEST_ORG, "rota-test"), (OTHER_ORG, "rota-other")):
        r = await api.call(f"admin-{org}", "admin", "PUT", "/v1/oncall", org=org, json={"slots": [
            {"clinician_id": who, "starts_at": (now - timedelta(days=1)).isoformat(),
             "ends_at": (now + timedelta(days=1)).isoformat()}]})
        assert r.status_code == 200
    # each admin sees (and replaced) only its own organisation's rota
    mine = (await api.call("admin-x", "admin", "GET", "/v1/oncall")).json()["slots"]
    assert [s["clinician_id"] for s in mine] == ["rota-test"]
    _, alert = await episode_with_alert(h, "clin-a")
    h.clock.advance(timedelta(minutes=20))
    await h.fire_due()
    paged = await h.fetch("SELECT DISTINCT recipient_ref FROM notifications WHERE alert_id = $1 AND kind = 'safety_escalation'",
                          alert.alert_id)
    assert [r["recipient_ref"] for r in paged] == ["oncall:rota-test"]


# ---------------------------------------------------------------- delivery log
async def test_the_delivery_log_shows_only_the_callers_episodes(h, api):
    ep_a, _ = await episode_with_alert(h, "clin-a")
    ep_b, _ = await episode_with_alert(h, "clin-b")
    ep_x, _ = await episode_with_alert(h, "clin-a", org=OTHER_ORG)  # the same clinician id, another organisation

    async def seen(sub, role, org=TEST_ORG, **params):
        r = await api.call(sub, role, "GET", "/v1/deliveries", org=org, params=params)
        assert r.status_code == 200, r.text
        return {d["episode_id"] for d in r.json()["deliveries"]}

    assert await seen("clin-a", "clinician") == {str(ep_a.episode_id)}
    assert await seen("clin-b", "clinician") == {str(ep_b.episode_id)}
    assert await seen("clin-a", "clinician", episode_id=str(ep_b.episode_id)) == set()  # asking does not help
    assert await seen("clin-a", "clinician", org=OTHER_ORG) == {str(ep_x.episode_id)}
    assert await seen("admin-1", "admin") == {str(ep_a.episode_id), str(ep_b.episode_id)}
    assert await seen("admin-2", "admin", org=OTHER_ORG) == {str(ep_x.episode_id)}
    assert await seen("clin-c", "clinician") == set()
    r = await api.call("admin-1", "admin", "PUT", "/v1/care-team", json={"entries": [
        {"clinician_id": "super-1", "duty": "supervisor"}]})
    assert r.status_code == 200
    assert await seen("super-1", "clinician") == {str(ep_a.episode_id), str(ep_b.episode_id)}
    assert (await api.call("p-1", "partner", "GET", "/v1/deliveries")).status_code == 403
    reads = await api.audit(route="/v1/deliveries", decision="allowed")
    assert {(a["actor"], a["actor_org"]) for a in reads} >= {("clin-a", TEST_ORG), ("admin-2", OTHER_ORG)}


# ---------------------------------------------------------------- recipients and patients (admin)
async def test_an_admin_manages_only_its_organisations_recipients(h, api):
    body = {"email": "a@clinic.test", "language": "en", "channels": ["email"]}
    assert (await api.call("admin-1", "admin", "PUT", "/v1/clinicians/clin-a", json=body)).status_code == 200
    other = await api.call("admin-2", "admin", "PUT", "/v1/clinicians/clin-a", org=OTHER_ORG,
                           json={**body, "email": "attacker@evil.test"})
    assert other.status_code == 404 and other.json() == {**other.json(), "field": "clinician_id"}
    assert other.json()["detail"] == "no clinician clin-a"
    # a clinician known here only from another organisation's episodes cannot be claimed either
    await h.handle(intake(h, clinician="clin-theirs", org=OTHER_ORG))
    assert (await api.call("admin-1", "admin", "PUT", "/v1/clinicians/clin-theirs", json=body)).status_code == 404
    assert (await api.call("admin-2", "admin", "PUT", "/v1/clinicians/clin-theirs", org=OTHER_ORG,
                           json=body)).status_code == 200
    assert [c["clinician_id"] for c in (await api.call("admin-1", "admin", "GET", "/v1/clinicians")).json()["clinicians"]] \
        == ["clin-a"]
    gone = await api.call("admin-2", "admin", "DELETE", "/v1/clinicians/clin-a", org=OTHER_ORG)
    assert gone.json() == {"clinician_id": "clin-a", "erased": False}
    assert await h.val("SELECT email FROM clinicians WHERE clinician_id = 'clin-a'") == "a@clinic.test"
    assert (await api.call("admin-1", "admin", "DELETE", "/v1/clinicians/clin-a")).json()["erased"] is True


async def test_patient_contact_reads_are_scoped_by_the_persons_episodes_and_audited(h, api):
    ep = intake(h, clinician="clin-a", person="P-mine")
    await h.handle(ep)
    await h.handle(intake(h, clinician="clin-z", person="P-theirs", org=OTHER_ORG))
    await h.exec("INSERT INTO patients (person_id, email, channel_consent, updated_at) VALUES"
                 " ('P-mine', 'mine@patients.test', '{\"email\": true}', now()),"
                 " ('P-theirs', 'theirs@patients.test', '{\"email\": true}', now())")
    mine = await api.call("admin-1", "admin", "GET", "/v1/patients/P-mine")
    assert mine.status_code == 200 and mine.json()["contact"]["email"] == "mine@patients.test"
    theirs = await api.call("admin-1", "admin", "GET", "/v1/patients/P-theirs")
    nobody = await api.call("admin-1", "admin", "GET", "/v1/patients/P-nobody")
    assert theirs.status_code == 404 and same_body(theirs, nobody) and "theirs@" not in theirs.text
    assert (await api.call("admin-1", "admin", "PUT", "/v1/patients/P-theirs/preferences",
                           json={"language": "es"})).status_code == 404
    assert (await api.call("admin-1", "admin", "DELETE", "/v1/patients/P-theirs")).status_code == 404
    assert await h.val("SELECT email FROM patients WHERE person_id = 'P-theirs'") == "theirs@patients.test"
    assert (await api.call("admin-2", "admin", "GET", "/v1/patients/P-theirs", org=OTHER_ORG)).status_code == 200
    assert (await api.call("clin-a", "clinician", "GET", "/v1/patients/P-mine")).status_code == 403
    assert [(a["actor"], a["decision"]) for a in await api.audit(record_id="P-mine")] == [("admin-1", "allowed")]
    assert [(a["actor"], a["decision"]) for a in await api.audit(record_id="P-theirs")] == [
        ("admin-1", "refused"), ("admin-1", "refused"), ("admin-1", "refused"), ("admin-2", "allowed")]
    audit_text = str(await api.audit())
    assert "@patients.test" not in audit_text  # no contact data in the audit


# ---------------------------------------------------------------- partner webhooks
async def test_a_partner_receives_only_events_of_its_own_organisations_episodes(h, api):
    subs = {}
    for org, partner in ((TEST_ORG, "partner-a"), (OTHER_ORG, "partner-b")):
        r = await api.call(partner, "partner", "POST", "/v1/webhooks/subscriptions", org=org, json={
            "url": f"https://{partner}.example/hook", "event_types": ["rapport.alert.raised.v1",
                                                                       "rapport.intake.completed.v1"]})
        assert r.status_code == 201, r.text
        subs[org] = r.json()["subscription_id"]
    mine, _ = await episode_with_alert(h, "clin-a")
    theirs, _ = await episode_with_alert(h, "clin-b", org=OTHER_ORG)
    orphan = raised(uuid.uuid4(), "clin-a", at=h.clock.now())  # an episode of no known organisation
    await h.handle(orphan)
    hooks = await h.fetch("SELECT recipient_ref, episode_id FROM notifications WHERE channel = 'webhook'")
    got = {(r["recipient_ref"], r["episode_id"]) for r in hooks}
    assert got == {(f"partner:{subs[TEST_ORG]}", mine.episode_id), (f"partner:{subs[OTHER_ORG]}", theirs.episode_id)}
    assert len(hooks) == 4  # intake.completed and alert.raised for each, nothing crossing organisations
    # each partner lists (and could delete) only its own subscription
    listed = (await api.call("partner-a", "partner", "GET", "/v1/webhooks/subscriptions")).json()["subscriptions"]
    assert [s["subscription_id"] for s in listed] == [subs[TEST_ORG]]
    gone = await api.call("partner-a", "partner", "DELETE", f"/v1/webhooks/subscriptions/{subs[OTHER_ORG]}")
    assert gone.status_code == 404
    # a partner token that names no organisation cannot subscribe
    no_org = api.tokens.__class__(api.tokens.secret).issue("partner-c", ["partner"])
    r = await api.client.post("/v1/webhooks/subscriptions", headers={"Authorization": f"Bearer {no_org}"},
                              json={"url": "https://c.example/hook", "event_types": ["rapport.alert.raised.v1"]})
    assert r.status_code == 422 and r.json()["field"] == "org"
