"""Submissions over HTTP and from intake, against real Postgres: strict refusals that store
nothing, idempotency by client submission id, scoring and the events in the outbox."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone

import pytest

pytestmark = pytest.mark.integration


def now() -> datetime:
    return datetime.now(timezone.utc)


async def open_episode(outcomes, h, **kw):
    data = h.intake_event(**kw)
    outcome, event = await outcomes.deliver(data)
    assert outcome.status == "processed", outcome
    return data, event


def body(answers: dict, instrument: str = "phq9", **over) -> dict:
    return {"client_submission_id": f"app-{uuid.uuid4().hex}", "instrument": instrument, "answers": answers,
            "administered_at": now().isoformat(), **over}


async def test_intake_baselines_are_scored_and_announced(outcomes, h):
    data, intake = await open_episode(outcomes, h, baseline={"phq9": h.PHQ9_18, "gad7": h.GAD7_12})
    events = await outcomes.events(data.episode_id)
    assert [(e["ce_type"], e["instrument"], e["total"], e["band"], e["caseness"], e["timepoint"]) for e in events] == [
        ("rapport.score.submitted.v1", "phq9", 18, "moderately_severe", True, "baseline"),
        ("rapport.score.submitted.v1", "gad7", 12, "moderate", True, "baseline"),
    ]
    assert {e["correlation_id"] for e in events} == {intake.correlation_id or intake.id}
    # The same event again (relay re-publish) is skipped by the inbox; a re-sent intake under a new
    # id opens nothing twice.
    assert (await outcomes.deliver(data, event_id=intake.id))[0].status == "duplicate"
    assert (await outcomes.deliver(data))[0].status == "processed"
    assert await outcomes.count("SELECT count(*) FROM submissions WHERE episode_id = $1", data.episode_id) == 2


async def test_a_positive_item9_at_intake_raises_the_alert_with_the_score(outcomes, h):
    answers = {**h.PHQ9_18, 8: 2, 9: 1}
    data, _ = await open_episode(outcomes, h, baseline={"phq9": answers})
    events = await outcomes.events(data.episode_id)
    assert [e["ce_type"] for e in events] == ["rapport.score.submitted.v1", "rapport.alert.raised.v1"]
    score, alert = events
    assert score["flags"] == ["safety_item_positive"] and score["alert_ids"] == [alert["alert_id"]]
    assert (alert["kind"], alert["urgency"], alert["reason_code"], alert["clinician_id"], alert["submission_id"]) == (
        "safety", "urgent", "safety_item_positive", data.clinician_id, score["submission_id"])


async def test_an_http_submission_is_scored_against_the_baseline(outcomes, h):
    data, _ = await open_episode(outcomes, h, baseline={"phq9": h.PHQ9_18, "gad7": h.GAD7_12})
    r = await outcomes.client.post(f"/v1/episodes/{data.episode_id}/submissions", headers=outcomes.auth(data.person_id, "patient_app"),
                                   json=body(h.phq9(12), session_number=3))
    assert r.status_code == 201, r.text
    s = r.json()
    assert (s["total"], s["band"], s["caseness"], s["baseline_total"], s["change_from_baseline"], s["reliable_change"],
            s["timepoint"], s["session_number"], s["replayed"]) == (12, "moderate", True, 18, -6, "improved", "session", 3, False)
    [event] = [e for e in await outcomes.events(data.episode_id, "rapport.score.submitted.v1") if e["submission_id"] == s["submission_id"]]
    assert (event["loinc_code"], event["change_from_baseline"], event["reliable_change"]) == ("44261-6", -6, "improved")

    # A first GAD-7 over HTTP would be the baseline; here intake had one.
    clinician = outcomes.auth(data.clinician_id, "clinician")  # the episode's clinician
    r = await outcomes.client.post(f"/v1/episodes/{data.episode_id}/submissions", headers=clinician,
                                   json=body(h.gad7(9), instrument="gad7", timepoint="end"))
    assert r.json()["timepoint"] == "end" and r.json()["reliable_change"] == "no_reliable_change"

    history = (await outcomes.client.get(f"/v1/episodes/{data.episode_id}/scores", headers=clinician)).json()
    assert [x["total"] for x in history["instruments"]["phq9"]["scores"]] == [18, 12]
    assert history["instruments"]["phq9"]["bands"][2] == {"code": "moderate", "label": "moderate", "lower": 10}
    assert [x["band"] for x in history["instruments"]["gad7"]["scores"]] == ["moderate", "mild"]


async def test_the_first_score_of_an_instrument_is_its_baseline(outcomes, h):
    data, _ = await open_episode(outcomes, h, baseline={"phq9": h.PHQ9_18})
    wsas = {str(n): 4 for n in range(1, 6)}
    r = await outcomes.client.post(f"/v1/episodes/{data.episode_id}/submissions", headers=outcomes.auth(data.person_id, "patient_app"),
                                   json=body(wsas, instrument="wsas", session_number=1))
    assert (r.json()["timepoint"], r.json()["baseline_total"], r.json()["band"]) == ("baseline", None, "significant")


REFUSALS = [
    # (what, body changes, status, field)
    ("wrong item count", {"answers": {str(n): 1 for n in range(1, 9)}}, 422, "answers.item_9"),
    ("extra item", {"answers": {**{str(n): 1 for n in range(1, 10)}, "10": 1}}, 422, "answers.item_10"),
    ("value out of range", {"answers": {**{str(n): 1 for n in range(1, 10)}, "3": 4}}, 422, "answers.item_3"),
    ("boolean answer", {"answers": {**{str(n): 1 for n in range(1, 10)}, "2": True}}, 422, "answers.item_2"),
    ("non-numeric item key", {"answers": {**{str(n): 1 for n in range(1, 10)}, "x": 1}}, 422, "answers['x']"),
    ("audit restricted item", {"instrument": "audit", "answers": {**{str(n): 0 for n in range(1, 10)}, "10": 1}}, 422,
     "answers.item_10"),
    ("unknown instrument", {"instrument": "phq10"}, 422, "instrument"),
    ("dated before the episode began", {"administered_at": "2020-01-01T00:00:00+00:00"}, 422, "administered_at"),
    ("dated in the future", {"administered_at": "2999-01-01T00:00:00+00:00"}, 422, "administered_at"),
    ("date without offset", {"administered_at": "2026-01-01T00:00:00"}, 422, "administered_at"),
    ("second baseline", {"timepoint": "baseline"}, 422, "timepoint"),
    ("session number 0", {"session_number": 0}, 422, "session_number"),
    ("missing client id", {"client_submission_id": None}, 422, "client_submission_id"),
    ("client id with spaces", {"client_submission_id": "Jane Doe"}, 422, "client_submission_id"),
    ("unknown field", {"notes": "free text"}, 422, "notes"),
    ("clinician-rated by an app", {"instrument": "hamd17", "answers": {str(n): 0 for n in range(1, 18)}}, 403, "instrument"),
]


@pytest.mark.parametrize(("what", "changes", "status", "field"), REFUSALS, ids=[r[0] for r in REFUSALS])
async def test_refusals_name_the_field_and_store_nothing(outcomes, h, what, changes, status, field):
    data, _ = await open_episode(outcomes, h)
    before = (await outcomes.count("SELECT count(*) FROM submissions WHERE episode_id = $1", data.episode_id),
              await outcomes.count("SELECT count(*) FROM outbox WHERE key = $1", str(data.episode_id).encode()))
    payload = {**body(h.phq9(5)), **changes}
    payload = {k: v for k, v in payload.items() if v is not None}
    r = await outcomes.client.post(f"/v1/episodes/{data.episode_id}/submissions",
                                   headers=outcomes.auth(data.person_id, "patient_app"), json=payload)
    assert r.status_code == status, r.text
    answer = r.json()
    assert answer.get("field") == field or answer.get("errors", [{}])[0].get("field") == field, answer
    after = (await outcomes.count("SELECT count(*) FROM submissions WHERE episode_id = $1", data.episode_id),
             await outcomes.count("SELECT count(*) FROM outbox WHERE key = $1", str(data.episode_id).encode()))
    assert after == before


async def test_unknown_episode_is_404_and_roles_are_enforced(outcomes, h):
    r = await outcomes.client.post(f"/v1/episodes/{uuid.uuid4()}/submissions", headers=outcomes.auth("app", "patient_app"),
                                   json=body(h.phq9(5)))
    assert (r.status_code, r.json()["field"]) == (404, "episode_id")
    assert (await outcomes.client.post(f"/v1/episodes/{uuid.uuid4()}/submissions", json=body(h.phq9(5)))).status_code == 401
    r = await outcomes.client.post(f"/v1/episodes/{uuid.uuid4()}/submissions", headers=outcomes.auth("i", "intake_clinician"),
                                   json=body(h.phq9(5)))
    assert r.status_code == 403
    assert (await outcomes.client.get(f"/v1/episodes/{uuid.uuid4()}/scores", headers=outcomes.auth("app", "patient_app"))).status_code == 403


async def test_a_patient_app_submits_only_for_its_own_patient(outcomes, h):
    data, _ = await open_episode(outcomes, h)
    url = f"/v1/episodes/{data.episode_id}/submissions"
    count = "SELECT count(*) FROM submissions WHERE episode_id = $1"
    before = await outcomes.count(count, data.episode_id)
    # Another patient's app (sub = another person id): answered as an unknown episode, nothing stored.
    r = await outcomes.client.post(url, headers=outcomes.auth(f"{data.person_id}-other", "patient_app"), json=body(h.phq9(5)))
    assert (r.status_code, r.json()["field"]) == (404, "episode_id"), r.text
    # Not even the replay of a known client id answers (it would show the stored score).
    own = body(h.phq9(6))
    assert (await outcomes.client.post(url, headers=outcomes.auth(data.person_id, "patient_app"), json=own)).status_code == 201
    r = await outcomes.client.post(url, headers=outcomes.auth("someone-else", "patient_app"), json=own)
    assert r.status_code == 404 and "total" not in r.json()
    assert await outcomes.count(count, data.episode_id) == before + 1
    # A partner system of the episode's organisation and the episode's clinician submit for it.
    assert (await outcomes.client.post(url, headers=outcomes.auth("epro-1", "partner"), json=body(h.phq9(7)))).status_code == 201
    assert (await outcomes.client.post(url, headers=outcomes.auth(data.clinician_id, "clinician"),
                                       json=body(h.phq9(8)))).status_code == 201


async def test_the_same_submission_twice_is_stored_once(outcomes, h):
    data, _ = await open_episode(outcomes, h)
    url, auth = f"/v1/episodes/{data.episode_id}/submissions", outcomes.auth(data.person_id, "patient_app")
    payload = body(h.phq9(9, item9=1), session_number=2)
    first = await outcomes.client.post(url, headers=auth, json=payload)
    again = await outcomes.client.post(url, headers=auth, json=payload)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["replayed"] is True
    assert again.json()["submission_id"] == first.json()["submission_id"]
    assert again.json()["alert_ids"] == first.json()["alert_ids"] != []
    assert await outcomes.count("SELECT count(*) FROM submissions WHERE client_submission_id = $1",
                                payload["client_submission_id"]) == 1
    assert len(await outcomes.events(data.episode_id, "rapport.score.submitted.v1")) == 2  # baseline + this one
    assert len(await outcomes.events(data.episode_id, "rapport.alert.raised.v1")) == 1
    # The same key with other content is not silently taken for the first one.
    changed = await outcomes.client.post(url, headers=auth, json={**payload, "answers": h.phq9(10, item9=1)})
    assert (changed.status_code, changed.json()["field"]) == (409, "client_submission_id")


async def test_concurrent_duplicates_make_one_alert_and_each_positive_its_own(outcomes, h):
    data, _ = await open_episode(outcomes, h)
    url, auth = f"/v1/episodes/{data.episode_id}/submissions", outcomes.auth(data.person_id, "patient_app")
    same = body(h.phq9(6, item9=2))
    answers = await asyncio.gather(*[outcomes.client.post(url, headers=auth, json=p)
                                     for p in (same, same, body(h.phq9(7, item9=1)), body(h.phq9(8, item9=3)))])
    assert sorted(r.status_code for r in answers) == [200, 201, 201, 201]
    # Three positive submissions (the duplicate is one): three alerts, each sent (domain.md 3.3); the
    # episode lock serialises them, so the second links to the first, the third to both.
    raised = await outcomes.events(data.episode_id, "rapport.alert.raised.v1")
    assert sorted(len(e["linked_alert_ids"]) for e in raised) == [0, 1, 2]
    assert await outcomes.count("SELECT count(*) FROM alert_links l JOIN alerts a USING (alert_id) WHERE a.episode_id = $1",
                                data.episode_id) == 3


async def test_instrument_catalogue_is_served(outcomes):
    r = await outcomes.client.get("/v1/instruments/audit", headers=outcomes.auth("app", "patient_app"))
    assert r.json()["items"][9] == {"number": 10, "allowed": [0, 2, 4]}
    assert (await outcomes.client.get("/v1/instruments/x", headers=outcomes.auth("app", "patient_app"))).status_code == 404
