"""Issue 7, "Done when": a cohort of episodes runs through all four services; then each service's
projection is rebuilt by replay (``rapport-<svc> replay run``, the operator's command, run as a
separate process with the live service's own environment) into a shadow schema with a fresh
consumer group. The rebuilt content hashes equal the live ones, and nothing reaches the outside
world during the replays: no email at the SMTP server, no record on any topic, no new delivery.
Then a damaged live projection is detected by ``verify`` and repaired by ``swap``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

import httpx
import pytest

from rapport_testing.notifier import notifier_env, until
from rapport_testing.flows import run_intake, run_intake_steps
from rapport_testing.kafka import wait_caught_up, wait_for_records
from rapport_testing.db import fetch, fetchval
from rapport_shared.topics import COURSE, INTAKE, NOTIFICATIONS, OUTCOMES, PRIVATE_CONTACTS, SHARED_TOPICS
from rapport_tools.replay import end_offsets
from rapport_tools.kafka_ops import Conn, list_topic_names

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

PHQ9_ITEM9 = {1: 2, 2: 2, 3: 2, 4: 2, 5: 2, 6: 1, 7: 1, 8: 1, 9: 1}
REPLAYED = ("scheduler", "outcomes", "notifier")


def replay(system, admin_dsn: str, service: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``rapport-<svc> replay ...`` as an operator runs it: the service's environment + the admin DSN."""
    full = {**os.environ, **system[service].env, **(env or {}), "RAPPORT_ADMIN_DSN": admin_dsn, "COLUMNS": "200"}
    full.pop("RAPPORT_CRASH_AT", None)
    return subprocess.run([sys.executable, "-m", f"rapport_{service}", "replay", *args], env=full,
                          capture_output=True, text=True, timeout=600)


async def caught_up(bootstrap: str) -> None:
    """Every live group has read everything (the cohort is fully processed)."""
    for group, topics in (("rapport-scheduler", (INTAKE, OUTCOMES)), ("rapport-outcomes", (INTAKE, COURSE, NOTIFICATIONS)),
                          ("rapport-notifier", SHARED_TOPICS), ("rapport-notifier-contacts", (PRIVATE_CONTACTS,))):
        for topic in topics:
            await wait_caught_up(bootstrap, group, topic, timeout=180)





