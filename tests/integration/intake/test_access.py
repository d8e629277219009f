"""Who may see what in intake (architecture.md; issue 10), against real Postgres: a referral
belongs to the organisation that opened it; another organisation's partner, clinician or admin
gets exactly the 404 of an unknown referral and changes nothing; partners get the minimal view;
the README's intake still works for the partner and the clinician who own it; reads and refusals
leave access-audit rows."""

import json
import uuid

import asyncpg
import pytest

from rapport_testing.fixtures import OTHER_ORG, TEST_ORG
from rapport_testing.flows import PHQ9_BASELINE, intake_parts

pytestmark = pytest.mark.integration

AUDIT = "intake_it_audit.access_audit"
CONTACT = {"name": "Alex Example", "email": "alex.example@example.org", "phone": "+44 7700 900123",
           "channel_consent": {"email": True, "sms": True}, "preferred_channel": "sms",
           "quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "Europe/London"}}
NOTE = "passive thoughts, no plan; safety plan agreed"
RATIONALE = "recurrent arguments with partner Sam since the move"
INVENTORY = {"people": [{"role": "partner", "label": "Sam", "closeness": 1, "support": False, "conflict": True,
                         "change_near_onset": True, "notes": "moved out in March"}], "notes": "lives with Sam"}
PHQ9_ITEM9 = {"1": 2, "2": 2, "3": 2, "4": 2, "5": 2, "6": 2, "7": 3, "8": 3, "9": 1}
# Words of the whole record a partner must never get back.
SECRETS = ("passive thoughts", "safety plan", "recurrent arguments", "Sam", "moved out", "alex.example", "900123",
           "Alex Example")


def no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, secret


async def access_rows(h, record_id: str) -> list[tuple]:
    rows = await h.pool.fetch(f"SELECT actor, actor_org, method, route, decision, status, record_org FROM {AUDIT}"
                              " WHERE record_id = $1 ORDER BY seq", record_id)
    return [tuple(r) for r in rows]


# ---- ownership ---------------------------------------------------------------------------

async def test_a_referral_belongs_to_the_openers_organisation_and_names_its_intake_clinician(intake_it):
    h = intake_it
    by_clinician, _ = await h.open()
    r = await h.call("POST", "/v1/referrals", {"person_id": "P-acc-1", "referral_source": "partner-clinic",
                                               "target_condition": "depression"}, role="partner", sub="partner-clinic-1")
    by_partner = r.json()["episode_id"]
    rows = {str(r["episode_id"]): (r["organisation_id"], r["intake_clinician_id"]) for r in await h.pool.fetch(
        "SELECT episode_id, organisation_id, intake_clinician_id FROM referrals WHERE episode_id = ANY($1::uuid[])",
        [uuid.UUID(by_clinician), uuid.UUID(by_partner)])}
    assert rows == {by_clinician: (TEST_ORG, "ic-1"), by_partner: (TEST_ORG, None)}


async def test_a_token_without_an_organisation_cannot_open_a_referral(intake_it):
    h = intake_it
    person = f"P-t{uuid.uuid4().hex[:10]}"
    for role in ("intake_clinician", "partner", "admin"):
        r = await h.call("POST", "/v1/referrals", {"person_id": person, "referral_source": "gp",
                                                   "target_condition": "depression"}, role=role, org="")
        assert (r.status_code, r.json()["field"]) == (422, "org"), r.text
    assert await h.pool.fetchval("SELECT count(*) FROM referrals WHERE person_id = $1", person) == 0


async def test_the_events_carry_the_organisation_and_the_intake_clinician(intake_it):
    h = intake_it
    completed, _ = await h.open()
    assert (await h.call("POST", f"/v1/referrals/{completed}/complete", intake_parts())).status_code == 200
    [event] = await h.outbox(completed)
    assert (event["data"]["organisation_id"], event["data"]["intake_clinician_id"]) == (TEST_ORG, "ic-1")
    declined, _ = await h.open()
    assert (await h.call("POST", f"/v1/referrals/{declined}/decline", {"reason_code": "withdrawn"})).status_code == 200
    [event] = await h.outbox(declined)
    assert event["type"] == "rapport.intake.declined.v1" and event["data"]["organisation_id"] == TEST_ORG


# ---- another organisation: the 404 of an unknown referral, nothing changed ----------------

OTHER_CALLERS = [("partner", "partner-other"), ("intake_clinician", "ic-other"), ("admin", "admin-other")]
REQUESTS = [
    ("POST", "complete", intake_parts()),
    ("GET", "", None),
    ("PUT", "contact", {"email": "attacker@example.org", "phone": "+44 7700 900999",
                        "channel_consent": {"email": True, "sms": True}}),
    ("GET", "contact", None),
    ("PUT", "consent", {"given": True, "method": "written"}),
    ("POST", "baseline", {"instrument": "phq9", "answers": PHQ9_BASELINE}),
    ("PUT", "clinician", {"clinician_id": "clin-other"}),
    ("POST", "decline", {"reason_code": "withdrawn"}),
    ("POST", "risk-review", {"decision": "decline_crisis_referral"}),
]


@pytest.mark.parametrize("role,sub", OTHER_CALLERS, ids=[r for r, _ in OTHER_CALLERS])
async def test_another_organisation_gets_the_404_of_an_unknown_referral_and_changes_nothing(intake_it, role, sub):
    h = intake_it
    episode, person = await h.open()
    assert (await h.call("PUT", f"/v1/referrals/{episode}/contact", CONTACT)).status_code == 200
    before = await h.snapshot(episode)
    contact_before = await h.pool.fetchrow("SELECT * FROM contacts WHERE person_id = $1", person)
    for method, path, body in REQUESTS:
        suffix = f"/{path}" if path else ""
        mine = await h.call(method, f"/v1/referrals/{episode}{suffix}", body, role=role, sub=sub, org=OTHER_ORG)
        unknown_id = str(uuid.uuid4())
        unknown = await h.call(method, f"/v1/referrals/{unknown_id}{suffix}", body, role=role, sub=sub, org=OTHER_ORG)
        if mine.status_code == 403:  # the role may never call this route (partners: contact reads, risk reviews)
            assert unknown.status_code == 403, (method, path)
            continue
        assert (mine.status_code, unknown.status_code) == (404, 404), (method, path, mine.text)
        assert mine.json() == json.loads(unknown.text.replace(unknown_id, episode)), (method, path)
        no_secrets(mine.text)
    assert await h.snapshot(episode) == before
    assert await h.pool.fetchrow("SELECT * FROM contacts WHERE person_id = $1", person) == contact_before


async def test_the_issues_two_requests_by_another_partner_answer_404(intake_it):
    """Issue 10: another partner completed a referral it did not open (and got the risk review,
    rationale, inventory and answers back) and replaced the patient's email and phone."""
    h = intake_it
    episode, person = await h.open()
    await h.call("PUT", f"/v1/referrals/{episode}/contact", CONTACT)
    body = {**intake_parts(phq9={**PHQ9_BASELINE, 9: 1}), "focus": {"primary": "role_dispute", "rationale": RATIONALE},
            "inventory": INVENTORY}
    await h.call("POST", f"/v1/referrals/{episode}/complete", {**body, "risk_review": {"decision": "proceed", "note": NOTE}})
    before = await h.snapshot(episode)

    done = await h.call("POST", f"/v1/referrals/{episode}/complete", {}, role="partner", sub="partner-other", org=OTHER_ORG)
    assert done.status_code == 404 and done.json() == {"type": "urn:rapport:problem:NotFound", "title": "Not Found",
                                                       "status": 404, "error": "NotFound",
                                                       "detail": f"no episode {episode}", "field": "episode_id"}
    assert done.headers["content-type"] == "application/problem+json"
    no_secrets(done.text)
    changed = await h.call("PUT", f"/v1/referrals/{episode}/contact", {"email": "partner-other@example.org",
                                                                      "channel_consent": {"email": True}},
                           role="partner", sub="partner-other", org=OTHER_ORG)
    assert changed.status_code == 404
    assert await h.pool.fetchval("SELECT email FROM contacts WHERE person_id = $1", person) == CONTACT["email"]
    assert await h.pool.fetchval("SELECT count(*) FROM contact_publications WHERE person_id = $1", person) == 1
    assert await h.snapshot(episode) == before


async def test_a_clinician_of_the_organisation_reaches_only_what_it_is_assigned_to(intake_it):
    h = intake_it
    episode, _ = await h.open()  # ic-1 opened it
    for role, sub in (("intake_clinician", "ic-unassigned"), ("clinician", "clin-unassigned")):
        r = await h.call("GET", f"/v1/referrals/{episode}", role=role, sub=sub)
        assert (r.status_code, r.json()["detail"]) == (404, f"no episode {episode}")
    assert (await h.call("PUT", f"/v1/referrals/{episode}/clinician", {"clinician_id": "clin-unassigned"})).status_code == 200
    assert (await h.call("GET", f"/v1/referrals/{episode}", role="clinician", sub="clin-unassigned")).status_code == 200
    # The treating clinician reads the record; contact details stay with intake.
    assert (await h.call("GET", f"/v1/referrals/{episode}/contact", role="clinician",
                         sub="clin-unassigned")).status_code == 403
    # A care-team supervisor of the organisation reaches it; of another organisation, never.
    assert (await h.call("GET", f"/v1/referrals/{episode}", sub="ic-7")).status_code == 200
    assert (await h.call("GET", f"/v1/referrals/{episode}", sub="ic-7", org=OTHER_ORG)).status_code == 404


async def test_the_worklist_holds_only_what_the_caller_may_see(intake_it):
    h = intake_it
    mine, _ = await h.open()
    theirs = (await h.call("POST", "/v1/referrals", {"person_id": "P-other-1", "referral_source": "gp",
                                                     "target_condition": "depression"},
                           sub="ic-other", org=OTHER_ORG)).json()["episode_id"]

    async def listed(**who) -> set[str]:
        seen, after = set(), None
        while True:
            r = await h.call("GET", "/v1/referrals?limit=500" + (f"&after={after}" if after else ""), **who)
            assert r.status_code == 200, r.text
            seen |= {x["episode_id"] for x in r.json()["referrals"]}
            if (after := r.json()["next"]) is None:
                return seen

    assert mine in await listed() and theirs not in await listed()  # ic-1: what it opened
    assert mine not in await listed(sub="ic-unassigned")
    assert mine in await listed(sub="ic-7") and theirs not in await listed(sub="ic-7")  # supervisor: its organisation
    assert mine in await listed(role="admin") and theirs not in await listed(role="admin")
    assert await listed(sub="ic-other", org=OTHER_ORG) >= {theirs} and mine not in await listed(sub="ic-other",
                                                                                               org=OTHER_ORG)
    assert await listed(role="admin", org="") == set()  # an admin of no organisation sees nothing
    assert (await h.call("GET", "/v1/referrals", role="partner")).status_code == 403


async def test_erasure_and_the_audit_log_are_the_callers_organisations(intake_it):
    h = intake_it
    episode, person = await h.open()
    await h.call("PUT", f"/v1/referrals/{episode}/contact", CONTACT)
    await h.call("PUT", f"/v1/referrals/{episode}/focus", {"primary": "grief", "rationale": RATIONALE})
    unknown = await h.call("POST", "/v1/persons/P-nobody-at-all/erasure", role="admin", sub="admin-other", org=OTHER_ORG)
    other = await h.call("POST", f"/v1/persons/{person}/erasure", role="admin", sub="admin-other", org=OTHER_ORG)
    assert (other.status_code, unknown.status_code) == (404, 404)
    assert other.json() == json.loads(unknown.text.replace("P-nobody-at-all", person))
    assert await h.pool.fetchval("SELECT count(*) FROM contacts WHERE person_id = $1", person) == 1
    view = (await h.call("GET", f"/v1/referrals/{episode}")).json()
    assert view["focus"]["rationale"] == RATIONALE and view["personal_text_erased_at"] is None

    trail = (await h.call("GET", f"/v1/audit?episode_id={episode}", role="admin", org=OTHER_ORG)).json()["entries"]
    assert trail == []
    trail = (await h.call("GET", f"/v1/audit?episode_id={episode}", role="admin")).json()["entries"]
    assert [e["action"] for e in trail][:3] == ["referral.opened", "contact.recorded", "focus.recorded"]
    # Every erasure attempt is in the access audit, with the person as its record.
    assert [(r[0], r[4], r[5]) for r in await access_rows(h, person)] == [("admin-other", "not_found", 404)]
    assert (await h.call("POST", f"/v1/persons/{person}/erasure", role="admin", sub="dpo-1")).status_code == 200
    assert [(r[0], r[4], r[5], r[6]) for r in await access_rows(h, person)][-1] == ("dpo-1", "allowed", 200, TEST_ORG)


# ---- partners: their organisation's referrals, the minimal view ----------------------------

async def test_a_partners_answers_never_carry_notes_inventory_rationale_answers_or_contact(intake_it):
    h = intake_it
    p = {"role": "partner", "sub": "partner-clinic-1"}
    opened = await h.call("POST", "/v1/referrals", {"person_id": f"P-t{uuid.uuid4().hex[:8]}", "referral_source":
                                                    "partner-clinic", "target_condition": "depression"}, **p)
    assert opened.status_code == 201
    episode = opened.json()["episode_id"]
    answers = [opened]
    answers.append(await h.call("PUT", f"/v1/referrals/{episode}/contact", CONTACT, **p))
    answers.append(await h.call("PUT", f"/v1/referrals/{episode}/inventory", INVENTORY, **p))
    answers.append(await h.call("PUT", f"/v1/referrals/{episode}/focus", {"primary": "role_dispute",
                                                                         "rationale": RATIONALE}, **p))
    answers.append(await h.call("POST", f"/v1/referrals/{episode}/baseline", {"instrument": "phq9",
                                                                             "answers": PHQ9_ITEM9}, **p))
    # The organisation's supervisor records the risk review (with a note) the partner cannot.
    assert (await h.call("POST", f"/v1/referrals/{episode}/risk-review", {"decision": "proceed", "note": NOTE},
                         sub="ic-7")).status_code == 200
    answers.append(await h.call("GET", f"/v1/referrals/{episode}", **p))
    parts = intake_parts(phq9={**PHQ9_BASELINE, 9: 1})
    del parts["baseline"], parts["inventory"], parts["focus"]
    answers.append(await h.call("POST", f"/v1/referrals/{episode}/complete", parts, **p))
    for r in answers:
        assert r.status_code in (200, 201), r.text
        view = r.json()
        assert view["view"] == "partner" and view["episode_id"] == episode
        assert set(view) == {"view", "episode_id", "person_id", "status", "referral_source", "target_condition",
                             "opened_at", "template_id", "missing", "completed_at", "completed_event_id",
                             "declined_at", "decline_reasons", "declined_event_id"}
        no_secrets(r.text)
    assert answers[-1].json()["status"] == "completed" and answers[-1].json()["completed_event_id"]
    assert answers[1].json()["missing"][:2] == ["consent", "baseline.phq9"]  # what the form still has to send
    # The clinician who owns it sees the whole record.
    whole = (await h.call("GET", f"/v1/referrals/{episode}", sub="ic-7")).json()
    assert whole["risk_review"]["reviews"][0]["note"] == NOTE and whole["focus"]["rationale"] == RATIONALE
    # Contact details are never read back by a partner.
    assert (await h.call("GET", f"/v1/referrals/{episode}/contact", **p)).status_code == 403


# ---- the README's intake, by the clinician and by the partner who own it -------------------

async def readme_steps(h, episode: str, **who) -> dict:
    r = f"/v1/referrals/{episode}"
    for method, path, body in [
        ("PUT", "consent", {"given": True, "method": "written"}),
        ("PUT", "contact", CONTACT),
        ("POST", "baseline", {"instrument": "phq9", "answers": PHQ9_ITEM9}),
        ("PUT", "inventory", {"people": [
            {"role": "partner", "label": "Sam", "closeness": 1, "support": False, "conflict": True, "change_near_onset": True},
            {"role": "friend", "closeness": 2, "support": True, "conflict": False, "change_near_onset": False}]}),
        ("PUT", "focus", {"primary": "role_dispute", "secondary": "role_transition", "rationale": RATIONALE}),
        ("PUT", "template", {"template_id": "ipt-standard"}),
        ("PUT", "clinician", {"clinician_id": "clin-001"}),
        ("PUT", "availability", {"timezone": "Europe/London", "slots": [{"weekday": 2, "start": "09:00", "end": "12:00"}]}),
        ("PUT", "eligibility", {"age_years": 34, "exclusions": []}),
    ]:
        answer = await h.call(method, f"{r}/{path}", body, **who)
        assert answer.status_code == 200, (path, answer.text)
    bad = await h.call("PUT", f"{r}/focus", {"primary": "grief", "secondary": "grief", "rationale": "x"}, **who)
    assert (bad.status_code, bad.json()["field"]) == (422, "secondary")
    refused = await h.call("POST", f"{r}/complete", {}, **who)
    assert (refused.status_code, refused.json()["missing"]) == (409, ["risk_review"])
    return answer.json()


async def test_the_readme_intake_by_the_intake_clinician_who_opened_it(intake_it):
    h = intake_it
    episode, _ = await h.open("P-7f3a9c")
    view = await readme_steps(h, episode)
    assert view["missing"] == ["risk_review"] and view["baseline"][0]["flags"] == ["safety_item_positive"]
    review = await h.call("POST", f"/v1/referrals/{episode}/risk-review", {"decision": "proceed", "note": NOTE})
    assert review.json()["risk_review"]["cleared"] is True
    first = await h.call("POST", f"/v1/referrals/{episode}/complete", {})
    again = await h.call("POST", f"/v1/referrals/{episode}/complete", {})
    assert first.status_code == again.status_code == 200 and first.json()["status"] == "completed"
    assert first.json()["completed_event_id"] == again.json()["completed_event_id"]
    assert (await h.call("GET", f"/v1/referrals/{episode}/contact")).json()["contact"]["email"] == CONTACT["email"]


async def test_the_readme_intake_by_the_partner_that_referred_it(intake_it):
    h = intake_it
    p = {"role": "partner", "sub": "partner-clinic-1"}
    opened = await h.call("POST", "/v1/referrals", {"person_id": "P-7f3a9d", "referral_source": "partner-clinic",
                                                    "target_condition": "depression"}, **p)
    episode = opened.json()["episode_id"]
    view = await readme_steps(h, episode, **p)
    assert view["view"] == "partner" and view["missing"] == ["risk_review"]
    # The risk review is a clinician's: the organisation's supervisor (care team) records it.
    assert (await h.call("POST", f"/v1/referrals/{episode}/risk-review", {"decision": "proceed"}, **p)).status_code == 403
    assert (await h.call("POST", f"/v1/referrals/{episode}/risk-review", {"decision": "proceed", "note": NOTE},
                         sub="ic-42")).status_code == 200
    done = await h.call("POST", f"/v1/referrals/{episode}/complete", {}, **p)
    assert done.status_code == 200 and done.json()["status"] == "completed" and done.json()["completed_event_id"]
    no_secrets(done.text)
    [event] = await h.outbox(episode)
    assert (event["data"]["organisation_id"], event["data"]["intake_clinician_id"]) == (TEST_ORG, None)


# ---- the access audit: reads and refusals --------------------------------------------------

async def test_reads_and_refusals_leave_access_audit_rows(intake_it):
    h = intake_it
    episode, _ = await h.open()
    await h.call("GET", f"/v1/referrals/{episode}", sub="ic-1")
    await h.call("GET", f"/v1/referrals/{episode}/contact", role="admin", sub="admin-1")
    await h.call("GET", f"/v1/referrals/{episode}", role="partner", sub="partner-other", org=OTHER_ORG)
    await h.call("PUT", f"/v1/referrals/{episode}/contact", {"email": "x@example.org"}, role="partner",
                 sub="partner-other", org=OTHER_ORG)
    await h.call("PUT", f"/v1/referrals/{episode}/consent", {"given": True, "method": "written"})  # allowed write: no row
    unknown = str(uuid.uuid4())
    await h.call("GET", f"/v1/referrals/{unknown}", sub="ic-1")
    rows = await access_rows(h, episode)
    assert rows == [
        ("ic-1", TEST_ORG, "GET", "/v1/referrals/{episode_id}", "allowed", 200, TEST_ORG),
        ("admin-1", TEST_ORG, "GET", "/v1/referrals/{episode_id}/contact", "allowed", 200, TEST_ORG),
        ("partner-other", OTHER_ORG, "GET", "/v1/referrals/{episode_id}", "refused", 404, TEST_ORG),
        ("partner-other", OTHER_ORG, "PUT", "/v1/referrals/{episode_id}/contact", "refused", 404, TEST_ORG),
    ]
    assert [(r[0], r[4]) for r in await access_rows(h, unknown)] == [("ic-1", "not_found")]
    # The worklist and the audit log are audited reads too (no record: record_id NULL).
    await h.call("GET", "/v1/referrals", sub="ic-1")
    await h.call("GET", f"/v1/audit?episode_id={episode}", role="admin", sub="admin-1")
    routes = [tuple(r) for r in await h.pool.fetch(
        f"SELECT route, decision FROM {AUDIT} WHERE record_id IS NULL AND actor IN ('ic-1', 'admin-1')"
        " ORDER BY seq DESC LIMIT 2")]
    assert routes == [("/v1/audit", "allowed"), ("/v1/referrals", "allowed")]
    # An admin reads its organisation's access audit over HTTP; another organisation's admin sees none of it.
    page = (await h.call("GET", f"/v1/access-audit?record_id={episode}", role="admin")).json()["entries"]
    assert [(e["actor"], e["decision"]) for e in page] == [(r[0], r[4]) for r in rows]
    other = (await h.call("GET", f"/v1/access-audit?record_id={episode}", role="admin", org="org-third")).json()
    assert other["entries"] == []


async def test_the_service_role_cannot_change_the_access_audit(intake_it):
    h = intake_it
    episode, _ = await h.open()
    await h.call("GET", f"/v1/referrals/{episode}")
    conn = await asyncpg.connect(h.dsn)
    try:
        for sql in (f"UPDATE {AUDIT} SET actor = 'x'", f"DELETE FROM {AUDIT}", f"TRUNCATE {AUDIT}"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(sql)
    finally:
        await conn.close()
