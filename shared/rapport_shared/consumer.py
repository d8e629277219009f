"""Consuming events: decode, dedupe, apply, retry, dead-letter, then commit.

One record at a time per partition (FastStream's ``getone`` loop), with ``AckPolicy.MANUAL``:
the offset is committed only after the effect's transaction committed (or the record was
dead-lettered). The effect and the inbox row commit together, so a crash anywhere between
"effect" and "commit" leads to a redelivery that the inbox skips.

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

A dead letter keeps the original key, value and headers and adds ``dlq_*`` headers (reason,
error, original topic/partition/offset, group, attempts, time). Publishing it is retried until
Kafka takes it (the offset is not committed before); a record too large for the DLQ topic is
dead-lettered without its value (``dlq_value_omitted``: read it at its original offset: event
topics keep everything).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Protocol, Sequence

import asyncpg
import structlog
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError
from pydantic import ValidationError
from tenacity import RetryCallState

from . import inbox
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
        make_uow: MakeUnitOfWork | None = None,
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
        """Handle one record. Returns only when the record ended somewhere (its offset may be
        committed); raises only on cancellation."""
        ctx = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
        with structlog.contextvars.bound_contextvars(**ctx):
            try:
                event = decode(record.value, record.headers)
            except Exception as exc:  # EnvelopeError, or anything decode did not foresee
                error = str(exc) if isinstance(exc, EnvelopeError) else f"{type(exc).__name__}: {exc}"
                await self._dead_letter(record, "envelope", error)
                return Outcome("dead_lettered", error=error)
            with structlog.contextvars.bound_contextvars(
                event_id=event.id, event_type=event.type, correlation_id=event.correlation_id
            ):
                try:
                    return await self._process_event(record, event)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a bug here must not stop the partition either
                    log.exception("consumer failed on a record; dead-lettering")
                    error = f"{type(exc).__name__}: {exc}"
                    await self._dead_letter(record, "consumer_error", error, event)
                    return Outcome("dead_lettered", event.id, error)

    async def _process_event(self, record: RecordLike, event: CloudEvent) -> Outcome:
        catalogued = model_for(event.type)
        entry = self.handlers.get(event.type)
        model = entry[0] if entry else catalogued
        if model is not None and model.topic != record.topic:
            error = f"{event.type} belongs to {model.topic}, not {record.topic}"
            await self._dead_letter(record, "type_topic_mismatch", error, event)
            return Outcome("dead_lettered", event.id, error)
        if entry is None:
            EVENTS_CONSUMED.labels(record.topic, _type_label(event.type), "ignored").inc()
            return Outcome("ignored", event.id)
        model, handler = entry
        try:
            data = model.model_validate(event.data)
        except ValidationError as exc:
            reason = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            await self._dead_letter(record, "contract", reason, event)
            return Outcome("dead_lettered", event.id, reason)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = round(state.upcoming_sleep, 3)
            if isinstance(exc, InfrastructureUnavailable):
                log.warning("infrastructure unavailable; retrying", error=repr(exc.cause), retry_in_s=wait)
            else:
                log.warning("handler failed; retrying", error=repr(exc)[:MAX_ERROR_CHARS], attempt=budget.attempts,
                            retry_in_s=wait)

        retrying, budget = self.retry_policy.retrying(give_up_at_once=(PoisonEvent,), before_sleep=before_sleep)
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(record, event, handler, data)
        except PoisonEvent as exc:
            await self._dead_letter(record, "rejected", str(exc), event)
            return Outcome("dead_lettered", event.id, str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("handler failed; dead-lettering", attempts=budget.attempts, error=repr(exc)[:MAX_ERROR_CHARS])
            await self._dead_letter(record, "handler", f"{type(exc).__name__}: {exc}", event, budget.attempts)
            return Outcome("dead_lettered", event.id, repr(exc))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, record: RecordLike, event: CloudEvent, handler: Handler, data: Any) -> Outcome:
        """One try in one transaction. Errors that mean "Postgres is unreachable" come out as
        ``InfrastructureUnavailable``; everything else as raised."""
        started = time.perf_counter()
        async with pooled_connection(self.pool) as conn:
            try:
                async with conn.transaction():
                    if not await inbox.claim(conn, event, record.topic, record.partition, record.offset):
                        EVENTS_CONSUMED.labels(record.topic, event.type, "duplicate").inc()
                        log.info("duplicate event skipped")
                        return Outcome("duplicate", event.id)
                    await handler(self.make_uow(conn, event), event, data)
            except Exception as exc:
                if not isinstance(exc, InfrastructureUnavailable) and is_infrastructure_error(exc, conn):
                    raise InfrastructureUnavailable(exc) from exc
                raise
        crash_point("consumer.after_effect", event.type)
        HANDLER_SECONDS.labels(event.type).observe(time.perf_counter() - started)
        EVENTS_CONSUMED.labels(record.topic, event.type, "processed").inc()
        log.info("event processed")
        return Outcome("processed", event.id)

    async def _dead_letter(
        self, record: RecordLike, reason: str, error: str, event: CloudEvent | None = None, attempts: int = 1
    ) -> None:
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
        target = dlq_topic(record.topic, self.group_id)
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
