"""A safety escalation that finds nobody on call (docs/notifier.md, "Safety pages"; domain.md 3.3:
alerts are never silently dropped): the notifier pages RAPPORT_SAFETY_FALLBACK instead, as a
delivery like any other — a row in the delivery log under a deterministic key, sent over the
channel, its notification.delivered event, the delivery metrics — and counts it in
rapport_notifier_safety_fallback_total (RapportNobodyOnCall). Before this, the escalation wrote a
log line and nobody was paged."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from rapport_notifier.domain import rules
from rapport_shared.contracts.outcomes import AlertRaisedV1

from .test_out_of_hours_paging import MONDAY_NOON, SATURDAY_3AM, WEEKDAYS_9_TO_5, clinician, pages, raise_alert

pytestmark = pytest.mark.integration
FALLBACK = "safety-desk@clinic.test"


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def deliver_all(h) -> None:
    sender = h.sender()
    for row in await sender.claim():
        await sender.deliver(row)


async def test_an_escalation_with_an_empty_rota_pages_the_fallback_address(make_harness):
    h = make_harness(safety_fallback=FALLBACK)
    await clinician(h, "c1")  # no working hours: only the clinician at once, on-call by the escalation
    fallback_before = sample("rapport_notifier_safety_fallback_total", kind="safety_escalation", outcome="paged")
    delivered_before = sample("rapport_notifier_deliveries_total", channel="email", kind="safety_escalation",
                              outcome="delivered")
    data, event = await raise_alert(h, MONDAY_NOON)
    assert [(r, k) for r, k, _ in await pages(h, data.alert_id)] == [("clinician:c1", "safety_alert")]
    h.clock.set(MONDAY_NOON + timedelta(minutes=16))
    assert await h.fire_due() == 1
    key = rules.idem_key(event.id, "oncall:fallback", "email", rules.SAFETY_ESCALATION)
    assert ("oncall:fallback", "safety_escalation", key) in await pages(h, data.alert_id)
    await deliver_all(h)
    [page] = [m for m in h.email.sent if m.address == FALLBACK]
    assert page.subject.startswith("URGENT (on-call)") and str(data.alert_id) in page.subject
    assert page.idem_key == key
    row = await h.row("SELECT status, channel, recipient_ref FROM notifications WHERE idem_key = $1", key)
    assert dict(row) == {"status": "delivered", "channel": "email", "recipient_ref": "oncall:fallback"}
    delivered = [e for e in await h.outbox_events("rapport.notification.delivered.v1")
                 if e["kind"] == "safety_escalation"]
    assert [(e["recipient_ref"], e["channel"]) for e in delivered] == [("oncall:fallback", "email")]
    assert FALLBACK not in str(delivered)  # events carry the reference, never the address
    assert sample("rapport_notifier_safety_fallback_total", kind="safety_escalation", outcome="paged") == \
        fallback_before + 1
    assert sample("rapport_notifier_deliveries_total", channel="email", kind="safety_escalation",
                  outcome="delivered") == delivered_before + 1
    assert await h.val("SELECT escalated_at IS NOT NULL FROM alerts WHERE alert_id = $1", data.alert_id)
    # The timer fires once: nothing more later.
    h.clock.set(MONDAY_NOON + timedelta(hours=2))
    assert await h.fire_due() == 0


async def test_a_fallback_clinician_is_paged_on_every_channel_and_a_rota_of_another_organisation_does_not_count(
        make_harness):
    h = make_harness(safety_fallback="duty-lead")
    await clinician(h, "c1")
    await clinician(h, "duty-lead", channels=("email", "sms"))
    # Someone is on call, but for another organisation: not for this alert's.
    await h.exec("INSERT INTO oncall (slot_id, clinician_id, starts_at, ends_at, organisation_id)"
                 " VALUES ($1, 'other-org-oncall', $2, $3, 'org-other')", uuid.uuid4(),
                 MONDAY_NOON - timedelta(days=1), MONDAY_NOON + timedelta(days=1))
    data, _ = await raise_alert(h, MONDAY_NOON)
    h.clock.set(MONDAY_NOON + timedelta(minutes=16))
    await h.fire_due()
    escalation = [r for r, k, _ in await pages(h, data.alert_id) if k == "safety_escalation"]
    assert escalation == ["oncall:duty-lead", "oncall:duty-lead"]  # email and sms
    await deliver_all(h)
    assert [m.address for m in h.email.sent if m.address.startswith("duty-lead")] == ["duty-lead@clinic.test"]
    assert [m.address for m in h.sms.sent] == ["+447700900001"]


async def test_out_of_hours_with_nobody_on_call_the_first_page_goes_to_the_fallback_too(make_harness):
    h = make_harness(safety_fallback=FALLBACK)
    await clinician(h, "c1", WEEKDAYS_9_TO_5)
    data, event = await raise_alert(h, SATURDAY_3AM)
    assert [(r, k) for r, k, _ in await pages(h, data.alert_id)] == [("clinician:c1", "safety_alert"),
                                                                      ("oncall:fallback", "safety_alert")]
    await deliver_all(h)
    assert sorted(m.address for m in h.email.sent) == ["c1@clinic.test", FALLBACK]
    # Re-processing the same event pages nobody twice.
    await h.handle(AlertRaisedV1(**data.model_dump()), event_id=event.id, at=event.time)
    assert len(await pages(h, data.alert_id)) == 2


async def test_without_a_fallback_the_missing_page_is_recorded_as_not_delivered(h):
    """Development only (production refuses to start without RAPPORT_SAFETY_FALLBACK): a failed
    no_channel delivery and its notification.failed event, which RapportSafetyNotificationNotDelivered
    alerts on."""
    before = sample("rapport_notifier_deliveries_total", channel="none", kind="safety_escalation", outcome="no_channel")
    await clinician(h, "c1")
    data, _ = await raise_alert(h, MONDAY_NOON)
    h.clock.set(MONDAY_NOON + timedelta(minutes=16))
    await h.fire_due()
    row = await h.row("SELECT status, channel, last_error FROM notifications WHERE alert_id = $1"
                      " AND kind = 'safety_escalation'", data.alert_id)
    assert dict(row) == {"status": "failed", "channel": "none", "last_error": "no_channel"}
    failed = await h.outbox_events("rapport.notification.failed.v1")
    assert [(e["kind"], e["recipient_ref"], e["error_code"]) for e in failed] == [
        ("safety_escalation", "oncall:fallback", "no_channel")]
    assert sample("rapport_notifier_deliveries_total", channel="none", kind="safety_escalation",
                  outcome="no_channel") == before + 1
