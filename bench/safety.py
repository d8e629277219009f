"""(e) Safety alerts behind a backlog: the four services as processes (as ``e2e``), K episodes
through intake (``end_to_end.intakes``: each assigned clinician has an e-mail address, ten
episodes per clinician) and noticed; then, **with the notifier stopped**, B routine records are
produced straight to ``rapport.outcomes`` — valid CloudEvents of ``rapport.score.submitted.v1``
(the contract and ``rapport_shared.envelope``, as outcomes' relay writes them) for episodes the
notifier does not know, which its main consumer applies one by one (inbox claim, sessions marked
answered: none, partner webhooks: none). The notifier is started again and, once its safety lane
(``ServiceRuntime(priority=[AlertRaisedV1, ...])``, docs/architecture.md "Safety lane") has
read past the backlog — the main consumer still has most of it before it — K positive PHQ-9
item 9 are submitted over HTTP to outcomes, one at a time, each by the episode's clinician
(``POST /v1/episodes/{id}/submissions``), the next one once the previous one's delivery is seen.

Per alert, from the moment the submission's HTTP answer arrived at the client (wall clock) to the
Kafka **record timestamp** (CreateTime, set by the producing service's relay; same machine, same
clock) of the clinician's ``rapport.notification.delivered.v1`` of kind safety_alert, by email:
outcomes' relay → ``rapport.alert.raised.v1`` → the notifier's safety lane → sender → loopback
SMTP server (accepted) → notifier relay. Not the SMTP server's receipt, which comes a few ms
earlier. And the notifier's part alone: the record timestamp of ``rapport.alert.raised.v1`` →
that of the delivery (outcomes' relay usually stamps the alert before the HTTP answer has reached
the client, so it is not measured from the answer).

And how many of the B routine records the notifier's main consumer had not yet taken up when
the delivery was stamped: records whose inbox row (``notifier.inbox.processed_at``, the start
of the transaction that claimed them) is later than the delivery's record timestamp. Above zero
for an alert: it did not wait for the backlog. Read once the backlog is drained, which is also
timed (main consumer: notifier ready → the last routine record claimed), as is the lane's pass
over it (notifier ready → the lane's committed offsets at the topic's end, polled every 0.3 s).

The scheduler also reads ``rapport.outcomes`` (and ignores score.submitted): it shares the CPU
with the notifier meanwhile. The notifier's peak RSS (run.py, bench/rss.py) is since its restart.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import statistics
import time
import uuid
from datetime import datetime, timezone

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from rapport_shared import envelope
from rapport_shared.contracts.outcomes import ScoreSubmittedV1
from rapport_testing.flows import phq9
from rapport_testing.kafka import Record, wait_caught_up
from rapport_shared.topics import INTAKE, NOTIFICATIONS, OUTCOMES

import cpu
import end_to_end
from figures import Figure, distribution, rate
from services import BENCH_ORG
from tail import Tail

NAME = "safety"
DEFAULT_ALERTS = 20
DEFAULT_BACKLOG = 50_000
LANE_GROUP = "rapport-notifier-priority"
MAIN_GROUP = "rapport-notifier"


def routine_record(now: datetime) -> tuple[uuid.UUID, envelope.KafkaRecord]:
    """A session PHQ-9 score of an episode the notifier does not know: a routine record on the
    alert's topic that the notifier's main consumer applies and its safety lane leaves to it."""
    data = ScoreSubmittedV1(episode_id=uuid.uuid4(), organisation_id=BENCH_ORG, submission_id=uuid.uuid4(),
                            instrument="phq9", timepoint="session", session_number=4, total=9, band="mild",
                            caseness=False, baseline_total=18, change_from_baseline=-9, reliable_change="improved",
                            reliable_change_criterion="threshold", administered_at=now, scored_at=now)
    event = envelope.new_event(type=data.event_type, source="/rapport/bench", subject=str(data.episode_id), data=data,
                               time=now)
    return uuid.UUID(event.id), envelope.encode(event)


async def produce_backlog(bootstrap: str, count: int) -> list[uuid.UUID]:
    """``count`` routine records on rapport.outcomes (acks=all); their event ids."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    ids: list[uuid.UUID] = []
    try:
        now = datetime.now(timezone.utc)
        for start in range(0, count, 1000):  # a thousand in flight at most: memory stays flat at any size
            acks = []
            for _ in range(min(1000, count - start)):
                event_id, rec = routine_record(now)
                ids.append(event_id)
                acks.append(await producer.send(OUTCOMES, value=rec.value, key=rec.key,
                                                 headers=[(k, v.encode()) for k, v in rec.headers.items()]))
            await asyncio.gather(*acks)
    finally:
        await producer.stop()
    return ids


def _type(r: Record) -> str:
    return r.headers.get("ce_type", "")


def is_raised(episode: end_to_end.Episode):
    return lambda r: r.headers.get("ce_subject") == episode.episode_id and _type(r) == "rapport.alert.raised.v1"


def is_delivered(episode: end_to_end.Episode):
    def match(r: Record) -> bool:
        if r.headers.get("ce_subject") != episode.episode_id or _type(r) != "rapport.notification.delivered.v1":
            return False
        data = json.loads(r.value)
        return data["kind"] == "safety_alert" and data["recipient_ref"] == f"clinician:{episode.clinician}"

    return match


