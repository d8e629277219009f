"""The email relay settings (issue 14, item 6): TLS mode, port defaults, AUTH, the CA file, the
timeout, and what production refuses (plain SMTP to a relay that is not on loopback)."""

from __future__ import annotations

import pytest

from rapport_notifier.adapters.channels import EmailChannel
from rapport_notifier.settings import NotifierSettings

pytestmark = pytest.mark.unit

PLAIN_REFUSAL = "production refuses plain SMTP"


def refusals(**kw) -> list[str]:
    return [r for r in NotifierSettings(**kw).production_refusals() if "SMTP" in r]


def test_development_default_is_the_plain_loopback_server():
    s = NotifierSettings()
    assert (s.smtp_tls, s.smtp_port_or_default, s.smtp_username, s.smtp_ca_file, s.smtp_timeout_s) == (
        "none", 25, "", "", None)
    assert refusals() == []  # no relay configured: nothing to refuse


@pytest.mark.parametrize("tls,port", [("none", 25), ("starttls", 587), ("implicit", 465)])
def test_the_port_follows_the_tls_mode_unless_set(tls, port):
    assert NotifierSettings(smtp_tls=tls).smtp_port_or_default == port
    assert NotifierSettings(smtp_tls=tls, smtp_port=2525).smtp_port_or_default == 2525
    assert EmailChannel("relay.test", None, "n@x.test", 5, tls=tls).port == port


@pytest.mark.parametrize("host,refused", [
    ("relay.clinic.example", True), ("10.1.2.3", True), ("smtp", True),
    ("127.0.0.1", False), ("localhost", False), ("::1", False), ("[::1]", False), ("127.0.0.53", False),
])
def test_production_refuses_plain_smtp_to_a_host_that_is_not_loopback(host, refused):
    assert any(PLAIN_REFUSAL in r for r in refusals(smtp_host=host)) is refused
    for tls in ("starttls", "implicit"):
        assert refusals(smtp_host=host, smtp_tls=tls) == []


def test_auth_and_ca_settings(tmp_path):
    s = NotifierSettings(smtp_username="rapport", smtp_password="s3cret-relay")
    assert "s3cret-relay" not in repr(s) and s.smtp_password.get_secret_value() == "s3cret-relay"
    with pytest.raises(ValueError, match="RAPPORT_SMTP_PASSWORD is set without RAPPORT_SMTP_USERNAME"):
        NotifierSettings(smtp_password="s3cret-relay")
    with pytest.raises(ValueError, match="password in clear"):  # in every environment
        NotifierSettings(smtp_host="relay.clinic.example", smtp_username="rapport", smtp_password="pw")
    NotifierSettings(smtp_host="127.0.0.1", smtp_username="rapport", smtp_password="pw")  # a loopback test relay
    NotifierSettings(smtp_host="relay.clinic.example", smtp_tls="starttls", smtp_username="rapport", smtp_password="pw")
    with pytest.raises(ValueError, match="RAPPORT_SMTP_CA_FILE"):
        NotifierSettings(smtp_ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError):
        NotifierSettings(smtp_tls="ssl")
    with pytest.raises(ValueError, match="RAPPORT_SMTP_TIMEOUT_S"):
        NotifierSettings(smtp_timeout_s=0)


def test_the_settings_come_from_the_environment(monkeypatch):
    for k, v in {"RAPPORT_SMTP_TLS": "implicit", "RAPPORT_SMTP_USERNAME": "rapport", "RAPPORT_SMTP_PASSWORD": "pw",
                 "RAPPORT_SMTP_TIMEOUT_S": "7.5"}.items():
        monkeypatch.setenv(k, v)
    s = NotifierSettings()
    assert (s.smtp_tls, s.smtp_username, s.smtp_password.get_secret_value(), s.smtp_timeout_s,
            s.smtp_port_or_default) == ("implicit", "rapport", "pw", 7.5, 465)


def test_a_ca_file_that_is_no_certificate_fails_when_the_channel_is_built(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(Exception):
        EmailChannel("relay.test", 587, "n@x.test", 5, tls="starttls", ca_file=str(bad))
    with pytest.raises(ValueError):
        EmailChannel("relay.test", 587, "n@x.test", 5, tls="ssl")
    assert "pw" not in repr(EmailChannel("relay.test", 587, "n@x.test", 5, tls="starttls", username="u", password="pw"))
