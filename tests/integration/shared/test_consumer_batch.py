"""EventConsumer.process_batch against real Postgres: one transaction per partition, a savepoint per
record, the inbox claimed in one statement; a failing record is dead-lettered without losing the
others; order within a partition; the safety lane's split of types between two consumers."""

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest

from rapport_shared import envelope
from rapport_shared.consumer import EventConsumer, PoisonEvent
from rapport_shared.contracts import PhaseChangedV1
from rapport_shared.contracts.outcomes import AlertRaisedV1
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


def phase_data(episode=None):
    return {"episode_id": str(episode or uuid.uuid4()), "course_id": str(uuid.uuid4()), "from_phase": "initial",
            "to_phase": "middle", "effective_from_session": 4, "reason": "checklist_complete",
            "changed_at": "2026-11-26T10:00:00Z"}


def record(offset, data=None, partition=0, topic="rapport.course", event_type=PhaseChangedV1.event_type, event_id=None):
    data = data or phase_data()
    ev = envelope.new_event(type=event_type, source="/rapport/test", subject=str(data["episode_id"]), data=data,
                            time=datetime.now(timezone.utc), id=event_id)
    rec = envelope.encode(ev)
    return ev, Rec(topic, partition, offset, rec.key, rec.value, [(k, v.encode()) for k, v in rec.headers.items()])


@pytest.fixture
async def pool(scratch_pool):
    await scratch_pool.execute("CREATE TABLE IF NOT EXISTS batch_effects (event_id uuid, partition int, seq bigserial)")
    return scratch_pool


@pytest.fixture
def dead():
    return []


def make_consumer(pool, schema, dead, **kw):
    async def dead_letter(topic, rec):
        dead.append((topic, rec))

    return EventConsumer(pool=pool, group_id="g-batch", dead_letter=dead_letter, outbox=Outbox("/rapport/test", schema),
                         max_attempts=3, backoff_s=0.01, backoff_max_s=0.02, **kw)


async def effects(pool, ids):
    rows = await pool.fetch("SELECT event_id FROM batch_effects WHERE event_id = ANY($1::uuid[]) ORDER BY seq",
                            [uuid.UUID(i) for i in ids])
    return [str(r["event_id"]) for r in rows]


