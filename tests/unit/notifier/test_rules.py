"""Pure notifier rules: idempotency keys, webhook signatures, URL checks, templates (quiet and
working hours: test_hours.py)."""

import base64
import hashlib
import hmac

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
