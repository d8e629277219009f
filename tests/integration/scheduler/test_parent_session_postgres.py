"""IPT-A's optional mid-phase parent session over HTTP on a real Postgres (issue 15 item 5): added
by the course's clinician in the middle phase, refused (naming the rule) elsewhere and twice,
stored beside the contract (the same number as a contracted session may be live twice), marked in
the course view and the events, booked into the clinician's calendar, and replayable."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from rapport_scheduler.domain.course import fold

from .test_scheduler_postgres import bearer, clinician, plan

pytestmark = pytest.mark.integration


async def to_middle_phase(h, client, template_id: str = "ipt-a", clin: str | None = None):
    """Plan a course, attend sessions 1–3 and complete the checklist: middle from session 4."""
    ik, course = await plan(h, template_id=template_id, clinician_id=clin or clinician())
    base = f"/v1/courses/{course.course_id}"
    auth = bearer(course.clinician_id, "clinician")
    for _ in range(3):
        cur = (await client.get(base, headers=auth)).json()["current_session"]
        h.clock.set(datetime.fromisoformat(cur["ends_at"]))
        assert (await client.post(f"{base}/sessions/{cur['session_id']}/attend", headers=auth)).status_code == 200
    for item in ("diagnosis", "sick_role_explained", "inventory_complete", "formulation_agreed", "focus_confirmed",
                 "contract_set"):
        r = await client.put(f"{base}/checklist/{item}", headers=auth, json={})
        assert r.status_code == 200, r.text
    assert r.json()["course"]["phase"] == "middle"
    return ik, course, base, auth


def tuesday_after(view: dict, number: int) -> datetime:
    """09:00 on the Tuesday after session ``number`` (Thursdays 14:00; the patient is free Tuesdays 09–12)."""
    s = next(s for s in view["sessions"] if s["number"] == number and s["status"] in ("scheduled", "attended"))
    return datetime.fromisoformat(s["starts_at"]) + timedelta(days=5) - timedelta(hours=5)


async def test_added_marked_refused_twice_attended_and_replayed(h, client):
    ik, course, base, auth = await to_middle_phase(h, client)
    view = (await client.get(base, headers=auth)).json()
    to = tuesday_after(view, 5)
    r = await client.post(f"{base}/parent-sessions", headers=auth, json={"starts_at": to.isoformat()})
    assert r.status_code == 200, r.text
    assert r.json()["events"] == ["rapport.session.scheduled.v1"]
    got = r.json()["course"]
    [parent] = got["optional_parent_sessions"]
    assert (parent["kind"], parent["optional_parent_session"], parent["number"], parent["status"]) == (
        "parent", True, 5, "scheduled")
    assert datetime.fromisoformat(parent["starts_at"]) == to
    # The contract's calendar is as it was: 12 positions, none of them the parent session.
    assert [s["number"] for s in got["sessions"]] == list(range(1, 13))
    assert not any(s["optional_parent_session"] for s in got["sessions"])
    assert (got["contracted_sessions"], got["attended_sessions"]) == (12, 3)
    rows = await h.fetch("SELECT number, optional_parent FROM sessions WHERE course_id = $1 AND number = 5"
                         " AND status IN ('scheduled', 'attended') ORDER BY optional_parent", course.course_id)
    assert [(x["number"], x["optional_parent"]) for x in rows] == [(5, False), (5, True)]

    # A second one is refused (409 naming the rule), and writes nothing.
    before = await h.counts()
    r = await client.post(f"{base}/parent-sessions", headers=auth,
                          json={"starts_at": tuesday_after(view, 6).isoformat()})
    assert r.status_code == 409, r.text
    assert (r.json()["rule"], r.json()["phase"]) == ("optional_parent_session_limit", "middle")
    assert await h.counts() == before

    # Attended: the contract's count stays.
    h.clock.set(to + timedelta(minutes=50))
    r = await client.post(f"{base}/sessions/{parent['session_id']}/attend", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["course"]["attended_sessions"] == 3
    assert r.json()["course"]["optional_parent_sessions"][0]["status"] == "attended"

    # The events say so, and the course replays from them.
    events = await h.events(ik.episode_id)
    parent_events = [e for e in events if getattr(e, "optional_parent_session", False)]
    assert [e.event_type for e in parent_events] == ["rapport.session.scheduled.v1", "rapport.session.attended.v1"]
    assert parent_events[1].attended_sessions == 3
    async with h.uow() as uow:
        assert fold(events) == await uow.courses.get(course.course_id)


async def test_refused_in_other_templates_and_phases_and_for_other_clinicians(h, client):
    _, course, base, auth = await to_middle_phase(h, client, "ipt-standard")
    view = (await client.get(base, headers=auth)).json()
    before = await h.counts()
    r = await client.post(f"{base}/parent-sessions", headers=auth,
                          json={"starts_at": tuesday_after(view, 5).isoformat()})
    assert r.status_code == 409 and r.json()["rule"] == "optional_parent_session_in_template", r.text
    assert await h.counts() == before

    ik, course = await plan(h, template_id="ipt-a", clinician_id=clinician())  # initial phase
    base = f"/v1/courses/{course.course_id}"
    auth = bearer(course.clinician_id, "clinician")
    view = (await client.get(base, headers=auth)).json()
    before = await h.counts()
    r = await client.post(f"{base}/parent-sessions", headers=auth,
                          json={"starts_at": tuesday_after(view, 5).isoformat()})
    assert r.status_code == 409 and r.json()["rule"] == "optional_parent_session_in_middle_phase", r.text
    r = await client.post(f"{base}/parent-sessions", headers=auth, json={"starts_at": "2030-02-12T09:00:00"})
    assert r.status_code == 422, r.text  # no UTC offset: the body's validation
    other = bearer(clinician(), "clinician")
    r = await client.post(f"{base}/parent-sessions", headers=other,
                          json={"starts_at": tuesday_after(view, 5).isoformat()})
    assert r.status_code == 404  # like a course that does not exist (access policy)
    assert await h.counts() == before  # no refusal wrote anything


async def test_it_takes_its_place_in_the_clinicians_calendar(h, client):
    clin = clinician()
    _, course, base, auth = await to_middle_phase(h, client, clin=clin)
    view = (await client.get(base, headers=auth)).json()
    to = tuesday_after(view, 5)
    assert (await client.post(f"{base}/parent-sessions", headers=auth,
                              json={"starts_at": to.isoformat()})).status_code == 200
    # Another patient of the same clinician who is free only on Tuesdays 09:00–10:00: never booked over it.
    _, other = await plan(h, clinician_id=clin, slots=[{"weekday": 2, "start": "09:00", "end": "10:00"}])
    assert all(s.ends_at <= to or s.starts_at >= to + timedelta(minutes=50) for s in other.live_sessions())
    assert any(s.starts_at.date() == (to - timedelta(days=7)).date() for s in other.live_sessions())
