"""EventConsumer against real Postgres: inbox dedupe, retries, dead-lettering, commit decisions."""

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import asyncpg
import pytest

from rapport_shared import envelope
from rapport_shared.consumer import EventConsumer, PoisonEvent
from rapport_shared.contracts import PhaseChangedV1
from rapport_shared.outbox import Outbox

pytestmark = pytest.mark.integration


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list = field(default_factory=list)
    timestamp: int = 0


def record_of(data, offset=0, **header_override):
    ev = envelope.new_event(type=PhaseChangedV1.event_type, source="/rapport/test", subject=str(data["episode_id"]),
                            data=data, time=datetime.now(timezone.utc))
    rec = envelope.encode(ev)
    headers = {**rec.headers, **header_override}
    return ev, Rec("rapport.course", 0, offset, rec.key, rec.value, [(k, v.encode()) for k, v in headers.items()])


def valid_data():
    return {"episode_id": str(uuid.uuid4()), "course_id": str(uuid.uuid4()), "from_phase": "initial", "to_phase": "middle",
            "effective_from_session": 4, "reason": "checklist_complete", "changed_at": "2026-11-26T10:00:00Z"}


@pytest.fixture
async def setup(scratch_schema):
    name, dsn = scratch_schema
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4, server_settings={"search_path": name})
    await pool.execute("CREATE TABLE IF NOT EXISTS effects (event_id uuid, note text)")
    dead = []

    async def dead_letter(topic, rec):
        dead.append((topic, rec))

    consumer = EventConsumer(pool=pool, group_id="g-test", dead_letter=dead_letter, outbox=Outbox("/rapport/test", name),
                             max_attempts=3, backoff_s=0.01, backoff_max_s=0.02)
    yield pool, consumer, dead
    await pool.close()


async def effects(pool, event_id):
    return await pool.fetchval("SELECT count(*) FROM effects WHERE event_id = $1", uuid.UUID(event_id))


async def test_effect_once_even_when_delivered_twice(setup):
    pool, consumer, dead = setup

    @consumer.on(PhaseChangedV1)
    async def apply(uow, event, data):
        await uow.conn.execute("INSERT INTO effects VALUES ($1, 'x')", uuid.UUID(event.id))

    ev, rec = record_of(valid_data())
    assert (await consumer.process(rec)).status == "processed"
    assert (await consumer.process(rec)).status == "duplicate"
    assert await effects(pool, ev.id) == 1 and dead == []


async def test_failing_handler_rolls_back_retries_then_dead_letters(setup):
    pool, consumer, dead = setup
    calls = []

    @consumer.on(PhaseChangedV1)
    async def apply(uow, event, data):
        calls.append(1)
        await uow.conn.execute("INSERT INTO effects VALUES ($1, 'partial')", uuid.UUID(event.id))
        raise ValueError("bug in handler")

    ev, rec = record_of(valid_data(), offset=7)
    out = await consumer.process(rec)
    assert out.status == "dead_lettered" and len(calls) == 3
    assert await effects(pool, ev.id) == 0  # every attempt rolled back
    assert await pool.fetchval("SELECT count(*) FROM inbox WHERE event_id = $1", uuid.UUID(ev.id)) == 0
    [(topic, dl)] = dead
    assert topic == "rapport.course.dlq.g-test"
    assert dl.value == rec.value and dl.key == rec.key
    assert dl.headers["dlq_reason"] == "handler" and "bug in handler" in dl.headers["dlq_error"]
    assert dl.headers["dlq_original_offset"] == "7" and dl.headers["dlq_attempts"] == "3"
    assert dl.headers["ce_id"] == ev.id  # original headers kept for redrive


