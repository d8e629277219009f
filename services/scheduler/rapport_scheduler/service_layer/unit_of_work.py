"""The scheduler's unit of work: one transaction, and the repositories that work in it."""

from __future__ import annotations

from dataclasses import dataclass

from rapport_shared.timers import TimerStore
from rapport_shared.uow import UnitOfWork

from ..adapters.calendar import CalendarRepository
from ..adapters.repository import CourseRepository
from ..adapters.timers import CourseTimers
from ..settings import SchedulerSettings


@dataclass
class SchedulerUnitOfWork(UnitOfWork):
    """``courses`` (courses, sessions, early evaluations), ``calendar`` (working hours, closure
    days, bookings), ``timers`` (the courses' durable timers); ``settings`` is the
    :class:`SchedulerSettings`."""

    settings: SchedulerSettings | None = None

    def __post_init__(self) -> None:
        if self.settings is None:
            raise ValueError("the scheduler's unit of work needs its settings (uow_maker(..., settings=...))")
        self.courses = CourseRepository(self.conn)
        self.calendar = CalendarRepository(self.conn)
        self.timers = CourseTimers(TimerStore(self.settings.db_schema), self.conn)
