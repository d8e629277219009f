"""Smoke test of the test infrastructure itself (rapport_testing.infra).

Starts a real Kafka 4.3.1 broker and a real PostgreSQL 15 (containers built by
deploy/build-images.sh --infra-only, or the servers named by RAPPORT_TEST_KAFKA_BOOTSTRAP /
RAPPORT_TEST_POSTGRES_DSN), produces and consumes a record with headers, talks to Postgres, and
checks that a record survives a broker restart.
"""

from __future__ import annotations

import time
import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from rapport_testing.infra import KafkaHandle, PostgresHandle, start_kafka, start_postgres

pytestmark = pytest.mark.integration


def _report(config: pytest.Config, line: str) -> None:
    """Print through pytest's output capture (start-up times are worth seeing in CI logs)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capman is None:
        return
    with capman.global_and_fixture_disabled():
        reporter.write_line(line)


# Own fixtures (not the shared plugin's `kafka`/`postgres`): this module restarts its broker.
# Module scope: the containers go away as soon as this module is done.
@pytest.fixture(scope="module")
def smoke_kafka(pytestconfig: pytest.Config):
    handle = start_kafka()
    _report(pytestconfig, f"\ninfra: kafka at {handle.bootstrap} ready in {handle.startup_seconds:.1f}s")
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def smoke_postgres(pytestconfig: pytest.Config):
    handle = start_postgres()
    _report(pytestconfig, f"\ninfra: postgres at {handle.host}:{handle.port} ready in {handle.startup_seconds:.1f}s")
    yield handle
    handle.stop()


async def _consume_one(bootstrap: str, topic: str, group: str):
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        records = []
        deadline = time.monotonic() + 30
        while not records and time.monotonic() < deadline:  # the group may take a moment to form
            batches = await consumer.getmany(timeout_ms=1000, max_records=10)
            records = [r for rs in batches.values() for r in rs]
        return records
    finally:
        await consumer.stop()


async def test_postgres_answers(smoke_postgres: PostgresHandle) -> None:
    conn = await asyncpg.connect(smoke_postgres.admin_dsn)
    try:
        assert await conn.fetchval("SELECT current_database()") == "rapport"
        version = await conn.fetchval("SHOW server_version")
        assert version.startswith("15.")
        await conn.execute("CREATE TABLE IF NOT EXISTS smoke (id int PRIMARY KEY, note text)")
        await conn.execute("INSERT INTO smoke VALUES (1, 'hello') ON CONFLICT DO NOTHING")
        assert await conn.fetchval("SELECT note FROM smoke WHERE id = 1") == "hello"
    finally:
        await conn.close()


async def test_kafka_record_with_headers_survives_restart(pytestconfig: pytest.Config, smoke_kafka: KafkaHandle) -> None:
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    key, value = b"episode-1", b'{"hello": "kafka"}'
    headers = [("ce_type", b"rapport.smoke.v1"), ("ce_id", uuid.uuid4().hex.encode())]

    producer = AIOKafkaProducer(bootstrap_servers=smoke_kafka.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()

    records = await _consume_one(smoke_kafka.bootstrap, topic, f"smoke-{uuid.uuid4().hex[:6]}")
    assert len(records) == 1
    assert (records[0].key, records[0].value) == (key, value)
    assert list(records[0].headers) == headers
    assert (records[0].partition, records[0].offset) == (meta.partition, meta.offset)

    smoke_kafka.skip_unless_controllable()
    took = smoke_kafka.restart()
    _report(pytestconfig, f"\ninfra: kafka restarted (stop + start, same data) in {took:.1f}s")

    again = await _consume_one(smoke_kafka.bootstrap, topic, f"smoke-{uuid.uuid4().hex[:6]}")
    assert [(r.key, r.value, list(r.headers)) for r in again] == [(key, value, headers)]
