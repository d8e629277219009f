"""A partner's view, proven: the example consumer (aiokafka + rapport-contracts, the partner
package; nothing else of Rapport importable) reads every shared topic after an episode went through
the four services, and finds every record of that episode valid."""

from __future__ import annotations

import ast
import shutil
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from rapport_testing.flows import run_intake
from rapport_testing.kafka import produce_raw, wait_for_records
from rapport_shared.topics import COURSE, INTAKE, NOTIFICATIONS, OUTCOMES, SHARED_TOPICS

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "partner_consumer" / "consumer.py"
SCHEMAS = ROOT / "docs" / "events" / "schemas" / "events"

# Run the example with every project package but rapport_contracts made unimportable: it must need none of them.
BLOCKED = ["rapport_shared", "rapport_tools", "rapport_testing", "rapport_console", "rapport_intake", "rapport_scheduler", "rapport_outcomes", "rapport_notifier"]
LAUNCH = ("import runpy, sys\n"
          f"for name in {BLOCKED!r}: sys.modules[name] = None\n"
          "sys.argv = sys.argv[1:]\n"
          "runpy.run_path(sys.argv[0], run_name='__main__')\n")


def run_example(bootstrap: str, report: Path, *args: str) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCH, str(EXAMPLE), "--bootstrap", bootstrap, "--schemas", str(SCHEMAS),
         "--until-caught-up", "--report", str(report), *args],
        capture_output=True, text=True, timeout=240)
    summary = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    return proc.returncode, summary, proc.stderr


def test_the_example_imports_nothing_from_the_project():
    tree = ast.parse(EXAMPLE.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert {m for m in imported if m.startswith("rapport")} == {"rapport_contracts"}
    assert imported - set(sys.stdlib_module_names) == {"aiokafka", "rapport_contracts"}
    requirements = (EXAMPLE.parent / "requirements.txt").read_text().splitlines()
    assert [r for r in requirements if r and not r.startswith("#")] == ["../../shared/rapport_contracts", "aiokafka>=0.11"]


async def test_partner_example_validates_an_episode_on_every_shared_topic(system, kafka, tokens, tmp_path):
    episode = run_intake(system["intake"].url, tokens.issue("ic-1", ["intake_clinician"]))["episode_id"]
    of_episode = lambda r: r.headers.get("ce_subject") == episode
    for topic in (INTAKE, COURSE, OUTCOMES, NOTIFICATIONS):
        await wait_for_records(kafka.bootstrap, topic, of_episode)

    report = tmp_path / "report.jsonl"
    rc, summary, stderr = run_example(kafka.bootstrap, report)
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    mine = [r for r in lines if r["key"] == episode]
    assert {r["topic"] for r in mine} == set(SHARED_TOPICS)
    assert mine and all(r["valid"] for r in mine), [r for r in mine if not r["valid"]]
    assert {"rapport.intake.completed.v1", "rapport.course.planned.v1", "rapport.score.submitted.v1",
            "rapport.notification.delivered.v1"} <= {r["ce_type"] for r in mine}
    # Every record Rapport itself produced is valid; only records planted by other tests (a raw
    # poison record in the crash tests) may be reported invalid, and then the exit status says so.
    produced = [r for r in lines if r["ce_id"] and r["status"] != "unknown_type" and not (r["key"] or "").startswith("poison-")]
    assert all(r["valid"] for r in produced), [r for r in produced if not r["valid"]][:3]
    assert summary["records"] == len(lines) and summary["valid"] >= len(mine)
    assert rc == (1 if summary["invalid"] else 0), stderr


async def test_partner_example_reports_invalid_records(kafka, tmp_path):
    topic = f"sandbox.partner.{uuid.uuid4().hex[:8]}"
    episode = str(uuid.uuid4())
    good_schema = json.loads((SCHEMAS / "rapport.session.missed.v1.json").read_text())
    headers = {"content-type": "application/json", "ce_specversion": "1.0", "ce_id": str(uuid.uuid4()),
               "ce_source": "/rapport/scheduler", "ce_type": "rapport.session.missed.v1",
               "ce_time": "2026-11-26T09:30:00Z", "ce_subject": episode, "ce_dataschema": good_schema["$id"]}
    data = {"episode_id": episode, "course_id": str(uuid.uuid4()), "session_id": str(uuid.uuid4()), "number": 3,
            "consecutive_missed": 1, "missed_at": "2026-11-26T09:30:00Z"}
    await produce_raw(kafka.bootstrap, topic, json.dumps(data).encode(), key=episode.encode(), headers=headers)
    await produce_raw(kafka.bootstrap, topic, json.dumps(data).encode(), key=episode.encode(), headers=headers)  # duplicate
    await produce_raw(kafka.bootstrap, topic, json.dumps({**data, "number": 0}).encode(), key=episode.encode(),
                      headers={**headers, "ce_id": str(uuid.uuid4())})
    await produce_raw(kafka.bootstrap, topic, json.dumps(data).encode(), key=b"other",
                      headers={**headers, "ce_id": "not-a-uuid"})
    await produce_raw(kafka.bootstrap, topic, b"{}", key=episode.encode(),
                      headers={**headers, "ce_id": str(uuid.uuid4()), "ce_type": "rapport.future.thing.v1"})

    rc, summary, stderr = run_example(kafka.bootstrap, tmp_path / "r.jsonl", "--topics", topic)
    assert rc == 1
    assert (summary["valid"], summary["invalid"], summary["unknown_types"], summary["duplicates"]) == (2, 2, 1, 1)
    assert "value number: Input should be greater than or equal to 1" in stderr
    assert "header ce_id: must be a UUID" in stderr and "key: differs from ce_subject" in stderr


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (apt-get install kcat)")
async def test_kcat_shows_the_same_headers(kafka):
    """The docs' kcat -J command (docs/partners.md) sees the CloudEvents headers, key and value as produced."""
    topic = f"sandbox.kcat.{uuid.uuid4().hex[:8]}"
    episode = str(uuid.uuid4())
    headers = {"content-type": "application/json", "ce_specversion": "1.0", "ce_id": str(uuid.uuid4()),
               "ce_type": "rapport.session.missed.v1", "ce_subject": episode,
               "ce_dataschema": "/schemas/events/rapport.session.missed.v1.json"}
    value = json.dumps({"episode_id": episode}).encode()
    await produce_raw(kafka.bootstrap, topic, value, key=episode.encode(), headers=headers)
    proc = subprocess.run(["kcat", "-b", kafka.bootstrap, "-t", topic, "-C", "-o", "beginning", "-e", "-q", "-J"],
                          capture_output=True, text=True, timeout=60)
    [record] = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    h = dict(zip(record["headers"][::2], record["headers"][1::2]))
    assert h == headers and record["key"] == episode and record["payload"] == value.decode()
