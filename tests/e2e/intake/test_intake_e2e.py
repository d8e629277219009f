"""Intake as a separate process over real Kafka and Postgres: a referral through every step to
``rapport.intake.completed.v1``, the ways it ends in ``rapport.intake.declined.v1``, the safety
gate and the refusals — each read back by a plain aiokafka consumer, as a partner would."""

import uuid

import pytest

from rapport_testing.flows import AVAILABILITY, FOCUS, INVENTORY, PHQ9_BASELINE, intake_parts, open_referral
from rapport_testing.kafka import read_all, wait_caught_up
from rapport_testing.db import fetchval
from rapport_shared.topics import COURSE, INTAKE

from intake_e2e_helpers import headers, validate_event

pytestmark = pytest.mark.e2e


def by_episode(episode: str, ce_type: str | None = None):
    return lambda m: m.key == episode.encode() and (ce_type is None or headers(m).get("ce_type") == ce_type)



def steps(api, episode: str, parts: dict, contact: dict | None = None) -> None:
    base = f"/v1/referrals/{episode}"
    plan = [("PUT", "consent", parts["consent"])]
    if contact:
        plan.append(("PUT", "contact", contact))
    plan += [("POST", "baseline", b) for b in parts["baseline"]]
    plan += [("PUT", "inventory", parts["inventory"]), ("PUT", "focus", parts["focus"]),
             ("PUT", "template", {"template_id": parts["template_id"]}),
             ("PUT", "clinician", {"clinician_id": parts["clinician_id"]}),
             ("PUT", "availability", parts["availability"]), ("PUT", "eligibility", parts["eligibility"])]
    for method, path, body in plan:
        r = api.call(method, f"{base}/{path}", body)
        assert r.status_code == 200, (path, r.text)


async def test_a_referral_through_every_step_to_intake_completed(system, kafka, tokens, service_dsns, api, plain):
    token = tokens.issue("ic-e2e", ["intake_clinician"])
    person = f"P-t{uuid.uuid4().hex[:10]}"
    episode = open_referral(system["intake"].url, token, person_id=person)
    parts = intake_parts(clinician_id="clin-e2e", phq9={**PHQ9_BASELINE, 9: 1})  # item 9 > 0: the safety gate too
    steps(api, episode, parts, contact={"email": "e2e@example.org", "channel_consent": {"email": True}})

    refused = api.call("POST", f"/v1/referrals/{episode}/complete", {})
    assert refused.status_code == 409 and refused.json()["missing"] == ["risk_review"]
    assert api.call("POST", f"/v1/referrals/{episode}/risk-review", {"decision": "proceed"}).status_code == 200
    done = api.call("POST", f"/v1/referrals/{episode}/complete", {})
    assert done.status_code == 200 and done.json()["status"] == "completed"

    record = await plain.first(INTAKE, by_episode(episode))
    assert headers(record)["ce_type"] == "rapport.intake.completed.v1"
    assert headers(record)["ce_id"] == done.json()["completed_event_id"]
    data = validate_event(record)
    assert (data["person_id"], data["template_id"], data["clinician_id"], data["target_condition"]) == (
        person, "ipt-standard", "clin-e2e", "depression")
    assert data["focus"] == {"primary": FOCUS["primary"], "secondary": FOCUS["secondary"]}
    assert data["availability"] == AVAILABILITY and data["risk_review"]["decision"] == "proceed"
    [baseline] = data["baseline_scores"]
    assert (baseline["instrument"], baseline["total"], baseline["flags"]) == ("phq9", 19, ["safety_item_positive"])

    # Completing again: the same answer, no second event (once the relay has sent the first).
    again = api.call("POST", f"/v1/referrals/{episode}/complete", {})
    assert again.status_code == 200 and again.json()["completed_event_id"] == done.json()["completed_event_id"]
    ep = uuid.UUID(episode)
    await plain.first(COURSE, by_episode(episode))  # downstream acted on it: a course was planned
    assert await fetchval(service_dsns["intake"], "SELECT count(*) FROM outbox WHERE key = $1", episode.encode()) == 1
    assert await fetchval(service_dsns["scheduler"], "SELECT count(*) FROM courses WHERE episode_id = $1", ep) == 1
    assert len([r for r in await read_all(kafka.bootstrap, INTAKE) if r.key == episode.encode()]) == 1


