"""No contact data in errors, logs or the delivery log (issue 17, item 2).

The notifier's real channels against loopback servers that fail the way real ones do, each
quoting the contact value in its answer as real servers do: an SMTP server that refuses the
recipient (550 5.1.1 <address>), answers 452 mailbox full, or hangs past the timeout; an SMS
provider answering 400 (echoing the number) and 503; a webhook answering 500. Then every table of
the notifier's schema (but the contact stores themselves), ``GET /v1/deliveries`` and the JSON log
lines are scanned for the contact values given: none may appear. After the erasure of the person
the contact stores are scanned too, and the deliveries' errors are bare classes."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid

import pytest
import structlog
from aiosmtpd.controller import Controller

from rapport_notifier.adapters.channels import EmailChannel, SmsChannel, WebhookChannel
from rapport_notifier.domain import rules
from rapport_notifier.service_layer import handlers
from rapport_testing.notifier import HttpSink
from rapport_testing.services import free_port

pytestmark = pytest.mark.integration

ADDRESS, PHONE = "alex.doe+scan@patients.test", "+447700900461"
CLIN_ADDRESS, CLIN_PHONE = "dr.rivera.scan@clinic.test", "+447700900733"
SECRETS = [ADDRESS, "alex.doe", "patients.test", PHONE, PHONE[1:], PHONE[3:], "7700 900461",
           CLIN_ADDRESS, "dr.rivera", CLIN_PHONE, CLIN_PHONE[3:]]
CONTACT_STORES = {"patients", "clinicians", "contact_keys", "contact_pending"}  # hold them by design


class Smtp:
    """aiosmtpd on loopback; ``mode``: refuse (550 5.1.1 quoting the address), full (452 4.2.2
    quoting it), hang (DATA never answered), ok."""

    def __init__(self) -> None:
        self.mode, self.accepted = "ok", []
        outer = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
                if outer.mode == "refuse":
                    return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"
                if outer.mode == "full":
                    return f"452 4.2.2 <{address}>: Mailbox full, quota exceeded for {address}"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):  # noqa: N802
                if outer.mode == "hang":
                    await asyncio.sleep(3)
                outer.accepted.append(envelope.rcpt_tos)
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


class EchoingProvider(HttpSink):
    """An SMS provider that refuses with ``code`` and quotes the request (the number) in its answer."""

    code = 400

    def accept(self, path, headers, body):
        return self.code, json.dumps({"error": "invalid destination", "request": json.loads(body)}).encode()


@pytest.fixture
def servers():
    smtp, sms, hook = Smtp(), EchoingProvider(), HttpSink("fail")
    yield smtp, sms, hook
    smtp.stop()
    sms.close()
    hook.close()


@pytest.fixture
def json_logs():
    """The notifier's structlog output as JSON lines (as in production), and stdlib log records."""
    buf, saved = io.StringIO(), structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                                    structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
                        logger_factory=structlog.PrintLoggerFactory(file=buf), cache_logger_on_first_use=False)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)
    keep = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(keep)
    try:
        yield lambda: buf.getvalue() + "\n".join(
            r.getMessage() + " " + str(r.args) for r in records if not r.name.startswith("mail.log"))  # (the test server's own log)
    finally:
        root.removeHandler(keep)
        structlog.configure(**saved)


async def scan_tables(h, *, skip=frozenset()) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    tables = [r["table_name"] for r in await h.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE'", h.schema)]
    assert {"notifications", "outbox", "timers", "subscriptions"} <= set(tables)
    for t in tables:
        if t in skip:
            continue
        dump = await h.val(f'SELECT coalesce(string_agg(x::text, chr(10)), \'\') FROM "{h.schema}"."{t}" x') or ""
        hits = [s for s in SECRETS if s.lower() in dump.lower()]
        if hits:
            found[t] = hits
    return found


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s.lower() in text.lower()]


