"""Issue 11, item 4 and the first "Done when": hostile records produced to every topic a service
consumes end processed or dead-lettered, and no partition stays blocked — against the four
services as processes (the shared e2e ``system``).

The records come from ``rapport_testing.fuzz`` (Hypothesis: events generated from the
published schemas with hypothesis-jsonschema, then broken, plus hand-made hostile shapes). None
of them can be applied (the module checks each with the consumer's own envelope and contracts),
so they leave no course, score or notification behind for the other tests; their keys start with
``poison-``, which the partner example's test skips. The full run is ``bench/fuzz.py``."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from rapport_testing import fuzz
from rapport_testing.flows import run_intake
from rapport_testing.kafka import read_all, wait_for_records
from rapport_shared.topics import COURSE, INTAKE, NOTIFICATIONS, OUTCOMES, dlq_topic

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

PER_TOPIC = 160  # x 5 topics (4 shared + private contacts), in 2 rounds; + 60 ticks on a scratch clock topic
NESTED = b"[" * 200_000 + b"]" * 200_000  # issue 11: json.loads raises RecursionError on it
INTAKE_GROUPS = ("rapport-scheduler", "rapport-outcomes", "rapport-notifier")


async def test_hostile_records_on_every_consumed_topic_end_processed_or_dead_lettered(system, kafka):
    fuzz.set_pool_size(6)
    tallies, records = await fuzz.run(kafka.bootstrap, PER_TOPIC, rounds=2, seed_value=11, timeout=120, big_cap=1,
                                      log=print)
    print("\n" + fuzz.summary(tallies))

    assert {(t.group, t.topic) for t in tallies} == {(g, t) for g, ts in fuzz.GROUPS.items() for t in ts}
    for t in tallies:
        assert t.blocked == 0, f"{t.group} is blocked on {t.topic}: {t.line()}"
        assert t.produced == PER_TOPIC and t.processed + t.dead_lettered == t.produced, t.line()
        assert t.doubled == 0, f"{t.group} dead-lettered records of {t.topic} twice"
        assert not t.missing_dead_letters, [(r.kind, r.partition, r.offset) for r in t.missing_dead_letters]
        if t.group not in fuzz.NO_DLQ_GROUPS:  # most are refused by every consumer
            assert t.dead_lettered >= PER_TOPIC // 3, t.line()
    # the edge-sized records cannot be dead-lettered with their value, and still end
    assert sum(t.value_omitted for t in tallies) >= 1
    kinds = {r.kind.split(":")[0].split("+")[0] for r in records}
    assert {"deep_nesting", "megabyte_string", "edge_size", "invalid_utf8", "nan_infinity", "huge_key",
            "schema_missing_field", "schema_wrong_type", "schema_other_topic_type", "schema_bad_header",
            "tombstone", "empty_value", "no_key", "unknown_type", "contacts"} <= kinds, kinds
    assert all(svc.running() for svc in system.services.values())

    # The clock topic has no consumer group (SimulatedClock assigns and seeks): fuzzed on a scratch
    # topic, a clock must start over the hostile ticks, then follow past a second batch.
    clock = await fuzz.fuzz_clock(kafka.bootstrap, 60, seed_value=11)
    print(clock.line())
    assert clock.started and clock.reached_marker, clock.error


async def test_the_nested_array_record_is_dead_lettered_by_every_group_and_an_intake_after_it_flows(system, kafka, tokens):
    """Done when, first bullet: the 400 KB nested-array record with valid headers, on every
    partition of rapport.intake; each group dead-letters it within seconds, and an intake completed
    after it (whichever partition its episode hashes to) is planned, scored and notified."""
    parts = (await fuzz.partitions_of(kafka.bootstrap, [INTAKE]))[INTAKE]
    starts = await fuzz.end_offsets(kafka.bootstrap, [dlq_topic(INTAKE, g) for g in INTAKE_GROUPS])
    key = f"poison-nested-{uuid.uuid4().hex[:8]}".encode()
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", max_request_size=fuzz.PRODUCER_MAX_REQUEST)
    await producer.start()
    try:
        offsets = {}
        for p in parts:
            headers = fuzz.ce_headers("rapport.intake.completed.v1", key.decode())
            md = await (await producer.send(INTAKE, value=NESTED, key=key, headers=headers, partition=p))
            offsets[p] = md.offset
    finally:
        await producer.stop()
    produced_at = time.monotonic()

    for group in INTAKE_GROUPS:
        dq = dlq_topic(INTAKE, group)
        start = {p: off for (t, p), off in starts.items() if t == dq}
        deadline = time.monotonic() + 30
        mine: list = []
        while time.monotonic() < deadline:
            mine = [h for h in await fuzz.read_dead_letters(kafka.bootstrap, dq, start)
                    if h.get("ce_subject") == key.decode()]
            if len(mine) >= len(parts):
                break
            await asyncio.sleep(0.5)
        assert sorted((int(h["dlq_original_partition"]), int(h["dlq_original_offset"])) for h in mine) == \
            sorted(offsets.items()), f"{group}: {mine}"
        assert all(h["dlq_reason"] == "envelope" and "nested too deeply" in h["dlq_error"] for h in mine), mine
    print(f"nested-array records dead-lettered by {len(INTAKE_GROUPS)} groups in {time.monotonic() - produced_at:.1f} s")

    episode = run_intake(system["intake"].url, tokens.issue("ic-1", ["intake_clinician"]))["episode_id"]
    of_episode = lambda t: lambda r: r.headers.get("ce_subject") == episode and r.headers.get("ce_type") == t  # noqa: E731
    [completed] = await wait_for_records(kafka.bootstrap, INTAKE, of_episode("rapport.intake.completed.v1"))
    assert completed.offset > offsets[completed.partition]  # after the nested record, on its partition
    await wait_for_records(kafka.bootstrap, COURSE, of_episode("rapport.course.planned.v1"))
    await wait_for_records(kafka.bootstrap, OUTCOMES, of_episode("rapport.score.submitted.v1"))
    await wait_for_records(kafka.bootstrap, NOTIFICATIONS, of_episode("rapport.notification.delivered.v1"))
    # dead-lettered once per group, not in a loop
    for group in INTAKE_GROUPS:
        dq = dlq_topic(INTAKE, group)
        assert len([r for r in await read_all(kafka.bootstrap, dq) if r.key == key]) == len(parts)
