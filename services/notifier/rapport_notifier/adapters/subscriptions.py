"""Partner webhook subscriptions."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from .repository import as_dict

# A partner's own subscriptions: its partner id and organisation (rows from before organisations:
# the partner id alone, so they can still be listed and removed; they receive no event).
_OWN_SUB = "(organisation_id = $2::text OR organisation_id IS NULL)"


class SubscriptionRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def matching(self, event_type: str, at: datetime, org: str, default: str | None) -> list[uuid.UUID]:
        """The live subscriptions of organisation ``org`` to ``event_type`` that existed at ``at``."""
        rows = await self.conn.fetch(
            "SELECT subscription_id FROM subscriptions WHERE deleted_at IS NULL AND $1 = ANY(event_types)"
            " AND (effective_from IS NULL OR effective_from <= $2) AND COALESCE(organisation_id, $3::text) = $4"
            " ORDER BY subscription_id", event_type, at, default, org)
        return [r["subscription_id"] for r in rows]

    async def of_organisation(self, org: str, at: datetime, default: str | None) -> list[uuid.UUID]:
        """Every live subscription of organisation ``org`` that existed at ``at``, whatever its event
        types (the organisation's endpoints: where its referrer summaries go)."""
        rows = await self.conn.fetch(
            "SELECT subscription_id FROM subscriptions WHERE deleted_at IS NULL"
            " AND (effective_from IS NULL OR effective_from <= $1) AND COALESCE(organisation_id, $2::text) = $3"
            " ORDER BY subscription_id", at, default, org)
        return [r["subscription_id"] for r in rows]

    async def get(self, subscription_id: uuid.UUID) -> dict | None:
        return as_dict(await self.conn.fetchrow("SELECT * FROM subscriptions WHERE subscription_id = $1",
                                                subscription_id))

    async def add(self, *, partner_id: str, url: str, secret: str, event_types: list[str], effective_from: datetime,
                  organisation_id: str) -> dict:
        return as_dict(await self.conn.fetchrow(
            "INSERT INTO subscriptions (subscription_id, partner_id, url, secret, event_types, created_at, effective_from,"
            " organisation_id) VALUES ($1,$2,$3,$4,$5,now(),$6,$7) RETURNING *", uuid.uuid4(), partner_id, url, secret,
            event_types, effective_from, organisation_id))

    async def of_partner(self, partner_id: str, org: str | None) -> list[dict]:
        rows = await self.conn.fetch("SELECT * FROM subscriptions WHERE partner_id = $1 AND deleted_at IS NULL"
                                     f" AND {_OWN_SUB} ORDER BY created_at", partner_id, org)
        return [as_dict(r) for r in rows]

    async def delete(self, subscription_id: uuid.UUID, partner_id: str, org: str | None) -> bool:
        """False when no such live subscription is the partner's."""
        return bool(await self.conn.fetchrow(
            "UPDATE subscriptions SET deleted_at = now() WHERE subscription_id = $1 AND partner_id = $2"
            f" AND deleted_at IS NULL AND {_OWN_SUB.replace('$2', '$3')} RETURNING *", subscription_id, partner_id, org))
