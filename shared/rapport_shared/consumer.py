"""Consuming events: decode, dedupe, apply, retry, dead-letter, then commit.

One record at a time per partition (FastStream's ``getone`` loop), with ``AckPolicy.MANUAL``:
the offset is committed only after the effect's transaction committed (or the record was
dead-lettered). The effect and the inbox row commit together, so a crash anywhere between
"effect" and "commit" leads to a redelivery that the inbox skips.

What happens to a record:
- not a valid CloudEvent, or ``data`` fails its contract model → dead-lettered at once;
- an event type this service does not handle → committed and ignored (forward compatible);
- handler raises ``PoisonEvent`` → dead-lettered at once (the event can never apply);
- handler fails with an infrastructure error (Postgres unreachable, ...) → retried with backoff
  until it works; the partition waits, nothing is skipped;
- handler fails otherwise → retried ``max_attempts`` times, then dead-lettered.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Protocol, Sequence

import asyncpg
import structlog
from pydantic import ValidationError

from . import inbox
from .contracts.base import EventData
from .envelope import CloudEvent, EnvelopeError, KafkaRecord, decode
from .faults import crash_point
from .logging import get_logger
from .metrics import DEAD_LETTERED, EVENTS_CONSUMED, HANDLER_SECONDS
from .topics import dlq_topic
from .uow import UnitOfWork
from .outbox import Outbox
from .clock import Clock, SystemClock

log = get_logger(__name__)

Handler = Callable[[UnitOfWork, CloudEvent, Any], Awaitable[None]]

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


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
    status: str  # processed | duplicate | ignored | dead_lettered
    event_id: str | None = None
    error: str | None = None


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
    ) -> None:
        self.pool = pool
        self.group_id = group_id
        self.dead_letter = dead_letter
        self.outbox = outbox
        self.clock = clock or SystemClock()
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.handlers: dict[str, tuple[type[EventData], Handler]] = {}

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

    async def process(self, record: RecordLike) -> Outcome:
        ctx = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
        with structlog.contextvars.bound_contextvars(**ctx):
            try:
                event = decode(record.value, record.headers)
            except EnvelopeError as exc:
                await self._dead_letter(record, "envelope", str(exc))
                return Outcome("dead_lettered", error=str(exc))
            with structlog.contextvars.bound_contextvars(
                event_id=event.id, event_type=event.type, correlation_id=event.correlation_id
            ):
                return await self._process_event(record, event)

    async def _process_event(self, record: RecordLike, event: CloudEvent) -> Outcome:
        entry = self.handlers.get(event.type)
        if entry is None:
            EVENTS_CONSUMED.labels(record.topic, event.type, "ignored").inc()
            return Outcome("ignored", event.id)
        model, handler = entry
        try:
            data = model.model_validate(event.data)
        except ValidationError as exc:
            reason = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            await self._dead_letter(record, "contract", reason, event)
            return Outcome("dead_lettered", event.id, reason)

        attempt, delay = 0, self.backoff_s
        while True:
            started = time.perf_counter()
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    if not await inbox.claim(conn, event, record.topic, record.partition, record.offset):
                        EVENTS_CONSUMED.labels(record.topic, event.type, "duplicate").inc()
                        log.info("duplicate event skipped")
                        return Outcome("duplicate", event.id)
                    await handler(UnitOfWork(conn, self.outbox, self.clock, cause=event), event, data)
                crash_point("consumer.after_effect", event.type)
                HANDLER_SECONDS.labels(event.type).observe(time.perf_counter() - started)
                EVENTS_CONSUMED.labels(record.topic, event.type, "processed").inc()
                log.info("event processed")
                return Outcome("processed", event.id)
            except PoisonEvent as exc:
                await self._dead_letter(record, "rejected", str(exc), event)
                return Outcome("dead_lettered", event.id, str(exc))
            except TRANSIENT_ERRORS as exc:
                log.warning("infrastructure error; retrying", error=repr(exc), retry_in_s=delay)
            except Exception as exc:
                attempt += 1
                if attempt >= self.max_attempts:
                    log.exception("handler failed; dead-lettering", attempts=attempt)
                    await self._dead_letter(record, "handler", f"{type(exc).__name__}: {exc}", event, attempt)
                    return Outcome("dead_lettered", event.id, repr(exc))
                log.warning("handler failed; retrying", error=repr(exc), attempt=attempt, retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max_s)

    async def _dead_letter(
        self, record: RecordLike, reason: str, error: str, event: CloudEvent | None = None, attempts: int = 1
    ) -> None:
        headers = {}
        for name, raw in record.headers or ():
            headers[name] = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw or "")
        headers.update(
            {
                "dlq_reason": reason,
                "dlq_error": error[:4000],
                "dlq_original_topic": record.topic,
                "dlq_original_partition": str(record.partition),
                "dlq_original_offset": str(record.offset),
                "dlq_consumer_group": self.group_id,
                "dlq_attempts": str(attempts),
                "dlq_failed_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            }
        )
        target = dlq_topic(record.topic, self.group_id)
        dlq_record = KafkaRecord(key=record.key or b"", value=record.value or b"", headers=headers)
        delay = self.backoff_s
        while True:  # the record must reach the DLQ before its offset is committed
            try:
                await self.dead_letter(target, dlq_record)
                break
            except Exception as exc:
                log.warning("dead-letter publish failed; retrying", error=repr(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)
        DEAD_LETTERED.labels(record.topic, reason).inc()
        EVENTS_CONSUMED.labels(record.topic, event.type if event else "", "dead_lettered").inc()
        log.error("record dead-lettered", reason=reason, error=error, dlq_topic=target)