async def inbox_count(pool, ids):
    return await pool.fetchval("SELECT count(*) FROM inbox WHERE event_id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids])


def applying(pool, calls=None, fail=None):
    """A handler writing one effect row; ``fail``: ce_id -> exception raised for it (every time)."""
    async def apply(uow, event, data):
        if calls is not None:
            calls[event.id] = calls.get(event.id, 0) + 1
        await uow.conn.execute("INSERT INTO batch_effects (event_id, partition) VALUES ($1, 0)", uuid.UUID(event.id))
        if fail and event.id in fail:
            raise fail[event.id]

    return apply


async def test_a_batch_applies_each_record_once_and_a_redelivery_is_all_duplicates(pool, scratch_schema, dead):
    consumer = make_consumer(pool, scratch_schema[0], dead)
    consumer.register(PhaseChangedV1, applying(pool))
    batch = [record(i) for i in range(20)]
    ids = [ev.id for ev, _ in batch]
    outs = await consumer.process_batch([r for _, r in batch])
    assert [o.status for o in outs] == ["processed"] * 20
    assert await effects(pool, ids) == ids and await inbox_count(pool, ids) == 20
    again = await consumer.process_batch([r for _, r in batch])
    assert [o.status for o in again] == ["duplicate"] * 20
    assert await effects(pool, ids) == ids and dead == []


async def test_the_same_event_twice_in_one_batch_is_applied_once(pool, scratch_schema, dead):
    consumer = make_consumer(pool, scratch_schema[0], dead)
    consumer.register(PhaseChangedV1, applying(pool))
    ev, first = record(0)
    _, copy = record(1, event_id=ev.id)
    outs = await consumer.process_batch([first, copy])
    assert [o.status for o in outs] == ["processed", "duplicate"]
    assert await effects(pool, [ev.id]) == [ev.id]


async def test_a_failing_record_in_the_middle_is_dead_lettered_and_the_others_are_applied(pool, scratch_schema, dead):
    consumer = make_consumer(pool, scratch_schema[0], dead)
    calls: dict[str, int] = {}
    batch = [record(i) for i in range(7)]
    ids = [ev.id for ev, _ in batch]
    bad = ids[3]
    consumer.register(PhaseChangedV1, applying(pool, calls, fail={bad: ValueError("bug in handler")}))
    outs = await consumer.process_batch([r for _, r in batch])
    assert [o.status for o in outs] == ["processed"] * 3 + ["dead_lettered"] + ["processed"] * 3
    assert await effects(pool, ids) == [i for i in ids if i != bad]  # its partial effect rolled back, order kept
    assert await inbox_count(pool, [bad]) == 0  # redrive can apply it later
    assert await inbox_count(pool, ids) == 6
    assert calls[bad] == 3  # max_attempts: its try inside the batch counts as the first
    # the records before it were rolled back with it once, then applied (each in a savepoint)
    assert [calls[i] for i in ids] == [2, 2, 2, 3, 1, 1, 1]
    [(topic, dl)] = dead
    assert topic == "rapport.course.dlq.g-batch"
    assert dl.headers["dlq_reason"] == "handler" and dl.headers["dlq_attempts"] == "3"
    assert dl.headers["dlq_original_offset"] == "3" and dl.headers["ce_id"] == bad


async def test_a_record_failing_only_when_applied_again_is_rolled_back_to_its_savepoint(pool, scratch_schema, dead):
    """Record 3 fails: the transaction is rolled back and records 0-2 go again, each in a
    savepoint; record 1 fails this time (a flaky handler): rolled back alone, record 0 kept."""
    consumer = make_consumer(pool, scratch_schema[0], dead)
    batch = [record(i) for i in range(5)]
    ids = [ev.id for ev, _ in batch]
    calls: dict[str, int] = {}

    async def apply(uow, event, data):
        calls[event.id] = calls.get(event.id, 0) + 1
        await uow.conn.execute("INSERT INTO batch_effects (event_id, partition) VALUES ($1, 0)", uuid.UUID(event.id))
        if event.id == ids[3] or (event.id == ids[1] and calls[event.id] == 2):
            raise ValueError("bug in handler")

    consumer.register(PhaseChangedV1, apply)
    outs = await consumer.process_batch([r for _, r in batch])
    assert [o.status for o in outs] == ["processed", "processed", "processed", "dead_lettered", "processed"]
    assert await effects(pool, ids) == [ids[0], ids[1], ids[2], ids[4]]
    assert await inbox_count(pool, ids) == 4 and [d.headers["ce_id"] for _, d in dead] == [ids[3]]
    # 1: batch (rolled back), batch again (failed: counts as attempt 1), alone (passed). 3: its
    # first failure was rolled back before it counted (1 failed first in the second pass), so it
    # fails once more in the next transaction, then twice alone: dead-lettered after 3 counted.
    assert [calls[i] for i in ids] == [2, 3, 3, 4, 1]


async def test_the_first_record_failing_rolls_back_only_itself(pool, scratch_schema, dead):
    consumer = make_consumer(pool, scratch_schema[0], dead)
    batch = [record(i) for i in range(4)]
    ids = [ev.id for ev, _ in batch]
    consumer.register(PhaseChangedV1, applying(pool, fail={ids[0]: PoisonEvent("never applies")}))
    outs = await consumer.process_batch([r for _, r in batch])
    assert [o.status for o in outs] == ["dead_lettered", "processed", "processed", "processed"]
    assert await effects(pool, ids) == ids[1:] and await inbox_count(pool, ids) == 3
    assert [d.headers["dlq_reason"] for _, d in dead] == ["rejected"]


async def test_a_record_that_passes_on_its_retry_is_applied_once_between_the_others(pool, scratch_schema, dead):
    consumer = make_consumer(pool, scratch_schema[0], dead)
    batch = [record(i) for i in range(5)]
    ids = [ev.id for ev, _ in batch]
    calls: dict[str, int] = {}

    async def flaky(uow, event, data):
        calls[event.id] = calls.get(event.id, 0) + 1
        if event.id == ids[2] and calls[event.id] == 1:
            raise TimeoutError("transient")
        await uow.conn.execute("INSERT INTO batch_effects (event_id, partition) VALUES ($1, 0)", uuid.UUID(event.id))

    consumer.register(PhaseChangedV1, flaky)
    outs = await consumer.process_batch([r for _, r in batch])
    assert [o.status for o in outs] == ["processed"] * 5 and dead == []
    assert await effects(pool, ids) == ids  # partition order kept
    assert calls[ids[2]] == 2


async def test_hostile_records_in_a_batch_end_without_holding_up_the_others(pool, scratch_schema, dead):
    consumer = make_consumer(pool, scratch_schema[0], dead)
    consumer.register(PhaseChangedV1, applying(pool))
    good = [record(i) for i in (0, 2, 5)]
    _, undecodable = record(1)
    undecodable.value = b"[" * 200_000 + b"]" * 200_000
    _, contract = record(3, data={**phase_data(), "to_phase": "limbo"})
    _, unknown = record(4, event_type="rapport.course.something_new.v1")
    _, wrong_topic = record(6, topic="rapport.intake")
    batch = sorted([r for _, r in good] + [undecodable, contract, unknown], key=lambda r: r.offset) + [wrong_topic]
    outs = await consumer.process_batch(batch)
    assert [o.status for o in outs] == ["processed", "dead_lettered", "processed", "dead_lettered", "ignored",
                                        "processed", "dead_lettered"]
    assert await effects(pool, [ev.id for ev, _ in good]) == [ev.id for ev, _ in good]
    assert sorted(d.headers["dlq_reason"] for _, d in dead) == ["contract", "envelope", "type_topic_mismatch"]


async def test_partitions_are_applied_side_by_side_each_in_its_own_order(pool, scratch_schema, dead):
    consumer = make_consumer(pool, scratch_schema[0], dead, concurrency=3)
    running, peak = [0], [0]

    async def apply(uow, event, data):
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await asyncio.sleep(0.01)
        running[0] -= 1
        await uow.conn.execute("INSERT INTO batch_effects (event_id, partition) VALUES ($1, $2)",
                               uuid.UUID(event.id), data.effective_from_session - 1)

    consumer.register(PhaseChangedV1, apply)
    batch = []
    for p in range(3):
        for i in range(10):
            _, r = record(i, data={**phase_data(), "effective_from_session": p + 1}, partition=p)
            batch.append(r)
    outs = await consumer.process_batch(batch)
    assert [o.status for o in outs] == ["processed"] * 30 and peak[0] == 3
    for p in range(3):
        ids = [o.event_id for o, r in zip(outs, batch) if r.partition == p]
        rows = await pool.fetch("SELECT event_id FROM batch_effects WHERE partition = $1 AND event_id = ANY($2::uuid[])"
                                " ORDER BY seq", p, [uuid.UUID(i) for i in ids])
        assert [str(r["event_id"]) for r in rows] == ids


async def test_a_lost_connection_mid_batch_retries_the_whole_transaction_and_applies_once(pool, scratch_schema, dead):
    consumer = make_consumer(pool, scratch_schema[0], dead)
    batch = [record(i) for i in range(6)]
    ids = [ev.id for ev, _ in batch]
    killed = []

    async def apply(uow, event, data):
        await uow.conn.execute("INSERT INTO batch_effects (event_id, partition) VALUES ($1, 0)", uuid.UUID(event.id))
        if event.id == ids[4] and len(killed) < 4:  # more outages than max_attempts (3)
            killed.append(1)
            await uow.conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    consumer.register(PhaseChangedV1, apply)
    outs = await consumer.process_batch([r for _, r in batch])
    assert [o.status for o in outs] == ["processed"] * 6 and dead == [] and len(killed) == 4
    assert await effects(pool, ids) == ids and await inbox_count(pool, ids) == 6


async def test_the_safety_lane_and_the_main_consumer_split_the_types_and_share_the_inbox(pool, scratch_schema, dead):
    """ServiceRuntime(priority=[AlertRaisedV1]): the main consumer leaves alerts to the lane, the
    lane ends everything else as the main consumer's; an alert both read is applied once."""
    main = make_consumer(pool, scratch_schema[0], dead)
    lane = make_consumer(pool, scratch_schema[0], dead, partial=True)
    lane.group_id = "g-batch-priority"
    handled: list[tuple[str, str]] = []

    def handler(who):
        async def apply(uow, event, data):
            handled.append((who, event.type))
            await uow.conn.execute("INSERT INTO batch_effects (event_id, partition) VALUES ($1, 0)", uuid.UUID(event.id))
        return apply

    main.register(PhaseChangedV1, handler("main"))
    main.register(AlertRaisedV1, handler("main"))
    lane.register(AlertRaisedV1, handler("lane"))
    main.leaves = frozenset(lane.handlers)
    alert = {"alert_id": str(uuid.uuid4()), "episode_id": str(uuid.uuid4()), "kind": "safety", "urgency": "urgent",
             "clinician_id": "clin-1", "reason_code": "safety_item_positive", "raised_at": "2026-11-26T10:00:00Z",
             "session_number": 1}
    alert_ev, alert_rec = record(0, data=alert, topic=AlertRaisedV1.topic, event_type=AlertRaisedV1.event_type)
    _, routine = record(1, topic=AlertRaisedV1.topic)  # a course type on the outcomes topic: main's to end
    _, junk = record(2, topic=AlertRaisedV1.topic)
    junk.value = b"not json"
    assert [o.status for o in await lane.process_batch([alert_rec, routine, junk])] == ["processed", "other_lane",
                                                                                          "other_lane"]
    assert [o.status for o in await main.process_batch([alert_rec, routine, junk])] == ["other_lane", "dead_lettered",
                                                                                          "dead_lettered"]
    assert handled == [("lane", AlertRaisedV1.event_type)]
    # Both handling it (e.g. an old replica without the lane during a deploy): the inbox decides.
    main.leaves = frozenset()
    assert [o.status for o in await main.process_batch([alert_rec])] == ["duplicate"]
    assert await effects(pool, [alert_ev.id]) == [alert_ev.id]
    assert [d.headers["dlq_reason"] for _, d in dead] == ["type_topic_mismatch", "envelope"]
    assert {t for t, _ in dead} == {"rapport.outcomes.dlq.g-batch"}
