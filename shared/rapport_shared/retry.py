"""The shared retry policy: which errors are "the infrastructure is down" and how long to wait.

Two kinds of failure are retried, differently (architecture.md, "Delivery guarantees"):

- **Infrastructure unavailable** (``InfrastructureUnavailable``): Postgres or Kafka cannot be
  reached. Retried *without bound*: the work is fine, the world is not; skipping it would lose it.
- **Anything else** (a bug, a constraint violation, a plain ``OSError`` or ``TimeoutError`` raised
  by handler code, ``asyncpg.InterfaceError`` from misuse of a connection): retried a *bounded*
  number of times (``max_attempts``), then given up (the caller dead-letters or parks it).

Both wait with capped exponential backoff plus random jitter (tenacity's
``wait_exponential_jitter``), so many consumers failing together do not retry in lock step.

What counts as infrastructure, precisely (``is_infrastructure_error``):

- no database connection could be obtained at all (any error from ``pool.acquire()``, e.g.
  ``ConnectionRefusedError``, DNS failure, connect timeout, "the database system is starting up");
  the caller wraps these itself, because only it knows the error came from acquiring;
- the connection the work used is closed when the error surfaces (Postgres died or restarted
  mid-transaction; asyncpg then raises ``ConnectionDoesNotExistError``, or an ``InterfaceError``
  from the rollback, and its pool detaches the proxy the caller holds);
- ``asyncpg.PostgresConnectionError`` (SQLSTATE class 08), ``CannotConnectNowError`` (57P03),
  ``AdminShutdownError`` / ``CrashShutdownError`` (57P01/57P02: the server is going away),
  ``TooManyConnectionsError`` (53300);
- any of those found in the error's ``__cause__``/``__context__`` chain (a failed rollback on a
  dead connection hides the real error there);
- a *retriable* Kafka error (``aiokafka.errors.KafkaError`` with ``retriable``, e.g.
  ``KafkaConnectionError``, ``NodeNotReadyError``, ``KafkaTimeoutError``).

Deliberately NOT infrastructure: ``OSError``, ``TimeoutError``, ``ConnectionError`` or
``asyncpg.InterfaceError`` raised while the connection is healthy — those come from handler code
(an HTTP call, a file, a misuse of the connection) and retrying them forever would stop the
partition behind one record. Serialization failures and deadlocks are transient contention, not
an outage: they are retried like handler errors (bounded), with their own larger budget.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import asyncpg
from aiokafka.errors import KafkaError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter


class InfrastructureUnavailable(Exception):
    """Postgres or Kafka cannot be reached right now; ``__cause__`` is the original error."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


@asynccontextmanager
async def pooled_connection(pool: Any) -> AsyncIterator[Any]:
    """A connection from ``pool`` for one try: failing to get one at all is an outage
    (``InfrastructureUnavailable``), and it goes back to the pool even when it was lost (a
    connection that cannot be reset is replaced by the pool)."""
    try:
        conn = await pool.acquire()
    except Exception as exc:  # no connection at all: the database is down or unreachable
        raise InfrastructureUnavailable(exc) from exc
    try:
        yield conn
    finally:
        try:
            await pool.release(conn)
        except Exception:
            pass


_PG_SERVER_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
)
CONTENTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
)


def _connection_lost(conn: Any) -> bool:
    """The connection is closed — or, for a pool's proxy, detached: asyncpg's pool takes back a
    connection whose socket was lost, even while the caller still holds the proxy."""
    if conn is None:
        return False
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return getattr(conn, "_con", object()) is None
    except Exception:
        return False


def _chain(exc: BaseException):
    """``exc`` and what it was raised from or while handling (a rollback that fails on a dead
    connection hides the connection error in ``__context__``)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen and len(seen) < 16:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_infrastructure_error(exc: BaseException, conn: Any = None) -> bool:
    """True when ``exc`` means "Postgres/Kafka is unreachable" (see the module docstring).

    ``conn``: the database connection the failed work ran on, if any; an error that leaves it
    closed is a lost connection whatever its type."""
    if isinstance(exc, InfrastructureUnavailable):
        return True
    if isinstance(exc, Exception) and _connection_lost(conn):
        return True
    for e in _chain(exc):
        if isinstance(e, _PG_SERVER_UNAVAILABLE):
            return True
        if isinstance(e, KafkaError) and e.retriable:
            return True
    return False


class _Budget:
    """tenacity ``stop``: never stops on infrastructure errors; stops after ``max_attempts``
    other failures (``contention_attempts`` for serialization failures/deadlocks)."""

    def __init__(self, max_attempts: int, contention_attempts: int) -> None:
        self.max_attempts = max(1, max_attempts)
        self.contention_attempts = max(self.max_attempts, contention_attempts)
        self.failures = 0
        self.contention = 0

    @property
    def attempts(self) -> int:
        return self.failures + self.contention

    def __call__(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if exc is None or is_infrastructure_error(exc):
            return False
        if isinstance(exc, CONTENTION_ERRORS):
            self.contention += 1
            return self.contention >= self.contention_attempts
        self.failures += 1
        return self.failures >= self.max_attempts


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries for failures, unbounded for outages, jittered exponential backoff."""

    max_attempts: int = 5
    initial_s: float = 0.2
    max_s: float = 10.0
    jitter_s: float | None = None  # default: ``initial_s``
    contention_attempts: int = 20

    def wait(self) -> Callable[[RetryCallState], float]:
        jitter = self.initial_s if self.jitter_s is None else self.jitter_s
        return wait_exponential_jitter(multiplier=self.initial_s, max=self.max_s, exp_base=2, jitter=jitter)

    def retrying(
        self,
        *,
        give_up_at_once: tuple[type[BaseException], ...] = (),
        before_sleep: Callable[[RetryCallState], Any] | None = None,
    ) -> tuple[AsyncRetrying, _Budget]:
        """A tenacity ``AsyncRetrying`` for one unit of work, and its budget (``.attempts`` =
        failures counted so far). Exceptions in ``give_up_at_once`` (and anything that is not an
        ``Exception``, e.g. cancellation) are re-raised at once; after the budget the last error
        is re-raised."""
        budget = _Budget(self.max_attempts, self.contention_attempts)
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, Exception) and not isinstance(e, give_up_at_once)),
            stop=budget,
            wait=self.wait(),
            sleep=asyncio.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying, budget

    def delay(self, attempt: int) -> float:
        """The jittered wait before try ``attempt + 1`` (``attempt`` >= 1: failures so far)."""
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = max(1, attempt)
        return self.wait()(state)

    def delays(self) -> "_Delays":
        """An endless iterator of jittered backoff delays (for hand-written "until it works" loops)."""
        return _Delays(self.wait())


class _Delays:
    def __init__(self, wait: Callable[[RetryCallState], float]) -> None:
        self._wait = wait
        self._n = 0

    def __iter__(self) -> "_Delays":
        return self

    def __next__(self) -> float:
        self._n += 1
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = self._n
        return self._wait(state)
