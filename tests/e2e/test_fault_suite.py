"""The fault suite's small version (issue 11, item 5; the full one is ``bench/faults.py --episodes 200``).

A cohort of 12 episodes through the four services as processes while every declared crash point
fires once, random SIGKILLs hit the services, PostgreSQL is SIGKILLed and restarted, the broker is
SIGKILLed and restarted and then paused for 8 s; at the end every expected effect exists exactly
once (courses, sessions, scores, alerts, deliveries per episode, e-mails at the SMTP server,
distinct events on the topics) and no dead-letter topic holds a record.

It kills Kafka and Postgres, so it runs on containers of its own (never the session's shared
``kafka``/``postgres``, which the other e2e tests use): it needs the Docker engine and the
locally built images, and is skipped where the suite runs on plain processes (local-infra).
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import sys
from pathlib import Path

import pytest

from rapport_testing import infra

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
BENCH_FAULTS = Path(__file__).resolve().parents[2] / "bench" / "faults.py"


def load_faults():
    spec = importlib.util.spec_from_file_location("rapport_bench_faults", BENCH_FAULTS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def own_infra(monkeypatch):
    """A Postgres and a Kafka container for this test alone (it kills and pauses them)."""
    if not infra.docker_available():
        pytest.skip("the fault suite kills Kafka and Postgres: it needs containers of its own (no Docker engine here)")
    monkeypatch.delenv("RAPPORT_TEST_POSTGRES_DSN", raising=False)
    monkeypatch.delenv("RAPPORT_TEST_KAFKA_BOOTSTRAP", raising=False)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        pg_f, kafka_f = pool.submit(infra.start_postgres), pool.submit(infra.start_kafka)
        concurrent.futures.wait([pg_f, kafka_f])
    handles = [f.result() for f in (pg_f, kafka_f) if f.exception() is None]
    try:
        if len(handles) < 2:
            raise (pg_f.exception() or kafka_f.exception())
        yield handles[0], handles[1]
    finally:
        for h in handles:
            h.stop()


async def test_fault_suite_counts_nothing_lost_nothing_doubled(own_infra, tmp_path):
    faults = load_faults()
    pg, kafka = own_infra
    opts = faults.Options(episodes=12, pause_s=8, kills=4, interval_s=7, crash_timeout_s=60, settle_timeout_s=180,
                          seed=11)
    result = await faults.run(pg, kafka, opts, tmp_path)
    print(result.line)
    assert result.details == [] or all(d.startswith("(") for d in result.details), result.details
    assert result.lost == 0 and result.doubled == 0, (result.line, result.details)
    assert not result.faults.crash_missed, result.faults.crash_missed
    assert {p for _, p in result.faults.crash_fired} == set(faults.ALL_POINTS)
    f = result.faults
    assert f.sigkill >= 1 and f.postgres_kill >= 1 and f.broker_kill == 1 and f.broker_pause == 1, f.line()
    assert result.events >= 12 * 38  # 38 distinct events per episode, 2 more with a positive item 9
