"""Replay safety, end to end (issue 6: "replaying any topic into the notifier never sends a second
message"). A course with reminders, questionnaire requests, a safety page with escalation and
partner webhooks is delivered over the loopback SMTP server, SMS provider and webhook receiver;
then every topic is replayed from the beginning

1. into a sandbox notifier (``RAPPORT_REPLAY_MODE=true``, a fresh consumer group and a fresh
   schema seeded with the live recipients and subscriptions): it re-derives the same deliveries
   (same idempotency keys) and suppresses them — nothing reaches the outside world, nothing is
   published;
2. into the live notifier (same schema, a fresh consumer group): first with its inbox intact
   (every event is skipped as known), then with the inbox emptied, so every event is
   re-processed and only the idempotency keys and the projections' replay guards stand between
   the replay and a second message. No new message anywhere, no new delivery key.
"""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import timedelta

import asyncpg
import pytest

from rapport_notifier.bootstrap import MIGRATIONS
from rapport_testing.notifier import SimTime, SmsProvider, api, intake_known, notifier_env, publish, publish_contact, until
from rapport_shared import db
from rapport_shared.contracts.course import CoursePlannedV1, PhaseSpan, PlannedSession, SessionRescheduledV1
from rapport_shared.contracts.outcomes import AlertRaisedV1, AlertResolvedV1
from rapport_shared.private_contacts import ContactRecordV1
from rapport_testing.kafka import wait_caught_up
from rapport_testing.services import ServiceProcess, role_dsn
from rapport_testing.db import fetch
from rapport_shared.topics import PRIVATE_CONTACTS, SHARED_TOPICS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SUBSCRIBED = ["rapport.course.planned.v1", "rapport.session.rescheduled.v1", "rapport.alert.raised.v1",
              "rapport.notification.delivered.v1"]
HTTP_STATE = ("clinicians", "oncall", "subscriptions", "patient_preferences", "patients")



async def caught_up(bootstrap: str, group: str) -> None:
    for topic in SHARED_TOPICS:
        await wait_caught_up(bootstrap, group, topic, timeout=240)
    await wait_caught_up(bootstrap, f"{group}-contacts", PRIVATE_CONTACTS, timeout=240)


async def settled(dsn: str, episodes: list) -> bool:
    """No delivery of these episodes is waiting or in flight, and every fact is out."""
    [r] = await fetch(dsn, "SELECT count(*) FILTER (WHERE status IN ('ready', 'sending')) AS busy,"
                       " count(*) FILTER (WHERE status = 'delivered' AND channel <> 'webhook') AS sent,"
                       " count(*) FILTER (WHERE status = 'delivered' AND channel = 'webhook') AS hooks"
                       " FROM notifications WHERE episode_id = ANY($1::uuid[])", episodes)
    # one webhook per subscribed event: 2 course.planned + 1 rescheduled + 1 alert.raised + 1 per delivery
    return r["busy"] == 0 and r["hooks"] == 4 + r["sent"]


