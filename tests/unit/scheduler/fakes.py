"""The scheduler's unit of work without Postgres: in-memory repositories with the methods of the
real ones (``adapters/repository.py``, ``adapters/calendar.py``, ``adapters/timers.py``) over one
:class:`FakeDatabase`, and :class:`FakeBus`, which runs messages as the real message bus and timer
runner do: each in its own unit, committed when the handler returns, rolled back (the database
as it was) when it raises."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Iterable, Mapping
from uuid import UUID

from rapport_shared.clock import ManualClock
from rapport_shared.contracts.base import EventData
from rapport_shared.contracts.intake import Availability
from rapport_shared.contracts.outcomes import OutcomeEvaluatedV1
from rapport_shared.hours import WorkingHours
from rapport_testing.fake_uow import FakeUnitOfWork
from rapport_shared.timers import Timer
from rapport_scheduler.adapters.timers import timer_key
from rapport_scheduler.domain.course import Course
from rapport_scheduler.service_layer.handlers import handlers
from rapport_scheduler.settings import SchedulerSettings


@dataclass
class FakeDatabase:
    courses: dict[UUID, Course] = field(default_factory=dict)
    availability: dict[UUID, Availability | None] = field(default_factory=dict)
    organisation: dict[UUID, str | None] = field(default_factory=dict)
    early_outcomes: dict[UUID, OutcomeEvaluatedV1] = field(default_factory=dict)
    hours: dict[str, WorkingHours] = field(default_factory=dict)
    closures: dict[date, str | None] = field(default_factory=dict)
    timers: dict[tuple[UUID, str], datetime] = field(default_factory=dict)  # (course, kind) → due
    locked: list[str] = field(default_factory=list)  # clinicians locked for booking, in order


class FakeCourseRepository:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    async def get(self, course_id: UUID, *, for_update: bool = False) -> Course | None:
        return self.db.courses.get(course_id)

    async def get_by_episode(self, episode_id: UUID, *, for_update: bool = False) -> Course | None:
        return next((c for c in self.db.courses.values() if c.episode_id == episode_id), None)

    async def exists_for_episode(self, episode_id: UUID) -> bool:
        return await self.get_by_episode(episode_id) is not None

    async def access_scope(self, *, course_id: UUID | None = None, episode_id: UUID | None = None) -> dict | None:
        c = self.db.courses.get(course_id) if course_id is not None else await self.get_by_episode(episode_id)
        return None if c is None else {"organisation_id": self.db.organisation.get(c.course_id),
                                       "person_id": c.person_id, "clinician_id": c.clinician_id}

    async def organisation_of(self, course_id: UUID) -> str | None:
        return self.db.organisation.get(course_id)

    async def availability(self, course_id: UUID) -> Availability | None:
        return self.db.availability.get(course_id)

    async def save(self, course: Course, *, before: Course | None, now: datetime,
                   availability: Availability | None = None, organisation_id: str | None = None) -> None:
        if before is None:
            self.db.availability[course.course_id] = availability
            self.db.organisation[course.course_id] = organisation_id
        self.db.courses[course.course_id] = course

    async def keep_early_outcome(self, evaluated: OutcomeEvaluatedV1, *, now: datetime) -> None:
        self.db.early_outcomes[evaluated.episode_id] = evaluated

    async def take_early_outcome(self, episode_id: UUID) -> OutcomeEvaluatedV1 | None:
        return self.db.early_outcomes.pop(episode_id, None)


class FakeCalendarRepository:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    async def lock_clinician(self, clinician_id: str) -> None:
        self.db.locked.append(clinician_id)

    async def clinician_hours(self, clinician_id: str) -> WorkingHours | None:
        return self.db.hours.get(clinician_id)

    async def set_clinician_hours(self, clinician_id: str, hours: WorkingHours, *, by: str, now: datetime) -> None:
        self.db.hours[clinician_id] = hours

    async def closures(self, since: date | None = None) -> dict[date, str | None]:
        return {d: r for d, r in sorted(self.db.closures.items()) if since is None or d >= since}

    async def add_closure(self, day: date, reason_code: str | None, *, by: str, now: datetime) -> None:
        self.db.closures[day] = reason_code

    async def remove_closure(self, day: date) -> bool:
        return self.db.closures.pop(day, False) is not False

    async def busy(self, clinician_id: str, *, since: datetime,
                   exclude_course: UUID | None) -> list[tuple[datetime, datetime]]:
        return sorted((s.starts_at, s.ends_at) for c in self.db.courses.values()
                      if c.clinician_id == clinician_id and c.course_id != exclude_course
                      for s in [*c.sessions.values(), *c.extra_sessions.values()] if s.live and s.ends_at > since)


class FakeCourseTimers:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    async def sync(self, course_id: UUID, desired: Mapping[str, datetime | None], *, kinds: Iterable[str],
                   now: datetime) -> None:
        for kind in kinds:
            if desired.get(kind) is None:
                self.db.timers.pop((course_id, kind), None)
            else:
                self.db.timers[(course_id, kind)] = desired[kind]

    async def pending(self, course_id: UUID) -> list[Timer]:
        return sorted((_timer(course_id, kind, due) for (c, kind), due in self.db.timers.items() if c == course_id),
                      key=lambda t: (t.due_at, t.kind))


def _timer(course_id: UUID, kind: str, due: datetime) -> Timer:
    return Timer(uuid.uuid4(), kind, timer_key(course_id), due, {})


def make_settings(**kw: Any) -> SchedulerSettings:
    return SchedulerSettings(service_name="scheduler", db_schema="scheduler", **kw)


@dataclass
class FakeSchedulerUnitOfWork(FakeUnitOfWork):
    db: FakeDatabase = field(default_factory=FakeDatabase)

    def __post_init__(self) -> None:
        if self.settings is None:
            self.settings = make_settings()
        self.courses = FakeCourseRepository(self.db)
        self.calendar = FakeCalendarRepository(self.db)
        self.timers = FakeCourseTimers(self.db)


class FakeBus:
    """Messages through the scheduler's registry, each in its own fake unit over one database."""

    def __init__(self, *, settings: SchedulerSettings | None = None, now: datetime | None = None) -> None:
        self.db = FakeDatabase()
        self.settings = settings or make_settings()
        self.clock = ManualClock(now or datetime(2030, 1, 7, 10, 0, tzinfo=timezone.utc))  # a Monday
        self.emitted: list[EventData] = []  # what committed units emitted, in order
        self.units: list[FakeSchedulerUnitOfWork] = []

    def unit(self) -> FakeSchedulerUnitOfWork:
        return FakeSchedulerUnitOfWork(clock=self.clock, settings=self.settings, db=self.db)

    async def run(self, call) -> Any:
        """``call(uow)`` in a new unit: committed if it returns, the database restored if it raises."""
        uow = self.unit()
        self.units.append(uow)
        before = copy.deepcopy(self.db)
        try:
            result = await call(uow)
        except BaseException:
            self.db.__dict__.update(before.__dict__)  # rolled back
            raise
        uow.committed = True
        self.emitted += uow.emitted
        return result

    async def handle(self, message: object) -> Any:
        """A command or a consumed event, as ``MessageBus.handle`` / the consumer run it."""
        return await self.run(lambda uow: handlers.dispatch(message, uow))

    async def fire_due(self) -> int:
        """Fire every timer due now, as the timer runner does: marked fired (no longer pending)
        in the unit that runs its handler."""
        n = 0
        for (course_id, kind), due in sorted(self.db.timers.items(), key=lambda kv: kv[1]):
            if due > self.clock.now() or self.db.timers.get((course_id, kind)) != due:
                continue

            async def fire(uow, course_id=course_id, kind=kind, due=due) -> None:
                del self.db.timers[(course_id, kind)]
                await handlers.timer_handlers[kind](uow, _timer(course_id, kind, due))

            await self.run(fire)
            n += 1
        return n
