"""The referrer summary on a real Postgres, through the sender and the real webhook channel to a
loopback receiver (issue 15 item 5): the consent recorded from rapport.intake.completed.v1, one
signed summary per endpoint of the partner organisation from the first evaluation, none for a
revision, none without consent (nor the partner's ordinary evaluation webhook), a ``skipped``
delivery without a referrer channel in the delivery log, and the delivery-time histogram.

The signature is checked with the ``standardwebhooks`` package when it is installed (the
reference implementation), else with the notifier's own receiver recipe (``rules.verify``)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from rapport_notifier.adapters.channels import WebhookChannel
from rapport_notifier.domain import rules
from rapport_shared.contracts.intake import IntakeCompletedV1
from rapport_shared.contracts.outcomes import OutcomeEvaluatedV1
from rapport_testing.fixtures import TEST_ORG
from rapport_testing.notifier import HttpSink

try:
    from standardwebhooks import Webhook
except ImportError:  # not a dependency of the project: the notifier's own recipe
    Webhook = None

pytestmark = pytest.mark.integration

EVALUATED = "rapport.outcome.evaluated.v1"


def verified(secret: str, headers: dict, body: bytes) -> dict:
    """The body, once its Standard Webhooks signature checks out."""
    if Webhook is not None:
        return Webhook(secret).verify(body, headers)
    assert rules.verify(secret, headers, body, now=int(headers["webhook-timestamp"]))
    return json.loads(body)


async def subscribe(h, url: str, event_types=(EVALUATED,), org: str = TEST_ORG) -> tuple[uuid.UUID, str]:
    sub, secret = uuid.uuid4(), rules.new_secret()
    await h.exec("INSERT INTO subscriptions (subscription_id, partner_id, url, secret, event_types, created_at,"
                 " effective_from, organisation_id) VALUES ($1, 'partner-1', $2, $3, $4, now(), $5, $6)",
                 sub, url, secret, list(event_types), h.clock.now() - timedelta(days=1), org)
    return sub, secret


async def intake(h, *, consent: bool, source: str = "partner-clinic") -> uuid.UUID:
    episode, at = uuid.uuid4(), h.clock.now() - timedelta(days=90)
    await h.handle(IntakeCompletedV1(
        episode_id=episode, person_id=f"P-{episode.hex[:10]}", target_condition="depression",
        template_id="ipt-standard", focus={"primary": "grief"}, clinician_id="clin-ref", referral_source=source,
        availability={"timezone": "Europe/London", "slots": [{"weekday": 2, "start": "09:00", "end": "12:00"}]},
        referred_at=at, completed_at=at, organisation_id=TEST_ORG, share_outcomes_with_referrer=consent), at=at)
    return episode


def evaluated(h, episode: uuid.UUID, revision: int = 1) -> OutcomeEvaluatedV1:
    return OutcomeEvaluatedV1(
        episode_id=episode, organisation_id=TEST_ORG, finished_course=True, caseness_at_baseline=True,
        caseness_at_end=False, recovery=True, reliable_improvement=True, reliable_deterioration=False,
        baseline_totals={"phq9": 18}, final_totals={"phq9": 4 + revision}, evaluated_at=h.clock.now(),
        clinician_id="clin-ref", end_reason="completed", attended_sessions=12, revision=revision)


async def send_all(h) -> None:
    sender = h.sender()
    for row in await sender.claim():
        await sender.deliver(row)


def observed(kind: str) -> tuple[float, float]:
    labels = {"channel": "webhook", "kind": kind}
    return (REGISTRY.get_sample_value("rapport_notifier_delivery_seconds_count", labels) or 0.0,
            REGISTRY.get_sample_value("rapport_notifier_delivery_seconds_sum", labels) or 0.0)


@pytest.fixture
def receiver():
    sink = HttpSink()
    yield sink
    sink.close()


async def test_a_consented_summary_reaches_the_partner_once_signed_and_without_contact_data(h, api, receiver):
    h.channels["webhook"] = WebhookChannel(2, allow_http=True, allow_networks=rules.parse_networks("127.0.0.0/8"))
    sub, secret = await subscribe(h, f"{receiver.url}/hooks/outcomes")
    episode = await intake(h, consent=True)
    assert await h.val("SELECT share_outcomes_with_referrer FROM episodes WHERE episode_id = $1", episode) is True
    await h.exec("INSERT INTO patients (person_id, email, phone, channel_consent, updated_at)"
                 " SELECT person_id, 'someone@patients.test', '+447700900777', '{\"email\": true}', now()"
                 " FROM episodes WHERE episode_id = $1", episode)
    count0, sum0 = observed(rules.REFERRER_SUMMARY)
    first = await h.handle(evaluated(h, episode))
    h.clock.advance(timedelta(seconds=7))  # queued → accepted, on the service clock
    await send_all(h)

    assert len(receiver.requests) == 2  # the summary, and the evaluation the subscription asked for
    by_type = {}
    for path, headers, body in receiver.requests:
        assert path == "/hooks/outcomes"
        event = verified(secret, headers, body)
        by_type[event["type"]] = (headers, event, body)
    headers, summary, body = by_type["rapport.referrer.summary.v1"]
    assert summary["subject"] == str(episode) and summary["data"]["revision"] == 1
    assert summary["data"]["measures"]["phq9"] == {"baseline_total": 18, "final_total": 5, "change": None,
                                                   "reliable_change": None, "caseness_at_baseline": None,
                                                   "caseness_at_end": None}
    for leak in (b"someone@patients.test", b"+447700900777", b"clin-ref"):
        assert leak not in body
    assert by_type[EVALUATED][1]["id"] == first.id
    [row] = await h.fetch("SELECT * FROM notifications WHERE kind = 'referrer_summary'")
    assert headers["webhook-id"] == str(row["notification_id"])
    assert (row["status"], row["recipient_ref"], row["idem_key"]) == (
        "delivered", f"partner:{sub}", f"episode:{episode}/partner:{sub}/webhook/referrer_summary")
    count1, sum1 = observed(rules.REFERRER_SUMMARY)
    assert (count1 - count0, sum1 - sum0) == (1, 7.0)

    # A revision: the evaluation is pushed again, no second summary.
    await h.handle(evaluated(h, episode, revision=2))
    await send_all(h)
    types = [json.loads(b)["type"] for _, _, b in receiver.requests]
    assert types.count("rapport.referrer.summary.v1") == 1 and types.count(EVALUATED) == 2
    # The delivery log shows it.
    r = await api.call("admin", "admin", "GET", "/v1/deliveries",
                       params={"episode_id": str(episode), "kind": "referrer_summary"})
    assert r.status_code == 200, r.text
    [logged] = r.json()["deliveries"]
    assert (logged["status"], logged["channel"], logged["error"]) == ("delivered", "webhook", None)


async def test_without_consent_or_without_a_referrer_channel_nothing_is_sent(h, api, receiver):
    h.channels["webhook"] = WebhookChannel(2, allow_http=True, allow_networks=rules.parse_networks("127.0.0.0/8"))
    await subscribe(h, f"{receiver.url}/hooks")
    refused = await intake(h, consent=False)
    await h.handle(evaluated(h, refused))
    self_referred = await intake(h, consent=True, source="self")
    await h.handle(evaluated(h, self_referred))
    await send_all(h)
    assert receiver.requests == []  # neither a summary nor the evaluation left
    assert await h.val("SELECT count(*) FROM notifications WHERE episode_id = $1 AND channel = 'webhook'", refused) == 0

    r = await api.call("admin", "admin", "GET", "/v1/deliveries", params={"kind": "referrer_summary"})
    assert [(d["episode_id"], d["recipient_ref"], d["channel"], d["status"], d["error"])
            for d in r.json()["deliveries"]] == [
        (str(self_referred), "referrer:unknown", "none", "skipped", "no_referrer_channel")]
    r = await api.call("admin", "admin", "GET", "/v1/deliveries", params={"status": "skipped"})
    assert len(r.json()["deliveries"]) == 1
    assert await h.outbox_events("rapport.notification.failed.v1") == []  # skipped is no failure

    # A GP referral of an organisation without any endpoint: skipped too.
    await h.exec("DELETE FROM subscriptions")
    gp = await intake(h, consent=True, source="gp")
    await h.handle(evaluated(h, gp))
    [row] = await h.fetch("SELECT status, last_error FROM notifications WHERE episode_id = $1"
                          " AND kind = 'referrer_summary'", gp)
    assert (row["status"], row["last_error"]) == ("skipped", "no_referrer_channel")
