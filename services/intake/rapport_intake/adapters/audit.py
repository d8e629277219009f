"""The append-only audit log: who read or changed which referral, when (coded facts only)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from ..domain.commands import Actor

__all__ = ["Actor", "AuditLog"]


class AuditLog:
    """``uow.audit``: entries written in the transaction of what they record."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def record(self, *, at: datetime, actor: Actor, action: str, episode_id: UUID | None = None,
                     person_id: str | None = None, **detail: Any) -> None:
        await self.conn.execute(
            "INSERT INTO audit_log (at, actor, actor_roles, action, episode_id, person_id, detail, actor_org)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)",
            at, actor.sub, list(actor.roles), action, episode_id, person_id, json.dumps(detail, default=str), actor.org,
        )

    async def query(self, *, organisation_id: str | None, episode_id: UUID | None = None,
                    person_id: str | None = None, actor: str | None = None, action: str | None = None,
                    since: datetime | None = None, after_seq: int = 0, limit: int = 100,
                    default_organisation: str | None = None) -> list[dict[str, Any]]:
        """Entries of one organisation's trail: on its referrals, or by a caller acting for it.
        ``organisation_id`` None (a caller of no organisation) reaches no entry."""
        if organisation_id is None:
            return []
        rows = await self.conn.fetch(
            "SELECT seq, at, actor, actor_roles, action, episode_id, person_id, detail FROM audit_log a"
            " WHERE seq > $1 AND ($2::uuid IS NULL OR episode_id = $2) AND ($3::text IS NULL OR person_id = $3)"
            " AND ($4::text IS NULL OR actor = $4) AND ($5::text IS NULL OR action = $5)"
            " AND ($6::timestamptz IS NULL OR at >= $6)"
            " AND (a.actor_org = $8 OR EXISTS (SELECT 1 FROM referrals r WHERE r.episode_id = a.episode_id"
            "      AND COALESCE(r.organisation_id, $9) = $8))"
            " ORDER BY seq LIMIT $7",
            after_seq, episode_id, person_id, actor, action, since, limit, organisation_id, default_organisation,
        )
        return [
            {"seq": r["seq"], "at": r["at"].isoformat(), "actor": r["actor"], "actor_roles": list(r["actor_roles"]),
             "action": r["action"], "episode_id": str(r["episode_id"]) if r["episode_id"] else None,
             "person_id": r["person_id"], "detail": json.loads(r["detail"])}
            for r in rows
        ]
