"""Issue 15, "Done when": a course per condition (depression, anxiety, eating disorders, substance
use) through the four services as processes over real Kafka and Postgres, in simulated time.

Intake completes the referral over HTTP (its target condition, PHQ-9 and GAD-7 baselines and the
condition's own: EDE-Q, AUDIT); the scheduler plans the 8-session brief course (ipt-brief: the
shortest template); the notifier sends each questionnaire request through the loopback SMTP server
at its time (48 h before the session), and the patient answers exactly what it asked for over
outcomes' HTTP API; the clinician records the initial checklist and each attendance on the
scheduler; the last attendance ends the course and outcomes evaluates it. Each test shows:
- the requests followed domain.md 3.4 (the notifier's delivery log, ``instruments`` per session),
  PHQ-9 (its item 9 the routine risk screen) first in every one of them;
- a reliable deterioration of a measure with a criterion for that programme (PHQ-9 for depression
  and eating disorders, GAD-7 for anxiety and substance use) is a review alert whose review notice
  the notifier delivered to the clinician; the condition's own measure (EDE-Q, AUDIT) has "no
  reliable-change criterion", said explicitly, so its rise alone never is;
- the end-of-course classification, with the condition-specific measure in ``condition_measures``
  (none for depression and anxiety, whose measures are the pair) and which instruments the schedule
  expected and which are missing (``measurement``; the anxiety patient skips the mid-course WSAS).

One system for the module: the scheduler, the notifier and outcomes are restarted once on a clock
topic of this module's own, which the tests move forward (each course starts where the last one
ended); intake keeps the real clock (its referral and baselines come first, before any session).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import asyncpg
import httpx
import jsonschema
import pytest

from rapport_shared.clock import publish_tick
from rapport_shared.contracts.outcomes import OutcomeEvaluatedV1
from rapport_shared.private_contacts import ContactRecordV1
from rapport_shared.topics import COURSE, OUTCOMES
from rapport_testing.flows import gad7, intake_completion, phq9
from rapport_testing.kafka import wait_for_records
from rapport_testing.notifier import SmtpServer, notifier_env, publish_contact, until
from rapport_tools.contracts.export import SCHEMA_DIR

pytestmark = pytest.mark.e2e

CHECKLIST = ("diagnosis", "sick_role_explained", "inventory_complete", "formulation_agreed", "focus_confirmed",
             "contract_set")
EDEQ_ITEMS = [*range(1, 13), *range(19, 29)]
EVERY = ["phq9", "gad7"]  # before every session of every programme (PHQ-9 first: the risk screen)
WSAS = {1: 3, 2: 3, 3: 2, 4: 2, 5: 2}  # 12


def edeq(value: int) -> dict[str, int]:
    return {str(n): value for n in EDEQ_ITEMS}  # global = value


def audit(total: int) -> dict[str, int]:
    """AUDIT answers with this total: items 9-10 take 0, 2 or 4; items 1-8 up to 4 each."""
    tail = min(8, total - total % 2) if total >= 2 else 0
    head, out = total - tail, {}
    for n in range(1, 9):
        out[str(n)] = min(4, head)
        head -= out[str(n)]
    assert head == 0
    out["9"], out["10"] = min(4, tail), tail - min(4, tail)
    return out


@dataclass
class Programme:
    """One condition's course: what intake collects, what the notifier must ask before each
    session (domain.md 3.4, n = 8: mid-course is session 4), and the scores the patient gives."""

    condition: str
    baseline: dict[str, dict]
    asked: dict[int, list[str]]
    scores: dict[str, dict[int, dict]]  # instrument → session → answers (the last given value holds on)
    deteriorates: str  # the measure with a criterion whose rise is a reliable deterioration
    condition_measure: str | None = None
    skip: dict[int, tuple[str, ...]] = field(default_factory=dict)  # answers the patient leaves out

    def answers(self, code: str, session: int) -> dict:
        given = self.scores.get(code, {})
        return given[max(k for k in given if k <= session)] if given else WSAS


def asked(**extra: list[str]) -> dict[int, list[str]]:
    """EVERY before every session; WSAS at baseline (1), mid-course (4) and end (8); ``extra``
    (session number as ``s4``) after them."""
    out = {k: [*EVERY, *(["wsas"] if k in (1, 4, 8) else [])] for k in range(1, 9)}
    for key, codes in extra.items():
        out[int(key[1:])] += codes
    return out


DEPRESSION = Programme(
    "depression", {"phq9": phq9(14), "gad7": gad7(9)}, asked(),  # HAM-D-17 is clinician-rated: never asked
    {"phq9": {1: phq9(14), 3: phq9(21)}, "gad7": {1: gad7(9)}}, deteriorates="phq9")
ANXIETY = Programme(
    "anxiety", {"phq9": phq9(8), "gad7": gad7(10)}, asked(),
    {"phq9": {1: phq9(8)}, "gad7": {1: gad7(10), 3: gad7(15)}}, deteriorates="gad7", skip={4: ("wsas",)})
EATING_DISORDER = Programme(
    # EDE-Q every 4th session and at mid-course and the end; at session 1 the intake's is the baseline.
    "eating_disorder", {"phq9": phq9(12), "gad7": gad7(8), "edeq6": edeq(2)}, asked(s4=["edeq6"], s8=["edeq6"]),
    {"phq9": {1: phq9(12), 3: phq9(19)}, "gad7": {1: gad7(8)}, "edeq6": {4: edeq(4), 8: edeq(5)}},
    deteriorates="phq9", condition_measure="edeq6")
SUBSTANCE_USE = Programme(
    # AUDIT at baseline (the intake's) and the end only: its items ask about the past year.
    "substance_use", {"phq9": phq9(8), "gad7": gad7(6), "audit": audit(10)}, asked(s8=["audit"]),
    {"phq9": {1: phq9(8)}, "gad7": {1: gad7(6), 3: gad7(11)}, "audit": {8: audit(32)}},
    deteriorates="gad7", condition_measure="audit")


class World:
    """The system on this module's simulated clock, and the calls a course needs."""

    def __init__(self, system, kafka, tokens, service_dsns, smtp: SmtpServer, topic: str, now: datetime) -> None:
        self.system, self.kafka, self.tokens, self.dsns, self.smtp = system, kafka, tokens, service_dsns, smtp
        self.topic, self.now = topic, now
        self.admin = self.bearer("admin", "admin")
        self.http = httpx.AsyncClient(timeout=30)

    def bearer(self, sub: str, *roles: str) -> dict:
        return {"Authorization": f"Bearer {self.tokens.issue(sub, roles)}"}

    def url(self, service: str, path: str) -> str:
        return f"{self.system[service].url}{path}"

    async def advance_to(self, t: datetime) -> None:
        """Move simulated time to ``t`` (never back); wait until the scheduler's clock shows it."""
        if t > self.now:
            self.now = t
            await publish_tick(self.kafka.bootstrap, t, self.topic)
        deadline = time.monotonic() + 30
        while True:
            r = await self.http.get(self.url("scheduler", "/v1/clock"), headers=self.bearer("op", "operator"))
            if datetime.fromisoformat(r.json()["now"]) >= self.now:
                return
            assert time.monotonic() < deadline, f"scheduler clock stuck, want {self.now}"
            await asyncio.sleep(0.05)

    async def notifier_row(self, sql: str, *args):
        conn = await asyncpg.connect(self.dsns["notifier"])
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    async def deliveries(self, episode: str, kind: str) -> list[dict]:
        r = await self.http.get(self.url("notifier", "/v1/deliveries"), headers=self.admin,
                                params={"episode_id": episode, "kind": kind})
        assert r.status_code == 200, r.text
        return r.json()["deliveries"]

    async def submit(self, person: str, episode: str, code: str, answers: dict, session: int) -> dict:
        """As the patient's app, at the simulated now. Outcomes may lag a little (its clock a tick
        behind: a time in its future is 422 administered_at; the intake event not read yet: 404),
        so that is retried briefly."""
        body = {"client_submission_id": f"app-{uuid.uuid4().hex}", "instrument": code, "answers": answers,
                "administered_at": self.now.isoformat(), "session_number": session}
        deadline = time.monotonic() + 20
        while True:
            r = await self.http.post(self.url("outcomes", f"/v1/episodes/{episode}/submissions"),
                                     headers=self.bearer(person, "patient_app"), json=body)
            lagging = r.status_code == 404 or (r.status_code == 422 and r.json().get("field") == "administered_at")
            if not lagging or time.monotonic() > deadline:
                assert r.status_code == 201, r.text
                return r.json()
            await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
