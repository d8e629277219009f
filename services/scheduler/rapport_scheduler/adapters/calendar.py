"""SQL for the booking constraints: clinicians' working hours, clinic closure days, the
clinicians' sessions across courses, and the per-clinician booking lock."""

from __future__ import annotations

import json
from datetime import date, datetime
from uuid import UUID

import asyncpg

from rapport_shared.hours import WorkingHours


class CalendarRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def lock_clinician(self, clinician_id: str) -> None:
        """Serialise bookings per clinician (no double booking between concurrent transactions)."""
        await self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('scheduler.clinician:' || $1))", clinician_id)

    async def clinician_hours(self, clinician_id: str) -> WorkingHours | None:
        r = await self.conn.fetchrow("SELECT timezone, slots FROM clinician_hours WHERE clinician_id = $1", clinician_id)
        return WorkingHours.from_weekday_slots(r["timezone"], json.loads(r["slots"])) if r else None

    async def set_clinician_hours(self, clinician_id: str, hours: WorkingHours, *, by: str, now: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO clinician_hours (clinician_id, timezone, slots, updated_by, updated_at) VALUES ($1,$2,$3,$4,$5)"
            " ON CONFLICT (clinician_id) DO UPDATE SET timezone=$2, slots=$3, updated_by=$4, updated_at=$5",
            clinician_id, hours.timezone, json.dumps(hours.to_weekday_slots(), sort_keys=True), by, now,
        )

    async def closures(self, since: date | None = None) -> dict[date, str | None]:
        rows = await self.conn.fetch(
            "SELECT day, reason_code FROM closure_days WHERE $1::date IS NULL OR day >= $1 ORDER BY day", since)
        return {r["day"]: r["reason_code"] for r in rows}

    async def add_closure(self, day: date, reason_code: str | None, *, by: str, now: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO closure_days (day, reason_code, created_by, created_at) VALUES ($1,$2,$3,$4)"
            " ON CONFLICT (day) DO UPDATE SET reason_code = $2", day, reason_code, by, now,
        )

    async def remove_closure(self, day: date) -> bool:
        return (await self.conn.execute("DELETE FROM closure_days WHERE day = $1", day)).split()[-1] != "0"

    async def busy(self, clinician_id: str, *, since: datetime,
                   exclude_course: UUID | None) -> list[tuple[datetime, datetime]]:
        """The clinician's live sessions in other courses that end after ``since``."""
        rows = await self.conn.fetch(
            "SELECT starts_at, ends_at FROM sessions WHERE clinician_id = $1 AND status IN ('scheduled', 'attended')"
            " AND ends_at > $2 AND ($3::uuid IS NULL OR course_id <> $3) ORDER BY starts_at",
            clinician_id, since, exclude_course,
        )
        return [(r["starts_at"], r["ends_at"]) for r in rows]
