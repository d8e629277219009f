"""Outcomes without Postgres: in-memory repositories with the methods of
``rapport_outcomes.adapters.repository`` and a fake unit of work that owns them, for service-layer
tests of the handlers (as in *Architecture Patterns with Python*).

The rows live in one :class:`Tables` shared by every unit of work of a :class:`FakeOutcomes`, so
a test feeds events and commands one after the other, each in its own unit, as the consumer and
the message bus would. Nothing is rolled back when a handler raises: the handlers refuse before
their first write, and a test can see that they did.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from rapport_outcomes.domain.alerts import OpenAlert
from rapport_outcomes.domain.cohort import EvaluationRow
from rapport_outcomes.domain.evaluation import ScorePoint
from rapport_outcomes.domain.fhir import ExportedSubmission
from rapport_outcomes.domain.fhir_record import CourseSession, Delivery
from rapport_outcomes.domain.measurement import Collected
from rapport_outcomes.domain.model import Baseline, Communication, Episode, Submission
from rapport_outcomes.domain.policy import OutcomesPolicy
from rapport_outcomes.service_layer.handlers import handlers
from rapport_outcomes.service_layer.unit_of_work import OutcomesUnitOfWork
from rapport_outcomes.settings import OutcomesSettings
from rapport_shared.clock import ManualClock
from rapport_shared.contracts.base import EventData
from rapport_shared.contracts.outcomes import AlertKind
from rapport_shared.envelope import CloudEvent, new_event
from rapport_shared.http.access import ListFilter
from rapport_testing.fake_uow import FakeUnitOfWork

# The columns a course row has before any event set them (migrations 0002, 0006, 0007).
COURSE_COLUMNS = ("course_id", "template_id", "clinician_id", "contracted_sessions", "last_attended_number",
                  "review_checked_at", "review_alert_id", "ended_at", "end_reason", "final_phase",
                  "ended_attended_sessions", "updated_at", "phase_plan", "planned_at", "focus_primary",
                  "focus_secondary", "focus_confirmed_at")


@dataclass
class StoredSubmission:
    submission: Submission
    source: str
    submitted_by: str
    submitted_role: str | None
    recorded_seq: int


@dataclass
class Tables:
    """The service's tables, in memory."""

    episodes: dict[UUID, Episode] = field(default_factory=dict)
    submissions: dict[UUID, StoredSubmission] = field(default_factory=dict)
    alerts: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    alert_links: list[dict[str, Any]] = field(default_factory=list)
    alert_audit: list[dict[str, Any]] = field(default_factory=list)
    courses: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    evaluations: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    session_events: set[tuple[UUID, UUID, UUID]] = field(default_factory=set)  # (event, session, episode)
    communications: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    seq: itertools.count = field(default_factory=lambda: itertools.count(1))


class _Fake:
    def __init__(self, tables: Tables) -> None:
        self.t = tables


class FakeEpisodes(_Fake):
    async def get(self, episode_id: UUID, *, lock: bool = False) -> Episode | None:
        return self.t.episodes.get(episode_id)

    async def add(self, e: Episode, opened_at: datetime) -> bool:
        if e.episode_id in self.t.episodes:
            return False
        self.t.episodes[e.episode_id] = e
        return True

    async def alert_clinician(self, episode: Episode) -> str:
        course = self.t.courses.get(episode.episode_id)
        return (course or {}).get("clinician_id") or episode.clinician_id


