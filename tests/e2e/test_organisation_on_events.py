"""Issue 10, item 1 end to end: every event of an episode names the organisation that opened it.

Intake records the opener's organisation (token claim ``org``) and sends it on
``rapport.intake.completed.v1``; scheduler, outcomes and notifier store it with the episode and
set ``organisation_id`` on every event they emit about it — course and session events, scores,
alerts, the end-of-course evaluation and deliveries — so a partner can filter a topic by it."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import httpx
import pytest

from rapport_testing.fixtures import OTHER_ORG, TEST_ORG
from rapport_testing.flows import intake_completion, phq9
from rapport_testing.kafka import validate_partner_view, wait_for_records
from rapport_shared.topics import COURSE, INTAKE, NOTIFICATIONS, OUTCOMES

pytestmark = pytest.mark.e2e


def of(episode: str, ce_type: str | None = None):
    return lambda r: r.headers.get("ce_subject") == episode and (ce_type is None or r.headers.get("ce_type") == ce_type)


def _open(http: httpx.Client, intake_url: str, auth: dict, person: str, clinician_id: str) -> str:
    r = http.post(f"{intake_url}/v1/referrals", headers=auth,
                  json={"person_id": person, "referral_source": "gp", "target_condition": "depression"})
    r.raise_for_status()
    episode = r.json()["episode_id"]
    http.post(f"{intake_url}/v1/referrals/{episode}/complete", headers=auth,
              json=intake_completion(clinician_id)).raise_for_status()
    return episode


def _orgs(records) -> dict[str, set]:
    """event type → the organisation_id values its records carry (each validated as a partner would)."""
    out: dict[str, set] = {}
    for r in records:
        out.setdefault(r.headers["ce_type"], set()).add(validate_partner_view(r).get("organisation_id"))
    return out


async def test_every_event_of_an_episode_names_its_organisation(system, kafka, tokens):
    http = httpx.Client(timeout=30)
    clinician_id = f"clin-t{uuid.uuid4().hex[:8]}"
    person = f"P-t{uuid.uuid4().hex[:12]}"
    assert TEST_ORG == "org-test"  # the tokens' organisation by default
    episode = _open(http, system["intake"].url, {"Authorization": f"Bearer {tokens.issue('ic-1', ['intake_clinician'])}"},
                    person, clinician_id)
    clinician = {"Authorization": f"Bearer {tokens.issue(clinician_id, ['clinician'])}"}
    app = {"Authorization": f"Bearer {tokens.issue(person, ['patient_app'])}"}

    [completed] = await wait_for_records(kafka.bootstrap, INTAKE, of(episode, "rapport.intake.completed.v1"))
    assert validate_partner_view(completed)["organisation_id"] == "org-test"
    [planned] = await wait_for_records(kafka.bootstrap, COURSE, of(episode, "rapport.course.planned.v1"))
    course_id = validate_partner_view(planned)["course_id"]

    # A score with item 9 = 1: a safety alert; its clinician resolves it.
    r = http.post(f"{system['outcomes'].url}/v1/episodes/{episode}/submissions", headers=app, json={
        "client_submission_id": f"app-{uuid.uuid4().hex}", "instrument": "phq9", "answers": phq9(14, 1),
        "administered_at": datetime.now(timezone.utc).isoformat(), "session_number": 1})
    assert r.status_code == 201, r.text
    [alert_id] = r.json()["alert_ids"]
    await wait_for_records(kafka.bootstrap, OUTCOMES, of(episode, "rapport.alert.raised.v1"))
    r = http.post(f"{system['outcomes'].url}/v1/alerts/{alert_id}/resolve", headers=clinician,
                  json={"action": "safety_plan", "action_text": "safety plan agreed"})
    assert r.status_code == 200, r.text

    # The clinician ends the course early (a command on the stored course, not the intake event):
    # phase change, cancelled sessions, course end; outcomes then evaluates the episode.
    r = http.post(f"{system['scheduler'].url}/v1/courses/{course_id}/withdraw", headers=clinician,
                  json={"reason": "withdrawal"})
    assert r.status_code == 200, r.text
    await wait_for_records(kafka.bootstrap, OUTCOMES, of(episode, "rapport.outcome.evaluated.v1"), timeout=120)
    await wait_for_records(kafka.bootstrap, COURSE, of(episode, "rapport.course.ended.v1"))

    # Deliveries: the course-planned notice and the safety alert, to the clinician.
    deliveries = await wait_for_records(kafka.bootstrap, NOTIFICATIONS, of(episode, "rapport.notification.delivered.v1"),
                                        count=2, timeout=120)
    assert {validate_partner_view(d)["kind"] for d in deliveries} >= {"course_planned", "safety_alert"}

    course = _orgs(await wait_for_records(kafka.bootstrap, COURSE, of(episode)))
    assert {"rapport.course.planned.v1", "rapport.session.scheduled.v1", "rapport.course.phase_changed.v1",
            "rapport.session.cancelled.v1", "rapport.course.ended.v1"} <= set(course)
    outcomes = _orgs(await wait_for_records(kafka.bootstrap, OUTCOMES, of(episode)))
    assert {"rapport.score.submitted.v1", "rapport.alert.raised.v1", "rapport.alert.resolved.v1",
            "rapport.outcome.evaluated.v1"} <= set(outcomes)
    notifications = _orgs(await wait_for_records(kafka.bootstrap, NOTIFICATIONS, of(episode)))
    assert "rapport.notification.delivered.v1" in notifications
    for event_type, orgs in {**course, **outcomes, **notifications}.items():
        assert orgs == {"org-test"}, (event_type, orgs)


async def test_another_organisations_episode_names_that_organisation(system, kafka, tokens):
    http = httpx.Client(timeout=30)
    auth = {"Authorization": f"Bearer {tokens.issue('ic-2', ['intake_clinician'], org=OTHER_ORG)}"}
    episode = _open(http, system["intake"].url, auth, f"P-t{uuid.uuid4().hex[:12]}", f"clin-t{uuid.uuid4().hex[:8]}")

    [planned] = await wait_for_records(kafka.bootstrap, COURSE, of(episode, "rapport.course.planned.v1"))
    [baseline] = await wait_for_records(kafka.bootstrap, OUTCOMES, of(episode, "rapport.score.submitted.v1"))
    [delivered] = await wait_for_records(kafka.bootstrap, NOTIFICATIONS, of(episode, "rapport.notification.delivered.v1"))
    assert [validate_partner_view(r)["organisation_id"] for r in (planned, baseline, delivered)] == [OTHER_ORG] * 3
