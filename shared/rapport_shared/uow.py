"""Unit of work: one Postgres transaction holding a state change and the events it causes.

Handlers take a ``UnitOfWork`` (as in *Architecture Patterns with Python*): they read and write
through the service's repositories (a service subclasses ``UnitOfWork`` and builds them on
``conn`` in ``__post_init__``), announce through ``uow.emit`` (the outbox, same transaction), read
time from ``uow.now()`` and configuration from ``uow.settings``. Committing the unit commits
state and events, or neither. Everything that opens a unit (consumer, timer runner, HTTP bus)
builds it through one ``make_uow(conn, cause)``, so every path gets the service's class.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable, TypeVar

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from .clock import Clock
from .contracts.base import EventData
from .envelope import CloudEvent
from .outbox import Outbox
from .retry import RetryPolicy

T = TypeVar("T")


@dataclass
class UnitOfWork:
    conn: asyncpg.Connection
    outbox: Outbox
    clock: Clock
    cause: CloudEvent | None = None  # the event being handled, if any (correlation flows on)
    settings: Any = None  # the service's settings (handlers read configuration here)
    emitted: list[CloudEvent] = field(default_factory=list)

    def now(self) -> datetime:
        return self.clock.now()

    async def emit(self, data: EventData, *, event_id: str | None = None, correlation_id: str | None = None) -> CloudEvent:
        event = await self.outbox.add(
            self.conn, data, time=self.now(), cause=self.cause, event_id=event_id, correlation_id=correlation_id
        )
        self.emitted.append(event)
        return event


MakeUnitOfWork = Callable[[asyncpg.Connection, "CloudEvent | None"], UnitOfWork]


def uow_maker(outbox: Outbox, clock: Clock, uow_class: type[UnitOfWork] = UnitOfWork,
              settings: Any = None) -> MakeUnitOfWork:
    """``make_uow(conn, cause)`` for a service: its unit-of-work class, outbox, clock and settings."""

    def make(conn: asyncpg.Connection, cause: CloudEvent | None = None) -> UnitOfWork:
        return uow_class(conn, outbox, clock, cause=cause, settings=settings)

    return make


class UnitOfWorkFactory:
    def __init__(self, pool: asyncpg.Pool, outbox: Outbox, clock: Clock, *,
                 make_uow: MakeUnitOfWork | None = None) -> None:
        self.pool, self.outbox, self.clock = pool, outbox, clock
        self.make_uow = make_uow or uow_maker(outbox, clock)

    def __call__(self) -> "_Scope":
        return _Scope(self)


class _Scope:
    def __init__(self, factory: UnitOfWorkFactory) -> None:
        self.f = factory

    async def __aenter__(self) -> UnitOfWork:
        self._conn_cm = self.f.pool.acquire()
        conn = await self._conn_cm.__aenter__()
        self._tx = conn.transaction()
        await self._tx.start()
        return self.f.make_uow(conn, None)

    async def __aexit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                await self._tx.commit()
            else:
                await self._tx.rollback()
        finally:
            await self._conn_cm.__aexit__(exc_type, exc, tb)


# Postgres gave up on the transaction, not on the work: running it again is safe and usually works.
RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)


# Deadlock victims go again at once-ish: short, jittered waits so the two do not collide again.
CONTENTION = RetryPolicy(max_attempts=3, initial_s=0.05, max_s=0.5)


async def run_retrying(factory: UnitOfWorkFactory, work: Callable[[UnitOfWork], Awaitable[T]], *,
                       attempts: int = 3, backoff_s: float = 0.05) -> T:
    """``work`` in a unit of work, run again from the start if Postgres aborts it as a deadlock
    victim or a serialization failure (e.g. an HTTP command on a course whose timer fires at that
    moment: the two lock the course and the timer in opposite orders)."""
    policy = CONTENTION if (attempts, backoff_s) == (3, 0.05) else RetryPolicy(max_attempts=attempts, initial_s=backoff_s)
    async for attempt in AsyncRetrying(retry=retry_if_exception_type(RETRYABLE), stop=stop_after_attempt(policy.max_attempts),
                                       wait=policy.wait(), sleep=asyncio.sleep, reraise=True):
        with attempt:
            async with factory() as uow:
                return await work(uow)
    raise AssertionError("unreachable")