class FakeSubmissions(_Fake):
    def _of(self, episode_id: UUID) -> list[StoredSubmission]:
        rows = [r for r in self.t.submissions.values() if r.submission.episode_id == episode_id]
        return sorted(rows, key=lambda r: (r.submission.administered_at, r.recorded_seq))

    async def baseline(self, episode_id: UUID, instrument: str, policy: OutcomesPolicy) -> Baseline | None:
        rows = [r.submission for r in self._of(episode_id) if r.submission.instrument == instrument]
        return Baseline(rows[0].submission_id, rows[0].total, rows[0].administered_at) if rows else None

    async def add(self, s: Submission, *, source: str, submitted_by: str, submitted_role: str | None) -> None:
        assert s.submission_id not in self.t.submissions, "submission_id is the primary key"
        assert s.client_submission_id is None or all(
            (r.submission.episode_id, r.submission.client_submission_id) != (s.episode_id, s.client_submission_id)
            for r in self.t.submissions.values()), "one client key per episode"
        # Stored without the alert ids: they are read back from the alerts and their links.
        self.t.submissions[s.submission_id] = StoredSubmission(replace(s, alert_ids=()), source, submitted_by,
                                                               submitted_role, next(self.t.seq))

    async def alert_ids(self, submission_id: UUID) -> tuple[UUID, ...]:
        raised = {a["alert_id"] for a in self.t.alerts.values() if a["submission_id"] == submission_id}
        linked = {link["alert_id"] for link in self.t.alert_links if link["submission_id"] == submission_id}
        return tuple(sorted(raised | linked))

    async def by_client_key(self, episode_id: UUID, key: str, policy: OutcomesPolicy) -> Submission | None:
        for r in self._of(episode_id):
            if r.submission.client_submission_id == key:
                return replace(r.submission, alert_ids=await self.alert_ids(r.submission.submission_id))
        return None

    async def history(self, episode_id: UUID, policy: OutcomesPolicy) -> list[Submission]:
        return [replace(r.submission, alert_ids=await self.alert_ids(r.submission.submission_id))
                for r in self._of(episode_id)]

    async def score_points(self, episode_id: UUID, policy: OutcomesPolicy) -> list[ScorePoint]:
        return [ScorePoint(r.submission.submission_id, r.submission.instrument, r.submission.total,
                           r.submission.administered_at, r.recorded_seq) for r in self._of(episode_id)]

    async def collected(self, episode_id: UUID) -> list[Collected]:
        return [Collected(r.submission.instrument, r.submission.session_number, r.submission.timepoint.value)
                for r in self._of(episode_id)]

    async def exported(self, episode_id: UUID, policy: OutcomesPolicy) -> list[ExportedSubmission]:
        return [ExportedSubmission(submission_id=s.submission_id, instrument=s.instrument, answers=s.answers,
                                   total=s.total, band=s.band, subscales=s.subscales, administered_at=s.administered_at,
                                   scored_at=s.scored_at, session_number=s.session_number)
                for s in await self.history(episode_id, policy)]