async def world(system, kafka, tokens, service_dsns):
    smtp = SmtpServer().start()
    topic = f"rapport.clock.courses-{uuid.uuid4().hex[:8]}"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    await publish_tick(kafka.bootstrap, now, topic)
    sim = {"RAPPORT_CLOCK": "simulated", "RAPPORT_CLOCK_TOPIC": topic, "RAPPORT_TIMER_POLL_INTERVAL_S": "0.2"}
    try:
        system.restart("scheduler", sim)
        system.restart("outcomes", sim)
        system.restart("notifier", notifier_env(smtp, RAPPORT_CLOCK_TOPIC=topic))
        w = World(system, kafka, tokens, service_dsns, smtp, topic, now)
        yield w
        await w.http.aclose()
    finally:
        for name in ("scheduler", "outcomes", "notifier"):  # back to the system clock for the other e2e tests
            system.restart(name)
        smtp.stop()


def of(episode: str, ce_type: str):
    return lambda r: r.headers.get("ce_subject") == episode and r.headers.get("ce_type") == ce_type


def partner_view(record) -> dict:
    """The record's data against its committed JSON Schema, as a partner reads it."""
    schema = json.loads((SCHEMA_DIR / f"{record.headers['ce_type']}.json").read_text())
    data = json.loads(record.value)
    jsonschema.validate(data, schema)
    return data


