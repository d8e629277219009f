"""The ``rapport`` CLI against a real Kafka: dump → load round-trips byte for byte, time ranges,
groups reset (dry run, apply, refusal while active), dead-letter redrive exactly once.

The CLI runs in-process through Typer's runner (sync tests: it calls ``asyncio.run`` itself); the
records are produced and read back with plain aiokafka."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from typer.testing import CliRunner

from rapport_tools import kafka_ops as ops
from rapport_tools.cli import app

pytestmark = pytest.mark.integration


def cli(kafka, *args: str, input: str | None = None):
    result = CliRunner().invoke(app, ["--bootstrap", kafka.bootstrap, *args], input=input, catch_exceptions=False)
    return result


def name(prefix: str) -> str:
    return f"sandbox.test.{prefix}.{uuid.uuid4().hex[:8]}"


async def create(bootstrap: str, topic: str, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, records: list[dict]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for r in records:
            await producer.send_and_wait(topic, value=r.get("value"), key=r.get("key"), headers=r.get("headers", []),
                                         partition=r.get("partition"), timestamp_ms=r.get("timestamp"))
    finally:
        await producer.stop()


async def read_raw(bootstrap: str, topic: str, isolation_level: str = "read_committed") -> dict[int, list]:
    """partition → [(offset, key, value, headers, timestamp)] of every record, nothing decoded."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation_level)
    await consumer.start()
    out: dict[int, list] = defaultdict(list)
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        [d] = await admin.describe_topics([topic])
        await admin.close()
        tps = [TopicPartition(topic, p["partition"]) for p in d["partitions"]]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            for tp, msgs in (await consumer.getmany(*remaining, timeout_ms=500)).items():
                for m in msgs:
                    out[tp.partition].append((m.offset, m.key, m.value, tuple(m.headers), m.timestamp))
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return dict(out)


def awkward_records() -> list[dict]:
    """Everything a byte-for-byte copy can get wrong."""
    episode = str(uuid.uuid4())
    ce = [("content-type", b"application/json"), ("ce_specversion", b"1.0"), ("ce_id", str(uuid.uuid4()).encode()),
          ("ce_type", b"rapport.course.planned.v1"), ("ce_subject", episode.encode())]
    return [
        {"key": episode.encode(), "value": b'{"episode_id":"%s","n":1}' % episode.encode(), "headers": ce, "partition": 0},
        {"key": episode.encode(), "value": "{\"note\":\"caf\u00e9 \u2603 \U0001F600\"}".encode(), "headers": ce, "partition": 0},
        {"key": b"\xff\xfe binary key", "value": bytes(range(256)), "headers": [("bin", b"\x00\x80\xff"), ("empty", b"")],
         "partition": 1},
        {"key": b"tombstone", "value": None, "headers": [("null-header", None)], "partition": 1},
        {"key": None, "value": b"no key", "headers": [("dup", b"1"), ("dup", b"2"), ("dup", b"1")], "partition": 2},
        {"key": b"", "value": b"", "headers": [], "partition": 2},
        {"key": b"k", "value": b"  spaced json \n", "headers": [("h", "line\nbreak \"quoted\"".encode())], "partition": 2,
         "timestamp": 1_700_000_000_123},
    ]


def test_dump_then_load_round_trips_every_record_byte_for_byte(kafka, tmp_path):
    source, sandbox = name("src"), name("copy")
    asyncio.run(create(kafka.bootstrap, source))
    asyncio.run(produce(kafka.bootstrap, source, awkward_records()))
    before = asyncio.run(read_raw(kafka.bootstrap, source))

    dump_file = tmp_path / "dump.jsonl"
    r = cli(kafka, "dump", source, "-o", str(dump_file))
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in dump_file.read_text().splitlines()]
    assert len(lines) == 7
    assert {line["value_encoding"] for line in lines} == {"utf8", "base64", "null"}
    assert all({"topic", "partition", "offset", "timestamp", "key", "value", "headers"} <= set(line) for line in lines)

    r = cli(kafka, "load", str(dump_file), "--topic", sandbox, "--keep-partitions")
    assert r.exit_code == 0, r.output
    after = asyncio.run(read_raw(kafka.bootstrap, sandbox))
    assert after == before  # same partitions, offsets, keys, values, headers (order, duplicates, nulls), timestamps


