"""Who may see what in the scheduler (access.yaml): a course is read and operated by its assigned
clinician or the organisation's care team (set over PUT /v1/care-team), read by its
organisation's admin; anyone else gets the 404 of a course that does not exist, and nothing
changes. Reads and refusals leave rows in the access audit."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from rapport_shared.http.auth import TokenAuthority
from rapport_testing.fixtures import OTHER_ORG, TEST_ORG, TEST_SECRET
from rapport_scheduler.service_layer import handlers
from rapport_testing.scheduler import intake_completed

pytestmark = pytest.mark.integration
TOKENS = TokenAuthority(TEST_SECRET, org=TEST_ORG)


def bearer(sub: str, *roles: str, org: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS.issue(sub, roles, org=org)}"}


def clinician() -> str:
    return f"clin-t{uuid.uuid4().hex[:8]}"


async def plan(h, settings=None, **kw):
    ik = intake_completed(completed_at=h.clock.now(), clinician_id=kw.pop("clinician_id", None) or clinician(), **kw)
    async with (h.uow_for(settings) if settings else h.uow)() as uow:
        await handlers.plan_course(ik, uow)
    async with h.uow() as uow:
        return ik, await uow.courses.get_by_episode(ik.episode_id)


def requests(course) -> list[tuple[str, str, dict | None]]:
    """Every course route of the scheduler, on ``course`` (reads, then commands with valid bodies)."""
    base = f"/v1/courses/{course.course_id}"
    s1, s2 = course.live_at(1), course.live_at(2)
    return [
        ("GET", base, None),
        ("GET", f"/v1/courses/by-episode/{course.episode_id}", None),
        ("GET", f"{base}/checklist", None),
        ("GET", f"{base}/timers", None),
        ("POST", f"{base}/sessions/{s1.session_id}/attend", None),
        ("POST", f"{base}/sessions/{s1.session_id}/miss", None),
        ("POST", f"{base}/sessions/{s2.session_id}/reschedule",
         {"starts_at": (s2.starts_at + timedelta(hours=1)).isoformat(), "reason_code": "patient_request"}),
        ("POST", f"{base}/sessions/{s2.session_id}/cancel", {"cancelled_by": "patient", "reason_code": "holiday"}),
        ("POST", f"{base}/contract", {"contracted_sessions": 14, "reason_code": "good_progress"}),
        ("PUT", f"{base}/checklist/diagnosis", {}),
        ("POST", f"{base}/maintenance", {"sessions": 3}),
        ("POST", f"{base}/withdraw", {"reason": "withdrawn"}),
    ]


def missing_twin(method: str, url: str, course) -> tuple[str, str]:
    """The same request on an id that does not exist (course or episode), and that id."""
    if "/by-episode/" in url:
        other = str(uuid.uuid4())
        return url.replace(str(course.episode_id), other), other
    other = str(uuid.uuid4())
    return url.replace(str(course.course_id), other), other


async def assert_like_missing(client, headers, course, h) -> None:
    """Every course route answers ``headers`` exactly as for a course that does not exist, and
    nothing is written."""
    before = await h.counts()
    for method, url, body in requests(course):
        r = await client.request(method, url, headers=headers, **({"json": body} if body is not None else {}))
        twin, other = missing_twin(method, url, course)
        m = await client.request(method, twin, headers=headers, **({"json": body} if body is not None else {}))
        assert r.status_code == 404 and m.status_code == 404, (method, url, r.status_code, r.text)
        mine = str(course.episode_id) if "/by-episode/" in url else str(course.course_id)
        assert r.json() == {k: (v.replace(other, mine) if isinstance(v, str) else v) for k, v in m.json().items()}, \
            (url, r.json(), m.json())
        assert dict(r.headers).keys() == dict(m.headers).keys()
    assert await h.counts() == before  # nothing changed


async def test_the_assigned_clinician_reads_and_operates_the_course(h, client):
    _, course = await plan(h)
    me = bearer(course.clinician_id, "clinician")
    for method, url, _ in requests(course)[:4]:
        assert (await client.request(method, url, headers=me)).status_code == 200, url
    h.clock.set(course.live_at(1).ends_at)
    r = await client.post(f"/v1/courses/{course.course_id}/sessions/{course.live_at(1).session_id}/attend", headers=me)
    assert r.status_code == 200 and r.json()["course"]["attended_sessions"] == 1


async def test_another_clinician_of_the_organisation_without_a_duty_gets_the_404_of_a_missing_course(h, client):
    _, course = await plan(h)
    await assert_like_missing(client, bearer(clinician(), "clinician"), course, h)


async def test_a_clinician_of_another_organisation_cannot_even_when_assigned_by_id(h, client):
    _, course = await plan(h)
    await assert_like_missing(client, bearer(course.clinician_id, "clinician", org=OTHER_ORG), course, h)
    # ... nor an admin of the other organisation (reads) ...
    r = await client.get(f"/v1/courses/{course.course_id}", headers=bearer("adm-x", "admin", org=OTHER_ORG))
    assert r.status_code == 404 and r.json()["field"] == "course_id"
    # ... nor a token that names no organisation.
    no_org = {"Authorization": f"Bearer {TokenAuthority(TEST_SECRET).issue(course.clinician_id, ['clinician'])}"}
    assert (await client.get(f"/v1/courses/{course.course_id}", headers=no_org)).status_code == 404


async def test_a_supervisor_set_over_http_reaches_the_organisations_courses(h, client):
    _, course = await plan(h)
    sup, oncall_later, other_org_sup = clinician(), clinician(), clinician()
    admin = bearer("adm-care", "admin")
    base = f"/v1/courses/{course.course_id}"
    before = (await client.get(base, headers=bearer(sup, "clinician"))).status_code
    assert before == 404
    now = h.clock.now()
    r = await client.put("/v1/care-team", headers=admin, json={"entries": [
        {"clinician_id": sup, "duty": "supervisor"},
        {"clinician_id": oncall_later, "duty": "on_call", "starts_at": (now + timedelta(days=1)).isoformat(),
         "ends_at": (now + timedelta(days=2)).isoformat()}]})
    assert r.status_code == 200, r.text
    # A supervisor of another organisation (its own care team) does not reach this one's course.
    assert (await client.put("/v1/care-team", headers=bearer("adm-o", "admin", org=OTHER_ORG), json={"entries": [
        {"clinician_id": other_org_sup, "duty": "supervisor"}]})).status_code == 200
    try:
        supervisor = bearer(sup, "clinician")
        assert (await client.get(base, headers=supervisor)).status_code == 200
        # On call only within the window.
        assert (await client.get(base, headers=bearer(oncall_later, "clinician"))).status_code == 404
        h.clock.set(now + timedelta(days=1, hours=1))
        assert (await client.get(base, headers=bearer(oncall_later, "clinician"))).status_code == 200
        h.clock.set(course.live_at(1).ends_at)  # after the window
        assert (await client.get(base, headers=bearer(oncall_later, "clinician"))).status_code == 404
        r = await client.post(f"{base}/sessions/{course.live_at(1).session_id}/attend", headers=supervisor)
        assert r.status_code == 200, r.text
        r = await client.get(base, headers=bearer(other_org_sup, "clinician", org=OTHER_ORG))
        assert r.status_code == 404
    finally:
        for org in (TEST_ORG, OTHER_ORG):
            await client.put("/v1/care-team", headers=bearer("adm-care", "admin", org=org), json={"entries": []})
    assert (await client.get(base, headers=bearer(sup, "clinician"))).status_code == 404  # duty removed


async def test_admin_reads_its_organisations_courses_but_records_no_clinical_fact(h, client):
    _, course = await plan(h)
    admin = bearer("adm-1", "admin")
    for method, url, _ in requests(course)[:4]:
        assert (await client.request(method, url, headers=admin)).status_code == 200, url
    before = await h.counts()
    for method, url, body in requests(course)[4:]:
        r = await client.request(method, url, headers=admin, **({"json": body} if body is not None else {}))
        assert r.status_code == 403, (url, r.text)
    assert await h.counts() == before


async def test_operators_and_partners_reach_no_course(h, client):
    _, course = await plan(h)
    for who in (bearer("op-1", "operator"), bearer("partner-1", "partner"), bearer("metrics-1", "metrics"),
                bearer(course.person_id, "patient_app")):
        for method, url, body in requests(course):
            r = await client.request(method, url, headers=who, **({"json": body} if body is not None else {}))
            assert r.status_code == 403, (url, r.text)
    assert (await client.get("/v1/clock", headers=bearer("op-1", "operator"))).status_code == 200
    assert (await client.get("/v1/clock", headers=bearer(course.clinician_id, "clinician"))).status_code == 200
    assert (await client.get("/v1/closures", headers=bearer("op-1", "operator"))).status_code == 403


async def test_working_hours_are_read_by_their_clinician_or_an_admin(h, client):
    me, colleague = clinician(), clinician()
    admin = bearer("adm-1", "admin")
    hours = {"timezone": "Europe/London", "slots": [{"weekday": 1, "start": "09:00", "end": "12:00"}]}
    assert (await client.put(f"/v1/clinicians/{me}/working-hours", headers=admin, json=hours)).status_code == 200
    assert (await client.put(f"/v1/clinicians/{me}/working-hours", headers=bearer(me, "clinician"),
                             json=hours)).status_code == 403
    mine = await client.get(f"/v1/clinicians/{me}/working-hours", headers=bearer(me, "clinician"))
    assert mine.status_code == 200 and mine.json()["default"] is False
    assert (await client.get(f"/v1/clinicians/{me}/working-hours", headers=admin)).json() == mine.json()
    r = await client.get(f"/v1/clinicians/{me}/working-hours", headers=bearer(colleague, "clinician"))
    assert r.status_code == 404 and r.json()["field"] == "clinician_id"
    assert (await client.get("/v1/closures", headers=bearer(me, "clinician"))).status_code == 200


async def test_the_organisation_comes_from_the_intake_event_else_the_default(h, client, make_client):
    _, named = await plan(h)
    _, legacy = await plan(h, organisation_id=None)  # an older producer: no field, no default configured
    _, defaulted = await plan(h, settings=h.settings.model_copy(update={"default_organisation": TEST_ORG}),
                              organisation_id=None)
    orgs = {r["course_id"]: r["organisation_id"] for r in await h.fetch(
        "SELECT course_id, organisation_id FROM courses WHERE course_id = ANY($1)",
        [named.course_id, legacy.course_id, defaulted.course_id])}
    assert orgs == {named.course_id: TEST_ORG, legacy.course_id: None, defaulted.course_id: TEST_ORG}
    # A course of no organisation is reached by no one through a relation ...
    r = await client.get(f"/v1/courses/{legacy.course_id}", headers=bearer(legacy.clinician_id, "clinician"))
    assert r.status_code == 404
    # ... until the service is told which organisation such records belong to.
    async with make_client(h.settings.model_copy(update={"default_organisation": TEST_ORG})) as c:
        r = await c.get(f"/v1/courses/{legacy.course_id}", headers=bearer(legacy.clinician_id, "clinician"))
        assert r.status_code == 200


async def test_a_malformed_id_answers_like_a_missing_one(h, client):
    me = bearer(clinician(), "clinician")
    r = await client.get("/v1/courses/not-a-uuid", headers=me)
    m = await client.get(f"/v1/courses/{uuid.uuid4()}", headers=me)
    assert r.status_code == m.status_code == 404 and r.json()["field"] == m.json()["field"] == "course_id"


async def test_reads_and_refusals_are_in_the_access_audit(h, client):
    _, course = await plan(h)
    owner, stranger = course.clinician_id, clinician()
    cid = str(course.course_id)
    assert (await client.get(f"/v1/courses/{cid}", headers=bearer(owner, "clinician"))).status_code == 200
    assert (await client.get(f"/v1/courses/by-episode/{course.episode_id}",
                             headers=bearer(owner, "clinician"))).status_code == 200
    assert (await client.get(f"/v1/courses/{cid}", headers=bearer(stranger, "clinician"))).status_code == 404
    assert (await client.post(f"/v1/courses/{cid}/withdraw", headers=bearer(stranger, "clinician"),
                              json={"reason": "withdrawn"})).status_code == 404
    assert (await client.get(f"/v1/courses/{cid}", headers=bearer(owner, "clinician", org=OTHER_ORG))).status_code == 404
    missing = str(uuid.uuid4())
    assert (await client.get(f"/v1/courses/{missing}", headers=bearer(owner, "clinician"))).status_code == 404

    rows = await h.fetch(f"SELECT actor, actor_org, method, route, record_param, record_id, record_org, decision, status"
                         f" FROM {h.schema}_audit.access_audit WHERE record_id = ANY($1) ORDER BY seq",
                         [cid, str(course.episode_id), missing])
    got = [(r["actor"], r["actor_org"], r["method"], r["route"], r["record_id"], r["record_org"], r["decision"],
            r["status"]) for r in rows]
    assert got == [
        (owner, TEST_ORG, "GET", "/v1/courses/{course_id}", cid, TEST_ORG, "allowed", 200),
        (owner, TEST_ORG, "GET", "/v1/courses/by-episode/{episode_id}", str(course.episode_id), TEST_ORG, "allowed", 200),
        (stranger, TEST_ORG, "GET", "/v1/courses/{course_id}", cid, TEST_ORG, "refused", 404),
        (stranger, TEST_ORG, "POST", "/v1/courses/{course_id}/withdraw", cid, TEST_ORG, "refused", 404),
        (owner, OTHER_ORG, "GET", "/v1/courses/{course_id}", cid, TEST_ORG, "refused", 404),
        (owner, TEST_ORG, "GET", "/v1/courses/{course_id}", missing, None, "not_found", 404),
    ]
    # The organisation's admin reads them (by record, with a cursor); another organisation's does not.
    page = (await client.get("/v1/access-audit", headers=bearer("adm-1", "admin"), params={"record_id": cid})).json()
    assert [e["decision"] for e in page["entries"]] == ["allowed", "refused", "refused", "refused"]
    other = (await client.get("/v1/access-audit", headers=bearer("adm-o", "admin", org=OTHER_ORG),
                              params={"record_id": cid})).json()
    assert [e["actor"] for e in other["entries"]] == [owner]  # only its own member's attempt
