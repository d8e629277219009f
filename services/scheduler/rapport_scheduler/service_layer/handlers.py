"""The scheduler's handlers: one per command, consumed event and timer kind, registered in
``handlers`` (the consumer's subscriptions, the timer runner's kinds and the HTTP bus all come
from it). Each loads through the unit of work's repositories, decides with the pure rules
(``domain.decider``), and writes state, events and timers in that one unit (one transaction).
Configuration comes from ``uow.settings`` (:class:`~rapport_scheduler.settings.SchedulerSettings`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from itertools import count
from typing import Callable
from uuid import UUID, uuid5

from rapport_shared.consumer import PoisonEvent
from rapport_shared.contracts import IntakeCompletedV1
from rapport_shared.contracts.base import EpisodeEventData
from rapport_shared.contracts.intake import Availability
from rapport_shared.contracts.outcomes import OutcomeEvaluatedV1
from rapport_shared.logging import get_logger
from rapport_shared.hours import WorkingHours
from rapport_shared.messagebus import HandlerRegistry
from rapport_shared.timers import Timer

from ..adapters.timers import course_of
from ..domain import commands
from ..domain import decider as D
from ..domain.calendar import BookingRules
from ..domain.course import Course, evolve
from ..domain.errors import InvalidInput, UnknownEntity
from ..metrics import FIRST_SESSION_WAIT_DAYS
from .unit_of_work import SchedulerUnitOfWork

log = get_logger(__name__)

handlers: HandlerRegistry[SchedulerUnitOfWork] = HandlerRegistry()


# -- what every handler shares -----------------------------------------------------------------

def planned_ids(episode_id: UUID) -> Callable[[], UUID]:
    """Course id, then session ids in booking order, all derived from the episode id."""
    n = count()
    return lambda: uuid5(episode_id, f"course-plan/{next(n)}")


def context(uow: SchedulerUnitOfWork, rules: BookingRules | None = None) -> D.Context:
    """What a decision may depend on besides the course: now, the calendar, the settings."""
    s = uow.settings
    return D.Context(now=uow.now(), rules=rules, session_minutes=s.session_minutes, lead_days=s.first_session_lead_days,
                     disengagement_misses=s.disengagement_missed_sessions, initial_notice_grace=s.notice_grace())


async def booking_rules(uow: SchedulerUnitOfWork, *, clinician_id: str, availability: Availability | None,
                        exclude_course: UUID | None) -> BookingRules:
    """The calendar constraints, with the clinician locked until the transaction ends."""
    s = uow.settings
    await uow.calendar.lock_clinician(clinician_id)
    hours = await uow.calendar.clinician_hours(clinician_id) or s.default_hours()
    since = uow.now() - timedelta(days=1)
    patient = WorkingHours.from_weekday_slots(availability.timezone, availability.slots) if availability else hours
    return BookingRules(
        patient=patient, clinician=hours, clinic_timezone=s.clinic_timezone,
        closures=frozenset(await uow.calendar.closures(since.date())),
        busy=tuple(await uow.calendar.busy(clinician_id, since=since, exclude_course=exclude_course)),
        step_minutes=s.booking_step_minutes, horizon_days=s.booking_horizon_days,
    )


async def _commit(uow: SchedulerUnitOfWork, d: D.Decision, *, availability: Availability | None = None,
                  organisation_id: str | None = None, resync: bool = False) -> D.Decision:
    if d.course is None or (d.course == d.before and not resync):
        return d
    await uow.courses.save(d.course, before=d.before, now=uow.now(), availability=availability,
                           organisation_id=organisation_id)
    # Every event of the course names the episode's organisation (partners filter by it, consumers
    # scope by it): the one recorded when the course was planned, else the configured default —
    # the same rule as the access resolvers (access.py). The decider stays pure and org-free.
    org = (organisation_id or await uow.courses.organisation_of(d.course.course_id)
           or uow.settings.default_organisation or None)
    for event in d.events:
        await uow.emit(event.with_organisation(org) if isinstance(event, EpisodeEventData) else event)
    # Timers follow from the state: armed, moved or cancelled in this same transaction.
    await uow.timers.sync(d.course.course_id, D.desired_timers(d.course, uow.settings.notice_grace()),
                          kinds=D.TIMER_KINDS, now=uow.now())
    return d


async def _course(uow: SchedulerUnitOfWork, course_id: UUID, *, books: bool) -> tuple[Course, D.Context]:
    """The course, locked for this transaction, and the context to decide in (with the booking
    rules when the command may book sessions)."""
    course = await uow.courses.get(course_id, for_update=True)
    if course is None:
        raise UnknownEntity(f"no course {course_id}", field="course_id")
    rules = None
    if books:
        rules = await booking_rules(uow, clinician_id=course.clinician_id,
                                    availability=await uow.courses.availability(course_id), exclude_course=course_id)
    return course, context(uow, rules)


# -- events from the other services ------------------------------------------------------------

@handlers.handles(IntakeCompletedV1)
async def plan_course(intake: IntakeCompletedV1, uow: SchedulerUnitOfWork) -> D.Decision | None:
    """Create the course and book its sessions; announce it. One course per episode."""
    if await uow.courses.exists_for_episode(intake.episode_id):
        log.info("course already planned for episode; intake event ignored", episode_id=str(intake.episode_id))
        return None  # the same intake re-sent under a new id (the inbox catches the same id)
    rules = await booking_rules(uow, clinician_id=intake.clinician_id, availability=intake.availability,
                                exclude_course=None)
    # Ids derived from the episode (one course per episode): a replay plans the same course id.
    try:
        d = D.plan(intake, replace(context(uow, rules), new_id=planned_ids(intake.episode_id)))
    except InvalidInput as exc:  # unknown template, no bookable slot: it will never apply
        raise PoisonEvent(f"cannot plan a course: {exc.field}: {exc.message}") from exc
    # Who may see the course (access.py): the episode's organisation, else the configured default.
    await _commit(uow, d, availability=intake.availability,
                  organisation_id=intake.organisation_id or uow.settings.default_organisation or None)
    planned = d.events[0]
    FIRST_SESSION_WAIT_DAYS.labels(planned.template_id).observe(
        (planned.first_session_at - intake.completed_at).total_seconds() / 86400)
    early = await uow.courses.take_early_outcome(intake.episode_id)
    if early is not None:  # its evaluation was read first (topics replayed in another order)
        await record_outcome(early, uow)
    return d


@handlers.handles(OutcomeEvaluatedV1)
async def record_outcome(evaluated: OutcomeEvaluatedV1, uow: SchedulerUnitOfWork) -> None:
    """Outcomes' end-of-course classification: remission decides whether maintenance can be offered."""
    course = await uow.courses.get_by_episode(evaluated.episode_id, for_update=True)
    if course is None:
        # Not planned yet here: kept until the intake event is read (plan_course applies it).
        await uow.courses.keep_early_outcome(evaluated, now=uow.now())
        log.info("outcome evaluation before its course; kept until the course is planned",
                 episode_id=str(evaluated.episode_id))
        return
    if evaluated.course_id is not None and evaluated.course_id != course.course_id:
        log.info("outcome evaluation for an episode without this course; ignored", episode_id=str(evaluated.episode_id))
        return
    await uow.courses.save(evolve(course, evaluated), before=course, now=uow.now())


