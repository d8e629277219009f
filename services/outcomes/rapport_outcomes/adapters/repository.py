"""Outcomes' SQL: every statement the service runs against its own schema lives here (the erasure
reader's, ``erasures.py``, aside).

One repository per aggregate, each on the unit of work's connection (``OutcomesUnitOfWork``);
the in-memory fakes of the unit tests (``tests/unit/outcomes/fakes.py``) have the same methods.
The access-scope resolvers at the end take a pooled connection (``rapport_shared.http.access``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Mapping
from uuid import UUID

import asyncpg

from rapport_shared.contracts.outcomes import AlertKind, ReliableChange, Timepoint
from rapport_shared.http.access import ListFilter, RecordScope

from ..domain.alerts import OpenAlert
from ..domain.cohort import EvaluationRow
from ..domain.evaluation import ScorePoint
from ..domain.fhir import ExportedSubmission
from ..domain.fhir_record import CourseSession, Delivery
from ..domain.measurement import Collected
from ..domain.model import Baseline, Communication, Episode, Submission, typed_total
from ..domain.policy import OutcomesPolicy


def _num(v: int | float | None) -> float | None:
    return None if v is None else float(v)


def _detail(value: str | dict | None) -> dict:
    """An evaluation's ``detail`` (jsonb: text unless a codec decodes it)."""
    if value is None:
        return {}
    return json.loads(value) if isinstance(value, str) else dict(value)


class _Repository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn


# ---- episodes -------------------------------------------------------------------------------

def _episode(r: asyncpg.Record) -> Episode:
    return Episode(episode_id=r["episode_id"], person_id=r["person_id"], clinician_id=r["clinician_id"],
                   template_id=r["template_id"], target_condition=r["target_condition"], began_at=r["began_at"],
                   correlation_id=r["correlation_id"], organisation_id=r["organisation_id"],
                   focus_primary=r["focus_primary"], focus_secondary=r["focus_secondary"])


class EpisodeRepository(_Repository):
    async def get(self, episode_id: UUID, *, lock: bool = False) -> Episode | None:
        # The row lock serialises everything that reads-then-writes an episode's scores and alerts
        # (two concurrent positive item 9s must not both open an alert).
        r = await self.conn.fetchrow("SELECT * FROM episodes WHERE episode_id = $1" + (" FOR UPDATE" if lock else ""),
                                     episode_id)
        return _episode(r) if r else None

    async def add(self, e: Episode, opened_at: datetime) -> bool:
        """False when the episode is open already (nothing written)."""
        inserted = await self.conn.fetchval(
            "INSERT INTO episodes (episode_id, person_id, clinician_id, template_id, began_at, target_condition,"
            " correlation_id, opened_at, organisation_id, focus_primary, focus_secondary)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"
            " ON CONFLICT (episode_id) DO NOTHING RETURNING true",
            e.episode_id, e.person_id, e.clinician_id, e.template_id, e.began_at, e.target_condition, e.correlation_id,
            opened_at, e.organisation_id, e.focus_primary, e.focus_secondary,
        )
        return bool(inserted)

    async def alert_clinician(self, episode: Episode) -> str:
        """The course's clinician once planned (the scheduler owns assignment), else intake's."""
        return await self.conn.fetchval("SELECT clinician_id FROM courses WHERE episode_id = $1",
                                        episode.episode_id) or episode.clinician_id


# ---- submissions ----------------------------------------------------------------------------

