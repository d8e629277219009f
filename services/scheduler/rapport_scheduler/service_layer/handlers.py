"""Scheduler's use cases: load → decide (pure, ``domain.decider``) → write state, events and timers
in the caller's unit of work (one transaction)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import count
from typing import Callable
from uuid import UUID, uuid5

from rapport_shared.contracts import IntakeCompletedV1
from rapport_shared.contracts.base import EpisodeEventData
from rapport_shared.contracts.intake import Availability
from rapport_shared.contracts.outcomes import OutcomeEvaluatedV1
from rapport_shared.logging import get_logger
from rapport_shared.timers import Timer, TimerStore
from rapport_shared.uow import UnitOfWork

from ..adapters import repository as repo
from ..domain import decider as D
from ..domain.calendar import BookingRules, WeeklyHours
from ..domain.course import Course, evolve
from ..domain.errors import UnknownEntity
from ..metrics import FIRST_SESSION_WAIT_DAYS
from ..settings import SchedulerSettings

log = get_logger(__name__)


@dataclass(frozen=True)
class Deps:
    """The scheduler's configuration and its timer table, shared by every use case."""

    timers: TimerStore
    default_hours: WeeklyHours
    clinic_timezone: str = "Europe/London"
    session_minutes: int = 50
    lead_days: int = 2
    disengagement_misses: int = 3
    step_minutes: int = 15
    horizon_days: int = 1095
    # The organisation of an intake event that names none (older producers); None: no organisation.
    default_organisation: str | None = None
    # When the "initial-phase checklist not complete" notice is due after session i (settings).
    initial_notice_grace: D.NoticeGrace = D.NoticeGrace()

    @classmethod
    def from_settings(cls, s: SchedulerSettings) -> "Deps":
        return cls(
            timers=TimerStore(s.db_schema),
            default_hours=WeeklyHours.from_slots(s.default_working_hours_timezone, s.default_working_hours),
            clinic_timezone=s.clinic_timezone, session_minutes=s.session_minutes, lead_days=s.first_session_lead_days,
            disengagement_misses=s.disengagement_missed_sessions, step_minutes=s.booking_step_minutes,
            horizon_days=s.booking_horizon_days, default_organisation=s.default_organisation or None,
            initial_notice_grace=s.notice_grace(),
        )

    def context(self, now: datetime, rules: BookingRules | None) -> D.Context:
        return D.Context(now=now, rules=rules, session_minutes=self.session_minutes, lead_days=self.lead_days,
                         disengagement_misses=self.disengagement_misses, initial_notice_grace=self.initial_notice_grace)


def planned_ids(episode_id: UUID) -> Callable[[], UUID]:
    """Course id, then session ids in booking order, all derived from the episode id."""
    n = count()
    return lambda: uuid5(episode_id, f"course-plan/{next(n)}")


def timer_key(course_id: UUID) -> str:
    return f"course:{course_id}"


async def booking_rules(uow: UnitOfWork, deps: Deps, *, clinician_id: str, availability: Availability | None,
                        exclude_course: UUID | None) -> BookingRules:
    """The calendar constraints, with the clinician locked until the transaction ends."""
    conn = uow.conn
    await repo.lock_clinician(conn, clinician_id)
    hours = await repo.clinician_hours(conn, clinician_id) or deps.default_hours
    since = uow.now() - timedelta(days=1)
    patient = WeeklyHours.from_slots(availability.timezone, availability.slots) if availability else hours
    return BookingRules(
        patient=patient, clinician=hours, clinic_timezone=deps.clinic_timezone,
        closures=frozenset(await repo.closures(conn, since.date())),
        busy=tuple(await repo.busy(conn, clinician_id, since=since, exclude_course=exclude_course)),
        step_minutes=deps.step_minutes, horizon_days=deps.horizon_days,
    )


async def _commit(uow: UnitOfWork, deps: Deps, d: D.Decision, *, availability: Availability | None = None,
                  organisation_id: str | None = None, resync: bool = False) -> None:
    if d.course is None or (d.course == d.before and not resync):
        return
    await repo.save(uow.conn, d.course, before=d.before, now=uow.now(), availability=availability,
                    organisation_id=organisation_id)
    # Every event of the course names the episode's organisation (partners filter by it, consumers
    # scope by it): the one recorded when the course was planned, else the configured default —
    # the same rule as the access resolvers (access.py). The decider stays pure and org-free.
    org = (organisation_id or await repo.organisation_of(uow.conn, d.course.course_id)
           or deps.default_organisation)
    for event in d.events:
        await uow.emit(event.with_organisation(org) if isinstance(event, EpisodeEventData) else event)
    # Timers follow from the state: armed, moved or cancelled in this same transaction.
    await deps.timers.sync(uow.conn, timer_key(d.course.course_id), D.desired_timers(d.course, deps.initial_notice_grace),
                           kinds=D.TIMER_KINDS, now=uow.now())


