"""Issue 16, "Done when", in a real browser: Debian's Chromium (Playwright, ``executable_path``)
against the console and the four services as processes over real Kafka and Postgres.

A clinician signs in with a development token, sees only their caseload (open alerts first),
opens an episode whose chart points equal the submitted scores (with the caseness line, the
reliable-change band and the phase boundary), watches a new score arrive without reloading
(server-sent events), acknowledges a safety alert and sees it not escalate while an
unacknowledged one does; another clinician gets the same 404 as for a missing episode. axe-core
finds no serious or critical violation on any page. Then the console's projection is rebuilt by
replay with equal hashes. Screenshots: tests/e2e/console/artifacts/ and docs/img/console-*.png."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone

import httpx
import pytest

from rapport_testing.flows import gad7, phq9, run_intake
from rapport_testing.kafka import wait_caught_up, wait_for_records
from rapport_testing.wait import until
from rapport_shared.topics import COURSE, INTAKE, NOTIFICATIONS, OUTCOMES

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ESCALATION_AFTER_S = 20
SERIOUS = ("serious", "critical")


def submit(system, token: str, episode: str, instrument: str, answers: dict, session_number: int | None = None) -> dict:
    r = httpx.post(f"{system['outcomes'].url}/v1/episodes/{episode}/submissions",
                   headers={"Authorization": f"Bearer {token}"}, timeout=30,
                   json={"client_submission_id": f"e2e-{uuid.uuid4().hex}", "instrument": instrument,
                         "answers": answers, "administered_at": datetime.now(timezone.utc).isoformat(),
                         **({"session_number": session_number} if session_number else {})})
    assert r.status_code == 201, r.text
    return r.json()


async def axe(page, axe_source: str, where: str, found: dict) -> None:
    """Inject the vendored axe-core and keep the serious and critical violations of this page."""
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        await page.evaluate(axe_source)
    result = await page.evaluate("async () => await window.axe.run(document, {resultTypes: ['violations']})")
    bad = [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
           for v in result["violations"] if v["impact"] in SERIOUS]
    if bad:
        found[where] = bad


async def sign_in(context, url: str, token: str):
    page = await context.new_page()
    await page.goto(f"{url}/sign-in")
    await page.get_by_label("Bearer token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{url}/caseload")
    return page


async def reload_until(page, predicate, what: str, timeout: float = 60):
    """Reload until ``predicate(page)`` holds (the console catches up with the topics)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if await predicate(page):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)
        await page.reload()


async def chart_totals(page, instrument: str) -> list[float]:
    return [float(v) for v in await page.eval_on_selector_all(
        f'svg.trend[data-instrument="{instrument}"] circle.point', "els => els.map(e => e.dataset.total)")]


def replay(console, admin_dsn: str, *args: str) -> subprocess.CompletedProcess:
    """``rapport-console replay ...`` as an operator runs it: the service's environment + the admin DSN."""
    env = {**os.environ, **console.env, "RAPPORT_ADMIN_DSN": admin_dsn, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "rapport_console", "replay", *args], env=env,
                          capture_output=True, text=True, timeout=600)


