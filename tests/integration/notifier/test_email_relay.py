"""Email through a real organisation's relay (issue 14, item 6): the notifier's email channel
(aiosmtplib) against loopback relays that REQUIRE TLS and AUTH, as a clinic's mail relay does:
STARTTLS on a submission port, or implicit TLS (SMTPS), with a throwaway CA given to the client as
``SMTP_CA_FILE``. A message goes through with its Message-ID and idempotency key; a wrong password
is ``auth_failed``, a certificate from a CA the client does not trust is ``tls_failed`` (nothing
sent, never in doubt); the errors carry neither the address nor the password. Last, the sender
delivers a row through the channel the service builds from its settings."""

from __future__ import annotations

import uuid

import pytest
from aiosmtpd.controller import Controller

from rapport_notifier import bootstrap
from rapport_notifier.adapters.channels import EmailChannel, Outgoing, SendError
from rapport_notifier.domain import rules
from rapport_notifier.service_layer import handlers
from rapport_notifier.settings import NotifierSettings
from rapport_testing.notifier import SmtpServer, TlsRelay, make_certificates
from rapport_testing.services import free_port

pytestmark = pytest.mark.integration

ADDRESS = "alex.doe+relay@patients.test"
USER, PASSWORD = "rapport", "relay-password-7f3a"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("relay-certs"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    """Another CA (and its server certificate), which the relay's certificate does not chain to."""
    return make_certificates(tmp_path_factory.mktemp("other-certs"), prefix="other")


@pytest.fixture
def starttls_relay(certs):
    relay = TlsRelay(certs, "starttls", {USER: PASSWORD}).start()
    yield relay
    relay.stop()


@pytest.fixture
def implicit_relay(certs):
    relay = TlsRelay(certs, "implicit", {USER: PASSWORD}).start()
    yield relay
    relay.stop()


def outgoing() -> Outgoing:
    nid = str(uuid.uuid4())
    return Outgoing(nid, f"key-{nid}", ADDRESS, subject="Your session tomorrow", body="See you at 10:00.")


def channel(relay: TlsRelay, tls: str, *, ca_file: str, password: str = PASSWORD, host: str = "127.0.0.1",
            username: str = USER) -> EmailChannel:
    return EmailChannel(host, relay.port, "notifications@rapport.test", 5, tls=tls, username=username,
                        password=password, ca_file=ca_file)


def assert_clean(err: SendError) -> None:
    text = f"{err} {err.args!r} {err.detail}"
    for secret in (ADDRESS, "alex.doe", "patients.test", PASSWORD, USER):
        assert secret not in text, (secret, text)
    assert err.__cause__ is None and err.__suppress_context__


async def test_starttls_and_auth_deliver_the_message(starttls_relay, certs):
    msg = outgoing()
    await channel(starttls_relay, "starttls", ca_file=certs.ca_file).send(msg)
    [m] = starttls_relay.messages
    assert m["Message-ID"] == f"<{msg.notification_id}@rapport.notifier>"
    assert m["X-Rapport-Idempotency-Key"] == msg.idem_key and m["To"] == ADDRESS
    assert m.get_content().strip() == "See you at 10:00."
    [session] = starttls_relay.sessions
    assert session == {"tls": True, "authenticated": True, "user": USER, "mail_from": "notifications@rapport.test",
                       "rcpt_tos": [ADDRESS]}


async def test_implicit_tls_and_auth_deliver_the_message(implicit_relay, certs):
    msg = outgoing()
    await channel(implicit_relay, "implicit", ca_file=certs.ca_file).send(msg)
    [m] = implicit_relay.messages
    assert m["Message-ID"] == f"<{msg.notification_id}@rapport.notifier>"
    assert implicit_relay.sessions[0]["tls"] and implicit_relay.sessions[0]["user"] == USER


async def test_the_relay_name_is_verified_too(starttls_relay, certs):
    # The certificate names localhost and 127.0.0.1: both verify.
    await channel(starttls_relay, "starttls", ca_file=certs.ca_file, host="localhost").send(outgoing())
    assert len(starttls_relay.messages) == 1


async def test_a_wrong_password_is_auth_failed(starttls_relay, implicit_relay, certs):
    for relay, tls in ((starttls_relay, "starttls"), (implicit_relay, "implicit")):
        with pytest.raises(SendError) as caught:
            await channel(relay, tls, ca_file=certs.ca_file, password="not-the-password").send(outgoing())
        err = caught.value
        assert (err.code, err.retryable, err.maybe_delivered) == ("auth_failed", False, False)
        assert err.stored.startswith("auth_failed: smtp 535")
        assert_clean(err)
        assert relay.messages == [] and relay.auth_attempts and not any(ok for _, ok in relay.auth_attempts)


async def test_an_untrusted_certificate_is_tls_failed(starttls_relay, implicit_relay, other_ca):
    for relay, tls in ((starttls_relay, "starttls"), (implicit_relay, "implicit")):
        with pytest.raises(SendError) as caught:  # the client trusts another CA only
            await channel(relay, tls, ca_file=other_ca.ca_file).send(outgoing())
        err = caught.value
        assert (err.code, err.maybe_delivered) == ("tls_failed", False)
        assert err.stored == "tls_failed: SSLCertVerificationError"
        assert_clean(err)
        assert relay.messages == [] and relay.auth_attempts == []  # no password was offered to it


async def test_the_system_trust_store_does_not_trust_a_private_ca(starttls_relay):
    with pytest.raises(SendError) as caught:
        await channel(starttls_relay, "starttls", ca_file="").send(outgoing())
    assert caught.value.code == "tls_failed" and starttls_relay.messages == []


async def test_a_certificate_for_another_name_is_tls_failed(tmp_path):
    wrong = make_certificates(tmp_path, names=("relay.clinic.test",))  # trusted CA, but not for 127.0.0.1
    relay = TlsRelay(wrong, "starttls", {USER: PASSWORD}).start()
    try:
        with pytest.raises(SendError) as caught:
            await channel(relay, "starttls", ca_file=wrong.ca_file).send(outgoing())
        assert caught.value.code == "tls_failed" and relay.messages == []
    finally:
        relay.stop()


async def test_the_relay_refuses_plain_smtp_and_the_client_never_falls_back(starttls_relay, certs):
    # Without TLS the relay accepts nothing (530: STARTTLS first).
    with pytest.raises(SendError) as caught:
        await channel(starttls_relay, "none", ca_file="", username="", password="").send(outgoing())
    assert caught.value.code == "sender_refused" and caught.value.stored.startswith("sender_refused: smtp 530")
    # A server that does not offer STARTTLS (or a man in the middle who strips it): tls_failed,
    # neither the message nor the password sent in clear.
    plain = SmtpServer()
    plain.controller.start()
    try:
        with pytest.raises(SendError) as caught:
            await EmailChannel("127.0.0.1", plain.port, "notifications@rapport.test", 5, tls="starttls",
                               username=USER, password=PASSWORD, ca_file=certs.ca_file).send(outgoing())
        assert caught.value.stored == "tls_failed: starttls not offered" and plain.messages == []
    finally:
        plain.controller.stop()
    assert starttls_relay.messages == []


async def test_a_relay_that_is_not_listening_is_connection_failed(certs):
    ch = EmailChannel("127.0.0.1", free_port(), "notifications@rapport.test", 2, tls="implicit", ca_file=certs.ca_file)
    with pytest.raises(SendError) as caught:
        await ch.send(outgoing())
    assert (caught.value.stored, caught.value.maybe_delivered) == ("connection_failed: refused", False)


async def test_a_plain_server_on_the_smtps_port_is_tls_failed(certs):
    # A plain server for an implicit-TLS client: its greeting is no TLS handshake.
    plain = Controller(object(), hostname="127.0.0.1", port=free_port())
    plain.start()
    try:
        ch = EmailChannel("127.0.0.1", plain.port, "notifications@rapport.test", 1, tls="implicit",
                          ca_file=certs.ca_file)
        with pytest.raises(SendError) as caught:
            await ch.send(outgoing())
        assert (caught.value.code, caught.value.maybe_delivered) == ("tls_failed", False)
    finally:
        plain.stop()


async def test_the_sender_delivers_through_the_relay_the_settings_describe(make_harness, starttls_relay, certs):
    """Settings → the channel the service builds (bootstrap) → the sender → the relay."""
    settings = NotifierSettings(service_name="notifier", environment="test", contacts_enabled=False,
                                auth_secret="x" * 32, smtp_host="localhost", smtp_port=starttls_relay.port,
                                smtp_tls="starttls", smtp_username=USER, smtp_password=PASSWORD,
                                smtp_ca_file=certs.ca_file, smtp_timeout_s=5)
    email = bootstrap.build(settings).state.sender.channels["email"]
    assert (email.tls, email.username, email.port, email.timeout_s) == ("starttls", USER, starttls_relay.port, 5)
    assert PASSWORD not in repr(email)
    h = make_harness(send_timeout_s=10)
    h.channels["email"] = email
    ep = uuid.uuid4()
    await h.exec("INSERT INTO episodes (episode_id, person_id, clinician_id, organisation_id)"
                 " VALUES ($1, 'P-relay', 'c-relay', 'org-test')", ep)
    await h.exec("INSERT INTO patients (person_id, email, phone, channel_consent, updated_at)"
                 " VALUES ('P-relay', $1, NULL, '{\"email\": true}', now())", ADDRESS)
    async with h.uow() as uow:
        await handlers.enqueue(uow, kind=rules.REVIEW_NOTICE, cause_event_id=uuid.uuid4(), episode_id=ep,
                               recipient_ref="patient:P-relay", channels=["email"],
                               params={"episode_id": str(ep), "reason": "r", "session_number": 1})
    sender = h.sender()
    [row] = await sender.claim()
    await sender.deliver(row)
    r = await h.row("SELECT status, last_error FROM notifications WHERE notification_id = $1", row["notification_id"])
    assert (r["status"], r["last_error"]) == ("delivered", None)
    [m] = starttls_relay.messages
    assert m["Message-ID"] == f"<{row['notification_id']}@rapport.notifier>" and m["To"] == ADDRESS
    assert starttls_relay.sessions[0]["tls"] and starttls_relay.sessions[0]["user"] == USER
