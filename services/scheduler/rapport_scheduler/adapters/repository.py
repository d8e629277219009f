"""SQL for the scheduler's courses: the course row and its session rows (the live state of the
``Course`` aggregate: contracted sessions and, flagged ``optional_parent``, the ones beside the
contract), and the evaluations read before their course.

``save`` writes the difference between the state loaded and the state decided, inside the
caller's transaction (the same one that writes the outbox). Working hours and closure days are
``adapters/calendar.py``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from uuid import UUID

import asyncpg

from rapport_shared.contracts import Phase
from rapport_shared.contracts.course import CancelledBy, ChecklistItem, CourseEndReason, PhaseChangeReason, SessionKind
from rapport_shared.contracts.intake import Availability, Focus
from rapport_shared.contracts.outcomes import OutcomeEvaluatedV1

from ..domain.course import ChecklistEntry, Course, PhaseEntry, Session, SessionStatus


def _dt(v: str | None) -> datetime | None:
    return datetime.fromisoformat(v) if v else None


def _phase_history(raw) -> tuple[PhaseEntry, ...]:
    return tuple(PhaseEntry(Phase(e["phase"]), e["from_session"], PhaseChangeReason(e["reason"]) if e["reason"] else None,
                            _dt(e["at"])) for e in raw)


def _checklist(raw) -> dict[ChecklistItem, ChecklistEntry]:
    return {
        ChecklistItem(k): ChecklistEntry(
            session_number=v["session_number"], recorded_at=_dt(v["recorded_at"]), diagnosis_code=v.get("diagnosis_code"),
            focus=Focus.model_validate(v["focus"]) if v.get("focus") else None, focus_changed=v.get("focus_changed", False),
            reason_code=v.get("reason_code"),
        )
        for k, v in raw.items()
    }


def _json(v) -> str:
    return json.dumps(v, sort_keys=True)


def _session(r: asyncpg.Record) -> Session:
    return Session(
        session_id=r["session_id"], number=r["number"], starts_at=r["starts_at"], duration_minutes=r["duration_minutes"],
        kind=SessionKind(r["kind"]), status=SessionStatus(r["status"]), recorded_at=r["recorded_at"],
        cancelled_by=CancelledBy(r["cancelled_by"]) if r["cancelled_by"] else None, reason_code=r["reason_code"],
    )



def _history_json(c: Course) -> str:
    return _json([{"phase": e.phase.value, "from_session": e.from_session, "reason": e.reason.value if e.reason else None,
                   "at": e.at.isoformat()} for e in c.phase_history])


def _checklist_json(c: Course) -> str:
    out = {}
    for item, e in c.checklist.items():
        d = asdict(e)
        d["recorded_at"] = e.recorded_at.isoformat()
        d["focus"] = e.focus.model_dump(mode="json") if e.focus else None
        out[item.value] = d
    return _json(out)


class CourseRepository:
    """Courses on one connection (the unit of work's, or any for reads)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def _load(self, row: asyncpg.Record | None) -> Course | None:
        if row is None:
            return None
        sessions = await self.conn.fetch("SELECT * FROM sessions WHERE course_id = $1", row["course_id"])
        contracted = {s["session_id"]: _session(s) for s in sessions if not s["optional_parent"]}
        extras = {s["session_id"]: _session(s) for s in sessions if s["optional_parent"]}
        history = _phase_history(json.loads(row["phase_history"]))
        return Course(
            course_id=row["course_id"], episode_id=row["episode_id"], person_id=row["person_id"],
            template_id=row["template_id"], clinician_id=row["clinician_id"], contracted=row["contracted_sessions"],
            planned_at=row["planned_at"], focus=Focus.model_validate_json(row["focus"]) if row["focus"] else None,
            phase=Phase(row["phase"]),
            # Courses planned before this migration have no history: they began in the initial phase.
            phase_history=history or (PhaseEntry(Phase.initial, 1, None, row["planned_at"]),),
            sessions=contracted, extra_sessions=extras,
            checklist=_checklist(json.loads(row["checklist"])), attended=row["attended"],
            consecutive_missed=row["consecutive_missed"], notices=frozenset(json.loads(row["notices"])),
            maintenance_contracted=row["maintenance_contracted"], remission=row["remission"],
            ended_reason=CourseEndReason(row["ended_reason"]) if row["ended_reason"] else None, ended_at=row["ended_at"],
        )

    async def get(self, course_id: UUID, *, for_update: bool = False) -> Course | None:
        lock = " FOR UPDATE" if for_update else ""
        return await self._load(await self.conn.fetchrow(f"SELECT * FROM courses WHERE course_id = $1{lock}", course_id))

    async def get_by_episode(self, episode_id: UUID, *, for_update: bool = False) -> Course | None:
        lock = " FOR UPDATE" if for_update else ""
        return await self._load(await self.conn.fetchrow(f"SELECT * FROM courses WHERE episode_id = $1{lock}",
                                                         episode_id))

    async def exists_for_episode(self, episode_id: UUID) -> bool:
        return bool(await self.conn.fetchval("SELECT 1 FROM courses WHERE episode_id = $1", episode_id))

    async def access_scope(self, *, course_id: UUID | None = None,
                           episode_id: UUID | None = None) -> asyncpg.Record | None:
        """What access decisions need about a course, by course or episode id: its organisation,
        person and clinician (no other personal data)."""
        if course_id is not None:
            return await self.conn.fetchrow(
                "SELECT organisation_id, person_id, clinician_id FROM courses WHERE course_id = $1", course_id)
        return await self.conn.fetchrow(
            "SELECT organisation_id, person_id, clinician_id FROM courses WHERE episode_id = $1", episode_id)

    async def organisation_of(self, course_id: UUID) -> str | None:
        """The organisation recorded for a course when it was planned (None: it names none)."""
        return await self.conn.fetchval("SELECT organisation_id FROM courses WHERE course_id = $1", course_id)

    async def availability(self, course_id: UUID) -> Availability | None:
        raw = await self.conn.fetchval("SELECT availability FROM courses WHERE course_id = $1", course_id)
        return Availability.model_validate_json(raw) if raw else None

    async def save(self, course: Course, *, before: Course | None, now: datetime,
                   availability: Availability | None = None, organisation_id: str | None = None) -> None:
        """Write ``course`` (decided from ``before``, the state loaded in this transaction).
        ``organisation_id`` (who may see the course, access.py) is written when the course is
        created and never changes; it is not part of the aggregate (the service layer stamps it on
        the course's events, ``handlers._commit``)."""
        conn, c = self.conn, course
        common = (c.template_id, c.clinician_id, c.contracted, c.phase.value,
                  c.focus.model_dump_json() if c.focus else None, _history_json(c), _checklist_json(c), c.attended,
                  c.consecutive_missed, _json(sorted(c.notices)), c.maintenance_contracted, c.remission,
                  c.ended_reason.value if c.ended_reason else None, c.ended_at, now)
        if before is None:
            await conn.execute(
                "INSERT INTO courses (course_id, episode_id, person_id, planned_at, availability, organisation_id,"
                " template_id, clinician_id, contracted_sessions, phase, focus, phase_history, checklist, attended,"
                " consecutive_missed, notices, maintenance_contracted, remission, ended_reason, ended_at, updated_at)"
                " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21)",
                c.course_id, c.episode_id, c.person_id, c.planned_at,
                availability.model_dump_json() if availability else None, organisation_id, *common,
            )
        elif c != before:
            await conn.execute(
                "UPDATE courses SET template_id=$2, clinician_id=$3, contracted_sessions=$4, phase=$5, focus=$6,"
                " phase_history=$7, checklist=$8, attended=$9, consecutive_missed=$10, notices=$11,"
                " maintenance_contracted=$12, remission=$13, ended_reason=$14, ended_at=$15, updated_at=$16"
                " WHERE course_id = $1", c.course_id, *common,
            )
        old = {**before.sessions, **before.extra_sessions} if before else {}
        now_all = {**c.sessions, **c.extra_sessions}
        changed = [s for sid, s in now_all.items() if sid in old and old[sid] != s]
        added = [s for sid, s in now_all.items() if sid not in old]

        def row(s: Session) -> tuple:
            return (s.session_id, c.course_id, s.number, s.starts_at, s.duration_minutes, s.status.value, s.kind.value,
                    c.clinician_id, s.ends_at, s.recorded_at, s.cancelled_by.value if s.cancelled_by else None,
                    s.reason_code, s.session_id in c.extra_sessions)

        # Updates first: a session leaving its position (missed, cancelled) before its replacement
        # arrives keeps "one live session per position" true statement by statement.
        if changed:
            await conn.executemany(
                "UPDATE sessions SET number=$3, starts_at=$4, duration_minutes=$5, status=$6, kind=$7, clinician_id=$8,"
                " ends_at=$9, recorded_at=$10, cancelled_by=$11, reason_code=$12, optional_parent=$13"
                " WHERE session_id = $1 AND course_id = $2",
                [row(s) for s in changed],
            )
        if added:
            await conn.executemany(
                "INSERT INTO sessions (session_id, course_id, number, starts_at, duration_minutes, status, kind,"
                " clinician_id, ends_at, recorded_at, cancelled_by, reason_code, optional_parent)"
                " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
                [row(s) for s in added],
            )

    # -- evaluations read before their course (topics replayed in another order) ---------------

    async def keep_early_outcome(self, evaluated: OutcomeEvaluatedV1, *, now: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO early_outcomes (episode_id, evaluation, received_at) VALUES ($1, $2::jsonb, $3)"
            " ON CONFLICT (episode_id) DO UPDATE SET evaluation = EXCLUDED.evaluation, received_at = EXCLUDED.received_at",
            evaluated.episode_id, evaluated.model_dump_json(), now)

    async def take_early_outcome(self, episode_id: UUID) -> OutcomeEvaluatedV1 | None:
        """The evaluation kept for ``episode_id``, removed (None: there is none)."""
        raw = await self.conn.fetchval("DELETE FROM early_outcomes WHERE episode_id = $1 RETURNING evaluation",
                                       episode_id)
        return None if raw is None else OutcomeEvaluatedV1.model_validate_json(raw)
