"""Delivery channels. The log channel writes a structured log line: the walking skeleton's
stand-in for email/SMS/webhooks, and what development uses."""

from __future__ import annotations

from rapport_shared.logging import get_logger

log = get_logger("rapport.notifier.channel")


class LogChannel:
    name = "log"

    async def send(self, *, notification_id: str, recipient_ref: str, kind: str, params: dict) -> None:
        log.info("notification sent", channel=self.name, notification_id=notification_id,
                 recipient_ref=recipient_ref, kind=kind, **params)