async def plan_course(intake: IntakeCompletedV1, uow: UnitOfWork, deps: Deps) -> D.Decision | None:
    """Create the course and book its sessions; announce it. One course per episode."""
    if await repo.exists_for_episode(uow.conn, intake.episode_id):
        log.info("course already planned for episode; intake event ignored", episode_id=str(intake.episode_id))
        return None  # the same intake re-sent under a new id (the inbox catches the same id)
    rules = await booking_rules(uow, deps, clinician_id=intake.clinician_id, availability=intake.availability,
                                exclude_course=None)
    # Ids derived from the episode (one course per episode): a replay plans the same course id.
    d = D.plan(intake, replace(deps.context(uow.now(), rules), new_id=planned_ids(intake.episode_id)))
    # Who may see the course (access.py): the episode's organisation, else the configured default.
    await _commit(uow, deps, d, availability=intake.availability,
                  organisation_id=intake.organisation_id or deps.default_organisation)
    planned = d.events[0]
    FIRST_SESSION_WAIT_DAYS.labels(planned.template_id).observe(
        (planned.first_session_at - intake.completed_at).total_seconds() / 86400)
    early = await uow.conn.fetchval("DELETE FROM early_outcomes WHERE episode_id = $1 RETURNING evaluation",
                                    intake.episode_id)
    if early is not None:  # its evaluation was read first (topics replayed in another order)
        await record_outcome(OutcomeEvaluatedV1.model_validate_json(early), uow, deps)
    return d


async def load(uow: UnitOfWork, course_id: UUID, *, for_update: bool = False) -> Course:
    course = await repo.get(uow.conn, course_id, for_update=for_update)
    if course is None:
        raise UnknownEntity(f"no course {course_id}", field="course_id")
    return course


async def run(uow: UnitOfWork, deps: Deps, course_id: UUID, decide: Callable[[Course, D.Context], D.Decision], *,
              books: bool = True) -> D.Decision:
    """One calendar/phase command on a course: everything or nothing."""
    course = await load(uow, course_id, for_update=True)
    rules = None
    if books:
        rules = await booking_rules(uow, deps, clinician_id=course.clinician_id,
                                    availability=await repo.availability(uow.conn, course_id), exclude_course=course_id)
    d = decide(course, deps.context(uow.now(), rules))
    await _commit(uow, deps, d)
    return d


async def on_timer(uow: UnitOfWork, timer: Timer, *, deps: Deps) -> None:
    """A course timer came due (the runner holds it in this transaction)."""
    course = await repo.get(uow.conn, UUID(timer.key.split(":", 1)[1]), for_update=True)
    if course is None:
        return
    d = D.on_timer(course, timer.kind, deps.context(uow.now(), None))
    await _commit(uow, deps, d, resync=True)


async def record_outcome(evaluated: OutcomeEvaluatedV1, uow: UnitOfWork, deps: Deps) -> None:
    """Outcomes' end-of-course classification: remission decides whether maintenance can be offered."""
    course = await repo.get_by_episode(uow.conn, evaluated.episode_id, for_update=True)
    if course is None:
        # Not planned yet here: kept until the intake event is read (plan_course applies it).
        await uow.conn.execute(
            "INSERT INTO early_outcomes (episode_id, evaluation, received_at) VALUES ($1, $2::jsonb, $3)"
            " ON CONFLICT (episode_id) DO UPDATE SET evaluation = EXCLUDED.evaluation, received_at = EXCLUDED.received_at",
            evaluated.episode_id, evaluated.model_dump_json(), uow.now())
        log.info("outcome evaluation before its course; kept until the course is planned",
                 episode_id=str(evaluated.episode_id))
        return
    if evaluated.course_id is not None and evaluated.course_id != course.course_id:
        log.info("outcome evaluation for an episode without this course; ignored", episode_id=str(evaluated.episode_id))
        return
    await repo.save(uow.conn, evolve(course, evaluated), before=course, now=uow.now())
