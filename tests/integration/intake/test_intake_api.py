"""Intake's HTTP API against real Postgres: every step, every refusal (422 naming the field and
nothing written), completion (409 listing what is missing; idempotent), eligibility, the safety
gate, declining, and the events left in the outbox."""

import asyncio
import json
import uuid
from pathlib import Path

import jsonschema
import pytest

from rapport_testing.flows import AVAILABILITY, FOCUS, INVENTORY, PHQ9_BASELINE, intake_parts

pytestmark = pytest.mark.integration
SCHEMAS = __import__("rapport_tools.contracts.export", fromlist=["x"]).SCHEMA_DIR


def check_schema(event: dict) -> None:
    schema = json.loads((SCHEMAS / f"{event['type']}.json").read_text())
    jsonschema.validate(event["data"], schema)
    assert event["headers"]["ce_dataschema"] == schema["$id"]


async def step_through(h, episode, **parts) -> None:
    p = intake_parts(**parts)
    for method, path, body in [("PUT", "consent", p["consent"]), *[("POST", "baseline", b) for b in p["baseline"]],
                               ("PUT", "inventory", p["inventory"]), ("PUT", "focus", p["focus"]),
                               ("PUT", "template", {"template_id": p["template_id"]}),
                               ("PUT", "clinician", {"clinician_id": p["clinician_id"]}),
                               ("PUT", "availability", p["availability"]), ("PUT", "eligibility", p["eligibility"])]:
        r = await h.call(method, f"/v1/referrals/{episode}/{path}", body)
        assert r.status_code == 200, (path, r.text)


# ---- the whole intake, step by step ------------------------------------------------------

async def test_every_step_then_completion_emits_one_completed_event(intake_it):
    h = intake_it
    episode, person = await h.open()
    r = await h.call("GET", f"/v1/referrals/{episode}")
    assert r.json()["missing"] == ["consent", "baseline.phq9", "inventory", "focus", "template_id", "clinician_id",
                                   "availability", "eligibility"]
    await step_through(h, episode)
    view = (await h.call("GET", f"/v1/referrals/{episode}")).json()
    assert view["missing"] == [] and view["status"] == "open"
    assert view["baseline"][0]["total"] == 18 and view["baseline"][0]["band"] == "moderately_severe"
    assert view["focus"]["rationale"] == FOCUS["rationale"] and view["eligibility"]["eligible"] is True
    assert await h.outbox(episode) == []  # nothing announced before completion

    done = await h.call("POST", f"/v1/referrals/{episode}/complete", {})
    assert done.status_code == 200 and done.json()["status"] == "completed"
    [event] = await h.outbox(episode)
    assert event["type"] == "rapport.intake.completed.v1" and event["event_id"] == done.json()["completed_event_id"]
    check_schema(event)
    data = event["data"]
    assert (data["person_id"], data["template_id"], data["clinician_id"], data["target_condition"]) == (
        person, "ipt-standard", "clin-001", "depression")
    assert data["focus"] == {"primary": "role_transition", "secondary": "interpersonal_deficits"}
    assert data["availability"]["slots"] == AVAILABILITY["slots"] and data["referral_source"] == "gp"
    assert [(b["instrument"], b["total"]) for b in data["baseline_scores"]] == [("phq9", 18.0)]
    assert FOCUS["rationale"] not in json.dumps(data)


async def test_completing_twice_is_idempotent(intake_it):
    h = intake_it
    episode, _ = await h.open()
    first = await h.call("POST", f"/v1/referrals/{episode}/complete", intake_parts())
    second = await h.call("POST", f"/v1/referrals/{episode}/complete", {})
    third = await h.call("POST", f"/v1/referrals/{episode}/complete", intake_parts(template_id="ipt-12"))
    assert first.status_code == second.status_code == third.status_code == 200
    assert first.json()["completed_event_id"] == second.json()["completed_event_id"] == third.json()["completed_event_id"]
    assert third.json()["template_id"] == "ipt-standard"  # the first completion stands
    assert len(await h.outbox(episode)) == 1


async def test_one_call_with_every_part_completes(intake_it):
    """The path partner intake forms and the e2e helpers use (flows.intake_completion)."""
    h = intake_it
    episode, _ = await h.open()
    r = await h.call("POST", f"/v1/referrals/{episode}/complete", intake_parts(), role="partner", sub="partner-clinic-1")
    assert r.status_code == 200 and r.json()["status"] == "completed"
    check_schema((await h.outbox(episode))[0])


