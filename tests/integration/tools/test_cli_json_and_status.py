"""Issue 14, "One CLI style", against real infrastructure: ``rapport-<svc> migrate --status`` on a real
Postgres (pending, then applied; exit 0; ``--json``), and the ``--json`` of ``rapport``'s listings
and of ``groups reset`` / ``dlq redrive`` parse as JSON against a real Kafka."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from typer.testing import CliRunner

from rapport_shared import db
from rapport_testing.services import role_dsn
from rapport_tools.cli import app

pytestmark = pytest.mark.integration


def scheduler(*args: str, dsn: str, schema: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPPORT_")}
    env.update({"RAPPORT_ENVIRONMENT": "development", "RAPPORT_DATABASE_DSN": dsn, "RAPPORT_DB_SCHEMA": schema,
                "COLUMNS": "200"})
    return subprocess.run([sys.executable, "-m", "rapport_scheduler", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_migrate_status_lists_pending_then_applied_migrations(postgres, service_dsns):
    # A fresh schema and role, provisioned as `rapport-admin provision` does: every migration pending.
    schema, password = f"sched_status_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(12)
    asyncio.run(db.provision(postgres.admin_dsn, "rapport", schema, password))
    dsn = role_dsn(postgres.admin_dsn, schema, password)

    before = scheduler("migrate", "--status", "--json", dsn=dsn, schema=schema)
    assert before.returncode == 0, before.stderr
    status = json.loads(before.stdout)
    assert status["schema"] == schema and status["applied"] == [] and status["pending"], status
    pending = status["pending"]
    table = scheduler("migrate", "--status", dsn=dsn, schema=schema)
    assert table.returncode == 0 and "pending" in table.stdout and f"0 applied, {len(pending)} pending" in table.stderr

    done = scheduler("migrate", dsn=dsn, schema=schema)
    assert done.returncode == 0 and json.loads(done.stdout)["applied"] == pending, done.stderr

    after = json.loads(scheduler("migrate", "--status", "--json", dsn=dsn, schema=schema).stdout)
    assert [a["version"] for a in after["applied"]] == pending and after["pending"] == []
    assert not any(a["changed"] for a in after["applied"]) and after["unknown"] == []

    # The live scheduler schema (the session's fixtures migrated it): nothing pending either.
    live = scheduler("migrate", "--status", "--json", dsn=service_dsns["scheduler"], schema="scheduler")
    assert live.returncode == 0, live.stderr
    assert isinstance(json.loads(live.stdout)["pending"], list)

    async def cleanup() -> None:
        conn = await asyncpg.connect(postgres.admin_dsn)
        try:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        finally:
            await conn.close()

    asyncio.run(cleanup())


def cli(kafka, *args: str):
    return CliRunner().invoke(app, ["--bootstrap", kafka.bootstrap, *args], catch_exceptions=False)


async def _setup(bootstrap: str, topic: str, dlq: str, group: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1), NewTopic(dlq, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(4):
            await producer.send_and_wait(topic, b"{}", key=f"k{i}".encode(), partition=i % 2)
        headers = [("ce_id", b"id-1"), ("ce_type", b"rapport.course.planned.v1"), ("ce_specversion", b"1.0"),
                   ("dlq_reason", b"handler"), ("dlq_original_topic", topic.encode()),
                   ("dlq_original_partition", b"0"), ("dlq_original_offset", b"0")]
        await producer.send_and_wait(dlq, b"{}", key=b"k0", headers=headers)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        got = 0
        while got < 4:
            got += sum(len(v) for v in (await consumer.getmany(timeout_ms=1000)).values())
        await consumer.commit()
    finally:
        await consumer.stop()


def test_json_outputs_parse(kafka):
    tag = uuid.uuid4().hex[:8]
    topic, group = f"sandbox.test.json.{tag}", f"sandbox-json-{tag}"
    dlq = f"{topic}.dlq.{group}"
    asyncio.run(_setup(kafka.bootstrap, topic, dlq, group))

    topics = cli(kafka, "topics", "--json", "--group", group)
    assert topics.exit_code == 0, topics.output
    doc = json.loads(topics.stdout)
    assert topic in {t["topic"] for t in doc["topics"]}

    groups = cli(kafka, "groups", "list", "--json")
    assert groups.exit_code == 0, groups.output
    mine = [g for g in json.loads(groups.stdout) if g["group"] == group]
    assert mine and mine[0]["lag"] == 0 and {p["topic"] for p in mine[0]["partitions"]} == {topic}

    reset = cli(kafka, "groups", "reset", group, "--to-earliest", "--json")
    assert reset.exit_code == 0, reset.output
    plan = json.loads(reset.stdout)
    assert plan["applied"] is False and sum(p["lag_after"] for p in plan["partitions"]) == 4
    applied = json.loads(cli(kafka, "groups", "reset", group, "--to-earliest", "--apply", "--json").stdout)
    assert applied["applied"] is True

    letters = cli(kafka, "dlq", "list", dlq, "--json")
    assert letters.exit_code == 0 and [json.loads(line)["redriven"] for line in letters.stdout.splitlines()] == [None]

    dry = cli(kafka, "dlq", "redrive", dlq, "--json")
    assert dry.exit_code == 0, dry.output
    result = json.loads(dry.stdout)
    assert result["applied"] is False and [r["status"] for r in result["records"]] == ["would_send"]
    sent = json.loads(cli(kafka, "dlq", "redrive", dlq, "--apply", "--json").stdout)
    assert sent["sent"] == 1 and sent["records"][0]["status"] == "sent"

    shown = cli(kafka, "acls", "show", "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)
