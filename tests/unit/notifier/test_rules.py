"""Pure notifier rules: idempotency keys, quiet hours, working hours, webhook signatures, URL checks,
templates."""

import base64
import hashlib
import hmac
from datetime import datetime, timezone

import pytest

from rapport_notifier.domain import rules
from rapport_notifier.settings import TEMPLATES

pytestmark = pytest.mark.unit


def test_idempotency_key_is_stable_and_distinguishes_recipient_channel_kind():
    k = rules.idem_key("11111111-1111-1111-1111-111111111111", "patient:P-1", "email", "session_reminder")
    assert rules.notification_id(k) == rules.notification_id(k)
    others = {rules.idem_key("11111111-1111-1111-1111-111111111111", r, c, kd)
              for r, c, kd in [("patient:P-2", "email", "session_reminder"), ("patient:P-1", "sms", "session_reminder"),
                               ("patient:P-1", "email", "questionnaire_request")]}
    assert k not in others and len(others) == 3


def test_quiet_hours_wrap_midnight_and_defer_to_their_end():
    qh = rules.QuietHours.parse({"start": "21:00", "end": "08:00", "timezone": "Europe/London"})
    late = datetime(2026, 1, 10, 22, 30, tzinfo=timezone.utc)  # 22:30 London (GMT)
    assert qh.next_allowed(late) == datetime(2026, 1, 11, 8, 0, tzinfo=timezone.utc)
    noon = datetime(2026, 1, 10, 12, 0, tzinfo=timezone.utc)
    assert qh.next_allowed(noon) == noon
    early = datetime(2026, 7, 10, 5, 0, tzinfo=timezone.utc)  # 06:00 BST → 08:00 BST = 07:00 UTC
    assert qh.next_allowed(early) == datetime(2026, 7, 10, 7, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("raw,field", [
    ({"start": "25:00", "end": "08:00", "timezone": "UTC"}, "quiet_hours.start"),
    ({"start": "21:00", "end": "8", "timezone": "UTC"}, "quiet_hours.end"),
    ({"start": "21:00", "end": "08:00", "timezone": "Mars/Olympus"}, "quiet_hours.timezone"),
    ({"start": "08:00", "end": "08:00", "timezone": "UTC"}, "quiet_hours"),
    ("21-08", "quiet_hours"),
])
def test_quiet_hours_that_do_not_parse_name_the_field(raw, field):
    with pytest.raises(rules.QuietHoursError) as e:
        rules.QuietHours.parse(raw)
    assert e.value.field == field


def test_working_hours_are_wall_clock_slots_in_the_clinicians_time_zone():
    wh = rules.WorkingHours.parse({"timezone": "Europe/London", "slots": [
        {"day": d, "start": "09:00", "end": "17:30"} for d in ("mon", "tue", "wed", "thu", "fri")] + [
        {"day": "sat", "start": "22:00", "end": "24:00"}]})
    monday = datetime(2026, 1, 12, 9, 0, tzinfo=timezone.utc)  # GMT: 09:00 London
    assert monday.weekday() == 0 and wh.within(monday)
    assert not wh.within(monday.replace(hour=8, minute=59))
    assert wh.within(monday.replace(hour=17, minute=29)) and not wh.within(monday.replace(hour=17, minute=30))
    assert not wh.within(datetime(2026, 1, 11, 12, 0, tzinfo=timezone.utc))  # Sunday
    assert wh.within(datetime(2026, 1, 10, 23, 59, tzinfo=timezone.utc))  # Saturday 23:59, up to 24:00
    summer = datetime(2026, 7, 13, 8, 30, tzinfo=timezone.utc)  # Monday 09:30 BST
    assert wh.within(summer) and not wh.within(summer.replace(hour=16, minute=45))  # 17:45 BST
    assert rules.WorkingHours.parse(None) is None


@pytest.mark.parametrize("raw,field", [
    ({"timezone": "Mars/Olympus", "slots": [{"day": "mon", "start": "09:00", "end": "17:00"}]}, "working_hours.timezone"),
    ({"timezone": "", "slots": [{"day": "mon", "start": "09:00", "end": "17:00"}]}, "working_hours.timezone"),
    ({"slots": [{"day": "mon", "start": "09:00", "end": "17:00"}]}, "working_hours.timezone"),
    ({"timezone": "UTC", "slots": []}, "working_hours.slots"),
    ({"timezone": "UTC", "slots": "mon 9-5"}, "working_hours.slots"),
    ({"timezone": "UTC", "slots": [{"day": "monday", "start": "09:00", "end": "17:00"}]}, "working_hours.slots.0.day"),
    ({"timezone": "UTC", "slots": [{"day": "mon", "start": "09:00", "end": "17:00"},
                                   {"day": "tue", "start": "9am", "end": "17:00"}]}, "working_hours.slots.1.start"),
    ({"timezone": "UTC", "slots": [{"day": "mon", "start": "09:00", "end": "24:30"}]}, "working_hours.slots.0.end"),
    ({"timezone": "UTC", "slots": [{"day": "mon", "start": "17:00", "end": "09:00"}]}, "working_hours.slots.0.end"),
    ({"timezone": "UTC", "slots": [{"day": "mon", "start": "09:00", "end": "17:00", "note": "x"}]},
     "working_hours.slots.0.note"),
    ({"timezone": "UTC", "slots": ["mon"]}, "working_hours.slots.0"),
    ({"timezone": "UTC", "slots": [{"day": "mon", "start": "09:00", "end": "17:00"}], "tz": "UTC"}, "working_hours.tz"),
    ("9-5", "working_hours"),
])
def test_working_hours_that_do_not_parse_name_the_field(raw, field):
    with pytest.raises(rules.WorkingHoursError) as e:
        rules.WorkingHours.parse(raw)
    assert e.value.field == field


def test_signature_follows_standard_webhooks_and_verifies():
    secret = rules.new_secret()
    body = b'{"id":"x"}'
    sig = rules.sign(secret, "msg_1", 1700000000, body)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, b"msg_1.1700000000." + body, hashlib.sha256).digest()).decode()
    assert sig == f"v1,{expected}"
    headers = {"webhook-id": "msg_1", "webhook-timestamp": "1700000000", "webhook-signature": sig}
    assert rules.verify(secret, headers, body)
    assert not rules.verify(secret, headers, body + b" ")
    assert not rules.verify(rules.new_secret(), headers, body)
    assert not rules.verify(secret, headers, body, now=1700000000 + 3600)  # replayed too late


