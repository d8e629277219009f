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

Rules: at most one *live* timer per ``(kind, key)`` (pending or parked; scheduling again moves
it); handlers must be idempotent with respect to the state they read (check the state, not the
timer, decides what to do).

When a firing fails (docs/architecture.md, "Durable timers"), the error is classified with the
shared retry policy (``rapport_shared.retry.is_infrastructure_error``):

- **an outage** (Postgres or Kafka unreachable: no connection, the connection lost mid-transaction,
  connection-class SQLSTATEs): the timer stays pending and is retried with jittered backoff
  (capped at ``outage_backoff_max_s``) *until it succeeds*; nothing is counted against it
  (``rapport_timers_retried_total{cause="outage"}``);
- **anything else** (a bug, a constraint violation, a ``ValueError``): retried with jittered
  backoff up to ``max_attempts`` times in all (``attempts`` in the row, so across restarts and
  replicas), then the timer is **parked**: ``parked_at`` and ``last_error`` set (shared migration
  ``0004_timers_parked.sql``), skipped by the runner without blocking the others, counted in the
  gauge ``rapport_timers_parked{kind}`` (alert ``RapportTimerParked``) and logged as an error. A
  timer with no handler for its kind is parked at once. ``rapport timers parked|show|retry|cancel``
  lists it, fires it again (after the cause is fixed) or cancels it; a service re-arming it at
  another time or with another payload unparks it, and cancelling it from the state cancels it.
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
from .metrics import TIMERS_FIRED, TIMERS_PARKED, TIMERS_PARKED_TOTAL, TIMERS_RETRIED
from .outbox import Outbox
from .retry import CONTENTION_ERRORS, RetryPolicy, is_infrastructure_error, pooled_connection
from .runtime import ServiceRuntime
from .uow import UnitOfWork

log = get_logger(__name__)

# Live: the one timer of its (kind, key) (index timers_one_pending; failed_at is only set on rows
# given up by versions before parking). Pending: live and not parked, what the runner fires.
def _live(alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return " AND ".join(f"{prefix}{c} IS NULL" for c in ("fired_at", "cancelled_at", "failed_at"))


_LIVE = _live()
_PENDING = f"{_LIVE} AND parked_at IS NULL"
_PARKED = f"{_LIVE} AND parked_at IS NOT NULL"
MAX_ERROR_CHARS = 4000


class NoHandler(LookupError):
    """A due timer of a kind the runner has no handler for: parked at once."""


@dataclass(frozen=True)
class Timer:
    timer_id: uuid.UUID
    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any]
    attempts: int = 0
    parked_at: datetime | None = None


@dataclass(frozen=True)
class Plan:
    """A timer to arm: ``TimerStore.schedule_many`` takes several at once."""

    kind: str
    key: str
    due_at: datetime
    payload: Mapping[str, Any] = field(default_factory=dict)


TimerHandler = Callable[[UnitOfWork, Timer], Awaitable[None]]