async def test_replaying_every_topic_sends_nothing_twice(system, kafka, postgres, tokens, service_dsns, smtp,
                                                        sinks, tmp_path):
    bootstrap, dsn = kafka.bootstrap, service_dsns["notifier"]
    sms, hook = sinks("ok", SmsProvider), sinks("ok")
    sim = SimTime(bootstrap)
    t0 = await sim.start()
    env = notifier_env(smtp, RAPPORT_SMS_URL=sms.url, RAPPORT_SMS_TOKEN="sms-test-token")
    notifier = system.restart("notifier", env)
    admin, partner = tokens.issue("admin", ["admin"]), tokens.issue("partner-replay", ["partner"])
    tag = uuid.uuid4().hex[:8]
    clin, oncall, pa, pb = f"clin-r-{tag}", f"oncall-r-{tag}", f"P-ra-{tag}", f"P-rb-{tag}"
    sandbox: ServiceProcess | None = None
    sandbox_schema = f"notifier_replay_{tag}"
    sub = None
    try:
        # ---------------------------------------------------------------- live run
        assert api(notifier.url, admin, "PUT", f"/v1/clinicians/{clin}", json={
            "email": f"{clin}@clinic.test", "phone": "+447700900001", "language": "en",
            "channels": ["email", "sms"]}).status_code == 200
        assert api(notifier.url, admin, "PUT", f"/v1/clinicians/{oncall}", json={
            "email": f"{oncall}@clinic.test", "language": "en", "channels": ["email"]}).status_code == 200
        assert api(notifier.url, admin, "PUT", "/v1/oncall", json={"slots": [
            {"clinician_id": oncall, "starts_at": (t0 - timedelta(days=1)).isoformat(),
             "ends_at": (t0 + timedelta(days=30)).isoformat()}]}).status_code == 200
        r = api(notifier.url, partner, "POST", "/v1/webhooks/subscriptions",
                json={"url": f"{hook.url}/hook", "event_types": SUBSCRIBED})
        assert r.status_code == 201, r.text
        sub = r.json()
        await publish_contact(bootstrap, ContactRecordV1(person_id=pa, email=f"{pa}@patients.test",
                                                         channel_consent={"email": True}, updated_at=t0))
        await publish_contact(bootstrap, ContactRecordV1(person_id=pb, phone="+447700900222", channel_consent={"sms": True},
                                                         preferred_channel="sms", updated_at=t0))
        await until(lambda: _n(dsn, "SELECT count(*) FROM patients WHERE person_id = ANY($1::text[])", [pa, pb], want=2),
                    what="both contacts")

        ep_a, ep_b = uuid.uuid4(), uuid.uuid4()
        s1, s2, s3 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        at1, at2, at3 = t0 + timedelta(days=2), t0 + timedelta(days=4), t0 + timedelta(days=2, hours=1)
        for ep, person in ((ep_a, pa), (ep_b, pb)):  # episodes of the tokens' organisation (org-test)
            await intake_known(bootstrap, dsn, ep, person, clin, t0)
        for ep, person, sessions in ((ep_a, pa, [(s1, 1, at1), (s2, 2, at2)]), (ep_b, pb, [(s3, 1, at3)])):
            planned = [PlannedSession(session_id=s, number=n, starts_at=at, duration_minutes=50) for s, n, at in sessions]
            await publish(bootstrap, CoursePlannedV1(
                episode_id=ep, course_id=uuid.uuid4(), person_id=person, template_id="ipt_depression_16",
                clinician_id=clin, contracted_sessions=len(planned),
                phase_plan=[PhaseSpan(phase="initial", first_session=1, last_session=len(planned))], sessions=planned,
                first_session_at=planned[0].starts_at, planned_end_at=planned[-1].starts_at, planned_at=t0),
                source="/rapport/scheduler", at=t0)
        # Session 2 moves by six hours: its old reminder time will have passed while the old session
        # time is still ahead — exactly where a replay that rewound the session would page twice.
        new_at2 = at2 + timedelta(hours=6)
        await publish(bootstrap, SessionRescheduledV1(
            episode_id=ep_a, course_id=uuid.uuid4(), session_id=s2, number=2, previous_starts_at=at2, starts_at=new_at2,
            reason_code="patient_request", rescheduled_at=t0), source="/rapport/scheduler", at=t0)

        await until(lambda: _n(dsn, "SELECT count(*) FROM sessions WHERE session_id = ANY($1::uuid[])"
                                    " AND starts_at = ANY($2::timestamptz[])", [s1, s2, s3], [at1, new_at2, at3], want=3),
                    what="the course projected (the rescheduled session at its new time)")
        await sim.to(t0 + timedelta(hours=2))  # session 3's questionnaire request (48 h before)
        await until(lambda: len(sms.requests) >= 1, what="session 3 questionnaire request (sms)")
        await sim.to(t0 + timedelta(days=1, hours=2, minutes=1))  # session 1 and 3 reminders, questionnaire reminders
        await until(lambda: [m for m in smtp.to(f"{pa}@patients.test") if m["Subject"].startswith("Reminder: your session")],
                    what="session 1 reminder (email)")
        await until(lambda: len(sms.requests) >= 3, what="session 3 questionnaire reminder and session reminder (sms)")
        await sim.to(new_at2 - timedelta(hours=23))  # session 2's new reminder is due; its old one long passed
        await until(lambda: len([m for m in smtp.to(f"{pa}@patients.test")
                                 if m["Subject"].startswith("Reminder: your session")]) == 2, what="session 2 reminder")
        alert = uuid.uuid4()
        await publish(bootstrap, AlertRaisedV1(
            episode_id=ep_a, alert_id=alert, kind="safety", urgency="urgent", reason_code="safety_item_positive",
            clinician_id=clin, instrument="phq9", raised_at=sim.now), source="/rapport/outcomes", at=sim.now)
        await until(lambda: [m for m in smtp.to(f"{clin}@clinic.test") if "URGENT" in m["Subject"]], what="page")
        await sim.to(sim.now + timedelta(minutes=16))
        await until(lambda: smtp.to(f"{oncall}@clinic.test"), what="escalation")
        await publish(bootstrap, AlertResolvedV1(episode_id=ep_a, alert_id=alert, kind="safety", resolved_by=clin,
                                                 action="safety_plan", resolved_at=sim.now), source="/rapport/outcomes",
                      at=sim.now)
        episodes = [ep_a, ep_b]
        await until(lambda: settled(dsn, episodes), what="every delivery done", timeout=120)
        await wait_caught_up(bootstrap, "rapport-notifier", "rapport.outcomes")  # the resolution is applied
        await until(lambda: settled(dsn, episodes), what="every delivery done", timeout=120)

        live_keys = {r["idem_key"]: r["status"] for r in await fetch(
            dsn, "SELECT idem_key, status FROM notifications WHERE episode_id = ANY($1::uuid[])", episodes)}
        kinds = {k.split("/")[3] for k in live_keys}
        assert {"session_reminder", "questionnaire_request", "questionnaire_reminder", "safety_alert",
                "safety_escalation", "course_planned", "partner_event"} <= kinds
        assert any("/sms/" in k for k in live_keys) and any("/email/" in k for k in live_keys)
        sms_hdr = {r[1]["idempotency-key"] for r in sms.requests}
        assert sms_hdr <= set(live_keys)  # the provider is given the delivery's key
        assert len(sms.messages) == len(sms_hdr)  # one accepted message per key
        # Counted for this test's people and episodes: other tests' episodes may still be flowing
        # through the shared system (and this subscription) while this one runs, and their sends
        # are not this test's business (a count over everything can move for reasons outside this test).
        def sent() -> tuple[int, int, int, int]:
            mine = lambda key: tag in key  # recipient refs and addresses carry the tag
            return (sum(mine(m["To"] or "") for m in smtp.messages),
                    sum(mine(r[1].get("idempotency-key", "")) for r in sms.requests),
                    sum(json.loads(r[2]).get("subject") in {str(e) for e in episodes} for r in hook.requests),
                    sum(mine(r[1].get("idempotency-key", "")) for r in sms.messages))

        before = sent()
        print(f"live run: smtp={before[0]} sms={before[1]} webhooks={before[2]} keys={len(live_keys)}")

        # ---------------------------------------------------------------- 1. sandbox in replay mode
        password = secrets.token_urlsafe(12)
        await db.provision(postgres.admin_dsn, "rapport", sandbox_schema, password)
        sandbox_dsn = role_dsn(postgres.admin_dsn, sandbox_schema, password)
        conn = await asyncpg.connect(sandbox_dsn)
        try:
            await db.migrate(conn, sandbox_schema, db.discover(MIGRATIONS))
        finally:
            await conn.close()
        admin_conn = await asyncpg.connect(postgres.admin_dsn)
        try:  # seeded with the live recipients and subscriptions (what an operator's sandbox would copy)
            for table in HTTP_STATE:
                await admin_conn.execute(f"INSERT INTO {sandbox_schema}.{table} SELECT * FROM notifier.{table}")
        finally:
            await admin_conn.close()
        group = f"rapport-notifier-sandbox-{tag}"
        sandbox = ServiceProcess("notifier", {**system["notifier"].env, "RAPPORT_DATABASE_DSN": sandbox_dsn,
                                              "RAPPORT_DB_SCHEMA": sandbox_schema, "RAPPORT_CONSUMER_GROUP": group},
                                 tmp_path)
        sandbox.start({**env, "RAPPORT_REPLAY_MODE": "true"})
        await caught_up(bootstrap, group)
        # Idle = nothing due left to fire *and* nothing left to send: a timer made due by the last
        # event read (session 2's reminder under the reschedule) may not have fired yet.
        await until(lambda: idle(sandbox_dsn, sim.now), what="sandbox timers and sender idle")
        rows = {r["idem_key"]: r["status"] for r in await fetch(
            sandbox_dsn, "SELECT idem_key, status FROM notifications WHERE episode_id = ANY($1::uuid[])", episodes)}
        suppressed = {k for k, s in rows.items() if s == "suppressed"}
        assert suppressed, rows
        # Not sent either way: the batch consumer may apply an alert's raise and its resolution in one
        # transaction, so the sandbox's page is cancelled by the resolution before the sender could
        # suppress it. What matters is that the same key is derived and nothing is sent.
        not_sent = {k for k, s in rows.items() if s in ("suppressed", "cancelled")}
        # The same keys are derived from the same events: the page and session 2's reminder
        # (keyed to the reschedule) are re-derived exactly, and suppressed. (A fresh projection
        # may also pass through intermediate states while it catches up — e.g. session 2 at its
        # planned time until the reschedule is read — so the sandbox can hold extra keys; in
        # replay mode they are suppressed like the rest.)
        for kind in ("safety_alert", "session_reminder"):
            again = {k for k in (not_sent if kind == "safety_alert" else suppressed) if k.split("/")[3] == kind}
            if not again & set(live_keys):  # say what the sandbox saw
                print("DIAG timers", [dict(r) for r in await fetch(sandbox_dsn, "SELECT kind, key, due_at, fired_at, cancelled_at, created_at FROM timers ORDER BY created_at")])
                print("DIAG sessions", [dict(r) for r in await fetch(sandbox_dsn, "SELECT * FROM sessions WHERE episode_id = $1", ep_a)])
                print("DIAG rows", rows, "sim", sim.now, "s2", s2, "new_at2", new_at2)
            assert again & set(live_keys), (kind, again)
        assert all(s in ("suppressed", "cancelled", "failed") for s in rows.values()), rows
        assert (await fetch(sandbox_dsn, "SELECT count(*) FROM outbox"))[0][0] == 0  # nothing to publish
        assert sent() == before
        sandbox.stop()
        sandbox = None

        # ---------------------------------------------------------------- 2. the live notifier, fresh groups
        for round_, empty_inbox in ((1, False), (2, True)):
            if empty_inbox:  # as if the inbox had been lost: only the keys and the guards protect now
                admin_conn = await asyncpg.connect(postgres.admin_dsn)
                try:
                    await admin_conn.execute("DELETE FROM notifier.inbox")
                finally:
                    await admin_conn.close()
            group = f"rapport-notifier-replay{round_}-{tag}"
            notifier = system.restart("notifier", {**env, "RAPPORT_CONSUMER_GROUP": group})
            await caught_up(bootstrap, group)
            await until(lambda: settled(dsn, episodes), what="live sender idle after the replay", timeout=120)
            await until(lambda: idle(dsn, sim.now), what="no timer due and no delivery waiting anywhere", timeout=120)
            after_keys = {r["idem_key"]: r["status"] for r in await fetch(
                dsn, "SELECT idem_key, status FROM notifications WHERE episode_id = ANY($1::uuid[])", episodes)}
            assert after_keys == live_keys, (round_, set(after_keys) ^ set(live_keys))
            assert sent() == before, round_
    finally:
        if sandbox is not None:
            sandbox.kill()
        if sub is not None:
            api(system["notifier"].url, partner, "DELETE", f"/v1/webhooks/subscriptions/{sub['subscription_id']}")
        system.restart("notifier")


async def idle(dsn: str, now) -> bool:
    [r] = await fetch(dsn, "SELECT (SELECT count(*) FROM timers WHERE fired_at IS NULL AND cancelled_at IS NULL"
                       " AND failed_at IS NULL AND due_at <= $1) + (SELECT count(*) FROM notifications"
                       " WHERE status IN ('ready', 'sending'))", now)
    return r[0] == 0


async def _n(dsn: str, sql: str, *args, want: int) -> bool:
    return (await fetch(dsn, sql, *args))[0][0] == want