# -- commands on a course (everything or nothing) ----------------------------------------------

@handlers.handles(commands.AttendSession)
async def attend(cmd: commands.AttendSession, uow: SchedulerUnitOfWork) -> D.Decision:
    course, ctx = await _course(uow, cmd.course_id, books=False)
    return await _commit(uow, D.attend(course, cmd.session_id, ctx))


@handlers.handles(commands.MissSession)
async def miss(cmd: commands.MissSession, uow: SchedulerUnitOfWork) -> D.Decision:
    course, ctx = await _course(uow, cmd.course_id, books=True)
    return await _commit(uow, D.miss(course, cmd.session_id, ctx))


@handlers.handles(commands.RescheduleSession)
async def reschedule(cmd: commands.RescheduleSession, uow: SchedulerUnitOfWork) -> D.Decision:
    course, ctx = await _course(uow, cmd.course_id, books=True)
    return await _commit(uow, D.reschedule(course, cmd.session_id, cmd.starts_at, cmd.reason_code, ctx))


@handlers.handles(commands.CancelSession)
async def cancel(cmd: commands.CancelSession, uow: SchedulerUnitOfWork) -> D.Decision:
    course, ctx = await _course(uow, cmd.course_id, books=True)
    return await _commit(uow, D.cancel(course, cmd.session_id, cmd.cancelled_by, cmd.reason_code, ctx))


