"""SMS end to end through the loopback provider (``POST /messages`` with ``Idempotency-Key``),
retried with the same key after provider errors; quiet hours postpone a patient's messages to
the end of the quiet period (simulated time); the patient's language comes from the private
contacts record. Real Kafka, Postgres and the notifier as a process."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest

from rapport_testing.notifier import SimTime, SmsProvider, api, intake_known, notifier_env, publish, publish_contact, until
from rapport_shared.contracts.course import CoursePlannedV1, PhaseSpan, PlannedSession
from rapport_shared.private_contacts import ContactRecordV1
from rapport_testing.db import fetchval

pytestmark = pytest.mark.e2e

TOKEN = "sms-provider-token"



async def pending_due(dsn: str, kind: str, session_id) -> object:
    return await fetchval(dsn, "SELECT due_at FROM timers WHERE kind = $1 AND key = $2 AND fired_at IS NULL"
                          " AND cancelled_at IS NULL AND failed_at IS NULL", kind, f"session:{session_id}")


async def test_sms_with_idempotency_key_and_quiet_hours_postponement(system, kafka, tokens, service_dsns, smtp, sinks):
    bootstrap, dsn = kafka.bootstrap, service_dsns["notifier"]
    provider = sinks("fail", SmsProvider)  # answers 500 until told otherwise; dedupes by Idempotency-Key
    sim = SimTime(bootstrap)
    t0 = await sim.start()  # 06:00 UTC
    day = t0.replace(hour=0)
    notifier = system.restart("notifier", notifier_env(smtp, RAPPORT_SMS_URL=f"{provider.url}/v1", RAPPORT_SMS_TOKEN=TOKEN,
                                                       RAPPORT_RETRY_FOR_S="300"))
    admin = tokens.issue("admin", ["admin"])
    tag = uuid.uuid4().hex[:8]
    person, phone = f"P-sms-{tag}", "+447700900555"
    try:
        await publish_contact(bootstrap, ContactRecordV1(
            person_id=person, phone=phone, channel_consent={"sms": True, "email": False}, preferred_channel="sms",
            quiet_hours={"start": "21:00", "end": "08:00", "timezone": "UTC"}, language="es", updated_at=t0))
        await until(lambda: fetchval(dsn, "SELECT language = 'es' FROM patients WHERE person_id = $1", person),
                    what="contact (with its language) from the private topic")
        # One session at 23:00 two days on: the questionnaire request (48 h before) and the reminder
        # (24 h before) both fall at 23:00, inside the patient's quiet hours.
        episode, session = uuid.uuid4(), uuid.uuid4()
        starts = day + timedelta(days=2, hours=23)
        await intake_known(bootstrap, dsn, episode, person, f"clin-sms-{tag}", t0)  # an episode of org-test
        await publish(bootstrap, CoursePlannedV1(
            episode_id=episode, course_id=uuid.uuid4(), person_id=person, template_id="ipt_depression_16",
            clinician_id=f"clin-sms-{tag}", contracted_sessions=1,
            phase_plan=[PhaseSpan(phase="initial", first_session=1, last_session=1)],
            sessions=[PlannedSession(session_id=session, number=1, starts_at=starts, duration_minutes=50)],
            first_session_at=starts, planned_end_at=starts, planned_at=t0), source="/rapport/scheduler", at=t0)
        await until(lambda: _is(pending_due(dsn, "notifier.questionnaire_request", session), starts - timedelta(hours=48)),
                    what="questionnaire request planned for 23:00")

        # 23:01: due, but quiet → postponed to 08:00 the next morning; nothing sent.
        await sim.to(starts - timedelta(hours=48) + timedelta(minutes=1))
        end_of_quiet = day + timedelta(days=1, hours=8)
        await until(lambda: _is(pending_due(dsn, "notifier.questionnaire_request", session), end_of_quiet),
                    what="questionnaire request postponed to the end of the quiet hours")
        assert provider.requests == []

        # 08:01: sent over SMS; the provider fails twice, then accepts — every attempt with the same key.
        await sim.to(end_of_quiet + timedelta(minutes=1))
        await until(lambda: len(provider.requests) >= 2, what="two attempts at the failing provider")
        provider.behaviour = "ok"
        log = await until(lambda: [d for d in api(notifier.url, admin, "GET", "/v1/deliveries",
                                                  params={"episode_id": str(episode), "status": "delivered"}).json()["deliveries"]
                                   if d["kind"] == "questionnaire_request"], what="questionnaire request delivered")
        [req] = log
        assert req["channel"] == "sms" and req["attempts"] >= 3 and req["language"] == "es"
        assert req["planned_at"] >= end_of_quiet.isoformat()  # written when the quiet hours ended (simulated time)
        for path, headers, body in provider.requests:
            assert path == "/v1/messages"
            assert headers["idempotency-key"] == req["idempotency_key"]
            assert headers["authorization"] == f"Bearer {TOKEN}"
            msg = json.loads(body)
            assert msg["to"] == phone and msg["reference"] == req["notification_id"]
            assert "sesión 1" in msg["body"] and "phq9" in msg["body"]  # Spanish: the contact record's language
        assert [m[1]["idempotency-key"] for m in provider.messages] == [req["idempotency_key"]]  # one message
        attempts = len(provider.requests)

        # The reminder falls at 23:00 the next day: postponed to 08:00 the day after.
        await sim.to(starts - timedelta(hours=24) + timedelta(minutes=1))
        await until(lambda: _is(pending_due(dsn, "notifier.session_reminder", session), day + timedelta(days=2, hours=8)),
                    what="session reminder postponed to the end of the quiet hours")
        assert len(provider.requests) == attempts
        await sim.to(day + timedelta(days=2, hours=8, seconds=30))
        reminders = await until(lambda: [r for r in provider.requests[attempts:] if "Le recordamos" in json.loads(r[2])["body"]],
                                what="session reminder over SMS after the quiet hours")
        assert len(reminders) == 1
        [rem] = [d for d in api(notifier.url, admin, "GET", "/v1/deliveries", params={"episode_id": str(episode)}).json()["deliveries"]
                 if d["kind"] == "session_reminder"]
        assert reminders[0][1]["idempotency-key"] == rem["idempotency_key"] and "/sms/session_reminder/" in rem["idempotency_key"]
    finally:
        system.restart("notifier")


async def _is(coro, value) -> bool:
    return (await coro) == value
