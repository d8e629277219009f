"""Each service's OpenAPI document tells the truth: schemathesis generates requests from it (and
requests that break it) against the running service and checks every answer — status codes
documented, bodies and content types as declared (RFC 9457 problems), no server error,
schema-valid requests accepted and schema-violating ones refused, 405 with ``Allow``, auth enforced.

All checks are on (selected in schemathesis.toml, next to this file, as ``--checks all`` would)
with one exception, per operation, listed in that file: ``positive_data_acceptance`` (ST202, "a
schema-valid request is accepted") is off for the operations whose input has a rule between
fields, or on the service's data or clock, that JSON Schema cannot state (an end after its start,
a channel needing its address, an instrument's items and ranges, a time not in the future, a
session count within the course's template, a pseudonymous id that must not look like personal
data, a public webhook address); they answer 422 naming the field. docs/api.md ("Checks turned
off") lists the same operations and rules.

One generation setting: no U+0000 in generated strings (``--generation-allow-x00 false``).
Postgres text cannot hold it; every service refuses it with 422 ``unstorable_text``
(rapport_shared.http.errors), so a NUL in a string valid by its schema would be a (documented)
refusal, not a finding.

The token holds every role of the test organisation, so each route is reached past the access
policy. Records the generator invents are unknown (404, declared), so one episode is seeded first
(an intake completed, its course planned, a PHQ-9 with item 9 raising an alert) and its ids are
given to the scheduler, outcomes and notifier runs: their operations on a course, a session, a
submission and an alert reach the real rules. Intake gets no seeded referral: completing a
completed referral again answers the first result whatever the body says (idempotent by design),
which schemathesis would read as a schema-violating body accepted; its own run opens referrals.
Examples per operation: ``RAPPORT_SCHEMATHESIS_EXAMPLES`` (default and CI: 10; seeding and the
four runs take 1 to 3 minutes on two cores, depending on load).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

# Its own organisation: what the generated requests create (webhook subscriptions, care teams) stays
# out of the other tests' organisation.
ORG = "org-schemathesis"
from rapport_testing.flows import phq9, run_intake

pytestmark = [pytest.mark.e2e, pytest.mark.runs_last]

ROLES = ["admin", "clinician", "intake_clinician", "partner", "patient_app", "operator", "metrics"]
SUB = "schemathesis-1"
SERVICES = ("intake", "scheduler", "outcomes", "notifier")
CONFIG = Path(__file__).with_name("schemathesis.toml")


def st_command() -> list[str]:
    st = shutil.which("st") or str(Path(sys.executable).parent / "st")
    return [st] if Path(st).exists() else [sys.executable, "-m", "schemathesis.cli"]


def _poll(fetch, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (got := fetch()) is not None:
            return got
        time.sleep(0.3)
    raise TimeoutError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def token(tokens) -> str:
    return tokens.issue(SUB, ROLES, org=ORG)


@pytest.fixture(scope="module")
def seeded(system, token) -> dict[str, dict[str, str]]:
    """One real episode across the services; the path parameters each run takes from it."""
    auth = {"Authorization": f"Bearer {token}"}
    client = httpx.Client(timeout=30, headers=auth)
    done = run_intake(system["intake"].url, token, clinician_id=SUB, client=client)
    episode, person = done["episode_id"], done["person_id"]

    def course():
        r = client.get(f"{system['scheduler'].url}/v1/courses/by-episode/{episode}")
        return r.json() if r.status_code == 200 else None

    planned = _poll(course, "the course to be planned")

    def submission():
        # 404 until outcomes has read the completed intake from Kafka.
        r = client.post(f"{system['outcomes'].url}/v1/episodes/{episode}/submissions", json={
            "client_submission_id": "schemathesis-seed", "instrument": "phq9",
            "answers": {str(k): v for k, v in phq9(20, item9=2).items()},
            "administered_at": datetime.now(timezone.utc).isoformat()})
        return r.json() if r.status_code in (200, 201) else None

    submitted = _poll(submission, "outcomes to know the episode")
    alerts = client.get(f"{system['outcomes'].url}/v1/episodes/{episode}/alerts").json()["alerts"]
    alert = alerts[0]["alert_id"]
    session = next(s for s in planned["sessions"] if s["status"] == "scheduled")["session_id"]
    return {
        "intake": {},
        "scheduler": {"path.course_id": planned["course_id"], "path.session_id": session, "path.episode_id": episode},
        "outcomes": {"path.episode_id": episode, "path.alert_id": alert,
                     "path.submission_id": submitted["submission_id"], "path.code": "phq9"},
        "notifier": {"path.alert_id": alert, "path.person_id": person},
    }


@pytest.mark.parametrize("service", SERVICES)
def test_the_openapi_document_matches_what_the_service_does(system, token, seeded, service, tmp_path):
    # The seeded ids as schemathesis parameters, ahead of the checked-in settings.
    params = "".join(f'"{name}" = "{value}"\n' for name, value in seeded[service].items())
    config = tmp_path / "schemathesis.toml"
    config.write_text(("[parameters]\n" + params + "\n" if params else "") + CONFIG.read_text())
    examples = os.environ.get("RAPPORT_SCHEMATHESIS_EXAMPLES", "10")
    # Every check is selected in the config ([checks] enabled = true), not with --checks all: a
    # command-line selection would override the per-operation settings there.
    cmd = [*st_command(), "--config-file", str(config), "run", f"{system[service].url}/openapi.json",
           "--max-examples", examples, "--seed", "20261203",
           "--header", f"Authorization: Bearer {token}", "--generation-allow-x00", "false",
           "--exclude-path-regex", "^/(metrics|healthz|readyz)$", "--workers", "1",
           "--request-timeout", "20", "--report", "junit", "--report-dir", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"})
    out = run.stdout + run.stderr
    print(out[-20000:])
    assert run.returncode == 0, f"schemathesis found failures in {service} (exit {run.returncode}):\n{out[-12000:]}"
