"""Size limits and parked rows in the outbox (real Postgres and Kafka): an event too large for
Kafka is refused by ``Outbox.add`` (nothing written); a row Kafka refuses anyway is parked, the
later rows of its key wait, other keys flow; an operator retries or drops it with `rapport outbox`."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timezone
from typing import ClassVar

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from typer.testing import CliRunner

from rapport_shared import envelope
from rapport_shared.clock import SystemClock
from rapport_shared.contracts import PhaseChangedV1
from rapport_shared.contracts.base import EventData
from rapport_shared.envelope import KafkaRecord
from rapport_shared.http.errors import Invalid, status_for
from rapport_shared.metrics import OUTBOX_PARKED, OUTBOX_WAITING
from rapport_shared.outbox import Outbox, OutboxRelay, record_size
from rapport_testing.kafka import read_all
from rapport_tools.cli import app as cli_app
from rapport_shared.uow import UnitOfWorkFactory

pytestmark = pytest.mark.integration

NOW = datetime.now(timezone.utc)


@pytest.fixture
async def producer(kafka):
    p = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=True)
    await p.start()
    yield p
    await p.stop()


def publisher_to(producer, topic):
    async def publish(_topic, rec: KafkaRecord):
        return await producer.send(topic, value=rec.value, key=rec.key,
                                   headers=[(k, v.encode()) for k, v in rec.headers.items()])
    return publish


def phase_event(episode):
    return PhaseChangedV1(episode_id=episode, course_id=uuid.uuid4(), from_phase="initial", to_phase="middle",
                          effective_from_session=4, reason="checklist_complete", changed_at=NOW)


class SlotsListed(EventData):
    """A test event with a list that can grow (like intake.completed's availability)."""

    event_type: ClassVar[str] = "rapport.test.slots_listed.v1"
    topic: ClassVar[str] = "rapport.test"
    episode_id: uuid.UUID
    note: str = ""
    slots: list[str]


@pytest.fixture
async def pool(scratch_schema):
    name, dsn = scratch_schema
    p = await asyncpg.create_pool(dsn, min_size=1, max_size=6, server_settings={"search_path": name})
    await p.execute("DELETE FROM outbox")
    await p.execute("DELETE FROM inbox")
    yield p
    await p.close()


async def add(pool, schema, episode, **kw) -> str:
    async with pool.acquire() as conn, conn.transaction():
        return (await Outbox("/rapport/test", schema, **kw).add(conn, phase_event(episode), time=NOW)).id


async def insert_raw(pool, episode, value: bytes) -> int:
    """A row as an older writer (before the size check) would have left it: bypasses Outbox.add."""
    ev = envelope.new_event(type="rapport.course.phase_changed.v1", source="/rapport/test", subject=str(episode),
                            data={}, time=NOW)
    rec = envelope.encode(ev)
    return await pool.fetchval(
        "INSERT INTO outbox (event_id, topic, key, headers, value, event_type) VALUES ($1, 't', $2, $3::jsonb, $4, $5)"
        " RETURNING seq", ev.id, rec.key, json.dumps(rec.headers), value, ev.type)


async def sent_ids(kafka, topic) -> list[str]:
    return [r.headers["ce_id"] for r in await read_all(kafka.bootstrap, topic)]


async def event_id(pool, seq) -> str:
    return str(await pool.fetchval("SELECT event_id FROM outbox WHERE seq = $1", seq))


# ------------------------------------------------------------------------------ Outbox.add


async def test_outbox_add_refuses_an_event_larger_than_the_limit_and_nothing_is_written(pool, scratch_schema):
    schema = scratch_schema[0]
    outbox = Outbox("/rapport/test", schema, max_event_bytes=1024)
    big = SlotsListed(episode_id=uuid.uuid4(), note="n", slots=["mon 09:00-09:30"] * 200)
    rec_size = record_size(envelope.encode(envelope.new_event(type=big.event_type, source="/rapport/test",
                                                              subject="s", data=big, time=NOW)))
    assert rec_size > 1024
    factory = UnitOfWorkFactory(pool, outbox, SystemClock())
    with pytest.raises(Invalid) as info:
        async with factory() as uow:  # the state change and its event: one unit of work
            await uow.conn.execute("INSERT INTO inbox (event_id, event_type, topic, kafka_partition, kafka_offset)"
                                   " VALUES ($1, 'x', 'x', 0, 0)", uuid.uuid4())
            await uow.emit(big)
    err = info.value
    assert status_for(err) == 422 and err.field == "slots" and err.code == "event_too_large"
    assert err.extra["limit_bytes"] == 1024 and err.extra["size_bytes"] > 1024
    assert err.extra["event_type"] == big.event_type
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
    assert await pool.fetchval("SELECT count(*) FROM inbox") == 0  # the whole unit rolled back
    # The same event under the limit goes through.
    async with factory() as uow:
        await uow.emit(SlotsListed(episode_id=uuid.uuid4(), slots=["mon 09:00-09:30"] * 10))
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_the_default_limit_stays_below_kafkas_default_message_size():
    from rapport_shared.settings import ServiceSettings

    s = ServiceSettings(service_name="intake")
    assert s.max_event_bytes == 900 * 1024 < 1_048_576
    assert Outbox("/rapport/test", "intake").max_event_bytes == s.max_event_bytes


# ------------------------------------------------------------------------------ relay parking


async def test_relay_parks_a_row_kafka_refuses_other_keys_flow_and_its_key_waits(pool, scratch_schema, producer, kafka):
    schema = scratch_schema[0]
    topic = f"t.{uuid.uuid4().hex[:8]}"
    a, b = uuid.uuid4(), uuid.uuid4()
    bad = await insert_raw(pool, a, b"[" + b"0," * 600_000 + b"0]")  # 1.2 MB: above the producer's 1 MiB
    a_later = await add(pool, schema, a)
    b_later = await add(pool, schema, b)
    # No size check of its own (2 MB): Kafka's producer is what refuses the record.
    relay = OutboxRelay(pool, publisher_to(producer, topic), schema, max_event_bytes=2_000_000)
    assert await relay.drain() == 1
    assert await sent_ids(kafka, topic) == [b_later]
    row = await pool.fetchrow("SELECT parked_at, attempts, last_error, sent_at FROM outbox WHERE seq = $1", bad)
    assert row["parked_at"] is not None and row["sent_at"] is None
    assert row["last_error"].startswith("MessageSizeTooLargeError")
    waiting = await pool.fetchrow("SELECT parked_at, sent_at, attempts FROM outbox WHERE event_id = $1::uuid", a_later)
    assert waiting["parked_at"] is None and waiting["sent_at"] is None and waiting["attempts"] == 0
    await relay.refresh_gauges()
    assert OUTBOX_PARKED._value.get() == 1 and OUTBOX_WAITING._value.get() == 1

    # Later: the parked key still waits, new rows of other keys flow at once.
    c_later = await add(pool, schema, uuid.uuid4())
    a_much_later = await add(pool, schema, a)
    assert await relay.drain() == 1
    assert sorted(await sent_ids(kafka, topic)) == sorted([b_later, c_later])
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE key = $1 AND sent_at IS NULL",
                               str(a).encode()) == 3
    assert a_much_later