async def test_failure_paths_leave_no_contact_data_in_rows_logs_or_the_delivery_log(make_harness, api, servers,
                                                                                    json_logs):
    smtp, sms, hook = servers
    h = make_harness(send_timeout_s=2)
    h.channels.update(email=EmailChannel("127.0.0.1", smtp.port, "notifications@rapport.test", timeout_s=0.5),
                      sms=SmsChannel(sms.url, "sms-token", 2),
                      webhook=WebhookChannel(2, allow_http=True, allow_networks=rules.parse_networks("127.0.0.0/8")))
    ep = uuid.uuid4()
    await h.exec("INSERT INTO episodes (episode_id, person_id, clinician_id, organisation_id)"
                 " VALUES ($1, 'P-scan', 'c-scan', 'org-test')", ep)
    await h.exec("INSERT INTO patients (person_id, email, phone, channel_consent, updated_at)"
                 " VALUES ('P-scan', $1, $2, '{\"email\": true, \"sms\": true}', now())", ADDRESS, PHONE)
    await h.exec("INSERT INTO clinicians (clinician_id, email, phone, language, channels, updated_at)"
                 " VALUES ('c-scan', $1, $2, 'en', '{email,sms}', now())", CLIN_ADDRESS, CLIN_PHONE)
    sub = uuid.uuid4()
    await h.exec("INSERT INTO subscriptions (subscription_id, partner_id, url, secret, event_types, created_at,"
                 " effective_from, organisation_id) VALUES ($1, 'p-1', $2, $3, '{rapport.alert.raised.v1}', now(), now(),"
                 " 'org-test')", sub, f"{hook.url}/hooks", rules.new_secret())
    sender = h.sender()

    async def attempt(recipient: str, channel: str, *, email_mode: str = "ok", sms_code: int = 400,
                      kind: str = rules.REVIEW_NOTICE) -> dict:
        smtp.mode, EchoingProvider.code = email_mode, sms_code
        params = ({"body": json.dumps({"id": "x"})} if channel == "webhook"
                  else {"episode_id": str(ep), "reason": "r", "session_number": 1})
        async with h.uow() as uow:
            await handlers.enqueue(uow, kind=kind, cause_event_id=uuid.uuid4(), episode_id=ep,
                                   recipient_ref=recipient, params=params, channels=[channel])
        [row] = await sender.claim()
        await sender.deliver(row)
        return dict(await h.row("SELECT status, last_error FROM notifications WHERE notification_id = $1",
                                row["notification_id"]))

    outcomes = {
        "refused": await attempt("patient:P-scan", "email", email_mode="refuse"),
        "full": await attempt("patient:P-scan", "email", email_mode="full"),
        "hang": await attempt("patient:P-scan", "email", email_mode="hang"),
        "sms_400": await attempt("patient:P-scan", "sms", sms_code=400),
        "sms_503": await attempt("patient:P-scan", "sms", sms_code=503),
        "clin_refused": await attempt("clinician:c-scan", "email", email_mode="refuse"),
        "clin_sms": await attempt("clinician:c-scan", "sms", sms_code=422),
        "webhook": await attempt(f"partner:{sub}", "webhook", kind=rules.PARTNER_EVENT),
    }
    assert outcomes == {
        "refused": {"status": "failed", "last_error": "recipient_refused: smtp 550 5.1.1"},
        "full": {"status": "ready", "last_error": "mailbox_full: smtp 452 4.2.2"},
        "hang": {"status": "ready", "last_error": "timeout"},
        "sms_400": {"status": "failed", "last_error": "provider_rejected: http 400"},
        "sms_503": {"status": "ready", "last_error": "provider_unavailable: http 503"},
        "clin_refused": {"status": "failed", "last_error": "recipient_refused: smtp 550 5.1.1"},
        "clin_sms": {"status": "failed", "last_error": "provider_rejected: http 422"},
        "webhook": {"status": "ready", "last_error": "webhook_http_500"},
    }
    assert sms.requests and any(PHONE.encode() in b for _, _, b in sms.requests)  # the number did go out, and back
    # The retryable ones give up after RETRY_FOR_S: failed for good (logged at error, failed event).
    await h.exec("UPDATE notifications SET first_attempt_at = now() - interval '2 hours', next_attempt_at = now()"
                 " WHERE status = 'ready'")
    smtp.mode, EchoingProvider.code = "full", 503  # (the row that timed out now meets a full mailbox)
    for row in await sender.claim():
        await sender.deliver(row)
    rows = await h.fetch("SELECT status, last_error FROM notifications")
    assert {r["status"] for r in rows} == {"failed"} and len(rows) == 8
    failed_events = await h.outbox_events("rapport.notification.failed.v1")
    assert sorted(e["error_code"] for e in failed_events) == sorted(
        ["recipient_refused", "mailbox_full", "mailbox_full", "provider_rejected", "provider_unavailable",
         "recipient_refused", "provider_rejected", "webhook_http_500"])

    # Rows: every table of the schema but the contact stores.
    assert await scan_tables(h, skip=CONTACT_STORES) == {}
    # The delivery log, as a clinic's admin reads it.
    r = await api.call("admin-1", "admin", "GET", "/v1/deliveries")
    assert r.status_code == 200 and len(r.json()["deliveries"]) == 8
    assert leaks(r.text) == []
    assert {d["error"] for d in r.json()["deliveries"]} >= {"recipient_refused: smtp 550 5.1.1", "mailbox_full: smtp 452 4.2.2"}
    # The logs (JSON lines, as in production): the failures were logged, without the values.
    logs = json_logs()
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert sum(line["event"] == "delivery failed for good" for line in lines) == 8
    assert {"mailbox_full: smtp 452 4.2.2", "timeout", "webhook_http_500"} <= {line.get("error") for line in lines}
    assert leaks(logs) == []

    # Erasure of the person (and of the clinician): the errors of their deliveries become bare
    # classes, and nothing anywhere holds their contact values.
    assert (await api.call("admin-1", "admin", "DELETE", "/v1/patients/P-scan")).json()["erased"] is True
    assert (await api.call("admin-1", "admin", "DELETE", "/v1/clinicians/c-scan")).json()["erased"] is True
    errors = {r["recipient_ref"]: set() for r in await h.fetch("SELECT recipient_ref FROM notifications")}
    for r in await h.fetch("SELECT recipient_ref, last_error FROM notifications"):
        errors[r["recipient_ref"]].add(r["last_error"])
    assert errors["patient:P-scan"] == {"recipient_refused", "mailbox_full", "provider_rejected", "provider_unavailable"}
    assert errors["clinician:c-scan"] == {"recipient_refused", "provider_rejected"}
    assert errors[f"partner:{sub}"] == {"webhook_http_500"}  # not the person's
    assert await scan_tables(h) == {}