def test_load_by_key_lands_on_the_same_partitions_and_refuses_live_topics(kafka, tmp_path):
    source, sandbox = name("src"), name("bykey")
    keyed = [r for r in awkward_records() if r["key"]]
    for r in keyed:
        r.pop("partition")  # partitioned by key, as the services produce
    asyncio.run(create(kafka.bootstrap, source))
    asyncio.run(produce(kafka.bootstrap, source, keyed))
    dump_file = tmp_path / "dump.jsonl"
    assert cli(kafka, "dump", source, "-o", str(dump_file)).exit_code == 0
    assert cli(kafka, "load", str(dump_file), "-T", sandbox).exit_code == 0
    assert asyncio.run(read_raw(kafka.bootstrap, sandbox)) == asyncio.run(read_raw(kafka.bootstrap, source))

    refused = cli(kafka, "load", str(dump_file), "-T", "rapport.course")
    assert refused.exit_code == 2 and "live topic" in refused.output


def test_dump_a_time_range_and_filter_by_type_and_episode(kafka, tmp_path):
    source = name("range")
    t0 = 1_790_000_000_000
    episode = str(uuid.uuid4())
    records = [{"key": episode.encode(), "value": json.dumps({"i": i}).encode(), "timestamp": t0 + i * 60_000,
                "headers": [("ce_type", b"rapport.session.attended.v1" if i % 2 else b"rapport.session.missed.v1"),
                            ("ce_subject", episode.encode())]} for i in range(10)]
    records.append({"key": b"other", "value": b"{}", "timestamp": t0 + 5 * 60_000 + 1,
                    "headers": [("ce_type", b"rapport.session.attended.v1"), ("ce_subject", b"other")]})
    asyncio.run(create(kafka.bootstrap, source, partitions=1))
    asyncio.run(produce(kafka.bootstrap, source, records))

    since, until = ops._iso(t0 + 3 * 60_000), ops._iso(t0 + 7 * 60_000)
    out = tmp_path / "range.jsonl"
    r = cli(kafka, "dump", source, "--since", since, "--until", until, "-o", str(out))
    assert r.exit_code == 0, r.output
    got = [json.loads(line) for line in out.read_text().splitlines()]
    # Kafka's time index: from the first offset stamped >= since to the first stamped >= until. The
    # late "other" record (offset 10, stamped inside the range) lies after that offset range.
    assert [json.loads(g["value"]).get("i") for g in got] == [3, 4, 5, 6]

    r = cli(kafka, "dump", source, "--type", "rapport.session.att*", "--episode", episode, "-o", str(out))
    assert r.exit_code == 0
    assert [json.loads(json.loads(line)["value"])["i"] for line in out.read_text().splitlines()] == [1, 3, 5, 7, 9]

    r = cli(kafka, "tail", source, "--from-beginning", "--no-follow", "--episode", "other", "--json")
    assert r.exit_code == 0 and [json.loads(line)["key"] for line in r.stdout.splitlines()] == ["other"]


async def _consume_and_commit(bootstrap: str, topic: str, group: str, n: int) -> None:
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                         auto_offset_reset="earliest")
    await c.start()
    try:
        seen = 0
        while seen < n:
            for msgs in (await c.getmany(timeout_ms=500)).values():
                seen += len(msgs)
        await c.commit()
    finally:
        await c.stop()


