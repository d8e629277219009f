"""The notifier end to end (issue 6): real Kafka, Postgres, the notifier as a process, and a
loopback SMTP server, SMS provider and webhook receivers. Time is simulated (rapport.clock)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import timedelta

import asyncpg
import pytest

from rapport_testing.notifier import SimTime, api, intake_known, notifier_env, publish, publish_contact, until
from rapport_shared.contracts.course import CoursePlannedV1, PhaseSpan, PlannedSession, SessionRescheduledV1
from rapport_shared.contracts.outcomes import AlertRaisedV1, AlertResolvedV1
from rapport_shared.private_contacts import ContactRecordV1

pytestmark = pytest.mark.e2e


def verify_webhook(secret: str, headers: dict, body: bytes) -> bool:
    """The recipe of docs/notifier.md, written from the documentation (no notifier code)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, s.partition(",")[2]) for s in headers["webhook-signature"].split()
               if s.startswith("v1,"))


async def test_reminders_questionnaires_alerts_and_webhooks(system, kafka, tokens, service_dsns, smtp, sinks):
    bootstrap = kafka.bootstrap
    sim = SimTime(bootstrap)
    t0 = await sim.start()
    notifier = system.restart("notifier", notifier_env(smtp))
    admin, partner = tokens.issue("admin", ["admin"]), tokens.issue("partner-1", ["partner"])
    tag = uuid.uuid4().hex[:8]
    clin, oncall, person = f"clin-t{tag}", f"oncall-t{tag}", f"P-t{tag}"
    clin_mail, oncall_mail, patient_mail = f"{clin}@clinic.test", f"{oncall}@clinic.test", f"{person}@patients.test"
    good, failing, hanging = sinks("ok"), sinks("fail"), sinks("hang")
    subs = []
    try:
        # Recipients: clinician and on-call over HTTP (admin); the patient over the private contacts topic.
        assert api(notifier.url, admin, "PUT", f"/v1/clinicians/{clin}",
                   json={"email": clin_mail, "language": "en", "channels": ["email"]}).status_code == 200
        assert api(notifier.url, admin, "PUT", f"/v1/clinicians/{oncall}",
                   json={"email": oncall_mail, "language": "en", "channels": ["email"]}).status_code == 200
        assert api(notifier.url, admin, "PUT", "/v1/oncall", json={"slots": [
            {"clinician_id": oncall, "starts_at": (t0 - timedelta(days=1)).isoformat(),
             "ends_at": (t0 + timedelta(days=60)).isoformat()}]}).status_code == 200
        await publish_contact(bootstrap, ContactRecordV1(person_id=person, email=patient_mail, channel_consent={"email": True},
                                                         preferred_channel="email", updated_at=t0))
        for sink in (good, failing, hanging):
            r = api(notifier.url, partner, "POST", "/v1/webhooks/subscriptions",
                    json={"url": f"{sink.url}/hook", "event_types": ["rapport.alert.raised.v1", "rapport.course.planned.v1"]})
            assert r.status_code == 201, r.text
            subs.append(r.json())

        # A course with two sessions, three and seven days ahead.
        episode, course = uuid.uuid4(), uuid.uuid4()
        s1, s2 = uuid.uuid4(), uuid.uuid4()
        at1, at2 = t0 + timedelta(days=3, hours=4), t0 + timedelta(days=7, hours=4)
        await until(lambda: notifier_has_patient(service_dsns["notifier"], person), what="contact from the private topic")
        # The episode belongs to the tokens' organisation (org-test): its deliveries, webhooks, on-call.
        await intake_known(bootstrap, service_dsns["notifier"], episode, person, clin, t0)
        await publish(bootstrap, CoursePlannedV1(
            episode_id=episode, course_id=course, person_id=person, template_id="ipt_depression_16", clinician_id=clin,
            contracted_sessions=2, phase_plan=[PhaseSpan(phase="initial", first_session=1, last_session=2)],
            sessions=[PlannedSession(session_id=s1, number=1, starts_at=at1, duration_minutes=50),
                      PlannedSession(session_id=s2, number=2, starts_at=at2, duration_minutes=50)],
            first_session_at=at1, planned_end_at=at2, planned_at=t0), source="/rapport/scheduler", at=t0)

        # Questionnaire request 48 h before session 1.
        await sim.to(at1 - timedelta(hours=48) + timedelta(minutes=1))
        req = await until(lambda: [m for m in smtp.to(patient_mail) if "questionnaire" in m["Subject"]],
                          what="questionnaire request")
        assert "session 1" in req[0]["Subject"] and not [m for m in smtp.to(patient_mail) if "Reminder: your session" in m["Subject"]]

        # Session 1 moves one day later: its reminder moves with it.
        new_at1 = at1 + timedelta(days=1)
        await publish(bootstrap, SessionRescheduledV1(
            episode_id=episode, course_id=course, session_id=s1, number=1, previous_starts_at=at1, starts_at=new_at1,
            reason_code="patient_request", rescheduled_at=sim.now), source="/rapport/scheduler", at=sim.now)
        await until(lambda: session_due(service_dsns["notifier"], s1, new_at1 - timedelta(hours=24)), what="moved reminder timer")
        await sim.to(at1 - timedelta(hours=23))  # the old reminder time has passed
        # the questionnaire reminder (24 h after the request, unanswered) arrives; no session reminder yet
        await until(lambda: [m for m in smtp.to(patient_mail) if m["Subject"].startswith("Reminder: questionnaire")],
                    what="questionnaire reminder")
        assert not [m for m in smtp.to(patient_mail) if m["Subject"].startswith("Reminder: your session")]
        await sim.to(new_at1 - timedelta(hours=24) + timedelta(minutes=1))
        rem = await until(lambda: [m for m in smtp.to(patient_mail) if m["Subject"].startswith("Reminder: your session")],
                          what="session reminder at the new time")
        assert len(rem) == 1 and new_at1.strftime("%Y-%m-%d %H:%M") in rem[0]["Subject"]
        assert rem[0]["Message-ID"] and rem[0]["X-Rapport-Idempotency-Key"]

        # Item 9 positive → the clinician is paged at once; unacknowledged → on-call; stopped on resolution.
        alert = uuid.uuid4()
        raised_id = await publish(bootstrap, AlertRaisedV1(
            episode_id=episode, alert_id=alert, kind="safety", urgency="urgent", reason_code="safety_item_positive",
            clinician_id=clin, instrument="phq9", raised_at=sim.now), source="/rapport/outcomes", at=sim.now)
        page = await until(lambda: [m for m in smtp.to(clin_mail) if "URGENT" in m["Subject"]], what="clinician paged")
        assert str(alert) in page[0].get_content()
        assert not smtp.to(oncall_mail)
        await sim.to(sim.now + timedelta(minutes=16))
        await until(lambda: [m for m in smtp.to(oncall_mail) if "on-call" in m["Subject"]], what="escalation to on-call")
        await publish(bootstrap, AlertResolvedV1(episode_id=episode, alert_id=alert, kind="safety", resolved_by=clin,
                                                 action="safety_plan", resolved_at=sim.now), source="/rapport/outcomes", at=sim.now)
        # A second alert resolved before the escalation time is never escalated.
        alert2 = uuid.uuid4()
        await publish(bootstrap, AlertRaisedV1(
            episode_id=episode, alert_id=alert2, kind="safety", urgency="urgent", reason_code="safety_item_positive",
            clinician_id=clin, instrument="phq9", raised_at=sim.now), source="/rapport/outcomes", at=sim.now)
        await until(lambda: [m for m in smtp.to(clin_mail) if str(alert2) in m.get_content()], what="second page")
        await publish(bootstrap, AlertResolvedV1(episode_id=episode, alert_id=alert2, kind="safety", resolved_by=clin,
                                                 action="assessment", resolved_at=sim.now), source="/rapport/outcomes", at=sim.now)
        await until(lambda: escalation_cancelled(service_dsns["notifier"], alert2), what="escalation stopped")
        await sim.to(sim.now + timedelta(minutes=30))
        assert len([m for m in smtp.to(oncall_mail)]) == 1  # only the first alert escalated

        # Partner webhooks: signed, verifiable; a failing and a hanging endpoint did not hold them up.
        hooks = await until(lambda: [r for r in good.requests if json.loads(r[2])["type"] == "rapport.alert.raised.v1"
                                     and json.loads(r[2])["data"]["alert_id"] == str(alert)], what="webhook")
        path, headers, body = hooks[0]
        assert verify_webhook(subs[0]["secret"], headers, body)
        assert not verify_webhook(subs[1]["secret"], headers, body)
        assert json.loads(body)["id"] == raised_id
        await until(lambda: len({r[1]["webhook-id"] for r in failing.requests}) >= 1 and len(failing.requests) >= 2,
                    what="retries to the failing endpoint")
        retried = [r for r in failing.requests if json.loads(r[2])["id"] == raised_id]
        assert len({r[1]["webhook-id"] for r in retried}) <= 1  # the same webhook-id on every retry

        log = api(notifier.url, admin, "GET", "/v1/deliveries", params={"episode_id": str(episode)}).json()["deliveries"]
        assert all("@" not in json.dumps(d) for d in log)  # by reference only
        # The log in pages of 2 (keyset cursor): the same rows, in the same order, none twice.
        paged, after = [], None
        while True:
            page = api(notifier.url, admin, "GET", "/v1/deliveries", params={
                "episode_id": str(episode), "limit": 2, **({"after": after} if after else {})}).json()
            paged += page["deliveries"]
            if not (after := page["next"]):
                break
        ids = [d["notification_id"] for d in paged]
        assert ids[:len(log)] == [d["notification_id"] for d in log] and len(log) > 2 and len(set(ids)) == len(ids)
        bad = api(notifier.url, admin, "GET", "/v1/deliveries", params={"after": "yesterday"})
        assert bad.status_code == 422 and bad.json()["field"] == "after"
        kinds = sorted(d["kind"] for d in log if d["recipient_ref"] == f"patient:{person}")
        assert kinds == ["questionnaire_reminder", "questionnaire_request", "session_reminder"]
        failed = await until(lambda: [d for d in api(notifier.url, admin, "GET", "/v1/deliveries",
                                                     params={"episode_id": str(episode), "status": "failed"}).json()["deliveries"]
                                      if d["recipient_ref"] == f"partner:{subs[1]['subscription_id']}"],
                             what="webhook to the failing endpoint marked failed")
        assert failed[0]["attempts"] >= 2
    finally:
        for s in subs:
            api(system["notifier"].url, partner, "DELETE", f"/v1/webhooks/subscriptions/{s['subscription_id']}")
        system.restart("notifier")


async def notifier_has_patient(dsn: str, person: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM patients WHERE person_id = $1", person))
    finally:
        await conn.close()


async def session_due(dsn: str, session_id, due) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(
            "SELECT due_at FROM timers WHERE kind = 'notifier.session_reminder' AND key = $1 AND fired_at IS NULL"
            " AND cancelled_at IS NULL", f"session:{session_id}") == due
    finally:
        await conn.close()


async def escalation_cancelled(dsn: str, alert_id) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval(
            "SELECT cancelled_at IS NOT NULL FROM timers WHERE kind = 'notifier.alert_escalation' AND key = $1",
            f"alert:{alert_id}"))
    finally:
        await conn.close()