@handlers.handles(commands.ChangeContract)
async def change_contract(cmd: commands.ChangeContract, uow: SchedulerUnitOfWork) -> D.Decision:
    course, ctx = await _course(uow, cmd.course_id, books=True)
    return await _commit(uow, D.change_contract(course, cmd.contracted_sessions, cmd.reason_code, ctx))


@handlers.handles(commands.Withdraw)
async def withdraw(cmd: commands.Withdraw, uow: SchedulerUnitOfWork) -> D.Decision:
    course, ctx = await _course(uow, cmd.course_id, books=False)
    return await _commit(uow, D.withdraw(course, cmd.reason, ctx))


@handlers.handles(commands.RecordChecklistItem)
async def record_checklist(cmd: commands.RecordChecklistItem, uow: SchedulerUnitOfWork) -> D.Decision:
    course, ctx = await _course(uow, cmd.course_id, books=False)
    return await _commit(uow, D.record_checklist(course, cmd.item, ctx, diagnosis_code=cmd.diagnosis_code,
                                                 focus=cmd.focus, reason_code=cmd.reason_code))


@handlers.handles(commands.StartMaintenance)
async def start_maintenance(cmd: commands.StartMaintenance, uow: SchedulerUnitOfWork) -> D.Decision:
    course, ctx = await _course(uow, cmd.course_id, books=True)
    return await _commit(uow, D.start_maintenance(course, cmd.sessions, cmd.reason_code, ctx))


@handlers.handles(commands.AddParentSession)
async def add_parent_session(cmd: commands.AddParentSession, uow: SchedulerUnitOfWork) -> D.Decision:
    course, ctx = await _course(uow, cmd.course_id, books=True)
    return await _commit(uow, D.add_parent_session(course, cmd.starts_at, ctx))


# -- time --------------------------------------------------------------------------------------

@handlers.timer(*D.TIMER_KINDS)
async def on_timer(timer: Timer, uow: SchedulerUnitOfWork) -> None:
    """A course timer came due (the runner holds it in this transaction)."""
    course = await uow.courses.get(course_of(timer), for_update=True)
    if course is None:
        return
    await _commit(uow, D.on_timer(course, timer.kind, context(uow)), resync=True)


# -- calendar configuration --------------------------------------------------------------------

@handlers.handles(commands.SetWorkingHours)
async def set_working_hours(cmd: commands.SetWorkingHours, uow: SchedulerUnitOfWork) -> WorkingHours:
    await uow.calendar.set_clinician_hours(cmd.clinician_id, cmd.hours, by=cmd.actor, now=uow.now())
    return cmd.hours


@handlers.handles(commands.AddClosureDay)
async def add_closure(cmd: commands.AddClosureDay, uow: SchedulerUnitOfWork) -> None:
    await uow.calendar.add_closure(cmd.day, cmd.reason_code, by=cmd.actor, now=uow.now())


@handlers.handles(commands.RemoveClosureDay)
async def remove_closure(cmd: commands.RemoveClosureDay, uow: SchedulerUnitOfWork) -> None:
    if not await uow.calendar.remove_closure(cmd.day):
        raise UnknownEntity(f"{cmd.day.isoformat()} is not a closure day", field="day")
