"""Patients as the notifier knows them: contact data from the private contacts topic
(``contacts.py`` writes it) and the preferences an admin sets over HTTP."""

from __future__ import annotations

import json

import asyncpg

from .repository import as_dict, decoded


class PatientRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def get(self, person_id: str) -> dict | None:
        """The contact record (``channel_consent`` decoded), None when none is held."""
        return as_dict(await self.conn.fetchrow("SELECT * FROM patients WHERE person_id = $1", person_id),
                       "channel_consent", "quiet_hours")

    async def preferences(self, person_id: str) -> dict | None:
        return as_dict(await self.conn.fetchrow("SELECT * FROM patient_preferences WHERE person_id = $1", person_id),
                       "quiet_hours")

    async def quiet_hours(self, person_id: str) -> dict | None:
        """The preferences' quiet hours, else the contact record's (as stored), else None."""
        raw = await self.conn.fetchval("SELECT quiet_hours FROM patient_preferences WHERE person_id = $1", person_id)
        if raw is None:
            raw = await self.conn.fetchval("SELECT quiet_hours FROM patients WHERE person_id = $1", person_id)
        return decoded(raw)

    async def set_preferences(self, person_id: str, language: str | None, quiet_hours: dict | None) -> None:
        await self.conn.execute(
            "INSERT INTO patient_preferences (person_id, language, quiet_hours, updated_at) VALUES ($1,$2,$3::jsonb,now())"
            " ON CONFLICT (person_id) DO UPDATE SET language=$2, quiet_hours=$3::jsonb, updated_at=now()",
            person_id, language, json.dumps(quiet_hours) if quiet_hours is not None else None)

    async def erase(self, person_id: str) -> bool:
        """Delete the contact record and the preferences; whether there was either."""
        a = await self.conn.execute("DELETE FROM patients WHERE person_id = $1", person_id)
        b = await self.conn.execute("DELETE FROM patient_preferences WHERE person_id = $1", person_id)
        return a != "DELETE 0" or b != "DELETE 0"