def _submission(r: asyncpg.Record, policy: OutcomesPolicy, alert_ids: tuple[UUID, ...] = ()) -> Submission:
    d = policy.catalogue.get(r["instrument"])
    return Submission(
        submission_id=r["submission_id"], episode_id=r["episode_id"], instrument=r["instrument"],
        timepoint=Timepoint(r["timepoint"]), session_number=r["session_number"],
        answers={int(k): v for k, v in json.loads(r["answers"]).items()}, total=typed_total(d, r["total"]),
        display_total=r["display_total"] or str(typed_total(d, r["total"])), band=r["band"], caseness=r["caseness"],
        subscales=json.loads(r["subscales"]) if r["subscales"] else {}, flags=tuple(r["flags"]),
        baseline_submission_id=r["baseline_submission_id"],
        baseline_total=None if r["baseline_total"] is None else typed_total(d, r["baseline_total"]),
        change_from_baseline=None if r["change_from_baseline"] is None else typed_total(d, r["change_from_baseline"]),
        reliable_change=ReliableChange(r["reliable_change"]) if r["reliable_change"] else None,
        administered_at=r["administered_at"], scored_at=r["scored_at"],
        client_submission_id=r["client_submission_id"], fingerprint=r["fingerprint"], alert_ids=alert_ids,
    )


class SubmissionRepository(_Repository):
    async def baseline(self, episode_id: UUID, instrument: str, policy: OutcomesPolicy) -> Baseline | None:
        r = await self.conn.fetchrow(
            "SELECT submission_id, total, administered_at FROM submissions WHERE episode_id = $1 AND instrument = $2"
            " ORDER BY administered_at, recorded_seq LIMIT 1",
            episode_id, instrument,
        )
        if r is None:
            return None
        return Baseline(r["submission_id"], typed_total(policy.catalogue.get(instrument), r["total"]), r["administered_at"])

    async def add(self, s: Submission, *, source: str, submitted_by: str, submitted_role: str | None) -> None:
        await self.conn.execute(
            "INSERT INTO submissions (submission_id, episode_id, instrument, timepoint, session_number, answers, total,"
            " band, caseness, flags, administered_at, scored_at, client_submission_id, fingerprint, source, submitted_by,"
            " submitted_role, display_total, subscales, baseline_submission_id, baseline_total, change_from_baseline,"
            " reliable_change)"
            " VALUES ($1,$2,$3,$4,$5,$6::jsonb,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19::jsonb,$20,$21,$22,$23)",
            s.submission_id, s.episode_id, s.instrument, s.timepoint.value, s.session_number,
            json.dumps({str(k): v for k, v in s.answers.items()}), float(s.total), s.band, s.caseness, list(s.flags),
            s.administered_at, s.scored_at, s.client_submission_id, s.fingerprint, source, submitted_by, submitted_role,
            s.display_total, json.dumps(dict(s.subscales)), s.baseline_submission_id, _num(s.baseline_total),
            _num(s.change_from_baseline), s.reliable_change.value if s.reliable_change else None,
        )

    async def alert_ids(self, submission_id: UUID) -> tuple[UUID, ...]:
        """The alerts a submission raised or was linked to."""
        rows = await self.conn.fetch(
            "SELECT alert_id FROM alerts WHERE submission_id = $1"
            " UNION SELECT alert_id FROM alert_links WHERE submission_id = $1",
            submission_id,
        )
        return tuple(sorted(r["alert_id"] for r in rows))

    async def by_client_key(self, episode_id: UUID, key: str, policy: OutcomesPolicy) -> Submission | None:
        r = await self.conn.fetchrow("SELECT * FROM submissions WHERE episode_id = $1 AND client_submission_id = $2",
                                     episode_id, key)
        if r is None:
            return None
        return _submission(r, policy, await self.alert_ids(r["submission_id"]))

    async def history(self, episode_id: UUID, policy: OutcomesPolicy) -> list[Submission]:
        rows = await self.conn.fetch(
            "SELECT * FROM submissions WHERE episode_id = $1 ORDER BY administered_at, recorded_seq", episode_id
        )
        links = await self.conn.fetch(
            "SELECT submission_id, alert_id FROM alerts WHERE episode_id = $1 AND submission_id IS NOT NULL"
            " UNION SELECT l.submission_id, l.alert_id FROM alert_links l JOIN alerts a USING (alert_id)"
            " WHERE a.episode_id = $1",
            episode_id,
        )
        by_sub: dict[UUID, list[UUID]] = {}
        for link in links:
            by_sub.setdefault(link["submission_id"], []).append(link["alert_id"])
        return [_submission(r, policy, tuple(sorted(by_sub.get(r["submission_id"], [])))) for r in rows]

    async def score_points(self, episode_id: UUID, policy: OutcomesPolicy) -> list[ScorePoint]:
        rows = await self.conn.fetch(
            "SELECT submission_id, instrument, total, administered_at, recorded_seq FROM submissions"
            " WHERE episode_id = $1",
            episode_id,
        )
        return [ScorePoint(r["submission_id"], r["instrument"],
                           typed_total(policy.catalogue.get(r["instrument"]), r["total"]),
                           r["administered_at"], r["recorded_seq"]) for r in rows]

    async def collected(self, episode_id: UUID) -> list[Collected]:
        """What was collected when, as far as the measurement schedule cares."""
        rows = await self.conn.fetch(
            "SELECT instrument, session_number, timepoint FROM submissions WHERE episode_id = $1"
            " ORDER BY administered_at, recorded_seq", episode_id)
        return [Collected(r["instrument"], r["session_number"], r["timepoint"]) for r in rows]

    async def exported(self, episode_id: UUID, policy: OutcomesPolicy) -> list[ExportedSubmission]:
        return [
            ExportedSubmission(submission_id=s.submission_id, instrument=s.instrument, answers=s.answers, total=s.total,
                               band=s.band, subscales=s.subscales, administered_at=s.administered_at,
                               scored_at=s.scored_at, session_number=s.session_number)
            for s in await self.history(episode_id, policy)
        ]


