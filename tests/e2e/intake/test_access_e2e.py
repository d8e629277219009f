"""Issue 10 on the running service (ES256 tokens verified against a JWKS): a partner of another
organisation completing, reading and changing the contact details of a referral it did not open
gets the 404 of an unknown referral and changes nothing; the partner that referred it still
walks its intake, seeing only the minimal view; the reads and refusals are in the access audit."""

import uuid

import pytest

from rapport_testing.db import fetchval
from rapport_testing.fixtures import OTHER_ORG, TEST_ORG
from rapport_testing.flows import PHQ9_BASELINE, intake_parts

pytestmark = pytest.mark.e2e

CONTACT = {"email": "owner.e2e@example.org", "phone": "+44 7700 900321", "channel_consent": {"email": True, "sms": True}}
NOTE = "passive thoughts, no plan; safety plan agreed"


def open_as(api, person: str, **who) -> str:
    r = api.call("POST", "/v1/referrals", {"person_id": person, "referral_source": "partner-clinic",
                                           "target_condition": "depression"}, **who)
    assert r.status_code == 201, r.text
    return r.json()["episode_id"]


async def test_another_partner_gets_404_and_the_owning_partner_walks_its_intake(system, service_dsns, api):
    partner = {"role": "partner", "sub": "partner-e2e"}
    other = {"role": "partner", "sub": "partner-other-e2e", "org": OTHER_ORG}
    person = f"P-t{uuid.uuid4().hex[:10]}"
    episode = open_as(api, person, **partner)
    assert api.call("PUT", f"/v1/referrals/{episode}/contact", CONTACT, **partner).status_code == 200
    body = intake_parts(phq9={**PHQ9_BASELINE, 9: 1})
    body["focus"] = {**body["focus"], "rationale": "rationale-e2e naming the partner"}
    steps = [("PUT", "consent", body["consent"]), *[("POST", "baseline", b) for b in body["baseline"]],
             ("PUT", "inventory", body["inventory"]), ("PUT", "focus", body["focus"]),
             ("PUT", "template", {"template_id": body["template_id"]}),
             ("PUT", "clinician", {"clinician_id": body["clinician_id"]}),
             ("PUT", "availability", body["availability"]), ("PUT", "eligibility", body["eligibility"])]
    for method, path, payload in steps:
        r = api.call(method, f"/v1/referrals/{episode}/{path}", payload, **partner)
        assert r.status_code == 200 and r.json()["view"] == "partner", (path, r.text)
    r = api.call("POST", f"/v1/referrals/{episode}/complete", {}, **partner)
    assert (r.status_code, r.json()["missing"]) == (409, ["risk_review"])
    # The organisation's supervisor records the risk review (the admin adds it to the care team,
    # then puts the team back as it was: other tests share the system).
    admin = {"role": "admin", "sub": "admin-e2e"}
    team = api.call("GET", "/v1/care-team", **admin).json()["entries"]
    care = api.call("PUT", "/v1/care-team", {"entries": [*team, {"clinician_id": "ic-sup-e2e", "duty": "supervisor"}]},
                    **admin)
    assert care.status_code == 200, care.text
    try:
        assert api.call("POST", f"/v1/referrals/{episode}/risk-review", {"decision": "proceed", "note": NOTE},
                        sub="ic-sup-e2e").status_code == 200
    finally:
        assert api.call("PUT", "/v1/care-team", {"entries": team}, **admin).status_code == 200

    # The requests, by a partner of another organisation: the 404 of an unknown referral.
    unknown = str(uuid.uuid4())
    for method, path, payload in (("POST", "/complete", {}), ("GET", "", None),
                                  ("PUT", "/contact", {"email": "attacker@example.org", "channel_consent": {"email": True}})):
        theirs = api.call(method, f"/v1/referrals/{episode}{path}", payload, **other)
        missing = api.call(method, f"/v1/referrals/{unknown}{path}", payload, **other)
        assert (theirs.status_code, missing.status_code) == (404, 404), (path, theirs.text)
        assert theirs.json() == {**missing.json(), "detail": missing.json()["detail"].replace(unknown, episode)}
        assert "safety plan" not in theirs.text and "rationale-e2e" not in theirs.text
    email = await fetchval(service_dsns["intake"], "SELECT email FROM contacts WHERE person_id = $1", person)
    assert email == CONTACT["email"]
    assert await fetchval(service_dsns["intake"], "SELECT status FROM referrals WHERE episode_id = $1",
                          uuid.UUID(episode)) == "open"

    # The owning partner completes; its answer is the minimal view.
    done = api.call("POST", f"/v1/referrals/{episode}/complete", {}, **partner)
    assert done.status_code == 200 and done.json()["status"] == "completed" and done.json()["view"] == "partner"
    for secret in ("safety plan", "rationale-e2e", "owner.e2e", "900321", "answers", "inventory"):
        assert secret not in done.text

    # Refusals and reads are in intake's access audit, readable by the organisation's admin.
    trail = api.call("GET", f"/v1/access-audit?record_id={episode}", role="admin", sub="admin-e2e").json()["entries"]
    refused = [(e["actor"], e["method"], e["route"]) for e in trail if e["decision"] == "refused"]
    assert refused == [("partner-other-e2e", "POST", "/v1/referrals/{episode_id}/complete"),
                       ("partner-other-e2e", "GET", "/v1/referrals/{episode_id}"),
                       ("partner-other-e2e", "PUT", "/v1/referrals/{episode_id}/contact")]
    assert all(e["record_org"] == TEST_ORG for e in trail)
