"""Delivery guarantees under crashes (architecture.md): nothing lost, nothing doubled.

Crash points are real process deaths: ``RAPPORT_CRASH_AT=<point>`` makes the service call
``os._exit`` exactly there (shared/rapport_shared/faults.py), like a SIGKILL.
"""

import asyncio
import json
import uuid

import asyncpg
import httpx
import pytest

from rapport_shared.faults import EXIT_CODE
from rapport_testing.flows import intake_completion, run_intake
from rapport_testing.kafka import produce_raw, read_all, wait_caught_up, wait_for_records
from rapport_shared.topics import COURSE, INTAKE, NOTIFICATIONS, dlq_topic

pytestmark = pytest.mark.e2e


def subject_is(episode):
    return lambda r: r.headers.get("ce_subject") == episode


def planned_for(episode):
    return lambda r: r.headers.get("ce_subject") == episode and r.headers.get("ce_type") == "rapport.course.planned.v1"


async def scalar(dsn, sql, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def open_referral(url, token) -> str:
    r = httpx.post(f"{url}/v1/referrals", headers={"Authorization": f"Bearer {token}"},
                   json={"person_id": f"P-t{uuid.uuid4().hex[:10]}", "referral_source": "gp", "target_condition": "depression"})
    r.raise_for_status()
    return r.json()["episode_id"]


async def test_relay_dies_after_publishing_before_marking_sent(system, kafka, tokens, service_dsns):
    token = tokens.issue("ic-1", ["intake_clinician"])
    system.restart("intake", {"RAPPORT_CRASH_AT": "relay.after_publish"})
    episode = open_referral(system["intake"].url, token)
    try:  # the relay may kill the process before the answer is written: the commit happened either way
        httpx.post(f"{system['intake'].url}/v1/referrals/{episode}/complete", headers={"Authorization": f"Bearer {token}"},
                   json=intake_completion(), timeout=30)
    except httpx.TransportError:
        pass
    assert system["intake"].wait_exit(30) == EXIT_CODE
    assert await scalar(service_dsns["intake"], "SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 1

    system.restart("intake")  # the relay publishes the unmarked row again
    copies = await wait_for_records(kafka.bootstrap, INTAKE, subject_is(episode), count=2)
    assert len(copies) == 2 and len({c.headers["ce_id"] for c in copies}) == 1  # the same event, twice

    await wait_caught_up(kafka.bootstrap, "rapport-scheduler", INTAKE)
    ep = uuid.UUID(episode)
    assert await scalar(service_dsns["scheduler"], "SELECT count(*) FROM courses WHERE episode_id = $1", ep) == 1
    assert await scalar(service_dsns["scheduler"], "SELECT count(*) FROM inbox WHERE event_id = $1",
                        uuid.UUID(copies[0].headers["ce_id"])) == 1
    await wait_caught_up(kafka.bootstrap, "rapport-outcomes", INTAKE)
    assert await scalar(service_dsns["outcomes"], "SELECT count(*) FROM submissions WHERE episode_id = $1", ep) == 1
    planned = await wait_for_records(kafka.bootstrap, COURSE, planned_for(episode))
    assert len(planned) == 1
    assert await scalar(service_dsns["intake"], "SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0


async def test_consumer_dies_after_effect_before_offset_commit(system, kafka, tokens, service_dsns):
    token = tokens.issue("ic-1", ["intake_clinician"])
    # Only on the intake event: other tests' records (scores, clock) may reach the scheduler first.
    system.restart("scheduler", {"RAPPORT_CRASH_AT": "consumer.after_effect",
                                 "RAPPORT_CRASH_IF": "rapport.intake.completed.v1"})
    episode = run_intake(system["intake"].url, token)["episode_id"]
    assert system["scheduler"].wait_exit(60) == EXIT_CODE  # effect committed, offset not
    ep = uuid.UUID(episode)
    assert await scalar(service_dsns["scheduler"], "SELECT count(*) FROM courses WHERE episode_id = $1", ep) == 1

    system.restart("scheduler")  # the record is delivered again; the inbox skips it
    await wait_caught_up(kafka.bootstrap, "rapport-scheduler", INTAKE)
    assert await scalar(service_dsns["scheduler"], "SELECT count(*) FROM courses WHERE episode_id = $1", ep) == 1
    planned = await wait_for_records(kafka.bootstrap, COURSE, planned_for(episode))
    await wait_caught_up(kafka.bootstrap, "rapport-notifier", COURSE)
    # One plan: the relay may have published it before the crash and again after (same ce_id,
    # at least once); what must not exist is a second plan with another id.
    course_events = [r for r in await read_all(kafka.bootstrap, COURSE) if r.headers.get("ce_subject") == episode]
    assert len({r.headers["ce_id"] for r in course_events if planned_for(episode)(r)}) == 1
    notes = await wait_for_records(kafka.bootstrap, NOTIFICATIONS, subject_is(episode))
    assert len(notes) == 1 and json.loads(notes[0].value)["cause_event_id"] == planned[0].headers["ce_id"]


@pytest.mark.parametrize("point", ["consumer.mid_batch", "consumer.before_offset_commit"])
async def test_consumer_dies_inside_a_batch_or_before_its_offset_commit(system, kafka, tokens, service_dsns, point):
    """Intakes completed while the scheduler is down reach it as one batch; it dies inside that
    batch's transaction (nothing of it committed) or after every transaction of the batch and
    before the one offset commit (all committed, no offset). Restarted: each course once."""
    token = tokens.issue("ic-1", ["intake_clinician"])
    system["scheduler"].stop()
    episodes = [run_intake(system["intake"].url, token)["episode_id"] for _ in range(4)]
    await wait_for_records(kafka.bootstrap, INTAKE, lambda r: r.headers.get("ce_subject") in episodes
                           and r.headers.get("ce_type") == "rapport.intake.completed.v1", count=4)
    system["scheduler"].start({"RAPPORT_CRASH_AT": point, "RAPPORT_CRASH_IF": "rapport.intake.completed.v1"},
                              wait_ready=False)
    assert system["scheduler"].wait_exit(90) == EXIT_CODE
    ids = [uuid.UUID(e) for e in episodes]
    courses = await scalar(service_dsns["scheduler"], "SELECT count(*) FROM courses WHERE episode_id = ANY($1)", ids)
    if point == "consumer.mid_batch":  # died inside the transaction of the record's partition
        assert courses < len(ids)

    system["scheduler"].start()  # the batch is delivered again; the inbox skips what was committed
    await wait_caught_up(kafka.bootstrap, "rapport-scheduler", INTAKE)
    for ep in ids:
        assert await scalar(service_dsns["scheduler"], "SELECT count(*) FROM courses WHERE episode_id = $1", ep) == 1
    for episode in episodes:
        await wait_for_records(kafka.bootstrap, COURSE, planned_for(episode))
    await wait_caught_up(kafka.bootstrap, "rapport-notifier", COURSE)
    course_events = [r for r in await read_all(kafka.bootstrap, COURSE) if r.headers.get("ce_subject") in episodes]
    for episode in episodes:  # one plan each (a re-published copy keeps its ce_id)
        assert len({r.headers["ce_id"] for r in course_events if planned_for(episode)(r)}) == 1
        notes = await wait_for_records(kafka.bootstrap, NOTIFICATIONS, subject_is(episode))
        assert len(notes) == 1


async def test_undecodable_record_is_dead_lettered_and_the_next_is_processed(system, kafka, tokens, service_dsns):
    poison_key = f"poison-{uuid.uuid4()}".encode()
    await produce_raw(kafka.bootstrap, INTAKE, b"\x00\x01 not an event", key=poison_key,
                      headers={"ce_type": "rapport.intake.completed.v1"})
    episode = run_intake(system["intake"].url, tokens.issue("ic-1", ["intake_clinician"]))["episode_id"]

    for group in ("rapport-scheduler", "rapport-outcomes"):
        [dead] = await wait_for_records(kafka.bootstrap, dlq_topic(INTAKE, group), lambda r: r.key == poison_key)
        assert dead.value == b"\x00\x01 not an event"
        assert dead.headers["dlq_original_topic"] == INTAKE and dead.headers["dlq_reason"] == "envelope"
        assert dead.headers["dlq_consumer_group"] == group and "ce_specversion" in dead.headers["dlq_error"]
        assert int(dead.headers["dlq_original_offset"]) >= 0
    await wait_for_records(kafka.bootstrap, COURSE, planned_for(episode))  # the partition kept moving
    for name in ("scheduler", "outcomes"):
        assert system[name].running()


async def test_kafka_restarted_mid_flow_loses_nothing(system, kafka, tokens, service_dsns):
    kafka.skip_unless_controllable()
    token = tokens.issue("ic-1", ["intake_clinician"])
    episodes = [run_intake(system["intake"].url, token)["episode_id"] for _ in range(3)]
    restart = asyncio.create_task(asyncio.to_thread(kafka.restart))
    # Intakes keep completing while the broker is away: they wait in intake's outbox.
    while not restart.done():
        episodes.append(await asyncio.to_thread(lambda: run_intake(system["intake"].url, token)["episode_id"]))
        await asyncio.sleep(0.5)
    await restart
    episodes += [run_intake(system["intake"].url, token)["episode_id"] for _ in range(3)]

    wanted = set(episodes)
    notes = await wait_for_records(kafka.bootstrap, NOTIFICATIONS, lambda r: r.headers.get("ce_subject") in wanted,
                                   count=len(wanted), timeout=180)
    assert {n.headers["ce_subject"] for n in notes} == wanted
    ids = [uuid.UUID(e) for e in episodes]
    assert await scalar(service_dsns["scheduler"], "SELECT count(*) FROM courses WHERE episode_id = ANY($1)", ids) == len(ids)
    assert await scalar(service_dsns["notifier"], "SELECT count(*) FROM notifications WHERE kind = 'course_planned'"
                        " AND episode_id = ANY($1)", ids) == len(ids)
    for svc in system.services.values():
        assert svc.running(), svc.tail()
