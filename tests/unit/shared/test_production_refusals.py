"""Production refuses unsafe settings, one clear sentence each (issue #17 item 4): crash points,
the simulated clock, Kafka that is not SASL_SSL, Postgres without verified TLS; in the notifier,
HTTP webhooks and the development contacts key. A settings object that passes is built first, so
each test changes exactly one thing."""

from __future__ import annotations

import base64
import json
import os

import pytest

from rapport_notifier.settings import NotifierSettings
from rapport_shared.http.auth import TokenIssuer
from rapport_shared.settings import ServiceSettings

SAFE_DSN = "postgresql://rapport_x:pw@db.internal:5432/rapport?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem"


@pytest.fixture
def safe(tmp_path, monkeypatch):
    monkeypatch.delenv("RAPPORT_CRASH_AT", raising=False)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(TokenIssuer.generate("prod-1").jwks()))
    return dict(service_name="intake", environment="production", auth_jwks=str(jwks), database_dsn=SAFE_DSN,
                kafka_security_protocol="SASL_SSL", kafka_sasl_username="intake", kafka_sasl_password="x")


def test_safe_production_settings_start(safe):
    assert ServiceSettings(**safe).production_refusals() == []


def test_crash_points_are_refused(safe, monkeypatch):
    monkeypatch.setenv("RAPPORT_CRASH_AT", "relay.after_publish")
    with pytest.raises(ValueError, match="production refuses RAPPORT_CRASH_AT"):
        ServiceSettings(**safe)


def test_the_simulated_clock_is_refused(safe):
    with pytest.raises(ValueError, match="production refuses RAPPORT_CLOCK=simulated"):
        ServiceSettings(**{**safe, "clock": "simulated"})


@pytest.mark.parametrize("kafka", [
    {"kafka_security_protocol": "", "kafka_sasl_username": ""},            # PLAINTEXT, nobody authenticated
    {"kafka_security_protocol": "SASL_PLAINTEXT"},                           # passwords and events in clear
])
def test_kafka_without_sasl_ssl_is_refused(safe, kafka):
    with pytest.raises(ValueError, match="production refuses Kafka over"):
        ServiceSettings(**{**safe, **kafka})


@pytest.mark.parametrize("dsn", [
    "postgresql://rapport_x:pw@db.internal:5432/rapport",
    "postgresql://rapport_x:pw@db.internal:5432/rapport?sslmode=require",
    "postgresql://rapport_x:pw@db.internal:5432/rapport?sslmode=prefer",
])
def test_postgres_without_verified_tls_is_refused(safe, dsn):
    with pytest.raises(ValueError, match="production refuses a Postgres connection without verified TLS"):
        ServiceSettings(**{**safe, "database_dsn": dsn})


def test_verify_ca_is_enough(safe):
    ServiceSettings(**{**safe, "database_dsn": SAFE_DSN.replace("verify-full", "verify-ca")})


def _real_keys() -> dict:
    """A contacts key of the operator's own (not the public development one)."""
    return {"contacts_keys": json.dumps({"2026-12": base64.b64encode(os.urandom(32)).decode()}),
            "contacts_active_key": "2026-12"}


def test_the_notifier_refuses_http_webhooks(safe):
    base = {**safe, "service_name": "notifier", "safety_fallback": "safety-desk@clinic.example", **_real_keys()}
    NotifierSettings(**base)
    with pytest.raises(ValueError, match="production refuses RAPPORT_WEBHOOK_ALLOW_HTTP"):
        NotifierSettings(**{**base, "webhook_allow_http": True})


def test_the_notifier_refuses_the_development_contacts_key(safe):
    with pytest.raises(ValueError, match="production refuses the development contacts key"):
        NotifierSettings(**{**safe, "service_name": "notifier", "safety_fallback": "safety-desk@clinic.example"})


def test_the_notifier_needs_a_safety_fallback(safe):
    """A safety escalation that finds nobody on call pages RAPPORT_SAFETY_FALLBACK: production
    does not start without one (docs/notifier.md, "Safety pages")."""
    base = {**safe, "service_name": "notifier", **_real_keys()}
    with pytest.raises(ValueError, match="production needs RAPPORT_SAFETY_FALLBACK"):
        NotifierSettings(**base)
    for fallback, recipient in (("safety-desk@clinic.example", ("oncall:fallback", ["email"])),
                                ("clin-duty", ("oncall:clin-duty", None))):
        assert NotifierSettings(**{**base, "safety_fallback": fallback}).safety_fallback_recipient() == recipient
    for bad in ("not an address", "a@b", "fallback"):
        with pytest.raises(ValueError, match="RAPPORT_SAFETY_FALLBACK must be"):
            NotifierSettings(**{**base, "safety_fallback": bad})


def test_development_is_not_refused_any_of_it(monkeypatch):
    monkeypatch.setenv("RAPPORT_CRASH_AT", "relay.after_publish")
    s = ServiceSettings(service_name="intake", clock="simulated")
    assert s.environment == "development"
