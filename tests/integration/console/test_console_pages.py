"""The console's pages against real Postgres: the read model built from events, sign-in and the
session cookie, who sees what (a missing episode and another clinician's answer alike), the
chart's data, actions carried to the owning services with the clinician's own token, CSRF, and
live-update notices that carry no health data."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta

import pytest

from rapport_shared.contracts import PhaseChangedV1
from rapport_shared.contracts.course import SessionAttendedV1, SessionMissedV1, SessionRescheduledV1
from rapport_shared.contracts.notifications import NotificationDeliveredV1, NotificationFailedV1
from rapport_shared.contracts.outcomes import AlertRaisedV1, AlertResolvedV1, OutcomeEvaluatedV1

pytestmark = pytest.mark.integration


async def seeded(console, h, clinician: str, *, alert: bool = True) -> dict:
    ep = h.episode_events(clinician=clinician)
    await console.deliver(ep["intake"])
    await console.deliver(ep["planned"])
    t0 = ep["t0"]
    totals = [18, 15, 11, 7]
    ep["totals"] = totals
    await console.deliver(h.score(ep, totals[0], t0 + timedelta(hours=1), timepoint="baseline", band="moderately_severe"))
    for n, total in enumerate(totals[1:], start=1):
        await console.deliver(h.score(ep, total, t0 + timedelta(days=7 * (n - 1), hours=20), baseline=18,
                                      session_number=n))
    s1, s2, s3 = ep["sessions"][:3]
    await console.deliver(SessionAttendedV1(episode_id=ep["episode"], course_id=ep["course"], session_id=s1["session_id"],
                                            number=1, attended_sessions=1, contracted_sessions=4, phase="initial",
                                            attended_at=s1["starts_at"], organisation_id=ep["org"]))
    await console.deliver(PhaseChangedV1(episode_id=ep["episode"], course_id=ep["course"], from_phase="initial",
                                         to_phase="middle", effective_from_session=2, reason="checklist_complete",
                                         changed_at=s1["starts_at"] + timedelta(hours=1), organisation_id=ep["org"]))
    await console.deliver(SessionMissedV1(episode_id=ep["episode"], course_id=ep["course"], session_id=s2["session_id"],
                                          number=2, consecutive_missed=1, missed_at=s2["starts_at"],
                                          organisation_id=ep["org"]))
    await console.deliver(SessionRescheduledV1(episode_id=ep["episode"], course_id=ep["course"],
                                               session_id=s3["session_id"], number=3,
                                               previous_starts_at=s3["starts_at"],
                                               starts_at=s3["starts_at"] + timedelta(days=1),
                                               reason_code="patient_request", rescheduled_at=s2["starts_at"],
                                               organisation_id=ep["org"]))
    if alert:
        ep["alert"] = uuid.uuid4()
        raised = await console.deliver(AlertRaisedV1(
            episode_id=ep["episode"], alert_id=ep["alert"], kind="safety", urgency="urgent",
            reason_code="safety_item_positive", clinician_id=clinician, instrument="phq9",
            raised_at=t0 + timedelta(days=3), organisation_id=ep["org"]))
        await console.deliver(NotificationDeliveredV1(
            episode_id=ep["episode"], notification_id=uuid.uuid4(), kind="safety_alert",
            recipient_ref=f"clinician:{clinician}", channel="email", cause_event_id=uuid.UUID(raised),
            delivered_at=t0 + timedelta(days=3, minutes=1), organisation_id=ep["org"]))
        await console.deliver(NotificationFailedV1(
            episode_id=ep["episode"], notification_id=uuid.uuid4(), kind="safety_escalation",
            recipient_ref="oncall:fallback", channel="email", cause_event_id=uuid.UUID(raised), error_code="no_channel",
            attempts=1, failed_at=t0 + timedelta(days=3, minutes=16), organisation_id=ep["org"]))
    return ep


async def test_sign_in_sets_a_strict_http_only_session_cookie_and_refuses_bad_tokens(console, h):
    c = console.client()
    form = await c.get("/sign-in")
    assert form.status_code == 200 and 'name="token"' in form.text
    pre = form.headers["set-cookie"]
    assert "HttpOnly" in pre and "SameSite=strict" in pre.replace("Strict", "strict")
    csrf = lambda page: re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # noqa: E731
    bad = await c.post("/sign-in", data={"csrf_token": csrf(form), "token": "not-a-token"})
    assert bad.status_code == 401 and "not-a-token" not in bad.text
    # no CSRF token: refused before the token is even looked at
    assert (await console.client().post("/sign-in", data={"token": console.token("clin-x")})).status_code == 403
    partner = await c.post("/sign-in", data={"csrf_token": csrf(bad), "token": console.token("p-1", "partner")})
    assert partner.status_code == 403
    good = await c.post("/sign-in", data={"csrf_token": csrf(partner), "token": console.token("clin-sign")})
    assert good.status_code == 303 and good.headers["location"] == "/caseload"
    cookie = [v for k, v in good.headers.multi_items() if k == "set-cookie" and v.startswith("rapport_console=")][0]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/" in cookie
    assert "Secure" not in cookie  # this console is configured for plain http (cookie_secure=False)
    assert (await c.get("/caseload")).status_code == 200
    # without a session, a page sends the browser to the sign-in form
    r = await console.client().get("/caseload")
    assert r.status_code == 303 and r.headers["location"] == "/sign-in"


async def test_caseload_shows_only_the_clinicians_episodes_with_open_alerts_first(console, h):
    me = f"clin-{uuid.uuid4().hex[:8]}"
    calm = await seeded(console, h, me, alert=False)
    alarming = await seeded(console, h, me)
    theirs = await seeded(console, h, f"clin-{uuid.uuid4().hex[:8]}")
    c = await console.signed_in(me)
    page = await c.get("/caseload")
    assert page.status_code == 200
    rows = re.findall(r'data-episode="([0-9a-f-]+)"', page.text)
    assert rows == [str(alarming["episode"]), str(calm["episode"])]
    assert str(theirs["episode"]) not in page.text
    assert "1 open, 1 urgent" in page.text and "−11 since baseline 18" in page.text
    assert page.headers["cache-control"] == "no-store" and "default-src 'self'" in page.headers["content-security-policy"]


async def test_episode_page_charts_exactly_the_submitted_scores_with_caseness_band_and_phases(console, h):
    me = f"clin-{uuid.uuid4().hex[:8]}"
    ep = await seeded(console, h, me)
    c = await console.signed_in(me)
    page = await c.get(f"/episodes/{ep['episode']}")
    assert page.status_code == 200, page.text
    html = page.text
    svg = html[html.index('<svg viewBox'):html.index('</svg>')]
    assert [float(v) for v in re.findall(r'class="point"[^>]*data-total="([^"]+)"', svg)] == ep["totals"]
    assert 'class="caseness"' in svg and 'data-value="10"' in svg
    assert 'class="rc-band"' in svg and "baseline ± 6" in svg
    assert 'data-phase="middle"' in svg
    table = html[html.index("PHQ-9 scores (the chart"):]
    assert [float(v) for v in re.findall(r'<td class="num" data-total="([^"]+)"', table)] == ep["totals"]
    # the timeline: attended, missed, moved; the alert with its page and escalation; deliveries by role
    assert "Session 1:" in html and "<strong>attended</strong>" in html and "<strong>missed</strong>" in html
    assert "moved from" in html
    assert "escalated to on call" in html and "on call (fallback)" in html


async def test_another_clinician_and_a_missing_episode_get_the_same_404_page(console, h):
    me = f"clin-{uuid.uuid4().hex[:8]}"
    ep = await seeded(console, h, me)
    other = await console.signed_in(f"clin-{uuid.uuid4().hex[:8]}")
    elsewhere = await console.signed_in(me, org=h.OTHER_ORG)  # the same id in another organisation
    missing = uuid.uuid4()
    refused = await other.get(f"/episodes/{ep['episode']}")
    unknown = await other.get(f"/episodes/{missing}")
    assert refused.status_code == unknown.status_code == 404
    assert refused.text.replace(str(ep["episode"]), "<id>") == unknown.text.replace(str(missing), "<id>")
    assert (await elsewhere.get(f"/episodes/{ep['episode']}")).status_code == 404
    assert (await other.get("/episodes/not-an-id")).status_code == 404
    decisions = [r["decision"] for r in await console.audit(ep["episode"])]
    assert "refused" in decisions


async def test_acknowledge_goes_to_the_notifier_with_the_clinicians_token_and_needs_csrf(console, h):
    me = f"clin-{uuid.uuid4().hex[:8]}"
    ep = await seeded(console, h, me)
    c = await console.signed_in(me)
    page = (await c.get(f"/episodes/{ep['episode']}")).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    url = f"/episodes/{ep['episode']}/alerts/{ep['alert']}/acknowledge"
    console.owners.calls.clear()
    assert (await c.post(url, data={})).status_code == 403
    assert (await c.post(url, data={"csrf_token": "x" + csrf[1:]})).status_code == 403
    assert console.owners.calls == []
    done = await c.post(url, data={"csrf_token": csrf})
    assert done.status_code == 303 and "notice=acknowledged" in done.headers["location"]
    [(method, target, auth, _)] = console.owners.calls
    assert target == f"http://notifier.test/v1/alerts/{ep['alert']}/acknowledge"
    assert auth == f"Bearer {c.cookies['rapport_console']}"
    after = (await c.get(f"/episodes/{ep['episode']}")).text
    assert "by clin-from-notifier" in after
    # resolve: to outcomes, with the action; the alert closes when outcomes' event arrives
    r = await c.post(f"/episodes/{ep['episode']}/alerts/{ep['alert']}/resolve",
                     data={"csrf_token": csrf, "action": "safety_plan", "action_text": "plan agreed"})
    assert r.status_code == 303
    assert console.owners.calls[-1][1].startswith("http://outcomes.test/v1/alerts/")
    assert console.owners.calls[-1][3] == {"action": "safety_plan", "action_text": "plan agreed"}
    await console.deliver(AlertResolvedV1(episode_id=ep["episode"], alert_id=ep["alert"], kind="safety",
                                          resolved_by=me, action="safety_plan", resolved_at=ep["t0"] + timedelta(days=4),
                                          organisation_id=ep["org"]))
    assert f"safety plan by {me}" in (await c.get(f"/episodes/{ep['episode']}")).text


async def test_a_refusal_of_the_owning_service_is_shown_and_nothing_is_recorded(console, h):
    me = f"clin-{uuid.uuid4().hex[:8]}"
    ep = await seeded(console, h, me)
    c = await console.signed_in(me)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', (await c.get(f"/episodes/{ep['episode']}")).text).group(1)
    console.owners.status = 404
    try:
        r = await c.post(f"/episodes/{ep['episode']}/alerts/{ep['alert']}/acknowledge", data={"csrf_token": csrf})
    finally:
        console.owners.status = 200
    assert r.status_code == 404 and "no alert" in r.text
    assert not await console.pool.fetchval("SELECT count(*) FROM acknowledgements WHERE alert_id = $1", ep["alert"])


async def test_live_updates_name_the_kind_of_change_only(console, h):
    me = f"clin-{uuid.uuid4().hex[:8]}"
    ep = await seeded(console, h, me, alert=False)
    c = await console.signed_in(me)
    received: list[str] = []

    async def listen():
        async with c.stream("GET", f"/episodes/{ep['episode']}/events") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            async for line in r.aiter_lines():
                received.append(line)
                if line.startswith("data: score"):
                    return

    task = asyncio.create_task(listen())
    await asyncio.sleep(0.5)
    await console.deliver(h.score(ep, 5, ep["t0"] + timedelta(days=30), baseline=18, session_number=4))
    await asyncio.wait_for(task, timeout=5)
    text = "\n".join(received)
    assert "event: change" in text and "data: score" in text
    # the data line is the kind of change alone: no total, no band, no id
    assert [line for line in received if line.startswith("data:")][-1] == "data: score"
    assert str(ep["episode"]) not in text


async def test_cohort_rates_by_template_and_condition(console, h):
    me = f"clin-{uuid.uuid4().hex[:8]}"
    eps = [await seeded(console, h, me, alert=False) for _ in range(2)]
    for ep, recovered in zip(eps, (True, False)):
        await console.deliver(OutcomeEvaluatedV1(
            episode_id=ep["episode"], finished_course=True, caseness_at_baseline=True, caseness_at_end=not recovered,
            recovery=recovered, reliable_improvement=True, reliable_deterioration=False, reliable_recovery=recovered,
            evaluated_at=ep["t0"] + timedelta(days=40), template_id="ipt-standard", clinician_id=me,
            counts_toward_recovery=True, organisation_id=ep["org"]))
    c = await console.signed_in(me)
    page = await c.get("/cohort")
    assert page.status_code == 200
    assert "50 % (1/2)" in page.text and "100 % (2/2)" in page.text and "depression" in page.text
    assert (await c.get("/cohort?since=yesterday")).status_code == 422
