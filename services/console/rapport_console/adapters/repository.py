"""All of the console's SQL: the caseload read model (migrations/0001_caseload.sql).

Writers are called by the event handlers (one unit of work per event); readers by the views.
Every writer gives the same rows whatever order the topics are read in: a replay reads
``rapport.intake``, ``rapport.course``, ``rapport.outcomes`` and ``rapport.notifications`` side by
side (docs/replay.md), so an episode row is created by whichever event comes first and each
topic fills in only its own columns.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Iterable, Sequence
from uuid import UUID

import asyncpg

from rapport_shared.http.access import ListFilter, RecordScope


def _uuid(value: str) -> UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def change_channel(schema: str) -> str:
    """The NOTIFY channel of one console schema (a replay's shadow has its own, so a live page is
    never told about a shadow's rows)."""
    return f"{schema}.changes"


class CaseloadRepository:
    def __init__(self, conn: asyncpg.Connection, schema: str) -> None:
        self.conn = conn
        self.schema = schema

    # ---- change notices (delivered to the live pages when the transaction commits) -------------

    async def announce(self, episode_id: UUID, kind: str) -> None:
        """Tell open pages that ``episode_id`` changed (payload: the opaque id and a kind word,
        never a score or any other health data)."""
        await self.conn.execute("SELECT pg_notify($1, $2)", change_channel(self.schema), f"{episode_id} {kind}")

    # ---- episodes ---------------------------------------------------------------------------

    async def ensure_episode(self, episode_id: UUID, organisation_id: str | None) -> None:
        await self.conn.execute(
            "INSERT INTO episodes (episode_id, organisation_id) VALUES ($1, $2) ON CONFLICT (episode_id) DO UPDATE"
            " SET organisation_id = COALESCE(episodes.organisation_id, EXCLUDED.organisation_id)"
            " WHERE episodes.organisation_id IS NULL", episode_id, organisation_id)

    async def intake_completed(self, *, episode_id: UUID, organisation_id: str | None, clinician_id: str,
                               intake_clinician_id: str | None, template_id: str, target_condition: str,
                               focus_primary: str, focus_secondary: str | None, referred_at: datetime,
                               completed_at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO episodes (episode_id, organisation_id, status, clinician_id, intake_clinician_id, template_id,"
            " target_condition, focus_primary, focus_secondary, referred_at, completed_at)"
            " VALUES ($1,$2,'completed',$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT (episode_id) DO UPDATE SET"
            " organisation_id = COALESCE(EXCLUDED.organisation_id, episodes.organisation_id), status = 'completed',"
            " clinician_id = EXCLUDED.clinician_id, intake_clinician_id = EXCLUDED.intake_clinician_id,"
            " template_id = EXCLUDED.template_id, target_condition = EXCLUDED.target_condition,"
            " focus_primary = EXCLUDED.focus_primary, focus_secondary = EXCLUDED.focus_secondary,"
            " referred_at = EXCLUDED.referred_at, completed_at = EXCLUDED.completed_at",
            episode_id, organisation_id, clinician_id, intake_clinician_id, template_id, target_condition,
            focus_primary, focus_secondary, referred_at, completed_at)

    async def intake_declined(self, *, episode_id: UUID, organisation_id: str | None, reason_code: str,
                              template_id: str | None) -> None:
        await self.conn.execute(
            "INSERT INTO episodes (episode_id, organisation_id, status, declined_reason, template_id)"
            " VALUES ($1,$2,'declined',$3,$4) ON CONFLICT (episode_id) DO UPDATE SET"
            " organisation_id = COALESCE(EXCLUDED.organisation_id, episodes.organisation_id), status = 'declined',"
            " declined_reason = EXCLUDED.declined_reason, template_id = COALESCE(EXCLUDED.template_id, episodes.template_id)",
            episode_id, organisation_id, reason_code, template_id)

    async def course_planned(self, *, episode_id: UUID, course_id: UUID, clinician_id: str, template_id: str,
                             contracted_sessions: int, phase: str, phase_plan: list[dict], planned_at: datetime) -> None:
        await self.conn.execute(
            "UPDATE episodes SET course_id = $2, course_clinician_id = $3, course_template_id = $4,"
            " contracted_sessions = $5, phase = $6, phase_plan = $7::jsonb, planned_at = $8 WHERE episode_id = $1",
            episode_id, course_id, clinician_id, template_id, contracted_sessions, phase, json.dumps(phase_plan),
            planned_at)

    async def contract_changed(self, episode_id: UUID, contracted_sessions: int, phase_plan: list[dict]) -> None:
        await self.conn.execute(
            "UPDATE episodes SET contracted_sessions = $2,"
            " phase_plan = CASE WHEN $3::jsonb = '[]'::jsonb THEN phase_plan ELSE $3::jsonb END WHERE episode_id = $1",
            episode_id, contracted_sessions, json.dumps(phase_plan))

    async def set_phase(self, episode_id: UUID, phase: str) -> None:
        await self.conn.execute("UPDATE episodes SET phase = $2 WHERE episode_id = $1", episode_id, phase)

    async def course_ended(self, episode_id: UUID, *, ended_at: datetime, reason: str, final_phase: str,
                           attended_sessions: int) -> None:
        await self.conn.execute(
            "UPDATE episodes SET ended_at = $2, end_reason = $3, phase = $4,"
            " attended_sessions = GREATEST(attended_sessions, $5) WHERE episode_id = $1",
            episode_id, ended_at, reason, final_phase, attended_sessions)

    async def phase_changed(self, *, event_id: UUID, episode_id: UUID, course_id: UUID, from_phase: str,
                            to_phase: str, effective_from_session: int, reason: str, changed_at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO phase_changes (event_id, episode_id, course_id, from_phase, to_phase, effective_from_session,"
            " reason, changed_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (event_id) DO NOTHING",
            event_id, episode_id, course_id, from_phase, to_phase, effective_from_session, reason, changed_at)
        await self.set_phase(episode_id, to_phase)

    async def checklist_item(self, *, course_id: UUID, item: str, episode_id: UUID, session_number: int | None,
                             diagnosis_code: str | None, focus_primary: str | None, focus_secondary: str | None,
                             focus_changed: bool, recorded_at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO checklist (course_id, item, episode_id, session_number, diagnosis_code, focus_primary,"
            " focus_secondary, focus_changed, recorded_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)"
            " ON CONFLICT (course_id, item) DO UPDATE SET session_number = EXCLUDED.session_number,"
            " diagnosis_code = EXCLUDED.diagnosis_code, focus_primary = EXCLUDED.focus_primary,"
            " focus_secondary = EXCLUDED.focus_secondary, focus_changed = EXCLUDED.focus_changed,"
            " recorded_at = EXCLUDED.recorded_at",
            course_id, item, episode_id, session_number, diagnosis_code, focus_primary, focus_secondary,
            focus_changed, recorded_at)

    # ---- sessions ---------------------------------------------------------------------------

    async def session_booked(self, *, session_id: UUID, episode_id: UUID, course_id: UUID, number: int,
                             starts_at: datetime, duration_minutes: int, kind: str = "individual") -> None:
        await self.conn.execute(
            "INSERT INTO sessions (session_id, episode_id, course_id, number, starts_at, duration_minutes, kind)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (session_id) DO UPDATE SET number = EXCLUDED.number,"
            " kind = EXCLUDED.kind, duration_minutes = EXCLUDED.duration_minutes",
            session_id, episode_id, course_id, number, starts_at, duration_minutes, kind)

    async def session_moved(self, session_id: UUID, *, previous_starts_at: datetime, starts_at: datetime,
                            reason_code: str) -> None:
        await self.conn.execute(
            "UPDATE sessions SET starts_at = $2, moved_from = COALESCE(moved_from, $3), moves = moves + 1,"
            " reason_code = $4 WHERE session_id = $1", session_id, starts_at, previous_starts_at, reason_code)

    async def session_outcome(self, session_id: UUID, status: str, at: datetime, *, phase: str | None = None,
                              reason_code: str | None = None) -> None:
        await self.conn.execute(
            "UPDATE sessions SET status = $2, outcome_at = $3, phase = COALESCE($4, phase),"
            " reason_code = COALESCE($5, reason_code) WHERE session_id = $1",
            session_id, status, at, phase, reason_code)

    async def attended_count(self, episode_id: UUID, attended: int) -> None:
        await self.conn.execute("UPDATE episodes SET attended_sessions = GREATEST(attended_sessions, $2)"
                                " WHERE episode_id = $1", episode_id, attended)

    # ---- scores, alerts, evaluations, deliveries ------------------------------------------------

    async def add_score(self, *, submission_id: UUID, episode_id: UUID, instrument: str, timepoint: str,
                        session_number: int | None, total: float, band: str | None, caseness: bool | None,
                        baseline_total: float | None, change_from_baseline: float | None,
                        reliable_change: str | None, flags: Sequence[str], administered_at: datetime,
                        scored_at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO scores (submission_id, episode_id, instrument, timepoint, session_number, total, band, caseness,"
            " baseline_total, change_from_baseline, reliable_change, flags, administered_at, scored_at)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14) ON CONFLICT (submission_id) DO NOTHING",
            submission_id, episode_id, instrument, timepoint, session_number, total, band, caseness, baseline_total,
            change_from_baseline, reliable_change, list(flags), administered_at, scored_at)

    async def alert_raised(self, *, alert_id: UUID, episode_id: UUID, kind: str, urgency: str, reason_code: str,
                           clinician_id: str, instrument: str | None, session_number: int | None,
                           raised_at: datetime, raised_event_id: UUID, linked_alert_ids: Sequence[UUID]) -> None:
        await self.conn.execute(
            "INSERT INTO alerts (alert_id, episode_id, kind, urgency, reason_code, clinician_id, instrument,"
            " session_number, raised_at, raised_event_id, linked_alert_ids) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"
            " ON CONFLICT (alert_id) DO NOTHING",
            alert_id, episode_id, kind, urgency, reason_code, clinician_id, instrument, session_number, raised_at,
            raised_event_id, list(linked_alert_ids))

    async def alert_resolved(self, alert_id: UUID, *, resolved_by: str, resolved_at: datetime, action: str) -> bool:
        done = await self.conn.execute(
            "UPDATE alerts SET resolved_by = $2, resolved_at = $3, action = $4 WHERE alert_id = $1",
            alert_id, resolved_by, resolved_at, action)
        return done != "UPDATE 0"

    async def evaluated(self, *, episode_id: UUID, revision: int, template_id: str | None, clinician_id: str | None,
                        end_reason: str | None, finished_course: bool, counts_toward_recovery: bool | None,
                        recovery: bool | None, reliable_improvement: bool | None, reliable_recovery: bool | None,
                        reliable_deterioration: bool | None, evaluated_at: datetime) -> None:
        # The highest revision of an episode supersedes the earlier ones.
        await self.conn.execute(
            "INSERT INTO evaluations (episode_id, revision, template_id, clinician_id, end_reason, finished_course,"
            " counts_toward_recovery, recovery, reliable_improvement, reliable_recovery, reliable_deterioration,"
            " evaluated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) ON CONFLICT (episode_id) DO UPDATE SET"
            " revision = EXCLUDED.revision, template_id = EXCLUDED.template_id, clinician_id = EXCLUDED.clinician_id,"
            " end_reason = EXCLUDED.end_reason, finished_course = EXCLUDED.finished_course,"
            " counts_toward_recovery = EXCLUDED.counts_toward_recovery, recovery = EXCLUDED.recovery,"
            " reliable_improvement = EXCLUDED.reliable_improvement, reliable_recovery = EXCLUDED.reliable_recovery,"
            " reliable_deterioration = EXCLUDED.reliable_deterioration, evaluated_at = EXCLUDED.evaluated_at"
            " WHERE evaluations.revision <= EXCLUDED.revision",
            episode_id, revision, template_id, clinician_id, end_reason, finished_course, counts_toward_recovery,
            recovery, reliable_improvement, reliable_recovery, reliable_deterioration, evaluated_at)

    async def delivery(self, *, notification_id: UUID, episode_id: UUID, kind: str, recipient_ref: str, channel: str,
                       status: str, error_code: str | None, cause_event_id: UUID, at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO deliveries (notification_id, episode_id, kind, recipient_ref, channel, status, error_code,"
            " cause_event_id, at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (notification_id) DO UPDATE SET"
            " status = EXCLUDED.status, error_code = EXCLUDED.error_code, at = EXCLUDED.at",
            notification_id, episode_id, kind, recipient_ref, channel, status, error_code, cause_event_id, at)

    # ---- acknowledgements (the console's own record) ---------------------------------------------

    async def acknowledged(self, *, alert_id: UUID, episode_id: UUID, by: str, at: datetime, escalated: bool) -> None:
        await self.conn.execute(
            "INSERT INTO acknowledgements (alert_id, episode_id, acknowledged_by, acknowledged_at, escalated)"
            " VALUES ($1,$2,$3,$4,$5) ON CONFLICT (alert_id) DO NOTHING", alert_id, episode_id, by, at, escalated)

    # ---- reads ------------------------------------------------------------------------------

    async def alert(self, alert_id: UUID) -> asyncpg.Record | None:
        return await self.conn.fetchrow("SELECT * FROM alerts WHERE alert_id = $1", alert_id)

    async def episode(self, episode_id: UUID) -> asyncpg.Record | None:
        return await self.conn.fetchrow("SELECT * FROM episodes WHERE episode_id = $1", episode_id)

    async def episodes_for(self, scope: ListFilter) -> list[asyncpg.Record]:
        """The episodes a caller's list filter reaches (completed intakes, open or ended courses)."""
        if scope.nothing:
            return []
        return await self.conn.fetch(
            "SELECT * FROM episodes WHERE status = 'completed'"
            " AND ($1::text IS NULL OR organisation_id = $1)"
            " AND ($2::text IS NULL OR $2 IN (clinician_id, course_clinician_id, intake_clinician_id))"
            " AND ($3::boolean OR organisation_id IS NOT NULL)"
            " ORDER BY completed_at, episode_id",
            scope.organisation_id, scope.assigned_to, scope.organisation_id is None and scope.assigned_to is None)

    async def sessions_of(self, episode_ids: Iterable[UUID]) -> list[asyncpg.Record]:
        return await self.conn.fetch("SELECT * FROM sessions WHERE episode_id = ANY($1::uuid[]) ORDER BY number, starts_at",
                                     list(episode_ids))

    async def scores_of(self, episode_ids: Iterable[UUID]) -> list[asyncpg.Record]:
        return await self.conn.fetch("SELECT * FROM scores WHERE episode_id = ANY($1::uuid[])"
                                     " ORDER BY administered_at, submission_id", list(episode_ids))

    async def alerts_of(self, episode_ids: Iterable[UUID]) -> list[asyncpg.Record]:
        return await self.conn.fetch(
            "SELECT a.*, k.acknowledged_by, k.acknowledged_at FROM alerts a"
            " LEFT JOIN acknowledgements k ON k.alert_id = a.alert_id"
            " WHERE a.episode_id = ANY($1::uuid[]) ORDER BY a.raised_at, a.alert_id", list(episode_ids))

    async def phase_changes_of(self, episode_id: UUID) -> list[asyncpg.Record]:
        return await self.conn.fetch("SELECT * FROM phase_changes WHERE episode_id = $1"
                                     " ORDER BY changed_at, effective_from_session", episode_id)

    async def checklist_of(self, episode_id: UUID) -> list[asyncpg.Record]:
        return await self.conn.fetch("SELECT * FROM checklist WHERE episode_id = $1 ORDER BY recorded_at, item",
                                     episode_id)

    async def deliveries_of(self, episode_id: UUID) -> list[asyncpg.Record]:
        return await self.conn.fetch("SELECT * FROM deliveries WHERE episode_id = $1 ORDER BY at, notification_id",
                                     episode_id)

    async def evaluations_for(self, scope: ListFilter, since: datetime | None, until: datetime | None) -> list[asyncpg.Record]:
        """End-of-course evaluations of the episodes the caller reaches, ended (or, without an end
        seen, evaluated) in [since, until)."""
        if scope.nothing:
            return []
        return await self.conn.fetch(
            "SELECT v.*, e.target_condition, COALESCE(e.course_template_id, e.template_id) AS episode_template,"
            " COALESCE(e.ended_at, v.evaluated_at) AS ended FROM evaluations v JOIN episodes e USING (episode_id)"
            " WHERE ($1::text IS NULL OR e.organisation_id = $1)"
            " AND ($2::text IS NULL OR $2 IN (e.clinician_id, e.course_clinician_id, e.intake_clinician_id))"
            " AND ($3::boolean OR e.organisation_id IS NOT NULL)"
            " AND ($4::timestamptz IS NULL OR COALESCE(e.ended_at, v.evaluated_at) >= $4)"
            " AND ($5::timestamptz IS NULL OR COALESCE(e.ended_at, v.evaluated_at) < $5)"
            " ORDER BY v.episode_id",
            scope.organisation_id, scope.assigned_to, scope.organisation_id is None and scope.assigned_to is None,
            since, until)

    async def visible(self, episode_id: UUID, scope: ListFilter) -> bool:
        """Whether a list filter reaches this episode (the caseload's live updates)."""
        return any(r["episode_id"] == episode_id for r in await self.episodes_for(scope))


# ---- the access resolver (http/access.py): a record's scope, or None like a missing one ----------

async def episode_scope(conn: asyncpg.Connection, episode_id: str) -> RecordScope | None:
    """``episode_id`` → its organisation and assigned clinicians (intake's treating and intake
    clinicians, the course's clinician once planned); None when there is no such completed
    episode (or the id is not one): the core answers both alike."""
    eid = _uuid(episode_id)
    if eid is None:
        return None
    r = await conn.fetchrow("SELECT organisation_id, clinician_id, course_clinician_id, intake_clinician_id"
                            " FROM episodes WHERE episode_id = $1 AND status = 'completed'", eid)
    if r is None:
        return None
    assigned = frozenset(c for c in (r["clinician_id"], r["course_clinician_id"], r["intake_clinician_id"]) if c)
    return RecordScope(organisation_id=r["organisation_id"], assigned=assigned)


def as_dicts(rows: Iterable[Any]) -> list[dict[str, Any]]:
    return [dict(r) for r in rows]
