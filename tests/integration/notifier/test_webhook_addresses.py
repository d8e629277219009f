"""Webhooks that cannot reach inside (issue 17, item 5), at send time, through the real webhook
channel and sender: the host is resolved when sending and refused if any address is internal
(the delivery fails with ``webhook_refused_address``, nothing reaches the listener); an
allow-listed network is delivered; the connection goes to the address that was checked (one
lookup); a redirect is never followed."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import pytest

from rapport_notifier.adapters.channels import (PinnedBackend, WebhookAddressRefused, WebhookChannel,
                                                system_resolver)
from rapport_notifier.domain import rules
from rapport_notifier.service_layer import handlers
from rapport_testing.notifier import HttpSink
from rapport_testing.services import free_port

pytestmark = pytest.mark.integration

PARTNER = "hooks.partner.test"  # a name only the tests' resolver knows


class Listener:
    """A loopback HTTP listener on ``host``; ``redirect_to``: answer 302 with that Location."""

    def __init__(self, host: str = "127.0.0.1", redirect_to: str | None = None) -> None:
        self.requests: list[dict] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.requests.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(302 if redirect_to else 200)
                if redirect_to:
                    self.send_header("location", redirect_to)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer((host, free_port()), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Resolver:
    """The channel's resolver hook: ``answers[name]`` = successive answers (the last repeats);
    anything else through the system resolver. ``asked`` counts lookups per name."""

    def __init__(self, **answers: list[list[str]]) -> None:
        self.answers = {k.replace("_", "."): v for k, v in answers.items()}
        self.asked: dict[str, int] = {}

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked[host] = self.asked.get(host, 0) + 1
        if host in self.answers:
            seq = self.answers[host]
            return seq[min(self.asked[host], len(seq)) - 1]
        return await system_resolver(host, port)


async def deliver_to(h, url: str, channel: WebhookChannel) -> dict:
    """A partner subscription to ``url`` and one delivery to it through the sender."""
    sub = uuid.uuid4()
    await h.exec("INSERT INTO subscriptions (subscription_id, partner_id, url, secret, event_types, created_at,"
                 " effective_from, organisation_id) VALUES ($1, 'p-1', $2, $3, '{rapport.alert.raised.v1}', now(), now(),"
                 " 'org-test')", sub, url, rules.new_secret())
    h.channels["webhook"] = channel
    async with h.uow() as uow:
        await handlers.enqueue(uow, kind=rules.PARTNER_EVENT, cause_event_id=uuid.uuid4(), episode_id=uuid.uuid4(),
                               recipient_ref=f"partner:{sub}", params={"body": json.dumps({"id": "e"})},
                               channels=["webhook"])
    sender = h.sender()
    [row] = await sender.claim()
    await sender.deliver(row)
    return dict(await h.row("SELECT status, last_error, attempts FROM notifications WHERE notification_id = $1",
                            row["notification_id"]))


@pytest.fixture
def listener():
    made: list[Listener] = []

    def make(host: str = "127.0.0.1", redirect_to: str | None = None) -> Listener:
        made.append(Listener(host, redirect_to))
        return made[-1]
    yield make
    for one in made:
        one.close()


async def test_a_name_resolving_to_loopback_is_refused_at_send_time(h, listener):
    sink = listener()
    url = f"http://{PARTNER}:{sink.port}/hooks"
    assert rules.check_webhook_url(url, allow_http=True) == url  # a name: nothing to object to at subscription
    resolver = Resolver(hooks_partner_test=[["127.0.0.1"]])
    r = await deliver_to(h, url, WebhookChannel(2, allow_http=True, resolver=resolver))
    assert r == {"status": "failed", "last_error": "webhook_refused_address: loopback", "attempts": 1}
    assert sink.requests == []  # nothing reached the listener
    [ev] = await h.outbox_events("rapport.notification.failed.v1")
    assert ev["error_code"] == "webhook_refused_address"


async def test_localhost_and_numeric_forms_stored_earlier_are_refused_at_send_time(h, listener):
    """Rows from before the subscription-time check (or settings since changed): the real
    ``localhost`` and decimal/hex/short forms of 127.0.0.1, through the system resolver."""
    sink = listener()
    channel = WebhookChannel(2, allow_http=True)
    for host, why in (("localhost", "localhost"), ("2130706433", "loopback"), ("0x7f.1", "loopback"),
                      ("127.1", "loopback"), ("[::ffff:127.0.0.1]", "loopback")):
        r = await deliver_to(h, f"http://{host}:{sink.port}/h", channel)
        assert r["status"] == "failed" and r["last_error"] == f"webhook_refused_address: {why}", host
    assert sink.requests == []


async def test_the_check_is_on_resolved_addresses_even_for_numeric_names():
    """What getaddrinfo makes of ``2130706433`` (127.0.0.1) is refused by the connecting backend itself."""
    backend = PinnedBackend(system_resolver, ())
    for host in ("2130706433", "0x7f000001", "127.1", "localhost"):
        with pytest.raises(WebhookAddressRefused, match="loopback"):
            await backend.connect_tcp(host, 9)


async def test_one_internal_address_among_the_answers_refuses_the_name(h, listener):
    sink = listener()
    resolver = Resolver(hooks_partner_test=[["93.184.216.34", "127.0.0.1"]])
    r = await deliver_to(h, f"http://{PARTNER}:{sink.port}/h", WebhookChannel(2, allow_http=True, resolver=resolver))
    assert r["status"] == "failed" and r["last_error"] == "webhook_refused_address: loopback"
    resolver = Resolver(hooks_partner_test=[["169.254.169.254"]])
    r = await deliver_to(h, f"http://{PARTNER}:{sink.port}/h", WebhookChannel(2, allow_http=True, resolver=resolver))
    assert r["last_error"] == "webhook_refused_address: link_local"
    assert sink.requests == []


async def test_an_allow_listed_network_is_delivered_to_the_checked_address(h, listener):
    """The partner's network is allow-listed (here 127.0.0.2/32). The name is looked up ONCE and the
    connection made to that address with the URL's Host: a resolver that would answer an internal
    address on a second lookup (DNS rebinding) is never asked again."""
    sink = listener("127.0.0.2")
    resolver = Resolver(hooks_partner_test=[["127.0.0.2"], ["127.0.0.1"]])
    channel = WebhookChannel(2, allow_http=True, allow_networks=rules.parse_networks("127.0.0.2/32"), resolver=resolver)
    r = await deliver_to(h, f"http://{PARTNER}:{sink.port}/hooks", channel)
    assert r == {"status": "delivered", "last_error": None, "attempts": 1}
    [req] = sink.requests
    assert req["host"] == f"{PARTNER}:{sink.port}" and req["webhook-signature"].startswith("v1,")
    assert resolver.asked == {PARTNER: 1}
    # the same address outside the allow-list: refused
    r = await deliver_to(h, f"http://{PARTNER}:{sink.port}/hooks",
                         WebhookChannel(2, allow_http=True, resolver=Resolver(hooks_partner_test=[["127.0.0.2"]])))
    assert r["status"] == "failed" and len(sink.requests) == 1


async def test_a_redirect_to_a_loopback_address_is_not_followed(h, listener):
    target = listener("127.0.0.1")
    redirector = listener("127.0.0.2", redirect_to=f"http://127.0.0.1:{target.port}/inside")
    resolver = Resolver(hooks_partner_test=[["127.0.0.2"]])
    channel = WebhookChannel(2, allow_http=True, allow_networks=rules.parse_networks("127.0.0.2/32"), resolver=resolver)
    r = await deliver_to(h, f"http://{PARTNER}:{redirector.port}/hooks", channel)
    assert r == {"status": "ready", "last_error": "webhook_redirect_not_followed: http 302", "attempts": 1}
    assert len(redirector.requests) == 1 and target.requests == []


async def test_a_partner_answering_500_is_classified_and_retried(h, listener):
    sink = HttpSink("fail")
    try:
        channel = WebhookChannel(2, allow_http=True, allow_networks=rules.parse_networks("127.0.0.0/8"))
        r = await deliver_to(h, f"{sink.url}/h", channel)
        assert r == {"status": "ready", "last_error": "webhook_http_500", "attempts": 1}
    finally:
        sink.close()


async def test_https_is_verified_against_the_name_not_the_pinned_address(h, listener):
    """TLS goes to the checked address with SNI/certificate check for the URL's host name: a plain
    HTTP listener met over https fails the handshake (tls_failed), it is not reached over http."""
    sink = listener("127.0.0.2")
    resolver = Resolver(hooks_partner_test=[["127.0.0.2"]])
    channel = WebhookChannel(2, allow_networks=rules.parse_networks("127.0.0.2/32"), resolver=resolver)
    r = await deliver_to(h, f"https://{PARTNER}:{sink.port}/hooks", channel)
    assert (r["status"], r["last_error"]) == ("ready", "tls_failed")
    assert sink.requests == []


def test_the_backend_is_an_httpcore_network_backend():
    assert isinstance(PinnedBackend(system_resolver, ()), httpcore.AsyncNetworkBackend)