async def _committed(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {(tp.topic, tp.partition): om.offset for tp, om in (await admin.list_consumer_group_offsets(group)).items()}
    finally:
        await admin.close()


def test_groups_reset_is_a_dry_run_by_default_and_applies_on_request(kafka):
    topic, group = name("reset"), f"g-{uuid.uuid4().hex[:8]}"
    t0 = 1_790_000_000_000
    asyncio.run(create(kafka.bootstrap, topic, partitions=2))
    asyncio.run(produce(kafka.bootstrap, topic, [{"key": b"a", "value": b"%d" % i, "partition": i % 2,
                                                  "timestamp": t0 + i * 1000} for i in range(10)]))
    asyncio.run(_consume_and_commit(kafka.bootstrap, topic, group, 10))
    assert asyncio.run(_committed(kafka.bootstrap, group)) == {(topic, 0): 5, (topic, 1): 5}

    dry = cli(kafka, "groups", "reset", group, "--to-earliest")
    assert dry.exit_code == 0 and "Dry run" in dry.stdout and "nothing changed" in dry.output
    assert asyncio.run(_committed(kafka.bootstrap, group)) == {(topic, 0): 5, (topic, 1): 5}

    assert cli(kafka, "groups", "reset", group, "--to-earliest", "--apply").exit_code == 0
    assert asyncio.run(_committed(kafka.bootstrap, group)) == {(topic, 0): 0, (topic, 1): 0}

    # records 4..9 are at/after t0+4s: partition 0 holds 0,2,4,6,8 → offset 2; partition 1 holds 1,3,5,7,9 → offset 2
    at = ops._iso(t0 + 4000)
    assert cli(kafka, "groups", "reset", group, "--topic", topic, "--to-datetime", at, "--apply").exit_code == 0
    assert asyncio.run(_committed(kafka.bootstrap, group)) == {(topic, 0): 2, (topic, 1): 2}

    assert cli(kafka, "groups", "reset", group, "--to-offset", "4", "--partition", "1", "--apply").exit_code == 0
    assert asyncio.run(_committed(kafka.bootstrap, group)) == {(topic, 0): 2, (topic, 1): 4}

    assert cli(kafka, "groups", "reset", group, "--to-latest", "--apply").exit_code == 0
    assert asyncio.run(_committed(kafka.bootstrap, group)) == {(topic, 0): 5, (topic, 1): 5}

    bad = cli(kafka, "groups", "reset", group, "--to-latest", "--to-earliest")
    assert bad.exit_code != 0


def test_groups_reset_refuses_while_the_group_has_members(kafka):
    topic, group = name("active"), f"g-{uuid.uuid4().hex[:8]}"
    asyncio.run(create(kafka.bootstrap, topic, partitions=1))
    asyncio.run(produce(kafka.bootstrap, topic, [{"key": b"a", "value": b"x"}]))

    async def scenario() -> tuple[ops.ResetPlan, str]:
        member = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap, group_id=group,
                                  enable_auto_commit=False, auto_offset_reset="earliest")
        await member.start()
        try:
            while not member.assignment():
                await member.getmany(timeout_ms=200)
            await member.commit({TopicPartition(topic, 0): 1})
            conn = ops.Conn(kafka.bootstrap)
            plan = await ops.plan_reset(conn, group, None, to="earliest")
            with pytest.raises(ops.GroupActive) as refused:
                await ops.apply_reset(conn, plan)
            return plan, str(refused.value)
        finally:
            await member.stop()

    plan, message = asyncio.run(scenario())
    assert plan.active and plan.members == 1 and "stop its consumers first" in message
    assert asyncio.run(_committed(kafka.bootstrap, group)) == {(topic, 0): 1}  # untouched
    # once the member has left, the same reset goes through
    assert cli(kafka, "groups", "reset", group, "--to-earliest", "--apply").exit_code == 0
    assert asyncio.run(_committed(kafka.bootstrap, group)) == {(topic, 0): 0}