def _timer(row: asyncpg.Record) -> Timer:
    payload = row["payload"]
    return Timer(row["timer_id"], row["kind"], row["key"], row["due_at"],
                 json.loads(payload) if isinstance(payload, str) else dict(payload or {}), row["attempts"],
                 row.get("parked_at"))


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
        """Arm ``(kind, key)`` at ``due_at``; an already live one is moved (attempts reset). A parked
        one moved to another time or payload is unparked (the state asks for it anew); armed again
        as it was, it stays parked."""
        await self.schedule_many(conn, [Plan(kind, key, due_at, payload or {})], now=now)

    async def schedule_many(self, conn: asyncpg.Connection, plans: Iterable[Plan], *, now: datetime) -> None:
        """``schedule`` for several timers of distinct (kind, key), in three statements whatever
        their number (a course arms two per session)."""
        plans = list(plans)
        if not plans:
            return
        if len({(p.kind, p.key) for p in plans}) != len(plans):
            raise ValueError("schedule_many takes each (kind, key) once")
        if any(p.due_at.tzinfo is None for p in plans):
            raise ValueError("due_at must be timezone-aware")
        kinds, keys, dues = [p.kind for p in plans], [p.key for p in plans], [p.due_at for p in plans]
        bodies = [json.dumps(dict(p.payload), sort_keys=True, default=str) for p in plans]
        # The live ones are moved. Always an UPDATE of the pending row, even when nothing changes: it
        # takes the row's lock, so a runner firing this very timer (it holds the lock) finishes first
        # and the row is then no longer pending — a new timer is inserted below and fires with the
        # state this transaction writes. (A no-op that skipped the lock let the firing runner read the
        # state from before this transaction while this re-arm found "already armed" and did nothing.)
        moved = await conn.fetch(
            f"UPDATE {self.schema}.timers t SET due_at = v.due_at, payload = v.body::jsonb, updated_at = $5,"
            " attempts = CASE WHEN t.due_at <> v.due_at OR t.payload <> v.body::jsonb THEN 0 ELSE t.attempts END,"
            " last_error = CASE WHEN t.due_at <> v.due_at OR t.payload <> v.body::jsonb THEN NULL ELSE t.last_error END,"
            " parked_at = CASE WHEN t.due_at <> v.due_at OR t.payload <> v.body::jsonb THEN NULL ELSE t.parked_at END"
            " FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]) AS v(kind, key, due_at, body)"
            f" WHERE t.kind = v.kind AND t.key = v.key AND {_live('t')} RETURNING t.kind, t.key",
            kinds, keys, dues, bodies, now,
        )
        done = {(r["kind"], r["key"]) for r in moved}
        rest = [i for i, p in enumerate(plans) if (p.kind, p.key) not in done]
        inserted = []
        if rest:  # ... and the others inserted
            inserted = await conn.fetch(
                f"INSERT INTO {self.schema}.timers (timer_id, kind, key, due_at, payload, created_at, updated_at)"
                " SELECT v.timer_id, v.kind, v.key, v.due_at, v.body::jsonb, $6, $6"
                " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])"
                " AS v(timer_id, kind, key, due_at, body)"
                f" ON CONFLICT (kind, key) WHERE {_LIVE} DO NOTHING RETURNING true",
                [uuid.uuid4() for _ in rest], [kinds[i] for i in rest], [keys[i] for i in rest],
                [dues[i] for i in rest], [bodies[i] for i in rest], now,
            )
        if moved or inserted:  # wake the runner (delivered only if this transaction commits)
            await conn.execute("SELECT pg_notify($1, '')", self.channel)

    async def cancel(self, conn: asyncpg.Connection, kind: str, key: str, *, now: datetime) -> bool:
        """Cancel the live timer of ``(kind, key)``, pending or parked (the state no longer wants it)."""
        res = await conn.execute(
            f"UPDATE {self.schema}.timers SET cancelled_at = $3, updated_at = $3 WHERE kind = $1 AND key = $2 AND {_LIVE}",
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
        """The live timers (of ``key``): pending, and parked ones (``parked_at`` set)."""
        rows = await conn.fetch(
            f"SELECT * FROM {self.schema}.timers WHERE {_LIVE} AND ($1::text IS NULL OR key = $1) ORDER BY due_at, kind",
            key,
        )
        return [_timer(r) for r in rows]

    async def next_due(self, conn: asyncpg.Connection, exclude: list[uuid.UUID] | None = None) -> datetime | None:
        return await conn.fetchval(f"SELECT min(due_at) FROM {self.schema}.timers WHERE {_PENDING}"
                                   " AND NOT (timer_id = ANY($1::uuid[]))", list(exclude or []))

    async def parked_counts(self, conn: asyncpg.Connection) -> dict[str, int]:
        rows = await conn.fetch(f"SELECT kind, count(*) AS n FROM {self.schema}.timers WHERE {_PARKED} GROUP BY kind")
        return {r["kind"]: r["n"] for r in rows}


@dataclass
class TimerRunner:
    """Fires due timers; see the module docstring for the guarantees."""

    pool: asyncpg.Pool
    outbox: Outbox
    clock: Clock
    schema: str
    handlers: Mapping[str, TimerHandler]
    poll_interval_s: float = 1.0
    max_attempts: int = 8                # handler errors, in all, before the timer is parked
    backoff_s: float = 0.5               # first wait after a failure (jittered exponential backoff)
    backoff_max_s: float = 60.0          # cap of the wait between handler-error retries
    outage_backoff_max_s: float = 10.0   # cap while Postgres/Kafka is unreachable (retried without end)
    make_uow: Callable[..., UnitOfWork] | None = None  # the service's unit of work (default: the plain one)
    _retry_after: dict[uuid.UUID, float] = field(default_factory=dict)
    _outages: dict[uuid.UUID, int] = field(default_factory=dict)
    _gauge_kinds: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.store = TimerStore(self.schema)
        self._loop = NotifyLoop(self.pool, self.store.channel, poll_interval_s=self.poll_interval_s, what="timer runner")
        self._errors = RetryPolicy(max_attempts=self.max_attempts, initial_s=self.backoff_s, max_s=self.backoff_max_s)
        self._outage = RetryPolicy(initial_s=self.backoff_s, max_s=min(self.backoff_max_s, self.outage_backoff_max_s))

    def _held_back(self) -> list[uuid.UUID]:
        now = time.monotonic()
        return [t for t, until in self._retry_after.items() if until > now]

    async def fire_one(self) -> bool:
        """Fire the earliest due timer, if any; True if one was handled (fired, retried later or
        parked). Raises when no timer could even be read (the run loop backs off and tries again)."""
        now = self.clock.now()
        held_back = self._held_back()
        timer: Timer | None = None
        error: Exception | None = None
        outage = False
        async with pooled_connection(self.pool) as conn:
            try:
                async with conn.transaction():
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
                        raise NoHandler(f"no handler for timer kind {timer.kind!r}")
                    # Marked first, in the same transaction: a handler re-arming the same (kind, key)
                    # creates a new pending timer instead of moving this one.
                    await conn.execute(
                        f"UPDATE {self.store.schema}.timers SET fired_at = $2, updated_at = $2, attempts = attempts + 1"
                        " WHERE timer_id = $1", timer.timer_id, now,
                    )
                    await handler(self.make_uow(conn, None) if self.make_uow else UnitOfWork(conn, self.outbox, self.clock), timer)
                    crash_point("timer.before_commit")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if timer is None:
                    raise  # could not even read the table: the caller's loop backs off
                error, outage = exc, is_infrastructure_error(exc, conn)
        if error is not None:
            assert timer is not None
            if outage:
                self._retry_outage(timer, error)
            else:
                await self._failed(timer, error)
            return True
        crash_point("timer.after_commit")
        self._retry_after.pop(timer.timer_id, None)
        self._outages.pop(timer.timer_id, None)
        TIMERS_FIRED.labels(timer.kind).inc()
        log.info("timer fired", kind=timer.kind, key=timer.key, due_at=timer.due_at.isoformat())
        return True

    def _retry_outage(self, timer: Timer, exc: Exception) -> None:
        """Postgres or Kafka went away while firing: the transaction is gone, the timer still
        pending with its attempts unchanged. Held back with jittered backoff, then tried again,
        for as long as the outage lasts."""
        n = self._outages[timer.timer_id] = self._outages.get(timer.timer_id, 0) + 1
        delay = self._outage.delay(n)
        self._retry_after[timer.timer_id] = time.monotonic() + delay
        TIMERS_RETRIED.labels(timer.kind, "outage").inc()
        log.warning("timer firing hit an outage (Postgres/Kafka unreachable); retrying until it is back",
                    kind=timer.kind, key=timer.key, outages=n, retry_in_s=round(delay, 3),
                    error=repr(getattr(exc, "cause", exc))[:MAX_ERROR_CHARS])

    async def _failed(self, timer: Timer, exc: Exception) -> None:
        attempts = timer.attempts + 1
        limit = self._errors.contention_attempts if isinstance(exc, CONTENTION_ERRORS) else self.max_attempts
        reason = "no_handler" if isinstance(exc, NoHandler) else "attempts"
        park = reason == "no_handler" or attempts >= limit
        # If this write fails (the database went away just now) the error reaches the run loop,
        # which backs off; the attempt is then not counted.
        async with self.pool.acquire() as conn:
            await conn.execute(
                f"UPDATE {self.store.schema}.timers SET attempts = $2, last_error = $3, updated_at = $4::timestamptz,"
                f" parked_at = CASE WHEN $5::boolean THEN $4::timestamptz END WHERE timer_id = $1 AND {_PENDING}",
                timer.timer_id, attempts, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS], self.clock.now(), park,
            )
        if park:
            self._retry_after.pop(timer.timer_id, None)
            self._outages.pop(timer.timer_id, None)
            TIMERS_PARKED_TOTAL.labels(timer.kind, reason).inc()
            TIMERS_PARKED.labels(timer.kind).inc()  # set exactly by the next refresh
            self._gauge_kinds.add(timer.kind)
            log.error("timer parked: its effect waits for an operator (`rapport timers parked`)", kind=timer.kind,
                      key=timer.key, timer_id=str(timer.timer_id), attempts=attempts, reason=reason,
                      error=repr(exc)[:MAX_ERROR_CHARS])
        else:
            delay = self._errors.delay(attempts)
            self._retry_after[timer.timer_id] = time.monotonic() + delay
            TIMERS_RETRIED.labels(timer.kind, "error").inc()
            log.warning("timer handler failed; will retry", kind=timer.kind, key=timer.key, attempts=attempts,
                        max_attempts=limit, retry_in_s=round(delay, 3), error=repr(exc)[:MAX_ERROR_CHARS])

    async def refresh_parked(self) -> dict[str, int]:
        """Set ``rapport_timers_parked{kind}`` from the table (parked, retried or cancelled by
        an operator in the meantime: the table is the truth)."""
        async with self.pool.acquire() as conn:
            counts = await self.store.parked_counts(conn)
        self._gauge_kinds |= set(counts)
        for kind in self._gauge_kinds | set(self.handlers):
            TIMERS_PARKED.labels(kind).set(counts.get(kind, 0))
        return counts

    async def fire_due(self, limit: int = 1000) -> int:
        """Fire every timer due now (up to ``limit``); returns how many were handled."""
        n = 0
        while n < limit and await self.fire_one():
            n += 1
        await self.refresh_parked()
        return n

    async def _sleep_time(self) -> float:
        """Until the next due timer, the end of the nearest retry wait, or the poll interval."""
        mono = time.monotonic()
        waits = [until - mono for until in self._retry_after.values() if until > mono]
        cap = min([self.poll_interval_s, *waits])
        if getattr(self.clock, "wait_changed", None) is not None:
            return cap  # simulated time: woken when it moves
        async with self.pool.acquire() as conn:
            nxt = await self.store.next_due(conn, self._held_back())  # held-back timers: their retry wait
        if nxt is None:
            return cap
        return max(0.0, min(cap, (nxt - self.clock.now()).total_seconds()))

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
    timer_max_attempts: int | None = None  # default: the settings' (RAPPORT_TIMER_MAX_ATTEMPTS)
    timers: TimerRunner | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.handlers is not None:
            self.timer_handlers = {**self.handlers.timer_handlers, **self.timer_handlers}
        if self.timer_handlers:
            self.background.append(self._run_timers)

    async def _run_timers(self, runtime: ServiceRuntime) -> None:
        assert self.pool is not None
        s = self.settings
        self.timers = TimerRunner(self.pool, self.outbox, self.clock, s.db_schema, self.timer_handlers,
                                  poll_interval_s=self.timer_poll_interval_s,
                                  max_attempts=self.timer_max_attempts or s.timer_max_attempts,
                                  backoff_s=s.timer_backoff_s, backoff_max_s=s.timer_backoff_max_s,
                                  make_uow=self.make_uow)
        await self.timers.run()