async def test_cohort_projections_rebuild_by_replay_with_equal_hashes_and_nothing_sent(
        system, kafka, postgres, tokens, service_dsns, smtp):
    bootstrap, admin_dsn = kafka.bootstrap, postgres.admin_dsn
    tag = uuid.uuid4().hex[:8]
    clin = f"clin-rp-{tag}"
    notifier_extra = notifier_env(smtp, RAPPORT_CLOCK="system")
    system.restart("notifier", notifier_extra)
    http = httpx.Client(timeout=30)
    auth = lambda sub, role: {"Authorization": f"Bearer {tokens.issue(sub, [role])}"}
    shadows: dict[str, str] = {}
    done_groups: dict[str, str] = {}
    try:
        assert http.put(f"{system['notifier'].url}/v1/clinicians/{clin}", headers=auth("admin", "admin"), json={
            "email": f"{clin}@clinic.test", "language": "en", "channels": ["email"]}).status_code == 200

        # ------------------------------------------------------------ the cohort, live
        ic = tokens.issue("ic-1", ["intake_clinician"])
        episodes = [run_intake(system["intake"].url, ic, clinician_id=clin, client=http)["episode_id"] for _ in range(4)]
        # The --since window below starts at the last intake's record timestamp: the first four must
        # be on Kafka before it is completed, else a slow relay publishes them in one batch with it
        # (same timestamp) and they fall inside the window.
        for ep in episodes:
            await wait_for_records(bootstrap, INTAKE, lambda r, ep=ep: r.headers.get("ce_subject") == ep)
        await asyncio.sleep(0.05)  # record timestamps are milliseconds
        # one patient with contact details: they reach the notifier by the private contacts topic
        episodes.append(run_intake_steps(system["intake"].url, ic, clinician_id=clin, client=http, contact={
            "email": f"patient-{tag}@patients.test", "channel_consent": {"email": True}})["episode_id"])
        plans = {}
        for ep in episodes:
            [planned] = await wait_for_records(bootstrap, COURSE, lambda r, ep=ep: r.headers.get("ce_subject") == ep
                                               and r.headers["ce_type"] == "rapport.course.planned.v1")
            plans[ep] = json.loads(planned.value)
        sched, clinician = system["scheduler"].url, auth(clin, "clinician")
        # episode 0: the patient cancels session 1 (the calendar moves: a replacement is booked)
        p0 = plans[episodes[0]]
        r = http.post(f"{sched}/v1/courses/{p0['course_id']}/sessions/{p0['sessions'][0]['session_id']}/cancel",
                      headers=clinician, json={"cancelled_by": "patient", "reason_code": "patient_unwell"})
        assert r.status_code == 200, r.text
        # episode 1: a positive item 9 → a safety alert (paged by email), resolved by the clinician
        r = http.post(f"{system['outcomes'].url}/v1/episodes/{episodes[1]}/submissions", headers=auth(plans[episodes[1]]["person_id"], "patient_app"),
                      json={"client_submission_id": f"rp-{tag}", "instrument": "phq9", "answers": PHQ9_ITEM9,
                            "administered_at": plans[episodes[1]]["planned_at"], "session_number": 1})
        assert r.status_code == 201, r.text
        [alert_id] = r.json()["alert_ids"]
        await until(lambda: [m for m in smtp.to(f"{clin}@clinic.test") if "URGENT" in m["Subject"]], what="the page")
        r = http.post(f"{system['outcomes'].url}/v1/alerts/{alert_id}/resolve", headers=clinician,
                      json={"action": "safety_plan", "action_text": "plan agreed"})
        assert r.status_code == 200, r.text
        # episode 2: withdrawn → course ended → outcomes evaluates → the scheduler records the result
        p2 = plans[episodes[2]]
        assert http.post(f"{sched}/v1/courses/{p2['course_id']}/withdraw", headers=clinician,
                         json={"reason": "withdrawal"}).status_code == 200
        await wait_for_records(bootstrap, OUTCOMES, lambda r: r.headers.get("ce_subject") == episodes[2]
                               and r.headers["ce_type"] == "rapport.outcome.evaluated.v1")
        await caught_up(bootstrap)
        await until(lambda: fetchval(service_dsns["notifier"], "SELECT count(*) = 0 FROM notifications"
                                     " WHERE status IN ('ready', 'sending')"), what="live sender idle")
        await until(lambda: len(smtp.to(f"{clin}@clinic.test")) >= 6, what="5 course notices + the page by email")

        conn = Conn(bootstrap=bootstrap)
        before = (len(smtp.messages), await end_offsets(conn, list(SHARED_TOPICS)),
                  await fetchval(service_dsns["notifier"], "SELECT count(*) FROM notifications"))

        # ------------------------------------------------------------ replay each service
        for svc in REPLAYED:
            shadows[svc] = f"{svc}_replay_e2e_{tag}"
            done = replay(system, admin_dsn, svc, "run", "--shadow", shadows[svc],
                          env=notifier_extra if svc == "notifier" else None)
            print(f"--- rapport-{svc} replay run\n{done.stdout}")
            assert done.returncode == 0, (svc, done.stdout, done.stderr[-3000:])
            assert "DIFFERENT" not in done.stdout and "equal" in done.stdout, done.stdout
            done_groups[svc] = done.stdout.split(" with group ")[1].split()[0]
            checks = json.loads(replay(system, admin_dsn, svc, "verify", "--shadow", shadows[svc], "--json").stdout)
            assert checks and all(c["equal"] for c in checks), checks
            assert all(c["live_rows"] == c["shadow_rows"] > 0 for c in checks), checks

        # The cohort itself is in the rebuilt projections.
        for ep in episodes:
            assert await fetchval(service_dsns["scheduler"], f"SELECT count(*) FROM {shadows['scheduler']}.courses"
                                  " WHERE episode_id = $1", uuid.UUID(ep)) == 1
            assert await fetchval(service_dsns["outcomes"], f"SELECT count(*) FROM {shadows['outcomes']}.submissions"
                                  " WHERE episode_id = $1 AND source = 'intake'", uuid.UUID(ep)) >= 1
        assert await fetchval(service_dsns["notifier"], f"SELECT resolved_at IS NOT NULL FROM {shadows['notifier']}.alerts"
                              " WHERE alert_id = $1", uuid.UUID(alert_id))

        # Nothing reached the outside world: no email, no record on any shared topic, no new delivery;
        # the shadow notifier derived its deliveries and suppressed every one.
        after = (len(smtp.messages), await end_offsets(conn, list(SHARED_TOPICS)),
                 await fetchval(service_dsns["notifier"], "SELECT count(*) FROM notifications"))
        assert after == before
        assert await fetchval(service_dsns["notifier"], f"SELECT count(*) FROM {shadows['notifier']}.notifications"
                              " WHERE status = 'delivered'") == 0
        for svc in REPLAYED:  # the shadows' outboxes were never relayed
            assert await fetchval(service_dsns[svc], f"SELECT count(*) FROM {shadows[svc]}.outbox WHERE sent_at IS NOT NULL") == 0

        # --since: a fresh group starts at the first offsets stamped at or after T, so the shadow
        # holds the projection of that window only (here: the last intake and what followed it).
        [last] = await wait_for_records(bootstrap, INTAKE, lambda r: r.headers.get("ce_subject") == episodes[4])
        window = f"outcomes_replay_since_{tag}"
        shadows["outcomes-since"] = window
        since = replay(system, admin_dsn, "outcomes", "run", "--shadow", window, "--since", str(last.timestamp),
                       "--no-verify", "--json")
        assert since.returncode == 0, since.stdout + since.stderr
        assert json.loads(since.stdout)["replayed"]["shadow"] == window, since.stdout
        in_window = {str(r[0]) for r in await fetch(service_dsns["outcomes"], f"SELECT episode_id FROM {window}.episodes")}
        assert in_window == {episodes[4]}, in_window

        # Intake has no projection to rebuild, and says why.
        r = replay(system, admin_dsn, "intake", "run")
        assert r.returncode == 2 and "consumes no topic" in r.stderr.replace("\n", " "), r.stderr

        # ------------------------------------------------------------ verify finds damage, swap repairs it
        damaged = uuid.UUID(episodes[3])
        await fetchval(admin_dsn, "UPDATE outcomes.courses SET contracted_sessions = 99 WHERE episode_id = $1", damaged)
        bad = replay(system, admin_dsn, "outcomes", "verify", "--shadow", shadows["outcomes"])
        assert bad.returncode == 1 and "DIFFERENT" in bad.stdout, bad.stdout
        refused = replay(system, admin_dsn, "outcomes", "swap", "--shadow", shadows["outcomes"], "--apply")
        assert refused.returncode == 2 and "stop the live service first" in refused.stderr.replace("\n", " ")
        system["outcomes"].stop()
        await until(lambda: _group_empty(conn, "rapport-outcomes"), what="the live outcomes group empty")
        dry = replay(system, admin_dsn, "outcomes", "swap", "--shadow", shadows["outcomes"])
        assert dry.returncode == 0 and "dry run" in dry.stdout, dry.stdout + dry.stderr
        dry_json = json.loads(replay(system, admin_dsn, "outcomes", "swap", "--shadow", shadows["outcomes"], "--json").stdout)
        assert dry_json["applied"] is False and dry_json["backup"] is None and dry_json["tables"], dry_json
        assert await fetchval(admin_dsn, "SELECT contracted_sessions FROM outcomes.courses WHERE episode_id = $1", damaged) == 99
        done = replay(system, admin_dsn, "outcomes", "swap", "--shadow", shadows["outcomes"], "--apply")
        assert done.returncode == 0, done.stdout + done.stderr
        print(f"--- rapport-outcomes replay swap --apply\n{done.stdout}")
        assert await fetchval(admin_dsn, "SELECT contracted_sessions FROM outcomes.courses WHERE episode_id = $1",
                              damaged) == plans[episodes[3]]["contracted_sessions"]
        backup = next(w for w in done.stdout.split() if w.startswith("outcomes_before_swap_"))
        assert await fetchval(admin_dsn, f"SELECT contracted_sessions FROM {backup}.courses WHERE episode_id = $1", damaged) == 99
        ok = replay(system, admin_dsn, "outcomes", "verify", "--shadow", shadows["outcomes"], "--json")
        assert ok.returncode == 0 and all(c["equal"] for c in json.loads(ok.stdout)), ok.stdout
        await fetchval(admin_dsn, f"DROP SCHEMA {backup} CASCADE")

        # drop: the shadow schema and the replay group's (empty) dead-letter topics go
        group = done_groups["scheduler"]
        assert any(t.endswith(f".dlq.{group}") for t in await list_topic_names(conn))
        # drop is a dry run unless --apply: it says what it would drop and drops nothing
        kept = replay(system, admin_dsn, "scheduler", "drop", "--shadow", shadows["scheduler"], "--json")
        assert kept.returncode == 0 and json.loads(kept.stdout)["applied"] is False, kept.stdout + kept.stderr
        assert await fetchval(admin_dsn, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
                              shadows["scheduler"]) == 1
        gone = replay(system, admin_dsn, "scheduler", "drop", "--shadow", shadows.pop("scheduler"), "--apply")
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert not any(t.endswith(f".dlq.{group}") for t in await list_topic_names(conn))
        assert await fetchval(admin_dsn, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
                              f"scheduler_replay_e2e_{tag}") == 0
    finally:
        for svc, shadow in shadows.items():
            replay(system, admin_dsn, svc.split("-")[0], "drop", "--shadow", shadow, "--apply")
        if not system["outcomes"].running():
            system["outcomes"].start()
        system.restart("notifier")


async def _group_empty(conn: Conn, group: str) -> bool:
    from rapport_tools.kafka_ops import describe_group

    state, members = await describe_group(conn, group)
    await asyncio.sleep(0)
    return members == 0
