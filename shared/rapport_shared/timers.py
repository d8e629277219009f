"""Durable timers: time-driven effects that survive restarts and work in simulated time.

Anything a service must do *later* (an overdue check, a reminder, an expiry) is a row in its own
schema's ``timers`` table (shared migration ``0001_timers.sql``), written in the same
transaction as the state change that asks for it. A :class:`TimerRunner` fires due timers, one
transaction per timer: it locks the row (``FOR UPDATE SKIP LOCKED``, so several replicas share
the work), marks it fired, runs the handler with a :class:`~rapport_shared.uow.UnitOfWork`
(state + outbox) and commits all three together. A crash before the commit leaves the timer
pending and fires it again after the restart; after the commit it never fires again — the
effect happens exactly once.

Time comes from the runtime's injectable clock (``rapport_shared.clock``): the system clock by
default, or the simulated clock that follows the ``rapport.clock`` topic, so a 16-week course
runs in seconds. "Due" means ``due_at <= clock.now()``; the runner wakes when a timer is
scheduled (Postgres NOTIFY), when simulated time moves, when the next due time comes (system
clock) and at least every ``poll_interval_s``.

Using it in a service::

    async def on_overdue(uow: UnitOfWork, timer: Timer) -> None:    # the effect, in one transaction
        ...

    store = TimerStore(settings.db_schema)                          # in handlers, with uow.conn:
    await store.schedule(uow.conn, "svc.overdue", f"thing:{id}", due_at, now=uow.now())
    await store.cancel(uow.conn, "svc.overdue", f"thing:{id}", now=uow.now())
    await store.sync(uow.conn, f"thing:{id}", {"svc.overdue": due_at}, kinds=["svc.overdue"], now=uow.now())

    runtime = TimedRuntime(settings=..., migrations_dir=..., clock=make_clock(mode, bootstrap=...),
                           timer_handlers={"svc.overdue": on_overdue})

Rules: at most one *pending* timer per ``(kind, key)`` (scheduling again moves it); handlers
must be idempotent with respect to the state they read (check the state, not the timer, decides
what to do); a handler that keeps failing is retried with backoff ``max_attempts`` times, then
the timer is marked failed with the error (visible in the table, logged as an error) instead of
blocking the others.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable, Iterable, Mapping

import asyncpg

from .clock import Clock, wait_changed
from .db import ident
from .faults import crash_point
from .listen import NotifyLoop
from .logging import get_logger
from .metrics import TIMERS_FAILED, TIMERS_FIRED
from .outbox import Outbox
from .runtime import ServiceRuntime
from .uow import UnitOfWork

log = get_logger(__name__)

_PENDING = "fired_at IS NULL AND cancelled_at IS NULL AND failed_at IS NULL"


@dataclass(frozen=True)
class Timer:
    timer_id: uuid.UUID
    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any]
    attempts: int = 0


TimerHandler = Callable[[UnitOfWork, Timer], Awaitable[None]]


def _timer(row: asyncpg.Record) -> Timer:
    payload = row["payload"]
    return Timer(row["timer_id"], row["kind"], row["key"], row["due_at"],
                 json.loads(payload) if isinstance(payload, str) else dict(payload or {}), row["attempts"])


def notify_channel(schema: str) -> str:
    return f"{ident(schema)}_timers"


class TimerStore:
    """SQL for the ``timers`` table of one schema; every method runs on the caller's connection
    (so a timer is armed or cancelled in the transaction of the state change that decides it)."""

    def __init__(self, schema: str) -> None:
        self.schema = ident(schema)
        self.channel = notify_channel(schema)

    async def schedule(self, conn: asyncpg.Connection, kind: str, key: str, due_at: datetime, *,
                       now: datetime, payload: Mapping[str, Any] | None = None) -> None:
        """Arm ``(kind, key)`` at ``due_at``; an already pending one is moved (attempts reset)."""
        if due_at.tzinfo is None:
            raise ValueError("due_at must be timezone-aware")
        body = json.dumps(dict(payload or {}), sort_keys=True, default=str)
        # Always an UPDATE of the pending row, even when nothing changes: it takes the row's lock,
        # so a runner firing this very timer (it holds the lock) finishes first and the row is then
        # no longer pending — a new timer is inserted below and fires with the state this
        # transaction writes. (A no-op that skipped the lock let the firing runner read the state
        # from before this transaction while this re-arm found "already armed" and did nothing.)
        moved = await conn.fetchval(
            f"UPDATE {self.schema}.timers SET due_at = $3, payload = $4::jsonb, updated_at = $5,"
            " attempts = CASE WHEN due_at <> $3 OR payload <> $4::jsonb THEN 0 ELSE attempts END,"
            " last_error = CASE WHEN due_at <> $3 OR payload <> $4::jsonb THEN NULL ELSE last_error END"
            f" WHERE kind = $1 AND key = $2 AND {_PENDING} RETURNING true",
            kind, key, due_at, body, now,
        )
        if not moved:
            moved = await conn.fetchval(
                f"INSERT INTO {self.schema}.timers (timer_id, kind, key, due_at, payload, created_at, updated_at)"
                f" VALUES ($1, $2, $3, $4, $5::jsonb, $6, $6)"
                f" ON CONFLICT (kind, key) WHERE {_PENDING} DO NOTHING RETURNING true",
                uuid.uuid4(), kind, key, due_at, body, now,
            )
        if moved:  # wake the runner (delivered only if this transaction commits)
            await conn.execute("SELECT pg_notify($1, '')", self.channel)

    async def cancel(self, conn: asyncpg.Connection, kind: str, key: str, *, now: datetime) -> bool:
        res = await conn.execute(
            f"UPDATE {self.schema}.timers SET cancelled_at = $3, updated_at = $3 WHERE kind = $1 AND key = $2 AND {_PENDING}",
            kind, key, now,
        )
        return res.split()[-1] != "0"

    async def sync(self, conn: asyncpg.Connection, key: str, desired: Mapping[str, datetime | None], *,
                   kinds: Iterable[str], now: datetime) -> None:
        """Make the pending timers of ``key`` among ``kinds`` exactly ``desired`` (kind → due, None = none).

        Lets a service derive its timers from its state after every change instead of
        tracking each one by hand.
        """
        for kind in kinds:
            due = desired.get(kind)
            if due is None:
                await self.cancel(conn, kind, key, now=now)
            else:
                await self.schedule(conn, kind, key, due, now=now)

    async def pending(self, conn: asyncpg.Connection, key: str | None = None) -> list[Timer]:
        rows = await conn.fetch(
            f"SELECT * FROM {self.schema}.timers WHERE {_PENDING} AND ($1::text IS NULL OR key = $1) ORDER BY due_at, kind",
            key,
        )
        return [_timer(r) for r in rows]

    async def next_due(self, conn: asyncpg.Connection) -> datetime | None:
        return await conn.fetchval(f"SELECT min(due_at) FROM {self.schema}.timers WHERE {_PENDING}")


@dataclass
class TimerRunner:
    """Fires due timers; see the module docstring for the guarantees."""

    pool: asyncpg.Pool
    outbox: Outbox
    clock: Clock
    schema: str
    handlers: Mapping[str, TimerHandler]
    poll_interval_s: float = 1.0
    max_attempts: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    _retry_after: dict[uuid.UUID, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.store = TimerStore(self.schema)
        self._loop = NotifyLoop(self.pool, self.store.channel, poll_interval_s=self.poll_interval_s, what="timer runner")

    async def fire_one(self) -> bool:
        """Fire the earliest due timer, if any; True if one was handled (fired or failed)."""
        now = self.clock.now()
        held_back = [t for t, until in self._retry_after.items() if until > time.monotonic()]
        timer: Timer | None = None
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    f"SELECT * FROM {self.store.schema}.timers WHERE {_PENDING} AND due_at <= $1"
                    " AND NOT (timer_id = ANY($2::uuid[])) ORDER BY due_at, timer_id LIMIT 1 FOR UPDATE SKIP LOCKED",
                    now, held_back,
                )
                if row is None:
                    return False
                timer = _timer(row)
                handler = self.handlers.get(timer.kind)
                if handler is None:
                    raise LookupError(f"no handler for timer kind {timer.kind!r}")
                # Marked first, in the same transaction: a handler re-arming the same (kind, key)
                # creates a new pending timer instead of moving this one.
                await conn.execute(
                    f"UPDATE {self.store.schema}.timers SET fired_at = $2, updated_at = $2, attempts = attempts + 1"
                    " WHERE timer_id = $1", timer.timer_id, now,
                )
                await handler(UnitOfWork(conn, self.outbox, self.clock), timer)
                crash_point("timer.before_commit")
            crash_point("timer.after_commit")
            self._retry_after.pop(timer.timer_id, None)
            TIMERS_FIRED.labels(timer.kind).inc()
            log.info("timer fired", kind=timer.kind, key=timer.key, due_at=timer.due_at.isoformat())
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if timer is None:
                raise  # could not even read the table: the caller's loop backs off
            await self._failed(timer, exc)
            return True

    async def _failed(self, timer: Timer, exc: Exception) -> None:
        attempts = timer.attempts + 1
        final = attempts >= self.max_attempts or isinstance(exc, LookupError)
        async with self.pool.acquire() as conn:
            await conn.execute(
                f"UPDATE {self.store.schema}.timers SET attempts = $2, last_error = $3, updated_at = $4::timestamptz,"
                f" failed_at = CASE WHEN $5::boolean THEN $4::timestamptz END WHERE timer_id = $1 AND {_PENDING}",
                timer.timer_id, attempts, f"{type(exc).__name__}: {exc}"[:4000], self.clock.now(), final,
            )
        if final:
            self._retry_after.pop(timer.timer_id, None)
            TIMERS_FAILED.labels(timer.kind).inc()
            log.error("timer failed for good", kind=timer.kind, key=timer.key, attempts=attempts, error=repr(exc))
        else:
            delay = min(self.backoff_s * 2 ** (attempts - 1), self.backoff_max_s)
            self._retry_after[timer.timer_id] = time.monotonic() + delay
            log.warning("timer handler failed; will retry", kind=timer.kind, key=timer.key, attempts=attempts,
                        retry_in_s=delay, error=repr(exc))

    async def fire_due(self, limit: int = 1000) -> int:
        """Fire every timer due now (up to ``limit``); returns how many were handled."""
        n = 0
        while n < limit and await self.fire_one():
            n += 1
        return n

    async def _sleep_time(self) -> float:
        if getattr(self.clock, "wait_changed", None) is not None:
            return self.poll_interval_s  # simulated time: woken when it moves
        async with self.pool.acquire() as conn:
            nxt = await self.store.next_due(conn)
        if nxt is None:
            return self.poll_interval_s
        return max(0.0, min(self.poll_interval_s, (nxt - self.clock.now()).total_seconds()))

    async def _idle(self) -> None:
        """Until a NOTIFY (a timer was scheduled), the clock moves (simulated time), or the next
        timer is due — whichever comes first."""
        timeout = await self._sleep_time()
        waits = [asyncio.ensure_future(self._loop.wake.wait()), asyncio.ensure_future(wait_changed(self.clock, timeout))]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def run(self) -> None:
        await self._loop.run(self.fire_due, self._idle)

    def stop(self) -> None:
        self._loop.stop()


@dataclass
class TimedRuntime(ServiceRuntime):
    """A :class:`ServiceRuntime` with a timer runner, started with the other background jobs
    and stopped with them (the runtime itself starts a simulated clock before anything else)."""

    timer_handlers: dict[str, TimerHandler] = field(default_factory=dict)
    timer_poll_interval_s: float = 1.0
    timer_max_attempts: int = 5
    timers: TimerRunner | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.timer_handlers:
            self.background.append(self._run_timers)

    async def _run_timers(self, runtime: ServiceRuntime) -> None:
        assert self.pool is not None
        self.timers = TimerRunner(self.pool, self.outbox, self.clock, self.settings.db_schema, self.timer_handlers,
                                  poll_interval_s=self.timer_poll_interval_s, max_attempts=self.timer_max_attempts)
        await self.timers.run()
