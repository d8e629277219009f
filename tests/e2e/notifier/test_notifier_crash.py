"""Crash tests (issue 6): the notifier dies at random points while due notifications go out over
real SMTP, is restarted, and the arrivals at the SMTP server are counted.

Deaths: SIGKILL of the process group after a random 0.3–2.5 s of sending, several times, plus
deterministic deaths at ``sender.after_send`` (``os._exit`` right after the SMTP server answered
250 and before the delivery is recorded — the in-doubt window, hit on purpose so the tests cannot
pass by luck).

1. With the mail provider's status lookup configured (``RAPPORT_EMAIL_STATUS_URL``, answered by the
   loopback SMTP server from what it accepted): 500 due reminders, every Message-ID arrives
   exactly once, every delivery is recorded ``delivered`` with one ``notification.delivered``
   event, and the in-doubt deliveries were settled by asking, never by a blind resend.
2. Without it (docs/notifier.md, "Exactly once"): at least once — every key arrives, and a
   duplicate is always the same Message-ID, of a delivery the notifier recorded as resent in doubt.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import pytest

from rapport_testing.notifier import (SimTime, SmtpServer, api, notifier_env, publish, publish_contact, publish_intake,
                                      until)
from rapport_shared.contracts.course import CoursePlannedV1, PhaseSpan, PlannedSession
from rapport_shared.faults import EXIT_CODE
from rapport_shared.private_contacts import ContactRecordV1

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]
SESSIONS = 10
CONCURRENCY = 8


@dataclass
class Run:
    n: int
    address: str
    person: str
    kills: int
    crashes: int
    received: Counter
    rows: dict  # Message-ID → notifications row


async def crash_run(system, kafka, service_dsns, smtp: SmtpServer, *, episodes: int, lookup: bool,
                    random_kills: int, crashes_after_send: int) -> Run:
    bootstrap, dsn = kafka.bootstrap, service_dsns["notifier"]
    n = episodes * SESSIONS
    sim = SimTime(bootstrap)
    t0 = await sim.start()
    # RETRY_FOR_S long enough that nothing here gives up: a delivery only ends "delivered".
    env = notifier_env(smtp, RAPPORT_QUESTIONNAIRE_LEAD="1s", RAPPORT_SEND_CONCURRENCY=str(CONCURRENCY),
                       RAPPORT_RETRY_FOR_S="600", **(smtp.status_env() if lookup else {}))
    notifier = system.restart("notifier", env)
    tag = uuid.uuid4().hex[:8]
    person, address = f"P-crash-{tag}", f"crash-{tag}@patients.test"
    rng = random.Random()
    await publish_contact(bootstrap, ContactRecordV1(person_id=person, email=address, channel_consent={"email": True},
                                                     updated_at=t0))
    await until(lambda: has_patient(dsn, person), what="contact from the private topic", timeout=120)
    first = t0 + timedelta(days=2)
    for e in range(episodes):
        sessions = [PlannedSession(session_id=uuid.uuid4(), number=k + 1, duration_minutes=50,
                                   starts_at=first + timedelta(minutes=e * SESSIONS + k)) for k in range(SESSIONS)]
        episode = uuid.uuid4()  # of the tokens' organisation (org-test): the admin reads its deliveries
        await publish_intake(bootstrap, episode, person, f"clin-crash-{tag}", t0)
        await publish(bootstrap, CoursePlannedV1(
            episode_id=episode, course_id=uuid.uuid4(), person_id=person, template_id="ipt_depression_16",
            clinician_id=f"clin-crash-{tag}", contracted_sessions=SESSIONS,
            phase_plan=[PhaseSpan(phase="initial", first_session=1, last_session=SESSIONS)], sessions=sessions,
            first_session_at=sessions[0].starts_at, planned_end_at=sessions[-1].starts_at, planned_at=t0),
            source="/rapport/scheduler", at=t0)
    await until(lambda: _eq(pending_reminders(dsn, person), n), what=f"all {n} reminders armed", timeout=180)

    # Deterministic deaths in the in-doubt window: the first completed send to this test's patient
    # kills the process before it is recorded (RAPPORT_CRASH_IF: other tests' leftover deliveries,
    # due when the clock jumps, pass the same point). The first such process finds all reminders due.
    crashes = 0
    for _ in range(crashes_after_send):
        notifier.stop()
        notifier.start({**env, "RAPPORT_CRASH_AT": "sender.after_send", "RAPPORT_CRASH_IF": f"patient:{person}"},
                       wait_ready=False)
        if crashes == 0:
            await sim.to(first + timedelta(minutes=n) - timedelta(hours=24))  # all due now
        assert await asyncio.to_thread(notifier.wait_exit, 120) == EXIT_CODE, notifier.tail()
        crashes += 1
    if crashes == 0:
        await sim.to(first + timedelta(minutes=n) - timedelta(hours=24))
    notifier.start(env)
    # SIGKILL at random points while the rest goes out.
    kills = 0
    while kills < random_kills and await delivered(dsn, person) < n:
        await asyncio.sleep(rng.uniform(0.3, 2.5))
        notifier.kill()
        kills += 1
        notifier.start(env)
    try:
        await until(lambda: _eq(delivered(dsn, person), n), timeout=300, what="every delivery recorded")
        await until(lambda: len({m["Message-ID"] for m in smtp.to(address)}) >= n, timeout=60,
                    what="every reminder at the SMTP server")
    except TimeoutError:
        conn = await asyncpg.connect(dsn)
        print(await conn.fetch("SELECT status, last_error, count(*) FROM notifications GROUP BY 1, 2"))
        await conn.close()
        raise
    conn = await asyncpg.connect(dsn)
    try:
        rows = {f"<{r['notification_id']}@rapport.notifier>": r for r in await conn.fetch(
            "SELECT * FROM notifications WHERE recipient_ref = $1 AND kind = 'session_reminder'", f"patient:{person}")}
    finally:
        await conn.close()
    return Run(n, address, person, kills, crashes, Counter(m["Message-ID"] for m in smtp.to(address)), rows)


async def test_with_the_status_lookup_every_notification_arrives_exactly_once(system, kafka, tokens, service_dsns,
                                                                              smtp):
    try:
        run = await crash_run(system, kafka, service_dsns, smtp, episodes=50, lookup=True, random_kills=6,
                              crashes_after_send=2)
        answers = Counter(a for _, a in smtp.lookups)
        resolved = sum(r["in_doubt_resolved"] for r in run.rows.values())
        print(f"status lookup: notifications={run.n} deaths={run.kills} SIGKILL + {run.crashes} at sender.after_send, "
              f"arrivals={sum(run.received.values())} distinct={len(run.received)} "
              f"in_doubt={sum(r['in_doubt'] for r in run.rows.values())} resolved_by_lookup={resolved} "
              f"lookups(accepted={answers[True]}, not_accepted={answers[False]}, failed={answers[None]}) "
              f"blind_resends={sum(r['in_doubt_resends'] for r in run.rows.values())}")
        # Exactly once at the SMTP server: each of the 500 Message-IDs once, nothing else.
        assert len(run.rows) == run.n and set(run.received) == set(run.rows)
        assert {mid: c for mid, c in run.received.items() if c != 1} == {}
        assert sum(run.received.values()) == run.n
        # The deaths after the server's 250 were settled by asking the provider, not by resending.
        assert answers[True] >= run.crashes >= 1
        for r in run.rows.values():
            assert r["status"] == "delivered" and r["in_doubt_resends"] == 0 and r["doubt_since"] is None
            assert r["in_doubt"] == r["in_doubt_resolved"]
        # The delivery log and the events agree: all delivered, one delivered event each.
        notifier = system["notifier"]
        log = api(notifier.url, tokens.issue("admin", ["admin"]), "GET", "/v1/deliveries",
                  params={"recipient_ref": f"patient:{run.person}", "kind": "session_reminder"}).json()["deliveries"]
        assert len(log) == run.n and {d["status"] for d in log} == {"delivered"}
        assert sum(d["in_doubt_resolved"] for d in log) == resolved and sum(d["in_doubt_resends"] for d in log) == 0
        expected = [uuid.uuid5(r["notification_id"], "delivered") for r in run.rows.values()]
        conn = await asyncpg.connect(service_dsns["notifier"])
        try:
            events = await conn.fetch("SELECT event_id FROM outbox WHERE event_type = 'rapport.notification.delivered.v1'"
                                      " AND event_id = ANY($1::uuid[])", expected)
        finally:
            await conn.close()
        assert len(events) == run.n
    finally:
        system.restart("notifier")


async def test_without_the_status_lookup_a_duplicate_is_the_same_message_id_recorded_in_doubt(system, kafka,
                                                                                               service_dsns, smtp):
    try:
        run = await crash_run(system, kafka, service_dsns, smtp, episodes=10, lookup=False, random_kills=2,
                              crashes_after_send=1)
        duplicates = {mid: c - 1 for mid, c in run.received.items() if c > 1}
        resends = sum(r["in_doubt_resends"] for r in run.rows.values())
        print(f"no status lookup: notifications={run.n} deaths={run.kills} SIGKILL + {run.crashes} at "
              f"sender.after_send, arrivals={sum(run.received.values())} distinct={len(run.received)} "
              f"duplicates={sum(duplicates.values())} in_doubt_resends={resends}")
        assert smtp.lookups == []
        assert set(run.received) == set(run.rows) and len(run.rows) == run.n  # every key, no other Message-ID
        assert all(r["status"] == "delivered" for r in run.rows.values())
        # A death after the server's 250 is resent blindly: at least one duplicate, always the same
        # Message-ID and idempotency key, and only where the notifier recorded an in-doubt resend.
        assert duplicates
        for mid, extra in duplicates.items():
            assert run.rows[mid]["in_doubt_resends"] >= extra
            copies = [m for m in smtp.to(run.address) if m["Message-ID"] == mid]
            assert {m["X-Rapport-Idempotency-Key"] for m in copies} == {run.rows[mid]["idem_key"]}
        assert sum(duplicates.values()) <= resends
    finally:
        system.restart("notifier")


async def has_patient(dsn: str, person: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM patients WHERE person_id = $1", person))
    finally:
        await conn.close()


async def _eq(coro, n) -> bool:
    return (await coro) == n


async def pending_reminders(dsn: str, person: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM timers t JOIN sessions s ON t.key = 'session:' || s.session_id"
            " JOIN episodes e USING (episode_id) WHERE e.person_id = $1 AND t.kind = 'notifier.session_reminder'"
            " AND t.fired_at IS NULL AND t.cancelled_at IS NULL", person)
    finally:
        await conn.close()


async def delivered(dsn: str, person: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM notifications WHERE status = 'delivered'"
                                   " AND recipient_ref = $1 AND kind = 'session_reminder'", f"patient:{person}")
    finally:
        await conn.close()