async def test_erasure_over_the_contacts_topic_strips_errors_too(h):
    """The tombstone reader deletes the patients row (adapters/contacts.py); the trigger of
    migration 0008 strips that person's delivery errors in the same transaction."""
    await h.exec("INSERT INTO patients (person_id, email, channel_consent, updated_at)"
                 " VALUES ('P-t', 'p.t@x.test', '{\"email\": true}', now())")
    for n, err in enumerate(["mailbox_full: smtp 452 4.2.2", "timeout", None]):
        key = f"c{n}/patient:P-t/email/review_notice"
        await h.exec("INSERT INTO notifications (notification_id, idem_key, cause_event_id, episode_id, kind,"
                     " recipient_ref, channel, language, params, status, created_at, last_error)"
                     " VALUES ($1, $2, $3, $3, 'review_notice', 'patient:P-t', 'email', 'en', '{}', 'failed', now(), $4)",
                     rules.notification_id(key), key, uuid.uuid4(), err)
    await h.exec("DELETE FROM patients WHERE person_id = 'P-t'")  # what the tombstone does
    assert sorted(await h.fetch("SELECT last_error FROM notifications"), key=str) == sorted(
        [("mailbox_full",), ("timeout",), (None,)], key=str)


@pytest.mark.parametrize("old,new", [
    ("recipient_refused: {'alex@x.test': (550, b'5.1.1 <alex@x.test>: Recipient address rejected')}",
     "recipient_refused"),
    ("smtp_unreachable: SMTPServerDisconnected('Connection unexpectedly closed')", "connection_failed"),
    ("sms_unreachable: ConnectError('[Errno 111] Connection refused')", "connection_failed"),
    ("sms_rejected: HTTP 400", "provider_rejected: http 400"), ("sms_rejected: HTTP 503", "provider_unavailable: http 503"),
    ("sms_rejected: HTTP 429", "provider_rate_limited: http 429"), ("sms_rejected: HTTP 401", "auth_failed: http 401"),
    ("webhook_rejected: HTTP 500", "webhook_http_500"), ("smtp_error: 451", "smtp_error: smtp 451"),
    ("webhook_unreachable: ConnectTimeout('')", "connection_failed"), ("timeout: TimeoutError()", "timeout"),
    ("error: KeyError('alex@x.test')", "internal_error"), ("no_contact_or_consent: ", "no_contact_or_consent"),
    ("no_channel", "no_channel"), ("alert_resolved", "alert_resolved"),
    ("status_lookup_failed: HTTP 503", "status_lookup_failed: http 503"),
    ("<alex@x.test>: refused", "unclassified"), ("+447700900461 refused", "unclassified"), (None, None),
])
async def test_the_migration_rewrites_old_errors_to_their_class(h, old, new):
    """Migration 0008 rewrote every existing ``last_error`` with ``error_class``."""
    assert await h.val("SELECT error_class($1)", old) == new
