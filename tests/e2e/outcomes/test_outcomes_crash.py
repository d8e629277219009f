"""Alerts survive a crash: outcomes dies after storing a positive item-9 score (and its alert, in
the same transaction) and before anything is published. After a restart the alert reaches Kafka
exactly once, and the client's retry of the same submission raises nothing new.

``RAPPORT_CRASH_AT=outcomes.submission.after_commit`` exits the process (``os._exit``, like a
SIGKILL) right after the submission's transaction commits, before the relay can run.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timezone

import httpx
import pytest

from rapport_shared.faults import EXIT_CODE
from rapport_testing.flows import run_intake
from rapport_testing.kafka import read_all, wait_for_records
from rapport_testing.db import fetch
from rapport_shared.topics import OUTCOMES

pytestmark = pytest.mark.e2e

CRASH_POINT = "outcomes.submission.after_commit"


def of(episode: str, ce_type: str | None = None):
    return lambda r: r.headers.get("ce_subject") == episode and (ce_type is None or r.headers.get("ce_type") == ce_type)



async def wait_outbox_drained(dsn: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (await fetch(dsn, "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL"))[0]["n"]:
        if time.monotonic() > deadline:
            raise TimeoutError("outcomes' outbox still has unsent rows")
        await asyncio.sleep(0.3)


async def test_alert_stored_but_not_published_reaches_kafka_exactly_once(system, kafka, tokens, service_dsns):
    dsn = service_dsns["outcomes"]
    person = f"P-t{uuid.uuid4().hex[:12]}"
    episode = run_intake(system["intake"].url, tokens.issue("ic-1", ["intake_clinician"]), person_id=person)["episode_id"]
    await wait_for_records(kafka.bootstrap, OUTCOMES, of(episode, "rapport.score.submitted.v1"))  # baseline in

    system.restart("outcomes", {"RAPPORT_CRASH_AT": CRASH_POINT})
    url = f"{system['outcomes'].url}/v1/episodes/{episode}/submissions"
    auth = {"Authorization": f"Bearer {tokens.issue(person, ['patient_app'])}"}
    body = {"client_submission_id": f"app-{uuid.uuid4().hex}", "instrument": "phq9",
            "answers": {"1": 1, "2": 1, "3": 1, "4": 1, "5": 1, "6": 1, "7": 1, "8": 1, "9": 1},
            "administered_at": datetime.now(timezone.utc).isoformat(), "session_number": 1}
    with pytest.raises(httpx.TransportError):  # the process dies before it answers
        httpx.post(url, headers=auth, json=body, timeout=30)
    assert system["outcomes"].wait_exit(30) == EXIT_CODE

    # Stored, alert included, and not published: the score and the alert wait in the outbox.
    [sub] = await fetch(dsn, "SELECT submission_id FROM submissions WHERE client_submission_id = $1", body["client_submission_id"])
    [alert] = await fetch(dsn, "SELECT alert_id, status FROM alerts WHERE submission_id = $1", sub["submission_id"])
    assert alert["status"] == "open"
    pending = await fetch(dsn, "SELECT event_type FROM outbox WHERE key = $1 AND sent_at IS NULL ORDER BY seq", episode.encode())
    assert [p["event_type"] for p in pending] == ["rapport.score.submitted.v1", "rapport.alert.raised.v1"]
    assert [r for r in await read_all(kafka.bootstrap, OUTCOMES) if of(episode, "rapport.alert.raised.v1")(r)] == []

    system.restart("outcomes")  # the relay publishes what the crash left behind
    [raised] = await wait_for_records(kafka.bootstrap, OUTCOMES, of(episode, "rapport.alert.raised.v1"))
    assert json.loads(raised.value)["alert_id"] == str(alert["alert_id"])

    # The client retries (it never got an answer): the same submission, nothing new.
    retry = httpx.post(url, headers=auth, json=body, timeout=30)
    assert retry.status_code == 200 and retry.json()["replayed"] is True
    assert retry.json()["alert_ids"] == [str(alert["alert_id"])]

    await wait_outbox_drained(dsn)
    records = [r for r in await read_all(kafka.bootstrap, OUTCOMES) if of(episode)(r)]
    alerts = [r for r in records if r.headers["ce_type"] == "rapport.alert.raised.v1"]
    scores = [r for r in records if json.loads(r.value).get("submission_id") == str(sub["submission_id"])
              and r.headers["ce_type"] == "rapport.score.submitted.v1"]
    assert len(alerts) == 1 and len(scores) == 1
    assert system["outcomes"].running()
