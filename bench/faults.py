"""A fault suite that counts (issue 11, item 5):

    uv run python bench/faults.py --episodes 200            # the full run (~10 min on 2 cores)
    uv run python bench/faults.py --episodes 16 --pause 8   # about what CI runs (tests/e2e/test_fault_suite.py)

Starts its own PostgreSQL and Kafka (the test images, as bench/run.py does; never the ones other
tests use, because it kills them), the four services as OS processes (simulated clock for the
scheduler, outcomes and notifier) and a loopback SMTP server with the provider's message status
endpoint, then runs a cohort while faults are injected:

1. **Intakes** over HTTP, paced so they run through the fault phase: open a referral (with a
   ``client_referral_id``, so a retry after a crash is the same referral) and complete it with
   every part including the patient's e-mail contact. Each episode then flows on its own:
   ``intake.completed`` → the scheduler plans a course (``course.planned`` + 16
   ``session.scheduled``) → outcomes records the baseline PHQ-9 → the notifier e-mails the
   clinician (``course_planned``) and arms a reminder per session; the reminder lead is longer than
   the course, so all 16 fire at once (durable timers) and are e-mailed to the patient (or recorded
   ``failed: no_channel`` when the contact record arrives after them: counted either way).
2. **Faults while that runs**:
   - every declared crash point (``crash_point(...)`` in the code, :data:`CRASH_PLAN`), in every
     service that passes it: the service is restarted with ``RAPPORT_CRASH_AT=<point>``, must
     exit with 86 there, and is restarted with the next point (the four services in parallel);
   - SIGKILL of a random service at a random moment, restarted (``--kills``);
   - PostgreSQL SIGKILLed (``docker kill``) and started again;
   - the broker SIGKILLed and started again;
   - the broker paused (``docker pause``: SIGSTOP-like freezer) for ``--pause`` seconds.
3. When the system has settled, simulated time moves past every first session; each course's
   session 1 is recorded attended over HTTP (scheduler) and its PHQ-9 submitted over HTTP
   (outcomes, ``client_submission_id``: a retry is the same submission), one episode in 40 with
   item 9 positive (a safety alert and its page to the clinician). Meanwhile outcomes dies at
   ``outcomes.submission.after_commit`` (committed, not answered), a few random SIGKILLs and one
   more PostgreSQL kill.
4. **Counting** (admin DSN, the services' own schemas, and the topics): per episode, courses 1,
   scheduled sessions 16, attended 1, submissions 2, alerts 1 per positive item 9, notifications
   1 ``course_planned`` + 16 ``session_reminder`` (+ 1 ``safety_alert``), each finished (delivered,
   or failed for no channel only), no two for the same (cause event, recipient, channel), every
   e-mailed one at the SMTP server exactly once (by Message-ID); distinct events per episode and
   type on the topics against the same expectations; nothing parked (outbox rows, timers), no
   unsent outbox row; and no record on any dead-letter topic (a valid cohort has none).

It prints one line, ``events N, faults: crash_points=K ..., lost L, doubled D``; the exit status is
0 only when lost and doubled are 0, every crash point fired and every fault was injected.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rapport_testing.notifier import SmtpServer  # noqa: E402
from rapport_shared import db  # noqa: E402
from rapport_shared.clock import publish_tick  # noqa: E402
from rapport_shared.faults import EXIT_CODE  # noqa: E402
from rapport_shared.http.auth import TokenIssuer  # noqa: E402
from rapport_testing.flows import intake_parts, phq9  # noqa: E402
from rapport_testing.kafka import read_all, wait_caught_up  # noqa: E402
from rapport_testing.services import SERVICES, System, build_system  # noqa: E402
from rapport_shared.topics import SHARED_TOPICS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEV_KEYS = ROOT / "deploy" / "dev-keys"
ORG = "org-faults"
CASELOAD = 4          # episodes per clinician: every first session falls within about a week
SESSIONS = 16         # the ipt-standard template
ITEM9_EVERY = 40      # one episode in 40 answers PHQ-9 item 9 positively at session 1

# Every crash point the code declares (grep 'crash_point(' in services/ and shared/), per service
# that passes it, in the order each service is crashed. sender.after_lookup is reached only for a
# delivery left in doubt, i.e. right after a death at sender.after_send.
CRASH_PLAN: dict[str, tuple[str, ...]] = {
    "intake": ("relay.after_publish", "contacts_relay.after_publish", "relay.after_mark"),
    "scheduler": ("consumer.mid_batch", "consumer.after_effect", "relay.after_publish", "relay.after_mark"),
    "outcomes": ("consumer.after_effect", "consumer.before_offset_commit", "relay.after_publish", "relay.after_mark"),
    "notifier": ("consumer.after_effect", "timer.before_commit", "relay.after_publish", "sender.before_send",
                 "sender.after_send", "sender.after_lookup", "timer.after_commit", "sender.after_record",
                 "relay.after_mark"),
}
LATE_CRASH = ("outcomes", "outcomes.submission.after_commit")  # needs a submission over HTTP (stage 3)
ALL_POINTS = sorted({p for ps in CRASH_PLAN.values() for p in ps} | {LATE_CRASH[1]})
GROUPS = (("rapport-scheduler", ("rapport.intake", "rapport.outcomes")),
          ("rapport-outcomes", ("rapport.intake", "rapport.course")),
          ("rapport-notifier", SHARED_TOPICS), ("rapport-notifier-contacts", ("rapport.private.contacts",)))


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------- cohort

@dataclass
class Episode:
    index: int
    person: str
    clinician: str
    referral_key: str
    item9: int
    episode_id: str | None = None
    course_id: str | None = None
    session1: str | None = None


def make_cohort(n: int, tag: str) -> list[Episode]:
    eps = [Episode(i, f"P-flt-{tag}-{i:04d}", f"clin-flt-{tag}-{i // CASELOAD:03d}", f"flt-{tag}-{i:04d}",
                   2 if i % ITEM9_EVERY == 3 else 0) for i in range(n)]
    if n and not any(e.item9 for e in eps):
        eps[-1].item9 = 2
    return eps


@dataclass
class Faults:
    crash_fired: list[tuple[str, str]] = field(default_factory=list)
    crash_missed: list[tuple[str, str]] = field(default_factory=list)
    sigkill: int = 0
    postgres_kill: int = 0
    broker_kill: int = 0
    broker_pause: int = 0
    unexpected_exits: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"crash_points={len(self.crash_fired)} sigkill={self.sigkill} "
                f"postgres_kill={self.postgres_kill} broker_kill={self.broker_kill} broker_pause={self.broker_pause}")


def call(client: httpx.Client, method: str, url: str, *, ok=(200, 201), timeout: float = 240, **kw) -> httpx.Response:
    """Until the service answers one of ``ok``: a dead or restarting service, a database or broker
    away, are waited out (the same request again: every call here is idempotent)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            r = client.request(method, url, **kw)
            if r.status_code in ok:
                return r
            last = f"{r.status_code} {r.text[:300]}"
            if r.status_code < 500 and r.status_code not in (404, 409, 422, 503):
                raise RuntimeError(f"{method} {url}: {last}")
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise TimeoutError(f"{method} {url} not answered in {timeout:.0f}s: {last}")


