"""Issue 14, item 4: a real Prometheus (the image deploy/build-images.sh builds from Debian's
package, with the rules it ships) scrapes the running services with a token of role ``metrics``,
loads and evaluates the alert rules, and every dashboard query (deploy/grafana/dashboards.py)
returns data after real traffic.

Prometheus runs as a container on the host network (or, without Docker, Debian's ``prometheus``
binary when it is on PATH) with the compose config's job (its token file, relabelling and rule
files) pointed at the e2e system's loopback ports instead of compose's DNS names, scraping every
second. The traffic runs twice, a few scrapes apart, because ``rate()`` cannot see the sample that
creates a series: intakes (courses planned, notifications), a positive PHQ-9 item 9 (a safety
alert paged; resolved at the end so no escalation stays armed for later tests), a request without
a token (401) and an undecodable record on rapport.intake (dead-lettered; key ``poison-``, which
other tests skip). Queries whose data needs an event this test does not cause (a 5xx, a parked
outbox row, a timer falling due, ...) are listed with that event and not run.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import asyncpg
import httpx
import pytest
import yaml

from rapport_testing import infra
from rapport_testing.flows import phq9, run_intake
from rapport_testing.kafka import produce_raw, validate_partner_view, wait_for_records
from rapport_testing.wait import until
from rapport_shared.topics import INTAKE, OUTCOMES

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
IMAGE = next(line.split("=", 1)[1].split()[0] for line in (ROOT / "deploy" / "build-images.sh").read_text().splitlines()
             if line.startswith("PROMETHEUS_IMAGE="))
VARIABLES = {"$namespace": ".*", "$service": "rapport-.*", "$__rate_interval": "5m", "$__interval": "1m",
             "$__range": "1h"}


def _generator():
    spec = importlib.util.spec_from_file_location("rapport_dashboards", ROOT / "deploy" / "grafana" / "dashboards.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


DASH = _generator()
# The events this test causes (Target.data of the queries that need one).
CAUSED = {
    "a request answered 4xx, e.g. one without a token",
    "a course planned in the last hour",
    "a record dead-lettered",
    "a safety alert paged (a positive PHQ-9 item 9)",
    "a questionnaire submitted to outcomes",
    "an alert raised by outcomes",
}


@dataclass
class Prometheus:
    url: str
    stop: Callable[[], None]
    logs: Callable[[], str]

    def query(self, expr: str) -> list[dict]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        assert r.status_code == 200, f"{expr}: {r.status_code} {r.text}"
        return r.json()["data"]["result"]


def config(system, rules_dir: str, token_file: str) -> str:
    """The compose config's rapport job with the e2e services as static targets: each carries the
    __meta_dns_name compose's DNS discovery would give it, so the same relabelling names it."""
    conf = yaml.safe_load((PROM / "prometheus.yml").read_text())
    conf["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    conf["rule_files"] = [f"{rules_dir}/*.yml"]
    (job,) = [j for j in conf["scrape_configs"] if j["job_name"] == "rapport"]
    del job["dns_sd_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{svc.port}"], "labels": {"__meta_dns_name": name}}
                             for name, svc in system.services.items()]
    job["authorization"]["credentials_file"] = token_file
    conf["scrape_configs"] = [job]
    return json.dumps(conf)  # YAML is a superset of JSON


def start_container(system, token: str, port: int) -> Prometheus:
    client = infra._docker_client()
    try:
        client.images.get(IMAGE)
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"image {IMAGE} is not built here ({exc}): bash deploy/build-images.sh --infra-only")
    infra._remove_stale_containers()
    container = client.containers.create(
        IMAGE, command=["--config.file=/etc/prometheus/e2e.yml", "--storage.tsdb.path=/var/lib/prometheus/data",
                        f"--web.listen-address=127.0.0.1:{port}"],
        network_mode="host", name=f"rapport-test-prometheus-{os.getpid()}-{port}",
        labels={infra._TEST_LABEL: "prometheus", infra._PID_LABEL: str(os.getpid()),
                infra._NS_LABEL: infra._pid_namespace()})
    with infra._started_lock:
        infra._started[container.id] = container
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in (("e2e.yml", config(system, "/etc/prometheus/rules", "/etc/prometheus/secrets/metrics.token")),
                           ("secrets/metrics.token", token)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    container.put_archive("/etc/prometheus", buf.getvalue())
    container.start()
    return Prometheus(f"http://127.0.0.1:{port}", lambda: infra._remove_container(container),
                      lambda: container.logs(tail=40).decode(errors="replace"))


def start_binary(system, token: str, port: int, tmp: Path) -> Prometheus:
    (tmp / "metrics.token").write_text(token)
    (tmp / "prometheus.yml").write_text(config(system, str(PROM / "rules"), str(tmp / "metrics.token")))
    log = open(tmp / "prometheus.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([shutil.which("prometheus"), f"--config.file={tmp / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)

    def stop() -> None:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
    return Prometheus(f"http://127.0.0.1:{port}", stop, lambda: (tmp / "prometheus.log").read_text()[-4000:])


@pytest.fixture
def prometheus(system, tokens, tmp_path):
    token = tokens.issue("prometheus", ["metrics"])
    port = infra.free_port()
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        prom = start_container(system, token, port)
    elif shutil.which("prometheus"):
        prom = start_binary(system, token, port, tmp_path)
    else:
        pytest.skip("neither a Docker engine nor Debian's prometheus binary here")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{prom.url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"Prometheus not ready:\n{prom.logs()}"
            time.sleep(0.3)
        yield prom
    finally:
        prom.stop()


def substituted(expr: str) -> str:
    for name in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, VARIABLES[name])
    return expr


def has_values(result: list[dict]) -> bool:
    return any(not math.isnan(float(r["value"][1])) for r in result)


async def traffic(system, kafka, tokens) -> list[str]:
    """One round of real use; returns the ids of the safety alerts it raised."""
    http = httpx.Client(timeout=30)
    done = run_intake(system["intake"].url, tokens.issue("ic-metrics", ["intake_clinician"]), clinician_id="clin-001")
    episode = done["episode_id"]
    assert http.get(f"{system['intake'].url}/v1/referrals").status_code == 401  # no token
    await produce_raw(kafka.bootstrap, INTAKE, b"not a CloudEvent", key=f"poison-metrics-{uuid.uuid4().hex}".encode())
    # The baseline reached outcomes (the episode is known there), then a positive item 9.
    await wait_for_records(kafka.bootstrap, OUTCOMES, lambda r: r.headers.get("ce_subject") == episode
                           and r.headers.get("ce_type") == "rapport.score.submitted.v1")
    clinician = {"Authorization": f"Bearer {tokens.issue('clin-001', ['clinician'])}"}
    r = http.post(f"{system['outcomes'].url}/v1/episodes/{episode}/submissions", headers=clinician, json={
        "client_submission_id": f"metrics-{uuid.uuid4().hex}", "instrument": "phq9", "answers": phq9(14, 1),
        "administered_at": datetime.now(timezone.utc).isoformat(), "session_number": 1})
    assert r.status_code == 201, r.text
    [raised] = await wait_for_records(kafka.bootstrap, OUTCOMES, lambda r: r.headers.get("ce_subject") == episode
                                      and r.headers.get("ce_type") == "rapport.alert.raised.v1")
    return [validate_partner_view(raised)["alert_id"]]


async def no_escalation_armed(dsn: str, alerts: list[str]) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return not await conn.fetchval(
            "SELECT count(*) FROM timers WHERE kind = 'notifier.alert_escalation' AND key = ANY($1::text[])"
            " AND fired_at IS NULL AND cancelled_at IS NULL", [f"alert:{a}" for a in alerts])
    finally:
        await conn.close()


async def test_prometheus_scrapes_the_services_loads_the_rules_and_every_panel_has_data(
        system, kafka, tokens, service_dsns, prometheus):
    # Every service scraped with the metrics token, labelled as on Kubernetes.
    expected = {f"rapport-{name}" for name in system.services}

    def all_up():
        got = {r["metric"]["service"]: r["value"][1] for r in prometheus.query('up{service=~"rapport-.*"}')}
        return got if got == dict.fromkeys(expected, "1") else None
    try:
        up = await until(all_up, timeout=60, what="every service scraped (up == 1)")
    except TimeoutError:
        pytest.fail(f"targets: {httpx.get(f'{prometheus.url}/api/v1/targets').text[:3000]}")
    assert all(r["metric"]["job"] == r["metric"]["service"] for r in prometheus.query('up{service=~"rapport-.*"}'))
    print(f"\nup: {up}")

    # The rules Prometheus loaded are the PrometheusRule's, and each evaluates without error.
    (crd,) = yaml.safe_load_all((ROOT / "deploy/k8s/alerts/prometheusrule.yaml").read_text())
    want = {g["name"]: [r["alert"] for r in g["rules"]] for g in crd["spec"]["groups"]}

    def rules_evaluated():
        groups = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        loaded = {g["name"]: [r["name"] for r in g["rules"]] for g in groups}
        assert loaded == want
        rules = [r for g in groups for r in g["rules"]]
        bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
        return (rules if not bad else None), bad
    rules = await until(lambda: rules_evaluated()[0], timeout=30, what="every rule evaluated with health ok")
    print(f"rules: {len(rules)} loaded and evaluated, firing: {[r['name'] for r in rules if r['state'] == 'firing']}")

    # Real traffic, twice (rate() needs a series to exist before it grows).
    alerts: list[str] = []
    try:
        alerts += await traffic(system, kafka, tokens)
        await asyncio.sleep(3)  # a few scrapes: the series of the first round exist now
        alerts += await traffic(system, kafka, tokens)

        targets = [(d, p, t) for d in DASH.DASHBOARDS for p in d.panels() for t in p.targets]
        events = {t.data for _, _, t in targets}
        assert CAUSED <= events, f"this test causes events no query names any more: {CAUSED - events}"
        run = [(d, p, t) for d, p, t in targets if t.data == DASH.ALWAYS or t.data in CAUSED]
        pending = {(d.uid, p.title, t.expr) for d, p, t in run}

        def remaining():
            for d, p, t in run:
                if (d.uid, p.title, t.expr) in pending and has_values(prometheus.query(substituted(t.expr))):
                    pending.discard((d.uid, p.title, t.expr))
            return not pending
        try:
            await until(remaining, timeout=120, what="every panel query returning data")
        except TimeoutError:
            pytest.fail("panel queries without data:\n" + "\n".join(f"  {u} / {title}: {e}" for u, title, e in sorted(pending)))
        skipped = [(d.uid, p.title, t.data) for d, p, t in targets if (d, p, t) not in run]
        print(f"panel queries with data: {len(run)}; not run ({len(skipped)}), each needing an event this test "
              "does not cause:\n" + "\n".join(f"  {u} / {title}: {why}" for u, title, why in skipped))
    finally:
        clinician = {"Authorization": f"Bearer {tokens.issue('clin-001', ['clinician'])}"}
        for alert_id in alerts:
            r = httpx.post(f"{system['outcomes'].url}/v1/alerts/{alert_id}/resolve", headers=clinician,
                           json={"action": "safety_plan"}, timeout=30)
            assert r.status_code in (200, 409), r.text
        if alerts:  # no escalation left armed to page a later test's on-call rota
            await until(lambda: no_escalation_armed(service_dsns["notifier"], alerts), what="escalations stopped")
