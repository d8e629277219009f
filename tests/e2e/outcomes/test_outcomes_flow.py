"""Issue 5 end to end: the four services as processes over real Kafka and Postgres.

intake completed with baseline PHQ-9 18 and GAD-7 12 → weekly submissions → one with item 9 = 1 →
rapport.alert.raised.v1 → resolved over HTTP → course ended → rapport.outcome.evaluated.v1 =
reliable recovery (last PHQ-9 4, GAD-7 5). Every event is read by a plain aiokafka consumer and
validated against the committed schemas, as a partner would.

The scheduler does not emit session attendance or course end yet, so this test publishes those
rapport.course events itself, as properly encoded CloudEvents keyed by the episode.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from rapport_shared import envelope
from rapport_shared.contracts.course import CourseEndedV1, SessionAttendedV1
from rapport_testing.fixtures import OTHER_ORG
from rapport_testing.flows import gad7, intake_completion, phq9
from rapport_testing.kafka import read_all, wait_for_records, validate_partner_view
from rapport_shared.topics import COURSE, OUTCOMES

pytestmark = pytest.mark.e2e

PHQ9_18 = {1: 2, 2: 2, 3: 2, 4: 2, 5: 2, 6: 2, 7: 3, 8: 3, 9: 0}
GAD7_12 = {1: 2, 2: 2, 3: 2, 4: 2, 5: 2, 6: 1, 7: 1}


def of(episode: str, ce_type: str | None = None):
    return lambda r: r.headers.get("ce_subject") == episode and (ce_type is None or r.headers.get("ce_type") == ce_type)


def now() -> datetime:
    return datetime.now(timezone.utc)


class CourseDriver:
    """Publishes the rapport.course events the scheduler does not emit yet."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)

    async def __aenter__(self) -> "CourseDriver":
        await self.producer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.producer.stop()

    async def publish(self, data) -> None:
        event = envelope.new_event(type=data.event_type, source="/rapport/test-driver", subject=str(data.episode_id),
                                   data=data, time=now())
        rec = envelope.encode(event)
        await self.producer.send_and_wait(data.topic, value=rec.value, key=rec.key,
                                          headers=[(k, v.encode()) for k, v in rec.headers.items()])