class Driver:
    def __init__(self, system: System, tokens: TokenIssuer, bootstrap: str, admin_dsn: str, smtp: SmtpServer):
        self.system, self.tokens, self.bootstrap, self.admin_dsn, self.smtp = system, tokens, bootstrap, admin_dsn, smtp
        self.faults = Faults()
        self.rng = random.Random()
        self.busy: set[str] = set()  # services a crash sequence owns right now (the supervisor leaves them)

    def bearer(self, sub: str, role: str) -> dict:
        return {"Authorization": f"Bearer {self.tokens.issue(sub, [role])}"}

    # -- HTTP steps (blocking; run in a thread) ------------------------------------------------

    def register_clinicians(self, cohort: list[Episode]) -> None:
        with httpx.Client(timeout=30) as c:
            for clinician in sorted({e.clinician for e in cohort}):
                call(c, "PUT", f"{self.system['notifier'].url}/v1/clinicians/{clinician}", headers=self.bearer("admin", "admin"),
                     json={"email": f"{clinician}@clinic.test", "language": "en", "channels": ["email"]})

    def intake(self, c: httpx.Client, e: Episode) -> None:
        auth = self.bearer("ic-faults", "intake_clinician")
        base = f"{self.system['intake'].url}/v1/referrals"
        r = call(c, "POST", base, headers=auth, json={"person_id": e.person, "referral_source": "gp",
                                                      "target_condition": "depression", "client_referral_id": e.referral_key})
        e.episode_id = r.json()["episode_id"]
        body = {**intake_parts(e.clinician), "contact": {"email": f"{e.person.lower()}@patients.test",
                                                         "channel_consent": {"email": True}}}
        call(c, "POST", f"{base}/{e.episode_id}/complete", headers=auth, json=body)

    def intakes(self, cohort: list[Episode], released: list[int], stop: threading.Event) -> None:
        """Intakes one by one as ``released[0]`` allows (the fault phase raises it over time)."""
        with httpx.Client(timeout=20) as c:
            for e in cohort:
                while released[0] <= e.index and not stop.is_set():
                    time.sleep(0.05)
                if stop.is_set():
                    return
                self.intake(c, e)

    def attend_and_submit(self, c: httpx.Client, e: Episode, at: datetime) -> None:
        sched = self.system["scheduler"].url
        auth = self.bearer(e.clinician, "clinician")
        url = f"{sched}/v1/courses/{e.course_id}/sessions/{e.session1}/attend"
        deadline = time.monotonic() + 240
        while True:  # attend is not idempotent by key: after a failed answer, look before trying again
            try:
                r = c.post(url, headers=auth)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            try:
                course = c.get(f"{sched}/v1/courses/{e.course_id}", headers=auth)
                if course.status_code == 200 and course.json().get("attended_sessions", 0) >= 1:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"session 1 of course {e.course_id} not recorded attended")
            time.sleep(0.5)
        call(c, "POST", f"{self.system['outcomes'].url}/v1/episodes/{e.episode_id}/submissions",
             headers=self.bearer(e.person, "patient_app"),
             json={"client_submission_id": f"flt-{e.index}-s1", "instrument": "phq9",
                   "answers": phq9(14, e.item9), "administered_at": (at - timedelta(minutes=1)).isoformat(),
                   "timepoint": "session", "session_number": 1})

    # -- processes and infrastructure ------------------------------------------------------------

    async def wait_exit(self, name: str, timeout: float) -> int | None:
        svc = self.system[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if svc.proc is not None and (rc := svc.proc.poll()) is not None:
                return rc
            await asyncio.sleep(0.1)
        return None

    async def crash_sequence(self, name: str, points: tuple[str, ...], timeout: float) -> None:
        svc = self.system[name]
        self.busy.add(name)
        try:
            await asyncio.to_thread(svc.stop)
            for point in points:
                svc.start({"RAPPORT_CRASH_AT": point}, wait_ready=False)
                rc = await self.wait_exit(name, timeout)
                if rc == EXIT_CODE:
                    self.faults.crash_fired.append((name, point))
                    say(f"  {name}: died at crash point {point}")
                else:
                    self.faults.crash_missed.append((name, point))
                    say(f"  {name}: crash point {point} NOT reached in {timeout:.0f}s (rc {rc})")
                    if rc is None:
                        await asyncio.to_thread(svc.stop)
                    else:
                        self.faults.unexpected_exits.append(f"{name} rc={rc}")
            svc.start(wait_ready=False)
        finally:
            self.busy.discard(name)

    async def supervise(self, stop: asyncio.Event) -> None:
        """A service that died on its own (not at a crash point) is noted and started again."""
        restarted: dict[str, float] = {}
        noted: set[int] = set()
        while not stop.is_set():
            for name, svc in self.system.services.items():
                if name not in self.busy and svc.proc is not None and svc.proc.poll() is not None:
                    rc = svc.proc.returncode
                    first_look = svc.proc.pid not in noted
                    noted.add(svc.proc.pid)
                    if first_look and rc != -9:  # -9: a random SIGKILL of ours (random_kill restarts it)
                        self.faults.unexpected_exits.append(f"{name} rc={rc}")
                        last = next((ln for ln in reversed(svc.tail(40).splitlines()) if "Error" in ln), "")
                        say(f"  {name} exited by itself (rc {rc}: {last.strip()[:160]}): started again")
                    if time.monotonic() - restarted.get(name, 0) < 3:
                        continue  # as an orchestrator would: not in a tight loop while Postgres/Kafka are away
                    restarted[name] = time.monotonic()
                    svc.start(wait_ready=False)
            await asyncio.sleep(0.5)

    async def random_kill(self) -> None:
        candidates = [n for n in SERVICES if n not in self.busy and self.system[n].running()]
        if not candidates:
            return
        name = self.rng.choice(candidates)
        self.system[name].kill()
        self.faults.sigkill += 1
        say(f"  SIGKILL {name}")
        await asyncio.sleep(self.rng.uniform(0.2, 1.5))
        if not self.system[name].running():
            self.system[name].start(wait_ready=False)

    async def kill_postgres(self, pg) -> None:
        wrapped = pg.container.get_wrapped_container()
        wrapped.kill()  # SIGKILL of the container's processes
        self.faults.postgres_kill += 1
        say("  postgres SIGKILLed")
        await asyncio.sleep(self.rng.uniform(2, 5))
        wrapped.start()
        t0 = time.monotonic()
        from rapport_testing.infra import _wait_postgres  # noqa: PLC0415

        await asyncio.to_thread(_wait_postgres, pg.admin_dsn, 90, pg.container)
        say(f"  postgres back in {time.monotonic() - t0:.1f}s")

    async def kill_broker(self, kafka) -> None:
        await asyncio.to_thread(kafka.kill)
        self.faults.broker_kill += 1
        say("  broker SIGKILLed")
        await asyncio.sleep(self.rng.uniform(2, 5))
        took = await asyncio.to_thread(kafka.restart)
        say(f"  broker back in {took:.1f}s")

    async def pause_broker(self, kafka, seconds: float) -> None:
        wrapped = kafka.container.get_wrapped_container()
        wrapped.pause()
        self.faults.broker_pause += 1
        say(f"  broker paused for {seconds:g}s")
        try:
            await asyncio.sleep(seconds)
        finally:
            wrapped.unpause()
        say("  broker unpaused")

    # -- settling and counting -----------------------------------------------------------------

    async def fetch(self, sql: str, *args):
        conn = await asyncpg.connect(self.admin_dsn, timeout=10)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def backlog(self, sim_now: datetime) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in SERVICES:
            [r] = await self.fetch(f"SELECT count(*) AS n FROM {s}.outbox WHERE sent_at IS NULL")
            out[f"{s}.outbox"] = r["n"]
        for s in ("scheduler", "notifier"):
            [r] = await self.fetch(f"SELECT count(*) AS n FROM {s}.timers WHERE fired_at IS NULL AND cancelled_at IS NULL"
                                   " AND failed_at IS NULL AND due_at <= $1", sim_now)
            out[f"{s}.timers_due"] = r["n"]
        [r] = await self.fetch("SELECT count(*) AS n FROM notifier.notifications WHERE status IN ('ready', 'sending')")
        out["notifier.unsent"] = r["n"]
        return {k: v for k, v in out.items() if v}

    async def settle(self, sim_now: datetime, ready, timeout: float) -> bool:
        """Until nothing is left to do (outboxes sent, due timers fired, deliveries finished,
        every group caught up) and ``ready()`` holds; False after ``timeout`` (then counted as is)."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                left = await self.backlog(sim_now)
                if not left:
                    for group, topics in GROUPS:
                        for t in topics:
                            await wait_caught_up(self.bootstrap, group, t, timeout=5)
                    left = await self.backlog(sim_now)
                if not left and await ready():
                    return True
                last = left or "expected effects not all there yet"
            except Exception as exc:  # noqa: BLE001 - not caught up yet / infra coming back
                last = exc
            await asyncio.sleep(1)
        say(f"  did not settle in {timeout:.0f}s: {last}")
        return False


async def count(d: Driver, cohort: list[Episode]) -> tuple[int, int, int, list[str]]:
    """(events, lost, doubled, details) against what the cohort should produce."""
    lost = doubled = 0
    details: list[str] = []
    ids = [uuid.UUID(e.episode_id) for e in cohort if e.episode_id]
    item9 = {uuid.UUID(e.episode_id) for e in cohort if e.episode_id and e.item9}

    def tally(what: str, expected: dict, actual: Counter) -> None:
        nonlocal lost, doubled
        missing = extra = 0
        for k, want in expected.items():
            got = actual.get(k, 0)
            missing += max(0, want - got)
            extra += max(0, got - want)
        extra += sum(v for k, v in actual.items() if k not in expected)
        lost += missing
        doubled += extra
        if missing or extra:
            details.append(f"{what}: {missing} missing, {extra} extra")

    lost += len(cohort) - len(ids)  # an intake that never completed
    per = lambda n: {i: n for i in ids}  # noqa: E731
    q = lambda sql: d.fetch(sql, ids)  # noqa: E731
    tally("courses", per(1), Counter(r["episode_id"] for r in await q(
        "SELECT episode_id FROM scheduler.courses WHERE episode_id = ANY($1)")))
    tally("sessions scheduled", per(SESSIONS), Counter(r["episode_id"] for r in await q(
        "SELECT c.episode_id FROM scheduler.sessions s JOIN scheduler.courses c USING (course_id)"
        " WHERE c.episode_id = ANY($1)")))
    tally("sessions attended", per(1), Counter(r["episode_id"] for r in await q(
        "SELECT c.episode_id FROM scheduler.sessions s JOIN scheduler.courses c USING (course_id)"
        " WHERE c.episode_id = ANY($1) AND s.status = 'attended'")))
    tally("scores (submissions)", per(2), Counter(r["episode_id"] for r in await q(
        "SELECT episode_id FROM outcomes.submissions WHERE episode_id = ANY($1)")))
    tally("alerts", {i: 1 for i in item9}, Counter(r["episode_id"] for r in await q(
        "SELECT episode_id FROM outcomes.alerts WHERE episode_id = ANY($1)")))

    notes = await q("SELECT * FROM notifier.notifications WHERE episode_id = ANY($1)")
    expected_notes = {**{(i, "course_planned"): 1 for i in ids}, **{(i, "session_reminder"): SESSIONS for i in ids},
                      **{(i, "safety_alert"): 1 for i in item9}}
    tally("notifications", expected_notes, Counter((r["episode_id"], r["kind"]) for r in notes))
    tally("deliveries per (cause, recipient, channel, kind, about)", {}, Counter(
        {k: c - 1 for k, c in Counter((r["cause_event_id"], r["recipient_ref"], r["channel"], r["kind"],
                                       r["params"] if isinstance(r["params"], str) else json.dumps(r["params"], sort_keys=True))
                                      for r in notes).items() if c > 1}))
    unfinished = [r for r in notes if not (r["status"] == "delivered" or (r["status"] == "failed" and r["channel"] == "none"))]
    if unfinished:
        lost += len(unfinished)
        details.append(f"deliveries not delivered: {Counter((r['status'], r['last_error']) for r in unfinished)}")
    no_channel = sum(r["channel"] == "none" for r in notes)
    emailed = {f"<{r['notification_id']}@rapport.notifier>" for r in notes if r["status"] == "delivered" and r["channel"] == "email"}
    arrivals = Counter(m["Message-ID"] for m in d.smtp.messages)
    tally("e-mails at the SMTP server (by Message-ID)", dict.fromkeys(emailed, 1),
          Counter({k: v for k, v in arrivals.items() if k in emailed}))
    if no_channel:
        details.append(f"(note: {no_channel} reminders recorded failed/no_channel: the contact arrived after them)")

    # Distinct events on the topics, per episode and type, against the same expectations.
    records = [r for t in SHARED_TOPICS for r in await read_all(d.bootstrap, t)]
    want_ids = {str(i) for i in ids}
    events: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in records:
        if r.headers.get("ce_subject") in want_ids:
            events[(r.headers["ce_subject"], r.headers["ce_type"])].add(r.headers["ce_id"])
    n_events = sum(len(v) for v in events.values())
    by_type = Counter()
    for (ep, t), v in events.items():
        by_type[t] += len(v)
    n9 = len(item9)
    n = len(ids)
    expected_types = {
        "rapport.intake.completed.v1": n, "rapport.course.planned.v1": n, "rapport.session.scheduled.v1": SESSIONS * n,
        "rapport.session.attended.v1": n, "rapport.score.submitted.v1": 2 * n, "rapport.alert.raised.v1": n9,
        "rapport.notification.delivered.v1": (1 + SESSIONS) * n + n9 - no_channel,
        "rapport.notification.failed.v1": no_channel,
    }
    for t, want in expected_types.items():
        got = by_type.get(t, 0)
        if got != want:
            details.append(f"events {t}: {got} distinct, expected {want}")
            lost += max(0, want - got)
            doubled += max(0, got - want)
    others = {t: c for t, c in by_type.items() if t not in expected_types}
    if others:
        details.append(f"(other event types, not counted against: {others})")

    # Nothing parked, nothing left unsent, nothing dead-lettered.
    for s in SERVICES:
        [r] = await d.fetch(f"SELECT count(*) FILTER (WHERE sent_at IS NULL) AS unsent,"
                            f" count(*) FILTER (WHERE parked_at IS NOT NULL AND sent_at IS NULL) AS parked FROM {s}.outbox")
        if r["unsent"] or r["parked"]:
            lost += r["unsent"]
            details.append(f"{s}.outbox: {r['unsent']} unsent, {r['parked']} parked")
    for s in ("scheduler", "notifier"):
        [r] = await d.fetch(f"SELECT count(*) AS n FROM {s}.timers WHERE parked_at IS NOT NULL AND fired_at IS NULL"
                            " AND cancelled_at IS NULL")
        if r["n"]:
            lost += r["n"]
            details.append(f"{s}.timers: {r['n']} parked")
    from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415

    admin = AIOKafkaAdminClient(bootstrap_servers=d.bootstrap)
    await admin.start()
    try:
        dlqs = sorted(t for t in await admin.list_topics() if ".dlq." in t)
    finally:
        await admin.close()
    for t in dlqs:
        dead = await read_all(d.bootstrap, t)
        if dead:
            lost += len(dead)
            details.append(f"{t}: {len(dead)} dead-lettered: "
                           f"{Counter((r.headers.get('dlq_reason'), (r.headers.get('dlq_error') or '')[:120]) for r in dead)}")
    return n_events, lost, doubled, details


# ---------------------------------------------------------------------------------------------- the run

@dataclass
class Options:
    episodes: int = 200
    pause_s: float = 30.0
    kills: int = 12
    interval_s: float = 1.2       # between intakes while faults are being injected
    crash_timeout_s: float = 60.0
    settle_timeout_s: float = 600.0
    seed: int | None = None


@dataclass
class Result:
    events: int
    faults: Faults
    lost: int
    doubled: int
    details: list[str]
    seconds: float

    @property
    def line(self) -> str:
        return f"events {self.events}, faults: {self.faults.line()}, lost {self.lost}, doubled {self.doubled}"

    @property
    def complete(self) -> bool:
        f = self.faults
        return (not f.crash_missed and {p for _, p in f.crash_fired} >= set(ALL_POINTS) and f.sigkill > 0
                and f.postgres_kill > 0 and f.broker_kill > 0 and f.broker_pause > 0)


async def run(pg, kafka, opts: Options, log_dir: Path) -> Result:
    started = time.monotonic()
    rng = random.Random(opts.seed)
    passwords = {name: secrets.token_urlsafe(12) for name in SERVICES}
    for name in SERVICES:
        await db.provision(pg.admin_dsn, "rapport", name, passwords[name])
    sim_now = datetime.now(timezone.utc).replace(microsecond=0)
    await publish_tick(kafka.bootstrap, sim_now)  # simulated time starts now
    smtp = SmtpServer().start()
    env = {
        "RAPPORT_SMTP_HOST": "127.0.0.1", "RAPPORT_SMTP_PORT": str(smtp.port), **smtp.status_env(),
        "RAPPORT_CLOCK": "simulated", "RAPPORT_TIMER_POLL_INTERVAL_S": "0.5", "RAPPORT_SENDER_POLL_INTERVAL_S": "0.5",
        # every session's reminder at once (the lead is longer than any course); no questionnaire requests
        "RAPPORT_SESSION_REMINDER_LEAD": "365d", "RAPPORT_QUESTIONNAIRE_LEAD": "0s",
        "RAPPORT_SEND_TIMEOUT_S": "5", "RAPPORT_RETRY_BASE_S": "0.5", "RAPPORT_RETRY_MAX_S": "5",
    }
    system = build_system(admin_dsn=pg.admin_dsn, kafka_bootstrap=kafka.bootstrap, passwords=passwords,
                          jwks=str(DEV_KEYS / "jwks.json"), log_dir=log_dir / "services", extra_env=env)
    tokens = TokenIssuer.from_file(DEV_KEYS / "issuer.jwk.json", org=ORG)
    d = Driver(system, tokens, kafka.bootstrap, pg.admin_dsn, smtp)
    d.rng = rng
    cohort = make_cohort(opts.episodes, uuid.uuid4().hex[:6])
    stop_sup, stop_intakes = asyncio.Event(), threading.Event()
    try:
        await asyncio.to_thread(system.start_all)
        say(f"services up; logs in {log_dir}/services")
        await asyncio.to_thread(d.register_clinicians, cohort)
        supervisor = asyncio.create_task(d.supervise(stop_sup))

        # Stage 1+2: intakes paced through the faults.
        released = [min(len(cohort), 3)]
        intakes = asyncio.create_task(asyncio.to_thread(d.intakes, cohort, released, stop_intakes))

        async def feed() -> None:
            while released[0] < len(cohort):
                await asyncio.sleep(opts.interval_s)
                released[0] += 1
        feeder = asyncio.create_task(feed())

        say(f"stage 1: every crash point ({sum(map(len, CRASH_PLAN.values()))} in four services, in parallel)")
        await asyncio.gather(*(d.crash_sequence(n, pts, opts.crash_timeout_s) for n, pts in CRASH_PLAN.items()))

        say("stage 2: random SIGKILLs, postgres killed, broker killed, broker paused")
        infra = [lambda: d.kill_postgres(pg), lambda: d.kill_broker(kafka), lambda: d.pause_broker(kafka, opts.pause_s)]
        kills = [d.random_kill] * max(opts.kills - 2, 1)  # two more in stage 3
        plan: list = []
        for i, k in enumerate(kills):  # the infrastructure faults spread among the random kills
            plan.append(k)
            if infra and (i + 1) * (len(infra) + 1) >= len(kills) * (4 - len(infra)):
                plan.append(infra.pop(0))
        plan += infra
        for step in plan:
            await asyncio.sleep(rng.uniform(0.5, 3))
            await step()
        released[0] = len(cohort)
        feeder.cancel()
        await intakes
        say(f"all {len(cohort)} intakes completed over HTTP")

        async def planned_all() -> bool:
            ids = [uuid.UUID(e.episode_id) for e in cohort]
            [r] = await d.fetch("SELECT count(*) AS n FROM scheduler.courses WHERE episode_id = ANY($1)", ids)
            [s] = await d.fetch("SELECT count(*) AS n FROM notifier.notifications WHERE episode_id = ANY($1)"
                                " AND kind = 'session_reminder'", ids)
            return r["n"] >= len(ids) and s["n"] >= SESSIONS * len(ids)
        await d.settle(sim_now, planned_all, opts.settle_timeout_s)

        # Stage 3: time moves past every first session; each is attended and scored over HTTP.
        rows = await d.fetch("SELECT c.episode_id, c.course_id, s.session_id, s.starts_at FROM scheduler.courses c"
                             " JOIN scheduler.sessions s USING (course_id) WHERE s.number = 1 AND c.episode_id = ANY($1)",
                             [uuid.UUID(e.episode_id) for e in cohort])
        by_ep = {str(r["episode_id"]): r for r in rows}
        for e in cohort:
            if e.episode_id in by_ep:
                e.course_id, e.session1 = str(by_ep[e.episode_id]["course_id"]), str(by_ep[e.episode_id]["session_id"])
        t1 = max(r["starts_at"] for r in rows) + timedelta(minutes=5)
        sim_now = t1
        await publish_tick(kafka.bootstrap, t1)
        say(f"stage 3: simulated time → {t1.isoformat()} (every first session started); attending and scoring session 1")
        attendees = [e for e in cohort if e.course_id]

        def attend_all() -> None:
            with httpx.Client(timeout=20) as c:
                for e in attendees:
                    d.attend_and_submit(c, e, t1)
        work = asyncio.create_task(asyncio.to_thread(attend_all))
        await d.crash_sequence(*LATE_CRASH[:1], (LATE_CRASH[1],), opts.crash_timeout_s)
        for step in [d.random_kill, lambda: d.kill_postgres(pg), d.random_kill]:
            if work.done():
                break
            await asyncio.sleep(rng.uniform(0.5, 2))
            await step()
        await work
        say(f"session 1 attended and scored for {len(attendees)} courses")

        async def scored_all() -> bool:
            ids = [uuid.UUID(e.episode_id) for e in cohort]
            [r] = await d.fetch("SELECT count(*) AS n FROM outcomes.submissions WHERE episode_id = ANY($1)", ids)
            return r["n"] >= 2 * len(ids)
        await d.settle(sim_now, scored_all, opts.settle_timeout_s)
        stop_sup.set()
        await supervisor
        events, lost, doubled, details = await count(d, cohort)
        return Result(events, d.faults, lost, doubled, details, time.monotonic() - started)
    finally:
        stop_sup.set()
        stop_intakes.set()
        await asyncio.to_thread(system.stop_all)
        smtp.stop()


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="bench/faults.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--pause", type=float, default=30.0, help="seconds the broker stays paused (default 30)")
    p.add_argument("--kills", type=int, default=12, help="random SIGKILLs of a service (default 12)")
    p.add_argument("--interval", type=float, default=None,
                   help="seconds between intakes while faults are injected (default: spread over ~4 min)")
    p.add_argument("--seed", type=int, default=None)
    a = p.parse_args(argv)
    if a.episodes < 1:
        p.error("--episodes must be at least 1")
    interval = a.interval if a.interval is not None else max(0.3, min(6.0, 240 / a.episodes))
    return Options(episodes=a.episodes, pause_s=a.pause, kills=a.kills, interval_s=interval, seed=a.seed)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    from stack import SetupError, log_to_file, running_stack  # noqa: PLC0415

    log_dir = Path(tempfile.mkdtemp(prefix="rapport-faults-"))
    log_to_file(log_dir / "faults.log")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    say(f"fault suite: {opts.episodes} episodes, broker pause {opts.pause_s:g}s, {opts.kills} random SIGKILLs; logs in {log_dir}")
    try:
        with running_stack() as stack:
            if stack.postgres.container is None or stack.kafka.container is None:
                print("the fault suite kills Postgres and Kafka: it needs its own containers "
                      "(unset RAPPORT_TEST_POSTGRES_DSN / RAPPORT_TEST_KAFKA_BOOTSTRAP)", file=sys.stderr)
                return 2
            result = asyncio.run(run(stack.postgres, stack.kafka, opts, log_dir))
    except SetupError as exc:
        print(f"cannot run the fault suite: {exc}", file=sys.stderr)
        return 2
    for line in result.details:
        print(f"  {line}")
    if result.faults.crash_missed:
        print(f"  crash points not reached: {result.faults.crash_missed}")
    if result.faults.unexpected_exits:
        print(f"  services that exited by themselves: {result.faults.unexpected_exits}")
    points = {p for _, p in result.faults.crash_fired}
    print(f"(commit {commit}, {os.cpu_count()} cores, {result.seconds:.0f} s; deaths at crash points: "
          f"{len(result.faults.crash_fired)}, covering {len(points)} of the {len(ALL_POINTS)} declared points)")
    print(result.line)
    return 0 if result.lost == 0 and result.doubled == 0 and result.complete else 1


if __name__ == "__main__":
    sys.exit(main())