async def test_consent_to_the_referrer_summary_is_carried_on_the_completed_event(intake_it):
    """Issue 15 item 5: consent to the end-of-course summary for the referrer, in the consent step
    (default: not given), stored with the consent and announced as a coded boolean."""
    h = intake_it
    episode, _ = await h.open()
    r = await h.call("PUT", f"/v1/referrals/{episode}/consent",
                     {"given": True, "method": "written", "share_outcomes_with_referrer": True})
    assert r.status_code == 200 and r.json()["consent"]["share_outcomes_with_referrer"] is True
    r = await h.call("PUT", f"/v1/referrals/{episode}/consent",
                     {"given": True, "method": "written", "share_outcomes_with_referrer": "yes"})
    assert r.status_code == 422  # a strict boolean
    parts = intake_parts()
    del parts["consent"]  # recorded above
    assert (await h.call("POST", f"/v1/referrals/{episode}/complete", parts)).status_code == 200
    [event] = await h.outbox(episode)
    check_schema(event)
    assert event["data"]["share_outcomes_with_referrer"] is True

    episode, _ = await h.open()  # not asked: not given
    assert (await h.call("POST", f"/v1/referrals/{episode}/complete", intake_parts())).status_code == 200
    [event] = await h.outbox(episode)
    assert event["data"]["share_outcomes_with_referrer"] is False


# ---- completion refused: 409 listing what is missing -------------------------------------

async def test_completion_is_refused_listing_what_is_missing(intake_it):
    h = intake_it
    episode, _ = await h.open()
    before = await h.snapshot(episode)
    r = await h.call("POST", f"/v1/referrals/{episode}/complete", {})
    assert r.status_code == 409
    assert r.json()["missing"] == ["consent", "baseline.phq9", "inventory", "focus", "template_id", "clinician_id",
                                   "availability", "eligibility"]
    assert await h.snapshot(episode) == before


@pytest.mark.parametrize("leave_out,missing", [("consent", "consent"), ("baseline", "baseline.phq9"),
                                               ("inventory", "inventory"), ("focus", "focus"),
                                               ("clinician_id", "clinician_id"), ("availability", "availability"),
                                               ("eligibility", "eligibility")])
async def test_each_missing_part_refuses_completion_and_the_call_writes_nothing(intake_it, leave_out, missing):
    h = intake_it
    episode, _ = await h.open()
    body = intake_parts()
    body.pop(leave_out)
    before = await h.snapshot(episode)
    r = await h.call("POST", f"/v1/referrals/{episode}/complete", body)
    assert r.status_code == 409 and r.json()["missing"] == [missing], r.text
    assert await h.snapshot(episode) == before  # all or nothing: the parts given were not kept either


async def test_refused_consent_refuses_completion(intake_it):
    h = intake_it
    episode, _ = await h.open()
    r = await h.call("POST", f"/v1/referrals/{episode}/complete", {**intake_parts(), "consent": {"given": False, "method": "verbal"}})
    assert r.status_code == 409 and r.json()["missing"] == ["consent"]


async def test_eligibility_before_the_template_is_refused(intake_it):
    h = intake_it
    episode, _ = await h.open()
    r = await h.call("PUT", f"/v1/referrals/{episode}/eligibility", {"age_years": 30, "exclusions": []})
    assert r.status_code == 409 and r.json()["missing"] == ["template_id"]


async def test_a_new_template_needs_eligibility_again(intake_it):
    h = intake_it
    episode, _ = await h.open()
    await step_through(h, episode)
    r = await h.call("PUT", f"/v1/referrals/{episode}/template", {"template_id": "ipt-brief"})
    assert r.json()["eligibility"] is None and r.json()["missing"] == ["eligibility"]


# ---- bad input: 422 naming the field and the reason; nothing written ----------------------

