"""First safety pages out of hours, end to end (domain.md 3.3: "out-of-hours to an on-call rota"):
a clinician's working hours set over HTTP (strictly validated); a safety alert raised outside
them pages the on-call clinician at once as well as the clinician — before any escalation could
be due, since simulated time does not move — and one inside them pages only the clinician.
Real Kafka, Postgres, the notifier as a process and the loopback SMTP server."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import pytest

from rapport_testing.notifier import SimTime, api, intake_known, notifier_env, publish, until
from rapport_shared.contracts.outcomes import AlertRaisedV1, AlertResolvedV1

pytestmark = pytest.mark.e2e

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NINE_TO_FIVE = {"timezone": "UTC", "slots": [{"day": d, "start": "09:00", "end": "17:00"} for d in DAYS]}


async def rows(dsn: str, alert_id) -> list[tuple[str, str, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r.values()) for r in await conn.fetch(
            "SELECT recipient_ref, kind, status FROM notifications WHERE alert_id = $1 ORDER BY recipient_ref", alert_id)]
    finally:
        await conn.close()


async def no_escalation_armed(dsn: str, alerts) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return not await conn.fetchval(
            "SELECT count(*) FROM timers WHERE kind = 'notifier.alert_escalation' AND key = ANY($1::text[])"
            " AND fired_at IS NULL AND cancelled_at IS NULL", [f"alert:{a}" for a in alerts])
    finally:
        await conn.close()


async def test_a_safety_alert_out_of_hours_pages_on_call_at_once(system, kafka, tokens, service_dsns, smtp):
    bootstrap, dsn = kafka.bootstrap, service_dsns["notifier"]
    sim = SimTime(bootstrap)
    t0 = await sim.start()  # 06:00 UTC: before the clinician's working hours
    notifier = system.restart("notifier", notifier_env(smtp))
    admin = tokens.issue("admin", ["admin"])
    tag = uuid.uuid4().hex[:8]
    clin, oncall = f"clin-ooh-{tag}", f"oncall-ooh-{tag}"
    clin_mail, oncall_mail = f"{clin}@clinic.test", f"{oncall}@clinic.test"
    try:
        body = {"email": clin_mail, "language": "en", "channels": ["email"], "working_hours": NINE_TO_FIVE}
        r = api(notifier.url, admin, "PUT", f"/v1/clinicians/{clin}", json=body)
        assert r.status_code == 200, r.text
        for bad, field in (({"timezone": "Atlantis/Capital", "slots": NINE_TO_FIVE["slots"]}, "working_hours.timezone"),
                           ({"timezone": "UTC", "slots": [{"day": "mon", "start": "9am", "end": "17:00"}]},
                            "working_hours.slots.0.start")):
            r = api(notifier.url, admin, "PUT", f"/v1/clinicians/{clin}", json={**body, "working_hours": bad})
            assert r.status_code == 422 and r.json().get("field") == field, r.text
        [stored] = [c for c in api(notifier.url, admin, "GET", "/v1/clinicians").json()["clinicians"]
                    if c["clinician_id"] == clin]
        assert stored["working_hours"] == NINE_TO_FIVE  # the refused updates stored nothing
        assert api(notifier.url, admin, "PUT", f"/v1/clinicians/{oncall}",
                   json={"email": oncall_mail, "language": "en", "channels": ["email"]}).status_code == 200
        assert api(notifier.url, admin, "PUT", "/v1/oncall", json={"slots": [
            {"clinician_id": oncall, "starts_at": (t0 - timedelta(days=1)).isoformat(),
             "ends_at": (t0 + timedelta(days=2)).isoformat()}]}).status_code == 200

        # 06:00, out of hours: the clinician and the on-call clinician are paged at once.
        episode, night = uuid.uuid4(), uuid.uuid4()
        # of the tokens' organisation (org-test): its alerts page that organisation's on-call rota
        await intake_known(bootstrap, dsn, episode, f"P-ooh-{tag}", clin, sim.now)
        await publish(bootstrap, AlertRaisedV1(
            episode_id=episode, alert_id=night, kind="safety", urgency="urgent", reason_code="safety_item_positive",
            clinician_id=clin, instrument="phq9", raised_at=sim.now), source="/rapport/outcomes", at=sim.now)
        await until(lambda: [m for m in smtp.to(clin_mail) if str(night) in m.get_content()], what="clinician paged")
        page = await until(lambda: [m for m in smtp.to(oncall_mail) if str(night) in m.get_content()],
                           what="on-call paged at once, out of hours")
        assert page[0]["Subject"].startswith("URGENT: safety alert")  # the first page, not the escalation
        assert await rows(dsn, night) == [(f"clinician:{clin}", "safety_alert", "delivered"),
                                          (f"oncall:{oncall}", "safety_alert", "delivered")]

        # 10:00, inside the hours: only the clinician (on-call hears of it by the escalation, if due).
        await sim.to(t0.replace(hour=10))
        day = uuid.uuid4()
        await publish(bootstrap, AlertRaisedV1(
            episode_id=episode, alert_id=day, kind="safety", urgency="urgent", reason_code="safety_item_positive",
            clinician_id=clin, instrument="phq9", raised_at=sim.now), source="/rapport/outcomes", at=sim.now)
        await until(lambda: [m for m in smtp.to(clin_mail) if str(day) in m.get_content()], what="clinician paged")
        assert await rows(dsn, day) == [(f"clinician:{clin}", "safety_alert", "delivered")]
        assert not [m for m in smtp.to(oncall_mail) if str(day) in m.get_content()]

        # Resolved: no escalation is left armed to page a later test's on-call rota.
        for alert in (night, day):
            await publish(bootstrap, AlertResolvedV1(episode_id=episode, alert_id=alert, kind="safety", resolved_by=clin,
                                                     action="assessment", resolved_at=sim.now),
                          source="/rapport/outcomes", at=sim.now)
        await until(lambda: no_escalation_armed(dsn, [night, day]), what="escalations stopped")
    finally:
        system.restart("notifier")