# ------------------------------------------------------------------ operator side (rapport timers)

_ROW_COLUMNS = ("timer_id, kind, key, due_at, payload, created_at, updated_at, attempts, last_error, parked_at,"
                " fired_at, cancelled_at, failed_at")


def _row(r: asyncpg.Record) -> dict:
    d = dict(r)
    d["payload"] = json.loads(d["payload"]) if isinstance(d["payload"], str) else d["payload"]
    return d


def _timer_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a timer id (a UUID, as `rapport timers parked` lists them)") from None


async def parked_timers(conn: asyncpg.Connection, schema: str, kind: str | None = None) -> list[dict]:
    """Parked timers (of ``kind``), oldest first."""
    rows = await conn.fetch(f"SELECT {_ROW_COLUMNS} FROM {ident(schema)}.timers WHERE {_PARKED}"
                            " AND ($1::text IS NULL OR kind = $1) ORDER BY parked_at, timer_id", kind)
    return [_row(r) for r in rows]


async def timer_status(conn: asyncpg.Connection, schema: str) -> dict[str, int]:
    row = await conn.fetchrow(
        f"SELECT count(*) FILTER (WHERE parked_at IS NULL) AS pending,"
        f" count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked,"
        f" count(*) FILTER (WHERE parked_at IS NULL AND attempts > 0) AS failing"
        f" FROM {ident(schema)}.timers WHERE {_LIVE}")
    return dict(row)


