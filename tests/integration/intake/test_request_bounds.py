"""One HTTP request cannot stop intake's events (issue #11): the 30,000-slot availability that once
made a 1.3 MB event and blocked the relay is refused at the edge (413: the body limit), a list past
its bound is refused with 422 naming the field, nothing is written, and the next intake completes
and queues its event as usual."""

import pytest

from rapport_intake.domain.commands import MAX_WEEKLY_SLOTS
from rapport_testing.flows import intake_parts

pytestmark = pytest.mark.integration

SLOT = {"weekday": 2, "start": "09:00", "end": "12:00"}


async def test_thirty_thousand_slots_are_refused_and_the_next_intake_flows(intake_it):
    episode, _ = await intake_it.open()
    before = await intake_it.snapshot(episode)
    r = await intake_it.call("PUT", f"/v1/referrals/{episode}/availability",
                             {"timezone": "Europe/London", "slots": [SLOT] * 30_000})
    assert r.status_code == 413, r.text
    assert r.json()["field"] == "body"
    assert await intake_it.snapshot(episode) == before

    r = await intake_it.call("PUT", f"/v1/referrals/{episode}/availability",
                             {"timezone": "Europe/London", "slots": [SLOT] * (MAX_WEEKLY_SLOTS + 1)})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "slots" or "slots" in r.json()["detail"]
    assert await intake_it.snapshot(episode) == before

    # the same bound inside a one-call completion
    parts = intake_parts()
    r = await intake_it.call("POST", f"/v1/referrals/{episode}/complete",
                             {**parts, "availability": {"timezone": "Europe/London",
                                                        "slots": [SLOT] * (MAX_WEEKLY_SLOTS + 1)}})
    assert r.status_code == 422, r.text
    assert "availability.slots" in r.text
    assert await intake_it.snapshot(episode) == before

    nxt, _ = await intake_it.open()
    r = await intake_it.call("POST", f"/v1/referrals/{nxt}/complete", intake_parts())
    assert r.status_code == 200, r.text
    assert [e["type"] for e in await intake_it.outbox(nxt)] == ["rapport.intake.completed.v1"]
