"""Transactional outbox (architecture.md, "Delivery guarantees").

Writer: ``Outbox.add`` inserts the event in the caller's transaction, next to the state change
it announces, and NOTIFYs the relay (delivered only if that transaction commits).

Relay: ``OutboxRelay`` publishes unsent rows in ``seq`` order with the idempotent producer
(acks=all), waits for the broker's acknowledgements, then marks the rows sent in the same
transaction that locked them. A crash after publishing and before marking re-publishes the
batch: consumers dedupe by ``ce_id``, so the effect still happens once.

Ordering: the relay holds a transaction-scoped advisory lock per schema, so with several relay
replicas one publishes at a time (the others stand by) and per-episode order is kept;
``FOR UPDATE SKIP LOCKED`` keeps a stuck transaction from blocking the rest.

Size: ``Outbox.add`` refuses an event whose record (value + key + headers, as the producer counts
it) is larger than ``max_event_bytes`` with ``Invalid`` (HTTP 422 naming the largest field): the
caller's unit of work rolls back and nothing unpublishable is written.

Parking (architecture.md, "Parked outbox rows"): the relay never blocks behind one bad row. A row
Kafka refuses for good (too large, or a non-retriable error ``max_attempts`` passes in a row) is
parked: ``parked_at`` set, ``rapport_outbox_parked`` up, one log line without the data. Later rows
of the same key wait behind it (per-episode order); rows of other keys flow. The broker being away
(connection, timeout, retriable or authorisation errors) is not the row's fault: nothing is counted
against it and the pass is retried with backoff, as before. ``rapport outbox parked|show|retry|drop``
(tools/cli.py) is the operator's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from datetime import datetime
from typing import Awaitable, Callable, Protocol

import asyncpg

from aiokafka import errors as kafka_errors
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from . import envelope, tracing
from .contracts.base import EventData
from .db import ident
from .envelope import CloudEvent, KafkaRecord
from .faults import crash_point
from .errors import Invalid
from .listen import NotifyLoop
from .logging import get_logger
from .metrics import (OUTBOX_EVENTS_REFUSED, OUTBOX_PARKED, OUTBOX_PARKED_TOTAL, OUTBOX_PENDING, OUTBOX_PUBLISHED,
                      OUTBOX_WAITING, RELAY_LAG_SECONDS)

log = get_logger(__name__)

# Below Kafka's default message.max.bytes (1,048,588) and the producer's max_request_size (1 MiB),
# with room for the headers FastStream adds. ServiceSettings.max_event_bytes overrides it.
DEFAULT_MAX_EVENT_BYTES = 900 * 1024
DEFAULT_MAX_ATTEMPTS = 5
# What one relay pass holds in memory at most (values), whatever the batch size: large events
# make short batches.
DEFAULT_MAX_BATCH_BYTES = 16 * 1024 * 1024
YIELD_EVERY = 100  # rows handed to the producer between two chances for its sender to run


def notify_channel(schema: str) -> str:
    return f"{ident(schema)}_outbox"


def record_size(record: KafkaRecord) -> int:
    """The record's size as the Kafka producer counts it against max_request_size (value, key,
    headers and the record batch overhead)."""
    headers = [(k, (v or "").encode()) for k, v in record.headers.items()]
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(record.key, record.value, headers)


def largest_field(data: object) -> str | None:
    """The top-level field of an event's data that takes the most bytes (what to name in a 422)."""
    if not isinstance(data, dict) or not data:
        return None
    return max(data, key=lambda k: len(json.dumps(data[k], separators=(",", ":"), default=str)))


class EventTooLarge(Exception):
    """An outbox row larger than the relay's ``max_event_bytes``: parked without being sent."""


class CorruptRow(Exception):
    """An outbox row the relay cannot turn into a record (headers not a JSON object of strings)."""


# Errors that say the record itself will never be accepted: park at once.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    EventTooLarge, CorruptRow, kafka_errors.MessageSizeTooLargeError, kafka_errors.RecordTooLargeError,
    kafka_errors.InvalidTopicError, kafka_errors.CorruptRecordException, kafka_errors.UnsupportedForMessageFormatError,
)
# Errors of the connection, the cluster's state or its configuration, not of the row: the pass is
# retried with backoff and nothing is counted against any row (else a broker outage parks them all).
INFRA_ERRORS: tuple[type[BaseException], ...] = (
    OSError, asyncio.TimeoutError, kafka_errors.KafkaConnectionError, kafka_errors.KafkaTimeoutError,
    kafka_errors.NodeNotReadyError, kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError, kafka_errors.TransactionalIdAuthorizationFailed,
    kafka_errors.OutOfOrderSequenceNumber, kafka_errors.UnknownProducerId, kafka_errors.InvalidProducerEpoch,
    kafka_errors.ProducerFenced, kafka_errors.ProducerClosed, kafka_errors.IllegalStateError,
    asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
)