PHQ9_NO_9 = {k: v for k, v in PHQ9_BASELINE.items() if k != 9}
REFUSALS = [
    # (step method, path, body, field, words in the reason)
    ("POST", "baseline", {"instrument": "bdi2", "answers": PHQ9_BASELINE}, "instrument", "unknown instrument"),
    ("POST", "baseline", {"instrument": "phq9", "answers": PHQ9_NO_9}, "answers.item_9", "missing"),
    ("POST", "baseline", {"instrument": "phq9", "answers": {**PHQ9_BASELINE, 10: 1}}, "answers.item_10", "no item 10"),
    ("POST", "baseline", {"instrument": "phq9", "answers": {**PHQ9_BASELINE, 4: 7}}, "answers.item_4", "between 0 and 3"),
    ("POST", "baseline", {"instrument": "phq9", "answers": {**PHQ9_BASELINE, 4: "3"}}, "answers.4", "integer"),
    ("POST", "baseline", {"instrument": "phq9", "answers": PHQ9_BASELINE, "administered_at": "2999-01-01T00:00:00Z"},
     "administered_at", "future"),
    ("PUT", "template", {"template_id": "ipt-extreme"}, "template_id", "unknown template"),
    ("PUT", "focus", {**FOCUS, "primary": "loneliness"}, "primary", "Input should be"),
    ("PUT", "focus", {**FOCUS, "primary": "grief", "secondary": "grief"}, "secondary", "differ from the primary"),
    ("PUT", "focus", {"primary": "grief"}, "rationale", "Field required"),
    ("PUT", "inventory", {"people": [{**INVENTORY["people"][0], "closeness": 4}]}, "people.0.closeness", "less than or equal to 3"),
    ("PUT", "inventory", {"people": [{**INVENTORY["people"][0], "closeness": 0}]}, "people.0.closeness", "greater than or equal to 1"),
    ("PUT", "availability", {**AVAILABILITY, "slots": [{"weekday": 1, "start": "09:00", "end": "09:30"}]}, "slots", "50-minute"),
    ("PUT", "availability", {**AVAILABILITY, "slots": [{"weekday": 1, "start": "17:00", "end": "09:00"}]}, "slots.0.end", "after start"),
    ("PUT", "availability", {**AVAILABILITY, "timezone": "Europe/Atlantis"}, "timezone", "unknown time zone"),
    ("PUT", "availability", {**AVAILABILITY, "slots": []}, "slots", "at least 1"),
    ("PUT", "consent", {"given": "sure", "method": "written"}, "given", "boolean"),
    ("PUT", "clinician", {"clinician_id": "Dr Who"}, "clinician_id", "looks like a name"),
    ("PUT", "clinician", {"clinician_id": "943-476-5919"}, "clinician_id", "looks like a phone number"),
    ("PUT", "contact", {"email": "ada-at-example.org"}, "email", "not an e-mail"),
    ("PUT", "contact", {"phone": "+44 7700 900123", "channel_consent": {"email": True}}, "channel_consent.email", "e-mail address"),
    ("POST", "decline", {"reason_code": "bored"}, "reason_code", "unknown decline reason"),
]


@pytest.mark.parametrize("method,path,body,field,reason", REFUSALS, ids=[f"{p}:{f}" for _, p, _, f, _ in REFUSALS])
async def test_bad_input_is_422_naming_the_field_and_writes_nothing(intake_it, method, path, body, field, reason):
    h = intake_it
    episode, _ = await h.open()
    before = await h.snapshot(episode)
    r = await h.call(method, f"/v1/referrals/{episode}/{path}", body)
    assert r.status_code == 422, r.text
    problem = r.json()
    named = problem.get("field") or problem["errors"][0]["field"]
    assert named == field and reason in problem["detail"], problem
    assert await h.snapshot(episode) == before


ONE_SHOT_REFUSALS = [
    ({"baseline": [{"instrument": "phq9", "answers": PHQ9_BASELINE}, {"instrument": "gad8", "answers": {1: 0}}]},
     "baseline.1.instrument"),
    ({"baseline": [{"instrument": "phq9", "answers": {**PHQ9_BASELINE, 9: 4}}]}, "baseline.0.answers.item_9"),
    ({"focus": {**FOCUS, "secondary": FOCUS["primary"]}}, "focus.secondary"),
    ({"template_id": "ipt-99"}, "template_id"),
    ({"availability": {**AVAILABILITY, "slots": [{"weekday": 3, "start": "12:00", "end": "12:45"}]}}, "availability.slots"),
    ({"inventory": {"people": [{**INVENTORY["people"][1], "closeness": 5}]}}, "inventory.people.0.closeness"),
    ({"eligibility": {"age_years": 30, "exclusions": ["sadness"]}}, "eligibility.exclusions.0"),
]


