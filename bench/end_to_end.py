"""(c) End to end: the four services as processes, K intakes completed over HTTP
(``rapport_testing.flows.run_intake``: open a referral, complete it with every part in one
call), one starting every ``interval`` seconds (open loop; back to back when an intake takes
longer), ten episodes per clinician (a caseload: one clinician's calendar fills up after ~60
courses of the template, and the scheduler then refuses to plan), after one warm-up episode that
is not counted (consumer groups joined, pools and connections open).

Per episode, from the moment the completion's HTTP answer arrived at the client (wall clock) to
the Kafka **record timestamp** (CreateTime: when the producing service's relay handed the record
to its producer, ms resolution; same machine, same clock) of:

  (i)   ``rapport.course.planned.v1``         intake relay → scheduler consumer → scheduler relay
  (ii)  the baseline ``rapport.score.submitted.v1``   intake relay → outcomes consumer → outcomes relay
  (iii) the clinician's ``rapport.notification.delivered.v1`` (kind course_planned, by email):
        (i) → notifier consumer → sender → SMTP → notifier relay

Nothing reads the topics while the intakes run; once the last intake is completed, one consumer
follows the notifications topic until every notice is there (``bench/tail.py``: what is new, not
the whole topic again), then the three topics are read once to their end.

``--n 1000 --interval 0`` is the size of issue 13's target: 100 clinicians of ten episodes, the
waits scaled to n (a second per episode on top of two minutes).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass

import httpx

from rapport_testing.flows import run_intake
from rapport_testing.kafka import Record, read_all
from rapport_shared.topics import COURSE, INTAKE, NOTIFICATIONS, OUTCOMES, dlq_topic

import cpu
from figures import Figure, distribution, rate
from tail import Tail, read_to_end

NAME = "e2e"
DEFAULT_EPISODES = 20
DEFAULT_INTERVAL_S = 0.5


CASELOAD = 10  # episodes per clinician: one clinician's calendar holds ~60 courses of this template


@dataclass(frozen=True)
class Episode:
    episode_id: str
    clinician: str
    completed_at: float  # wall clock, when the completion's answer arrived
    http_s: float        # open referral + complete (two requests)


def clinician_of(i: int, tag: str) -> str:
    return f"clin-b{tag}-{i // CASELOAD:03d}"


def intakes(running, count: int, interval_s: float, tag: str) -> list[Episode]:
    """``count`` intakes, one started every ``interval_s`` (blocking; run it in a thread)."""
    for clinician in sorted({clinician_of(i, tag) for i in range(count)}):
        running.register_clinician(clinician)
    url, token = running.system["intake"].url, running.token("ic-bench", "intake_clinician")
    out: list[Episode] = []
    with httpx.Client(timeout=30) as http:
        start = time.monotonic()
        for i in range(count):
            if (wait := start + i * interval_s - time.monotonic()) > 0:
                time.sleep(wait)
            clinician = clinician_of(i, tag)
            began = time.perf_counter()
            answer = run_intake(url, token, clinician_id=clinician, client=http)
            out.append(Episode(answer["episode_id"], clinician, time.time(), time.perf_counter() - began))
    return out


def _type(r: Record) -> str:
    return r.headers.get("ce_type", "")


def is_planned(r: Record) -> bool:
    return _type(r) == "rapport.course.planned.v1"


def is_baseline(r: Record) -> bool:
    return _type(r) == "rapport.score.submitted.v1" and json.loads(r.value)["timepoint"] == "baseline"


def notice_for(episodes: list[Episode]):
    """Is this record the delivery of the course-planned notice to the episode's clinician?"""
    clinician = {e.episode_id: e.clinician for e in episodes}

    def is_notice(r: Record) -> bool:
        if _type(r) != "rapport.notification.delivered.v1" or r.headers.get("ce_subject") not in clinician:
            return False
        data = json.loads(r.value)
        return data["recipient_ref"] == f"clinician:{clinician[data['episode_id']]}" and data["kind"] == "course_planned"

    return is_notice


