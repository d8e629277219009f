"""Repeated risk end to end (issue 15 item 3; domain.md 3.3): two positive PHQ-9 item 9s in a row
for one episode each reach the clinician — and, out of hours, the on-call clinician — although the
first alert is still open. "Already alerted" is never a reason to stay silent: the second is a new
rapport.alert.raised.v1 linked to the open one (``linked_alert_ids``), paged like the first.

The four services as processes over real Kafka and Postgres: intake opens the episode, outcomes
scores the submissions (sent with the assigned clinician's token) and raises the alerts, the
notifier pages through the loopback SMTP server."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
import httpx
import pytest

from rapport_testing.notifier import SimTime, api, notifier_env, until
from rapport_testing.flows import intake_completion, phq9
from rapport_testing.kafka import validate_partner_view, wait_for_records
from rapport_shared.topics import OUTCOMES

pytestmark = pytest.mark.e2e

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PHQ9_18 = {1: 2, 2: 2, 3: 2, 4: 2, 5: 2, 6: 2, 7: 3, 8: 3, 9: 0}
GAD7_12 = {1: 2, 2: 2, 3: 2, 4: 2, 5: 2, 6: 1, 7: 1}


def of(episode: str, ce_type: str):
    return lambda r: r.headers.get("ce_subject") == episode and r.headers.get("ce_type") == ce_type


async def deliveries(dsn: str, alert_id: str) -> list[tuple[str, str, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r.values()) for r in await conn.fetch(
            "SELECT recipient_ref, kind, status FROM notifications WHERE alert_id = $1 ORDER BY recipient_ref",
            uuid.UUID(alert_id))]
    finally:
        await conn.close()


async def no_escalation_armed(dsn: str, alerts: list[str]) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return not await conn.fetchval(
            "SELECT count(*) FROM timers WHERE kind = 'notifier.alert_escalation' AND key = ANY($1::text[])"
            " AND fired_at IS NULL AND cancelled_at IS NULL", [f"alert:{a}" for a in alerts])
    finally:
        await conn.close()


async def test_two_positive_item9s_in_a_row_each_reach_the_clinician_and_on_call(system, kafka, tokens, service_dsns,
                                                                                 smtp):
    bootstrap, dsn = kafka.bootstrap, service_dsns["notifier"]
    sim = SimTime(bootstrap)
    t0 = await sim.start()
    notifier = system.restart("notifier", notifier_env(smtp))
    admin = tokens.issue("admin", ["admin"])  # organisation org-test, like every token here
    tag = uuid.uuid4().hex[:8]
    clin, oncall, person = f"clin-rr-{tag}", f"oncall-rr-{tag}", f"P-rr-{tag}"
    clin_mail, oncall_mail = f"{clin}@clinic.test", f"{oncall}@clinic.test"
    # Outcomes raises alerts on its own (real) clock: working hours only on a weekday three days
    # away make every alert of this test out of hours, so on-call is paged at once too.
    off_day = DAYS[(datetime.now(timezone.utc).weekday() + 3) % 7]
    hours = {"timezone": "UTC", "slots": [{"day": off_day, "start": "09:00", "end": "17:00"}]}
    http = httpx.Client(timeout=30)
    alerts: list[str] = []
    try:
        assert api(notifier.url, admin, "PUT", f"/v1/clinicians/{clin}", json={
            "email": clin_mail, "language": "en", "channels": ["email"], "working_hours": hours}).status_code == 200
        assert api(notifier.url, admin, "PUT", f"/v1/clinicians/{oncall}",
                   json={"email": oncall_mail, "language": "en", "channels": ["email"]}).status_code == 200
        now = datetime.now(timezone.utc)
        assert api(notifier.url, admin, "PUT", "/v1/oncall", json={"slots": [
            {"clinician_id": oncall, "starts_at": (min(now, t0) - timedelta(days=1)).isoformat(),
             "ends_at": (max(now, t0) + timedelta(days=2)).isoformat()}]}).status_code == 200

        # Intake completes with baselines; the episode's assigned clinician is `clin`.
        intake = {"Authorization": f"Bearer {tokens.issue('ic-rr', ['intake_clinician'])}"}
        r = http.post(f"{system['intake'].url}/v1/referrals", headers=intake, json={
            "person_id": person, "referral_source": "gp", "target_condition": "depression"})
        r.raise_for_status()
        episode = r.json()["episode_id"]
        completion = intake_completion(clin)
        completion["baseline"] = [{"instrument": code, "answers": answers, "administered_at": now.isoformat()}
                                  for code, answers in (("phq9", PHQ9_18), ("gad7", GAD7_12))]
        http.post(f"{system['intake'].url}/v1/referrals/{episode}/complete", headers=intake,
                  json=completion).raise_for_status()
        await wait_for_records(bootstrap, OUTCOMES, of(episode, "rapport.score.submitted.v1"), count=2)

        # Two positive item 9s in a row, submitted by the assigned clinician (sub = clinician_id).
        clinician = {"Authorization": f"Bearer {tokens.issue(clin, ['clinician'])}"}
        submissions = []
        for session, (total, item9) in enumerate(((14, 1), (16, 2)), start=1):
            r = http.post(f"{system['outcomes'].url}/v1/episodes/{episode}/submissions", headers=clinician, json={
                "client_submission_id": f"rr-{uuid.uuid4().hex}", "instrument": "phq9", "answers": phq9(total, item9),
                "administered_at": datetime.now(timezone.utc).isoformat(), "session_number": session})
            assert r.status_code == 201, r.text
            submissions.append(r.json())

        raised = [validate_partner_view(rec) for rec in await wait_for_records(
            bootstrap, OUTCOMES, of(episode, "rapport.alert.raised.v1"), count=2)]
        first, second = sorted(raised, key=lambda a: a["raised_at"])
        alerts = [first["alert_id"], second["alert_id"]]
        assert first["alert_id"] != second["alert_id"]
        assert [(a["kind"], a["urgency"], a["reason_code"], a["clinician_id"], a["submission_id"]) for a in (first, second)] == [
            ("safety", "urgent", "safety_item_positive", clin, s["submission_id"]) for s in submissions]
        assert first["linked_alert_ids"] == [] and second["linked_alert_ids"] == [first["alert_id"]]
        assert submissions[0]["alert_ids"] == [first["alert_id"]]
        assert sorted(submissions[1]["alert_ids"]) == sorted(alerts)  # the repeat and the open one it joined

        # Each alert reaches the clinician, and the on-call clinician at once (out of hours).
        for alert_id in alerts:
            await until(lambda a=alert_id: [m for m in smtp.to(clin_mail)
                                            if m["Subject"].startswith("URGENT") and a in m.get_content()],
                        what=f"clinician paged for {alert_id}")
            await until(lambda a=alert_id: [m for m in smtp.to(oncall_mail)
                                            if m["Subject"].startswith("URGENT") and a in m.get_content()],
                        what=f"on-call paged for {alert_id}")
            assert await deliveries(dsn, alert_id) == [(f"clinician:{clin}", "safety_alert", "delivered"),
                                                       (f"oncall:{oncall}", "safety_alert", "delivered")]
        [repeat_page] = [m for m in smtp.to(clin_mail) if second["alert_id"] in m.get_content()]
        assert f"still open: {first['alert_id']}" in repeat_page.get_content()  # names the open alert it repeats
        assert len([m for m in smtp.to(clin_mail) if m["Subject"].startswith("URGENT")]) == 2

        # Both open at once in the clinician's worklist; each is resolved on its own.
        listed = http.get(f"{system['outcomes'].url}/v1/alerts", headers=clinician).json()["alerts"]
        assert {a["alert_id"] for a in listed if a["episode_id"] == episode} == set(alerts)
        for alert_id in alerts:
            r = http.post(f"{system['outcomes'].url}/v1/alerts/{alert_id}/resolve", headers=clinician,
                          json={"action": "safety_plan"})
            assert r.status_code == 200, r.text
    finally:
        if alerts:  # no escalation left armed to page a later test's on-call rota
            await until(lambda: no_escalation_armed(dsn, alerts), what="escalations stopped")
        system.restart("notifier")