# The idempotent producer's sequence for a partition is out of step with the broker's (after the
# broker refused a batch, e.g. a record above the topic's max.message.bytes): every later batch to
# that partition fails until the producer starts over with a new producer id.
PRODUCER_STATE_ERRORS: tuple[type[BaseException], ...] = (
    kafka_errors.OutOfOrderSequenceNumber, kafka_errors.UnknownProducerId, kafka_errors.InvalidProducerEpoch,
)


def classify(exc: BaseException) -> str:
    """``permanent`` (park now), ``infra`` (retry the pass, count nothing) or ``row`` (count it
    against the row; parked after ``max_attempts``)."""
    if isinstance(exc, PERMANENT_ERRORS):
        return "permanent"
    if isinstance(exc, INFRA_ERRORS) or getattr(exc, "retriable", False):
        return "infra"
    return "row"


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


class Outbox:
    """Writes events into the service's outbox table inside the caller's transaction."""

    def __init__(self, source: str, schema: str, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.source = source
        self.schema = ident(schema)
        self.channel = notify_channel(schema)
        self.max_event_bytes = max_event_bytes

    async def add(
        self,
        conn: asyncpg.Connection,
        data: EventData,
        *,
        time: datetime,
        subject: str | None = None,
        cause: CloudEvent | None = None,
        event_id: str | None = None,
        correlation_id: str | None = None,
    ) -> CloudEvent:
        if not conn.is_in_transaction():
            raise RuntimeError("Outbox.add must run inside the transaction of the state change")
        subj = subject or str(getattr(data, "episode_id"))
        event = envelope.new_event(
            type=data.event_type,
            source=self.source,
            subject=subj,
            data=data,
            time=time,
            id=event_id,
            # One correlation id follows an episode's causal chain across services.
            correlation_id=correlation_id or (cause.correlation_id if cause else None),
            # The current span (a request, a consumed record) when traced, else the cause's context.
            traceparent=tracing.current_traceparent() or (cause.traceparent if cause else None),
        )
        if event.correlation_id is None:
            event = CloudEvent(**{**event.__dict__, "correlation_id": event.id})
        await self.add_event(conn, event, data.topic)
        return event

    async def add_event(self, conn: asyncpg.Connection, event: CloudEvent, topic: str) -> None:
        rec = envelope.encode(event)
        size = record_size(rec)
        if size > self.max_event_bytes:
            # Refused before anything is written: the caller's unit of work rolls back (HTTP 422).
            OUTBOX_EVENTS_REFUSED.labels(event.type).inc()
            field = largest_field(event.data)
            log.warning("event refused: too large for Kafka", event_type=event.type, size_bytes=size,
                        limit_bytes=self.max_event_bytes, field=field)
            raise Invalid(
                f"the {event.type} event this request would publish is {size} bytes, above the limit of "
                f"{self.max_event_bytes} bytes" + (f"; its largest field is {field!r}" if field else ""),
                field=field or "event", code="event_too_large", event_type=event.type, size_bytes=size,
                limit_bytes=self.max_event_bytes)
        await conn.execute(
            f"INSERT INTO {self.schema}.outbox (event_id, topic, key, headers, value, event_type)"
            " VALUES ($1, $2, $3, $4::jsonb, $5, $6)",
            event.id, topic, rec.key, json.dumps(rec.headers), rec.value, event.type,
        )
        await conn.execute("SELECT pg_notify($1, '')", self.channel)


class Publisher(Protocol):
    async def __call__(self, topic: str, record: KafkaRecord) -> Awaitable[object]:
        """Start sending; the returned awaitable resolves when the broker acknowledged."""


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        publish: Callable[[str, KafkaRecord], Awaitable[Awaitable[object]]],
        schema: str,
        *,
        batch_size: int = 200,
        poll_interval_s: float = 1.0,
        retention_hours: int = 72,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        reset_publisher: Callable[[], Awaitable[None]] | None = None,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    ) -> None:
        self.pool = pool
        self.publish = publish
        self.schema = ident(schema)
        self.channel = notify_channel(schema)
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.poll_interval_s = poll_interval_s
        self.retention_hours = retention_hours
        self.max_event_bytes = max_event_bytes
        self.max_attempts = max_attempts
        # Starts the producer over (new producer id) after PRODUCER_STATE_ERRORS; without it such a
        # partition stays stuck until the process restarts.
        self.reset_publisher = reset_publisher
        self._last_prune = 0.0
        self._handled = 0  # rows published or parked by the last batch
        self._taken = 0  # rows it took
        self._more = False  # it was full (by count or bytes): more may be waiting
        self._loop = NotifyLoop(pool, self.channel, poll_interval_s=poll_interval_s, what="outbox relay")

    def _record(self, r: asyncpg.Record) -> KafkaRecord:
        try:
            headers = json.loads(r["headers"])
            if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
                raise ValueError("headers are not an object of strings")
        except ValueError as exc:
            raise CorruptRow(str(exc)) from None
        rec = KafkaRecord(key=bytes(r["key"]), value=bytes(r["value"]), headers=headers)
        size = record_size(rec)
        if size > self.max_event_bytes:
            raise EventTooLarge(f"record is {size} bytes, above max_event_bytes {self.max_event_bytes}")
        return rec

    async def publish_batch(self) -> int:
        """Publish one batch; returns how many rows were published (0 = nothing to do or not our turn).

        Rows are taken in ``seq`` order, skipping parked rows and every later row of a parked row's
        key. A row that fails is left unsent (or parked, see the module docstring) and the later
        rows of its key in this batch are not sent; rows of other keys are. If the broker is away
        the rows acknowledged so far are still marked sent, and the error is raised after commit
        (the loop backs off).
        """
        infra: BaseException | None = None
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))", f"{self.schema}.outbox"):
                return 0
            # Up to batch_size rows and max_batch_bytes of values (at least one row), in seq order.
            rows = await conn.fetch(
                f"WITH c AS (SELECT o.seq, sum(octet_length(o.value)) OVER (ORDER BY o.seq) AS upto"
                f" FROM {self.schema}.outbox o WHERE o.sent_at IS NULL AND o.parked_at IS NULL"
                f" AND NOT EXISTS (SELECT 1 FROM {self.schema}.outbox p WHERE p.parked_at IS NOT NULL"
                f" AND p.sent_at IS NULL AND p.key = o.key AND p.seq < o.seq)"
                " ORDER BY o.seq LIMIT $1)"
                " SELECT o.seq, o.event_id, o.topic, o.key, o.headers, o.value, o.event_type, o.created_at, o.attempts,"
                " (SELECT count(*) FROM c) AS candidates"
                f" FROM {self.schema}.outbox o JOIN c USING (seq)"
                " WHERE c.upto <= $2 OR c.seq = (SELECT min(seq) FROM c)"
                " ORDER BY o.seq FOR UPDATE OF o SKIP LOCKED",
                self.batch_size, self.max_batch_bytes,
            )
            if not rows:
                return 0
            # More to take at once: the batch was full, or cut short by max_batch_bytes.
            self._more = len(rows) == self.batch_size or rows[0]["candidates"] > len(rows)
            self._taken = len(rows)
            pending: list[tuple[asyncpg.Record, Awaitable[object]]] = []
            failed: list[tuple[asyncpg.Record, BaseException]] = []
            held_keys: set[bytes] = set()  # a row of the key failed: its later rows wait (per-key order)
            for i, r in enumerate(rows):
                if i and not i % YIELD_EVERY:
                    await asyncio.sleep(0)  # let the producer send what it has while we hand over the rest
                key = bytes(r["key"])
                if key in held_keys:
                    continue
                try:
                    rec = self._record(r)
                    with tracing.publish_span(r["topic"], rec.headers):
                        pending.append((r, await self.publish(r["topic"], rec)))
                except Exception as exc:
                    if classify(exc) == "infra":
                        infra = exc  # the broker is away: stop sending, keep what was acknowledged
                        break
                    failed.append((r, exc))
                    held_keys.add(key)
            # every record acknowledged (acks=all) before we mark it
            results = await asyncio.gather(*(ack for _, ack in pending), return_exceptions=True)
            sent: list[asyncpg.Record] = []
            for (r, _), res in zip(pending, results):
                if not isinstance(res, BaseException):
                    sent.append(r)
                elif isinstance(res, Exception) and classify(res) != "infra":
                    failed.append((r, res))
                else:
                    infra = infra or res
            crash_point("relay.after_publish")
            if sent:
                await conn.execute(
                    f"UPDATE {self.schema}.outbox SET sent_at = now() WHERE seq = ANY($1::bigint[])",
                    [r["seq"] for r in sent],
                )
            # An unclassified error counts against a row only when the broker took other records in
            # this pass (else it may be the broker, not the row: the pass is retried with backoff).
            if infra is None and failed and not sent and any(classify(e) == "row" for _, e in failed):
                infra = failed[0][1]
            for r, exc in failed:
                parked = await self._record_failure(conn, r, exc, count=classify(exc) == "permanent" or bool(sent))
                self._handled += parked
            self._handled += len(sent)
            now = time.time()
            for r in sent:
                OUTBOX_PUBLISHED.labels(r["topic"]).inc()
                RELAY_LAG_SECONDS.observe(max(0.0, now - r["created_at"].timestamp()))
        crash_point("relay.after_mark")
        if isinstance(infra, PRODUCER_STATE_ERRORS) and self.reset_publisher is not None:
            log.warning("outbox relay: producer out of step with the broker; starting it over",
                        error_type=type(infra).__name__)
            await self.reset_publisher()
        elif isinstance(infra, PRODUCER_STATE_ERRORS):
            log.error("outbox relay: producer out of step with the broker (a record refused by a topic whose "
                      "max.message.bytes is below max_event_bytes?); restart the service to start it over",
                      error_type=type(infra).__name__)
        if infra is not None and not sent:
            raise infra
        if infra is not None:
            log.warning("outbox relay: broker error after publishing part of a batch; will retry",
                        error=_error_text(infra), published=len(sent))
        return len(sent)

    async def _record_failure(self, conn: asyncpg.Connection, r: asyncpg.Record, exc: BaseException, *,
                              count: bool) -> bool:
        kind = classify(exc)
        attempts = r["attempts"] + (1 if count else 0)
        park = kind == "permanent" or attempts >= self.max_attempts
        await conn.execute(
            f"UPDATE {self.schema}.outbox SET attempts = $2, last_error = $3,"
            " parked_at = CASE WHEN $4 THEN now() ELSE NULL END WHERE seq = $1",
            r["seq"], attempts, _error_text(exc), park,
        )
        fields = dict(seq=r["seq"], event_id=str(r["event_id"]), topic=r["topic"], event_type=r["event_type"],
                      attempts=attempts, error_type=type(exc).__name__)
        if park:
            OUTBOX_PARKED_TOTAL.labels(r["topic"], "permanent" if kind == "permanent" else "attempts").inc()
            # No key, value or message: the record may hold health data; `rapport outbox show` has it.
            log.error("outbox row parked: later rows of its key wait; see `rapport outbox parked`", **fields)
        else:
            log.warning("outbox row failed to publish; will retry", max_attempts=self.max_attempts, **fields)
        return park

    async def refresh_gauges(self) -> None:
        row = await self.pool.fetchrow(
            f"SELECT count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked,"
            f" count(*) FILTER (WHERE parked_at IS NULL AND EXISTS (SELECT 1 FROM {self.schema}.outbox p"
            f"  WHERE p.parked_at IS NOT NULL AND p.sent_at IS NULL AND p.key = o.key AND p.seq < o.seq)) AS waiting,"
            f" count(*) FILTER (WHERE parked_at IS NULL) AS pending"
            f" FROM {self.schema}.outbox o WHERE sent_at IS NULL"
        )
        OUTBOX_PARKED.set(row["parked"])
        OUTBOX_WAITING.set(row["waiting"])
        OUTBOX_PENDING.set(row["pending"])

    async def drain(self) -> int:
        """Publish batches until one handles (publishes or parks) less than it took, or takes less
        than a full batch (by count or by bytes)."""
        total = 0
        while True:
            self._handled = self._taken = 0
            self._more = False
            total += await self.publish_batch()
            if not (self._more and self._handled >= self._taken > 0):
                return total

    async def prune(self) -> int:
        res = await self.pool.execute(
            f"DELETE FROM {self.schema}.outbox WHERE sent_at < now() - make_interval(hours => $1)", self.retention_hours
        )
        return int(res.split()[-1])

    async def _pass(self) -> None:
        try:
            await self.drain()
        finally:
            with contextlib.suppress(Exception):  # a failed pass reports its own error
                await self.refresh_gauges()
        if time.monotonic() - self._last_prune > 3600:
            await self.prune()
            self._last_prune = time.monotonic()

    async def run(self) -> None:
        """Publish until stopped: woken by NOTIFY, with a polling fallback (lost notifications,
        rows written while no relay listened, a failed publish to retry)."""
        await self._loop.run(self._pass)

    def stop(self) -> None:
        self._loop.stop()


