"""Webhook signature verification for a partner's receiver: the notifier signs each delivery the
Standard Webhooks way (``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64
HMAC-SHA256>``, secret ``whsec_<base64>``; docs/notifier.md), so this delegates to the reference
implementation, ``standardwebhooks``, rather than re-implementing the HMAC."""

from __future__ import annotations

from typing import Any, Mapping

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

__all__ = ["WebhookVerificationError", "verify"]


def verify(secret: str, headers: Mapping[str, str], body: bytes | str) -> Any:
    """The delivery's JSON body once its signature and timestamp (five minutes' tolerance) check
    out; raises ``WebhookVerificationError`` otherwise."""
    return Webhook(secret).verify(body, dict(headers))