async def run_course(w: World, p: Programme) -> dict:
    """The course, session by session; returns what the test asserts on."""
    tag = uuid.uuid4().hex[:8]
    clin, person = f"clin-pc-{tag}", f"P-pc-{tag}"
    mail = f"{person}@patients.test"
    clinician = w.bearer(clin, "clinician")
    r = await w.http.put(w.url("notifier", f"/v1/clinicians/{clin}"), headers=w.admin,
                         json={"email": f"{clin}@clinic.test", "language": "en", "channels": ["email"]})
    assert r.status_code == 200, r.text
    await publish_contact(w.kafka.bootstrap, ContactRecordV1(
        person_id=person, email=mail, channel_consent={"email": True}, preferred_channel="email", updated_at=w.now))

    # Simulated time ahead of the real clock intake keeps: every session and score comes after the
    # referral and its baselines (a score dated before its baseline is refused).
    await w.advance_to(max(w.now, datetime.now(timezone.utc).replace(microsecond=0)) + timedelta(minutes=1))

    # Intake: the referral for this condition, its baselines, the brief template, this clinician.
    intake = w.bearer(f"ic-{tag}", "intake_clinician")
    r = await w.http.post(w.url("intake", "/v1/referrals"), headers=intake, json={
        "person_id": person, "referral_source": "gp", "target_condition": p.condition})
    assert r.status_code == 201, r.text
    episode = r.json()["episode_id"]
    completion = intake_completion(clin, template_id="ipt-brief")
    completion["baseline"] = [{"instrument": code, "answers": a} for code, a in p.baseline.items()]
    r = await w.http.post(w.url("intake", f"/v1/referrals/{episode}/complete"), headers=intake, json=completion)
    assert r.status_code in (200, 201), r.text

    [planned] = await wait_for_records(w.kafka.bootstrap, COURSE, of(episode, "rapport.course.planned.v1"))
    plan = json.loads(planned.value)
    course_id, n = plan["course_id"], plan["contracted_sessions"]
    sessions = sorted(plan["sessions"], key=lambda s: s["number"])
    assert n == 8 and [s["number"] for s in sessions] == list(range(1, 9))
    number_of = {s["session_id"]: s["number"] for s in sessions}
    await until(lambda: w.notifier_row("SELECT target_condition = $2 AND contracted_sessions = 8 FROM episodes"
                                       " WHERE episode_id = $1", uuid.UUID(episode), p.condition),
                what="the notifier knowing the episode's target condition and contract")
    await until(lambda: w.notifier_row("SELECT count(*) FROM patients WHERE person_id = $1", person),
                what="the patient's contact")

    requested: dict[int, list[str]] = {}
    scored: list[dict] = []
    for s in sessions:
        k, starts = s["number"], datetime.fromisoformat(s["starts_at"])
        # The questionnaire request, at its time (48 h before the session; at once if that has passed).
        await w.advance_to(max(w.now, starts - timedelta(hours=48) + timedelta(minutes=1)))
        async def request_for(k: int = k) -> list[dict]:
            return [d for d in await w.deliveries(episode, "questionnaire_request") if number_of[_session(d)] == k]

        [request] = await until(request_for, timeout=30, what=f"the questionnaire request before session {k}")
        requested[k] = request["instruments"]
        for code in request["instruments"]:
            if code not in p.skip.get(k, ()):
                scored.append(await w.submit(person, episode, code, p.answers(code, k), k))
        # The session: its start reached, the checklist done at session 2 (the end of the initial phase).
        await w.advance_to(max(w.now, starts + timedelta(minutes=5)))
        if k == 2:
            for item in CHECKLIST:
                r = await w.http.put(w.url("scheduler", f"/v1/courses/{course_id}/checklist/{item}"),
                                     headers=clinician, json={})
                assert r.status_code == 200, r.text
        r = await w.http.post(w.url("scheduler", f"/v1/courses/{course_id}/sessions/{s['session_id']}/attend"),
                              headers=clinician)
        assert r.status_code == 200, r.text

    [evaluated] = await wait_for_records(w.kafka.bootstrap, OUTCOMES, of(episode, "rapport.outcome.evaluated.v1"),
                                         timeout=60)
    evaluation = partner_view(evaluated)
    OutcomeEvaluatedV1.model_validate(evaluation)
    raised = [{**partner_view(rec), "ce_id": rec.headers["ce_id"]} for rec in await wait_for_records(
        w.kafka.bootstrap, OUTCOMES, of(episode, "rapport.alert.raised.v1"))]
    deterioration = next(a for a in raised if a["reason_code"] == "reliable_deterioration")
    # Its review notice, delivered to the clinician by the notifier (caused by that alert event).
    async def notices_of_it() -> list[dict]:
        return [d for d in await w.deliveries(episode, "review_notice")
                if d["cause_event_id"] == deterioration["ce_id"] and d["status"] == "delivered"]

    notices = await until(notices_of_it, timeout=30, what="the review notice of the reliable deterioration delivered")
    r = await w.http.get(w.url("outcomes", f"/v1/episodes/{episode}/outcome"), headers=clinician)
    assert r.status_code == 200, r.text
    return {"episode": episode, "clinician": clin, "requested": requested, "scored": scored, "raised": raised,
            "deterioration": deterioration, "notices": notices, "evaluation": evaluation, "outcome": r.json()}


