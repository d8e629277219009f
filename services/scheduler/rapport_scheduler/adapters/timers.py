"""The courses' durable timers: the shared timer table (``rapport_shared.timers``) on the unit
of work's connection, one key per course, so timers are armed, moved and cancelled in the
transaction of the state change that decides them."""

from __future__ import annotations

from datetime import datetime
from typing import Iterable, Mapping
from uuid import UUID

import asyncpg

from rapport_shared.timers import Timer, TimerStore


def timer_key(course_id: UUID) -> str:
    return f"course:{course_id}"


def course_of(timer: Timer) -> UUID:
    """The course a timer belongs to (its key)."""
    return UUID(timer.key.split(":", 1)[1])


class CourseTimers:
    def __init__(self, store: TimerStore, conn: asyncpg.Connection) -> None:
        self.store, self.conn = store, conn

    async def sync(self, course_id: UUID, desired: Mapping[str, datetime | None], *, kinds: Iterable[str],
                   now: datetime) -> None:
        """Make the course's pending timers of ``kinds`` exactly ``desired`` (kind → due, None = none)."""
        await self.store.sync(self.conn, timer_key(course_id), desired, kinds=kinds, now=now)

    async def pending(self, course_id: UUID) -> list[Timer]:
        """The course's live timers (parked ones with ``parked_at``)."""
        return await self.store.pending(self.conn, timer_key(course_id))
