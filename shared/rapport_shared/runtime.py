"""One service process: Postgres pool, Kafka broker, outbox relay, consumers — started and
stopped together under the HTTP app's lifespan (FastAPI and FastStream side by side).

Consumers: one ``EventConsumer`` in the service's group (``rapport-<svc>``) fed by a
``BatchSubscriber``; with ``priority=[Model, ...]`` a second one, the **safety lane**: its own
group (``rapport-<svc>-priority``), its own small connection pool, reading only the topics of those
types and handling only those types, while the main consumer leaves them to it. Both claim events
in the same inbox inside the effect's transaction, so an event is applied once whichever reads it
(docs/architecture.md, "Safety lane")."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable

import asyncpg
from faststream.kafka import KafkaBroker

from . import db
from .clock import Clock, SystemClock
from .consumer import EventConsumer
from .contracts.base import EventData
from .kafka import BatchSubscriber, RelayProducer, dead_letter_publisher, ensure_topics, make_broker
from .logging import get_logger
from .outbox import Outbox, OutboxRelay
from .settings import ServiceSettings
from .topics import dlq_topic
from .uow import UnitOfWork, UnitOfWorkFactory, uow_maker

if TYPE_CHECKING:
    from .messagebus import HandlerRegistry

log = get_logger(__name__)


@dataclass
class ServiceRuntime:
    settings: ServiceSettings
    migrations_dir: Path
    produces: list[str] = field(default_factory=list)
    register_handlers: Callable[["ServiceRuntime", EventConsumer], None] | None = None
    clock: Clock = field(default_factory=SystemClock)
    # The service's handlers (events, commands, timers) and its unit of work (its repositories).
    handlers: "HandlerRegistry | None" = None
    uow_class: type[UnitOfWork] = UnitOfWork
    # Long-running tasks of the service (timers, schedulers), started after Kafka and the relay.
    background: list[Callable[["ServiceRuntime"], Awaitable[None]]] = field(default_factory=list)
    # Event types handled in the safety lane (never queued behind routine records), e.g. alerts.
    priority: list[type[EventData]] = field(default_factory=list)

    pool: asyncpg.Pool | None = None
    broker: KafkaBroker | None = None
    consumer: EventConsumer | None = None
    relay: OutboxRelay | None = None
    priority_consumer: EventConsumer | None = None
    priority_pool: asyncpg.Pool | None = None
    relay_producer: RelayProducer | None = None
    _subscribers: list[BatchSubscriber] = field(default_factory=list)
    _relay_task: asyncio.Task | None = None
    _tasks: list[asyncio.Task] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.outbox = Outbox(source=f"/rapport/{self.settings.service_name}", schema=self.settings.db_schema,
                             max_event_bytes=self.settings.max_event_bytes)
        self.migrations = db.discover(self.migrations_dir)
        self.make_uow = uow_maker(self.outbox, self.clock, self.uow_class, self.settings)

    async def start(self) -> None:
        s = self.settings
        # A clock with a life of its own (simulated: follows the clock topic) is caught up first,
        # so no handler reads a "now" from before a restart.
        if (start_clock := getattr(self.clock, "start", None)) is not None:
            await start_clock()
        self.pool = await db.create_pool(s.database_dsn, s.db_schema, s.db_pool_min, s.db_pool_max)
        if s.migrate_on_start:
            async with self.pool.acquire() as conn:
                await db.migrate(conn, s.db_schema, self.migrations)
        self.uow = UnitOfWorkFactory(self.pool, self.outbox, self.clock, make_uow=self.make_uow)
        if self.handlers is not None:
            from .messagebus import MessageBus
            self.bus = MessageBus(self.handlers, self.uow)
        self.broker = make_broker(s.kafka_bootstrap, client_id=f"rapport-{s.service_name}")
        self.consumer = self._event_consumer(self.pool, s.consumer_group)
        if self.handlers is not None:
            self.handlers.subscribe(self.consumer)
        if self.register_handlers:
            self.register_handlers(self, self.consumer)
        if self.priority and not s.replay_mode:  # a replay waits for one group: no lane there
            self.priority_pool = await db.create_pool(s.database_dsn, s.db_schema, 1, s.priority_pool_max)
            self.priority_consumer = self._priority_lane(self.consumer, self.priority_pool)
        topics = set(self.produces) | set(self.consumer.topics)
        topics |= {dlq_topic(t, s.consumer_group) for t in self.consumer.topics}
        await ensure_topics(s.kafka_bootstrap, sorted(topics), s.topic_partitions, s.topic_replication)
        await self.broker.start()
        for consumer in filter(None, (self.priority_consumer, self.consumer)):
            subscriber = BatchSubscriber(
                consumer, s.kafka_bootstrap, client_id=f"rapport-{s.service_name}",
                auto_offset_reset=s.auto_offset_reset, max_records=s.consumer_batch_max_records,
                max_bytes=s.consumer_batch_max_bytes, security=s.kafka_security())
            await subscriber.start()
            self._subscribers.append(subscriber)
        if s.relay_enabled:
            self.relay_producer = RelayProducer(s.kafka_bootstrap, client_id=f"rapport-{s.service_name}-relay",
                                                linger_ms=s.relay_linger_ms, compression=s.relay_compression,
                                                security=s.kafka_security())
            await self.relay_producer.start()
            self.relay = OutboxRelay(
                self.pool, self.relay_producer.publish, s.db_schema,
                batch_size=s.relay_batch_size, poll_interval_s=s.relay_poll_interval_s,
                retention_hours=s.outbox_retention_hours, max_event_bytes=s.max_event_bytes,
                max_attempts=s.relay_max_attempts, reset_publisher=self.relay_producer.reset,
            )
            self._relay_task = asyncio.create_task(self.relay.run(), name="outbox-relay")
        for job in self.background:
            self._tasks.append(asyncio.create_task(job(self), name=getattr(job, "__name__", "background")))
        log.info("service started", consumes=self.consumer.topics, produces=self.produces,
                 priority=sorted(self.priority_consumer.handlers) if self.priority_consumer else [])

    def _event_consumer(self, pool: asyncpg.Pool, group: str, **kw) -> EventConsumer:
        s = self.settings
        assert self.broker is not None
        return EventConsumer(
            pool=pool, group_id=group, dead_letter=dead_letter_publisher(self.broker), outbox=self.outbox,
            clock=self.clock, max_attempts=s.handler_max_attempts, backoff_s=s.handler_backoff_s,
            backoff_max_s=s.handler_backoff_max_s, make_uow=self.make_uow, **{"concurrency": s.consumer_concurrency, **kw})

    def _priority_lane(self, main: EventConsumer, pool: asyncpg.Pool) -> EventConsumer:
        """The safety lane: the priority types' handlers in a consumer of their own (own group, own
        pool), which reads only their topics; the main consumer leaves those types to it."""
        s = self.settings
        lane = self._event_consumer(pool, f"{s.consumer_group}-priority", partial=True, dlq_group=s.consumer_group,
                                    concurrency=s.priority_pool_max)
        for model in self.priority:
            if model.event_type not in main.handlers:
                raise ValueError(f"priority type {model.event_type} has no handler in {s.service_name}")
            lane.register(model, main.handlers[model.event_type][1])
        main.leaves = frozenset(lane.handlers)
        return lane

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Consumers before the broker: a batch in flight may still publish a dead letter.
        await asyncio.gather(*(sub.stop() for sub in self._subscribers), return_exceptions=True)
        if self.relay:
            self.relay.stop()
        if self._relay_task:
            try:
                await asyncio.wait_for(self._relay_task, timeout=10)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._relay_task.cancel()
        if self.relay_producer:
            await self.relay_producer.stop()
        if self.broker:
            await self.broker.stop()
        if self.priority_pool:
            await self.priority_pool.close()
        if self.pool:
            await self.pool.close()
        if (stop_clock := getattr(self.clock, "stop", None)) is not None:
            await stop_clock()
        log.info("service stopped")

    async def readiness(self) -> dict[str, str]:
        """Each check: 'ok' or the reason it failed."""
        checks: dict[str, str] = {}
        try:
            assert self.pool is not None, "not started"
            async with self.pool.acquire(timeout=2) as conn:
                pending = await db.pending_migrations(conn, self.migrations)
            checks["postgres"] = "ok"
            checks["migrations"] = "ok" if not pending else f"pending: {', '.join(pending)}"
        except Exception as exc:
            checks["postgres"] = f"unreachable: {exc!r}"
            checks["migrations"] = "unknown"
        try:
            assert self.broker is not None, "not started"
            checks["kafka"] = "ok" if await self.broker.ping(timeout=2) else "unreachable"
        except Exception as exc:
            checks["kafka"] = f"unreachable: {exc!r}"
        return checks