# ---- alerts ---------------------------------------------------------------------------------

class AlertRepository(_Repository):
    async def open_for(self, episode_id: UUID) -> list[OpenAlert]:
        rows = await self.conn.fetch("SELECT alert_id, kind, reason_code FROM alerts WHERE episode_id = $1"
                                     " AND status = 'open' ORDER BY raised_at, alert_id", episode_id)
        return [OpenAlert(r["alert_id"], AlertKind(r["kind"]), r["reason_code"]) for r in rows]

    async def add(self, *, alert_id: UUID, episode_id: UUID, kind: str, urgency: str, reason_code: str,
                  clinician_id: str, submission_id: UUID | None, instrument: str | None, session_number: int | None,
                  raised_at: datetime, linked_alert_ids: tuple[UUID, ...] = ()) -> None:
        await self.conn.execute(
            "INSERT INTO alerts (alert_id, episode_id, kind, urgency, reason_code, clinician_id, submission_id,"
            " instrument, session_number, raised_at, linked_alert_ids) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
            alert_id, episode_id, kind, urgency, reason_code, clinician_id, submission_id, instrument, session_number,
            raised_at, list(linked_alert_ids),
        )

    async def link(self, alert_id: UUID, submission_id: UUID, at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO alert_links (alert_id, submission_id, linked_at) VALUES ($1,$2,$3) ON CONFLICT DO NOTHING",
            alert_id, submission_id, at,
        )

    async def audit(self, alert_id: UUID, action: str, actor: str, at: datetime, *, actor_role: str | None = None,
                    details: dict[str, Any] | None = None, event_id: str | None = None) -> None:
        await self.conn.execute(
            "INSERT INTO alert_audit (alert_id, action, actor, actor_role, at, details, event_id)"
            " VALUES ($1,$2,$3,$4,$5,$6::jsonb,$7)",
            alert_id, action, actor, actor_role, at, json.dumps(details or {}, default=str),
            UUID(event_id) if event_id else None,
        )

    async def get(self, alert_id: UUID, *, lock: bool = False) -> Mapping[str, Any] | None:
        return await self.conn.fetchrow("SELECT * FROM alerts WHERE alert_id = $1" + (" FOR UPDATE" if lock else ""),
                                        alert_id)

    async def linked_submissions(self, alert_id: UUID) -> list[Mapping[str, Any]]:
        return await self.conn.fetch("SELECT submission_id, linked_at FROM alert_links WHERE alert_id = $1"
                                     " ORDER BY linked_at", alert_id)

    async def audit_trail(self, alert_id: UUID) -> list[Mapping[str, Any]]:
        return await self.conn.fetch("SELECT * FROM alert_audit WHERE alert_id = $1 ORDER BY seq", alert_id)

    async def resolve(self, alert_id: UUID, *, by: str, role: str | None, at: datetime, recorded_at: datetime,
                      action: str, text: str | None) -> None:
        await self.conn.execute(
            "UPDATE alerts SET status = 'resolved', resolved_by = $2, resolved_role = $3, resolved_at = $4,"
            " recorded_at = $5, action = $6, action_text = $7 WHERE alert_id = $1 AND status = 'open'",
            alert_id, by, role, at, recorded_at, action, text,
        )

    async def search(self, *, clinician_id: str | None, status: str | None, kind: str | None,
                     episode_id: UUID | None, limit: int, scope: ListFilter | None = None) -> list[Mapping[str, Any]]:
        """Alerts matching every given condition; ``scope`` (the caller's list filter) narrows them to
        the caller's organisation and, for a clinician without a care-team duty, to the alerts of
        episodes assigned to them (another clinician's id in ``clinician_id`` never widens it)."""
        if scope is not None and scope.nothing:
            return []
        where, args = [], []
        for column, value in (("a.clinician_id", clinician_id), ("a.status", status), ("a.kind", kind),
                              ("a.episode_id", episode_id)):
            if value is not None:
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        if scope is not None:
            if scope.organisation_id is not None:
                args.append(scope.organisation_id)
                where.append(f"e.organisation_id = ${len(args)}")
            if scope.assigned_to is not None:
                args.append(scope.assigned_to)
                n = len(args)
                where.append(f"(a.clinician_id = ${n} OR e.clinician_id = ${n} OR c.clinician_id = ${n})")
            if scope.person_id is not None:
                args.append(scope.person_id)
                where.append(f"e.person_id = ${len(args)}")
        args.append(limit)
        sql = ("SELECT a.*, (SELECT count(*) FROM alert_links l WHERE l.alert_id = a.alert_id) AS linked_count"
               " FROM alerts a JOIN episodes e ON e.episode_id = a.episode_id"
               " LEFT JOIN courses c ON c.episode_id = a.episode_id"
               + (" WHERE " + " AND ".join(where) if where else "")
               # urgent first, then oldest first: what a clinician must act on now
               + f" ORDER BY (a.urgency = 'urgent') DESC, a.raised_at LIMIT ${len(args)}")
        return await self.conn.fetch(sql, *args)


