"""Set-based handlers (``HandlerRegistry.handles_many``) under ``EventConsumer.process_batch``
against real Postgres: a partition's consecutive records go to one call, in order, in the inbox's
transaction; a duplicate splits the run; a poison record inside a run is found one record at a
time and dead-lettered, the others applied once; a set-based handler may not emit events."""

import uuid
from datetime import datetime, timezone

import pytest

from rapport_shared import envelope
from rapport_shared.consumer import EventConsumer
from rapport_shared.contracts import PhaseChangedV1
from rapport_shared.messagebus import HandlerRegistry
from rapport_shared.outbox import Outbox

pytestmark = pytest.mark.integration


class Rec:
    def __init__(self, offset, ev):
        rec = envelope.encode(ev)
        self.topic, self.partition, self.offset, self.timestamp = "rapport.course", 0, offset, 0
        self.key, self.value = rec.key, rec.value
        self.headers = [(k, v.encode()) for k, v in rec.headers.items()]

    def headers_map(self) -> dict[str, str]:
        return {k: v.decode() for k, v in self.headers}


def record(offset, event_id=None, episode=None):
    data = PhaseChangedV1(episode_id=episode or uuid.uuid4(), course_id=uuid.uuid4(), from_phase="initial",
                          to_phase="middle", effective_from_session=4, reason="checklist_complete",
                          changed_at=datetime.now(timezone.utc))
    ev = envelope.new_event(type=data.event_type, source="/rapport/test", subject=str(data.episode_id), data=data,
                            time=datetime.now(timezone.utc), id=event_id)
    return data, Rec(offset, ev)


@pytest.fixture
async def pool(scratch_pool):
    await scratch_pool.execute("CREATE TABLE IF NOT EXISTS set_effects (episode_id uuid, seq bigserial)")
    return scratch_pool


@pytest.fixture
def dead():
    return []


def consumer_with(pool, schema, dead, handler):
    async def dead_letter(topic, rec):
        dead.append((topic, rec))

    consumer = EventConsumer(pool=pool, group_id="g-set", dead_letter=dead_letter,
                             outbox=Outbox("/rapport/test", schema), max_attempts=3, backoff_s=0.01, backoff_max_s=0.02)
    registry = HandlerRegistry()
    registry.handles_many(PhaseChangedV1)(handler)
    registry.subscribe(consumer)
    return consumer


async def applied(pool, batch) -> list[uuid.UUID]:
    """The effects of ``batch``'s records, in the order they were written (the schema is shared)."""
    rows = await pool.fetch("SELECT episode_id FROM set_effects WHERE episode_id = ANY($1::uuid[]) ORDER BY seq",
                            [d.episode_id for d, _ in batch])
    return [r["episode_id"] for r in rows]


def inserting(calls: list[int], poison: set[uuid.UUID] = frozenset()):
    async def apply(msgs: list[PhaseChangedV1], uow) -> None:
        calls.append(len(msgs))
        await uow.conn.executemany("INSERT INTO set_effects (episode_id) VALUES ($1)", [(m.episode_id,) for m in msgs])
        if poison & {m.episode_id for m in msgs}:
            raise ValueError("a record this handler can never apply")

    return apply


async def test_a_run_is_one_call_in_order_and_a_duplicate_splits_it(pool, scratch_schema, dead):
    calls: list[int] = []
    consumer = consumer_with(pool, scratch_schema[0], dead, inserting(calls))
    first = [record(i) for i in range(10)]
    await consumer.process_batch([r for _, r in first[:1]])  # applied before: a duplicate below
    calls.clear()
    again = record(10, event_id=first[0][1].headers_map()["ce_id"], episode=first[0][0].episode_id)
    later = [record(11 + i) for i in range(5)]
    batch = first[1:] + [again] + later
    outs = await consumer.process_batch([r for _, r in batch])
    assert [o.status for o in outs] == ["processed"] * 9 + ["duplicate"] + ["processed"] * 5
    assert calls == [9, 5]
    assert await applied(pool, batch + first[:1]) == [d.episode_id for d, _ in first + later]
    ids = [uuid.UUID(o.event_id) for o in outs] + [uuid.UUID(first[0][1].headers_map()["ce_id"])]
    assert await pool.fetchval("SELECT count(*) FROM inbox WHERE event_id = ANY($1::uuid[])", ids) == 15
    assert dead == []
    # Redelivered whole: all duplicates, no call.
    outs = await consumer.process_batch([r for _, r in batch])
    assert {o.status for o in outs} == {"duplicate"} and calls == [9, 5]


async def test_a_poison_record_inside_a_run_is_found_and_dead_lettered_alone(pool, scratch_schema, dead):
    calls: list[int] = []
    batch = [record(i) for i in range(10)]
    bad = batch[5][0].episode_id
    consumer = consumer_with(pool, scratch_schema[0], dead, inserting(calls, {bad}))
    outs = await consumer.process_batch([r for _, r in batch])
    assert [o.status for o in outs] == ["processed"] * 5 + ["dead_lettered"] + ["processed"] * 4
    # The run (10, rolled back); records 0-5 one by one in savepoints (5 fails: its attempt 1);
    # 5 alone twice more (max_attempts 3); then the rest as one run.
    assert calls == [10] + [1] * 6 + [1, 1] + [4]
    assert await applied(pool, batch) == [d.episode_id for d, _ in batch if d.episode_id != bad]
    [(topic, dl)] = dead
    assert topic == "rapport.course.dlq.g-set" and dl.headers["dlq_original_offset"] == "5"
    assert dl.headers["dlq_reason"] == "handler" and dl.headers["dlq_attempts"] == "3"


async def test_a_set_based_handler_that_emits_is_refused(pool, scratch_schema, dead):
    async def emitting(msgs: list[PhaseChangedV1], uow) -> None:
        for m in msgs:
            await uow.emit(m)

    consumer = consumer_with(pool, scratch_schema[0], dead, emitting)
    batch = [record(i) for i in range(3)]
    outs = await consumer.process_batch([r for _, r in batch])
    assert [o.status for o in outs] == ["dead_lettered"] * 3
    keys = [str(d.episode_id).encode() for d, _ in batch]
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE key = ANY($1::bytea[])", keys) == 0
    assert all("emitted events" in dl.headers["dlq_error"] for _, dl in dead)