class FakeAlerts(_Fake):
    async def open_for(self, episode_id: UUID) -> list[OpenAlert]:
        rows = sorted((a for a in self.t.alerts.values() if a["episode_id"] == episode_id and a["status"] == "open"),
                      key=lambda a: (a["raised_at"], a["alert_id"]))
        return [OpenAlert(a["alert_id"], AlertKind(a["kind"]), a["reason_code"]) for a in rows]

    async def add(self, *, alert_id: UUID, episode_id: UUID, kind: str, urgency: str, reason_code: str,
                  clinician_id: str, submission_id: UUID | None, instrument: str | None, session_number: int | None,
                  raised_at: datetime, linked_alert_ids: tuple[UUID, ...] = ()) -> None:
        assert alert_id not in self.t.alerts, "alert_id is the primary key"
        if kind == "review":  # alerts_one_open_review_per_reason
            assert not any(a["episode_id"] == episode_id and a["kind"] == kind and a["reason_code"] == reason_code
                           and a["status"] == "open" for a in self.t.alerts.values())
        self.t.alerts[alert_id] = dict(
            alert_id=alert_id, episode_id=episode_id, kind=kind, urgency=urgency, reason_code=reason_code,
            clinician_id=clinician_id, submission_id=submission_id, instrument=instrument,
            session_number=session_number, raised_at=raised_at, status="open", resolved_by=None, resolved_role=None,
            resolved_at=None, recorded_at=None, action=None, action_text=None, linked_alert_ids=list(linked_alert_ids))

    async def link(self, alert_id: UUID, submission_id: UUID, at: datetime) -> None:
        if not any((x["alert_id"], x["submission_id"]) == (alert_id, submission_id) for x in self.t.alert_links):
            self.t.alert_links.append(dict(alert_id=alert_id, submission_id=submission_id, linked_at=at))

    async def audit(self, alert_id: UUID, action: str, actor: str, at: datetime, *, actor_role: str | None = None,
                    details: dict[str, Any] | None = None, event_id: str | None = None) -> None:
        self.t.alert_audit.append(dict(
            seq=next(self.t.seq), alert_id=alert_id, action=action, actor=actor, actor_role=actor_role, at=at,
            details=json.dumps(details or {}, default=str), event_id=UUID(event_id) if event_id else None))

    async def get(self, alert_id: UUID, *, lock: bool = False) -> dict[str, Any] | None:
        a = self.t.alerts.get(alert_id)
        return dict(a) if a else None

    async def linked_submissions(self, alert_id: UUID) -> list[dict[str, Any]]:
        return sorted(({"submission_id": x["submission_id"], "linked_at": x["linked_at"]}
                       for x in self.t.alert_links if x["alert_id"] == alert_id), key=lambda x: x["linked_at"])

    async def audit_trail(self, alert_id: UUID) -> list[dict[str, Any]]:
        return [dict(r) for r in self.t.alert_audit if r["alert_id"] == alert_id]

    async def resolve(self, alert_id: UUID, *, by: str, role: str | None, at: datetime, recorded_at: datetime,
                      action: str, text: str | None) -> None:
        a = self.t.alerts[alert_id]
        if a["status"] == "open":
            a.update(status="resolved", resolved_by=by, resolved_role=role, resolved_at=at, recorded_at=recorded_at,
                     action=action, action_text=text)

    async def search(self, *, clinician_id: str | None, status: str | None, kind: str | None,
                     episode_id: UUID | None, limit: int, scope: ListFilter | None = None) -> list[dict[str, Any]]:
        """The filters on the alert's own columns; ``scope`` only as far as ``nothing``."""
        if scope is not None and scope.nothing:
            return []
        rows = [dict(a, linked_count=sum(x["alert_id"] == a["alert_id"] for x in self.t.alert_links))
                for a in self.t.alerts.values()
                if all(v is None or a[k] == v for k, v in (("clinician_id", clinician_id), ("status", status),
                                                          ("kind", kind), ("episode_id", episode_id)))]
        return sorted(rows, key=lambda a: (a["urgency"] != "urgent", a["raised_at"]))[:limit]


class FakeCourses(_Fake):
    def _row(self, episode_id: UUID) -> dict[str, Any]:
        return self.t.courses.setdefault(episode_id, dict({c: None for c in COURSE_COLUMNS}, episode_id=episode_id,
                                                          attended_sessions=0, assessment_sessions=0))

    async def upsert(self, episode_id: UUID, at: datetime, **values: Any) -> None:
        row = self._row(episode_id)
        row.update({k: v for k, v in values.items() if v is not None}, updated_at=at)  # NULL never overwrites

    async def get(self, episode_id: UUID) -> dict[str, Any] | None:
        row = self.t.courses.get(episode_id)
        return dict(row) if row else None

    async def set_focus(self, episode_id: UUID, at: datetime, *, course_id: UUID, primary: str, secondary: str | None,
                        confirmed_at: datetime | None) -> None:
        row = self._row(episode_id)
        row.update(course_id=row["course_id"] or course_id, focus_primary=primary, focus_secondary=secondary,
                   focus_confirmed_at=row["focus_confirmed_at"] or confirmed_at, updated_at=at)

    async def record_attendance(self, episode_id: UUID, *, course_id: UUID, number: int, attended: int,
                                contracted: int, at: datetime, assessment: bool) -> None:
        new = episode_id not in self.t.courses
        row = self._row(episode_id)
        if new:  # the first position seen: known from the start only if it is the first session
            row["assessment_sessions"] = None if attended != 1 else (number if assessment else 0)
        elif row["assessment_sessions"] is not None and assessment:
            row["assessment_sessions"] = max(row["assessment_sessions"], number)
        row["course_id"] = row["course_id"] or course_id
        row["attended_sessions"] = max(row["attended_sessions"] or 0, attended)
        row["last_attended_number"] = max(row["last_attended_number"] or 0, number)
        row.update(contracted_sessions=contracted, updated_at=at)

    async def mark_review_checked(self, episode_id: UUID, at: datetime, alert_id: UUID | None) -> None:
        if episode_id in self.t.courses:
            self.t.courses[episode_id].update(review_checked_at=at, review_alert_id=alert_id)