async def wait_notified(running, episodes: list[Episode], timeout: float) -> None:
    """Until every episode's clinician notice is on Kafka; fails, saying why, if an
    episode's completion was dead-lettered by a service (checked every 5 s)."""
    is_notice, ids = notice_for(episodes), {e.episode_id for e in episodes}
    got: set[str] = set()
    deadline, dlq_check = time.monotonic() + timeout, time.monotonic() + 5
    async with Tail(running.bootstrap, NOTIFICATIONS) as tail:
        while True:
            got |= {r.headers["ce_subject"] for r in await tail.poll() if is_notice(r)}
            if got >= ids:
                return
            if time.monotonic() > dlq_check:
                dlq_check = time.monotonic() + 5
                for group in ("rapport-scheduler", "rapport-outcomes", "rapport-notifier"):
                    for topic in (INTAKE, COURSE):
                        for r in await read_all(running.bootstrap, dlq_topic(topic, group)):
                            if r.headers.get("ce_subject") in ids:
                                raise RuntimeError(f"{group} dead-lettered episode {r.headers['ce_subject']}: "
                                                   f"{r.headers.get('dlq_error')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(ids - got)} of {len(ids)} clinician notices missing after {timeout:.0f} s")


async def cohort(running, count: int, interval_s: float) -> tuple[list[Episode], str]:
    """A warm-up episode (waited for, not returned), then ``count`` measured ones, all notified;
    with where the CPU went from the first measured intake until all were seen notified."""
    tag = uuid.uuid4().hex[:6]
    warm = await asyncio.to_thread(intakes, running, 1, 0, f"{tag}w")
    await wait_notified(running, warm, timeout=120)
    pids = {name: svc.proc.pid for name, svc in running.system.services.items() if svc.proc}
    before, began = cpu.snapshot(pids), time.perf_counter()
    episodes = await asyncio.to_thread(intakes, running, count, interval_s, tag)
    await wait_notified(running, episodes, timeout=120 + count)
    return episodes, cpu.summary(before, cpu.snapshot(pids), time.perf_counter() - began)


def by_subject(records: list[Record]) -> dict[str, list[Record]]:
    """Records per episode (CloudEvents subject): looked up once per episode, not scanned."""
    out: dict[str, list[Record]] = {}
    for r in records:
        out.setdefault(r.headers.get("ce_subject", ""), []).append(r)
    return out


def first_stamp(records: dict[str, list[Record]], episode_id: str, match) -> float:
    stamps = [r.timestamp for r in records.get(episode_id, ()) if match(r)]
    if not stamps:
        raise RuntimeError(f"no matching record for episode {episode_id}")
    return min(stamps) / 1000


async def run(running, n: int | None = None, interval_s: float | None = None) -> tuple[list[Figure], list[Episode]]:
    count = n or DEFAULT_EPISODES
    interval_s = DEFAULT_INTERVAL_S if interval_s is None else interval_s
    episodes, cpu_use = await cohort(running, count, interval_s)
    course, outcomes, notes = [by_subject(await read_to_end(running.bootstrap, t, timeout=120 + count))
                               for t in (COURSE, OUTCOMES, NOTIFICATIONS)]
    is_notice = notice_for(episodes)
    per_episode = ", ".join(f"{t.split('.')[-1]} {sum(len(recs.get(e.episode_id, ())) for e in episodes) / count:.1f}"
                            for t, recs in ((COURSE, course), (OUTCOMES, outcomes), (NOTIFICATIONS, notes)))
    pace = f"1 intake / {interval_s:g} s" if interval_s else "back to back"
    noticed = {e.episode_id: first_stamp(notes, e.episode_id, is_notice) for e in episodes}
    first_began = min(e.completed_at - e.http_s for e in episodes)
    figures = [
        distribution(NAME, f"intake over HTTP: open + complete ({pace})", [e.http_s for e in episodes],
                     note=f"two requests, client-side; records per episode on the topics: {per_episode}"),
        distribution(NAME, "completion → course.planned.v1 (record timestamp)",
                     [first_stamp(course, e.episode_id, is_planned) - e.completed_at for e in episodes]),
        distribution(NAME, "completion → baseline score.submitted.v1",
                     [first_stamp(outcomes, e.episode_id, is_baseline) - e.completed_at for e in episodes]),
        distribution(NAME, "completion → clinician notification.delivered.v1",
                     [noticed[e.episode_id] - e.completed_at for e in episodes],
                     note="course_planned notice sent by email to a loopback SMTP server"),
        rate(NAME, "episodes through: first intake start → last clinician notice", count,
             max(noticed.values()) - first_began, unit="episodes/s",
             note="the system's throughput only when intakes come back to back (--interval 0); paced, it is the"
                  f" pace. {cpu_use}"),
    ]
    return figures, episodes