@pytest.mark.parametrize("how,reason", [
    ("exclusion", "excluded_active_psychosis"),
    ("age", "age_outside_template_range"),
    ("crisis", "crisis_referral"),
    ("withdrawn", "withdrawn"),
])
async def test_a_referral_ends_in_intake_declined(system, kafka, tokens, service_dsns, api, plain, how, reason):
    token = tokens.issue("ic-e2e", ["intake_clinician"])
    episode = open_referral(system["intake"].url, token)
    if how == "exclusion":
        steps(api, episode, intake_parts(exclusions=["active_psychosis"]))
    elif how == "age":
        steps(api, episode, intake_parts(template_id="ipt-a", age_years=19))
    elif how == "crisis":
        steps(api, episode, intake_parts(phq9={**PHQ9_BASELINE, 9: 3}))
        api.call("POST", f"/v1/referrals/{episode}/risk-review", {"decision": "decline_crisis_referral"}).raise_for_status()
    else:
        api.call("PUT", f"/v1/referrals/{episode}/consent", {"given": True, "method": "verbal"}).raise_for_status()
        api.call("POST", f"/v1/referrals/{episode}/decline", {"reason_code": "withdrawn"}).raise_for_status()

    view = api.call("GET", f"/v1/referrals/{episode}").json()
    assert view["status"] == "declined" and view["decline_reasons"] == [reason]
    record = await plain.first(INTAKE, by_episode(episode))
    assert headers(record)["ce_type"] == "rapport.intake.declined.v1"
    assert headers(record)["ce_id"] == view["declined_event_id"]
    data = validate_event(record)
    assert data["reason_code"] == reason and data["reason_codes"] == [reason]

    # Never a course: completion is refused and the scheduler planned nothing for it.
    assert api.call("POST", f"/v1/referrals/{episode}/complete", {}).status_code == 409
    await wait_caught_up(kafka.bootstrap, "rapport-scheduler", INTAKE)
    assert await fetchval(service_dsns["scheduler"], "SELECT count(*) FROM courses WHERE episode_id = $1",
                       uuid.UUID(episode)) == 0


PHQ9_NO_9 = {k: v for k, v in PHQ9_BASELINE.items() if k != 9}
REFUSALS = [
    ("POST", "baseline", {"instrument": "bdi2", "answers": PHQ9_BASELINE}, "instrument"),
    ("POST", "baseline", {"instrument": "phq9", "answers": PHQ9_NO_9}, "answers.item_9"),
    ("POST", "baseline", {"instrument": "phq9", "answers": {**PHQ9_BASELINE, 10: 0}}, "answers.item_10"),
    ("POST", "baseline", {"instrument": "phq9", "answers": {**PHQ9_BASELINE, 2: 9}}, "answers.item_2"),
    ("PUT", "template", {"template_id": "ipt-forever"}, "template_id"),
    ("PUT", "focus", {**FOCUS, "primary": "anger"}, "primary"),
    ("PUT", "focus", {**FOCUS, "secondary": FOCUS["primary"]}, "secondary"),
    ("PUT", "inventory", {"people": [{**INVENTORY["people"][0], "closeness": 7}]}, "people.0.closeness"),
    ("PUT", "availability", {**AVAILABILITY, "slots": [{"weekday": 5, "start": "08:00", "end": "08:40"}]}, "slots"),
]


@pytest.mark.parametrize("method,path,body,field", REFUSALS, ids=[f"{p}:{f}" for _, p, _, f in REFUSALS])
async def test_bad_input_is_refused_by_the_running_service_and_nothing_is_written(system, tokens, service_dsns, api,
                                                                                  method, path, body, field):
    episode = open_referral(system["intake"].url, tokens.issue("ic-e2e", ["intake_clinician"]))
    ep = uuid.UUID(episode)
    audit_before = await fetchval(service_dsns["intake"], "SELECT count(*) FROM audit_log WHERE episode_id = $1", ep)
    r = api.call(method, f"/v1/referrals/{episode}/{path}", body)
    assert r.status_code == 422, r.text
    assert (r.json().get("field") or r.json()["errors"][0]["field"]) == field
    row = await fetchval(service_dsns["intake"], "SELECT row(template_id, focus, inventory, availability)::text"
                                              " FROM referrals WHERE episode_id = $1", ep)
    assert row == "(,,,)"
    assert await fetchval(service_dsns["intake"], "SELECT count(*) FROM baseline_scores WHERE episode_id = $1", ep) == 0
    assert await fetchval(service_dsns["intake"], "SELECT count(*) FROM audit_log WHERE episode_id = $1", ep) == audit_before
    assert await fetchval(service_dsns["intake"], "SELECT count(*) FROM outbox WHERE key = $1", episode.encode()) == 0


async def test_completion_is_refused_with_what_is_missing(system, tokens, api):
    episode = open_referral(system["intake"].url, tokens.issue("ic-e2e", ["intake_clinician"]))
    body = intake_parts()
    del body["inventory"], body["eligibility"]
    r = api.call("POST", f"/v1/referrals/{episode}/complete", body)
    assert r.status_code == 409 and r.json()["missing"] == ["inventory", "eligibility"]


async def test_the_openapi_document_is_served(system):
    import httpx

    doc = httpx.get(f"{system['intake'].url}/openapi.json").json()
    assert doc["info"]["title"] == "Rapport intake" and "/v1/referrals/{episode_id}/complete" in doc["paths"]
    assert httpx.get(f"{system['intake'].url}/docs").status_code == 200