@pytest.mark.parametrize("override,field", ONE_SHOT_REFUSALS, ids=[f for _, f in ONE_SHOT_REFUSALS])
async def test_a_bad_part_in_a_one_call_completion_is_422_and_writes_nothing(intake_it, override, field):
    h = intake_it
    episode, _ = await h.open()
    before = await h.snapshot(episode)
    r = await h.call("POST", f"/v1/referrals/{episode}/complete", {**intake_parts(), **override})
    assert r.status_code == 422, r.text
    assert (r.json().get("field") or r.json()["errors"][0]["field"]) == field
    assert await h.snapshot(episode) == before


async def test_an_unknown_referral_is_404(intake_it):
    r = await intake_it.call("PUT", f"/v1/referrals/{uuid.uuid4()}/consent", {"given": True, "method": "written"})
    assert r.status_code == 404 and r.json()["field"] == "episode_id"


# ---- eligibility: excluded → declined with a reason code, never a course -----------------

async def test_an_exclusion_declines_the_referral(intake_it):
    h = intake_it
    episode, _ = await h.open()
    await step_through(h, episode, exclusions=["active_psychosis"])
    view = (await h.call("GET", f"/v1/referrals/{episode}")).json()
    assert view["status"] == "declined" and view["decline_reasons"] == ["excluded_active_psychosis"]
    [event] = await h.outbox(episode)
    check_schema(event)
    assert event["type"] == "rapport.intake.declined.v1" and event["event_id"] == view["declined_event_id"]
    assert event["data"]["reason_code"] == "excluded_active_psychosis"
    r = await h.call("POST", f"/v1/referrals/{episode}/complete", {})
    assert r.status_code == 409 and r.json()["episode_status"] == "declined"
    assert len(await h.outbox(episode)) == 1  # never a completion


@pytest.mark.parametrize("age,status", [(11, "declined"), (12, "open"), (18, "open"), (19, "declined")])
async def test_ipt_a_age_rule(intake_it, age, status):
    h = intake_it
    episode, _ = await h.open()
    await step_through(h, episode, template_id="ipt-a", age_years=age)
    view = (await h.call("GET", f"/v1/referrals/{episode}")).json()
    assert view["status"] == status
    if status == "declined":
        assert view["decline_reasons"] == ["age_outside_template_range"]


async def test_ipt_a_only_exclusions(intake_it):
    h = intake_it
    adult, _ = await h.open()
    await step_through(h, adult, template_id="ipt-standard", age_years=40, exclusions=["bipolar_disorder"])
    teen, _ = await h.open()
    await step_through(h, teen, template_id="ipt-a", age_years=15, exclusions=["bipolar_disorder"])
    assert (await h.call("GET", f"/v1/referrals/{adult}")).json()["status"] == "open"
    assert (await h.call("GET", f"/v1/referrals/{teen}")).json()["decline_reasons"] == ["excluded_bipolar_disorder"]


async def test_an_exclusion_in_a_one_call_completion_declines_and_says_so(intake_it):
    h = intake_it
    episode, _ = await h.open()
    r = await h.call("POST", f"/v1/referrals/{episode}/complete", intake_parts(exclusions=["acute_risk_crisis_care"]))
    assert r.status_code == 409 and r.json()["episode_status"] == "declined"
    assert r.json()["decline_reasons"] == ["excluded_acute_risk_crisis_care"]
    [event] = await h.outbox(episode)  # the decline is a clinical decision: it was kept and announced
    assert event["type"] == "rapport.intake.declined.v1" and event["event_id"] == r.json()["declined_event_id"]


# ---- safety at intake --------------------------------------------------------------------

async def test_item_9_blocks_completion_until_a_clinician_reviews(intake_it):
    h = intake_it
    episode, _ = await h.open()
    await step_through(h, episode, phq9={**PHQ9_BASELINE, 9: 1})
    r = await h.call("POST", f"/v1/referrals/{episode}/complete", {})
    assert r.status_code == 409 and r.json()["missing"] == ["risk_review"]
    review = {"decision": "proceed", "note": "no plan or intent; safety plan agreed"}
    assert (await h.call("POST", f"/v1/referrals/{episode}/risk-review", review, role="partner")).status_code == 403
    assert (await h.call("POST", f"/v1/referrals/{episode}/risk-review", review, role="admin")).status_code == 403
    r = await h.call("POST", f"/v1/referrals/{episode}/risk-review", review, sub="ic-42")  # a supervisor
    assert r.status_code == 200
    rr = r.json()["risk_review"]
    assert rr["required"] and rr["cleared"] and rr["reviews"][0]["reviewed_by"] == "ic-42"
    done = await h.call("POST", f"/v1/referrals/{episode}/complete", {})
    assert done.status_code == 200
    [event] = await h.outbox(episode)
    assert event["data"]["risk_review"]["decision"] == "proceed"
    assert event["data"]["baseline_scores"][0]["flags"] == ["safety_item_positive"]
    assert "safety plan" not in json.dumps(event["data"])


