"""Clinicians (contact channels, working hours) and the on-call rota, as admins set them over HTTP."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import asyncpg

from .repository import as_dict, decoded


class ClinicianRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def get(self, clinician_id: str) -> dict | None:
        return as_dict(await self.conn.fetchrow("SELECT * FROM clinicians WHERE clinician_id = $1", clinician_id),
                       "working_hours")

    async def working_hours(self, clinician_id: str) -> dict | None:
        """The clinician's working hours as stored (JSON), None when none are configured."""
        return decoded(await self.conn.fetchval("SELECT working_hours FROM clinicians WHERE clinician_id = $1",
                                                clinician_id))

    async def lock(self, clinician_id: str) -> None:
        """Serialise writers of one clinician id until the transaction ends."""
        await self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('notifier.clinician:' || $1))", clinician_id)

    async def organisations(self, clinician_id: str, default: str | None) -> set[str]:
        """The organisation(s) a clinician belongs to here: the one that registered it (a row from
        before organisations: the default organisation), else those of the episodes it treats.
        Empty: known to no organisation (any organisation's admin may register it)."""
        row = await self.conn.fetchrow("SELECT organisation_id FROM clinicians WHERE clinician_id = $1", clinician_id)
        if row is not None and (row["organisation_id"] or default):
            return {row["organisation_id"] or default}
        rows = await self.conn.fetch("SELECT DISTINCT COALESCE(organisation_id, $2::text) AS org FROM episodes"
                                     " WHERE clinician_id = $1", clinician_id, default)
        return {r["org"] for r in rows if r["org"]}

    async def put(self, *, clinician_id: str, email: str | None, phone: str | None, language: str,
                  channels: list[str], working_hours: dict | None, organisation_id: str) -> None:
        hours = json.dumps(working_hours) if working_hours is not None else None
        await self.conn.execute(
            "INSERT INTO clinicians (clinician_id, email, phone, language, channels, working_hours, updated_at,"
            " organisation_id) VALUES ($1,$2,$3,$4,$5,$6::jsonb,now(),$7) ON CONFLICT (clinician_id) DO UPDATE SET"
            " email=$2, phone=$3, language=$4, channels=$5, working_hours=$6::jsonb, updated_at=now(), organisation_id=$7",
            clinician_id, email, phone, language, channels, hours, organisation_id)

    async def delete(self, clinician_id: str) -> bool:
        return await self.conn.execute("DELETE FROM clinicians WHERE clinician_id = $1", clinician_id) != "DELETE 0"

    async def of_organisation(self, organisation_id: str | None, default: str | None) -> list[dict]:
        """Every clinician (``organisation_id`` None), or one organisation's."""
        rows = await self.conn.fetch(
            "SELECT * FROM clinicians WHERE ($1::text IS NULL OR COALESCE(organisation_id, $2::text) = $1)"
            " ORDER BY clinician_id", organisation_id, default)
        return [as_dict(r, "working_hours") for r in rows]


class OncallRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def at(self, at: datetime, org: str | None, default: str | None) -> list[str]:
        """The on-call clinicians of organisation ``org`` at ``at`` (slots from before organisations
        count for the default one; ``org`` None: the slots of no organisation), by id."""
        rows = await self.conn.fetch(
            "SELECT DISTINCT clinician_id FROM oncall WHERE starts_at <= $1 AND ends_at > $1"
            " AND COALESCE(organisation_id, $2::text) IS NOT DISTINCT FROM $3::text ORDER BY clinician_id",
            at, default, org)
        return [r["clinician_id"] for r in rows]

    async def replace(self, org: str, default: str | None, slots: list[tuple[str, datetime, datetime]]) -> None:
        """The organisation's rota becomes ``slots`` (clinician id, start, end)."""
        await self.conn.execute("DELETE FROM oncall WHERE COALESCE(organisation_id, $2::text) = $1", org, default)
        for clinician_id, starts_at, ends_at in slots:
            await self.conn.execute("INSERT INTO oncall (slot_id, clinician_id, starts_at, ends_at, organisation_id)"
                                    " VALUES ($1,$2,$3,$4,$5)", uuid.uuid4(), clinician_id, starts_at, ends_at, org)

    async def of_organisation(self, organisation_id: str | None, default: str | None) -> list[dict]:
        rows = await self.conn.fetch(
            "SELECT * FROM oncall WHERE ($1::text IS NULL OR COALESCE(organisation_id, $2::text) = $1)"
            " ORDER BY starts_at", organisation_id, default)
        return [dict(r) for r in rows]