async def timer_row(conn: asyncpg.Connection, schema: str, timer_id: str) -> dict | None:
    row = await conn.fetchrow(f"SELECT {_ROW_COLUMNS} FROM {ident(schema)}.timers WHERE timer_id = $1",
                              _timer_id(timer_id))
    return None if row is None else _row(row)


async def retry_parked(conn: asyncpg.Connection, schema: str, timer_ids: list[str] | None,
                       kind: str | None = None) -> list[uuid.UUID]:
    """Unpark timers (every parked one, or of ``kind``, when ``timer_ids`` is None): due as they
    were, so the runner fires them next, with a fresh attempt count (``last_error`` kept until it
    fires or fails again). Returns the ids unparked."""
    s = ident(schema)
    ids = None if timer_ids is None else [_timer_id(t) for t in timer_ids]
    async with conn.transaction():
        rows = await conn.fetch(
            f"UPDATE {s}.timers SET parked_at = NULL, attempts = 0, updated_at = now() WHERE {_PARKED}"
            " AND ($1::uuid[] IS NULL OR timer_id = ANY($1::uuid[])) AND ($2::text IS NULL OR kind = $2)"
            " RETURNING timer_id, kind, key", ids, kind)
        if rows:
            await conn.execute("SELECT pg_notify($1, '')", notify_channel(schema))
    for r in rows:
        log.warning("parked timer retried by an operator", timer_id=str(r["timer_id"]), kind=r["kind"], key=r["key"])
    return [r["timer_id"] for r in rows]


async def cancel_parked(conn: asyncpg.Connection, schema: str, timer_id: str, *, apply: bool) -> dict | None:
    """Cancel a parked timer for good (its effect never happens). Only a parked timer can be
    cancelled here. Returns it; changed only when ``apply``."""
    s = ident(schema)
    async with conn.transaction():
        row = await conn.fetchrow(f"SELECT {_ROW_COLUMNS} FROM {s}.timers WHERE timer_id = $1 AND {_PARKED} FOR UPDATE",
                                  _timer_id(timer_id))
        if row is None:
            return None
        if apply:
            await conn.execute(f"UPDATE {s}.timers SET cancelled_at = now(), updated_at = now() WHERE timer_id = $1",
                               row["timer_id"])
            log.warning("parked timer cancelled by an operator", timer_id=str(row["timer_id"]), kind=row["kind"],
                        key=row["key"])
    return _row(row)
