"""The notifier's projections of the topics, in Postgres: episodes, sessions and their
questionnaire requests, safety alerts. Recipients live in ``clinicians.py`` and ``patients.py``,
webhook subscriptions in ``subscriptions.py``, the delivery log in ``deliveries.py``, plans
(timers) in ``plans.py``. Every repository works on the unit of work's connection; rows come back
as plain dicts (JSON columns decoded), the same shape the in-memory fakes hold."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg


def decoded(value: Any) -> Any:
    """A ``jsonb`` column as Python (asyncpg hands it over as text)."""
    return json.loads(value) if isinstance(value, str) else value


def as_dict(row: asyncpg.Record | None, *json_columns: str) -> dict | None:
    if row is None:
        return None
    out = dict(row)
    for c in json_columns:
        if c in out:
            out[c] = decoded(out[c])
    return out


class EpisodeRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def organisation_of(self, episode_id: uuid.UUID, default: str | None) -> str | None:
        """The organisation recorded for the episode, else ``default``."""
        org = await self.conn.fetchval("SELECT organisation_id FROM episodes WHERE episode_id = $1", episode_id)
        return org or default

    async def clinician_of(self, episode_id: uuid.UUID) -> str | None:
        return await self.conn.fetchval("SELECT clinician_id FROM episodes WHERE episode_id = $1", episode_id)

    async def record_intake(self, episode_id, person_id, clinician_id, instruments: list[str] | None,
                            organisation_id: str | None, default_org: str | None,
                            target_condition: str | None = None, share_outcomes_with_referrer: bool = False,
                            referral_source: str | None = None) -> None:
        # The organisation the intake names wins; an older producer's event (none named) keeps
        # what is known, else the default organisation. The consent is the intake's, as it says.
        await self.conn.execute(
            "INSERT INTO episodes (episode_id, person_id, clinician_id, instruments, organisation_id, target_condition,"
            " share_outcomes_with_referrer, referral_source)"
            " VALUES ($1,$2,$3,$4,COALESCE($5::text, $6::text),$7,$8,$9)"
            " ON CONFLICT (episode_id) DO UPDATE SET person_id=$2, clinician_id=$3, instruments=COALESCE($4, episodes.instruments),"
            " organisation_id=COALESCE($5::text, episodes.organisation_id, $6::text),"
            " target_condition=COALESCE($7, episodes.target_condition), share_outcomes_with_referrer=$8,"
            " referral_source=COALESCE($9, episodes.referral_source)",
            episode_id, person_id, clinician_id, instruments, organisation_id, default_org, target_condition,
            share_outcomes_with_referrer, referral_source)

    async def referrer(self, episode_id: uuid.UUID) -> dict | None:
        """What the referrer summary needs of the episode: ``person_id``, ``organisation_id``,
        ``share_outcomes_with_referrer``, ``referral_source``, ``ended_at`` (None: unknown episode)."""
        return as_dict(await self.conn.fetchrow(
            "SELECT person_id, organisation_id, share_outcomes_with_referrer, referral_source, ended_at"
            " FROM episodes WHERE episode_id = $1", episode_id))

    async def set_contract(self, episode_id, contracted_sessions: int, at: datetime) -> None:
        """The contracted number of sessions, as of the contract's event time ``at``: an older
        contract (a re-processed event) does not replace a newer one."""
        await self.conn.execute(
            "UPDATE episodes SET contracted_sessions = $2, contracted_at = $3"
            " WHERE episode_id = $1 AND (contracted_at IS NULL OR contracted_at <= $3)",
            episode_id, contracted_sessions, at)

    async def record_declined(self, episode_id, person_id, organisation_id: str) -> None:
        await self.conn.execute(
            "INSERT INTO episodes (episode_id, person_id, organisation_id) VALUES ($1,$2,$3)"
            " ON CONFLICT (episode_id) DO UPDATE SET organisation_id=$3", episode_id, person_id, organisation_id)

    async def record_planned(self, episode_id, person_id, clinician_id, course_id, default_org: str | None) -> None:
        await self.conn.execute(
            "INSERT INTO episodes (episode_id, person_id, clinician_id, course_id, organisation_id) VALUES ($1,$2,$3,$4,$5)"
            " ON CONFLICT (episode_id) DO UPDATE SET person_id=$2, clinician_id=$3, course_id=$4",
            episode_id, person_id, clinician_id, course_id, default_org)

    async def ensure(self, episode_id, default_org: str | None) -> None:
        await self.conn.execute("INSERT INTO episodes (episode_id, organisation_id) VALUES ($1,$2) ON CONFLICT DO NOTHING",
                                episode_id, default_org)

    async def end(self, episode_id, ended_at: datetime) -> None:
        await self.conn.execute("UPDATE episodes SET ended_at = $2 WHERE episode_id = $1", episode_id, ended_at)


class SessionRepository:
    """Sessions and the questionnaire request of each."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def get(self, session_id: uuid.UUID) -> dict | None:
        return as_dict(await self.conn.fetchrow("SELECT * FROM sessions WHERE session_id = $1", session_id))

    async def put(self, *, session_id, episode_id, number: int, starts_at: datetime, cause_event_id: uuid.UUID,
                  changed_at: datetime) -> None:
        """Insert, or move an existing session (status back to ``scheduled``)."""
        await self.conn.execute(
            "INSERT INTO sessions (session_id, episode_id, number, starts_at, status, cause_event_id, changed_at)"
            " VALUES ($1,$2,$3,$4,'scheduled',$5,$6) ON CONFLICT (session_id) DO UPDATE SET starts_at=$4, number=$3,"
            " status='scheduled', cause_event_id=$5, changed_at=$6",
            session_id, episode_id, number, starts_at, cause_event_id, changed_at)

    async def known(self, session_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these sessions are here already."""
        return {r["session_id"] for r in await self.conn.fetch(
            "SELECT session_id FROM sessions WHERE session_id = ANY($1::uuid[])", session_ids)}

    async def add_many(self, *, episode_id, sessions: list[tuple[uuid.UUID, int, datetime]], cause_event_id: uuid.UUID,
                       changed_at: datetime) -> None:
        """New sessions ``(session_id, number, starts_at)``, scheduled, in one statement."""
        await self.conn.executemany(
            "INSERT INTO sessions (session_id, episode_id, number, starts_at, status, cause_event_id, changed_at)"
            " VALUES ($1,$2,$3,$4,'scheduled',$5,$6) ON CONFLICT (session_id) DO NOTHING",
            [(sid, episode_id, number, starts_at, cause_event_id, changed_at) for sid, number, starts_at in sessions])

    async def set_status(self, session_id, status: str, at: datetime) -> bool:
        """False when the session is unknown or was changed by a later event (``changed_at``)."""
        return bool(await self.conn.fetchval(
            "UPDATE sessions SET status = $2, changed_at = $3 WHERE session_id = $1"
            " AND (changed_at IS NULL OR changed_at <= $3) RETURNING true", session_id, status, at))

    async def exists(self, session_id) -> bool:
        return bool(await self.conn.fetchval("SELECT true FROM sessions WHERE session_id = $1", session_id))

    async def ids_of_episode(self, episode_id) -> list[uuid.UUID]:
        return [r["session_id"] for r in await self.conn.fetch("SELECT session_id FROM sessions WHERE episode_id = $1",
                                                               episode_id)]

    async def with_episode(self, session_id: uuid.UUID) -> dict | None:
        """The session with its episode's ``person_id``, ``ended_at`` and what its questionnaires
        follow: ``target_condition``, ``contracted_sessions`` and the intake's baseline ``instruments``."""
        return as_dict(await self.conn.fetchrow(
            "SELECT s.*, e.person_id, e.instruments, e.target_condition, e.contracted_sessions, e.ended_at"
            " FROM sessions s JOIN episodes e USING (episode_id) WHERE s.session_id = $1", session_id))

    async def questionnaire_request(self, session_id: uuid.UUID) -> dict | None:
        return as_dict(await self.conn.fetchrow("SELECT * FROM questionnaire_requests WHERE session_id = $1", session_id))

    async def add_questionnaire_request(self, session_id, episode_id, requested_at: datetime, expires_at: datetime,
                                        instruments: list[str] | None = None) -> bool:
        """False if the session already had one. ``instruments``: what it asks for (its reminder
        asks for the same)."""
        return bool(await self.conn.fetchval(
            "INSERT INTO questionnaire_requests (session_id, episode_id, requested_at, expires_at, instruments)"
            " VALUES ($1,$2,$3,$4,$5) ON CONFLICT (session_id) DO NOTHING RETURNING true",
            session_id, episode_id, requested_at, expires_at, instruments))

    async def set_request_expiry(self, session_id, expires_at: datetime) -> None:
        await self.conn.execute("UPDATE questionnaire_requests SET expires_at = $2 WHERE session_id = $1",
                                session_id, expires_at)

    async def mark_answered(self, episode_id, at: datetime) -> list[uuid.UUID]:
        """Answer the episode's open requests made by ``at``; their sessions."""
        rows = await self.conn.fetch(
            "UPDATE questionnaire_requests SET answered_at = $2 WHERE episode_id = $1 AND answered_at IS NULL"
            " AND requested_at <= $2 RETURNING session_id", episode_id, at)
        return [r["session_id"] for r in rows]


class AlertRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(self, *, alert_id, episode_id, kind: str, clinician_id: str, raised_at: datetime) -> bool:
        """False if the alert is already known."""
        return bool(await self.conn.fetchval(
            "INSERT INTO alerts (alert_id, episode_id, kind, clinician_id, raised_at) VALUES ($1,$2,$3,$4,$5)"
            " ON CONFLICT (alert_id) DO NOTHING RETURNING true", alert_id, episode_id, kind, clinician_id, raised_at))

    async def get(self, alert_id: uuid.UUID) -> dict | None:
        return as_dict(await self.conn.fetchrow("SELECT * FROM alerts WHERE alert_id = $1", alert_id))

    async def mark_escalated(self, alert_id, at: datetime) -> None:
        await self.conn.execute("UPDATE alerts SET escalated_at = $2 WHERE alert_id = $1", alert_id, at)

    async def mark_out_of_hours(self, alert_id) -> None:
        await self.conn.execute("UPDATE alerts SET out_of_hours = true WHERE alert_id = $1", alert_id)

    async def resolve(self, alert_id, resolved_at: datetime) -> None:
        await self.conn.execute("UPDATE alerts SET resolved_at = $2 WHERE alert_id = $1", alert_id, resolved_at)

    async def acknowledge(self, alert_id, at: datetime, by: str) -> dict | None:
        """The first acknowledgement stands; the alert after it (None: unknown alert)."""
        return as_dict(await self.conn.fetchrow(
            "UPDATE alerts SET acknowledged_at = COALESCE(acknowledged_at, $2), acknowledged_by = COALESCE(acknowledged_by, $3)"
            " WHERE alert_id = $1 RETURNING *", alert_id, at, by))