def _session(delivery: dict) -> str:
    """The session a questionnaire request is for (its idempotency key ends in ``session:<id>``)."""
    return delivery["idempotency_key"].rsplit("session:", 1)[1]


def check_course(result: dict, p: Programme) -> None:
    """What every programme's course shows."""
    # 1. The questionnaire requests followed domain.md 3.4; PHQ-9 (item 9) first before every session.
    assert result["requested"] == p.asked
    assert all(codes[0] == "phq9" for codes in result["requested"].values())
    # 2. A reliable deterioration of a measure with a criterion: a review alert, its notice delivered.
    det = result["deterioration"]
    assert (det["kind"], det["urgency"], det["instrument"], det["session_number"], det["clinician_id"]) == (
        "review", "routine", p.deteriorates, 3, result["clinician"])
    assert {a["instrument"] for a in result["raised"] if a["reason_code"] == "reliable_deterioration"} == {
        p.deteriorates}
    assert not [a for a in result["raised"] if a["kind"] == "safety"]  # item 9 was 0 throughout
    assert result["notices"][0]["recipient_ref"] == f"clinician:{result['clinician']}"
    rise = next(s for s in result["scored"] if s["instrument"] == p.deteriorates and s["session_number"] == 3)
    assert (rise["reliable_change"], rise["reliable_change_criterion"], rise["alert_ids"]) == (
        "deteriorated", "threshold", [det["alert_id"]])
    # 3. The end-of-course classification: the pair decides it, the deterioration is in it.
    ev = result["evaluation"]
    assert ev["paired_measures"] == ["phq9", "gad7"] and ev["finished_course"] is True
    assert (ev["reliable_deterioration"], ev["reliable_improvement"]) == (True, False)
    assert (ev["instruments"][p.deteriorates]["reliable_change"],
            ev["instruments"][p.deteriorates]["reliable_change_criterion"]) == ("deteriorated", "threshold")
    assert ev["instruments"]["wsas"]["reliable_change_criterion"] == "jacobson_truax"
    outcome = result["outcome"]
    assert (outcome["reliable_deterioration"], outcome["condition_measures"]) == (True, ev["condition_measures"])
    # 4. What the schedule expected and what is missing, in the event and the outcome view.
    assert outcome["measurement"] == ev["measurement"]
    assert ev["measurement"]["sessions"] == list(range(1, 9)) and ev["measurement"]["contracted_sessions"] == 8
    missing = {code: [k for k, skipped in p.skip.items() if code in skipped] for code in EVERY + ["wsas"]}
    for code, m in ev["measurement"]["instruments"].items():
        assert m["missing_sessions"] == missing.get(code, []), code
    assert ev["measurement"]["missing"] == [c for c, m in missing.items() if m]


