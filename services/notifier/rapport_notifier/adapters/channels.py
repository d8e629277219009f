"""Delivery channels: email (SMTP), SMS (one provider HTTP API adapter), signed webhooks, log.

Every send carries the delivery's idempotency key to the outside world: email as the
``Message-ID`` (derived from the notification id) and an ``X-Rapport-Idempotency-Key`` header,
SMS as the provider's ``Idempotency-Key`` header, webhooks as ``webhook-id``. A channel raises
``SendError`` (``retryable`` or not); anything else is treated as retryable.
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
    def __init__(self, code: str, detail: str = "", retryable: bool = True) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail, self.retryable = code, detail, retryable


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

    def __init__(self, host: str, port: int, sender: str, timeout_s: float) -> None:
        self.host, self.port, self.sender, self.timeout_s = host, port, sender, timeout_s

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
        m["Message-ID"] = f"<{msg.notification_id}@rapport.notifier>"
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
            raise SendError("smtp_unreachable", repr(exc)) from exc


class SmsChannel:
    """The one SMS provider adapter: ``POST {base}/messages`` JSON ``{to, body, reference}``,
    ``Authorization: Bearer <token>``, ``Idempotency-Key: <key>``; 2xx = accepted."""

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
