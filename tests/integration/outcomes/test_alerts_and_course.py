"""Alerts (raise, link, resolve, audit), review alerts from course events, the end-of-course
evaluation, the cohort report and the FHIR export — against real Postgres."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from rapport_shared.contracts.course import CourseEndedV1, CoursePlannedV1, SessionAttendedV1

pytestmark = pytest.mark.integration


def now() -> datetime:
    return datetime.now(timezone.utc)


async def open_episode(outcomes, h, **kw):
    data = h.intake_event(**kw)
    assert (await outcomes.deliver(data))[0].status == "processed"
    return data


async def submit(outcomes, data, answers, instrument="phq9", role="patient_app", **over):
    # A patient app submits as its patient (sub = person id).
    r = await outcomes.client.post(
        f"/v1/episodes/{data.episode_id}/submissions", headers=outcomes.auth(data.person_id, role),
        json={"client_submission_id": f"k-{uuid.uuid4().hex}", "instrument": instrument, "answers": answers,
              "administered_at": now().isoformat(), **over})
    assert r.status_code == 201, r.text
    return r.json()


def attended(data, number: int, course_id, contracted: int = 16) -> SessionAttendedV1:
    return SessionAttendedV1(episode_id=data.episode_id, course_id=course_id, session_id=uuid.uuid4(), number=number,
                             attended_sessions=number, contracted_sessions=contracted, phase="initial" if number < 4 else "middle",
                             attended_at=now())


def ended(data, course_id, attended_sessions: int, reason="completed", contracted: int = 16) -> CourseEndedV1:
    return CourseEndedV1(episode_id=data.episode_id, course_id=course_id, template_id=data.template_id,
                         clinician_id=data.clinician_id, reason=reason,
                         final_phase="completed" if reason == "completed" else "ended_early",
                         attended_sessions=attended_sessions, contracted_sessions=contracted, ended_at=now())


async def test_safety_alert_lifecycle_link_resolve_audit(outcomes, h):
    data = await open_episode(outcomes, h)
    clinician = outcomes.auth(data.clinician_id, "clinician")
    first = await submit(outcomes, data, h.phq9(14, item9=1), session_number=2)
    [alert_id] = first["alert_ids"]
    second = await submit(outcomes, data, h.phq9(12, item9=2), session_number=3)
    # domain.md 3.3: a new positive while the first is open is a new alert (sent again), linked to it.
    repeat_id = next(a for a in second["alert_ids"] if a != alert_id)
    assert sorted(second["alert_ids"]) == sorted([alert_id, repeat_id])
    raised = await outcomes.events(data.episode_id, "rapport.alert.raised.v1")
    assert [(e["alert_id"], e["submission_id"], e["urgency"], e["linked_alert_ids"]) for e in raised] == [
        (alert_id, first["submission_id"], "urgent", []), (repeat_id, second["submission_id"], "urgent", [alert_id])]
    [score2] = [e for e in await outcomes.events(data.episode_id, "rapport.score.submitted.v1")
                if e["submission_id"] == second["submission_id"]]
    assert sorted(score2["alert_ids"]) == sorted([alert_id, repeat_id])

    # Open alerts for the clinician: their own by default; the repeat names the one it repeats.
    mine = (await outcomes.client.get("/v1/alerts", headers=clinician)).json()
    assert [(a["alert_id"], a["linked_submissions"], a["linked_alert_ids"]) for a in mine["alerts"]] == [
        (alert_id, 1, []), (repeat_id, 0, [alert_id])]
    admin = outcomes.auth("adm", "admin")
    listed = (await outcomes.client.get("/v1/alerts", params={"clinician_id": data.clinician_id}, headers=admin)).json()
    assert [a["alert_id"] for a in listed["alerts"]] == [alert_id, repeat_id]

    url = f"/v1/alerts/{alert_id}/resolve"
    assert (await outcomes.client.post(url, headers=admin, json={"action": "safety_plan"})).status_code == 403
    r = await outcomes.client.post(url, headers=clinician, json={"action": "other"})
    assert (r.status_code, r.json()["field"]) == (422, "action_text")
    r = await outcomes.client.post(url, headers=clinician, json={"action": "escalated"})
    assert r.status_code == 422
    r = await outcomes.client.post(url, headers=clinician, json={"action": "safety_plan", "resolved_at": "2001-01-01T00:00:00Z"})
    assert (r.status_code, r.json()["field"]) == (422, "resolved_at")
    assert (await outcomes.client.post(f"/v1/alerts/{uuid.uuid4()}/resolve", headers=clinician,
                                       json={"action": "assessment"})).status_code == 404
    assert await outcomes.events(data.episode_id, "rapport.alert.resolved.v1") == []

    r = await outcomes.client.post(url, headers=clinician, json={"action": "safety_plan", "action_text": "plan agreed"})
    assert r.status_code == 200 and r.json()["status"] == "resolved" and r.json()["replayed"] is False
    assert r.json()["resolution"]["resolved_by"] == data.clinician_id
    [resolved] = await outcomes.events(data.episode_id, "rapport.alert.resolved.v1")
    assert (resolved["alert_id"], resolved["kind"], resolved["action"], resolved["resolved_by"]) == (
        alert_id, "safety", "safety_plan", data.clinician_id)
    assert resolved["linked_submission_ids"] == [second["submission_id"]]
    assert "action_text" not in resolved and "plan agreed" not in str(resolved)  # free text stays here

    again = await outcomes.client.post(url, headers=clinician, json={"action": "safety_plan", "action_text": "plan agreed"})
    assert (again.status_code, again.json()["replayed"]) == (200, True)
    other = await outcomes.client.post(url, headers=clinician, json={"action": "referral"})
    assert (other.status_code, other.json()["field"]) == (409, "alert_id")
    assert len(await outcomes.events(data.episode_id, "rapport.alert.resolved.v1")) == 1
    # Resolving the first leaves the repeat open: each is resolved on its own.
    assert [a["alert_id"] for a in (await outcomes.client.get("/v1/alerts", headers=clinician)).json()["alerts"]] == [
        repeat_id]
    r = await outcomes.client.post(f"/v1/alerts/{repeat_id}/resolve", headers=clinician, json={"action": "assessment"})
    assert r.status_code == 200
    assert (await outcomes.client.get("/v1/alerts", headers=clinician)).json()["alerts"] == []

    detail = (await outcomes.client.get(f"/v1/alerts/{alert_id}", headers=clinician)).json()
    assert [a["action"] for a in detail["audit"]] == ["raised", "linked", "resolved"]
    assert detail["audit"][2]["actor"] == data.clinician_id and detail["audit"][0]["event_id"] == raised[0]["ce_id"]
    assert [s["submission_id"] for s in detail["linked_submissions"]] == [second["submission_id"]]

    # After resolution a new positive item 9 is a new alert, linked to nothing.
    third = await submit(outcomes, data, h.phq9(10, item9=1))
    [third_id] = third["alert_ids"]
    assert third_id not in (alert_id, repeat_id)
    assert (await outcomes.events(data.episode_id, "rapport.alert.raised.v1"))[-1]["linked_alert_ids"] == []

    # The audit is append-only, even for the service's own role.
    async with outcomes.pool.acquire() as conn:
        with pytest.raises(asyncpg.RaiseError):
            await conn.execute("UPDATE alert_audit SET actor = 'someone' WHERE alert_id = $1", uuid.UUID(alert_id))
        with pytest.raises(asyncpg.RaiseError):
            await conn.execute("DELETE FROM alerts WHERE alert_id = $1", uuid.UUID(alert_id))


async def test_reliable_deterioration_raises_a_review_alert(outcomes, h):
    data = await open_episode(outcomes, h, baseline={"phq9": {**{n: 1 for n in range(1, 9)}, 9: 0}, "gad7": h.GAD7_12})
    assert (await submit(outcomes, data, h.phq9(13)))["alert_ids"] == []  # +5: one below
    s = await submit(outcomes, data, h.phq9(14))  # +6: exactly at the threshold
    [review] = await outcomes.events(data.episode_id, "rapport.alert.raised.v1")
    assert (review["kind"], review["urgency"], review["reason_code"], review["instrument"]) == (
        "review", "routine", "reliable_deterioration", "phq9")
    assert s["alert_ids"] == [review["alert_id"]]
    g = await submit(outcomes, data, h.gad7(16), instrument="gad7")  # GAD-7 +4 joins the open review
    assert g["alert_ids"] == [review["alert_id"]]
    assert len(await outcomes.events(data.episode_id, "rapport.alert.raised.v1")) == 1


async def test_no_reliable_improvement_by_mid_course(outcomes, h):
    data = await open_episode(outcomes, h, baseline={"phq9": h.PHQ9_18, "gad7": h.GAD7_12})
    course_id = uuid.uuid4()
    await submit(outcomes, data, h.phq9(13))  # a fall of 5: not reliable
    for n in range(1, 8):
        assert (await outcomes.deliver(attended(data, n, course_id)))[0].status == "processed"
    assert await outcomes.events(data.episode_id, "rapport.alert.raised.v1") == []
    await outcomes.deliver(attended(data, 8, course_id))  # 16 contracted: mid-course is session 8
    [review] = await outcomes.events(data.episode_id, "rapport.alert.raised.v1")
    assert (review["kind"], review["reason_code"], review["session_number"], review["submission_id"]) == (
        "review", "no_reliable_improvement", 8, None)
    await outcomes.deliver(attended(data, 9, course_id))
    assert len(await outcomes.events(data.episode_id, "rapport.alert.raised.v1")) == 1  # once per course


async def test_reliable_improvement_by_mid_course_raises_nothing(outcomes, h):
    data = await open_episode(outcomes, h, baseline={"phq9": h.PHQ9_18, "gad7": h.GAD7_12}, template_id="ipt-brief")
    course_id = uuid.uuid4()
    await outcomes.deliver(CoursePlannedV1(
        episode_id=data.episode_id, course_id=course_id, person_id=data.person_id, template_id="ipt-brief",
        clinician_id=data.clinician_id, contracted_sessions=8, phase_plan=[], sessions=[], first_session_at=now(),
        planned_end_at=now() + timedelta(weeks=8), planned_at=now()))
    await submit(outcomes, data, h.phq9(12))
    await outcomes.deliver(attended(data, 4, course_id, contracted=8))
    assert await outcomes.events(data.episode_id, "rapport.alert.raised.v1") == []
    assert await outcomes.count("SELECT count(*) FROM courses WHERE episode_id = $1 AND review_checked_at IS NOT NULL",
                                data.episode_id) == 1


@pytest.mark.parametrize(("attended_count", "treatment", "finished"), [(4, 1, False), (5, 2, True)])
async def test_finished_course_counts_treatment_sessions_not_assessment(outcomes, h, attended_count, treatment, finished):
    """domain.md 3.2: "at least 2 attended treatment sessions"; sessions 1-3 here are initial
    (assessment) sessions, so 4 attended is one treatment session, 5 is two."""
    data = await open_episode(outcomes, h, baseline={"phq9": h.PHQ9_18, "gad7": h.GAD7_12})
    course_id = uuid.uuid4()
    await outcomes.deliver(CoursePlannedV1(
        episode_id=data.episode_id, course_id=course_id, person_id=data.person_id, template_id=data.template_id,
        clinician_id=data.clinician_id, contracted_sessions=16, phase_plan=[], sessions=[], first_session_at=now(),
        planned_end_at=now() + timedelta(weeks=16), planned_at=now()))
    for n in range(1, attended_count + 1):
        assert (await outcomes.deliver(attended(data, n, course_id)))[0].status == "processed"
    await outcomes.deliver(attended(data, 2, course_id))  # a re-sent event changes nothing
    await outcomes.deliver(ended(data, course_id, attended_count, reason="withdrawal"))
    [ev] = await outcomes.events(data.episode_id, "rapport.outcome.evaluated.v1")
    assert (ev["attended_sessions"], ev["treatment_sessions"], ev["finished_course"]) == (attended_count, treatment, finished)
    outcome = (await outcomes.client.get(f"/v1/episodes/{data.episode_id}/outcome",
                                         headers=outcomes.auth(data.clinician_id, "clinician"))).json()
    assert (outcome["treatment_sessions"], outcome["finished_course"]) == (treatment, finished)


async def test_course_end_evaluates_once_and_feeds_reports_and_fhir(outcomes, h):
    clinician_id = f"clin-t{uuid.uuid4().hex[:8]}"
    data = await open_episode(outcomes, h, baseline={"phq9": h.PHQ9_18, "gad7": h.GAD7_12}, clinician_id=clinician_id)
    course_id = uuid.uuid4()
    await submit(outcomes, data, h.phq9(9), session_number=6)
    await submit(outcomes, data, h.phq9(4), session_number=16, timepoint="end")
    await submit(outcomes, data, h.gad7(5), instrument="gad7", session_number=16, timepoint="end")
    end = ended(data, course_id, 16)
    assert (await outcomes.deliver(end))[0].status == "processed"
    assert (await outcomes.deliver(end))[0].status == "processed"  # re-sent under a new id: evaluated once
    [ev] = await outcomes.events(data.episode_id, "rapport.outcome.evaluated.v1")
    assert (ev["finished_course"], ev["caseness_at_baseline"], ev["caseness_at_end"], ev["recovery"],
            ev["reliable_improvement"], ev["reliable_deterioration"], ev["reliable_recovery"], ev["response"],
            ev["remission"]) == (True, True, False, True, True, False, True, True, True)
    assert ev["baseline_totals"] == {"phq9": 18, "gad7": 12} and ev["final_totals"] == {"phq9": 4, "gad7": 5}
    assert (ev["template_id"], ev["clinician_id"], ev["end_reason"], ev["attended_sessions"]) == (
        "ipt-standard", clinician_id, "completed", 16)
    assert datetime.fromisoformat(ev["course_ended_at"].replace("Z", "+00:00")) == end.ended_at
    assert ev["instruments"]["phq9"]["reliable_change"] == "improved" and ev["paired_measures"] == ["phq9", "gad7"]

    # A second episode of the same clinician: one attended session, not a finished course.
    early = await open_episode(outcomes, h, clinician_id=clinician_id)
    await outcomes.deliver(ended(early, uuid.uuid4(), 1, reason="withdrawal"))
    [ev2] = await outcomes.events(early.episode_id, "rapport.outcome.evaluated.v1")
    assert ev2["finished_course"] is False and ev2["end_reason"] == "withdrawal"

    auth = outcomes.auth(clinician_id, "clinician")
    report = (await outcomes.client.get("/v1/reports/cohort", params={"group_by": "clinician", "clinician_id": clinician_id},
                                        headers=auth)).json()
    [group] = report["groups"]
    assert (group["clinician_id"], group["episodes_ended"], group["episodes_finished"]) == (clinician_id, 2, 1)
    assert group["recovery"] == {"count": 1, "denominator": 1, "rate": 1.0}
    assert group["reliable_improvement"]["rate"] == 1.0 and group["reliable_deterioration"]["rate"] == 0.0
    by_template = (await outcomes.client.get("/v1/reports/cohort", params={"clinician_id": clinician_id}, headers=auth)).json()
    assert [g["template_id"] for g in by_template["groups"]] == ["ipt-standard"]

    outcome = (await outcomes.client.get(f"/v1/episodes/{data.episode_id}/outcome", headers=auth)).json()
    assert outcome["reliable_recovery"] is True and outcome["event_id"] == ev["ce_id"]

    # The episode's clinician exports everything: the answers and the totals derived from them.
    r = await outcomes.client.get(f"/v1/episodes/{data.episode_id}/fhir", headers=auth)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    bundle = r.json()
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds.count("QuestionnaireResponse") == kinds.count("Observation") == 5
    urls = {e["fullUrl"] for e in bundle["entry"]}
    for e in bundle["entry"]:
        if e["resource"]["resourceType"] == "Observation":
            assert e["resource"]["derivedFrom"][0]["reference"] in urls
    loinc = sorted(e["resource"]["code"]["coding"][0]["code"] for e in bundle["entry"]
                   if e["resource"]["resourceType"] == "Observation")
    assert loinc == ["44261-6"] * 3 + ["70274-6"] * 2

    # A partner of the episode's organisation gets the coded facts only: the same totals and bands,
    # no QuestionnaireResponse (no item answers), nothing referring to a resource it does not get.
    r = await outcomes.client.get(f"/v1/episodes/{data.episode_id}/fhir", headers=outcomes.auth("partner-1", "partner"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    partner = r.json()
    assert [e["resource"]["resourceType"] for e in partner["entry"]] == ["Observation"] * 5
    assert [e["resource"] for e in partner["entry"]] == [
        {k: v for k, v in e["resource"].items() if k != "derivedFrom"} for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"]
    assert "answer" not in r.text and "linkId" not in r.text


async def test_a_score_given_before_the_end_but_recorded_after_it_revises_the_evaluation(outcomes, h):
    clinician_id = f"clin-t{uuid.uuid4().hex[:8]}"
    data = await open_episode(outcomes, h, baseline={"phq9": h.PHQ9_18}, clinician_id=clinician_id)
    await submit(outcomes, data, h.phq9(12), session_number=15)
    given = now()  # the patient fills in the last questionnaire in the app...
    await outcomes.deliver(ended(data, uuid.uuid4(), 16))  # ...the clinician closes the course before it lands
    [first] = await outcomes.events(data.episode_id, "rapport.outcome.evaluated.v1")
    assert (first["revision"], first["final_totals"], first["remission"], first["recovery"]) == (1, {"phq9": 12}, False, False)

    await submit(outcomes, data, h.phq9(4), session_number=16, administered_at=given.isoformat())
    first, second = await outcomes.events(data.episode_id, "rapport.outcome.evaluated.v1")
    assert (second["revision"], second["final_totals"], second["remission"], second["recovery"],
            second["reliable_recovery"]) == (2, {"phq9": 4}, True, True, True)
    assert second["ce_id"] != first["ce_id"] and second["baseline_totals"] == {"phq9": 18}
    auth = outcomes.auth(clinician_id, "clinician")
    outcome = (await outcomes.client.get(f"/v1/episodes/{data.episode_id}/outcome", headers=auth)).json()
    assert (outcome["event_id"], outcome["revision"], outcome["remission"]) == (second["ce_id"], 2, True)
    report = (await outcomes.client.get("/v1/reports/cohort", params={"group_by": "clinician", "clinician_id": clinician_id},
                                        headers=auth)).json()
    assert report["groups"][0]["recovery"] == {"count": 1, "denominator": 1, "rate": 1.0}

    # No revision for a score given after the end (a follow-up), nor for a late one that is not the
    # final score (given before the one that is).
    await submit(outcomes, data, h.phq9(20), administered_at=now().isoformat())
    await submit(outcomes, data, h.phq9(11), session_number=14, administered_at=(given - timedelta(seconds=1)).isoformat())
    assert len(await outcomes.events(data.episode_id, "rapport.outcome.evaluated.v1")) == 2


async def test_course_ended_before_the_intake_event_is_evaluated_when_it_arrives(outcomes, h):
    data = h.intake_event(baseline={"phq9": h.PHQ9_18})
    await outcomes.deliver(ended(data, uuid.uuid4(), 12))
    assert await outcomes.events(data.episode_id) == []
    await outcomes.deliver(data)
    [ev] = await outcomes.events(data.episode_id, "rapport.outcome.evaluated.v1")
    assert ev["finished_course"] is True and ev["baseline_totals"] == {"phq9": 18}