async def test_relay_parks_a_row_above_its_own_limit_without_sending_it(pool, scratch_schema, producer, kafka):
    schema = scratch_schema[0]
    topic = f"t.{uuid.uuid4().hex[:8]}"
    a, b = uuid.uuid4(), uuid.uuid4()
    bad = await insert_raw(pool, a, b'"' + b"x" * 950_000 + b'"')  # under 1 MiB, above max_event_bytes
    b_id = await add(pool, schema, b)
    sent: list[bytes] = []
    publish = publisher_to(producer, topic)

    async def spy(t, rec):
        sent.append(rec.key)
        return await publish(t, rec)

    assert await OutboxRelay(pool, spy, schema).drain() == 1
    assert sent == [str(b).encode()]  # the large record was never handed to the producer
    assert await sent_ids(kafka, topic) == [b_id]
    assert (await pool.fetchval("SELECT last_error FROM outbox WHERE seq = $1", bad)).startswith("EventTooLarge")


async def test_relay_parks_a_record_the_broker_refuses_and_the_partition_keeps_flowing(pool, scratch_schema, kafka):
    """The topic's max.message.bytes is below the record: the broker, not the producer, refuses it."""
    schema = scratch_schema[0]
    topic = f"t.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "20000"})])
    finally:
        await admin.close()
    producers: list[AIOKafkaProducer] = []

    async def start_producer() -> None:
        p = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=True)
        await p.start()
        producers.append(p)

    async def reset() -> None:  # what the service's publisher does: a new producer id
        await producers[-1].stop()
        await start_producer()

    async def publish(t, rec):
        return await publisher_to(producers[-1], topic)(t, rec)

    await start_producer()
    try:
        a, b = uuid.uuid4(), uuid.uuid4()
        before = await add(pool, schema, b)
        bad = await insert_raw(pool, a, b'"' + b"x" * 50_000 + b'"')
        a_later = await add(pool, schema, a)
        b_later = await add(pool, schema, b)
        relay = OutboxRelay(pool, publish, schema, reset_publisher=reset)
        for _ in range(10):
            try:
                await relay.drain()
            except Exception:
                pass
            if await pool.fetchval("SELECT count(*) FROM outbox WHERE key = $1 AND sent_at IS NULL",
                                   str(b).encode()) == 0:
                break
            await asyncio.sleep(0.2)
        assert (await pool.fetchval("SELECT last_error FROM outbox WHERE seq = $1", bad)).startswith(
            "MessageSizeTooLargeError")
        assert await pool.fetchval("SELECT parked_at IS NOT NULL FROM outbox WHERE seq = $1", bad)
        assert await sent_ids(kafka, topic) == [before, b_later]
        assert await pool.fetchval("SELECT sent_at IS NULL FROM outbox WHERE event_id = $1::uuid", a_later)
    finally:
        await producers[-1].stop()