# ---- course projection ----------------------------------------------------------------------

class CourseRepository(_Repository):
    async def upsert(self, episode_id: UUID, at: datetime, **values: Any) -> None:
        """Merge what one course event says; NULL never overwrites a known value."""
        cols = list(values)
        names = ", ".join(["episode_id", "updated_at", *cols])
        params = ", ".join(f"${i}" for i in range(1, len(cols) + 3))
        updates = ", ".join([f"{c} = COALESCE(EXCLUDED.{c}, courses.{c})" for c in cols]
                            + ["updated_at = EXCLUDED.updated_at"])
        await self.conn.execute(
            f"INSERT INTO courses ({names}) VALUES ({params}) ON CONFLICT (episode_id) DO UPDATE SET {updates}",
            episode_id, at, *values.values(),
        )

    async def set_focus(self, episode_id: UUID, at: datetime, *, course_id: UUID, primary: str, secondary: str | None,
                        confirmed_at: datetime | None) -> None:
        """The focus as the checklist last recorded it: both areas replaced (a changed focus may drop
        its secondary); once confirmed it stays confirmed."""
        await self.conn.execute(
            "INSERT INTO courses (episode_id, course_id, focus_primary, focus_secondary, focus_confirmed_at, updated_at)"
            " VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (episode_id) DO UPDATE SET"
            " course_id = COALESCE(courses.course_id, EXCLUDED.course_id), focus_primary = EXCLUDED.focus_primary,"
            " focus_secondary = EXCLUDED.focus_secondary,"
            " focus_confirmed_at = COALESCE(courses.focus_confirmed_at, EXCLUDED.focus_confirmed_at),"
            " updated_at = EXCLUDED.updated_at",
            episode_id, course_id, primary, secondary, confirmed_at, at,
        )

    async def get(self, episode_id: UUID) -> Mapping[str, Any] | None:
        return await self.conn.fetchrow("SELECT * FROM courses WHERE episode_id = $1", episode_id)

    async def record_attendance(self, episode_id: UUID, *, course_id: UUID, number: int, attended: int,
                                contracted: int, at: datetime, assessment: bool) -> None:
        """``assessment``: the session belonged to an assessment phase; ``assessment_sessions`` keeps the
        highest such position (positions are attended in order, 1..k), NULL when the course's
        attendance was not seen here from its first session."""
        await self.conn.execute(
            "INSERT INTO courses (episode_id, course_id, attended_sessions, last_attended_number, contracted_sessions,"
            " updated_at, assessment_sessions)"
            " VALUES ($1,$2,$3,$4,$5,$6, CASE WHEN $3 <> 1 THEN NULL WHEN $7 THEN $4 ELSE 0 END)"
            " ON CONFLICT (episode_id) DO UPDATE SET"
            " course_id = COALESCE(courses.course_id, EXCLUDED.course_id),"
            " attended_sessions = GREATEST(courses.attended_sessions, EXCLUDED.attended_sessions),"
            " last_attended_number = GREATEST(courses.last_attended_number, EXCLUDED.last_attended_number),"
            " assessment_sessions = CASE WHEN courses.assessment_sessions IS NULL OR NOT $7"
            "   THEN courses.assessment_sessions ELSE GREATEST(courses.assessment_sessions, $4) END,"
            " contracted_sessions = EXCLUDED.contracted_sessions, updated_at = EXCLUDED.updated_at",
            episode_id, course_id, attended, number, contracted, at, assessment,
        )

    async def mark_review_checked(self, episode_id: UUID, at: datetime, alert_id: UUID | None) -> None:
        await self.conn.execute("UPDATE courses SET review_checked_at = $2, review_alert_id = $3 WHERE episode_id = $1",
                                episode_id, at, alert_id)


