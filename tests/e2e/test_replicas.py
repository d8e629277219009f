"""Two replicas of the scheduler and of the notifier through rebalances in the middle of a load
(issue 13, item 5): nothing lost, nothing doubled.

Intakes are completed back to back while a second scheduler and a second notifier join their
consumer groups (rebalance), then the first scheduler is SIGKILLed (rebalance once the broker
notices) and started again (rebalance). At the end every episode has one course, one
``course.planned`` event id, sixteen distinct ``session.scheduled`` event ids, and one clinician
notification, each once in the notifier's table and once on the topic.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import asyncpg
import pytest

from rapport_testing.flows import run_intake
from rapport_testing.kafka import read_all, wait_caught_up, wait_for_records
from rapport_testing.services import ServiceProcess
from rapport_shared.topics import COURSE, INTAKE, NOTIFICATIONS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

EPISODES = 60
PACE_S = 0.35  # between intake starts: the load lasts through the rebalances


async def scalar(dsn, sql, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


@pytest.fixture
def replicas(system, tmp_path):
    """A second scheduler and a second notifier, as the first (same schema, same group)."""
    made = {name: ServiceProcess(name, dict(system[name].env), tmp_path / name) for name in ("scheduler", "notifier")}
    for p in made.values():
        p.log_dir.mkdir(parents=True, exist_ok=True)
    yield made
    for p in made.values():
        p.stop()
    if not system["scheduler"].running():
        system["scheduler"].start()


async def test_two_replicas_through_rebalances_lose_nothing_and_double_nothing(system, replicas, kafka, tokens,
                                                                              service_dsns):
    token = tokens.issue("ic-1", ["intake_clinician"])
    url = system["intake"].url
    episodes: list[str] = []
    done = threading.Event()
    rebalanced = threading.Event()  # the last intakes wait for it: the load spans every rebalance

    tag = uuid.uuid4().hex[:6]

    def load():  # back to back, in a thread: the replicas come and go meanwhile
        try:
            for i in range(EPISODES):  # ten per clinician: a calendar holds about sixty courses
                if i == EPISODES - 10:  # however fast the first ones went
                    rebalanced.wait(timeout=600)
                episodes.append(run_intake(url, token, clinician_id=f"clin-rep{tag}-{i // 10}")["episode_id"])
                time.sleep(PACE_S)
        finally:
            done.set()

    loader = threading.Thread(target=load)
    loader.start()
    try:
        while len(episodes) < 5:
            await asyncio.sleep(0.1)
        await asyncio.gather(*(asyncio.to_thread(r.start) for r in replicas.values()))  # rebalance: join
        assert not done.is_set(), "the load ended before the replicas joined: make it longer"
        await asyncio.sleep(2)
        await asyncio.to_thread(system["scheduler"].kill)  # rebalance: a member dies
        await asyncio.sleep(2)
        await asyncio.to_thread(system["scheduler"].start)  # rebalance: it comes back
        assert not done.is_set(), "the load ended before the rebalances: make it longer"
        rebalanced.set()
    finally:
        rebalanced.set()  # a failure above must not leave the loader waiting
        await asyncio.to_thread(loader.join)
    assert len(episodes) == EPISODES

    for name, replica in replicas.items():  # the second replicas did take part
        assert "batch processed" in replica.log_path.read_text(), f"{name}-2 consumed nothing:\n{replica.tail()}"

    wanted = set(episodes)
    await wait_for_records(kafka.bootstrap, NOTIFICATIONS, lambda r: r.headers.get("ce_subject") in wanted,
                           count=len(wanted), timeout=240)
    await wait_caught_up(kafka.bootstrap, "rapport-scheduler", INTAKE, timeout=120)
    await wait_caught_up(kafka.bootstrap, "rapport-notifier", COURSE, timeout=120)
    ids = [uuid.UUID(e) for e in episodes]
    sched, notif = service_dsns["scheduler"], service_dsns["notifier"]
    assert await scalar(sched, "SELECT count(*) FROM courses WHERE episode_id = ANY($1)", ids) == len(ids)
    assert await scalar(sched, "SELECT count(DISTINCT episode_id) FROM courses WHERE episode_id = ANY($1)", ids) == len(ids)
    assert await scalar(notif, "SELECT count(*) FROM notifications WHERE kind = 'course_planned'"
                        " AND episode_id = ANY($1)", ids) == len(ids)

    course = [r for r in await read_all(kafka.bootstrap, COURSE) if r.headers.get("ce_subject") in wanted]
    notes = [r for r in await read_all(kafka.bootstrap, NOTIFICATIONS) if r.headers.get("ce_subject") in wanted]
    for episode in episodes:
        mine = [r for r in course if r.headers["ce_subject"] == episode]
        planned = {r.headers["ce_id"] for r in mine if r.headers.get("ce_type") == "rapport.course.planned.v1"}
        scheduled = {r.headers["ce_id"] for r in mine if r.headers.get("ce_type") == "rapport.session.scheduled.v1"}
        assert len(planned) == 1, (episode, planned)  # one plan (a re-published copy keeps its ce_id)
        assert len(scheduled) == 16, (episode, len(scheduled))
        delivered = {r.headers["ce_id"] for r in notes if r.headers["ce_subject"] == episode}
        assert len(delivered) == 1, (episode, delivered)  # the clinician's notice, once
