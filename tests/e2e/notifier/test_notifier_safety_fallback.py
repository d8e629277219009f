"""A safety escalation with nobody on call, end to end (domain.md 3.3: alerts are never silently
dropped; docs/notifier.md, "Safety pages"): the alert's organisation has an empty on-call rota, so
when the escalation falls due the notifier pages RAPPORT_SAFETY_FALLBACK — an email through the
loopback SMTP server, recorded in the delivery log with its notification.delivered event like any
page. Before this the escalation wrote "nobody on call" to the log and paged nobody.
Real Kafka, Postgres, the notifier as a process, simulated time."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import pytest

from rapport_testing.notifier import SimTime, api, intake_known, notifier_env, publish, until
from rapport_shared.contracts.outcomes import AlertRaisedV1, AlertResolvedV1

pytestmark = pytest.mark.e2e


async def rows(dsn: str, alert_id) -> list[tuple]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r.values()) for r in await conn.fetch(
            "SELECT recipient_ref, kind, channel, status FROM notifications WHERE alert_id = $1"
            " ORDER BY recipient_ref, kind", alert_id)]
    finally:
        await conn.close()


async def delivered_events(dsn: str, alert_id) -> list[str]:
    """recipient_ref of each notification.delivered event (the outbox) for the alert's deliveries."""
    conn = await asyncpg.connect(dsn)
    try:
        return [r["ref"] for r in await conn.fetch(
            "SELECT convert_from(o.value, 'UTF8')::jsonb ->> 'recipient_ref' AS ref FROM outbox o"
            " WHERE o.event_type = 'rapport.notification.delivered.v1'"
            " AND (convert_from(o.value, 'UTF8')::jsonb ->> 'notification_id')::uuid IN"
            " (SELECT notification_id FROM notifications WHERE alert_id = $1)", alert_id)]
    finally:
        await conn.close()


async def test_an_escalation_with_an_empty_rota_pages_the_configured_fallback(system, kafka, tokens, service_dsns, smtp):
    bootstrap, dsn = kafka.bootstrap, service_dsns["notifier"]
    tag = uuid.uuid4().hex[:8]
    fallback = f"safety-desk-{tag}@clinic.test"
    org = f"org-fb-{tag}"  # an organisation with no on-call rota at all
    sim = SimTime(bootstrap)
    t0 = await sim.start()
    notifier = system.restart("notifier", notifier_env(smtp, RAPPORT_SAFETY_FALLBACK=fallback))
    admin = tokens.issue("admin", ["admin"], org=org)
    clin = f"clin-fb-{tag}"
    clin_mail = f"{clin}@clinic.test"
    try:
        r = api(notifier.url, admin, "PUT", f"/v1/clinicians/{clin}",
                json={"email": clin_mail, "language": "en", "channels": ["email"]})
        assert r.status_code == 200, r.text
        assert api(notifier.url, admin, "GET", "/v1/oncall").json()["slots"] == []

        episode, alert = uuid.uuid4(), uuid.uuid4()
        await intake_known(bootstrap, dsn, episode, f"P-fb-{tag}", clin, sim.now, org=org)
        await publish(bootstrap, AlertRaisedV1(
            episode_id=episode, alert_id=alert, kind="safety", urgency="urgent", reason_code="safety_item_positive",
            clinician_id=clin, instrument="phq9", raised_at=sim.now), source="/rapport/outcomes", at=sim.now)
        await until(lambda: [m for m in smtp.to(clin_mail) if str(alert) in m.get_content()], what="clinician paged")
        assert not smtp.to(fallback)  # not yet: the escalation is 15 min away

        await sim.to(t0 + timedelta(minutes=16))  # unacknowledged past ESCALATION_AFTER, nobody on call
        page = await until(lambda: smtp.to(fallback), timeout=60, what="the fallback paged by the escalation")
        assert page[0]["Subject"].startswith("URGENT (on-call)") and str(alert) in page[0]["Subject"]
        assert await until(lambda: rows_if(dsn, alert, 2), what="both pages recorded delivered") == [
            (f"clinician:{clin}", "safety_alert", "email", "delivered"),
            ("oncall:fallback", "safety_escalation", "email", "delivered")]
        got = api(notifier.url, admin, "GET", f"/v1/deliveries?episode_id={episode}&kind=safety_escalation").json()
        [entry] = got["deliveries"]
        assert entry["recipient_ref"] == "oncall:fallback" and entry["status"] == "delivered"
        assert fallback not in str(got)  # the delivery log names the reference, never the address
        assert sorted(await until(lambda: delivered_events_if(dsn, alert, 2), what="delivered events")) == \
            [f"clinician:{clin}", "oncall:fallback"]
        assert len(smtp.to(fallback)) == 1
    finally:
        await publish(bootstrap, AlertResolvedV1(episode_id=episode, alert_id=alert, kind="safety", resolved_by=clin,
                                                 action="assessment", resolved_at=sim.now),
                      source="/rapport/outcomes", at=sim.now)
        system.restart("notifier")


async def rows_if(dsn: str, alert_id, n: int):
    got = await rows(dsn, alert_id)
    return got if len(got) == n and all(r[3] == "delivered" for r in got) else None


async def delivered_events_if(dsn: str, alert_id, n: int):
    got = await delivered_events(dsn, alert_id)
    return got if len(got) == n else None