# ------------------------------------------------------------------ operator side (rapport outbox)

_ROW_COLUMNS = ("o.seq, o.event_id, o.topic, o.event_type, encode(o.key, 'escape') AS key, o.created_at,"
                " o.attempts, o.last_error, o.parked_at, o.sent_at, octet_length(o.value) AS value_bytes")


async def parked_rows(conn: asyncpg.Connection, schema: str) -> list[dict]:
    """Parked rows, oldest first, each with how many later rows of its key wait behind it."""
    s = ident(schema)
    rows = await conn.fetch(
        f"SELECT {_ROW_COLUMNS}, (SELECT count(*) FROM {s}.outbox w WHERE w.key = o.key AND w.seq > o.seq"
        f" AND w.sent_at IS NULL) AS waiting FROM {s}.outbox o"
        " WHERE o.parked_at IS NOT NULL AND o.sent_at IS NULL ORDER BY o.seq")
    return [dict(r) for r in rows]


async def outbox_status(conn: asyncpg.Connection, schema: str) -> dict[str, int]:
    s = ident(schema)
    row = await conn.fetchrow(
        f"SELECT count(*) FILTER (WHERE sent_at IS NULL AND parked_at IS NULL) AS pending,"
        f" count(*) FILTER (WHERE sent_at IS NULL AND parked_at IS NOT NULL) AS parked,"
        f" count(*) FILTER (WHERE sent_at IS NULL AND attempts > 0 AND parked_at IS NULL) AS failing"
        f" FROM {s}.outbox o")
    return dict(row)


