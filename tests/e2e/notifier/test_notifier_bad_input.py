"""Bad input at the notifier's edge: clear 4xx naming the field, nothing stored."""

import uuid
from datetime import datetime, timezone

import asyncpg
import pytest

from rapport_testing.notifier import api, intake_known

pytestmark = pytest.mark.e2e


async def test_bad_input_is_refused_and_nothing_is_stored(system, kafka, tokens, service_dsns):
    url = system["notifier"].url
    # P-bad is a person of an episode of the admin's organisation (else the policy answers 404 first)
    await intake_known(kafka.bootstrap, service_dsns["notifier"], uuid.uuid4(), "P-bad", "clin-bad",
                       datetime.now(timezone.utc))
    admin, partner = tokens.issue("admin", ["admin"]), tokens.issue("partner-bad", ["partner"])
    conn = await asyncpg.connect(service_dsns["notifier"])
    try:
        before = {t: await conn.fetchval(f"SELECT count(*) FROM {t}")
                  for t in ("subscriptions", "clinicians", "patient_preferences", "oncall")}
        cases = [
            (partner, "POST", "/v1/webhooks/subscriptions", {"url": "ftp://partner.example/x", "event_types": ["rapport.alert.raised.v1"]}, "url"),
            (partner, "POST", "/v1/webhooks/subscriptions", {"url": "https://10.0.0.1/x", "event_types": ["rapport.alert.raised.v1"]}, "url"),
            (partner, "POST", "/v1/webhooks/subscriptions", {"url": "https://partner.example/x", "event_types": ["rapport.alert.raised.v1", "rapport.bogus.v9"]}, "event_types.1"),
            (admin, "PUT", "/v1/patients/P-bad/preferences", {"quiet_hours": {"start": "9pm", "end": "08:00", "timezone": "Europe/London"}}, "quiet_hours.start"),
            (admin, "PUT", "/v1/patients/P-bad/preferences", {"quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "Nowhere/City"}}, "quiet_hours.timezone"),
            (admin, "PUT", "/v1/patients/P-bad/preferences", {"language": "fr"}, "language"),  # fr templates incomplete
            (admin, "PUT", "/v1/clinicians/clin-bad", {"email": "c@clinic.test", "language": "de", "channels": ["email"]}, "language"),
            (admin, "PUT", "/v1/clinicians/clin-bad", {"language": "en", "channels": ["sms"]}, "channels"),
            (admin, "PUT", "/v1/clinicians/clin-bad", {"email": "c@clinic.test", "channels": ["email"], "working_hours": {
                "timezone": "Nowhere/City", "slots": [{"day": "mon", "start": "09:00", "end": "17:00"}]}},
             "working_hours.timezone"),
            (admin, "PUT", "/v1/clinicians/clin-bad", {"email": "c@clinic.test", "channels": ["email"], "working_hours": {
                "timezone": "Europe/London", "slots": [{"day": "mon", "start": "09:00", "end": "5pm"}]}},
             "working_hours.slots.0.end"),
        ]
        for token, method, path, body, field in cases:
            r = api(url, token, method, path, json=body)
            assert r.status_code == 422, (path, body, r.status_code, r.text)
            assert field in r.text, (field, r.text)
        r = api(url, admin, "PUT", "/v1/oncall", json={"slots": [{"clinician_id": "c1", "starts_at": "2026-01-02T00:00:00Z",
                                                                  "ends_at": "2026-01-01T00:00:00Z"}]})
        assert r.status_code == 422 and "slots.0.ends_at" in r.text
        # roles: a partner cannot manage recipients; an admin is not a partner
        assert api(url, partner, "PUT", "/v1/clinicians/x", json={"language": "en"}).status_code == 403
        assert api(url, admin, "POST", "/v1/webhooks/subscriptions",
                   json={"url": "https://partner.example/x", "event_types": ["rapport.alert.raised.v1"]}).status_code == 403
        after = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in before}
        assert after == before
    finally:
        await conn.close()
