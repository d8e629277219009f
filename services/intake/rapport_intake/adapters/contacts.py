"""Contact details (personal data) in intake's schema, and the queue that publishes them to the
private contacts topic: ``ContactRepository`` is what handlers use (``uow.contacts``),
``PublicationQueue`` adds what only the contacts relay does (its queue, the person keys)."""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg

from rapport_shared.db import ident
from rapport_shared.private_contacts import ContactRecordV1, ErasureNotice, WrappedKey


def notify_channel(schema: str) -> str:
    return f"{ident(schema)}_contacts"


def _record(row) -> ContactRecordV1:
    return ContactRecordV1(
        person_id=row["person_id"], name=row["name"], email=row["email"], phone=row["phone"],
        channel_consent=json.loads(row["channel_consent"]), preferred_channel=row["preferred_channel"],
        quiet_hours=json.loads(row["quiet_hours"]) if row["quiet_hours"] else None, language=row["language"],
        updated_at=row["updated_at"],
    )


def _wrapped(row) -> WrappedKey:
    return WrappedKey(row["person_id"], row["dek_id"], row["master_kid"], bytes(row["wrapped_key"]))


class ContactRepository:
    """Contacts on one connection; ``schema`` names the channel that wakes the contacts relay."""

    def __init__(self, conn: asyncpg.Connection, schema: str) -> None:
        self.conn = conn
        self.schema = ident(schema)
        self.channel = notify_channel(schema)

    async def get(self, person_id: str) -> ContactRecordV1 | None:
        row = await self.conn.fetchrow("SELECT * FROM contacts WHERE person_id = $1", person_id)
        return _record(row) if row else None

    async def get_many(self, person_ids: list[str]) -> dict[str, ContactRecordV1]:
        rows = await self.conn.fetch("SELECT * FROM contacts WHERE person_id = ANY($1::text[])", person_ids)
        return {r["person_id"]: _record(r) for r in rows}

    async def upsert(self, c: ContactRecordV1, by: str) -> None:
        await self.conn.execute(
            "INSERT INTO contacts (person_id, name, email, phone, channel_consent, preferred_channel, quiet_hours,"
            " updated_by, updated_at, language) VALUES ($1,$2,$3,$4,$5::jsonb,$6,$7::jsonb,$8,$9,$10)"
            " ON CONFLICT (person_id) DO UPDATE SET name=EXCLUDED.name, email=EXCLUDED.email, phone=EXCLUDED.phone,"
            " channel_consent=EXCLUDED.channel_consent, preferred_channel=EXCLUDED.preferred_channel,"
            " quiet_hours=EXCLUDED.quiet_hours, updated_by=EXCLUDED.updated_by, updated_at=EXCLUDED.updated_at,"
            " language=EXCLUDED.language",
            c.person_id, c.name, c.email, c.phone, json.dumps({k.value: v for k, v in c.channel_consent.items()}),
            c.preferred_channel.value if c.preferred_channel else None,
            c.quiet_hours.model_dump_json() if c.quiet_hours else None, by, c.updated_at, c.language,
        )

    async def delete(self, person_id: str) -> bool:
        return (await self.conn.execute("DELETE FROM contacts WHERE person_id = $1", person_id)) != "DELETE 0"

    async def queue_publication(self, person_id: str) -> None:
        """In the caller's transaction: publish this person's current contact state (or a tombstone)."""
        await self.conn.execute("INSERT INTO contact_publications (person_id) VALUES ($1)", person_id)
        await self.conn.execute("SELECT pg_notify($1, '')", self.channel)

    async def queue_all(self) -> int:
        """Republish every stored contact (after a key rotation)."""
        status = await self.conn.execute("INSERT INTO contact_publications (person_id) SELECT person_id FROM contacts")
        await self.conn.execute("SELECT pg_notify($1, '')", self.channel)
        return int(status.split()[-1])

    async def record_erasure(self, person_id: str, by: str, at: datetime, referrals: int, contact: bool,
                             organisation_id: str | None = None) -> None:
        """The erasure's row; the contacts relay publishes it as a notice on ``rapport.erasures``."""
        await self.conn.execute(
            "INSERT INTO erasures (person_id, erased_by, erased_at, referrals, contact, organisation_id)"
            " VALUES ($1,$2,$3,$4,$5,$6)",
            person_id, by, at, referrals, contact, organisation_id,
        )

    async def destroy_keys(self, person_id: str, at: datetime | None = None) -> int:
        """Crypto-shredding (docs/privacy.md): forget the person's data key (the row stays, without
        key material). Returns how many live keys were destroyed."""
        status = await self.conn.execute(
            "UPDATE person_keys SET wrapped_key = NULL, master_kid = NULL, destroyed_at = coalesce($2, now())"
            " WHERE person_id = $1 AND destroyed_at IS NULL", person_id, at)
        return int(status.split()[-1])


class PublicationQueue(ContactRepository):
    """What the contacts relay reads and marks: the queue, the erasures to announce, the
    per-person data keys (stored only wrapped by a master key)."""

    async def lock(self) -> bool:
        """One relay at a time per schema (keeps each person's records in queue order); False when
        another holds it. Held until the transaction ends."""
        return bool(await self.conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))",
                                             f"{self.schema}.contact_publications"))

    async def pending(self, limit: int) -> list[tuple[int, str]]:
        """Queued publications (seq, person id), oldest first, locked for this transaction."""
        rows = await self.conn.fetch(
            "SELECT seq, person_id FROM contact_publications ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED", limit)
        return [(r["seq"], r["person_id"]) for r in rows]

    async def done(self, seqs: list[int]) -> None:
        await self.conn.execute("DELETE FROM contact_publications WHERE seq = ANY($1::bigint[])", seqs)

    async def unpublished_erasures(self, limit: int) -> list[tuple[int, ErasureNotice]]:
        rows = await self.conn.fetch(
            "SELECT erasure_id, person_id, organisation_id, erased_at FROM erasures WHERE published_at IS NULL"
            " ORDER BY erasure_id LIMIT $1 FOR UPDATE SKIP LOCKED", limit)
        return [(r["erasure_id"], ErasureNotice(r["person_id"], r["organisation_id"], r["erased_at"])) for r in rows]

    async def mark_erasures_published(self, erasure_ids: list[int]) -> None:
        await self.conn.execute("UPDATE erasures SET published_at = now() WHERE erasure_id = ANY($1::bigint[])",
                                erasure_ids)

    async def live_key(self, person_id: str) -> WrappedKey | None:
        """The person's live data key (wrapped), locked for the caller's transaction."""
        row = await self.conn.fetchrow(
            "SELECT * FROM person_keys WHERE person_id = $1 AND destroyed_at IS NULL FOR UPDATE", person_id)
        return _wrapped(row) if row else None

    async def insert_key(self, key: WrappedKey) -> None:
        await self.conn.execute("INSERT INTO person_keys (dek_id, person_id, master_kid, wrapped_key, created_at)"
                                " VALUES ($1,$2,$3,$4,now())", key.dek_id, key.person_id, key.kid, key.wrapped)

    async def rewrap_key(self, key: WrappedKey) -> None:
        """After a master key rotation: the same data key, wrapped by the active master key."""
        await self.conn.execute("UPDATE person_keys SET master_kid = $2, wrapped_key = $3, rewrapped_at = now()"
                                " WHERE dek_id = $1 AND destroyed_at IS NULL", key.dek_id, key.kid, key.wrapped)