async def test_a_crisis_referral_review_declines(intake_it):
    h = intake_it
    episode, _ = await h.open()
    await step_through(h, episode, phq9={**PHQ9_BASELINE, 9: 3})
    r = await h.call("POST", f"/v1/referrals/{episode}/risk-review", {"decision": "decline_crisis_referral"})
    assert r.json()["status"] == "declined" and r.json()["decline_reasons"] == ["crisis_referral"]
    [event] = await h.outbox(episode)
    assert event["data"]["reason_code"] == "crisis_referral"


async def test_a_risk_review_in_a_one_call_completion_needs_the_clinician_role(intake_it):
    h = intake_it
    episode, _ = await h.open()
    body = {**intake_parts(phq9={**PHQ9_BASELINE, 9: 1}), "risk_review": {"decision": "proceed"}}
    assert (await h.call("POST", f"/v1/referrals/{episode}/complete", body, role="partner")).status_code == 403
    assert (await h.call("POST", f"/v1/referrals/{episode}/complete", body)).status_code == 200


# ---- declining by hand -------------------------------------------------------------------

async def test_declining_is_announced_once(intake_it):
    h = intake_it
    episode, person = await h.open()
    first = await h.call("POST", f"/v1/referrals/{episode}/decline", {"reason_code": "withdrawn"})
    again = await h.call("POST", f"/v1/referrals/{episode}/decline", {"reason_code": "withdrawn"})
    assert first.status_code == again.status_code == 200
    assert first.json()["declined_event_id"] == again.json()["declined_event_id"]
    [event] = await h.outbox(episode)
    check_schema(event)
    assert event["data"] == {**event["data"], "person_id": person, "reason_code": "withdrawn", "reason_codes": ["withdrawn"]}
    assert (await h.call("POST", f"/v1/referrals/{episode}/decline", {"reason_code": "referred_elsewhere"})).status_code == 409
    assert (await h.call("PUT", f"/v1/referrals/{episode}/consent", {"given": True, "method": "written"})).status_code == 409


async def test_a_completed_intake_cannot_be_declined_or_changed(intake_it):
    h = intake_it
    episode, _ = await h.open()
    await h.call("POST", f"/v1/referrals/{episode}/complete", intake_parts())
    assert (await h.call("POST", f"/v1/referrals/{episode}/decline", {"reason_code": "withdrawn"})).status_code == 409
    assert (await h.call("PUT", f"/v1/referrals/{episode}/template", {"template_id": "ipt-12"})).status_code == 409
    assert len(await h.outbox(episode)) == 1


# ---- roles -------------------------------------------------------------------------------

async def test_opening_again_with_the_same_client_referral_id_is_the_same_referral(intake_it):
    h = intake_it
    person, key = f"P-t{uuid.uuid4().hex[:10]}", f"form-{uuid.uuid4().hex[:8]}"
    body = {"person_id": person, "referral_source": "partner-clinic", "target_condition": "depression",
            "client_referral_id": key}
    first = await h.call("POST", "/v1/referrals", body)
    # A retry after a timeout, and two at once: the same episode, nothing new stored.
    again = [await h.call("POST", "/v1/referrals", body)]
    again += await asyncio.gather(*[h.call("POST", "/v1/referrals", body) for _ in range(3)])
    assert first.status_code == 201 and [r.status_code for r in again] == [200] * 4
    assert {r.json()["episode_id"] for r in again} == {first.json()["episode_id"]}
    count = "SELECT count(*) FROM referrals WHERE person_id = $1"
    assert await h.pool.fetchval(count, person) == 1
    # Other content under the key: 409 naming it and the episode it opened; nothing stored.
    r = await h.call("POST", "/v1/referrals", {**body, "target_condition": "anxiety"})
    assert (r.status_code, r.json()["field"], r.json()["episode_id"]) == (409, "client_referral_id", first.json()["episode_id"])
    # Keys are the caller's own: another partner system's identical key opens its own referral.
    other = await h.call("POST", "/v1/referrals", body, role="partner", sub="partner-2")
    assert other.status_code == 201 and other.json()["episode_id"] != first.json()["episode_id"]
    assert await h.pool.fetchval(count, person) == 2
    # Without a key every POST is a new referral (as before); a key with spaces is refused.
    r = await h.call("POST", "/v1/referrals", {**body, "client_referral_id": "Jane Doe"})
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "client_referral_id"), r.text
    audit = await h.pool.fetch("SELECT action FROM audit_log WHERE episode_id = $1 ORDER BY 1",
                               uuid.UUID(first.json()["episode_id"]))
    assert [a["action"] for a in audit] == ["referral.open_repeated"] * 4 + ["referral.opened"]