@pytest.mark.parametrize("url", ["ftp://x.example/h", "not a url", "http://partner.example/h", "https://127.0.0.1/h",
                                 "https://10.1.2.3/h", "https://user:pw@partner.example/h", "https://localhost/h", "https:///h"])
def test_invalid_webhook_urls_are_refused(url):
    with pytest.raises(rules.WebhookUrlError):
        rules.check_webhook_url(url, allow_http=False)


def test_valid_webhook_url():
    assert rules.check_webhook_url("https://partner.example/hooks", allow_http=False)
    assert rules.check_webhook_url("http://127.0.0.1:9000/h", allow_http=True,
                                   allow_networks=rules.parse_networks("127.0.0.0/8"))
    with pytest.raises(rules.WebhookUrlError):  # http alone no longer admits loopback (test_webhook_addresses.py)
        rules.check_webhook_url("http://127.0.0.1:9000/h", allow_http=True)


def test_templates_one_file_per_kind_and_language():
    t = rules.Templates(TEMPLATES)
    assert {"en", "es"} <= t.languages() and "fr" not in t.languages()  # fr is incomplete
    r = t.render("session_reminder", "en", {"session_number": 3, "starts_at": "2026-03-01 10:00", "timezone": "UTC"})
    assert "session 3" in r.subject and "2026-03-01 10:00" in r.body
    assert "sesión 3" in t.render("session_reminder", "es", {"session_number": 3}).subject
    with pytest.raises(rules.TemplateMissing):
        t.render("session_reminder", "de", {})
