"""Run one demo episode through a running Rapport and print what happened.

    uv run python deploy/demo.py [--intake URL] [--notifier URL] [--kafka HOST:PORT] [--secret S]

Defaults match docker-compose.yml (ports on 127.0.0.1, the development auth secret).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import httpx

from rapport_shared.http.auth import TokenAuthority
from rapport_shared.testing.flows import run_intake
from rapport_shared.testing.kafka import read_all
from rapport_shared.topics import SHARED_TOPICS

SUMMARY = {
    "rapport.intake.completed.v1": lambda d: f"template {d['template_id']}, focus {d['focus']['primary']}, clinician {d['clinician_id']}",
    "rapport.course.planned.v1": lambda d: f"{d['contracted_sessions']} sessions from {d['first_session_at']}",
    "rapport.score.submitted.v1": lambda d: f"{d['instrument']} {d['timepoint']} total {d['total']} ({d['band']}), caseness {d['caseness']}",
    "rapport.notification.delivered.v1": lambda d: f"{d['kind']} -> {d['recipient_ref']} via {d['channel']}",
}


async def timeline(bootstrap: str, episode: str, expect: int, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while True:
        recs = [r for t in SHARED_TOPICS for r in await read_all(bootstrap, t) if r.headers.get("ce_subject") == episode]
        if len(recs) >= expect or time.monotonic() > deadline:
            return sorted(recs, key=lambda r: r.headers["ce_time"])
        await asyncio.sleep(0.5)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--intake", default="http://127.0.0.1:8081")
    p.add_argument("--notifier", default="http://127.0.0.1:8084")
    p.add_argument("--kafka", default="127.0.0.1:9092")
    p.add_argument("--secret", default=os.environ.get("RAPPORT_AUTH_SECRET", "dev-only-secret-change-me-0123456789"))
    p.add_argument("--timeout", type=float, default=60)
    args = p.parse_args()
    tokens = TokenAuthority(args.secret)

    print("== Rapport demo: one IPT episode")
    done = run_intake(args.intake, tokens.issue("demo-intake-clinician", ["intake_clinician"]))
    episode = done["episode_id"]
    print(f"intake completed over HTTP: episode {episode}, event {done['completed_event_id']}")

    records = asyncio.run(timeline(args.kafka, episode, expect=4, timeout=args.timeout))
    print(f"\n== events on the shared topics for this episode ({len(records)})")
    for r in records:
        data = json.loads(r.value)
        summary = SUMMARY.get(r.headers["ce_type"], lambda d: "")(data)
        print(f"{r.headers['ce_time']}  {r.topic:<22} {r.headers['ce_type']:<36} {summary}")

    deliveries = httpx.get(f"{args.notifier}/v1/deliveries", params={"episode_id": episode},
                           headers={"Authorization": f"Bearer {tokens.issue('demo-admin', ['admin'])}"}, timeout=10).json()
    print(f"\n== notifier delivery log ({len(deliveries['deliveries'])})")
    for d in deliveries["deliveries"]:
        print(f"{d['delivered_at']}  {d['kind']} -> {d['recipient_ref']} via {d['channel']}: {d['status']}")
    ok = len(records) >= 4 and deliveries["deliveries"]
    print("\n" + ("demo episode went through all four services" if ok else "demo INCOMPLETE: see the service logs (docker-compose -p rapport logs)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