def dead_letter(original_topic: str, group: str, i: int, reason: str = "handler") -> dict:
    episode = str(uuid.uuid4())
    original = [("content-type", b"application/json"), ("ce_specversion", b"1.0"), ("ce_id", str(uuid.uuid4()).encode()),
                ("ce_source", b"/rapport/scheduler"), ("ce_type", b"rapport.course.planned.v1"),
                ("ce_time", b"2026-11-26T09:30:00Z"), ("ce_subject", episode.encode()), ("correlation_id", b"c-1")]
    dlq = [("dlq_reason", reason.encode()), ("dlq_error", b"RuntimeError: boom"), ("dlq_original_topic", original_topic.encode()),
           ("dlq_original_partition", b"0"), ("dlq_original_offset", str(i).encode()),
           ("dlq_consumer_group", group.encode()), ("dlq_attempts", b"5"), ("dlq_failed_at", b"2026-11-26T09:31:00Z")]
    return {"key": episode.encode(), "value": json.dumps({"episode_id": episode, "i": i}).encode(), "headers": original + dlq}


def test_dlq_list_and_redrive_each_record_exactly_once(kafka):
    original, group = name("orig"), "rapport-test"
    dlq = f"{original}.dlq.{group}"
    letters = [dead_letter(original, group, i, "handler" if i < 4 else "contract") for i in range(5)]
    asyncio.run(create(kafka.bootstrap, original))
    asyncio.run(create(kafka.bootstrap, dlq))
    asyncio.run(produce(kafka.bootstrap, dlq, letters))

    listed = cli(kafka, "dlq", "list", dlq, "--json")
    assert listed.exit_code == 0
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(rows) == 5 and all(r["redriven"] is None for r in rows)
    assert {h["name"] for h in rows[0]["headers"]} >= {"dlq_reason", "dlq_error", "dlq_original_topic", "ce_id"}

    dry = cli(kafka, "dlq", "redrive", dlq, "--reason", "handler")
    assert dry.exit_code == 0 and "4 record(s) would be redriven" in dry.output
    assert asyncio.run(read_raw(kafka.bootstrap, original)) == {}

    first = cli(kafka, "dlq", "redrive", dlq, "--reason", "handler", "--apply")
    assert first.exit_code == 0 and "4 record(s) redriven" in first.output, first.output
    again = cli(kafka, "dlq", "redrive", dlq, "--apply")  # all five selected: four already done
    assert again.exit_code == 0 and "1 record(s) redriven, 4 already" in again.output, again.output
    assert "0 record(s) redriven, 5 already" in cli(kafka, "dlq", "redrive", dlq, "--apply").output

    sent = [rec for recs in asyncio.run(read_raw(kafka.bootstrap, original)).values() for rec in recs]
    assert len(sent) == 5
    by_key = {rec[1]: rec for rec in sent}
    for letter in letters:
        _, key, value, headers, _ = by_key[letter["key"]]
        assert value == letter["value"]
        assert list(headers) == [(k, v) for k, v in letter["headers"] if not k.startswith("dlq_")]
    pending = cli(kafka, "dlq", "list", dlq, "--pending", "--json")
    assert pending.exit_code == 0 and pending.stdout.strip() == ""


def test_concurrent_redrives_of_one_dlq_still_send_each_record_once(kafka):
    original, group = name("race"), "rapport-test"
    dlq = f"{original}.dlq.{group}"
    letters = [dead_letter(original, group, i) for i in range(30)]
    asyncio.run(create(kafka.bootstrap, original))
    asyncio.run(create(kafka.bootstrap, dlq))
    asyncio.run(produce(kafka.bootstrap, dlq, letters))

    async def race():
        conn = ops.Conn(kafka.bootstrap)
        return await asyncio.gather(*(ops.redrive(conn, dlq, apply=True, batch=5) for _ in range(3)),
                                    return_exceptions=True)

    results = asyncio.run(race())
    assert any(not isinstance(r, BaseException) for r in results), results  # the last one to start finishes
    # Whatever was fenced or aborted: committed output holds every dead letter exactly once...
    committed = [rec for recs in asyncio.run(read_raw(kafka.bootstrap, original)).values() for rec in recs]
    assert sorted(rec[1] for rec in committed) == sorted(letter["key"] for letter in letters)
    # ...and one more pass finds nothing left to do.
    final = asyncio.run(ops.redrive(ops.Conn(kafka.bootstrap), dlq, apply=True))
    assert (len(final.sent), len(final.already)) == (0, 30)