async def test_a_passing_retry_applies_once(setup):
    pool, consumer, dead = setup
    calls = []

    @consumer.on(PhaseChangedV1)
    async def apply(uow, event, data):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("transient bug")
        await uow.conn.execute("INSERT INTO effects VALUES ($1, 'x')", uuid.UUID(event.id))

    ev, rec = record_of(valid_data())
    assert (await consumer.process(rec)).status == "processed"
    assert await effects(pool, ev.id) == 1 and dead == []


async def test_contract_violation_and_poison_are_dead_lettered_at_once(setup):
    pool, consumer, dead = setup
    calls = []

    @consumer.on(PhaseChangedV1)
    async def apply(uow, event, data):
        calls.append(1)
        raise PoisonEvent("course unknown here")

    bad = {**valid_data(), "to_phase": "limbo"}
    _, rec = record_of(bad)
    out = await consumer.process(rec)
    assert out.status == "dead_lettered" and "to_phase" in out.error and calls == []
    _, rec2 = record_of(valid_data())
    assert (await consumer.process(rec2)).status == "dead_lettered" and calls == [1]
    assert [d[1].headers["dlq_reason"] for d in dead] == ["contract", "rejected"]


async def test_unknown_event_types_are_ignored_not_dead_lettered(setup):
    pool, consumer, dead = setup
    _, rec = record_of(valid_data(), ce_type="rapport.course.something_new.v1")
    assert (await consumer.process(rec)).status == "ignored" and dead == []


async def test_a_lost_postgres_connection_retries_beyond_the_handler_budget(setup):
    """A real connectivity error (the backend is terminated mid-transaction: asyncpg raises
    AdminShutdownError / ConnectionDoesNotExistError and the connection is closed) is retried
    until Postgres answers, however many times: it never counts against max_attempts (3)."""
    pool, consumer, dead = setup
    calls = []

    @consumer.on(PhaseChangedV1)
    async def apply(uow, event, data):
        calls.append(1)
        if len(calls) <= 4:  # more failures than max_attempts
            await uow.conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        await uow.conn.execute("INSERT INTO effects VALUES ($1, 'x')", uuid.UUID(event.id))

    ev, rec = record_of(valid_data())
    assert (await consumer.process(rec)).status == "processed"
    assert len(calls) == 5 and dead == [] and await effects(pool, ev.id) == 1


async def test_handler_oserror_timeouterror_and_interfaceerror_are_bounded(setup):
    """Raised by handler code on a healthy connection, these are not outages: bounded retries."""
    pool, consumer, dead = setup
    calls = []
    errors = iter([OSError("disk"), TimeoutError("slow api"), asyncpg.InterfaceError("misuse")])

    @consumer.on(PhaseChangedV1)
    async def apply(uow, event, data):
        calls.append(1)
        raise next(errors)

    _, rec = record_of(valid_data())
    out = await consumer.process(rec)
    assert out.status == "dead_lettered" and len(calls) == 3
    [(_, dl)] = dead
    assert dl.headers["dlq_reason"] == "handler" and "InterfaceError" in dl.headers["dlq_error"]


async def test_a_type_of_another_topic_is_dead_lettered_not_applied(setup):
    pool, consumer, dead = setup
    calls = []

    @consumer.on(PhaseChangedV1)
    async def apply(uow, event, data):
        calls.append(1)

    ev, rec = record_of(valid_data())
    rec.topic = "rapport.intake"
    out = await consumer.process(rec)
    assert out.status == "dead_lettered" and calls == []
    [(topic, dl)] = dead
    assert topic == "rapport.intake.dlq.g-test" and dl.headers["dlq_reason"] == "type_topic_mismatch"


async def test_a_value_nested_too_deeply_is_dead_lettered(setup):
    pool, consumer, dead = setup
    _, rec = record_of(valid_data())
    rec.value = b"[" * 200_000 + b"]" * 200_000
    out = await consumer.process(rec)
    assert out.status == "dead_lettered"
    [(_, dl)] = dead
    assert dl.headers["dlq_reason"] == "envelope" and "nested too deeply" in dl.headers["dlq_error"]