async def test_depression_course(world) -> None:
    result = await run_course(world, DEPRESSION)
    check_course(result, DEPRESSION)
    ev = result["evaluation"]
    assert ev["condition_measures"] == {}  # depression's measures are the pair
    assert ev["instruments"]["phq9"]["baseline_total"] == 14 and ev["instruments"]["phq9"]["final_total"] == 21
    assert set(ev["measurement"]["instruments"]) == {"phq9", "gad7", "wsas"}  # HAM-D-17 optional: never expected


async def test_anxiety_course(world) -> None:
    result = await run_course(world, ANXIETY)
    check_course(result, ANXIETY)
    ev = result["evaluation"]
    assert ev["condition_measures"] == {}
    assert ev["instruments"]["gad7"]["change"] == 5 and ev["instruments"]["phq9"]["reliable_change"] == (
        "no_reliable_change")
    # The mid-course WSAS the patient left out is named, with its session.
    assert ev["measurement"]["missing"] == ["wsas"]
    assert ev["measurement"]["instruments"]["wsas"] == {"expected": 3, "received": 2, "missing_sessions": [4]}


async def test_eating_disorder_course(world) -> None:
    result = await run_course(world, EATING_DISORDER)
    check_course(result, EATING_DISORDER)
    edeq6 = result["evaluation"]["condition_measures"]["edeq6"]
    # EDE-Q rose 2 → 5: reported beside the pair as a raw change, with no reliable-change criterion.
    assert (edeq6["status"], edeq6["reliable_change_criterion"], edeq6["reliable_change_threshold"]) == (
        "paired", "none", None)
    assert (edeq6["baseline_total"], edeq6["final_total"], edeq6["change"], edeq6["reliable_change"]) == (
        2.0, 5.0, 3.0, None)
    assert [s["reliable_change_criterion"] for s in result["scored"] if s["instrument"] == "edeq6"] == ["none", "none"]
    assert not [a for a in result["raised"] if a["instrument"] == "edeq6"]  # the review comes from the pair
    assert result["evaluation"]["measurement"]["instruments"]["edeq6"] == {
        "expected": 3, "received": 3, "missing_sessions": []}  # 1 (the intake's), 4 and 8
    assert result["outcome"]["instruments"]["edeq6"]["reliable_change_criterion"] == "none"


async def test_substance_use_course(world) -> None:
    result = await run_course(world, SUBSTANCE_USE)
    check_course(result, SUBSTANCE_USE)
    audit_outcome = result["evaluation"]["condition_measures"]["audit"]
    # AUDIT 10 → 32: a raw change only, "no reliable-change criterion", never a silent null.
    assert (audit_outcome["status"], audit_outcome["reliable_change_criterion"], audit_outcome["change"],
            audit_outcome["reliable_change"]) == ("paired", "none", 22.0, None)
    [end_audit] = [s for s in result["scored"] if s["instrument"] == "audit"]
    assert (end_audit["session_number"], end_audit["reliable_change"], end_audit["alert_ids"]) == (8, None, [])
    assert not [a for a in result["raised"] if a["instrument"] == "audit"]  # the review comes from the pair
    assert result["evaluation"]["measurement"]["instruments"]["audit"] == {
        "expected": 2, "received": 2, "missing_sessions": []}  # the intake's baseline and the end
