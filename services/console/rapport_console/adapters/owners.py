"""The owning services' HTTP APIs, called with the signed-in clinician's own token.

The console records no clinical fact of its own: acknowledging an alert is the notifier's
(``POST /v1/alerts/{id}/acknowledge``: stops the escalation to on-call), resolving it is
outcomes' (``POST /v1/alerts/{id}/resolve``). Each service checks the caller against its own
access policy and audits the attempt; their refusals come back as the console's domain errors.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx

from rapport_shared.errors import Conflict, DomainError, Forbidden, Invalid, NotFound


class OwnerUnavailable(DomainError):
    """The owning service did not answer (or failed): nothing was changed by the console."""


def _refusal(service: str, r: httpx.Response) -> DomainError:
    try:
        body = r.json()
    except ValueError:
        body = {}
    detail = body.get("detail") if isinstance(body.get("detail"), str) else f"{service} answered {r.status_code}"
    field = body.get("field")
    if r.status_code == 404:
        return NotFound(detail, field=field or "alert_id")
    if r.status_code == 409:
        return Conflict(detail, field=field)
    if r.status_code == 422:
        return Invalid(detail, field=field)
    if r.status_code in (401, 403):
        return Forbidden(f"{service} refused: {detail}", field=field)
    return OwnerUnavailable(f"{service} answered {r.status_code}")


class OwnerServices:
    """``acknowledge`` → notifier, ``resolve`` → outcomes (a new connection per call: the few
    actions a clinician takes do not need a pool, and no state outlives the request)."""

    def __init__(self, *, outcomes_url: str, notifier_url: str, timeout_s: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.outcomes_url = outcomes_url.rstrip("/")
        self.notifier_url = notifier_url.rstrip("/")
        self.timeout_s = timeout_s
        self.transport = transport  # tests: an httpx.MockTransport

    async def _post(self, service: str, url: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s, transport=self.transport) as client:
                r = await client.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise OwnerUnavailable(f"{service} is unreachable ({type(exc).__name__})") from None
        if r.status_code != 200:
            raise _refusal(service, r)
        return r.json()

    async def acknowledge(self, alert_id: UUID, token: str) -> dict[str, Any]:
        """``{"acknowledged_at", "acknowledged_by", "escalated"}`` from the notifier."""
        return await self._post("notifier", f"{self.notifier_url}/v1/alerts/{alert_id}/acknowledge", token, {})

    async def resolve(self, alert_id: UUID, token: str, *, action: str, action_text: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"action": action}
        if action_text:
            body["action_text"] = action_text
        return await self._post("outcomes", f"{self.outcomes_url}/v1/alerts/{alert_id}/resolve", token, body)
