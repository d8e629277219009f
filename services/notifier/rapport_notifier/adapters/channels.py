"""Delivery channels: email (SMTP), SMS (one provider HTTP API adapter), signed webhooks, log.

Every send carries the delivery's idempotency key to the outside world: email as the
``Message-ID`` (derived from the notification id) and an ``X-Rapport-Idempotency-Key`` header,
SMS as the provider's ``Idempotency-Key`` header, webhooks as ``webhook-id``. A channel raises
``SendError`` (``retryable`` or not); anything else is treated as retryable.

A channel may also answer "did the provider accept this message?" (``has_status_lookup`` and
``was_accepted``): the sender asks before re-sending a delivery that is *in doubt* (the process
died mid-send). Only email has one (``EMAIL_STATUS_URL``); SMS relies on the provider
deduplicating by ``Idempotency-Key`` and webhooks on receivers deduplicating by ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import smtplib
import time
from dataclasses import dataclass, field
from email.message import EmailMessage

import httpx

from rapport_shared.logging import get_logger

from ..domain.rules import sign

log = get_logger("rapport.notifier.channel")


class SendError(Exception):
    """``maybe_delivered``: the attempt broke off where the provider may already have accepted the
    message (e.g. the connection dropped during the SMTP transaction), unlike a definite refusal."""

    def __init__(self, code: str, detail: str = "", retryable: bool = True, maybe_delivered: bool = False) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail, self.retryable, self.maybe_delivered = code, detail, retryable, maybe_delivered


@dataclass
class Outgoing:
    notification_id: str
    idem_key: str
    address: str               # email address, E.164 number, webhook URL, or recipient ref (log)
    subject: str = ""
    body: str = ""
    secret: str = ""           # webhooks
    headers: dict[str, str] = field(default_factory=dict)


class LogChannel:
    name = "log"

    async def send(self, msg: Outgoing) -> None:
        log.info("notification sent", channel=self.name, notification_id=msg.notification_id,
                 recipient_ref=msg.address, subject=msg.subject)


class EmailChannel:
    """Plain SMTP (stdlib smtplib in a worker thread: one connection per message)."""

    name = "email"

    def __init__(self, host: str, port: int, sender: str, timeout_s: float, status_url: str = "",
                 status_token: str = "") -> None:
        self.host, self.port, self.sender, self.timeout_s = host, port, sender, timeout_s
        self.status_url, self.status_token = status_url, status_token

    @staticmethod
    def message_id(notification_id: str) -> str:
        return f"<{notification_id}@rapport.notifier>"

    @property
    def has_status_lookup(self) -> bool:
        return bool(self.status_url)

    async def was_accepted(self, notification_id: str) -> bool:
        """Ask the provider whether it accepted the message with this delivery's Message-ID.

        Contract (docs/notifier.md): ``GET {EMAIL_STATUS_URL}?message_id=<Message-ID, with its
        angle brackets>``, ``Authorization: Bearer <EMAIL_STATUS_TOKEN>`` when a token is set →
        ``200 {"accepted": true|false}``. Anything else (unreachable, timeout, another status, a
        body without a boolean ``accepted``) is a retryable ``SendError``: we do not know."""
        headers = {"Authorization": f"Bearer {self.status_token}"} if self.status_token else {}
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                r = await client.get(self.status_url, params={"message_id": self.message_id(notification_id)},
                                     headers=headers)
        except httpx.HTTPError as exc:
            raise SendError("status_lookup_unreachable", repr(exc)) from exc
        if r.status_code != 200:
            raise SendError("status_lookup_failed", f"HTTP {r.status_code}")
        try:
            accepted = r.json()["accepted"]
        except (ValueError, KeyError, TypeError):
            accepted = None
        if not isinstance(accepted, bool):
            raise SendError("status_lookup_failed", "answer without a boolean 'accepted'")
        return accepted

    def _send(self, m: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            smtp.send_message(m)

    async def send(self, msg: Outgoing) -> None:
        if not self.host:
            raise SendError("channel_unconfigured", "no SMTP host", retryable=False)
        m = EmailMessage()
        m["From"] = self.sender
        m["To"] = msg.address
        m["Subject"] = msg.subject
        m["Message-ID"] = self.message_id(msg.notification_id)
        m["X-Rapport-Idempotency-Key"] = msg.idem_key
        m["X-Rapport-Notification-Id"] = msg.notification_id
        m.set_content(msg.body)
        try:
            await asyncio.to_thread(self._send, m)
        except smtplib.SMTPRecipientsRefused as exc:
            raise SendError("recipient_refused", str(exc), retryable=False) from exc
        except smtplib.SMTPResponseException as exc:
            raise SendError("smtp_error", f"{exc.smtp_code}", retryable=500 > exc.smtp_code >= 400 or exc.smtp_code >= 500 and exc.smtp_code not in (550, 551, 553)) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError("smtp_unreachable", repr(exc), maybe_delivered=True) from exc


class SmsChannel:
    """The one SMS provider adapter: ``POST {base}/messages`` JSON ``{to, body, reference}``,
    ``Authorization: Bearer <token>``, ``Idempotency-Key: <key>``; 2xx = accepted. No status
    lookup: an in-doubt SMS is sent again with the same ``Idempotency-Key``, and the provider is
    relied on to deduplicate by it (exactly once only where it does)."""

    name = "sms"

    def __init__(self, base_url: str, token: str, timeout_s: float) -> None:
        self.base_url, self.token, self.timeout_s = base_url.rstrip("/"), token, timeout_s

    async def send(self, msg: Outgoing) -> None:
        if not self.base_url:
            raise SendError("channel_unconfigured", "no SMS provider", retryable=False)
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                r = await client.post(f"{self.base_url}/messages",
                                      json={"to": msg.address, "body": msg.body, "reference": msg.notification_id},
                                      headers={"Authorization": f"Bearer {self.token}", "Idempotency-Key": msg.idem_key})
        except httpx.HTTPError as exc:
            raise SendError("sms_unreachable", repr(exc)) from exc
        if r.status_code >= 300:
            raise SendError("sms_rejected", f"HTTP {r.status_code}", retryable=r.status_code >= 500 or r.status_code == 429)


class WebhookChannel:
    """Standard Webhooks: ``webhook-id`` (the notification id, the same on every retry),
    ``webhook-timestamp`` (this attempt, unix seconds), ``webhook-signature`` (``v1,<base64 HMAC>``)."""

    name = "webhook"

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    async def send(self, msg: Outgoing) -> None:
        body = msg.body.encode()
        ts = int(time.time())
        headers = {"content-type": "application/json", "webhook-id": msg.notification_id,
                   "webhook-timestamp": str(ts), "webhook-signature": sign(msg.secret, msg.notification_id, ts, body)}
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as client:
                r = await client.post(msg.address, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise SendError("webhook_unreachable", repr(exc)) from exc
        if not 200 <= r.status_code < 300:
            raise SendError("webhook_rejected", f"HTTP {r.status_code}")