async def test_episode_with_safety_alert_ends_in_reliable_recovery(system, kafka, tokens):
    clinician_id = f"clin-t{uuid.uuid4().hex[:8]}"
    intake_auth = {"Authorization": f"Bearer {tokens.issue('ic-1', ['intake_clinician'])}"}
    person = f"P-t{uuid.uuid4().hex[:12]}"
    app = {"Authorization": f"Bearer {tokens.issue(person, ['patient_app'])}"}  # the patient's app: sub = person id
    clinician = {"Authorization": f"Bearer {tokens.issue(clinician_id, ['clinician'])}"}
    outcomes_url = system["outcomes"].url
    http = httpx.Client(timeout=30)

    # 1. Intake completes with baseline PHQ-9 18 and GAD-7 12.
    r = http.post(f"{system['intake'].url}/v1/referrals", headers=intake_auth, json={
        "person_id": person, "referral_source": "gp", "target_condition": "depression"})
    r.raise_for_status()
    episode = r.json()["episode_id"]
    completion = intake_completion(clinician_id)
    completion["baseline"] = [{"instrument": code, "answers": answers, "administered_at": now().isoformat()}
                              for code, answers in (("phq9", PHQ9_18), ("gad7", GAD7_12))]
    http.post(f"{system['intake'].url}/v1/referrals/{episode}/complete", headers=intake_auth, json=completion).raise_for_status()

    baselines = await wait_for_records(kafka.bootstrap, OUTCOMES, of(episode, "rapport.score.submitted.v1"), count=2)
    assert sorted((d["instrument"], d["total"], d["timepoint"], d["caseness"]) for d in map(validate_partner_view, baselines)) == [
        ("gad7", 12, "baseline", True), ("phq9", 18, "baseline", True)]
    [planned] = await wait_for_records(kafka.bootstrap, COURSE, of(episode, "rapport.course.planned.v1"))
    plan = validate_partner_view(planned)
    course_id, contracted = plan["course_id"], plan["contracted_sessions"]

    submitted: list[dict] = []

    def submit(instrument: str, answers: dict, session: int, **extra) -> dict:
        r = http.post(f"{outcomes_url}/v1/episodes/{episode}/submissions", headers=app, json={
            "client_submission_id": f"app-{uuid.uuid4().hex}", "instrument": instrument, "answers": answers,
            "administered_at": now().isoformat(), "session_number": session, **extra})
        assert r.status_code == 201, r.text
        submitted.append(r.json())
        return r.json()

    async with CourseDriver(kafka.bootstrap) as course:
        async def attend(n: int) -> None:
            await course.publish(SessionAttendedV1(
                episode_id=episode, course_id=course_id, number=n,
                session_id=plan["sessions"][n - 1]["session_id"] if n <= len(plan["sessions"]) else uuid.uuid4(),
                attended_sessions=n, contracted_sessions=contracted, phase="initial" if n <= 3 else "middle",
                attended_at=now()))

        # 2. Weekly submissions before each session; session 2 has item 9 = 1.
        weekly = {1: (16, 0, 11), 2: (14, 1, 10), 3: (12, 1, 9), 4: (11, 0, 9), 5: (10, 0, 8), 6: (9, 0, 7),
                  7: (8, 0, 7), 8: (7, 0, 6)}
        alert_id = None
        for n, (p, item9, g) in weekly.items():
            phq = submit("phq9", phq9(p, item9), n)
            submit("gad7", gad7(g), n)
            if n == 2:
                [alert_id] = phq["alert_ids"]
                # 3. The alert reaches rapport.outcomes, urgent, for the assigned clinician.
                [raised] = await wait_for_records(kafka.bootstrap, OUTCOMES, of(episode, "rapport.alert.raised.v1"))
                alert = validate_partner_view(raised)
                assert (alert["alert_id"], alert["kind"], alert["urgency"], alert["reason_code"], alert["clinician_id"],
                        alert["submission_id"]) == (alert_id, "safety", "urgent", "safety_item_positive", clinician_id,
                                                    phq["submission_id"])
            if n == 3:
                # A second positive item 9 while the first is open is a new alert (sent again, domain.md
                # 3.3), linked to the open one; the submission joins the open alert too.
                [repeat_id] = [a for a in phq["alert_ids"] if a != alert_id]
                assert sorted(phq["alert_ids"]) == sorted([alert_id, repeat_id])
                open_alerts = http.get(f"{outcomes_url}/v1/alerts", headers=clinician).json()["alerts"]
                assert [(a["alert_id"], a["status"], a["linked_submissions"], a["linked_alert_ids"]) for a in open_alerts] == [
                    (alert_id, "open", 1, []), (repeat_id, "open", 0, [alert_id])]
                repeat = validate_partner_view((await wait_for_records(
                    kafka.bootstrap, OUTCOMES, of(episode, "rapport.alert.raised.v1"), count=2))[-1])
                assert (repeat["alert_id"], repeat["linked_alert_ids"]) == (repeat_id, [alert_id])
                r = http.post(f"{outcomes_url}/v1/alerts/{repeat_id}/resolve", headers=clinician,
                              json={"action": "assessment"})
                assert r.status_code == 200, r.text
                # 4. The clinician resolves the first over HTTP.
                r = http.post(f"{outcomes_url}/v1/alerts/{alert_id}/resolve", headers=clinician,
                              json={"action": "safety_plan", "action_text": "safety plan agreed in session"})
                assert r.status_code == 200, r.text
                resolutions = await wait_for_records(kafka.bootstrap, OUTCOMES, of(episode, "rapport.alert.resolved.v1"),
                                                     count=2)
                [res] = [r for r in map(validate_partner_view, resolutions) if r["alert_id"] == alert_id]
                assert (res["alert_id"], res["action"], res["resolved_by"], res["linked_submission_ids"]) == (
                    alert_id, "safety_plan", clinician_id, [phq["submission_id"]])
                assert http.get(f"{outcomes_url}/v1/alerts", headers=clinician).json()["alerts"] == []
            await attend(n)

        # 5. The end-of-course scores, the remaining sessions, and the course ends.
        submit("phq9", phq9(4), contracted, timepoint="end")
        submit("gad7", gad7(5), contracted, timepoint="end")
        for n in range(9, contracted + 1):
            await attend(n)
        await course.publish(CourseEndedV1(
            episode_id=episode, course_id=course_id, template_id=plan["template_id"], clinician_id=clinician_id,
            reason="completed", final_phase="completed", attended_sessions=contracted,
            contracted_sessions=contracted, ended_at=now()))

    [evaluated] = await wait_for_records(kafka.bootstrap, OUTCOMES, of(episode, "rapport.outcome.evaluated.v1"), timeout=120)
    ev = validate_partner_view(evaluated)
    assert (ev["finished_course"], ev["caseness_at_baseline"], ev["caseness_at_end"], ev["recovery"],
            ev["reliable_improvement"], ev["reliable_deterioration"], ev["reliable_recovery"], ev["response"],
            ev["remission"]) == (True, True, False, True, True, False, True, True, True)
    assert ev["baseline_totals"] == {"phq9": 18, "gad7": 12} and ev["final_totals"] == {"phq9": 4, "gad7": 5}
    assert ev["course_id"] == course_id and ev["clinician_id"] == clinician_id

    # Everything outcomes said about the episode, read by a plain consumer and schema-validated.
    records = [r for r in await read_all(kafka.bootstrap, OUTCOMES) if of(episode)(r)]
    events = [(r.headers["ce_type"], validate_partner_view(r)) for r in records]
    types = [t for t, _ in events]
    assert types.count("rapport.score.submitted.v1") == 2 + len(submitted)
    # two safety alerts (sessions 2 and 3), no review alert: reliable improvement by session 8
    assert types.count("rapport.alert.raised.v1") == 2
    assert types.count("rapport.alert.resolved.v1") == 2 and types[-1] == "rapport.outcome.evaluated.v1"
    # sessions 1-3 were initial (assessment): 13 treatment sessions of 16 attended (domain.md 3.2)
    assert (ev["attended_sessions"], ev["treatment_sessions"]) == (16, 13)
    # One partition per episode: the score that raised the alert comes before it.
    assert types.index("rapport.alert.raised.v1") > [d.get("submission_id") for _, d in events].index(alert["submission_id"])
    assert len({r.headers["ce_id"] for r in records}) == len(records)
    assert "safety plan agreed" not in b"".join(r.value for r in records).decode()  # free text stays in outcomes

    # Queries and export over HTTP.
    history = http.get(f"{outcomes_url}/v1/episodes/{episode}/scores", headers=clinician).json()
    phq_totals = [s["total"] for s in history["instruments"]["phq9"]["scores"]]
    assert (phq_totals[0], phq_totals[-1], len(phq_totals)) == (18, 4, 2 + len(weekly))
    report = http.get(f"{outcomes_url}/v1/reports/cohort", params={"group_by": "clinician", "clinician_id": clinician_id},
                      headers=clinician).json()
    assert report["groups"][0]["recovery"] == {"count": 1, "denominator": 1, "rate": 1.0}
    bundle = http.get(f"{outcomes_url}/v1/episodes/{episode}/fhir", headers=clinician).json()
    assert bundle["resourceType"] == "Bundle"
    assert [e["resource"]["resourceType"] for e in bundle["entry"]].count("Observation") == 2 + len(submitted)

    # Who may see what: the referring organisation's partner exports the coded facts (no item
    # answers); another organisation's partner or clinician gets the 404 of an unknown episode.
    partner = {"Authorization": f"Bearer {tokens.issue('partner-1', ['partner'])}"}
    r = http.get(f"{outcomes_url}/v1/episodes/{episode}/fhir", headers=partner)
    assert r.status_code == 200, r.text
    assert {e["resource"]["resourceType"] for e in r.json()["entry"]} == {"Observation"} and "linkId" not in r.text
    unknown = str(uuid.uuid4())
    for who in (tokens.issue("partner-9", ["partner"], org=OTHER_ORG), tokens.issue(clinician_id, ["clinician"], org=OTHER_ORG)):
        auth = {"Authorization": f"Bearer {who}"}
        for path in ("fhir", "outcome"):
            refused = http.get(f"{outcomes_url}/v1/episodes/{episode}/{path}", headers=auth)
            missing = http.get(f"{outcomes_url}/v1/episodes/{unknown}/{path}", headers=auth)
            assert refused.status_code == missing.status_code == 404
            assert refused.text.replace(episode, "<id>") == missing.text.replace(unknown, "<id>")
