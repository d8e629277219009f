"""Injectable time. Handlers and timers read ``clock.now()``, never ``datetime.now()``,
so tests and demos can run a 16-week course in seconds.

Three clocks:

``SystemClock``
    The default: wall-clock UTC.
``ManualClock``
    Moved by hand inside one process (unit and integration tests).
``SimulatedClock``
    Simulation mode across processes (architecture.md, "Time"): "now" is the latest time
    published on a clock topic (default ``rapport.clock``) that a test or demo driver advances
    with :func:`publish_tick` (or ``python -m rapport_shared.clock tick``). Simulated time is
    itself an event stream: a service (re)starting reads the topic from the beginning and takes
    the latest tick, so a restart or a replay sees the same time. Until the first tick arrives
    it follows the system clock.

A clock tick is a CloudEvent (``rapport.clock.advanced.v1``, subject ``clock``, data
``{"now": "<RFC 3339>"}``) on a single-partition topic; it carries no personal data and is not
part of the partner contract. Ticks only move time forward: one earlier than the current
simulated time is ignored.

Clocks that have a life of their own (``SimulatedClock``) offer ``start()``/``stop()``, which
:class:`rapport_shared.timers.TimedRuntime` calls before the consumers start, and
``wait_changed(timeout)``, which the timer runner uses to fire due timers as soon as
simulated time moves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from . import envelope, topics
from .contracts.internal import ClockAdvancedV1
from .kafka_admin import client_kwargs, ensure_topics
from .logging import get_logger
from .retry import RetryPolicy

log = get_logger(__name__)

CLOCK_TOPIC = topics.CLOCK
TICK_TYPE = ClockAdvancedV1.event_type  # its published schema: the model (contracts/internal.py)
TICK_SOURCE = "/rapport/clock-driver"
# Kafka away while following the clock topic: the shared backoff (jittered), about a second at first.
FOLLOW_RETRY = RetryPolicy(initial_s=1.0, max_s=10.0)


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class _MovingClock:
    """A clock that moves by itself; the timer runner waits on ``wait_changed``."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    async def wait_changed(self, timeout: float) -> None:
        # Not cleared before waiting: a change since the last wait returns at once.
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._changed.clear()


class ManualClock(_MovingClock):
    """A clock tests move by hand."""

    def __init__(self, start: datetime) -> None:
        super().__init__()
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta
        self._changed.set()

    def set(self, to: datetime) -> None:
        if to.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = to
        self._changed.set()



async def wait_changed(clock: Clock, timeout: float) -> None:
    """Sleep until ``clock`` moves by itself (simulated/manual clocks) or ``timeout`` passes."""
    waiter = getattr(clock, "wait_changed", None)
    if waiter is None:
        await asyncio.sleep(timeout)
    else:
        await waiter(timeout)


def _parse_tick(value: bytes | None) -> datetime | None:
    try:
        t = datetime.fromisoformat(json.loads(value or b"{}")["now"].replace("Z", "+00:00"))
    except Exception:  # any shape at all ({"now": 5} AttributeError, deep nesting RecursionError): not a tick
        return None
    return t if t.tzinfo is not None else None


