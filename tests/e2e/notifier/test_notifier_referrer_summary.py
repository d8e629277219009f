"""The end-of-course summary for the referrer end to end (issue 15 item 5; domain.md 4).

The four services as processes over real Kafka and Postgres. A partner organisation's intake form
opens and completes two referrals (intake), one with the person's consent to the summary going to
the referrer and one without; the scheduler plans each course, the clinician withdraws it, outcomes
evaluates it, and the notifier pushes, for the consented one only, one Standard-Webhooks-signed
``rapport.referrer.summary.v1`` to the partner's loopback endpoint. A late score revises the
evaluation (revision 2): the partner's subscription to ``rapport.outcome.evaluated.v1`` receives
the revision, no second summary is sent. Without consent neither the summary nor the evaluation
leaves. The signature is checked with ``standardwebhooks`` when it is installed, else with the
recipe of docs/notifier.md written out here (no notifier code)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid

import httpx
import pytest

from rapport_shared.topics import COURSE, OUTCOMES
from rapport_testing.flows import intake_completion
from rapport_testing.kafka import wait_for_records
from rapport_testing.notifier import api, notifier_env, until

try:
    from standardwebhooks import Webhook
except ImportError:  # not a dependency of the project
    Webhook = None

pytestmark = pytest.mark.e2e

SUMMARY, EVALUATED = "rapport.referrer.summary.v1", "rapport.outcome.evaluated.v1"


def of(episode: str, ce_type: str):
    return lambda r: r.headers.get("ce_subject") == episode and r.headers.get("ce_type") == ce_type


def verified(secret: str, headers: dict, body: bytes) -> dict:
    if Webhook is not None:
        return Webhook(secret).verify(body, headers)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert any(hmac.compare_digest(expected, s.partition(",")[2]) for s in headers["webhook-signature"].split()
               if s.startswith("v1,")), "signature"
    return json.loads(body)


async def test_the_referrer_summary_reaches_the_partner_once_and_only_with_consent(system, kafka, tokens, smtp, sinks):
    tag = uuid.uuid4().hex[:8]
    org = f"org-ref-{tag}"  # the partner organisation: its own, so no other test's endpoint is in it
    http = httpx.Client(timeout=30)

    def auth(sub: str, role: str) -> dict:
        return {"Authorization": f"Bearer {tokens.issue(sub, [role], org=org)}"}

    notifier = system.restart("notifier", notifier_env(smtp, RAPPORT_CLOCK="system"))
    hook = sinks("ok")
    try:
        partner = tokens.issue(f"partner-{tag}", ["partner"], org=org)
        r = api(notifier.url, partner, "POST", "/v1/webhooks/subscriptions",
                json={"url": f"{hook.url}/hook", "event_types": [EVALUATED]})
        assert r.status_code == 201, r.text
        secret, subscription = r.json()["secret"], r.json()["subscription_id"]

        async def referral(consent: bool) -> tuple[str, str, str]:
            """The partner's form opens and completes a referral; (episode, person, clinician)."""
            person, clinician = f"P-ref-{consent:d}-{tag}", f"clin-ref-{consent:d}-{tag}"
            form = auth(f"partner-form-{tag}", "partner")
            r = http.post(f"{system['intake'].url}/v1/referrals", headers=form, json={
                "person_id": person, "referral_source": "partner-clinic", "target_condition": "depression"})
            assert r.status_code == 201, r.text
            episode = r.json()["episode_id"]
            body = intake_completion(clinician)
            body["consent"] = {"given": True, "method": "written", "share_outcomes_with_referrer": consent}
            r = http.post(f"{system['intake'].url}/v1/referrals/{episode}/complete", headers=form, json=body)
            assert r.status_code in (200, 201), r.text
            return episode, person, clinician

        async def end(episode: str, clinician: str) -> dict:
            """The course is planned, then withdrawn; its first evaluation (from Kafka)."""
            [planned] = await wait_for_records(kafka.bootstrap, COURSE, of(episode, "rapport.course.planned.v1"))
            course_id = json.loads(planned.value)["course_id"]
            r = http.post(f"{system['scheduler'].url}/v1/courses/{course_id}/withdraw",
                          headers=auth(clinician, "clinician"), json={"reason": "withdrawal"})
            assert r.status_code == 200, r.text
            [ev] = await wait_for_records(kafka.bootstrap, OUTCOMES, of(episode, EVALUATED), timeout=120)
            return json.loads(ev.value)

        consented, person, clinician = await referral(True)
        refused, _, refused_clinician = await referral(False)
        ev1 = await end(consented, clinician)
        assert ev1["revision"] == 1 and ev1["organisation_id"] == org

        def pushed(episode: str) -> list[tuple[dict, dict, bytes]]:
            out = []
            for _, headers, body in list(hook.requests):
                event = verified(secret, headers, body)
                if event["subject"] == episode:
                    out.append((event, headers, body))
            return out

        await until(lambda: {e["type"] for e, _, _ in pushed(consented)} == {SUMMARY, EVALUATED},
                    what="the referrer summary and the evaluation at the partner's endpoint")
        [(summary, headers, body)] = [p for p in pushed(consented) if p[0]["type"] == SUMMARY]
        data = summary["data"]
        assert (data["episode_id"], data["person_id"], data["organisation_id"], data["revision"]) == (
            consented, person, org, 1)
        for field in ("finished_course", "recovery", "reliable_improvement", "reliable_deterioration", "end_reason",
                      "attended_sessions", "treatment_sessions", "course_id"):
            assert data[field] == ev1[field], field
        assert data["measures"]["phq9"]["baseline_total"] == ev1["baseline_totals"]["phq9"]
        assert data["course_ended_at"] is not None and summary["time"] == data["evaluated_at"]
        assert clinician.encode() not in body and b"@" not in body  # no clinician, no address

        # A late score given before the end revises the evaluation: the revision is pushed, no second summary.
        r = http.post(f"{system['outcomes'].url}/v1/episodes/{consented}/submissions",
                      headers=auth(person, "patient_app"),
                      json={"client_submission_id": f"late-{tag}", "instrument": "phq9",
                            "administered_at": data["course_ended_at"],
                            "answers": {"1": 1, "2": 1, "3": 1, "4": 1, "5": 0, "6": 0, "7": 0, "8": 0, "9": 0}})
        assert r.status_code == 201, r.text
        await until(lambda: [e for e, _, _ in pushed(consented) if e["type"] == EVALUATED
                             and e["data"]["revision"] == 2], what="the revised evaluation at the partner's endpoint")

        # Without consent: evaluated, told to the clinician, and nothing leaves for the partner.
        await end(refused, refused_clinician)
        admin = auth(f"admin-{tag}", "admin")

        def log(episode: str, **params) -> list[dict]:
            r = http.get(f"{notifier.url}/v1/deliveries", headers=admin, params={"episode_id": episode, **params})
            assert r.status_code == 200, r.text
            return r.json()["deliveries"]
        await until(lambda: log(refused, kind="course_summary"), what="the notifier evaluating the refused episode")
        assert pushed(refused) == [] and log(refused, kind="referrer_summary") == []

        [sent] = log(consented, kind="referrer_summary")
        assert (sent["status"], sent["channel"], sent["recipient_ref"]) == (
            "delivered", "webhook", f"partner:{subscription}")
        assert sent["notification_id"] == headers["webhook-id"]
        assert [e["type"] for e, _, _ in pushed(consented)].count(SUMMARY) == 1
    finally:
        system.restart("notifier")