async def test_a_row_failing_again_and_again_is_parked_after_max_attempts(pool, scratch_schema, producer, kafka):
    schema = scratch_schema[0]
    topic = f"t.{uuid.uuid4().hex[:8]}"
    bad_key, good = uuid.uuid4(), uuid.uuid4()
    bad = await add(pool, schema, bad_key)
    publish = publisher_to(producer, topic)

    class Weird(Exception):
        pass

    async def picky(t, rec):
        if rec.key == str(bad_key).encode():
            raise Weird("refused")
        return await publish(t, rec)

    relay = OutboxRelay(pool, picky, schema, max_attempts=3)
    # Alone, an unclassified error may be the broker's: nothing counted, the pass backs off.
    with pytest.raises(Weird):
        await relay.drain()
    assert await pool.fetchval("SELECT attempts FROM outbox WHERE event_id = $1::uuid", bad) == 0
    # With other records going through, it is the row's: counted, parked after 3.
    published = []
    for i in range(3):
        published.append(await add(pool, schema, good))
        assert await relay.drain() == 1
    row = await pool.fetchrow("SELECT attempts, parked_at, last_error FROM outbox WHERE event_id = $1::uuid", bad)
    assert row["attempts"] == 3 and row["parked_at"] is not None and row["last_error"] == "Weird: refused"
    assert await sent_ids(kafka, topic) == published


async def test_a_broker_outage_counts_against_no_row(pool, scratch_schema):
    schema = scratch_schema[0]
    await add(pool, schema, uuid.uuid4())

    async def down(t, rec):
        raise ConnectionError("broker unavailable")

    relay = OutboxRelay(pool, down, schema, max_attempts=1)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await relay.drain()
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE attempts > 0 OR parked_at IS NOT NULL") == 0


