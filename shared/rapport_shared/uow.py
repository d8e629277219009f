"""Unit of work: one Postgres transaction holding a state change and the events it causes.

Handlers take a ``UnitOfWork`` (as in *Architecture Patterns with Python*): they read and write
through ``uow.conn``, announce through ``uow.emit`` (the outbox, same transaction) and read time
from ``uow.clock``. Committing the unit commits both, or neither.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Awaitable, Callable, TypeVar

import asyncpg

from .clock import Clock
from .contracts.base import EventData
from .envelope import CloudEvent
from .outbox import Outbox

T = TypeVar("T")


@dataclass
class UnitOfWork:
    conn: asyncpg.Connection
    outbox: Outbox
    clock: Clock
    cause: CloudEvent | None = None  # the event being handled, if any (correlation flows on)
    emitted: list[CloudEvent] = field(default_factory=list)

    def now(self) -> datetime:
        return self.clock.now()

    async def emit(self, data: EventData, *, event_id: str | None = None, correlation_id: str | None = None) -> CloudEvent:
        event = await self.outbox.add(
            self.conn, data, time=self.now(), cause=self.cause, event_id=event_id, correlation_id=correlation_id
        )
        self.emitted.append(event)
        return event


class UnitOfWorkFactory:
    def __init__(self, pool: asyncpg.Pool, outbox: Outbox, clock: Clock) -> None:
        self.pool, self.outbox, self.clock = pool, outbox, clock

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
        return UnitOfWork(conn, self.f.outbox, self.f.clock)

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


async def run_retrying(factory: UnitOfWorkFactory, work: Callable[[UnitOfWork], Awaitable[T]], *,
                       attempts: int = 3, backoff_s: float = 0.05) -> T:
    """``work`` in a unit of work, run again from the start if Postgres aborts it as a deadlock
    victim or a serialization failure (e.g. an HTTP command on a course whose timer fires at that
    moment: the two lock the course and the timer in opposite orders)."""
    for attempt in range(1, attempts + 1):
        try:
            async with factory() as uow:
                return await work(uow)
        except RETRYABLE:
            if attempt == attempts:
                raise
            await asyncio.sleep(backoff_s * attempt)
    raise AssertionError("unreachable")