class SimulatedClock(_MovingClock):
    """``now()`` is the latest tick on the clock topic; see the module docstring."""

    def __init__(self, bootstrap: str, topic: str = CLOCK_TOPIC, fallback: Clock | None = None,
                 security: Any = None) -> None:
        super().__init__()
        self.bootstrap = bootstrap
        self.topic = topic
        self.security = security  # a settings.KafkaSecurity; None = from the environment
        self.fallback = fallback or SystemClock()
        self._now: datetime | None = None
        self._consumer = None
        self._task: asyncio.Task | None = None

    def now(self) -> datetime:
        return self._now if self._now is not None else self.fallback.now()

    @property
    def ticked(self) -> bool:
        return self._now is not None

    def observe(self, t: datetime) -> bool:
        """Take a tick into account; True if time moved forward."""
        if self._now is not None and t <= self._now:
            return False
        self._now = t.astimezone(timezone.utc)
        self._changed.set()
        return True


    async def start(self, timeout: float = 60.0) -> None:
        """Read the clock topic to its current end (so "now" is caught up), then follow it."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        await ensure_topics(self.bootstrap, [self.topic], 1, 1, security=self.security)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest", **client_kwargs(self.security))
        await consumer.start()
        self._consumer = consumer
        try:
            parts = (await consumer._client.fetch_all_metadata()).partitions_for_topic(self.topic) or {0}
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
                if loop.time() > deadline:
                    raise TimeoutError(f"clock topic {self.topic} not read to its end after {timeout}s")
                await self._read(consumer, 500)
        except BaseException:
            await consumer.stop()
            self._consumer = None
            raise
        log.info("simulated clock caught up", topic=self.topic, now=self.now().isoformat(), ticked=self.ticked)
        self._task = asyncio.create_task(self._follow(), name="simulated-clock")

    async def _read(self, consumer, timeout_ms: int) -> None:
        batch = await consumer.getmany(timeout_ms=timeout_ms)
        for records in batch.values():
            for r in records:
                t = _parse_tick(r.value)
                if t is None:
                    log.warning("unreadable clock tick ignored", offset=r.offset)
                elif not self.observe(t):
                    log.debug("clock tick not after current time; ignored", tick=t.isoformat())

    async def _follow(self) -> None:
        failures = 0  # reads failed in a row
        while True:
            try:
                await self._read(self._consumer, 1000)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Kafka away: keep the last known time, try again
                failures += 1
                delay = FOLLOW_RETRY.delay(failures)
                log.warning("clock topic read failed; retrying", error=repr(exc), retry_in_s=round(delay, 3))
                await asyncio.sleep(delay)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


def make_clock(mode: str, *, bootstrap: str, topic: str = CLOCK_TOPIC, security: Any = None) -> Clock:
    """``system`` (default) or ``simulated`` (follows ``topic`` on the Kafka at ``bootstrap``)."""
    if mode == "system":
        return SystemClock()
    if mode == "simulated":
        return SimulatedClock(bootstrap, topic, security=security)
    raise ValueError(f"unknown clock mode {mode!r} (system | simulated)")


def clock_for(settings: Any) -> Clock:
    """The clock a service's settings ask for (``RAPPORT_CLOCK``, ``RAPPORT_CLOCK_TOPIC``)."""
    return make_clock(settings.clock, bootstrap=settings.kafka_bootstrap, topic=settings.clock_topic,
                      security=settings.kafka_security())


async def publish_tick(bootstrap: str, to: datetime, topic: str = CLOCK_TOPIC, security: Any = None) -> None:
    """The driver's side: announce that simulated time is now ``to`` (acks=all, then return)."""
    from aiokafka import AIOKafkaProducer

    if to.tzinfo is None:
        raise ValueError("simulated time must be timezone-aware")
    await ensure_topics(bootstrap, [topic], 1, 1, security=security)
    event = envelope.new_event(type=TICK_TYPE, source=TICK_SOURCE, subject=ClockAdvancedV1.subject,
                               data=ClockAdvancedV1(now=to), time=to,
                               dataschema=envelope.schema_uri(TICK_TYPE, ClockAdvancedV1.schema_collection))
    rec = envelope.encode(event)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                **client_kwargs(security))
    await producer.start()
    try:
        await producer.send_and_wait(topic, rec.value, key=rec.key, headers=[(k, v.encode()) for k, v in rec.headers.items()])
    finally:
        await producer.stop()


_DELTA = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")


def parse_delta(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``3d``, ``1w``."""
    m = _DELTA.match(text.strip())
    if not m:
        raise ValueError(f"not a duration: {text!r} (e.g. 90s, 15m, 2h, 3d, 1w)")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
    return timedelta(**{unit: float(m.group(1))})


async def current_tick(bootstrap: str, topic: str = CLOCK_TOPIC) -> datetime | None:
    clock = SimulatedClock(bootstrap, topic)
    await clock.start()
    try:
        return clock._now
    finally:
        await clock.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m rapport_shared.clock tick --to 2026-03-01T09:00Z | --by 1w`` (demo driver)."""
    p = argparse.ArgumentParser(prog="rapport-clock", description="Drive simulated time on the clock topic")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("tick", "show"):
        s = sub.add_parser(name)
        s.add_argument("--bootstrap", default="127.0.0.1:9092")
        s.add_argument("--topic", default=CLOCK_TOPIC)
        if name == "tick":
            g = s.add_mutually_exclusive_group(required=True)
            g.add_argument("--to", help="RFC 3339 time to move to")
            g.add_argument("--by", help="move forward by a duration: 90s, 15m, 2h, 3d, 1w")
    args = p.parse_args(argv)
    current = asyncio.run(current_tick(args.bootstrap, args.topic))
    if args.cmd == "show":
        print(current.isoformat() if current else "no tick yet (services follow the system clock)")
        return 0
    if args.to:
        to = datetime.fromisoformat(args.to.replace("Z", "+00:00"))
    else:
        to = (current or SystemClock().now()) + parse_delta(args.by)
    if current is not None and to <= current:
        print(f"simulated time only moves forward (now {current.isoformat()})", file=sys.stderr)
        return 2
    asyncio.run(publish_tick(args.bootstrap, to, args.topic))
    print(to.isoformat())
    return 0


if __name__ == "__main__":
    sys.exit(main())
