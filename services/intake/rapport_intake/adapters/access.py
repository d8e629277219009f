"""What the access policy (rapport_shared.http.access) needs to know of a referral."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from rapport_shared.http.access import RecordScope

from .repository import ReferralRepository


def episode_resolver(default_organisation: str | None = None):
    """The access policy's resolver for ``{episode_id}`` (rapport_shared.http.access): the
    referral's organisation, person and clinicians (intake and treating), or None for a missing
    referral or a malformed id — both then answer the same 404."""
    async def resolve(conn: asyncpg.Connection, value: str) -> RecordScope | None:
        try:
            episode_id = UUID(value)
        except ValueError:
            return None
        row = await ReferralRepository(conn).scope(episode_id)
        if row is None:
            return None
        return RecordScope(organisation_id=row["organisation_id"] or default_organisation, person_id=row["person_id"],
                           assigned=frozenset(c for c in (row["intake_clinician_id"], row["clinician_id"]) if c))

    return resolve
