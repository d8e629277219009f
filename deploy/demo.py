"""Run one demo episode through a running Rapport — a whole 16-week IPT course in simulated
time — and print what happened.

    uv run python deploy/demo.py [--intake URL] [--scheduler URL] [--outcomes URL] [--notifier URL]
                                 [--kafka HOST:PORT] [--key JWK] [--jwks FILE] [--org ORG] [--intake-only]

Defaults match docker-compose.yml (ports on 127.0.0.1; tokens signed by the development issuer,
deploy/dev-keys/issuer.jwk.json, whose public JWKS the services verify with). The full
course needs the scheduler and outcomes in simulation mode (RAPPORT_CLOCK=simulated, which
deploy/demo.sh sets): the demo is then the clock driver, publishing ticks on ``rapport.clock``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from rapport_shared.clock import publish_tick
from rapport_shared.http.auth import JwksSource, TokenIssuer, TokenVerifier
from rapport_testing.flows import run_intake
from rapport_testing.kafka import read_all, wait_caught_up, wait_for_records
from rapport_shared.topics import COURSE, OUTCOMES, SHARED_TOPICS

CHECKLIST = ("diagnosis", "sick_role_explained", "inventory_complete", "formulation_agreed", "focus_confirmed", "contract_set")
# PHQ-9 totals before each session: from the intake's 18 down to remission (4) by the last one.
PHQ9_COURSE = [18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 5, 4]


def phq9_answers(total: int) -> dict[str, int]:
    """Items 1–8 share the total (each 0–3); item 9 (self-harm thoughts) stays 0."""
    answers = {str(i): 0 for i in range(1, 10)}
    for i in range(total):
        answers[str(1 + i % 8)] += 1
    return answers


def summary(event_type: str, d: dict) -> str:
    match event_type:
        case "rapport.intake.completed.v1":
            return f"template {d['template_id']}, focus {d['focus']['primary']}, clinician {d['clinician_id']}"
        case "rapport.course.planned.v1":
            return f"{d['contracted_sessions']} sessions, first {d['first_session_at']}"
        case "rapport.course.phase_changed.v1":
            return f"{d['from_phase']} -> {d['to_phase']} from session {d['effective_from_session']} ({d['reason']})"
        case "rapport.course.ended.v1":
            return f"{d['reason']}: {d['attended_sessions']}/{d['contracted_sessions']} sessions attended"
        case "rapport.score.submitted.v1":
            return f"{d['instrument']} {d['timepoint']} total {d['total']:g} ({d['band']})"
        case "rapport.outcome.evaluated.v1":
            flags = [k for k in ("recovery", "reliable_improvement", "reliable_recovery", "response", "remission") if d.get(k)]
            return f"finished course {d['finished_course']}; " + (", ".join(flags) or "no improvement")
        case "rapport.notification.delivered.v1":
            return f"{d['kind']} -> {d['recipient_ref']} via {d['channel']}"
    return ""


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        # Every token acts for the demo organisation: the episode is opened by its intake clinician,
        # treated by clin-001 (the clinician run_intake assigns) and administered by its admin.
        tokens = TokenIssuer.from_file(args.key, org=args.org)
        self.clinician = {"Authorization": f"Bearer {tokens.issue('clin-001', ['clinician'])}"}
        self.tokens = tokens
        self.patient_app: dict = {}  # the patient's app: a token whose sub is the person id (main)
        self.admin = {"Authorization": f"Bearer {tokens.issue('demo-admin', ['admin'])}"}
        self.intake_token = tokens.issue("demo-intake-clinician", ["intake_clinician"])
        self.http = httpx.AsyncClient(timeout=30)
        self.now: datetime | None = None

    async def sim_now(self) -> datetime:
        r = await self.http.get(f"{self.a.scheduler}/v1/clock", headers=self.clinician)
        r.raise_for_status()
        return datetime.fromisoformat(r.json()["now"])

    async def settled(self, episode: str) -> None:
        """Wait (a few seconds at most) until the notifier has sent what is due now: the sender runs
        in real time, so moving the simulated clock on at once would stamp a notice a tick late."""
        try:  # the notifier has read the course events so far (a phase change makes a notice)...
            await wait_caught_up(self.a.kafka, "rapport-notifier", COURSE, timeout=5)
        except TimeoutError:
            pass
        deadline = time.monotonic() + 5  # ... and sent what they made
        while time.monotonic() < deadline:
            r = await self.http.get(f"{self.a.notifier}/v1/deliveries", headers=self.admin,
                                    params={"episode_id": episode, "status": "ready"})
            if r.status_code != 200 or not r.json()["deliveries"]:
                return
            await asyncio.sleep(0.1)

    async def advance_to(self, t: datetime, episode: str | None = None) -> None:
        """Publish a clock tick and wait until the scheduler runs at that time."""
        if episode:
            await self.settled(episode)
        await publish_tick(self.a.kafka, t)
        deadline = time.monotonic() + 30
        while await self.sim_now() < t:
            if time.monotonic() > deadline:
                raise SystemExit("the scheduler does not follow the clock topic: is RAPPORT_CLOCK=simulated set?")
            await asyncio.sleep(0.1)

    async def submit_phq9(self, episode: str, number: int, at: datetime) -> None:
        body = {"client_submission_id": f"demo-{episode[:8]}-s{number}", "instrument": "phq9",
                "answers": phq9_answers(PHQ9_COURSE[number - 1]), "administered_at": at.isoformat(),
                "timepoint": "session", "session_number": number}
        for _ in range(50):  # outcomes may lag a moment behind the clock tick
            r = await self.http.post(f"{self.a.outcomes}/v1/episodes/{episode}/submissions", headers=self.patient_app, json=body)
            if r.status_code in (200, 201):
                return
            if r.status_code not in (404, 422):
                r.raise_for_status()
            await asyncio.sleep(0.2)
        raise SystemExit(f"outcomes refused the session {number} questionnaire: {r.text}")

    async def run_course(self, episode: str) -> None:
        [planned] = await wait_for_records(self.a.kafka, COURSE, lambda r: r.headers.get("ce_subject") == episode
                                           and r.headers["ce_type"] == "rapport.course.planned.v1", timeout=self.a.timeout)
        course_id = json.loads(planned.value)["course_id"]
        print(f"course {course_id} planned; attending every session in simulated time")
        while True:
            r = await self.http.get(f"{self.a.scheduler}/v1/courses/{course_id}", headers=self.clinician)
            r.raise_for_status()
            course = r.json()
            session = course["current_session"]
            if session is None:
                break
            n = session["number"]
            starts = datetime.fromisoformat(session["starts_at"])
            await self.advance_to(starts - timedelta(minutes=15), episode)  # questionnaire filled just before
            await self.submit_phq9(episode, n, starts - timedelta(minutes=30))
            await self.advance_to(datetime.fromisoformat(session["ends_at"]), episode)
            if n == 2:  # the initial-phase checklist is completed at session 2
                for item in CHECKLIST:
                    (await self.http.put(f"{self.a.scheduler}/v1/courses/{course_id}/checklist/{item}",
                                         headers=self.clinician, json={})).raise_for_status()
            r = await self.http.post(f"{self.a.scheduler}/v1/courses/{course_id}/sessions/{session['session_id']}/attend",
                                     headers=self.clinician)
            r.raise_for_status()
            print(f"  session {n:>2} {starts:%Y-%m-%d %H:%M} attended, PHQ-9 {PHQ9_COURSE[n - 1]:>2}, phase {r.json().get('phase', course['phase'])}")
        await wait_for_records(self.a.kafka, OUTCOMES, lambda r: r.headers.get("ce_subject") == episode
                               and r.headers["ce_type"] == "rapport.outcome.evaluated.v1", timeout=self.a.timeout)

    async def report(self, episode: str) -> bool:
        everything = [r for t in SHARED_TOPICS for r in await read_all(self.a.kafka, t)]
        records = sorted((r for r in everything if r.headers.get("ce_subject") == episode), key=lambda r: r.headers["ce_time"])
        counts = Counter(r.headers["ce_type"] for r in records)
        print(f"\n== {len(records)} events on the shared topics for this episode")
        for t, c in sorted(counts.items()):
            print(f"  {c:>3}  {t}")
        print("\n== milestones")
        for r in records:
            line = summary(r.headers["ce_type"], json.loads(r.value))
            if line and r.headers["ce_type"] != "rapport.score.submitted.v1":
                print(f"{r.headers['ce_time'][:19]}  {r.headers['ce_type']:<36} {line}")
        r = await self.http.get(f"{self.a.notifier}/v1/deliveries", params={"episode_id": episode}, headers=self.admin)
        deliveries = r.json().get("deliveries", []) if r.status_code == 200 else []
        print(f"\n== notifier delivery log ({len(deliveries)} deliveries, by kind, recipient and outcome)")
        for (kind, who, channel, status), n in sorted(Counter(
                (d.get("kind"), str(d.get("recipient_ref")).split(":")[0], d.get("channel"), d.get("status")) for d in deliveries).items()):
            print(f"  {n:>3}  {kind:<22} -> {who:<10} via {channel:<6} {status}")
        if any(d.get("channel") in (None, "none") for d in deliveries):
            print("  (the demo patient gave no contact details, so patient reminders are recorded as failed: no_channel)")
        return bool(counts["rapport.course.planned.v1"] and deliveries)

    async def main(self) -> int:
        print("== Rapport demo: one IPT episode")
        person = f"P-demo-{uuid.uuid4().hex[:6]}"
        self.patient_app = {"Authorization": f"Bearer {self.tokens.issue(person, ['patient_app'])}"}
        done = run_intake(self.a.intake, self.intake_token, person_id=person)
        episode = done["episode_id"]
        print(f"intake completed over HTTP: episode {episode}, event {done['completed_event_id']}")
        if not self.a.intake_only:
            await self.run_course(episode)
        else:
            await asyncio.sleep(3)
        ok = await self.report(episode)
        await self.http.aclose()
        print("\n" + ("demo episode went through all four services" if ok else
                      "demo INCOMPLETE: see the service logs (docker-compose -p rapport logs)"))
        return 0 if ok else 1


def check_keys(key: Path, jwks: str | None) -> str | None:
    """Why the services (verifying with ``jwks``) would refuse the demo's tokens, or None."""
    if not jwks:
        return None
    try:
        TokenVerifier(jwks=JwksSource(jwks)).verify(TokenIssuer.from_file(key).issue("demo-check", ["metrics"]))
    except Exception as exc:  # noqa: BLE001 (any reason is worth saying before the demo starts)
        return f"a token signed with {key} does not verify against {jwks}: {exc}"
    return None


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--intake", default="http://127.0.0.1:8081")
    p.add_argument("--scheduler", default="http://127.0.0.1:8082")
    p.add_argument("--outcomes", default="http://127.0.0.1:8083")
    p.add_argument("--notifier", default="http://127.0.0.1:8084")
    p.add_argument("--kafka", default="127.0.0.1:9092")
    p.add_argument("--key", type=Path,
                   default=Path(os.environ.get("RAPPORT_AUTH_SIGNING_KEY") or root / "deploy/dev-keys/issuer.jwk.json"),
                   help="private JWK the demo signs its tokens with (default: the development issuer's)")
    p.add_argument("--jwks", default=os.environ.get("RAPPORT_AUTH_JWKS_FILE") or str(root / "deploy/dev-keys/jwks.json"),
                   help="the JWKS the services verify with (docker-compose mounts RAPPORT_AUTH_JWKS_FILE): checked "
                        "against --key before starting; empty to skip")
    p.add_argument("--org", default="org-demo", help="the organisation every demo token acts for")
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--intake-only", action="store_true", help="stop after the intake (no simulated course)")
    args = p.parse_args()
    problem = check_keys(args.key, args.jwks)
    if problem:
        print(f"demo: {problem}", file=sys.stderr)
        return 2
    return asyncio.run(Demo(args).main())


if __name__ == "__main__":
    sys.exit(main())
