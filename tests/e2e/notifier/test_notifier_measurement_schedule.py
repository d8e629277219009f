"""Questionnaire requests per programme end to end (issue 15 item 1; domain.md §3.4): a
substance-use course, not a depression one, is asked PHQ-9 (its item 9 the routine risk screen)
and GAD-7 before every session, WSAS at baseline, mid-course and the end, and AUDIT at the end
(its baseline is the intake's).

The services as processes over real Kafka and Postgres: intake completes the referral (target
condition substance_use, AUDIT baseline) over HTTP, the scheduler plans the 8-session course, the
notifier learns the condition from rapport.intake.completed.v1 and the contract from
rapport.course.planned.v1, and mails each request through the loopback SMTP server. The notifier
runs on a simulated clock of this test's own (it starts at the real time, before the sessions the
scheduler plans), which the test moves to each request's time."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
import httpx
import pytest

from rapport_shared.clock import publish_tick
from rapport_shared.private_contacts import ContactRecordV1
from rapport_shared.topics import COURSE
from rapport_testing.flows import intake_completion
from rapport_testing.kafka import wait_for_records
from rapport_testing.notifier import notifier_env, publish_contact, until

pytestmark = pytest.mark.e2e

AUDIT_12 = {"1": 2, "2": 2, "3": 2, "4": 1, "5": 1, "6": 1, "7": 1, "8": 0, "9": 2, "10": 0}
EVERY = "phq9, gad7"


async def fetchval(dsn: str, sql: str, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def test_a_substance_use_course_is_asked_phq9_before_every_session_and_its_programmes_measures(
        system, kafka, tokens, service_dsns, smtp):
    bootstrap, dsn = kafka.bootstrap, service_dsns["notifier"]
    tag = uuid.uuid4().hex[:8]
    clock_topic = f"rapport.clock.measurement-{tag}"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    await publish_tick(bootstrap, now, clock_topic)
    system.restart("notifier", notifier_env(smtp, RAPPORT_CLOCK_TOPIC=clock_topic))
    clin, person = f"clin-ms-{tag}", f"P-ms-{tag}"
    mail = f"{person}@patients.test"
    http = httpx.Client(timeout=30)
    try:
        await publish_contact(bootstrap, ContactRecordV1(person_id=person, email=mail, channel_consent={"email": True},
                                                         preferred_channel="email", updated_at=now))
        await until(lambda: fetchval(dsn, "SELECT count(*) FROM patients WHERE person_id = $1", person),
                    what="the patient's contact from the private topic")

        # Intake: a substance-use referral with its AUDIT baseline; the brief (8-session) template.
        intake = {"Authorization": f"Bearer {tokens.issue('ic-ms', ['intake_clinician'])}"}
        r = http.post(f"{system['intake'].url}/v1/referrals", headers=intake, json={
            "person_id": person, "referral_source": "gp", "target_condition": "substance_use"})
        assert r.status_code == 201, r.text
        episode = r.json()["episode_id"]
        completion = intake_completion(clin, template_id="ipt-brief")
        completion["baseline"] = [{"instrument": "audit", "answers": AUDIT_12}]
        r = http.post(f"{system['intake'].url}/v1/referrals/{episode}/complete", headers=intake, json=completion)
        assert r.status_code in (200, 201), r.text

        [record] = await wait_for_records(bootstrap, COURSE, lambda rec: rec.headers.get("ce_subject") == episode
                                          and rec.headers.get("ce_type") == "rapport.course.planned.v1")
        planned = json.loads(record.value)
        n = planned["contracted_sessions"]
        sessions = sorted(planned["sessions"], key=lambda s: s["number"])
        assert n == 8 and [s["number"] for s in sessions] == list(range(1, 9))
        await until(lambda: fetchval(dsn, "SELECT target_condition = 'substance_use' AND contracted_sessions = 8"
                                          " FROM episodes WHERE episode_id = $1", uuid.UUID(episode)),
                    what="the notifier knowing the episode's target condition and contract")

        # Each session's request, its time reached in turn.
        asked: dict[int, str] = {}
        for s in sessions:
            k, starts = s["number"], datetime.fromisoformat(s["starts_at"])
            due = starts - timedelta(hours=48) + timedelta(minutes=1)
            if due > now:
                now = due
                await publish_tick(bootstrap, now, clock_topic)
            [msg] = await until(lambda k=k: [m for m in smtp.to(mail)
                                             if m["Subject"] == f"Please complete your questionnaire before session {k}"],
                                what=f"the questionnaire request before session {k}")
            line = next(x for x in msg.get_content().splitlines() if "please complete:" in x)
            asked[k] = line.split("please complete:", 1)[1].strip().rstrip(".")

        assert all(a.startswith(EVERY) for a in asked.values()), asked  # the risk screen before every session
        assert asked == {1: f"{EVERY}, wsas", 2: EVERY, 3: EVERY, 4: f"{EVERY}, wsas", 5: EVERY, 6: EVERY,
                         7: EVERY, 8: f"{EVERY}, wsas, audit"}
    finally:
        system.restart("notifier")