async def first(tail: Tail, match, timeout: float = 120) -> Record:
    """The first record ``tail`` has read or reads that matches."""
    found = [r for r in tail.records if match(r)]
    deadline = time.monotonic() + timeout
    while not found:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no matching record on {', '.join(tail.topics)} after {timeout:.0f} s")
        found = [r for r in await tail.poll() if match(r)]
    return found[0]


async def alert(http: httpx.AsyncClient, running, episode: end_to_end.Episode) -> tuple[float, float]:
    """A positive PHQ-9 item 9, submitted by the episode's clinician: (answered at, HTTP seconds)."""
    began = time.perf_counter()
    r = await http.post(f"{running.system['outcomes'].url}/v1/episodes/{episode.episode_id}/submissions",
                        headers={"Authorization": f"Bearer {running.token(episode.clinician, 'clinician')}"},
                        json={"client_submission_id": f"bench-{uuid.uuid4().hex}", "instrument": "phq9",
                              "answers": phq9(12, item9=1), "session_number": 1,
                              "administered_at": datetime.now(timezone.utc).isoformat()})
    answered, http_s = time.time(), time.perf_counter() - began
    if r.status_code != 201 or not r.json().get("alert_ids"):
        raise RuntimeError(f"outcomes raised no alert for episode {episode.episode_id}: {r.status_code} {r.text}")
    return answered, http_s


async def claimed_at(admin_dsn: str, ids: list[uuid.UUID]) -> list[float]:
    """When the notifier's main consumer claimed each routine record (epoch s, sorted)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        rows = await conn.fetch("SELECT extract(epoch FROM processed_at)::float8 AS at FROM notifier.inbox"
                                " WHERE event_id = ANY($1::uuid[])", ids)
    finally:
        await conn.close()
    return sorted(r["at"] for r in rows)


async def run(running, n: int | None = None, backlog: int | None = None) -> list[Figure]:
    count = n or DEFAULT_ALERTS
    backlog = DEFAULT_BACKLOG if backlog is None else backlog
    episodes = await asyncio.to_thread(end_to_end.intakes, running, count, 0, f"s{uuid.uuid4().hex[:6]}")
    await end_to_end.wait_notified(running, episodes, timeout=120 + count)
    await wait_caught_up(running.bootstrap, "rapport-outcomes", INTAKE, timeout=120)  # outcomes knows the episodes

    notifier = running.system["notifier"]
    await asyncio.to_thread(notifier.stop)
    produced = time.perf_counter()
    ids = await produce_backlog(running.bootstrap, backlog)
    produced = time.perf_counter() - produced
    await asyncio.to_thread(notifier.start)  # returns once /readyz answers
    ready = time.time()
    await wait_caught_up(running.bootstrap, LANE_GROUP, OUTCOMES, timeout=120 + backlog / 500)
    lane_s = time.time() - ready

    pids = {name: svc.proc.pid for name, svc in running.system.services.items() if svc.proc}
    before, began = cpu.snapshot(pids), time.perf_counter()
    answers: list[tuple[float, float]] = []
    raised: list[float] = []
    delivered: list[float] = []
    async with Tail(running.bootstrap, OUTCOMES, NOTIFICATIONS, from_end=True) as tail, \
            httpx.AsyncClient(timeout=30) as http:
        for e in episodes:  # one at a time: each alert's latency is its own, not a queue of alerts
            answers.append(await alert(http, running, e))
            delivered.append((await first(tail, is_delivered(e))).timestamp / 1000)
        for e in episodes:
            raised.append((await first(tail, is_raised(e))).timestamp / 1000)
    cpu_use = cpu.summary(before, cpu.snapshot(pids), time.perf_counter() - began)

    await wait_caught_up(running.bootstrap, MAIN_GROUP, OUTCOMES, timeout=120 + backlog / 100)
    taken = await claimed_at(running.admin_dsn, ids) if ids else []
    waiting = [backlog - bisect.bisect_right(taken, t) for t in delivered]
    first_waiting = waiting[0] if waiting else 0
    figures = [
        distribution(NAME, "PHQ-9 item 9 over HTTP: submission answered (one at a time)", [s for _, s in answers],
                     note="the episode's clinician submits; client-side"),
        distribution(NAME, f"answer → clinician notification.delivered.v1 (safety_alert), {backlog:,} routine behind",
                     [d - a for d, (a, _) in zip(delivered, answers)],
                     note=f"email to a loopback SMTP server; record timestamp of the notifier's relay. "
                          f"Backlog: {backlog:,} score.submitted.v1 on rapport.outcomes, produced in {produced:.1f} s"
                          f" with the notifier stopped. {cpu_use}"),
        Figure(NAME, "routine records the notifier had not taken up when an alert was delivered: fewest", count,
               rate=min(waiting), unit="records",
               note=f"median {statistics.median(waiting):,.0f}, first alert {first_waiting:,}, most {max(waiting):,};"
                    f" per alert in order: {', '.join(str(w) for w in waiting)}",
               extra={"waiting": waiting, "backlog": backlog}),
        distribution(NAME, "alert.raised.v1 → notification.delivered.v1 (record timestamps: the notifier's part)",
                     [d - r for d, r in zip(delivered, raised)]),
    ]
    if taken:
        figures += [
            rate(NAME, "safety lane: notifier ready → past the backlog (polled)", backlog, lane_s, unit="records/s",
                 note="records the lane leaves to the main consumer (other_lane), offsets committed"),
            rate(NAME, "main consumer: notifier ready → last routine record claimed", backlog, taken[-1] - ready,
                 unit="records/s", note="inbox claim + score.submitted handler, one transaction per partition batch"),
        ]
    return figures