# ------------------------------------------------------------------------------ rapport outbox


def cli(*args: str):
    return CliRunner().invoke(cli_app, list(args), catch_exceptions=False)


async def test_operator_lists_shows_retries_and_drops_parked_rows(pool, scratch_schema, producer, kafka, tmp_path):
    schema, dsn = scratch_schema
    topic = f"t.{uuid.uuid4().hex[:8]}"
    a, b = uuid.uuid4(), uuid.uuid4()
    a1 = await add(pool, schema, a)
    a2 = await add(pool, schema, a)
    b1 = await add(pool, schema, b)
    b2 = await add(pool, schema, b)
    # Park the first row of each key (as a relay with a tiny limit would), then publish normally.
    tiny = OutboxRelay(pool, publisher_to(producer, topic), schema, max_event_bytes=100)
    assert await tiny.drain() == 0
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL") == 2
    relay = OutboxRelay(pool, publisher_to(producer, topic), schema)
    assert await relay.drain() == 0  # a2 and b2 wait behind them

    res = await asyncio.to_thread(cli, "outbox", "parked", "--dsn", dsn, "--schema", schema, "--json")
    assert res.exit_code == 0, res.output
    listed = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["event_id"] for r in listed] == [a1, b1]
    assert all(r["waiting"] == 1 and r["last_error"].startswith("EventTooLarge") for r in listed)
    res = await asyncio.to_thread(cli, "outbox", "parked", "--dsn", dsn, "--schema", schema)
    assert res.exit_code == 0 and "2 parked" in res.stderr

    res = await asyncio.to_thread(cli, "outbox", "show", a1, "--dsn", dsn, "--schema", schema)
    shown = json.loads(res.stdout)
    assert shown["headers"]["ce_id"] == a1 and "value" not in shown and shown["parked_at"]

    # Retry a's row: it is published, then the row that waited behind it, in order.
    res = await asyncio.to_thread(cli, "outbox", "retry", a1, "--dsn", dsn, "--schema", schema)
    assert res.exit_code == 0, res.output
    assert await relay.drain() == 2
    assert await sent_ids(kafka, topic) == [a1, a2]

    # Drop b's row: a dry run first (nothing changes), then --apply; the row behind it flows.
    saved = tmp_path / "dropped.json"
    seq_b1 = await pool.fetchval("SELECT seq FROM outbox WHERE event_id = $1::uuid", b1)
    res = await asyncio.to_thread(cli, "outbox", "drop", str(seq_b1), "--dsn", dsn, "--schema", schema)
    assert res.exit_code == 0 and "dry run" in res.stderr
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE seq = $1", seq_b1) == 1
    assert await relay.drain() == 0
    res = await asyncio.to_thread(cli, "outbox", "drop", str(seq_b1), "--dsn", dsn, "--schema", schema, "--apply",
                                  "--save", str(saved))
    assert res.exit_code == 0 and "dropped" in res.stderr, res.output
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE seq = $1", seq_b1) == 0
    assert json.loads(saved.read_text())["headers"]["ce_id"] == b1
    assert await relay.drain() == 1
    assert sorted(await sent_ids(kafka, topic)) == sorted([a1, a2, b2])
    assert [r.headers["ce_id"] for r in await read_all(kafka.bootstrap, topic) if r.key == str(a).encode()] == [a1, a2]

    # Nothing parked is left; a sent row cannot be dropped or retried.
    res = await asyncio.to_thread(cli, "outbox", "parked", "--dsn", dsn, "--schema", schema, "--json")
    assert res.stdout.strip() == ""
    res = await asyncio.to_thread(cli, "outbox", "drop", a1, "--dsn", dsn, "--schema", schema, "--apply")
    assert res.exit_code == 1
    res = await asyncio.to_thread(cli, "outbox", "retry", "--all", "--dsn", dsn, "--schema", schema)
    assert res.exit_code == 1