def test_redrive_holds_back_records_that_were_not_cloudevents(kafka):
    original, group = name("poison"), "rapport-test"
    dlq = f"{original}.dlq.{group}"
    poison = {"key": b"poison-1", "value": b"\x00\x01 not an event",
              "headers": [("dlq_reason", b"envelope"), ("dlq_error", b"header ce_specversion: is missing"),
                          ("dlq_original_topic", original.encode()), ("dlq_original_partition", b"0"),
                          ("dlq_original_offset", b"0"), ("dlq_consumer_group", group.encode()),
                          ("dlq_attempts", b"1"), ("dlq_failed_at", b"2026-11-26T09:31:00Z")]}
    asyncio.run(create(kafka.bootstrap, original))
    asyncio.run(create(kafka.bootstrap, dlq))
    asyncio.run(produce(kafka.bootstrap, dlq, [poison]))

    held = cli(kafka, "dlq", "redrive", dlq, "--apply")
    assert held.exit_code == 0 and "0 record(s) redriven" in held.output and "1 held back" in held.output
    assert asyncio.run(read_raw(kafka.bootstrap, original)) == {}
    forced = cli(kafka, "dlq", "redrive", dlq, "--apply", "--include-undecodable")
    assert forced.exit_code == 0 and "1 record(s) redriven" in forced.output
    [[(_, key, value, headers, _)]] = asyncio.run(read_raw(kafka.bootstrap, original)).values()
    assert (key, value, headers) == (b"poison-1", b"\x00\x01 not an event", ())


def test_redrive_sends_only_to_the_topic_the_dlq_name_encodes_never_to_a_header(kafka):
    """A dead letter whose dlq_original_topic header names another topic (forged, or copied from
    another DLQ) is reported and skipped; nothing reaches the topic the header names."""
    original, elsewhere, group = name("orig"), name("elsewhere"), "rapport-test"
    dlq = f"{original}.dlq.{group}"
    letters = [dead_letter(original, group, 0), dead_letter(elsewhere, group, 1), dead_letter(original, group, 2)]
    for t in (original, elsewhere, dlq):
        asyncio.run(create(kafka.bootstrap, t))
    asyncio.run(produce(kafka.bootstrap, dlq, letters))

    dry = cli(kafka, "dlq", "redrive", dlq)
    assert dry.exit_code == 0 and "2 record(s) would be redriven" in dry.output and "1 skipped" in dry.output, dry.output
    res = asyncio.run(ops.redrive(ops.Conn(kafka.bootstrap), dlq, apply=True))
    assert len(res.sent) == 2 and [d.header_topic for d in res.mismatched] == [elsewhere]
    assert all(m.redriven["target_topic"] == original for m in res.sent)
    assert asyncio.run(read_raw(kafka.bootstrap, elsewhere)) == {}
    sent = [rec for recs in asyncio.run(read_raw(kafka.bootstrap, original)).values() for rec in recs]
    assert sorted(rec[1] for rec in sent) == sorted([letters[0]["key"], letters[2]["key"]])
    again = cli(kafka, "dlq", "redrive", dlq, "--apply")  # the mismatched one stays pending, reported again
    assert again.exit_code == 0 and "0 record(s) redriven, 2 already" in again.output and "1 skipped" in again.output
