"""First safety pages out of hours (docs/notifier.md, "Safety pages"): a safety alert raised
outside the assigned clinician's working hours pages the on-call clinician(s) at once as well,
under deterministic keys; inside the hours, or with no hours configured, only the clinician is
paged and on-call hears of it by the escalation."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from rapport_notifier.domain import rules
from rapport_shared.contracts.outcomes import AlertRaisedV1

pytestmark = pytest.mark.integration

WEEKDAYS_9_TO_5 = {"timezone": "Europe/London",
                   "slots": [{"day": d, "start": "09:00", "end": "17:00"} for d in ("mon", "tue", "wed", "thu", "fri")]}
SATURDAY_3AM = datetime(2031, 3, 8, 3, 0, tzinfo=timezone.utc)
MONDAY_NOON = datetime(2031, 3, 3, 12, 0, tzinfo=timezone.utc)


async def clinician(h, cid: str, hours: dict | None = None, channels=("email",)) -> None:
    await h.exec("INSERT INTO clinicians (clinician_id, email, phone, language, channels, working_hours, updated_at)"
                 " VALUES ($1, $2, '+447700900001', 'en', $3, $4::jsonb, now())", cid, f"{cid}@clinic.test",
                 list(channels), json.dumps(hours) if hours else None)


async def rota(h, *who: str, around: datetime) -> None:
    for c in who:
        await h.exec("INSERT INTO oncall VALUES ($1, $2, $3, $4)", uuid.uuid4(), c, around - timedelta(days=2),
                     around + timedelta(days=2))


async def raise_alert(h, at: datetime, clinician_id: str = "c1"):
    h.clock.set(at)
    data = AlertRaisedV1(episode_id=uuid.uuid4(), alert_id=uuid.uuid4(), kind="safety", urgency="urgent",
                         reason_code="safety_item_positive", clinician_id=clinician_id, instrument="phq9", raised_at=at)
    return data, await h.handle(data, at=at)


async def pages(h, alert_id) -> list[tuple[str, str, str]]:
    return [(r["recipient_ref"], r["kind"], r["idem_key"]) for r in await h.fetch(
        "SELECT recipient_ref, kind, idem_key FROM notifications WHERE alert_id = $1 ORDER BY recipient_ref, kind, idem_key",
        alert_id)]


async def test_out_of_hours_the_first_page_goes_to_on_call_at_once(h):
    await clinician(h, "c1", WEEKDAYS_9_TO_5, ("email", "sms"))
    for c in ("oncall-a", "oncall-b"):
        await clinician(h, c)
    await rota(h, "oncall-a", "oncall-b", "c1", around=SATURDAY_3AM)  # c1 on call too: not paged twice
    data, event = await raise_alert(h, SATURDAY_3AM)
    got = await pages(h, data.alert_id)  # written with the alert, before any timer fires
    assert [(ref, kind) for ref, kind, _ in got] == [
        ("clinician:c1", "safety_alert"), ("clinician:c1", "safety_alert"),  # email and sms
        ("oncall:oncall-a", "safety_alert"), ("oncall:oncall-b", "safety_alert")]
    for ref in ("oncall:oncall-a", "oncall:oncall-b"):
        assert rules.idem_key(event.id, ref, "email", rules.SAFETY_ALERT) in {k for _, _, k in got}
    assert await h.val("SELECT out_of_hours FROM alerts WHERE alert_id = $1", data.alert_id) is True
    # Delivered over the on-call clinicians' own channels, like any page.
    sender = h.sender()
    for row in await sender.claim():
        await sender.deliver(row)
    assert sorted(m.address for m in h.email.sent) == ["c1@clinic.test", "oncall-a@clinic.test", "oncall-b@clinic.test"]
    # The same event processed again (inbox bypassed): the same keys, nothing new.
    await h.handle(data, event_id=event.id, at=event.time)
    assert await pages(h, data.alert_id) == got
    # Unacknowledged: the escalation still follows after ESCALATION_AFTER, to whoever is on call then.
    h.clock.set(SATURDAY_3AM + timedelta(minutes=16))
    await h.fire_due()
    escalated = {ref for ref, kind, _ in await pages(h, data.alert_id) if kind == "safety_escalation"}
    assert escalated == {"oncall:c1", "oncall:oncall-a", "oncall:oncall-b"}  # (unchanged escalation rule)


async def test_inside_working_hours_or_without_them_only_the_clinician_is_paged_at_once(h):
    await clinician(h, "c1", WEEKDAYS_9_TO_5)
    await clinician(h, "c2")  # no working hours configured
    await clinician(h, "oncall-a")
    await rota(h, "oncall-a", around=MONDAY_NOON)
    await rota(h, "oncall-a", around=SATURDAY_3AM)
    inside, _ = await raise_alert(h, MONDAY_NOON)
    no_hours, _ = await raise_alert(h, SATURDAY_3AM, clinician_id="c2")
    assert [(r, k) for r, k, _ in await pages(h, inside.alert_id)] == [("clinician:c1", "safety_alert")]
    assert [(r, k) for r, k, _ in await pages(h, no_hours.alert_id)] == [("clinician:c2", "safety_alert")]
    assert await h.val("SELECT count(*) FROM alerts WHERE out_of_hours") == 0


async def test_out_of_hours_with_nobody_on_call_still_pages_the_clinician(h):
    """...and, with no RAPPORT_SAFETY_FALLBACK (development), records the missing on-call page as
    a failed delivery (no_channel, with its notification.failed event): never only a log line.
    With a fallback configured it is paged instead (test_safety_fallback.py)."""
    await clinician(h, "c1", WEEKDAYS_9_TO_5)
    data, _ = await raise_alert(h, SATURDAY_3AM)
    assert [(r, k) for r, k, _ in await pages(h, data.alert_id)] == [("clinician:c1", "safety_alert"),
                                                                      ("oncall:fallback", "safety_alert")]
    assert await h.val("SELECT status || '/' || last_error FROM notifications WHERE recipient_ref = 'oncall:fallback'"
                       " AND alert_id = $1", data.alert_id) == "failed/no_channel"
    assert [e["recipient_ref"] for e in await h.outbox_events("rapport.notification.failed.v1")] == \
        ["oncall:fallback"]
    assert await h.val("SELECT out_of_hours FROM alerts WHERE alert_id = $1", data.alert_id) is True