# ---- course sessions ------------------------------------------------------------------------

def _session(r: asyncpg.Record) -> CourseSession:
    return CourseSession(session_id=r["session_id"], number=r["number"], starts_at=r["starts_at"],
                         duration_minutes=r["duration_minutes"], kind=r["kind"], status=r["status"], phase=r["phase"],
                         attended_at=r["attended_at"], optional_parent=r["optional_parent"])


class SessionRepository(_Repository):
    async def upsert(self, *, session_id: UUID, episode_id: UUID, course_id: UUID | None, number: int, status: str,
                     at: datetime, starts_at: datetime | None = None, duration_minutes: int | None = None,
                     kind: str | None = None, phase: str | None = None, attended_at: datetime | None = None,
                     optional_parent: bool = False) -> None:
        """Merge what one course event says of a session: NULL never overwrites a known value;
        ``attended`` is final, and ``booked`` (a re-sent plan) never undoes a cancellation or a miss."""
        await self.conn.execute(
            "INSERT INTO course_sessions (session_id, episode_id, course_id, number, starts_at, duration_minutes, kind,"
            " status, phase, attended_at, updated_at, optional_parent)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)"
            " ON CONFLICT (session_id) DO UPDATE SET number = EXCLUDED.number,"
            " course_id = COALESCE(EXCLUDED.course_id, course_sessions.course_id),"
            " starts_at = COALESCE(EXCLUDED.starts_at, course_sessions.starts_at),"
            " duration_minutes = COALESCE(EXCLUDED.duration_minutes, course_sessions.duration_minutes),"
            " kind = COALESCE(EXCLUDED.kind, course_sessions.kind),"
            " status = CASE WHEN course_sessions.status = 'attended' OR EXCLUDED.status = 'booked'"
            "   THEN course_sessions.status ELSE EXCLUDED.status END,"
            " phase = COALESCE(EXCLUDED.phase, course_sessions.phase),"
            " attended_at = COALESCE(EXCLUDED.attended_at, course_sessions.attended_at),"
            " optional_parent = course_sessions.optional_parent OR EXCLUDED.optional_parent,"
            " updated_at = EXCLUDED.updated_at",
            session_id, episode_id, course_id, number, starts_at, duration_minutes, kind, status, phase, attended_at, at,
            optional_parent,
        )

    async def of_episode(self, episode_id: UUID) -> list[CourseSession]:
        rows = await self.conn.fetch("SELECT * FROM course_sessions WHERE episode_id = $1 ORDER BY number, starts_at",
                                     episode_id)
        return [_session(r) for r in rows]


