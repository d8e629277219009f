"""Webhooks that cannot reach inside (issue 17, item 5): the one address check
(``rules.address_refusal``), used on URL literals at subscription and on every resolved address at
send time, against every textual form of an internal address; and the channel's error classes,
which carry no contact data (item 2)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl

import aiosmtplib

import pytest

from rapport_notifier.adapters import channels
from rapport_notifier.domain import rules

INTERNAL = {
    # loopback, in every form getaddrinfo / inet_aton accept
    "https://127.0.0.1/": "loopback", "https://127.1/": "loopback", "https://127.0.1/": "loopback",
    "https://2130706433/": "loopback", "https://0177.0.0.1/": "loopback", "https://0177.0000.0000.0001/": "loopback",
    "https://017700000001/": "loopback", "https://0x7f.0.0.1/": "loopback", "https://0x7f.1/": "loopback",
    "https://0x7f000001/": "loopback", "https://0X7F000001/": "loopback", "https://127.0.0.1./": "loopback",
    "https://127.255.255.254/": "loopback", "https://１２７.０.０.１/": "loopback",
    "https://[::1]/": "loopback", "https://[0:0:0:0:0:0:0:1]/": "loopback",
    "https://[::ffff:127.0.0.1]/": "loopback", "https://[::ffff:7f00:1]/": "loopback",
    "https://[::127.0.0.1]/": "loopback", "https://[2002:7f00:1::]/": "loopback",
    "https://[64:ff9b::127.0.0.1]/": "loopback",
    "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/": "loopback",   # Teredo, client 127.0.0.1
    "https://localhost/": "localhost", "https://LOCALHOST./": "localhost", "https://api.localhost/": "localhost",
    # private (RFC 1918, RFC 4193)
    "https://10.0.0.1/": "private", "https://10.1/": "private", "https://167772161/": "private",
    "https://172.16.0.1/": "private", "https://172.31.255.255/": "private", "https://192.168.0.1/": "private",
    "https://0xc0a80001/": "private", "https://[fd00::1]/": "private", "https://[fc00::1]/": "private",
    "https://[::ffff:10.0.0.1]/": "private", "https://[::ffff:192.168.1.1]/": "private", "https://[fec0::1]/": "private",
    # link-local, the metadata address
    "https://169.254.169.254/": "link-local", "https://2852039166/": "link-local", "https://0xa9fea9fe/": "link-local",
    "https://0251.0376.0251.0376/": "link-local", "https://[::ffff:169.254.169.254]/": "link-local",
    "https://[fe80::1]/": "link-local", "https://[fe80::1%25eth0]/": "link-local", "https://[fe80::a:b%251]/": "link-local",
    # multicast, unspecified, reserved, CGNAT, other special-use
    "https://224.0.0.1/": "multicast", "https://239.255.255.250/": "multicast", "https://[ff02::1]/": "multicast",
    "https://0.0.0.0/": "unspecified", "https://0/": "unspecified", "https://[::]/": "unspecified",
    "https://240.0.0.1/": "reserved", "https://255.255.255.255/": "reserved",
    "https://100.64.0.1/": "CGNAT", "https://100.127.255.254/": "CGNAT", "https://[::ffff:100.64.0.1]/": "CGNAT",
    "https://0.1.2.3/": "private", "https://192.0.2.1/": "private", "https://198.18.0.1/": "private",
    "https://[2001:db8::1]/": "private",
}


@pytest.mark.parametrize("url", sorted(INTERNAL))
def test_every_textual_form_of_an_internal_address_is_refused_at_subscription(url):
    with pytest.raises(rules.WebhookAddressError) as e:
        rules.check_webhook_url(url, allow_http=False)
    assert INTERNAL[url].lower() in str(e.value).lower()


@pytest.mark.parametrize("url", ["https://partner.example/hooks", "https://8.8.8.8/h", "https://134744072/h",
                                 "https://[2606:4700:4700::1111]/h", "https://[2002:808:808::]/h",
                                 "https://[64:ff9b::8.8.8.8]/h", "https://[::ffff:8.8.8.8]/h", "https://1.1.1.1:8443/h"])
def test_public_addresses_and_names_pass(url):
    assert rules.check_webhook_url(url, allow_http=False) == url


@pytest.mark.parametrize("url", ["https://foo.123/h", "https://999.1.1.1/h", "https://0x1ffffffff/h", "https://[::g]/h"])
def test_numeric_hosts_that_are_no_address_are_refused(url):
    with pytest.raises(rules.WebhookUrlError):
        rules.check_webhook_url(url, allow_http=False)


@pytest.mark.parametrize("raw,expected", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"), ("10.9.8.7", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1%eth0", "link-local"), ("100.64.1.1", "shared (CGNAT)"),
    ("224.0.0.251", "multicast"), ("ff05::2", "multicast"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("240.1.2.3", "reserved"), ("fd12:3456::1", "private"), ("8.8.8.8", None), ("2606:4700::1111", None)])
def test_address_refusal_on_resolved_addresses(raw, expected):
    why = rules.address_refusal(raw)
    assert why == expected if expected is None else expected in why


def test_the_allow_list_admits_a_partner_network_and_nothing_else():
    allow = rules.parse_networks("10.20.0.0/16, fd00:20::/48")
    assert rules.address_refusal("10.20.3.4", allow) is None
    assert rules.address_refusal("::ffff:10.20.3.4", allow) is None           # the same socket address
    assert rules.address_refusal("fd00:20::5", allow) is None
    assert rules.address_refusal("10.21.0.1", allow) == "private"
    assert rules.address_refusal("127.0.0.1", allow) == "loopback"
    assert rules.address_refusal("169.254.169.254", allow) == "link-local"
    assert rules.address_refusal("0.0.0.0", rules.parse_networks("0.0.0.0/0")) == "unspecified"  # never
    assert rules.check_webhook_url("https://10.20.0.9/h", allow_http=False, allow_networks=allow)
    assert rules.check_webhook_url("https://0x0a140009/h", allow_http=False, allow_networks=allow)
    with pytest.raises(ValueError):
        rules.parse_networks("10.20.0.1/16")  # host bits set: a typo, not a network
    with pytest.raises(ValueError):
        rules.parse_networks("partner.example")


def test_the_allow_list_setting_and_its_production_refusal():
    from rapport_notifier.settings import NotifierSettings

    s = NotifierSettings(webhook_allow_networks="10.20.0.0/16,fd00:20::/48")
    assert s.webhook_networks() == (ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("fd00:20::/48"))
    with pytest.raises(ValueError):
        NotifierSettings(webhook_allow_networks="10.20.0.1/16")
    refusals = NotifierSettings(webhook_allow_networks="169.254.0.0/16,127.0.0.0/8,10.0.0.0/8").production_refusals()
    assert sum("RAPPORT_WEBHOOK_ALLOW_NETWORKS" in r for r in refusals) == 2


# ---------------------------------------------------------------- error classes, no contact data
ADDRESS, PHONE = "alex.doe@patients.test", "+447700900461"


@pytest.mark.parametrize("code,text,cls,retryable", [
    (550, f"5.1.1 <{ADDRESS}>: Recipient address rejected: User unknown", "recipient_refused", False),
    (452, f"4.2.2 <{ADDRESS}>: Mailbox full", "mailbox_full", True),
    (552, f"5.2.2 {ADDRESS} mailbox over quota", "mailbox_full", False),
    (550, f"{ADDRESS} mailbox unavailable", "mailbox_unavailable", False),
    (450, f"4.2.1 <{ADDRESS}> mailbox busy", "mailbox_unavailable", True),
    (553, f"<{ADDRESS}> not allowed", "recipient_refused", False),
    (554, f"5.7.1 <{ADDRESS}> relay denied", "rejected_by_policy", False),
    (451, f"<{ADDRESS}> try later", "recipient_deferred", True),
])
def test_smtp_refusals_are_classified_without_the_address(code, text, cls, retryable):
    err = channels.classify_smtp(aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(code, text, ADDRESS)]))
    assert (err.code, err.retryable) == (cls, retryable)
    assert err.stored.startswith(f"{cls}: smtp {code}") and ADDRESS not in err.stored and "@" not in repr(err.args)


def _caused(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize("exc,step,cls,retryable,maybe", [
    (aiosmtplib.SMTPSenderRefused(553, "5.1.8 bad sender notifications@x.test", "notifications@x.test"), "transaction",
     "sender_refused", False, False),
    (aiosmtplib.SMTPDataError(554, "5.6.0 message for alex@x.test refused"), "transaction", "message_refused", False, False),
    (aiosmtplib.SMTPDataError(451, "4.3.0 try again alex@x.test"), "transaction", "message_deferred", True, False),
    (aiosmtplib.SMTPAuthenticationError(535, "5.7.8 bad credentials for alex@x.test"), "auth", "auth_failed", False, False),
    (aiosmtplib.SMTPAuthenticationError(454, "4.7.0 temporary failure"), "auth", "auth_failed", True, False),
    (aiosmtplib.SMTPException("The SMTP AUTH extension is not supported by this server."), "auth", "auth_failed",
     False, False),
    (aiosmtplib.SMTPException("SMTP STARTTLS extension not supported by server."), "tls", "tls_failed", True, False),
    (aiosmtplib.SMTPResponseException(454, "4.7.0 TLS not available"), "tls", "tls_failed", True, False),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), "tls", "tls_failed", True, False),
    (_caused(aiosmtplib.SMTPConnectError("Error connecting to relay.x.test on port 465"),
             ssl.SSLCertVerificationError(1, "certificate verify failed")), "connect", "tls_failed", True, False),
    (aiosmtplib.SMTPServerDisconnected("Connection reset while upgrading transport"), "tls", "tls_failed", True, False),
    (_caused(aiosmtplib.SMTPConnectError("Error connecting"), ConnectionRefusedError(111, "refused")), "connect",
     "connection_failed", True, False),
    (_caused(aiosmtplib.SMTPConnectError("Error connecting"), socket.gaierror(-2, "unknown")), "connect",
     "server_unresolvable", True, False),
    (aiosmtplib.SMTPConnectTimeoutError("Timed out connecting"), "connect", "timeout", True, False),
    (aiosmtplib.SMTPConnectResponseError(421, "4.3.2 busy"), "connect", "server_unavailable", True, False),
    (aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"), "transaction", "timeout", True, True),
    (aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"), "auth", "timeout", True, False),
    (aiosmtplib.SMTPServerDisconnected("Connection lost"), "transaction", "connection_lost", True, True),
    (aiosmtplib.SMTPServerDisconnected("Connection lost"), "connect", "connection_lost", True, False),
    (aiosmtplib.SMTPResponseException(550, "5.1.1 alex@x.test unknown"), "transaction", "smtp_error", False, False),
    (asyncio.TimeoutError(), "transaction", "timeout", True, True),
    (ConnectionRefusedError(111, "refused"), "connect", "connection_failed", True, False),
])
def test_other_smtp_failures_are_classified(exc, step, cls, retryable, maybe):
    err = channels.classify_smtp(exc, step)
    assert (err.code, err.retryable, err.maybe_delivered) == (cls, retryable, maybe)
    assert "@" not in err.stored and "x.test" not in err.stored


@pytest.mark.parametrize("status,cls,retryable", [(400, "provider_rejected", False), (422, "provider_rejected", False),
                                                  (401, "auth_failed", False), (429, "provider_rate_limited", True),
                                                  (500, "provider_unavailable", True), (503, "provider_unavailable", True)])
def test_sms_provider_answers_are_classified(status, cls, retryable):
    err = channels.classify_sms_status(status)
    assert (err.code, err.detail, err.retryable) == (cls, f"http {status}", retryable)


@pytest.mark.parametrize("detail", [ADDRESS, PHONE, "447700900461", f"refused {ADDRESS}", "to 07700900461",
                                    "SMTPRecipientsRefused({'a@b.c': (550, b'x')})", "x" * 60])
def test_a_detail_that_is_not_a_code_is_dropped(detail):
    err = channels.SendError("recipient_refused", detail)
    assert err.stored == "recipient_refused" and err.detail == ""


def test_a_code_that_is_not_a_class_is_replaced():
    assert channels.SendError(f"refused {ADDRESS}").code == "unclassified"
