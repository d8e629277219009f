"""Pseudonymous ids at intake's HTTP edge (issue 17, item 1): a person id, a clinician id, a care
team member or a token's organisation that looks like a phone number, an e-mail address, a
national or medical record number is refused with 422 naming the field and the reason (never the
value), and nothing is written."""

from __future__ import annotations

import pytest

from rapport_testing.fixtures import TEST_ORG

SUPERVISORS = ("ic-7", "ic-42", "clin-9")  # conftest's care team of TEST_ORG

ISSUE_EXAMPLES = [  # (person id, words in the reason)
    ("943-476-5919", "looks like a phone number"),
    ("123-45-6789", "looks like a national or medical record number"),
    ("alex.example", "looks like an email address"),
    ("MRN:00012345", "looks like a national or medical record number"),
    ("+44 7700 900123", "looks like a phone number"),
    ("QQ123456C", "looks like a national or medical record number"),
    ("P-00012345", "looks like a national or medical record number"),
]


async def _written(h, person_id: str) -> tuple[int, int, int]:
    return (await h.pool.fetchval("SELECT count(*) FROM referrals WHERE person_id = $1", person_id),
            await h.pool.fetchval("SELECT count(*) FROM outbox"),
            await h.pool.fetchval("SELECT count(*) FROM audit_log"))


@pytest.mark.parametrize("person_id,reason", ISSUE_EXAMPLES, ids=[p for p, _ in ISSUE_EXAMPLES])
async def test_a_referral_for_a_person_id_that_looks_like_personal_data_is_422_and_writes_nothing(
        intake_it, person_id, reason):
    h = intake_it
    before = await _written(h, person_id)
    r = await h.call("POST", "/v1/referrals", {"person_id": person_id, "referral_source": "gp",
                                               "target_condition": "depression"})
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["errors"][0]["field"] == "person_id" and problem["detail"].startswith("person_id: ")
    assert reason in problem["detail"], problem
    assert person_id not in r.text  # the answer never repeats the value
    assert await _written(h, person_id) == before


async def test_an_opaque_person_id_is_accepted(intake_it):
    episode, person = await intake_it.open("P-qq3qttcqbuec4k6a")  # P- + base32(HMAC-SHA256(...))[:16]
    assert person == "P-qq3qttcqbuec4k6a" and episode


async def test_a_clinician_id_that_looks_like_a_phone_number_is_refused(intake_it):
    h = intake_it
    episode, _ = await h.open()
    before = await h.snapshot(episode)
    r = await h.call("PUT", f"/v1/referrals/{episode}/clinician", {"clinician_id": "943-476-5919"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "clinician_id"
    assert "looks like a phone number" in r.json()["detail"]
    assert await h.snapshot(episode) == before


async def test_a_care_team_member_that_looks_like_an_email_address_is_refused(intake_it):
    h = intake_it
    body = {"entries": [{"clinician_id": "clin-7", "duty": "supervisor"},
                        {"clinician_id": "jane.doe", "duty": "supervisor"}]}
    r = await h.call("PUT", "/v1/care-team", body, role="admin", sub="admin-1")
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "entries.1.clinician_id" and "looks like an email address" in r.json()["detail"]
    team = (await h.call("GET", "/v1/care-team", role="admin", sub="admin-1")).json()["entries"]
    assert sorted(e["clinician_id"] for e in team) == sorted(SUPERVISORS)  # unchanged


async def test_a_token_whose_organisation_looks_like_a_number_cannot_open_a_referral(intake_it):
    h = intake_it
    r = await h.call("POST", "/v1/referrals", {"person_id": "P-t7f3a9c", "referral_source": "gp",
                                               "target_condition": "depression"}, org="12345678")
    assert r.status_code == 422 and r.json()["field"] == "org", r.text
    assert TEST_ORG != "12345678"


async def test_a_person_recorded_before_the_rule_can_still_be_erased(intake_it):
    """Look-ups of existing records accept any recorded id: erasing a person recorded under a
    phone-number-like id is not refused as invalid (here: nobody by that id, 404)."""
    r = await intake_it.call("POST", "/v1/persons/943-476-5919/erasure", role="admin", sub="admin-1")
    assert r.status_code == 404, r.text