async def test_clinician_console_in_a_real_browser(system, console, kafka, postgres, tokens, browser, axe_source,
                                                   screenshot):
    bootstrap = kafka.bootstrap
    tag = uuid.uuid4().hex[:8]
    me, colleague = f"clin-c{tag}", f"clin-d{tag}"
    # A short escalation delay so "stops escalating" is seen within the test (system clock).
    system.restart("notifier", {"RAPPORT_ESCALATION_AFTER": f"{ESCALATION_AFTER_S}s",
                                "RAPPORT_TIMER_POLL_INTERVAL_S": "0.3"})
    http = httpx.Client(timeout=30)
    violations: dict[str, list] = {}
    try:
        # ------------------------------------------------------------ three episodes, two clinicians
        ic = tokens.issue("ic-1", ["intake_clinician"])
        persons = {k: f"P-c{tag}{k}" for k in ("a", "b", "c")}
        ep = {k: run_intake(system["intake"].url, ic, person_id=persons[k], clinician_id=who, client=http)["episode_id"]
              for k, who in (("a", me), ("b", me), ("c", colleague))}
        for e in ep.values():
            await wait_for_records(bootstrap, COURSE, lambda r, e=e: r.headers.get("ce_subject") == e
                                   and r.headers["ce_type"] == "rapport.course.planned.v1")
        patient = {k: tokens.issue(persons[k], ["patient_app"]) for k in persons}
        # Episode a: PHQ-9 18 (intake baseline), 15, 12; GAD-7 12 then 9. Episode b: a positive
        # item 9 (a safety alert nobody acknowledges: the control). Episode a's positive item 9
        # comes later, while its page is open.
        submitted = {"phq9": [18.0], "gad7": []}
        for n, total in enumerate((15, 12), start=1):
            submit(system, patient["a"], ep["a"], "phq9", phq9(total), n)
            submitted["phq9"].append(float(total))
        for n, total in enumerate((12, 9), start=1):
            submit(system, patient["a"], ep["a"], "gad7", gad7(total), n)
            submitted["gad7"].append(float(total))
        [alert_b] = submit(system, patient["b"], ep["b"], "phq9", phq9(14, item9=2), 1)["alert_ids"]

        async with await browser.new_context(viewport={"width": 1280, "height": 900}) as ctx:
            # ------------------------------------------------------------ sign-in and the caseload
            page = await ctx.new_page()
            await page.goto(f"{console.url}/sign-in")
            await axe(page, axe_source, "sign-in", violations)
            screenshot(await page.screenshot(full_page=True), "sign-in")
            await page.close()
            page = await sign_in(ctx, console.url, tokens.issue(me, ["clinician"]))
            cookie = next(c for c in await ctx.cookies() if c["name"] == "rapport_console")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

            async def both_alerting(p) -> bool:
                rows = await p.eval_on_selector_all("tr[data-episode]", "els => els.map(e => e.dataset.episode)")
                return rows == [ep["b"], ep["a"]] and await p.locator(".badge.urgent").count() == 1
            await reload_until(page, both_alerting, "both of my episodes, the one with an open alert first")
            assert ep["c"] not in await page.content()  # the colleague's episode is not on my caseload
            await axe(page, axe_source, "caseload", violations)
            screenshot(await page.screenshot(full_page=True), "caseload")

            # ------------------------------------------------------------ the episode: chart = scores
            await page.get_by_role("link", name=f"Episode {ep['a'][:8]}").click()
            await page.wait_for_url(f"{console.url}/episodes/{ep['a']}")

            async def all_scores(p) -> bool:
                return (await chart_totals(p, "phq9") == submitted["phq9"]
                        and await chart_totals(p, "gad7") == submitted["gad7"])
            await reload_until(page, all_scores, "every submitted score on the charts")
            phq = page.locator('svg.trend[data-instrument="phq9"]')
            assert await phq.locator("line.caseness").get_attribute("data-value") == "10"
            assert await phq.locator("rect.rc-band").count() == 1
            table = [float(v) for v in await page.eval_on_selector_all(
                'section[data-instrument="phq9"] td[data-total]', "els => els.map(e => e.dataset.total)")]
            assert table == submitted["phq9"]  # the chart's data as a table

            # live update: a new score (a positive item 9) and its alert appear without reloading
            updates = await page.evaluate("() => Number(document.body.dataset.updates || 0)")
            [alert_a] = submit(system, patient["a"], ep["a"], "phq9", phq9(11, item9=1), 3)["alert_ids"]
            raised_a = asyncio.get_running_loop().time()
            submitted["phq9"].append(11.0)
            await page.wait_for_function(
                "n => document.querySelectorAll('svg.trend[data-instrument=\"phq9\"] circle.point').length === n",
                arg=len(submitted["phq9"]), timeout=30000)
            assert await chart_totals(page, "phq9") == submitted["phq9"]
            await page.locator(f'article[data-alert="{alert_a}"]').wait_for(timeout=30000)
            assert await page.evaluate("() => Number(document.body.dataset.updates || 0)") > updates

            alert = page.locator(f'article[data-alert="{alert_a}"]')
            await alert.get_by_role("button", name="Acknowledge (stop escalation)").click()
            await page.wait_for_url(f"{console.url}/episodes/{ep['a']}?notice=acknowledged#alerts")
            assert asyncio.get_running_loop().time() - raised_a < ESCALATION_AFTER_S, "acknowledged too late to tell"
            alert = page.locator(f'article[data-alert="{alert_a}"]')
            assert f"by {me}" in await alert.locator("dd.ack").inner_text()
            await axe(page, axe_source, "episode", violations)

            # The unacknowledged alert b escalates (the notifier pages on call: nobody is, so the
            # safety fallback, recorded as failed without a fallback configured) ...
            page_b = await ctx.new_page()
            await page_b.goto(f"{console.url}/episodes/{ep['b']}")

            async def escalated(p) -> bool:
                return await p.locator(f'article[data-alert="{alert_b}"] dd.escalation').get_attribute(
                    "data-escalations") not in (None, "0")
            await reload_until(page_b, escalated, "alert b escalated", timeout=90)
            # ... and alert a, acknowledged before its time, does not: neither on the console nor in
            # the notifier's own delivery log, well after its escalation would have been due.
            await asyncio.sleep(max(0.0, raised_a + ESCALATION_AFTER_S + 8 - asyncio.get_running_loop().time()))
            await page.reload()
            alert = page.locator(f'article[data-alert="{alert_a}"]')
            assert await alert.locator("dd.escalation").get_attribute("data-escalations") == "0"
            assert "escalation stopped" in await alert.locator("dd.escalation").inner_text()
            log = http.get(f"{system['notifier'].url}/v1/deliveries", params={"episode_id": ep["a"]},
                           headers={"Authorization": f"Bearer {tokens.issue('admin', ['admin'])}"}).json()["deliveries"]
            assert not [d for d in log if d["kind"] == "safety_escalation"], log
            assert [d for d in http.get(f"{system['notifier'].url}/v1/deliveries", params={"episode_id": ep["b"]},
                                        headers={"Authorization": f"Bearer {tokens.issue('admin', ['admin'])}"}
                                        ).json()["deliveries"] if d["kind"] == "safety_escalation"]
            await page_b.close()
            screenshot(await page.screenshot(full_page=True), "episode")

            # ------------------------------------------------------------ cohort (episode b withdrawn)
            planned = await wait_for_records(bootstrap, COURSE, lambda r: r.headers.get("ce_subject") == ep["b"]
                                             and r.headers["ce_type"] == "rapport.course.planned.v1")
            course_b = json.loads(planned[0].value)["course_id"]
            r = http.post(f"{system['scheduler'].url}/v1/courses/{course_b}/withdraw", json={"reason": "withdrawal"},
                          headers={"Authorization": f"Bearer {tokens.issue(me, ['clinician'])}"})
            assert r.status_code == 200, r.text
            await page.goto(f"{console.url}/cohort")

            async def one_ended(p) -> bool:
                return "ipt standard" in (await p.content()).replace("-", " ") and await p.locator("figure.bars").count() > 0
            await reload_until(page, one_ended, "the withdrawn course in the cohort report")
            await axe(page, axe_source, "cohort", violations)
            screenshot(await page.screenshot(full_page=True), "cohort")

        # ------------------------------------------------------------ another clinician: 404 like missing
        async with await browser.new_context() as other:
            page = await sign_in(other, console.url, tokens.issue(colleague, ["clinician"]))
            refused = await page.goto(f"{console.url}/episodes/{ep['a']}")
            text_refused = (await page.content()).replace(ep["a"], "<id>")
            await axe(page, axe_source, "not-found", violations)
            missing = str(uuid.uuid4())
            unknown = await page.goto(f"{console.url}/episodes/{missing}")
            assert refused.status == unknown.status == 404
            assert text_refused == (await page.content()).replace(missing, "<id>")
            own = await page.goto(f"{console.url}/episodes/{ep['c']}")
            assert own.status == 200

        assert not violations, json.dumps(violations, indent=2)

        # ------------------------------------------------------------ the projection rebuilds by replay
        for topic in (INTAKE, COURSE, OUTCOMES, NOTIFICATIONS):
            await wait_caught_up(bootstrap, "rapport-console", topic, timeout=180)
        await until(lambda: _quiet(bootstrap), what="the topics at rest")
        shadow = f"console_replay_e2e_{tag}"
        done = replay(console, postgres.admin_dsn, "run", "--shadow", shadow)
        print(f"--- rapport-console replay run\n{done.stdout}")
        assert done.returncode == 0, (done.stdout, done.stderr[-3000:])
        checks = json.loads(replay(console, postgres.admin_dsn, "verify", "--shadow", shadow, "--json").stdout)
        assert checks and all(c["equal"] for c in checks), checks
        assert all(c["live_rows"] == c["shadow_rows"] > 0 for c in checks
                   if c["table"] in ("episodes", "sessions", "scores", "alerts", "deliveries", "phase_changes")), checks
        dropped = replay(console, postgres.admin_dsn, "drop", "--shadow", shadow, "--apply")
        assert dropped.returncode == 0, dropped.stdout + dropped.stderr
    finally:
        http.close()
        system.restart("notifier")


async def _quiet(bootstrap: str) -> bool:
    """The console's group has read everything on its topics (two looks, a moment apart)."""
    for _ in range(2):
        for topic in (INTAKE, COURSE, OUTCOMES, NOTIFICATIONS):
            await wait_caught_up(bootstrap, "rapport-console", topic, timeout=60)
        await asyncio.sleep(1)
    return True