class FakeSessions(_Fake):
    async def upsert(self, *, session_id: UUID, episode_id: UUID, course_id: UUID | None, number: int, status: str,
                     at: datetime, starts_at: datetime | None = None, duration_minutes: int | None = None,
                     kind: str | None = None, phase: str | None = None, attended_at: datetime | None = None,
                     optional_parent: bool = False) -> None:
        row = self.t.sessions.get(session_id)
        new = dict(session_id=session_id, episode_id=episode_id, course_id=course_id, number=number, status=status,
                   starts_at=starts_at, duration_minutes=duration_minutes, kind=kind, phase=phase,
                   attended_at=attended_at, updated_at=at, optional_parent=optional_parent)
        if row is None:
            self.t.sessions[session_id] = new
            return
        keep = row["status"] == "attended" or status == "booked"  # as the SQL: attended is final
        row.update({k: v for k, v in new.items() if v is not None and k not in ("status", "optional_parent")},
                   status=row["status"] if keep else status, optional_parent=row["optional_parent"] or optional_parent)

    async def of_episode(self, episode_id: UUID) -> list[CourseSession]:
        rows = sorted((r for r in self.t.sessions.values() if r["episode_id"] == episode_id),
                      key=lambda r: (r["number"], r["starts_at"] or datetime.min.replace(tzinfo=timezone.utc)))
        return [CourseSession(**{k: r[k] for k in ("session_id", "number", "starts_at", "duration_minutes", "kind",
                                                  "status", "phase", "attended_at", "optional_parent")}) for r in rows]


class FakeSessionEvents(_Fake):
    async def add(self, event_id: UUID, episode_id: UUID, session_ids: list[UUID]) -> None:
        self.t.session_events |= {(event_id, s, episode_id) for s in session_ids}


class FakeCommunications(_Fake):
    async def record_many(self, rows: list[Communication]) -> None:
        for r in rows:
            row = self.t.communications.get(r.notification_id)
            if row is not None and (row["status"] == "delivered" or r.status != "delivered"):
                continue  # as the SQL: a notification finishes once, "delivered" is never undone
            self.t.communications[r.notification_id] = asdict(r)

    async def of_episode(self, episode_id: UUID) -> list[Delivery]:
        out = []
        for r in sorted((r for r in self.t.communications.values() if r["episode_id"] == episode_id),
                        key=lambda r: (r["at"], str(r["notification_id"]))):
            cause = r["cause_event_id"]
            raised = {a["alert_id"] for a in self.t.alert_audit if a["action"] == "raised" and a["event_id"] == cause}
            submission = next((a["submission_id"] for a in self.t.alerts.values()
                               if a["alert_id"] in raised and a["episode_id"] == episode_id), None)
            evaluation = self.t.evaluations.get(episode_id)
            out.append(Delivery(
                notification_id=r["notification_id"], kind=r["kind"], channel=r["channel"],
                recipient_role=r["recipient_role"], status=r["status"], at=r["at"], error_code=r["error_code"],
                session_ids=tuple(sorted((s for e, s, _ in self.t.session_events if e == cause), key=str)),
                alert_submission_id=submission,
                about_outcome=evaluation is not None and cause is not None and evaluation.get("event_id") == cause))
        return out