class SessionEventRepository(_Repository):
    async def add(self, event_id: UUID, episode_id: UUID, session_ids: list[UUID]) -> None:
        """The course event ``event_id`` introduced or moved these sessions (a re-sent event: no-op)."""
        await self.conn.execute(
            "INSERT INTO session_events (event_id, session_id, episode_id)"
            " SELECT $1, s, $2 FROM unnest($3::uuid[]) AS s ON CONFLICT DO NOTHING",
            event_id, episode_id, session_ids,
        )


# ---- communications (rapport.notifications) ----------------------------------------------------

class CommunicationRepository(_Repository):
    async def record_many(self, rows: list[Communication]) -> None:
        """Deliveries' outcomes, in order; a notification finishes once, and "delivered" is never
        undone. One pipelined statement for them all (asyncpg's executemany)."""
        await self.conn.executemany(
            "INSERT INTO communications (notification_id, episode_id, kind, channel, recipient_role, status, at,"
            " cause_event_id, error_code, attempts, recorded_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"
            " ON CONFLICT (notification_id) DO UPDATE SET status = EXCLUDED.status, at = EXCLUDED.at,"
            " error_code = EXCLUDED.error_code, attempts = EXCLUDED.attempts, recorded_at = EXCLUDED.recorded_at"
            " WHERE communications.status <> 'delivered' AND EXCLUDED.status = 'delivered'",
            [(r.notification_id, r.episode_id, r.kind, r.channel, r.recipient_role, r.status, r.at, r.cause_event_id,
              r.error_code, r.attempts, r.recorded_at) for r in rows],
        )

    async def of_episode(self, episode_id: UUID) -> list[Delivery]:
        """The episode's deliveries, each with what its cause event links it to: the sessions it
        introduced or moved, the submission of the alert it raised, or the episode's evaluation."""
        rows = await self.conn.fetch(
            "SELECT c.*,"
            " ARRAY(SELECT e.session_id FROM session_events e WHERE e.event_id = c.cause_event_id"
            "       ORDER BY e.session_id) AS session_ids,"
            " (SELECT a.submission_id FROM alert_audit au JOIN alerts a USING (alert_id)"
            "   WHERE a.episode_id = c.episode_id AND au.action = 'raised' AND au.event_id = c.cause_event_id"
            "   LIMIT 1) AS alert_submission_id,"
            " EXISTS (SELECT 1 FROM evaluations v WHERE v.episode_id = c.episode_id"
            "   AND v.event_id = c.cause_event_id) AS about_outcome"
            " FROM communications c WHERE c.episode_id = $1 ORDER BY c.at, c.notification_id",
            episode_id,
        )
        return [Delivery(notification_id=r["notification_id"], kind=r["kind"], channel=r["channel"],
                         recipient_role=r["recipient_role"], status=r["status"], at=r["at"], error_code=r["error_code"],
                         session_ids=tuple(r["session_ids"]), alert_submission_id=r["alert_submission_id"],
                         about_outcome=r["about_outcome"]) for r in rows]


# ---- evaluations ----------------------------------------------------------------------------

