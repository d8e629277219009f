"""One episode through all four services, each a separate process, over real Kafka and Postgres."""


import asyncpg
import httpx
import pytest

from rapport_testing.flows import run_intake
from rapport_testing.kafka import validate_partner_view, wait_for_records
from rapport_shared.topics import COURSE, INTAKE, NOTIFICATIONS, OUTCOMES

pytestmark = pytest.mark.e2e


def of_type(episode, event_type):
    return lambda r: r.headers.get("ce_subject") == episode and r.headers.get("ce_type") == event_type


async def test_episode_flows_from_intake_to_clinician_notification(system, kafka, tokens, service_dsns):
    token = tokens.issue("ic-1", ["intake_clinician"])
    done = run_intake(system["intake"].url, token)
    episode = done["episode_id"]
    assert done["status"] == "completed"

    by_episode = lambda r: r.headers.get("ce_subject") == episode
    [completed] = await wait_for_records(kafka.bootstrap, INTAKE, by_episode)
    assert completed.headers["ce_type"] == "rapport.intake.completed.v1"
    assert completed.headers["ce_id"] == done["completed_event_id"]
    validate_partner_view(completed)

    [planned] = await wait_for_records(kafka.bootstrap, COURSE, of_type(episode, "rapport.course.planned.v1"))
    plan = validate_partner_view(planned)
    assert plan["contracted_sessions"] == 16 and len(plan["sessions"]) == 16
    assert planned.headers["correlation_id"] == completed.headers["correlation_id"]

    [baseline] = await wait_for_records(kafka.bootstrap, OUTCOMES, of_type(episode, "rapport.score.submitted.v1"))
    score = validate_partner_view(baseline)
    assert (score["instrument"], score["total"], score["band"], score["caseness"]) == ("phq9", 18, "moderately_severe", True)

    [delivered] = await wait_for_records(kafka.bootstrap, NOTIFICATIONS, of_type(episode, "rapport.notification.delivered.v1"))
    note = validate_partner_view(delivered)
    assert note["recipient_ref"] == "clinician:clin-001" and note["cause_event_id"] == planned.headers["ce_id"]

    # The scheduler stored the sessions in its own schema; the notifier recorded one delivery.
    sched = await asyncpg.connect(service_dsns["scheduler"])
    try:
        assert await sched.fetchval(
            "SELECT count(*) FROM sessions JOIN courses USING (course_id) WHERE episode_id = $1", __import__("uuid").UUID(episode)) == 16
    finally:
        await sched.close()
    r = httpx.get(f"{system['notifier'].url}/v1/deliveries", params={"episode_id": episode},
                  headers={"Authorization": f"Bearer {tokens.issue('admin', ['admin'])}"})
    assert [d["recipient_ref"] for d in r.json()["deliveries"]] == ["clinician:clin-001"]


async def test_http_requires_a_token_and_the_right_role(system, tokens):
    url = f"{system['intake'].url}/v1/referrals"
    body = {"person_id": "P-1", "referral_source": "gp", "target_condition": "depression"}
    assert httpx.post(url, json=body).status_code == 401
    bad = tokens.issue("x", ["partner"]).replace("a", "b", 1)
    assert httpx.post(url, json=body, headers={"Authorization": f"Bearer {bad}x"}).status_code == 401
    assert httpx.post(url, json=body, headers={"Authorization": f"Bearer {tokens.issue('p', ['patient_app'])}"}).status_code == 403
    for svc in system.services.values():
        assert httpx.get(f"{svc.url}/healthz").status_code == 200  # health needs no token
        assert httpx.get(f"{svc.url}/metrics").status_code == 401
        m = httpx.get(f"{svc.url}/metrics", headers={"Authorization": f"Bearer {tokens.issue('ops', ['operator'])}"})
        assert m.status_code == 200 and "rapport_outbox_published_total" in m.text
        # A scraper's token (role metrics) reads the metrics and no data.
        scraper = {"Authorization": f"Bearer {tokens.issue('prometheus', ['metrics'])}"}
        assert httpx.get(f"{svc.url}/metrics", headers=scraper).status_code == 200
    scraper = {"Authorization": f"Bearer {tokens.issue('prometheus', ['metrics'])}"}
    assert httpx.get(f"{system['intake'].url}/v1/referrals", headers=scraper).status_code == 403
    assert httpx.get(f"{system['notifier'].url}/v1/deliveries", headers=scraper).status_code == 403
    assert httpx.get(f"{system['outcomes'].url}/v1/alerts", headers=scraper).status_code == 403


async def test_bad_input_is_a_clear_422_and_writes_nothing(system, tokens, service_dsns):
    auth = {"Authorization": f"Bearer {tokens.issue('ic-1', ['intake_clinician'])}"}
    r = httpx.post(f"{system['intake'].url}/v1/referrals", headers=auth,
                   json={"person_id": "jane@example.org", "referral_source": "gp", "target_condition": "depression"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "person_id"
    conn = await asyncpg.connect(service_dsns["intake"])
    try:
        assert await conn.fetchval("SELECT count(*) FROM referrals WHERE person_id = 'jane@example.org'") == 0
    finally:
        await conn.close()
