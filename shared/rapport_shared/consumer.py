"""Consuming events: decode, dedupe, apply, retry, dead-letter; the offsets are committed after.

Records come in batches (``process_batch``; ``kafka.BatchSubscriber`` fetches what the broker has,
bounded by count and bytes). The records of one partition are handled in offset order; partitions
side by side (at most ``concurrency`` at once, each on its own connection). A partition's records
are applied in **one transaction**: the inbox claims of all of them in one statement, each
record's handler, one COMMIT. The subscriber commits the batch's offsets once, after every
transaction of the batch committed (or its records were dead-lettered). The effect and the inbox
row commit together, so a crash anywhere before the offset commit leads to a redelivery that the
inbox skips. ``process`` handles one record the same way, alone (tests, tools).

When a record's handler fails inside a batch, that transaction is rolled back and the records
before the failing one are applied again in one transaction, **each in a savepoint** this time
(should one of them fail now, it alone is rolled back to its savepoint, its inbox claim and the
later records' are taken back); the failing record goes on alone through the one-record path
below, its failure counted as its first attempt; the records after it form the next transaction.
Savepoints are taken only then: one costs a round trip per record, as much as a one-statement
effect (docs/performance.md).

**Set-based handlers** (``HandlerRegistry.handles_many``): consecutive records of a partition
whose handler is the same set-based function are handed to it together, in one call (one
statement for them all instead of one per record), in the same transaction as their inbox claims.
Such a handler has effects only (it emits no events: the unit of work it gets has no single
cause). If the call fails, the transaction is rolled back as for any failure; the records before
the run go again in savepoints, then the run's records one by one, each in a savepoint, find the
one that fails; it goes on alone as above. So a poison record costs its run one extra pass.

Postgres or Kafka unreachable during a batch's transaction: the whole transaction is tried again
(backoff, without bound).

Every record ends somewhere — processed, ignored or dead-lettered — so no record can stop its
partition. What happens to a record (``dlq_reason`` header in brackets):

- anything at all goes wrong while decoding it (not a CloudEvent, bad/missing/duplicate headers,
  not UTF-8, not strict JSON, nested too deeply for the parser, ...) → dead-lettered at once
  [``envelope``];
- an event type of the catalogue that belongs to another topic than the one it was read from
  (``EventData.topic``) → dead-lettered at once [``type_topic_mismatch``];
- an event type this service does not handle → committed and ignored (forward compatible);
- ``data`` fails its contract model → dead-lettered at once [``contract``];
- handler raises ``PoisonEvent`` → dead-lettered at once (the event can never apply) [``rejected``];
- Postgres or Kafka is unreachable (``rapport_shared.retry.is_infrastructure_error``: no
  connection could be acquired, the connection was lost, connection-class SQLSTATEs, retriable
  Kafka errors) → retried with jittered backoff until it works; the partition waits, nothing is
  skipped;
- handler fails otherwise — including a plain ``OSError``/``TimeoutError``/``InterfaceError``
  raised by handler code on a healthy connection → retried ``max_attempts`` times with jittered
  exponential backoff, then dead-lettered [``handler``];
- a bug in this module itself while handling a record → dead-lettered [``consumer_error``].

Lanes (``ServiceRuntime(priority=...)``, docs/architecture.md "Safety lane"): a consumer may
leave some types to another consumer of the same service (``leaves``: ended here as
``other_lane``), and a *partial* consumer reads topics the main one also reads, for only the types
registered with it: everything else there (other types, undecodable records, a type on the wrong
topic) is the main consumer's to end, and is ``other_lane`` here.

A dead letter keeps the original key, value and headers and adds ``dlq_*`` headers (reason,
error, original topic/partition/offset, group, attempts, time). Publishing it is retried until
Kafka takes it (the offset is not committed before); a record too large for the DLQ topic is
dead-lettered without its value (``dlq_value_omitted``: read it at its original offset: event
topics keep everything).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterable, Protocol, Sequence

import asyncpg
import structlog
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError
from pydantic import ValidationError
from tenacity import RetryCallState

from . import inbox, tracing
from .contracts import model_for
from .contracts.base import EventData
from .envelope import CloudEvent, EnvelopeError, KafkaRecord, decode
from .faults import crash_point
from .logging import get_logger
from .metrics import DEAD_LETTERED, EVENTS_CONSUMED, HANDLER_SECONDS
from .retry import InfrastructureUnavailable, RetryPolicy, is_infrastructure_error, pooled_connection
from .topics import dlq_topic
from .uow import MakeUnitOfWork, UnitOfWork, uow_maker
from .outbox import Outbox
from .clock import Clock, SystemClock


def _type_label(event_type: str) -> str:
    """A metric label for a record's type: catalogued types by name, anything else as one
    "uncatalogued" value, so hostile records cannot grow the metrics without bound."""
    return event_type if model_for(event_type) is not None else "uncatalogued"


log = get_logger(__name__)

Handler = Callable[[UnitOfWork, CloudEvent, Any], Awaitable[None]]

MAX_ERROR_CHARS = 2000  # dlq_error header and log line

# One round trip per record for its savepoint: release the previous record's, take the next one.
_SAVEPOINT = "SAVEPOINT rapport_record"
_NEXT_SAVEPOINT = "RELEASE SAVEPOINT rapport_record; SAVEPOINT rapport_record"
_ROLLBACK_TO_SAVEPOINT = "ROLLBACK TO SAVEPOINT rapport_record"


class PoisonEvent(Exception):
    """Raised by a handler for an event that can never be applied (dead-letter it now)."""


class RecordLike(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    timestamp: int


@dataclass(frozen=True)
class Outcome:
    status: str  # processed | duplicate | ignored | other_lane | dead_lettered
    event_id: str | None = None
    error: str | None = None
    event_type: str | None = None


@dataclass(frozen=True)
class _Work:
    """A record that passed every check before its handler: what to apply."""

    record: RecordLike
    event: CloudEvent
    handler: Handler
    data: Any
    event_id: uuid.UUID


def _set_run(items: list[_Work], i: int, fresh: set[uuid.UUID], seen: set[uuid.UUID]) -> list[_Work]:
    """The records from ``i`` on that one set-based call applies together: consecutive, fresh,
    handled by the same set-based function (empty if ``items[i]``'s handler is not one). Adds
    their ids to ``seen``."""
    key = getattr(items[i].handler, "many_key", None)
    run: list[_Work] = []
    if key is None:
        return run
    for w in items[i:]:
        if getattr(w.handler, "many_key", None) is not key or w.event_id not in fresh or w.event_id in seen:
            break
        seen.add(w.event_id)
        run.append(w)
    return run


class _Failed(Exception):
    """A record failed where nothing can be kept (no savepoint): roll the transaction back."""

    def __init__(self, index: int, error: Exception, end: int | None = None) -> None:
        # end: the failing call applied records index..end-1 together (a set-based run)
        self.index, self.error, self.end = index, error, end if end is not None else index + 1


class _Bound:
    """Log context for the records' lines (``bind``/``reset`` by token: cheap enough per record)."""

    __slots__ = ("kw", "tokens")

    def __init__(self, **kw: Any) -> None:
        self.kw = kw

    def __enter__(self) -> None:
        self.tokens = structlog.contextvars.bind_contextvars(**self.kw)

    def __exit__(self, *exc: object) -> None:
        structlog.contextvars.reset_contextvars(**self.tokens)


def _bound_record(record: RecordLike) -> _Bound:
    return _Bound(topic=record.topic, partition=record.partition, offset=record.offset)


def _bound(record: RecordLike, event: CloudEvent) -> _Bound:
    return _Bound(topic=record.topic, partition=record.partition, offset=record.offset, event_id=event.id,
                  event_type=event.type, correlation_id=event.correlation_id)


class EventConsumer:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        group_id: str,
        dead_letter: Callable[[str, KafkaRecord], Awaitable[None]],
        outbox: Outbox,
        clock: Clock | None = None,
        max_attempts: int = 5,
        backoff_s: float = 0.2,
        backoff_max_s: float = 10.0,
        make_uow: MakeUnitOfWork | None = None,
        concurrency: int = 4,
        leaves: Iterable[str] = (),
        partial: bool = False,
        dlq_group: str | None = None,
    ) -> None:
        self.pool = pool
        self.group_id = group_id
        self.dead_letter = dead_letter
        self.outbox = outbox
        self.clock = clock or SystemClock()
        self.make_uow = make_uow or uow_maker(outbox, self.clock)
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.retry_policy = RetryPolicy(max_attempts=max_attempts, initial_s=backoff_s, max_s=backoff_max_s)
        self.handlers: dict[str, tuple[type[EventData], Handler]] = {}
        # Partitions applied at once, each holding a pooled connection for its transaction.
        self.concurrency = max(1, concurrency)
        self._slots = asyncio.Semaphore(self.concurrency)
        self.leaves = frozenset(leaves)  # types another consumer of this service handles
        self.partial = partial  # reads topics another consumer of this service ends
        # Dead letters go to <topic>.dlq.<dlq_group>: a lane shares its service's DLQ topics.
        self.dlq_group = dlq_group or group_id

    def on(self, model: type[EventData]) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.register(model, fn)
            return fn

        return register

    def register(self, model: type[EventData], fn: Handler) -> None:
        if model.event_type in self.handlers:
            raise ValueError(f"two handlers for {model.event_type}")
        self.handlers[model.event_type] = (model, fn)

    @property
    def topics(self) -> list[str]:
        return sorted({m.topic for m, _ in self.handlers.values()})

    # ------------------------------------------------------------------ one record

    async def process(self, record: RecordLike) -> Outcome:
        """Handle one record alone. Returns only when the record ended somewhere (its offset may
        be committed); raises only on cancellation."""
        prepared = await self._prepare(record)
        if isinstance(prepared, Outcome):
            return prepared
        return await self._apply_alone(prepared)

    # ------------------------------------------------------------------ a batch

    async def process_batch(self, records: Sequence[RecordLike]) -> list[Outcome]:
        """Handle a fetched batch: each partition's records in order, in one transaction per
        partition (see the module docstring), partitions concurrently. Returns the outcomes in
        the order of ``records`` once every record ended somewhere; raises only on cancellation."""
        started = time.perf_counter()
        by_partition: dict[tuple[str, int], list[int]] = {}
        for i, r in enumerate(records):
            by_partition.setdefault((r.topic, r.partition), []).append(i)
        outcomes: list[Outcome] = [Outcome("pending")] * len(records)

        async def one_partition(indexes: list[int]) -> None:
            async with self._slots:
                done = await self._process_partition([records[i] for i in indexes])
            for i, outcome in zip(indexes, done):
                outcomes[i] = outcome

        async with asyncio.TaskGroup() as tasks:
            for indexes in by_partition.values():
                tasks.create_task(one_partition(indexes))
        counts = Counter(o.status for o in outcomes)
        log.info("batch processed", records=len(records), partitions=len(by_partition),
                 ms=round((time.perf_counter() - started) * 1000, 1), **counts)
        return outcomes

    async def _process_partition(self, records: list[RecordLike]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(records)
        work: list[tuple[int, _Work]] = []
        for i, record in enumerate(records):
            prepared = await self._prepare(record)
            if isinstance(prepared, Outcome):
                outcomes[i] = prepared
            else:
                work.append((i, prepared))
        start = 0
        while start < len(work):
            items = [w for _, w in work[start:]]
            done, failure = await self._apply_together(items, savepoints=False)
            if failure is not None and not done:
                at, error, end = failure
                if at > 0:
                    # Rolled back with the failing call: the records before it go again, each in a
                    # savepoint this time (should one of them fail now, only it is taken out).
                    done, earlier = await self._apply_together(items[:at], savepoints=True)
                    failure = earlier or failure
                if len(done) == at and end > at + 1:
                    # A set-based call failed: its records one by one, in savepoints, find which.
                    more, inner = await self._apply_together(items[at:end], savepoints=True)
                    done = done + more
                    failure = (at + inner[0], inner[1], at + inner[0] + 1) if inner else None
            for (i, _), outcome in zip(work[start:], done):
                outcomes[i] = outcome
            start += len(done)  # what committed; a failure is always the record right after it
            if failure is not None:
                i, w = work[start]
                outcomes[i] = await self._apply_alone(w, first_error=failure[1])
                start += 1
        assert all(o is not None for o in outcomes)
        return outcomes  # type: ignore[return-value]

    async def _apply_together(self, items: list[_Work], *, savepoints: bool
                              ) -> tuple[list[Outcome], tuple[int, Exception | None, int] | None]:
        """Apply ``items`` in one transaction. Returns the outcomes of what was committed (a
        prefix of ``items``) and, if a call failed, ``(index, error, end)``: records index..end-1
        were applied together by the failing call (end = index + 1 for one record's handler); the
        failing record is to be applied alone, its error counted as its first attempt. Without
        ``savepoints`` a failure rolls everything back (no outcomes); with them, the records before
        the failing one are committed and set-based handlers are called one record at a time."""
        delays = self.retry_policy.delays()
        while True:
            try:
                return await self._transaction(items, savepoints)
            except InfrastructureUnavailable as exc:
                delay = next(delays)
                log.warning("infrastructure unavailable; retrying the batch", error=repr(exc.cause),
                            records=len(items), retry_in_s=round(delay, 3))
                await asyncio.sleep(delay)
            except Exception as exc:
                # Not one handler's error (the COMMIT failed, or a bug here): apply the first record
                # alone; the others come back in the next transaction, so every pass makes progress.
                log.warning("batch transaction failed; applying its first record alone",
                            error=repr(exc)[:MAX_ERROR_CHARS], records=len(items))
                return [], (0, None, 1)

    async def _transaction(self, items: list[_Work], savepoints: bool
                           ) -> tuple[list[Outcome], tuple[int, Exception, int] | None]:
        done: list[Outcome] = []
        applied: list[tuple[_Work, float]] = []
        duplicates: list[_Work] = []
        failure: tuple[int, Exception, int] | None = None
        async with pooled_connection(self.pool) as conn:
            try:
                async with conn.transaction():
                    fresh = await inbox.claim_many(conn, [(w.event_id, w.event.type, w.record.topic, w.record.partition,
                                                           w.record.offset) for w in items])
                    seen: set[uuid.UUID] = set()  # an id twice in the batch is applied by its first record
                    i = 0
                    while i < len(items):
                        w = items[i]
                        if w.event_id not in fresh or w.event_id in seen:
                            duplicates.append(w)
                            done.append(Outcome("duplicate", w.event.id, event_type=w.event.type))
                            i += 1
                            continue
                        if not savepoints and (run := _set_run(items, i, fresh, seen)):
                            share = await self._apply_set(conn, run, i)
                            applied += [(x, share) for x in run]
                            done += [Outcome("processed", x.event.id, event_type=x.event.type) for x in run]
                            crash_point("consumer.mid_batch", run[-1].event.type)
                            i += len(run)
                            continue
                        seen.add(w.event_id)
                        if savepoints and applied:  # keep what the records before it did, whatever it does
                            await conn.execute(_NEXT_SAVEPOINT if len(applied) > 1 else _SAVEPOINT)
                        began = time.perf_counter()
                        try:
                            with _bound(w.record, w.event), tracing.consume_span(w.record, w.event):
                                await w.handler(self.make_uow(conn, w.event), w.event, w.data)
                        except Exception as exc:
                            if is_infrastructure_error(exc, conn):
                                raise InfrastructureUnavailable(exc) from exc
                            if not (savepoints and applied):
                                raise _Failed(i, exc) from exc  # nothing kept: roll it all back
                            await conn.execute(_ROLLBACK_TO_SAVEPOINT)
                            # its claim and the later records' go back: they were not applied here
                            kept = {a.event_id for a, _ in applied}
                            await inbox.release(conn, {x.event_id for x in items[i:]} & fresh - kept)
                            failure = (i, exc, i + 1)
                            break
                        applied.append((w, time.perf_counter() - began))
                        done.append(Outcome("processed", w.event.id, event_type=w.event.type))
                        crash_point("consumer.mid_batch", w.event.type)
                        i += 1
            except _Failed as failed:
                return [], (failed.index, failed.error, failed.end)
            except Exception as exc:
                if not isinstance(exc, InfrastructureUnavailable) and is_infrastructure_error(exc, conn):
                    raise InfrastructureUnavailable(exc) from exc
                raise
        if applied:
            crash_point("consumer.after_effect", " ".join(sorted({w.event.type for w, _ in applied})))
        counted: Counter[tuple[str, str, str]] = Counter()  # one increment per label set, by the records' count
        for w, seconds in applied:
            HANDLER_SECONDS.labels(w.event.type).observe(seconds)
            counted[(w.record.topic, w.event.type, "processed")] += 1
            log.debug("event processed", event_id=w.event.id, event_type=w.event.type, topic=w.record.topic,
                      partition=w.record.partition, offset=w.record.offset)
        for w in duplicates:
            counted[(w.record.topic, w.event.type, "duplicate")] += 1
            log.debug("duplicate event skipped", event_id=w.event.id, event_type=w.event.type, topic=w.record.topic,
                      partition=w.record.partition, offset=w.record.offset)
        for labels, n in counted.items():
            EVENTS_CONSUMED.labels(*labels).inc(n)
        return done, failure

    async def _apply_set(self, conn: asyncpg.Connection, run: list[_Work], index: int) -> float:
        """One set-based call for ``run`` (records ``index``.. of the transaction's items).
        Returns each record's share of the call's time."""
        first = run[0]
        began = time.perf_counter()
        try:
            with _bound(first.record, first.event), tracing.consume_span(first.record, first.event):
                await first.handler.many(self.make_uow(conn, None), [w.event for w in run], [w.data for w in run])
        except Exception as exc:
            if is_infrastructure_error(exc, conn):
                raise InfrastructureUnavailable(exc) from exc
            raise _Failed(index, exc, index + len(run)) from exc
        return (time.perf_counter() - began) / len(run)

    # ------------------------------------------------------------------ the steps

    async def _prepare(self, record: RecordLike) -> Outcome | _Work:
        """Every check before the handler; a record that fails one ends here (dead-lettered,
        ignored, or left to another lane). No log context on this path: it is per record, and
        only what logs binds it (``_dead_letter``)."""
        try:
            event = decode(record.value, record.headers)
        except Exception as exc:  # EnvelopeError, or anything decode did not foresee
            if self.partial:
                return self._other_lane(record, None)
            error = str(exc) if isinstance(exc, EnvelopeError) else f"{type(exc).__name__}: {exc}"
            await self._dead_letter(record, "envelope", error)
            return Outcome("dead_lettered", error=error)
        try:
            return await self._check(record, event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not stop the partition either
            with _bound(record, event):
                log.exception("consumer failed on a record; dead-lettering")
            error = f"{type(exc).__name__}: {exc}"
            await self._dead_letter(record, "consumer_error", error, event)
            return Outcome("dead_lettered", event.id, error, event.type)

    async def _check(self, record: RecordLike, event: CloudEvent) -> Outcome | _Work:
        catalogued = model_for(event.type)
        entry = self.handlers.get(event.type)
        if self.partial and entry is None:
            return self._other_lane(record, event)
        model = entry[0] if entry else catalogued
        if model is not None and model.topic != record.topic:
            if self.partial:
                return self._other_lane(record, event)
            error = f"{event.type} belongs to {model.topic}, not {record.topic}"
            await self._dead_letter(record, "type_topic_mismatch", error, event)
            return Outcome("dead_lettered", event.id, error, event.type)
        if event.type in self.leaves:
            return self._other_lane(record, event)
        if entry is None:
            EVENTS_CONSUMED.labels(record.topic, _type_label(event.type), "ignored").inc()
            return Outcome("ignored", event.id, event_type=event.type)
        model, handler = entry
        try:
            data = model.model_validate(event.data)
        except ValidationError as exc:
            reason = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            await self._dead_letter(record, "contract", reason, event)
            return Outcome("dead_lettered", event.id, reason, event.type)
        return _Work(record, event, handler, data, uuid.UUID(event.id))

    def _other_lane(self, record: RecordLike, event: CloudEvent | None) -> Outcome:
        EVENTS_CONSUMED.labels(record.topic, _type_label(event.type) if event else "", "other_lane").inc()
        return Outcome("other_lane", event.id if event else None, event_type=event.type if event else None)

    async def _apply_alone(self, w: _Work, first_error: Exception | None = None) -> Outcome:
        """The one-record path: each attempt in its own transaction, with the retry policy.
        ``first_error``: the record already failed once (in a batch); that counts as attempt 1."""
        with _bound(w.record, w.event):
            try:
                return await self._retrying(w, first_error)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not stop the partition either
                log.exception("consumer failed on a record; dead-lettering")
                error = f"{type(exc).__name__}: {exc}"
                await self._dead_letter(w.record, "consumer_error", error, w.event)
                return Outcome("dead_lettered", w.event.id, error, w.event.type)

    async def _retrying(self, w: _Work, first_error: Exception | None) -> Outcome:
        record, event = w.record, w.event

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = round(state.upcoming_sleep, 3)
            if isinstance(exc, InfrastructureUnavailable):
                log.warning("infrastructure unavailable; retrying", error=repr(exc.cause), retry_in_s=wait)
            else:
                log.warning("handler failed; retrying", error=repr(exc)[:MAX_ERROR_CHARS], attempt=budget.attempts,
                            retry_in_s=wait)

        retrying, budget = self.retry_policy.retrying(give_up_at_once=(PoisonEvent,), before_sleep=before_sleep)
        replayed = [first_error] if first_error is not None else []
        try:
            async for attempt in retrying:
                with attempt:
                    if replayed:  # the failed try inside the batch is this record's first attempt
                        raise replayed.pop()
                    return await self._attempt(w)
        except PoisonEvent as exc:
            await self._dead_letter(record, "rejected", str(exc), event)
            return Outcome("dead_lettered", event.id, str(exc), event.type)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("handler failed; dead-lettering", attempts=budget.attempts, error=repr(exc)[:MAX_ERROR_CHARS])
            await self._dead_letter(record, "handler", f"{type(exc).__name__}: {exc}", event, budget.attempts)
            return Outcome("dead_lettered", event.id, repr(exc), event.type)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, w: _Work) -> Outcome:
        """One try in one transaction. Errors that mean "Postgres is unreachable" come out as
        ``InfrastructureUnavailable``; everything else as raised."""
        record, event = w.record, w.event
        started = time.perf_counter()
        async with pooled_connection(self.pool) as conn:
            try:
                async with conn.transaction():
                    if not await inbox.claim(conn, event, record.topic, record.partition, record.offset):
                        EVENTS_CONSUMED.labels(record.topic, event.type, "duplicate").inc()
                        log.debug("duplicate event skipped")
                        return Outcome("duplicate", event.id, event_type=event.type)
                    with tracing.consume_span(record, event):
                        await w.handler(self.make_uow(conn, event), event, w.data)
            except Exception as exc:
                if not isinstance(exc, InfrastructureUnavailable) and is_infrastructure_error(exc, conn):
                    raise InfrastructureUnavailable(exc) from exc
                raise
        crash_point("consumer.after_effect", event.type)
        HANDLER_SECONDS.labels(event.type).observe(time.perf_counter() - started)
        EVENTS_CONSUMED.labels(record.topic, event.type, "processed").inc()
        log.debug("event processed")
        return Outcome("processed", event.id, event_type=event.type)

    async def _dead_letter(
        self, record: RecordLike, reason: str, error: str, event: CloudEvent | None = None, attempts: int = 1
    ) -> None:
        with _bound(record, event) if event is not None else _bound_record(record):
            await self._send_dead_letter(record, reason, error, event, attempts)

    async def _send_dead_letter(self, record: RecordLike, reason: str, error: str, event: CloudEvent | None,
                                attempts: int) -> None:
        headers: dict[str, str] = {}
        for item in record.headers or ():
            try:
                name, raw = item
                name = name if isinstance(name, str) else bytes(name).decode("utf-8", "replace")
                headers[name[:256]] = (bytes(raw).decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray, memoryview))
                                       else str(raw or ""))[:4096]
            except Exception:  # a header we cannot even copy: the original record still has it
                continue
        error = error[:MAX_ERROR_CHARS]
        headers.update(
            {
                "dlq_reason": reason,
                "dlq_error": error,
                "dlq_original_topic": record.topic,
                "dlq_original_partition": str(record.partition),
                "dlq_original_offset": str(record.offset),
                "dlq_consumer_group": self.group_id,
                "dlq_attempts": str(attempts),
                "dlq_failed_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            }
        )
        target = dlq_topic(record.topic, self.dlq_group)
        key = record.key if isinstance(record.key, (bytes, bytearray)) else b""
        value = record.value if isinstance(record.value, (bytes, bytearray)) else b""
        dlq_record = KafkaRecord(key=bytes(key), value=bytes(value), headers=headers)
        delays = self.retry_policy.delays()
        while True:  # the record must reach the DLQ before its offset is committed
            try:
                await self.dead_letter(target, dlq_record)
                break
            except (MessageSizeTooLargeError, RecordTooLargeError) as exc:
                if dlq_record.headers.get("dlq_value_omitted") != "true":
                    log.warning("dead letter too large; sending it without its value", error=repr(exc))
                    kept = {k: v[:256] for k, v in headers.items() if k in ("ce_id", "ce_type", "ce_source", "ce_subject")}
                    kept.update({k: v for k, v in headers.items() if k.startswith("dlq_")})
                    dlq_record = KafkaRecord(key=dlq_record.key[:1024], value=b"", headers={**kept, "dlq_value_omitted": "true"})
                    continue
                delay = next(delays)
                log.error("dead letter too large even without its value; retrying", error=repr(exc), retry_in_s=round(delay, 3))
                await asyncio.sleep(delay)
            except Exception as exc:
                delay = next(delays)
                log.warning("dead-letter publish failed; retrying", error=repr(exc), retry_in_s=round(delay, 3))
                await asyncio.sleep(delay)
        DEAD_LETTERED.labels(record.topic, reason).inc()
        EVENTS_CONSUMED.labels(record.topic, _type_label(event.type) if event else "", "dead_lettered").inc()
        log.error("record dead-lettered", reason=reason, error=error, dlq_topic=target)