def _where_id(row_id: str) -> tuple[str, object]:
    """A row named by its seq (a number) or its event id (ce_id, a UUID)."""
    if row_id.isdigit():
        return "o.seq = $1", int(row_id)
    try:
        return "o.event_id = $1", uuid.UUID(row_id)
    except ValueError:
        raise ValueError(f"{row_id!r} is neither an outbox seq nor an event id") from None


async def outbox_row(conn: asyncpg.Connection, schema: str, row_id: str) -> dict | None:
    """One row, with its headers and value (for ``rapport outbox show``)."""
    where, arg = _where_id(row_id)
    row = await conn.fetchrow(f"SELECT {_ROW_COLUMNS}, o.headers, o.value FROM {ident(schema)}.outbox o WHERE {where}",
                              arg)
    if row is None:
        return None
    d = dict(row)
    d["headers"] = json.loads(d["headers"])
    d["value"] = bytes(d["value"])
    return d


async def retry_parked(conn: asyncpg.Connection, schema: str, row_ids: list[str] | None) -> list[int]:
    """Unpark rows (all parked rows when ``row_ids`` is None): the relay tries them again, first
    of their key, with a fresh attempt count. Returns the seqs unparked."""
    s = ident(schema)
    async with conn.transaction():
        if row_ids is None:
            seqs = [r["seq"] for r in await conn.fetch(
                f"UPDATE {s}.outbox o SET parked_at = NULL, attempts = 0"
                " WHERE parked_at IS NOT NULL AND sent_at IS NULL RETURNING seq")]
        else:
            seqs = []
            for row_id in row_ids:
                where, arg = _where_id(row_id)
                seq = await conn.fetchval(
                    f"UPDATE {s}.outbox o SET parked_at = NULL, attempts = 0"
                    f" WHERE {where} AND parked_at IS NOT NULL AND sent_at IS NULL RETURNING seq", arg)
                if seq is not None:
                    seqs.append(seq)
        if seqs:
            await conn.execute("SELECT pg_notify($1, '')", notify_channel(schema))
    return sorted(seqs)


async def drop_parked(conn: asyncpg.Connection, schema: str, row_id: str, *, apply: bool) -> dict | None:
    """Delete a parked row for good (its event is never published; the later rows of its key
    flow). Only a parked, unsent row can be dropped. Returns the row (with headers and value, to
    keep a copy), deleted only when ``apply``."""
    s = ident(schema)
    where, arg = _where_id(row_id)
    async with conn.transaction():
        row = await conn.fetchrow(
            f"SELECT {_ROW_COLUMNS}, o.headers, o.value FROM {s}.outbox o WHERE {where}"
            " AND o.parked_at IS NOT NULL AND o.sent_at IS NULL FOR UPDATE", arg)
        if row is None:
            return None
        d = dict(row)
        d["headers"] = json.loads(d["headers"])
        d["value"] = bytes(d["value"])
        if apply:
            await conn.execute(f"DELETE FROM {s}.outbox WHERE seq = $1", d["seq"])
            await conn.execute("SELECT pg_notify($1, '')", notify_channel(schema))
            log.warning("parked outbox row dropped by an operator", seq=d["seq"], event_id=str(d["event_id"]),
                        topic=d["topic"], event_type=d["event_type"])
    return d