class EvaluationRepository(_Repository):
    async def add(self, **v: Any) -> None:
        cols = list(v)
        await self.conn.execute(
            f"INSERT INTO evaluations ({', '.join(cols)}) VALUES ({', '.join(f'${i + 1}' for i in range(len(cols)))})"
            " ON CONFLICT (episode_id) DO NOTHING",
            *v.values(),
        )

    async def replace(self, **v: Any) -> None:
        """A revision: the row takes the new values (the earlier ones stay in the events)."""
        cols = [c for c in v if c != "episode_id"]
        await self.conn.execute(
            f"UPDATE evaluations SET {', '.join(f'{c} = ${i + 2}' for i, c in enumerate(cols))} WHERE episode_id = $1",
            v["episode_id"], *(v[c] for c in cols),
        )

    async def get(self, episode_id: UUID) -> Mapping[str, Any] | None:
        return await self.conn.fetchrow("SELECT * FROM evaluations WHERE episode_id = $1", episode_id)

    async def rows(self, *, template_id: str | None, clinician_id: str | None, ended_from: datetime | None,
                   ended_to: datetime | None, scope: ListFilter | None = None) -> list[EvaluationRow]:
        """Evaluations matching the filters, within the caller's ``scope`` (its organisation; a
        clinician without a care-team duty: the episodes assigned to them)."""
        if scope is not None and scope.nothing:
            return []
        scope = scope or ListFilter()
        rows = await self.conn.fetch(
            "SELECT v.* FROM evaluations v JOIN episodes e USING (episode_id)"
            " WHERE ($1::text IS NULL OR v.template_id = $1) AND ($2::text IS NULL OR v.clinician_id = $2)"
            " AND ($3::timestamptz IS NULL OR v.ended_at >= $3) AND ($4::timestamptz IS NULL OR v.ended_at < $4)"
            " AND ($5::text IS NULL OR e.organisation_id = $5)"
            " AND ($6::text IS NULL OR v.clinician_id = $6 OR e.clinician_id = $6)"
            " AND ($7::text IS NULL OR e.person_id = $7)",
            template_id, clinician_id, ended_from, ended_to, scope.organisation_id, scope.assigned_to, scope.person_id,
        )
        return [EvaluationRow(template_id=r["template_id"], clinician_id=r["clinician_id"],
                              finished_course=r["finished_course"], counts_toward_recovery=r["counts_toward_recovery"],
                              recovery=r["recovery"], reliable_recovery=r["reliable_recovery"],
                              reliable_improvement=r["reliable_improvement"],
                              reliable_deterioration=r["reliable_deterioration"], response=r["response"],
                              remission=r["remission"],
                              condition_measures=_detail(r["detail"]).get("condition_measures") or {},
                              measurement=_detail(r["detail"]).get("measurement")) for r in rows]


# ---- access scopes (rapport_shared.http.access) ------------------------------------------------

def _uuid(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None


# The clinicians an episode is assigned to: intake's treating clinician and the course's once
# the scheduler planned it (EpisodeRepository.alert_clinician).
_SCOPE = ("SELECT e.organisation_id, e.person_id, e.clinician_id, c.clinician_id AS course_clinician"
          " FROM episodes e LEFT JOIN courses c USING (episode_id)")


def _scope(r: asyncpg.Record, *extra: str | None) -> RecordScope:
    assigned = {x for x in (r["clinician_id"], r["course_clinician"], *extra) if x}
    return RecordScope(organisation_id=r["organisation_id"], person_id=r["person_id"], assigned=frozenset(assigned))


async def episode_scope(conn: asyncpg.Connection, episode_id: str) -> RecordScope | None:
    """``episode_id`` → its organisation, person and assigned clinicians; None when there is no
    such episode (or the id is not one): the core answers both alike."""
    eid = _uuid(episode_id)
    if eid is None:
        return None
    r = await conn.fetchrow(_SCOPE + " WHERE e.episode_id = $1", eid)
    return _scope(r) if r else None


async def alert_scope(conn: asyncpg.Connection, alert_id: str) -> RecordScope | None:
    """``alert_id`` → its episode's scope, the clinician the alert was raised to assigned too."""
    aid = _uuid(alert_id)
    if aid is None:
        return None
    r = await conn.fetchrow(_SCOPE.replace("SELECT ", "SELECT a.clinician_id AS alert_clinician, ", 1)
                            + " JOIN alerts a ON a.episode_id = e.episode_id WHERE a.alert_id = $1", aid)
    return _scope(r, r["alert_clinician"]) if r else None