class FakeEvaluations(_Fake):
    async def add(self, **v: Any) -> None:
        self.t.evaluations.setdefault(v["episode_id"], dict(v))

    async def replace(self, **v: Any) -> None:
        if v["episode_id"] in self.t.evaluations:
            self.t.evaluations[v["episode_id"]].update(v)

    async def get(self, episode_id: UUID) -> dict[str, Any] | None:
        row = self.t.evaluations.get(episode_id)
        return dict(row) if row else None

    async def rows(self, *, template_id: str | None, clinician_id: str | None, ended_from: datetime | None,
                   ended_to: datetime | None, scope: ListFilter | None = None) -> list[EvaluationRow]:
        if scope is not None and scope.nothing:
            return []
        return [EvaluationRow(**{k: r[k] for k in (
                    "template_id", "clinician_id", "finished_course", "counts_toward_recovery", "recovery",
                    "reliable_recovery", "reliable_improvement", "reliable_deterioration", "response", "remission")},
                              condition_measures=json.loads(r["detail"]).get("condition_measures") or {},
                              measurement=json.loads(r["detail"]).get("measurement"))
                for r in self.t.evaluations.values()
                if (template_id is None or r["template_id"] == template_id)
                and (clinician_id is None or r["clinician_id"] == clinician_id)
                and (ended_from is None or r["ended_at"] >= ended_from)
                and (ended_to is None or r["ended_at"] < ended_to)]


@dataclass
class FakeOutcomesUnitOfWork(FakeUnitOfWork):
    """``OutcomesUnitOfWork`` without a connection: the same repositories, in memory."""

    tables: Tables = field(default_factory=Tables)

    def __post_init__(self) -> None:
        self.episodes = FakeEpisodes(self.tables)
        self.submissions = FakeSubmissions(self.tables)
        self.alerts = FakeAlerts(self.tables)
        self.courses = FakeCourses(self.tables)
        self.evaluations = FakeEvaluations(self.tables)
        self.sessions = FakeSessions(self.tables)
        self.session_events = FakeSessionEvents(self.tables)
        self.communications = FakeCommunications(self.tables)

    # Read from the settings exactly as the real unit does.
    policy = OutcomesUnitOfWork.policy
    default_organisation = OutcomesUnitOfWork.default_organisation


class FakeOutcomes:
    """The service's handlers over one set of in-memory tables: :meth:`deliver` an event as the
    consumer would (its envelope as the unit's cause), :meth:`handle` a command as the bus would.
    ``emitted`` holds every event data model announced so far, ``events`` their envelopes."""

    def __init__(self, settings: OutcomesSettings | None = None, *,
                 now: datetime = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)) -> None:
        self.settings = settings or OutcomesSettings(default_organisation="org-fake")
        self.clock = ManualClock(now)  # one clock for every unit: a test moves it between messages
        self.tables = Tables()
        self.emitted: list[EventData] = []
        self.events: list[CloudEvent] = []
        self.last: FakeOutcomesUnitOfWork | None = None

    def unit(self, cause: CloudEvent | None = None) -> FakeOutcomesUnitOfWork:
        return FakeOutcomesUnitOfWork(clock=self.clock, settings=self.settings, cause=cause, tables=self.tables)

    async def _run(self, message: object, uow: FakeOutcomesUnitOfWork) -> Any:
        self.last = uow
        result = await handlers.dispatch(message, uow)
        uow.committed = True
        self.emitted += uow.emitted
        self.events += uow.events
        return result

    async def deliver(self, data: EventData, *, event_id: str | None = None,
                      correlation_id: str | None = None) -> CloudEvent:
        event = new_event(type=data.event_type, source="/rapport/test", subject=str(getattr(data, "episode_id", "")),
                          data=data, time=self.clock.now(), id=event_id, correlation_id=correlation_id)
        await self._run(data, self.unit(cause=event))
        return event

    async def handle(self, command: object) -> Any:
        return await self._run(command, self.unit())

    def of_type(self, model: type[EventData]) -> list[Any]:
        return [e for e in self.emitted if isinstance(e, model)]