async def test_the_worklist_pages_oldest_first_with_what_is_missing(intake_it):
    h = intake_it
    clin = f"clin-wl-{uuid.uuid4().hex[:6]}"
    episodes = [(await h.open())[0] for _ in range(3)]
    for ep in episodes:
        assert (await h.call("PUT", f"/v1/referrals/{ep}/clinician", {"clinician_id": clin})).status_code == 200
    await step_through(h, episodes[1], clinician_id=clin)
    assert (await h.call("POST", f"/v1/referrals/{episodes[1]}/complete", {})).status_code == 200

    seen, after = [], None
    while True:
        r = await h.call("GET", "/v1/referrals?" + "&".join(
            [f"clinician_id={clin}", "status=open", "limit=1"] + ([f"after={after}"] if after else [])),
            role="clinician", sub=clin)  # the treating clinician: its worklist holds the referrals assigned to it
        assert r.status_code == 200, r.text
        page = r.json()
        seen += page["referrals"]
        if page["next"] is None:
            break
        after = page["next"]
    assert [x["episode_id"] for x in seen] == [episodes[0], episodes[2]]  # oldest first, the completed one not open
    assert seen[0]["missing"][0] == "consent" and "clinician_id" not in seen[0]["missing"]
    assert seen[0]["clinician_id"] == clin and seen[0]["risk_review_pending"] is False
    done = (await h.call("GET", f"/v1/referrals?clinician_id={clin}&status=completed")).json()["referrals"]
    assert [(x["episode_id"], x["missing"]) for x in done] == [(episodes[1], [])]
    # Audited: who saw which episodes.
    audit = await h.pool.fetch("SELECT detail FROM audit_log WHERE action = 'referral.listed' AND actor = $1", clin)
    assert sorted(e for a in audit for e in json.loads(a["detail"])["episodes"]) == sorted([episodes[0], episodes[2]])
    # Refusals name the parameter; a partner's form cannot list referrals.
    r = await h.call("GET", "/v1/referrals?after=yesterday")
    assert (r.status_code, r.json()["field"]) == (422, "after")
    r = await h.call("GET", "/v1/referrals?status=lost")
    assert r.status_code == 422 and "status" in r.text
    assert (await h.call("GET", "/v1/referrals", role="partner")).status_code == 403


async def test_roles(intake_it):
    h = intake_it
    episode, _ = await h.open()
    # A partner of the referring organisation reads back only the minimal view (tests/integration/intake/test_access.py).
    partner = await h.call("GET", f"/v1/referrals/{episode}", role="partner", sub="partner-clinic-1")
    assert partner.status_code == 200 and partner.json()["view"] == "partner" and "baseline" not in partner.json()
    assert (await h.call("GET", f"/v1/referrals/{episode}", role="clinician", sub="clin-9")).status_code == 200
    assert (await h.call("PUT", f"/v1/referrals/{episode}/consent", {"given": True, "method": "written"},
                         role="patient_app")).status_code == 403
    assert (await h.client.get(f"/v1/referrals/{episode}")).status_code == 401


async def test_the_openapi_document_describes_the_api(intake_it):
    doc = (await intake_it.client.get("/openapi.json")).json()
    for path in ("/v1/referrals", "/v1/referrals/{episode_id}/complete", "/v1/referrals/{episode_id}/risk-review",
                 "/v1/persons/{person_id}/erasure", "/v1/audit"):
        assert path in doc["paths"]
    complete = doc["paths"]["/v1/referrals/{episode_id}/complete"]["post"]
    assert {"200", "409", "422"} <= set(complete["responses"])
    assert "RecordInventory" in doc["components"]["schemas"]
