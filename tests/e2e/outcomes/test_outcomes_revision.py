"""A late end-of-course score, end to end: the course ends (scheduler) and is evaluated (outcomes)
before the patient's last questionnaire, given before the end, is recorded. Outcomes revises the
evaluation (revision 2 on rapport.outcomes, schema-valid for a partner), the scheduler takes the
revised remission, and the notifier sends the clinician the revised summary as a second one."""

from __future__ import annotations

import uuid

import httpx
import pytest

from rapport_testing.flows import run_intake
from rapport_testing.kafka import validate_partner_view, wait_for_records
from rapport_testing.wait import until
from rapport_shared.topics import COURSE, OUTCOMES

pytestmark = pytest.mark.e2e


def of(episode: str, ce_type: str):
    return lambda r: r.headers.get("ce_subject") == episode and r.headers.get("ce_type") == ce_type


async def test_a_late_score_given_before_the_end_revises_the_evaluation_everywhere(system, kafka, tokens):
    tag = uuid.uuid4().hex[:8]
    person, clinician_id = f"P-late-{tag}", f"clin-late-{tag}"
    http = httpx.Client(timeout=30)
    auth = lambda sub, role: {"Authorization": f"Bearer {tokens.issue(sub, [role])}"}  # noqa: E731
    episode = run_intake(system["intake"].url, tokens.issue("ic-1", ["intake_clinician"]), person_id=person,
                         clinician_id=clinician_id, client=http)["episode_id"]
    [planned] = await wait_for_records(kafka.bootstrap, COURSE, of(episode, "rapport.course.planned.v1"))
    course_id = validate_partner_view(planned)["course_id"]

    # The course ends (the patient stops after the first weeks) and is evaluated on the baseline alone.
    r = http.post(f"{system['scheduler'].url}/v1/courses/{course_id}/withdraw", headers=auth(clinician_id, "clinician"),
                  json={"reason": "withdrawal"})
    assert r.status_code == 200, r.text
    [ended] = await wait_for_records(kafka.bootstrap, COURSE, of(episode, "rapport.course.ended.v1"))
    ended_at = validate_partner_view(ended)["ended_at"]
    [first] = await wait_for_records(kafka.bootstrap, OUTCOMES, of(episode, "rapport.outcome.evaluated.v1"))
    ev1 = validate_partner_view(first)
    assert (ev1["revision"], ev1["final_totals"], ev1["remission"]) == (1, {"phq9": 18}, False)

    # The questionnaire the patient gave at the end arrives now.
    r = http.post(f"{system['outcomes'].url}/v1/episodes/{episode}/submissions", headers=auth(person, "patient_app"),
                  json={"client_submission_id": f"late-{tag}", "instrument": "phq9", "administered_at": ended_at,
                        "answers": {"1": 1, "2": 1, "3": 1, "4": 1, "5": 0, "6": 0, "7": 0, "8": 0, "9": 0}})
    assert r.status_code == 201, r.text
    evaluated = await wait_for_records(kafka.bootstrap, OUTCOMES, of(episode, "rapport.outcome.evaluated.v1"), count=2)
    ev2 = validate_partner_view(evaluated[1])
    assert (ev2["revision"], ev2["final_totals"], ev2["remission"], ev2["response"]) == (2, {"phq9": 4}, True, True)
    assert evaluated[0].headers["ce_id"] == first.headers["ce_id"] != evaluated[1].headers["ce_id"]

    # The scheduler keeps the latest remission; the clinician gets both summaries, the second the revision.
    course = lambda: http.get(f"{system['scheduler'].url}/v1/courses/{course_id}",  # noqa: E731
                              headers=auth(clinician_id, "clinician")).json()
    await until(lambda: course()["remission"] is True, what="the scheduler records the revised remission")

    def summaries() -> list[dict]:
        return http.get(f"{system['notifier'].url}/v1/deliveries", headers=auth("admin", "admin"),
                        params={"episode_id": episode, "kind": "course_summary"}).json()["deliveries"]
    await until(lambda: len(summaries()) == 2 and {d["status"] for d in summaries()} == {"delivered"},
                what="two course summaries delivered")
    assert {d["cause_event_id"] for d in summaries()} == {r.headers["ce_id"] for r in evaluated}
